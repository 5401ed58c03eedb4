"""Preflight: what a profile needs, checked in minutes before its first run trains.

``make reproduce PROFILE=paper OFFLINE=0`` trains 525 runs, some 650-1,010 GPU-hours (docs/SPEED.md): a dataset
that cannot be had, a results disk that fills up, or an out-of-memory error in its largest packed group would
otherwise show up hours into it. :func:`preflight` checks, in this order, and prints one table (one row per
check, per backbone, per task, per run shape, per notebook), then one line per problem; exit code 0 when all is
well, 1 otherwise:

1. **Backbones**: each one the profile's runs name is loaded as a run loads it (``load_backbone``: from the local
   Hugging Face cache, the hub or the package), on the device, in the run's precision; a backbone that cannot be had
   is its one-line ``BackboneError``.
2. **Tasks**: each task's train and validation splits load (``get_task``; a missing dataset is its one-line
   ``TaskError``, which says where the files go); their example counts stand beside the paper's sizes (the task
   specs' ``sizes``; a difference is a warning: release files may drop a few malformed lines), and the share of
   inputs cut at the runs' ``max_input_tokens`` is measured with each backbone's tokenizer (``truncation_rates``,
   what each record stores as ``data.truncated``; the row shows the largest over backbones).
3. **Disk**: the free space of the file system holding the profile's results store against what its runs not yet
   in the store will write. Each method is built once per configuration on its backbone and its files sized from
   it: the best-point state file exactly (``state_file_bytes``; full fine-tuning keeps none), the prompt file as 2
   prompts (best and last) of n x d float32, the record from its parts (a fixed 16 KiB, 600 B per evaluation
   point, 24 B per loss-curve point, the method's analysis JSON, the test predictions); plus the checkpoints of
   the largest unit that trains at once, each holding the trainable state twice (current and best) and AdamW's
   two moments (trainable parameters x 4 B x 2; full fine-tuning: its weights and their two moments), counted
   twice because a new checkpoint is written before the older one is removed.
4. **Run shapes** (backbone x method x prompt length x input length x runs per group): the profile's packed group
   of R runs (``superpos.engine.packed``, R as ``make reproduce`` would pack them, or ``pack``), each run at the
   profile's batch size, is built from the engine's own :class:`~superpos.engine.train.Trainer` on a temporary
   store (nothing is written into the profile's store), then takes one warm-up step, three timed steps, one step
   on the longest inputs of any task of the shape (each cut at ``max_input_tokens``: the batch a run meets at its
   worst), one evaluation point over one evaluation batch (timed, scored) and one generation over the longest
   evaluation inputs; peak memory is read after all of them. Timings are taken on the task of the shape with
   the most training steps (with dropout where the shape has it on), and stand for every task of the shape. An
   out-of-memory error is one problem line with what to change.
5. **Projection**: each run not yet in the store is charged its steps (its loaded training split, epochs or
   ``max_steps``, batch size: as the Trainer counts them) at its shape's measured time per step and run, and its
   evaluations (points x examples; the test split at every point where it is not the dev split, an upper bound)
   at the measured time per example; GPU-hours sum those, wall time on one device adds the backbone load of
   each packed unit (``plan_units``) and the runs' construction. Per notebook (each notebook's own runs) and in
   total (shared runs once: the notebooks' rows add up to more than the total).

Bad arguments (an unknown profile, ``pack=0``, an unknown device name) raise ``ValueError`` in one line, as
everywhere in the package; what the machine lacks (no GPU behind ``device="cuda"``) is a problem line.
"""
from __future__ import annotations

import dataclasses
import sys
from typing import TextIO

from ..profiles import Profile, get_profile, profile_configs
from .checker import (CURVE_POINT_BYTES, MEMORY_WARNING, POINT_BYTES, RECORD_BASE_BYTES, TIMED_STEPS, TORCH_DTYPES,
                      Checker)
from .data import Data, RunData, eval_points, longest, paper_sizes, run_steps
from .report import Report, Row, duration_text, first_line, hours_text, size_text
from .shapes import Shape, fake_sources, generate_longest, group_trainers, prompt_tokens, release, stepper, sync, timed


def preflight(profile: str | Profile, *, device: str = "auto", pack: int | None = None,
              out: TextIO = sys.stdout) -> int:
    """Check that ``profile`` can run here (module docstring) and print the table to ``out``; 0 when all is well,
    1 when a problem was found. ``profile``: a name or a :class:`~superpos.profiles.Profile`; ``device``: as
    ``RunConfig.device``; ``pack``: runs per packed group as ``make reproduce`` takes it (None: automatic)."""
    from ..config import require
    from ..engine.packed import check_pack
    from ..engine.store import ResultsStore
    from ..backbones import BackboneError, resolve_device
    from ..engine.provenance import device_name
    from ..paths import shown_path, store_dir

    p = get_profile(profile)
    check_pack(pack)
    device = device or "auto"
    require(isinstance(device, str) and (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")), "device",
            f"must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}")
    report = Report()
    root = store_dir(p.name)
    try:
        where = resolve_device(device)
    except BackboneError as error:
        report.problems.append(str(error))
        report.render(out, f"preflight {p.name}: device {device}")
        return 1

    configs = [dataclasses.replace(config, device=device) for config in profile_configs(p)]
    stored = ResultsStore(root, read_only=True)  # read, never written: finished runs need no disk and no time
    remaining = [config for config in configs if not stored.is_done(config.run_hash())]
    if device == "auto" and where.type == "cpu" and "GPU" in p.hardware:
        report.warnings.append(f"torch sees no GPU: every check ran on the CPU, but profile {p.name} is meant for "
                               f"{p.hardware}")
    cuda = where.type == "cuda"
    packing = f"packs of up to {pack}" if pack else ("packs of up to 8 (automatic on CUDA)" if cuda
                                                      else "one run at a time (automatic on the CPU)")
    header = (f"preflight {p.name}: {len(configs)} runs ({len(configs) - len(remaining)} already in "
              f"{shown_path(root)}), on {device_name(where)}, {packing}")

    checker = Checker(p, configs, remaining, where, device, pack, report)
    checker.run(root)
    checker.projection()
    report.render(out, header)
    return 1 if report.problems else 0


__all__ = [
    "preflight", "Checker", "Report", "Row", "Shape", "Data", "RunData", "eval_points", "run_steps", "longest",
    "paper_sizes", "first_line", "size_text", "duration_text", "hours_text", "prompt_tokens", "fake_sources",
    "group_trainers", "stepper", "generate_longest", "sync", "timed", "release", "TIMED_STEPS", "RECORD_BASE_BYTES",
    "POINT_BYTES", "CURVE_POINT_BYTES", "MEMORY_WARNING", "TORCH_DTYPES",
]
