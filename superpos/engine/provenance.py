"""Where and on what a run ran, as its record says it: code (git commit, ``CODE_VERSION``, package versions),
machine (device name, peak memory), data (which examples were scored, how many inputs were cut) and the fast
path's share of the precision note."""
from __future__ import annotations

import platform
import resource
import subprocess
from datetime import datetime, timezone

import torch

from ..config import stable_hash
from ..paths import REPO_ROOT
from .config import CODE_VERSION

TRUNCATION_SAMPLE = 5000  # inputs tokenized per split to measure truncation (all of them in smaller splits)


def git_state() -> dict:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "superpos"))
    return {"commit": commit or None, "dirty": dirty}


def versions() -> dict:
    import transformers

    import superpos

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "superpos": superpos.__version__}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    # The kernel set (AVX2, AVX512, ...) is named: runs on another one round otherwise and part (docs/SPEED.md, §0).
    kernels = torch.backends.cpu.get_cpu_capability()
    return f"cpu ({platform.processor() or platform.machine()}, {kernels} kernels, {torch.get_num_threads()} threads)"


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB; process-wide peak


def provenance(device: torch.device, seed: int, started: datetime, packed_runs: int | None = None) -> dict:
    """The record's ``provenance``: code, versions, device, the packed group's size (when packed), seed, the start
    and (now) the end."""
    return {**git_state(), "code_version": CODE_VERSION, "versions": versions(), "device": device_name(device),
            **({"packed_runs": packed_runs} if packed_runs else {}),
            "seed": seed, "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def examples_fingerprint(dev: list, test: list) -> dict[str, str]:
    """Hashes of the dev and the test examples' ids (and targets): two records with equal fingerprints were
    selected and scored on the same examples, so they compare example by example."""
    def digest(examples: list) -> str:
        return stable_hash([[example.uid, example.target_text] for example in examples])

    return {"dev": digest(dev), "test": digest(test)}


def truncation_rates(backbone, train_examples: list, eval_examples: list, max_input_tokens: int) -> dict:
    """The fraction of training and evaluation inputs longer than ``max_input_tokens`` (cut before the prompt is
    prepended), measured on up to ``TRUNCATION_SAMPLE`` evenly spaced examples of each split."""
    def rate(examples: list) -> float:
        sample = examples[::max(1, -(-len(examples) // TRUNCATION_SAMPLE))]
        return round(backbone.truncated_count([e.input_text for e in sample], max_input_tokens) / len(sample), 4)

    return {"max_input_tokens": max_input_tokens, "train": rate(train_examples), "eval": rate(eval_examples),
            "sampled": min(len(train_examples), TRUNCATION_SAMPLE)}


def fast_path_note(backbone) -> dict:
    """What the record says of the fast path (backbones/fast.py) beyond the dtype: ``decoder_layers`` where the
    fast loss compiled its layers, or tried; ``generation_prefill: "fast path"`` where it computes greedy
    generation's first step (evaluation runs in eval mode, where dropout does not act). Empty where neither
    applies (fp32, CUDA, T5)."""
    from ..backbones import fast

    if backbone.kind != "causal":
        return {}
    note = {}
    if backbone.fast_loss and fast.supported(backbone.model, training=True):
        state = fast.layers_state(backbone.dtype, backbone.device)
        if state != "eager":
            note["decoder_layers"] = state
    if backbone.fast_first_step():
        note["generation_prefill"] = "fast path"
    return note
