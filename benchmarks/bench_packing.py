#!/usr/bin/env python
"""Packed training throughput: R runs per forward/backward of one frozen backbone, at the paper's shapes.

For each backbone shape (SmolLM2-135M, T5 v1.1 Small, T5 v1.1 Base; random weights from their configs, which
cost what trained weights cost) and each group size R, the engine's own packed step
(``superpos.engine.packed.PackedGroup.train_step``: R runs' batches concatenated, each row with its own run's
prompt, one forward and one backward, R AdamW steps) is timed on real text: R SuperPos runs (m = 128, n = 10,
seeds 0..R-1; ``--methods`` cycles through others, e.g. the offline profile's mix) on ``--task`` (bbc-topic: a headline and the article's first sentence, about 50 tokens on average
and at most ~100 with the test tokenizers, so the 256-token cap is not reached; bbc-copa's inputs are about
twice as long), each with the paper's batch of 32, each batch padded to its longest input. The tokenizers are the
tiny test ones (``superpos.backbones.tiny``); only the token counts matter for the cost, and tokens/s counts the
tokens each step really carried (inputs and targets, padding and prompt rows excluded): tokens/s over
examples/s is the mean length measured.

Evaluation is timed too: one packed greedy-generation pass (``evaluate_many``) of the R runs over
``--eval-examples`` dev examples each.

Each setting: ``--warmup`` untimed steps, then ``--steps`` timed ones (CUDA synchronized; median). Peak memory is
``torch.cuda.max_memory_allocated`` over the timed steps (CPU: the process's peak RSS). A setting that runs out of
memory is reported as such and the larger R of that shape are skipped.

``--count-ops`` also counts the ATen operators of one packed step (forward, backward, the R AdamW steps), views
apart, and the syncs among them (``SYNC_OPERATORS``: the host reads a value the device computed): on a GPU each
other operator launches a kernel, so at small R their number sets the step time, and each sync stops the host from
queuing work ahead of the GPU; on a CPU it is what can be measured of that cost without a GPU.

Usage: ``python benchmarks/bench_packing.py --device cuda [--shapes smollm2-135m,t5-small,t5-base]
[--packs 1,4,16,64] [--count-ops]``; writes ``results/bench/bench_packing.json`` (``--out``).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench_t5_cost import T5_COMMON, T5_SHAPES, write_result  # noqa: E402  (the hand-written t5-v1_1 shapes)

# The config.json fields of HuggingFaceTB/SmolLM2-135M that set its cost.
SMOLLM2_SHAPE = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                     num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                     rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True, attention_dropout=0.0)
SHAPES = ("smollm2-135m", "t5-small", "t5-base")


def random_backbone(shape: str, device, dtype: str):
    """A frozen ``Backbone`` of ``shape``'s size with random weights (seed 0) and the tiny test tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

    from superpos.backbones import Backbone, tiny
    from superpos.backbones.load import _resolve_dtype

    torch.manual_seed(0)
    if shape == "smollm2-135m":
        tokenizer = tiny.llama_tokenizer()
        model = LlamaForCausalLM(LlamaConfig(**SMOLLM2_SHAPE, bos_token_id=tokenizer.bos_token_id,
                                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
        kind = "causal"
    else:
        tokenizer = tiny.t5_tokenizer()
        model = T5ForConditionalGeneration(T5Config(**T5_SHAPES[shape.split("-")[1]], **T5_COMMON))
        kind = "seq2seq"
    model.to(device=device, dtype=_resolve_dtype(dtype))
    backbone = Backbone(shape, kind, model, tokenizer, source=f"random init (seed 0) at {shape}'s shape")
    backbone.set_dropout(False, None)
    return backbone


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mb(device) -> float:
    import resource

    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


#: ATen operators after which the host reads a value the device computed: on a GPU each waits for the GPU to finish
#: everything queued before it. A CPU run sees these two; a ``.tolist()`` of a CUDA tensor (a copy to the CPU) is
#: not seen on a CPU, so the count is a lower bound there.
SYNC_OPERATORS = ("_local_scalar_dense", "nonzero")


def count_operators(step) -> dict:
    """What one call of ``step()`` dispatches to ATen: ``operators`` (views included), ``views``, ``syncs`` (of
    :data:`SYNC_OPERATORS`) and ``optimizer_operators`` (the part inside the R AdamW steps, views included).

    On a GPU each operator that is not a view launches at least one kernel: at small batches their count, not their
    FLOPs, sets the step time; each sync also stops the host from running ahead. Syncs inside the optimizers are
    not counted: a CPU's AdamW reads its step counters, which live on the CPU on every device; on a GPU the engine's
    AdamW is the fused one (``engine.train``), one kernel per run, so ``optimizer_operators`` is the CPU's count."""
    from torch.utils._python_dispatch import TorchDispatchMode

    counts = dict(operators=0, views=0, syncs=0, optimizer_operators=0)
    regions: list[bool] = []  # open record_function regions: is each an optimizer's?

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name == "_record_function_enter_new":
                regions.append(str(args[0]).startswith("Optimizer."))
            inside = any(regions)
            if name == "_record_function_exit" and regions:
                regions.pop()
            counts["operators"] += 1
            counts["views"] += bool(func.is_view)
            counts["syncs"] += name in SYNC_OPERATORS and not inside
            counts["optimizer_operators"] += inside
            return func(*args, **(kwargs or {}))

    with Count():
        step()
    return counts


def measure(backbone, pack: int, args, store) -> dict:
    """Time ``args.steps`` packed steps and one packed evaluation of ``pack`` SuperPos runs on ``backbone``."""
    import torch

    from superpos.engine.config import RunConfig
    from superpos.engine.evaluate import EvalJob, evaluate_many
    from superpos.engine.packed import PackedGroup
    from superpos.engine.train import Trainer

    steps = args.warmup + args.steps + bool(args.count_ops)
    trainers = []
    for seed in range(pack):
        config = RunConfig(backbone="tiny-llama" if backbone.kind == "causal" else "tiny-t5", task=args.task,
                           method=args.methods[seed % len(args.methods)], seed=seed, batch_size=args.batch_size,
                           max_steps=steps, eval_every=0, train_limit=args.batch_size * steps, eval_limit=args.eval_examples,
                           max_input_tokens=args.max_input_tokens, device=str(backbone.device), dtype=args.dtype,
                           dropout=False, protocol="paper")
        trainers.append(Trainer(config, f"bench-{pack}-{seed}", store, None, progress=False, backbone=backbone))
        if args.no_autocast:  # the bf16 weights run as they are, as the CPU runs them
            trainers[-1].autocast = contextlib.nullcontext()
    group = PackedGroup(trainers, progress=False)
    times, tokens = [], []
    device = backbone.device
    for step in range(steps):
        if step == args.warmup and device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        before = sum(t.train_tokens for t in trainers)
        sync(device)
        clock = time.perf_counter()
        failures = group.train_step(trainers)
        sync(device)
        if failures:
            raise RuntimeError(f"non-finite loss in {len(failures)} of {pack} runs")
        if step >= args.warmup:
            times.append(time.perf_counter() - clock)
            tokens.append(sum(t.train_tokens for t in trainers) - before)
    train_peak = peak_mb(device)
    counted = {}
    if args.count_ops:  # one more step, untimed: the counting mode itself costs host time
        counted = {f"{key}_per_step": value
                   for key, value in count_operators(lambda: group.train_step(trainers)).items()}
    for trainer in trainers:
        trainer.method.eval()
    backbone.model.eval()
    jobs = [EvalJob(t.method, t.task, t.dev_examples, **t.eval_options()) for t in trainers]
    sync(device)
    clock = time.perf_counter()
    with trainers[0].autocast, torch.no_grad():
        evaluate_many(backbone, jobs)
    sync(device)
    eval_s = time.perf_counter() - clock
    step_s = statistics.median(times)
    examples = pack * args.batch_size
    return {"shape": backbone.name, "R": pack, "rows": examples, "step_s": step_s, "examples_per_s": examples / step_s,
            "tokens_per_s": statistics.median(tokens) / step_s, "tokens_per_step": statistics.median(tokens),
            "peak_mb": train_peak, "eval_examples": sum(len(j.examples) for j in jobs), "eval_s": eval_s,
            "eval_examples_per_s": sum(len(j.examples) for j in jobs) / eval_s, **counted}


def main(argv=None) -> int:
    import torch

    from superpos.backbones.precision import resolve_precision
    from superpos.engine import ResultsStore
    from superpos.backbones import resolve_device
    from superpos.engine.provenance import device_name

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"Comma-separated subset of {', '.join(SHAPES)}.")
    parser.add_argument("--packs", default="1,4,16,64", help="Group sizes R to time.")
    parser.add_argument("--task", default="bbc-topic", help="The runs' task (its inputs set the lengths).")
    parser.add_argument("--methods", default="superpos",
                        help="Comma-separated methods the R runs cycle through (seed i takes the i-th mod their "
                             "number), e.g. simple,residual,superpos,ept for the offline profile's mix.")
    parser.add_argument("--batch-size", type=int, default=32, help="Rows per run and step (the paper's: 32).")
    parser.add_argument("--max-input-tokens", type=int, default=256, help="Input cap (the paper profile's: 256).")
    parser.add_argument("--steps", type=int, default=5, help="Timed steps per setting.")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed steps first (kernel selection, allocator).")
    parser.add_argument("--eval-examples", type=int, default=128, help="Dev examples per run in the timed evaluation.")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu' or 'cuda'.")
    parser.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--no-autocast", action="store_true",
                        help="Run a bf16 backbone without torch.autocast (the engine uses autocast on CUDA).")
    parser.add_argument("--count-ops", action="store_true",
                        help="Also count the ATen operators one packed step dispatches (one extra, untimed step).")
    parser.add_argument("--out", default=str(REPO / "results" / "bench"))
    args = parser.parse_args(argv)
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        parser.error(f"unknown shape(s) {', '.join(unknown)}; known: {', '.join(SHAPES)}")
    packs = sorted(int(p) for p in args.packs.split(","))
    from superpos.methods import METHODS

    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unusable = [m for m in args.methods if m not in METHODS or m in ("full", "attempt")]
    if unusable or not args.methods:
        parser.error(f"--methods: {', '.join(unusable) or 'none given'}: give prompt methods that pack without "
                     f"source prompts ({', '.join(m for m in METHODS if m not in ('full', 'attempt'))})")
    device = resolve_device(args.device)
    precision, why = resolve_precision(args.dtype, device)
    args.dtype = precision
    where = device_name(device)
    print(f"packed training on {where}, {precision} ({why}); batch {args.batch_size} per run, inputs cut at "
          f"{args.max_input_tokens} tokens, "
          + ("SuperPos m=128 n=10" if args.methods == ["superpos"] else f"methods {','.join(args.methods)} (n=10)")
          + f"; median of {args.steps} steps after {args.warmup}"
          + ("" if args.task == "bbc-topic" else f"; task {args.task}")
          + ("; no autocast" if args.no_autocast else ""), flush=True)
    rows, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        store = ResultsStore(Path(folder))
        for shape in shapes:
            backbone = random_backbone(shape, device, precision)
            params = sum(p.numel() for p in backbone.model.parameters())
            for pack in packs:
                try:
                    row = {**measure(backbone, pack, args, store), "params": params}
                except torch.cuda.OutOfMemoryError:
                    rows.append({"shape": shape, "R": pack, "params": params, "out_of_memory": True})
                    print(f"{shape:>13} R={pack:<3} out of memory at {pack * args.batch_size} rows; larger R skipped",
                          flush=True)
                    torch.cuda.empty_cache()
                    break
                rows.append(row)
                print(f"{shape:>13} R={pack:<3} {row['step_s'] * 1000:8.1f} ms/step {row['examples_per_s']:9.1f} ex/s "
                      f"{row['tokens_per_s']:11.0f} tok/s  peak {row['peak_mb']:8.0f} MB  eval "
                      f"{row['eval_examples_per_s']:8.1f} ex/s"
                      + (f"  {row['operators_per_step']} ops/step ({row['views_per_step']} views, "
                         f"{row['optimizer_operators_per_step']} in AdamW; {row['syncs_per_step']} syncs)"
                         if args.count_ops else ""), flush=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            del backbone
    print(f"\n{'shape':>13} " + " ".join(f"{'R=' + str(p) + ' ex/s':>12}" for p in packs) + "   best/R=1")
    for shape in shapes:
        mine = {r["R"]: r for r in rows if r["shape"] == shape and "examples_per_s" in r}
        cells = [f"{mine[p]['examples_per_s']:12.1f}" if p in mine else f"{'OOM':>12}" for p in packs]
        gain = max(r["examples_per_s"] for r in mine.values()) / mine[packs[0]]["examples_per_s"] if mine else 0
        print(f"{shape:>13} " + " ".join(cells) + f"   {gain:.2f}x")
    write_result(Path(args.out) / "bench_packing.json",
                 {"device": where, "precision": precision, "precision_reason": why, "torch": torch.__version__,
                  "settings": {k: v for k, v in vars(args).items() if k != "out"}, "rows": rows}, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
