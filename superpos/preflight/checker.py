"""The five checks over one profile's runs (:mod:`superpos.preflight`): backbones, tasks, disk, run shapes and
the projection, as rows and problem lines of one :class:`~.report.Report`."""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from ..profiles import NOTEBOOKS, Profile, profile_configs
from .data import Data, eval_points, paper_sizes, run_steps
from .report import Report, Row, duration_text, first_line, hours_text, size_text
from .shapes import Shape, fake_sources, generate_longest, group_trainers, prompt_tokens, release, stepper, sync, timed

TIMED_STEPS = 3               # timed training steps per run shape, after one warm-up step
RECORD_BASE_BYTES = 16 * 1024  # a record's config, provenance, timing, precision and best point
POINT_BYTES = 600             # one evaluation point in a record's history
CURVE_POINT_BYTES = 24        # one loss-curve point
MEMORY_WARNING = 0.9          # of the device's memory: a peak above it leaves no room for fragmentation
TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class Checker:
    """The five checks over one profile's runs (:mod:`superpos.preflight`), their rows and problems into
    ``report``."""

    def __init__(self, profile: Profile, configs: list, remaining: list, device, device_arg: str, pack: int | None,
                 report: Report):
        self.p, self.configs, self.remaining = profile, configs, remaining
        self.device, self.device_arg, self.pack, self.report = device, device_arg, pack, report
        self.dev_label = str(device)
        self.data = Data()
        self.load_seconds: dict[str, float] = {}
        self.truncation: dict[str, dict[str, dict]] = defaultdict(dict)  # task -> backbone -> rates
        self.files: dict[str, dict] = {}    # run hash -> estimated bytes (state, prompt, record, checkpoint)
        self.shapes: dict[tuple, Shape] = {}

    # -- what runs where
    def shape_of(self, config) -> Shape:
        from ..engine.packed import group_size, pack_key

        key = (config.backbone, config.method, prompt_tokens(config), config.max_input_tokens,
               group_size(pack_key(config), self.pack))
        if key not in self.shapes:
            self.shapes[key] = Shape(*key)
        return self.shapes[key]

    def run(self, root: Path) -> None:
        """Checks 1 to 4: tasks first, then backbone by backbone (one model in memory at a time, as in a run);
        the rows in the checks' order."""
        from tqdm import tqdm  # the plain bar: tqdm.auto wants ipywidgets in a notebook and warns without it

        from ..engine.console import tqdm_disabled

        tasks = list(dict.fromkeys([t for t in self.p.tasks if any(c.task == t for c in self.configs)]
                                   + [c.task for c in self.configs]))
        backbones = list(dict.fromkeys(config.backbone for config in self.configs))
        for config in self.configs:
            self.shape_of(config).configs.append(config)
        bar = tqdm(total=len(tasks) + len(backbones) + len(self.shapes), desc="preflight", leave=False,
                   file=sys.stderr, dynamic_ncols=True, disable=tqdm_disabled())
        try:
            for name in tasks:  # data first: a missing dataset is known before any model loads
                bar.set_postfix_str(name, refresh=True)
                self.data.load(name)
                bar.update(1)
            backbone_rows, shape_rows = [], []
            for name in backbones:
                bar.set_postfix_str(name, refresh=True)
                shape_rows += self.backbone(name, backbone_rows, bar)
        finally:
            bar.close()
        self.report.rows += backbone_rows
        self.task_rows(tasks)
        self.disk(root)
        self.report.rows += shape_rows

    # -- check 1 (and the checks that need the backbone: truncation, file sizes, shapes)
    def load(self, name: str, dtype: str):
        from ..backbones import load_backbone

        started = time.perf_counter()
        backbone = load_backbone(name, device=str(self.device), dtype=dtype)
        sync(self.device)
        self.load_seconds.setdefault(name, time.perf_counter() - started)
        return backbone

    def backbone(self, name: str, rows: list, bar) -> list[Row]:
        import torch

        from ..backbones.precision import resolve_precision

        own = [config for config in self.configs if config.backbone == name]
        shapes = sorted({id(s): s for s in map(self.shape_of, own)}.values(),
                        key=lambda s: (s.method == "full", s.method, s.input_tokens, s.prompt_tokens))
        prompt_config = next((c for c in own if c.method != "full"), own[0])
        precision = resolve_precision(prompt_config.dtype, self.device)[0]
        dtype = precision if prompt_config.method != "full" else "fp32"
        try:
            backbone = self.load(name, dtype)
        except Exception as error:  # BackboneError: one line already; anything else made one
            message = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {first_line(error)}"
            self.report.problems.append(message if name in message else f"backbone {name}: {message}")
            rows.append(Row("backbone", name, self.dev_label, "missing", "cannot be loaded (see problems)"))
            for shape in shapes:
                shape.failed = "its backbone did not load"
                bar.update(1)
            bar.update(1)
            return [Row("step", shape.label, self.dev_label, "skipped", "its backbone did not load")
                    for shape in shapes]
        rows.append(Row("backbone", name, self.dev_label, "ok",
                        f"loaded in {self.load_seconds[name]:.1f} s: {str(backbone.dtype).replace('torch.', '')}, "
                        f"{backbone.parameter_count() / 1e6:,.1f}M parameters, d={backbone.embed_dim} "
                        f"({backbone.source})"))
        bar.update(1)
        self.measure_truncation(name, backbone, own)
        self.estimate_files(backbone, own)
        shape_rows = []
        for shape in shapes:
            bar.set_postfix_str(shape.label, refresh=True)
            wanted = "fp32" if shape.method == "full" else precision
            if backbone.dtype != getattr(torch, TORCH_DTYPES[wanted]):
                del backbone  # full fine-tuning keeps fp32 weights: a model of its own, as its run loads it
                release(self.device)
                backbone = self.load(name, wanted)
            shape_rows.append(self.measure(shape, backbone))
            bar.update(1)
        del backbone
        release(self.device)
        return shape_rows

    # -- check 2
    def measure_truncation(self, name: str, backbone, own: list) -> None:
        from ..engine.provenance import truncation_rates

        seen = set()
        for config in own:
            data = self.data.run(config)
            if data is None or (config.task, config.max_input_tokens) in seen:
                continue
            seen.add((config.task, config.max_input_tokens))
            rates = truncation_rates(backbone, data.splits.train, data.splits.dev, config.max_input_tokens)
            self.truncation[config.task].setdefault(name, rates)

    def task_rows(self, tasks: list[str]) -> None:
        for name in tasks:
            if name in self.data.failed:
                self.report.problems.append(self.data.failed[name])
                self.report.add("task", name, "host", "missing", "does not load (see problems)")
                continue
            task = self.data.tasks[name]
            train, validation = len(task.examples("train")), len(task.examples("validation"))
            expected = paper_sizes(name)
            counts = f"train {train:,}, validation {validation:,}"
            status = "ok"
            if expected is not None:
                counts = f"train {train:,} of {expected[0]:,}, validation {validation:,} of {expected[1]:,}"
                if (train, validation) != expected:
                    status = "sizes"
                    self.report.warnings.append(
                        f"{name}: {train:,} training and {validation:,} validation examples, the paper's "
                        f"{expected[0]:,} and {expected[1]:,} (from {task.source('train')}); a partial or other copy?")
            rates = self.truncation.get(name, {})
            if rates:
                limit = max(r["max_input_tokens"] for r in rates.values())
                cut = (f"; cut at {limit} tokens: train {max(r['train'] for r in rates.values()):.1%}, "
                       f"eval {max(r['eval'] for r in rates.values()):.1%}"
                       + (f" (largest of {len(rates)} tokenizers)" if len(rates) > 1 else ""))
            else:
                cut = "; cut share not measured (no backbone loaded)"
            self.report.add("task", name, "host", status, counts + cut)

    # -- check 3
    def estimate_files(self, backbone, own: list) -> None:
        """Bytes each of this backbone's remaining runs writes (:mod:`superpos.preflight`, check 3)."""
        from ..methods import METHODS, build_method

        remaining = {config.run_hash() for config in self.remaining}
        built: dict[str, dict] = {}
        for config in own:
            run_hash = config.run_hash()
            if run_hash not in remaining:
                continue
            key = json.dumps([config.method, config.method_config, config.task if config.method_config.get("init")
                              == "labels" else None], sort_keys=True, default=str)
            if key not in built:
                if config.method == "full":  # no state file, no prompt; a checkpoint: the weights and 2 moments
                    weights = backbone.parameter_count() * 4
                    built[key] = {"state": 0, "prompt": 0, "analysis": 0, "trainable": 3 * weights}
                else:
                    task = self.data.tasks.get(config.task)
                    try:
                        method = build_method(METHODS[config.method][0].from_dict(config.method_config), backbone,
                                              label_words=task.label_words if task is not None else None,
                                              source_prompts=fake_sources(config, backbone), seed=config.seed)
                    except Exception:  # e.g. label-word init without its task's data: this run stays unsized
                        continue
                    state = method.trainable_state()
                    try:
                        prompt = 2 * method.export_prompt().numel() * 4 + 256
                    except NotImplementedError:  # ATTEMPT, EPT: no single prompt, no prompt file
                        prompt = 0
                    built[key] = {"state": len(method.state_file_bytes()), "prompt": prompt,
                                  "analysis": len(json.dumps(method.analysis_state(), default=str)),
                                  "trainable": sum(v.numel() * v.element_size() for v in state.values())
                                  + 2 * method.trainable_parameter_count() * 4}
                    del method
            sizes = built[key]
            train, dev, test, dev_is_test = self.data.counts(config)
            total, per_epoch = run_steps(config, train)
            points = eval_points(total, per_epoch, config.eval_every)
            data = self.data.run(config)
            target_chars = data.target_chars if data is not None else 16
            record = (RECORD_BASE_BYTES + points * POINT_BYTES + min(total, 800) * CURVE_POINT_BYTES
                      + sizes["analysis"] + test * (target_chars + 4))
            # a checkpoint: the state (current and best, where kept), AdamW's moments, and progress.json (~ record)
            self.files[run_hash] = {"state": sizes["state"], "prompt": sizes["prompt"], "record": record,
                                    "checkpoint": sizes["trainable"] + sizes["state"] + record}

    def disk(self, root: Path) -> None:
        from ..engine.packed import plan_units
        from ..paths import shown_path

        where = root
        while not where.exists() and where != where.parent:
            where = where.parent
        free = shutil.disk_usage(where).free
        known = [self.files[c.run_hash()] for c in self.remaining if c.run_hash() in self.files]
        totals = {part: sum(f[part] for f in known) for part in ("state", "prompt", "record")}
        concurrent = 0
        for unit in plan_units(self.remaining, self.pack):
            hashes = [self.remaining[i].run_hash() for i in unit]
            concurrent = max(concurrent, 2 * sum(self.files.get(h, {}).get("checkpoint", 0) for h in hashes))
        need = sum(totals.values()) + concurrent
        unsized = len(self.remaining) - len(known)
        measured = (f"free {size_text(free)}, needs ~{size_text(need)} for {len(self.remaining)} runs: states "
                    f"{size_text(totals['state'])}, prompts {size_text(totals['prompt'])}, records "
                    f"{size_text(totals['record'])}, checkpoints of one unit {size_text(concurrent)}"
                    + (f"; {unsized} runs not sized (their backbone or task did not load)" if unsized else ""))
        ok = free >= need
        self.report.add("disk", shown_path(root), "host", "ok" if ok else "short", measured)
        if not ok:
            self.report.problems.append(
                f"disk: {shown_path(where)} has {size_text(free)} free, the runs need ~{size_text(need)}; free "
                "space there, or point SUPERPOS_RESULTS at a larger disk")

    # -- check 4
    def measure(self, shape: Shape, backbone) -> Row:
        """One packed group of the shape: warm-up, timed steps, the worst batch, one evaluation batch, the
        longest evaluation inputs; the shape's row (a problem line where it fails)."""
        import torch

        from ..engine.store import ResultsStore
        from ..engine.provenance import peak_memory_mb

        loaded = [c for c in shape.configs if self.data.run(c) is not None]
        if not loaded:
            shape.failed = "none of its tasks loaded"
            return Row("step", shape.label, self.dev_label, "skipped", "none of its tasks loaded")
        steps: dict[str, int] = defaultdict(int)
        for config in loaded:
            steps[config.task] += run_steps(config, self.data.run(config).train)[0]
        timing_task = max(steps, key=steps.get)
        # dropout on keeps masks for the backward: the heavier setting, where the shape has it
        rep = max((c for c in loaded if c.task == timing_task), key=lambda c: c.dropout)
        worst = max(loaded, key=lambda c: max((len(e.input_text) for e in self.data.run(c).longest_train), default=0))
        worst_train, worst_dev = self.data.run(worst).longest_train, self.data.run(worst).longest_dev
        cuda = self.device.type == "cuda"
        trainers = group = step = trainer = None
        with tempfile.TemporaryDirectory(prefix="superpos-preflight-") as scratch:
            try:
                backbone.set_dropout(rep.dropout, rep.dropout_rate)
                if cuda:
                    torch.cuda.reset_peak_memory_stats(self.device)
                started = time.perf_counter()
                trainers = group_trainers(rep, shape.group, backbone, ResultsStore(scratch))
                shape.build_s = time.perf_counter() - started
                group, step = stepper(trainers)
                step()  # warm-up: kernels, allocator, compilation
                times = sorted(timed(self.device, step) for _ in range(TIMED_STEPS))
                for trainer in trainers:  # the longest inputs of any task of the shape, cut as a run cuts them
                    trainer.batch_at = lambda index, rows=worst_train: rows
                worst_s = timed(self.device, step)
                for trainer in trainers:
                    del trainer.batch_at
                    trainer.dev_examples = trainer.test_examples = trainer.dev_examples[:rep.eval_batch_size]
                examples = len(trainers[0].dev_examples)
                eval_s = timed(self.device, lambda: group.evaluate(trainers) if group else trainers[0].evaluate_point())
                worst_eval_s = timed(self.device, lambda: generate_longest(trainers, worst_dev))
                peak = peak_memory_mb(self.device)
                reserved = torch.cuda.max_memory_reserved(self.device) if cuda else 0
            except torch.OutOfMemoryError as error:
                trainers = group = step = None
                shape.failed = "out of memory"
                advice = (f"pack fewer runs (--pack {max(1, shape.group // 2)}; make reproduce PACK="
                          f"{max(1, shape.group // 2)})" if shape.group > 1 else
                          "it runs alone: it needs a device with more memory, or a smaller batch_size")
                self.report.problems.append(
                    f"{shape.label} on {self.device}: out of memory at {shape.group} x {rep.batch_size} rows of up to "
                    f"{shape.input_tokens}+{shape.prompt_tokens} tokens ({first_line(error)[:120]}); {advice}")
                return Row("step", shape.label, self.dev_label, "OOM", "out of memory (see problems)")
            except Exception as error:  # a run of this shape would fail the same way: one line, no traceback
                trainers = group = step = None
                shape.failed = type(error).__name__
                self.report.problems.append(f"{shape.label} on {self.device}: {type(error).__name__}: "
                                            f"{first_line(error)}")
                return Row("step", shape.label, self.dev_label, "failed", "failed (see problems)")
            finally:
                trainers = group = step = trainer = None  # the closures and the loop variable hold them too
                release(self.device)
        step_s = times[len(times) // 2]
        shape.step_s = step_s
        shape.eval_s_per_example = eval_s / (shape.group * max(1, examples))
        if cuda:
            total = torch.cuda.get_device_properties(self.device).total_memory
            memory = f"peak {peak / 1024:,.1f} of {total / 2**30:,.1f} GiB"
            if reserved > MEMORY_WARNING * total:
                self.report.warnings.append(
                    f"{shape.label}: the allocator held {reserved / 2**30:,.1f} of {total / 2**30:,.1f} GiB at its "
                    "peak: a longer run may fragment into an out-of-memory error; consider a smaller --pack")
        else:
            memory = f"peak {peak:,.0f} MiB (process)"
        runs = f"{shape.group} x " if shape.group > 1 else ""
        return Row("step", shape.label, self.dev_label, "ok",
                   f"{runs}batch {rep.batch_size} of {timing_task}: {step_s:.3f} s/step, longest inputs ({worst.task}) "
                   f"{worst_s:.3f} s; eval {runs}{examples}: {eval_s:.3f} s, longest {worst_eval_s:.3f} s; {memory}")

    # -- check 5
    def cost(self, config) -> tuple[float, float, int] | None:
        """``(training seconds, evaluation seconds, steps)`` of one run at its shape's measured rates."""
        shape = self.shape_of(config)
        if shape.step_s is None:
            return None
        train, dev, test, dev_is_test = self.data.counts(config)
        total, per_epoch = run_steps(config, train)
        points = eval_points(total, per_epoch, config.eval_every)
        examples = points * (dev + (0 if dev_is_test else test))
        return total * shape.step_s / shape.group, examples * shape.eval_s_per_example, total

    def projection(self) -> None:
        from ..engine.packed import plan_units

        unit = "GPU-h" if self.device.type == "cuda" else "CPU-h"
        remaining = {config.run_hash() for config in self.remaining}
        groups = [(name, [c for c in self.profile_configs(name) if c.run_hash() in remaining]) for name in NOTEBOOKS]
        groups.append(("total", self.remaining))
        for name, configs in groups:
            costs = [self.cost(config) for config in configs]
            known = [c for c in costs if c is not None]
            train = sum(c[0] for c in known)
            evaluation = sum(c[1] for c in known)
            steps = sum(c[2] for c in known)
            # wall time on one device: each unit loads its backbone, each run builds its method and data
            overhead = sum(self.load_seconds.get(configs[u[0]].backbone, 0.0) for u in plan_units(configs, self.pack))
            overhead += sum(self.shape_of(c).build_s / self.shape_of(c).group for c in configs)
            missing = len(costs) - len(known)
            status = "ok" if not missing else "partial"
            text = (f"{len(configs)} runs, {steps:,} steps: {hours_text(train + evaluation)} {unit} "
                    f"(training {hours_text(train)}, evaluation {hours_text(evaluation)}), wall "
                    f"{duration_text(train + evaluation + overhead)} on one device")
            if missing:
                text += f"; {missing} runs not projected (their shape was not measured)"
            self.report.add("project", name, self.dev_label, status, text)

    def profile_configs(self, notebook: str) -> list:
        return [dataclasses.replace(c, device=self.device_arg) for c in profile_configs(self.p, [notebook])]
