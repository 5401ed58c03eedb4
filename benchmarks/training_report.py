"""``bench_training.py``'s printout and JSON: the arms' table, their ratios to ``peft-trainer``, the matmul peaks.

After the table and the ratios, one block states for ``ours-simple`` (the like-for-like method) and
``ours-superpos``, on this run's numbers: examples/s over ``peft-trainer``'s at the same precision, the strict
score, lenient score and validation loss side by side (and which of them is worse, if any), and the achieved
FLOP/s as a fraction of the bf16 and of the fp32 matmul peak measured in the arm's own process. The last line
printed is ``speedup vs peft+trainer: X.XXx`` (examples/s of ours-simple over peft-trainer).
"""
from __future__ import annotations

import json
import os
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

from common import PEAK_DTYPES, PEAK_SIZE, gflops, percent

REPO = Path(__file__).resolve().parents[1]


def packing_lines(packing: dict) -> list[str]:
    """The packed/unpacked comparison, side by side."""
    alone, packed = packing["alone"], packing["packed"]
    gap = packing["loss_max_relative_difference"]
    timed = len(alone["round_s_all"]) - packing["warmup"]
    return ["", f"packing: {packing['runs']} runs ({', '.join(packing['methods'])}), batch {packing['batch_size']} "
                f"each, in one process on {packing['device']} ({packing['threads']} threads), alone and packed in "
                f"turn: median of {timed} rounds after {packing['warmup']} warm-up",
            f"  alone, one run after another: {alone['ms_per_example']:.2f} ms/example ({alone['round_s_median']:.3f} s "
            f"a round)",
            f"  packed, one forward/backward: {packed['ms_per_example']:.2f} ms/example ({packed['round_s_median']:.3f} s "
            f"a round); packed/alone {packing['packed_over_alone']:.2f}x",
            f"  losses, packed against alone: max relative difference {gap:.1e}" if gap is not None else
            "  losses: no step to compare"]

def peak_line(dtype: str, results: dict) -> str:
    values = [v for r in results.values() for v in r["matmul_peak_flops"][dtype]]
    plan = next(iter(results.values()))["matmul_peaks"][0][dtype]
    size, repeats, warmup = plan["size"], plan["repeats"], plan["warmup"]
    note = "" if size == PEAK_SIZE else (f"; smaller than 2048^3 because one 2048^3 call was predicted to take "
                                         f"{plan['predicted_s_per_2048_call']:.1f} s")
    return (f"  {dtype}: {gflops(statistics.median(values))} GFLOP/s (range {gflops(min(values))}-"
            f"{gflops(max(values))}; {size}^3 torch.mm, median of {repeats} after {warmup} warm-up, "
            f"{len(values)} measurements{note})")



def metric_comparison(r: dict, base: dict) -> tuple[list[str], str]:
    """``r``'s strict score, lenient score and validation loss beside ``base``'s: the names of the worse ones, and
    the three side by side."""
    mine, theirs = r["eval"], base["eval"]
    checks = [("strict score", mine["score"], theirs["score"], mine["score"] >= theirs["score"]),
              ("lenient score", mine["lenient_score"], theirs["lenient_score"],
               mine["lenient_score"] >= theirs["lenient_score"]),
              ("validation loss", mine["validation_loss"], theirs["validation_loss"],
               mine["validation_loss"] <= theirs["validation_loss"])]
    worse = [name for name, _, _, ok in checks if not ok]
    detail = ", ".join(f"{name} {a:.{3 if 'loss' in name else 1}f} vs {b:.{3 if 'loss' in name else 1}f}"
                       for name, a, b, _ in checks)
    return worse, detail


def measured_lines(arms, results, own_peaks, precision: str, native: tuple) -> list[dict]:
    """For ours-simple (the like-for-like method) and ours-superpos: the ratio to peft-trainer's examples/s, the
    metrics side by side, and the fractions of the bf16 and fp32 matmul peaks, each with its printed line."""
    measured = []
    base = results.get("peft-trainer")
    for arm in [a for a in ("ours-simple", "ours-superpos") if a in results]:
        r = results[arm]
        if base is not None:
            ratio = r["examples_per_s"] / base["examples_per_s"]
            measured.append({"arm": arm, "quantity": "examples_per_s_ratio", "value": round(ratio, 3),
                             "line": f"{arm}: examples/s {ratio:.2f}x peft-trainer's, both {precision}"})
            worse, detail = metric_comparison(r, base)
            measured.append({"arm": arm, "quantity": "metrics_against_peft_trainer", "worse_on": worse,
                             "line": f"{arm}: metrics against peft-trainer's: {detail}; "
                                     + (f"worse on: {', '.join(worse)}" if worse else "equal or better on all three")})
        achieved = r.get("achieved_flops")
        if not achieved:
            continue
        for dtype in ("bf16", "fp32"):
            fraction = achieved / own_peaks[arm][dtype]
            line = (f"{arm}: {percent(fraction)} of the {dtype} peak ({gflops(achieved)} of "
                    f"{gflops(own_peaks[arm][dtype])} GFLOP/s), computing in {precision}")
            if dtype == "bf16" and precision == "bf16" and not native[0]:
                line += f" (bf16 is not native here: {native[1]})"
            measured.append({"arm": arm, "quantity": f"{dtype}_peak_fraction", "value": round(fraction, 4),
                             "line": line})
    return measured


def report(args, arms, results, started, packing: dict | None = None) -> int:
    precision, reason = args.precision, args.precision_reason
    own_peaks = {arm: {d: statistics.median(results[arm]["matmul_peak_flops"][d]) for d in PEAK_DTYPES}
                 for arm in arms}
    lines = [f"bench: {args.backbone} on {args.task}, batch {args.batch_size}, n_prompts {args.n_prompts}, "
             f"{args.steps} timed steps after {args.warmup} warm-up, {results[arms[0]]['device']}, "
             f"{results[arms[0]]['threads']} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}",
             f"precision: {precision} for every arm ({reason})"]
    for arm in arms:
        p = results[arm]["precision"]
        extra = (f", TrainingArguments(bf16={p['training_args_bf16']}, use_cpu={p['use_cpu']}), accelerate "
                 f"mixed_precision={p['accelerate_mixed_precision']}" if "training_args_bf16" in p
                 else f", autocast {'on' if p['autocast'] else 'off'}, decoder layers {p.get('decoder_layers', 'eager')}")
        lines.append(f"  {arm}: backbone {p['backbone_dtype']}, trainable {'/'.join(p['trainable_dtypes'])}{extra}")
    lines.append("matmul peaks, measured in the arms' own processes before and after their steps (median):")
    lines += [peak_line(d, results) for d in PEAK_DTYPES]
    lines += ["",
              f"{'arm':<18}{'step s':>8}{'ex/s':>8}{'tok/s':>8}{'rows/step':>10}{'GFLOP/step':>12}"
              f"{'GFLOP/s':>9}{'%fp32pk':>8}{'%bf16pk':>8}{'mem MB':>9}{'+train MB':>10}{'score':>7}{'lenient':>8}"
              f"{'val loss':>9}"]
    for arm in arms:
        r = results[arm]
        achieved = r.get("achieved_flops")
        r["achieved_fraction_of_peak"] = ({d: achieved / own_peaks[arm][d] for d in PEAK_DTYPES}
                                          if achieved else None)
        fraction = r["achieved_fraction_of_peak"] or {}
        lines.append(
            f"{arm:<18}{r['step_s_median']:>8.3f}{r['examples_per_s']:>8.2f}{r['tokens_per_s']:>8.0f}"
            f"{r['computed_positions_per_step']:>10.0f}"
            f"{gflops(r.get('flops_per_step_analytic', 0)):>12}"
            f"{(gflops(achieved) if achieved else '-'):>9}"
            + "".join(f"{(percent(fraction[d]) if achieved else '-'):>8}" for d in PEAK_DTYPES)
            + f"{r['memory']['peak_mb']:>9.0f}{r['memory']['training_extra_mb']:>10.0f}"
            f"{r['eval']['score']:>7.1f}{r['eval']['lenient_score']:>8.1f}{r['eval']['validation_loss']:>9.3f}")
    lines.append("(%fp32pk, %bf16pk: the arm's GFLOP/s over the fp32 and the bf16 matmul peak of its own process)")
    summary = {}
    if "peft-trainer" in results:
        base = results["peft-trainer"]
        lines.append("")
        lines.append(f"peft-trainer pads every example to max_length={base['max_length']} "
                     f"(+{args.n_prompts} virtual tokens); eval on {base['eval']['examples']} validation examples, "
                     f"greedy generation, the task's scorer")
        for arm in arms:
            if arm == "peft-trainer":
                continue
            r = results[arm]
            ratio = r["examples_per_s"] / base["examples_per_s"]
            summary[arm] = {"examples_per_s_ratio": round(ratio, 3),
                            "tokens_per_s_ratio": round(r["tokens_per_s"] / base["tokens_per_s"], 3),
                            "flops_per_step_ratio": round(r.get("flops_per_step_analytic", 0)
                                                          / base["flops_per_step_analytic"], 3),
                            "peak_memory_ratio": round(r["memory"]["peak_mb"] / base["memory"]["peak_mb"], 3),
                            "training_extra_memory_ratio": round(r["memory"]["training_extra_mb"]
                                                                 / max(base["memory"]["training_extra_mb"], 1e-9), 3),
                            "score_delta": round(r["eval"]["score"] - base["eval"]["score"], 2),
                            "lenient_score_delta": round(r["eval"]["lenient_score"] - base["eval"]["lenient_score"], 2),
                            "validation_loss_delta": round(r["eval"]["validation_loss"]
                                                           - base["eval"]["validation_loss"], 4)}
            lines.append(f"{arm} / peft-trainer: examples/s {ratio:.2f}x, tokens/s "
                         f"{summary[arm]['tokens_per_s_ratio']:.2f}x, FLOPs/step {summary[arm]['flops_per_step_ratio']:.2f}x, "
                         f"training memory {summary[arm]['training_extra_memory_ratio']:.2f}x, "
                         f"score {r['eval']['score']:.1f} vs {base['eval']['score']:.1f} "
                         f"(lenient {r['eval']['lenient_score']:.1f} vs {base['eval']['lenient_score']:.1f}, "
                         f"validation loss {r['eval']['validation_loss']:.3f} vs {base['eval']['validation_loss']:.3f})")
    if "ours-simple" in results and "ours-simple-eager" in results:
        compiled, eager = results["ours-simple"], results["ours-simple-eager"]
        summary["compiled_over_eager"] = round(compiled["examples_per_s"] / eager["examples_per_s"], 3)
        lines.append(f"ours-simple / ours-simple-eager: examples/s {summary['compiled_over_eager']:.2f}x "
                     f"(decoder layers {compiled['precision']['decoder_layers']} against eager, steps alternating)")
    for arm in arms:
        r = results[arm]
        if "flops_analytic_counted_batch" in r:
            same = r["flops_analytic_counted_batch"]
            lines.append(f"{arm}: one batch, analytic {gflops(same['total'])} G (linear {gflops(same['linear'])}, "
                         f"attention {gflops(same['attention'])}, LM head {gflops(same['lm_head'])}); torch flop "
                         f"counter {gflops(r['flops_counted_one_step'])} G")
    lines.append("(torch's flop counter does not see the fused CPU attention kernel: compare it with linear + LM head)")

    measured = measured_lines(arms, results, own_peaks, precision, (args.bf16_native, args.bf16_native_why))
    if measured:
        lines += ["", f"ours against peft-trainer and the matmul peaks, measured in this run (every arm {precision}):"]
        lines += [f"  {m['line']}" for m in measured]
    if packing is not None:
        lines += packing_lines(packing)
    lines.append(f"total wall time {time.perf_counter() - started:.0f} s")

    payload = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "args": vars(args),
               "precision": precision, "precision_reason": reason,
               "matmul_peak_flops_median": {d: statistics.median(v for r in results.values()
                                                                 for v in r["matmul_peak_flops"][d])
                                            for d in PEAK_DTYPES},
               "arms": results, "ratios": summary, "measured": measured, "packing": packing}
    out_dir = Path(args.out) if Path(args.out).is_absolute() else REPO / args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench_training.json").write_text(json.dumps(payload, indent=1, default=float) + "\n")
    shown = out_dir.relative_to(REPO) if out_dir.is_relative_to(REPO) else out_dir
    lines.append(f"results: {shown / 'bench_training.json'}")
    print("\n".join(lines))
    if "peft-trainer" in results and "ours-simple" in results:
        print(f"speedup vs peft+trainer: {summary['ours-simple']['examples_per_s_ratio']:.2f}x")
    return 0
