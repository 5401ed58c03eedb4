"""Checkpoints: everything a run needs to resume, written at every evaluation point and on Ctrl-C, and checked
before it is used.

A checkpoint is one folder ``step-<N>/`` (``state.pt``: tensors; ``progress.json``: the trainer's other mutable
state) published by one rename (:meth:`~superpos.engine.store.ResultsStore.write_checkpoint`). It is checked
against the run (configuration, format, steps of its two files, the shape of every progress field, a checksum of
both files' contents, tensor shapes) before it is used: one that does not fit is set aside in one line and the run
resumes from an older one or starts over.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
from typing import Any

import torch

from .files import note

#: Layout of a checkpoint's files; a checkpoint of another format is set aside, never guessed at.
CHECKPOINT_FORMAT = 3
#: The trainer's mutable state kept in ``progress.json``, with the JSON types each field must have.
PROGRESS_FIELDS = {"step": int, "history": list, "loss_curve": list, "best": (dict, type(None)),
                   "best_lenient": (dict, type(None)), "best_predictions": (list, type(None)),
                   "train_seconds": (int, float), "eval_seconds": (int, float), "train_tokens": int,
                   "pending_loss": list}


class Checkpoints:
    """The checkpoint half of :class:`~superpos.engine.train.Trainer`: write, check, load and resume. It reads the
    trainer's ``store``, ``run_hash``, ``config``, ``method``, ``optimizer``, ``device``, ``total_steps``,
    ``log_every``, ``best_state`` and :data:`PROGRESS_FIELDS`, and calls its ``build`` to start over."""

    def eval_buffers(self) -> dict[str, torch.Tensor]:
        """The method's non-persistent buffers (statistics of evaluation passes, e.g. ATTEMPT's mean
        attention): not part of its state, but of a checkpoint, so a resumed run's analysis is the same."""
        persistent = set(self.method.state_dict())
        return {name: value.detach().cpu().clone() for name, value in self.method.named_buffers()
                if name not in persistent}

    def save_checkpoint(self, *, keep_older: bool = False) -> None:
        """Write the trainer's whole mutable state as the checkpoint of this step (one atomic unit); the older
        checkpoints go, unless ``keep_older`` (a packed group keeps them until all its runs saved this step)."""
        tensors = {"format": CHECKPOINT_FORMAT, "hash": self.run_hash, "step": self.step,
                   "method": self.method.trainable_state(), "buffers": self.eval_buffers(),
                   "best_state": self.best_state, "optimizer": self.optimizer.state_dict(),
                   **rng_state(self.device)}
        buffer = io.BytesIO()
        torch.save(tensors, buffer)
        progress = {key: getattr(self, key) for key in PROGRESS_FIELDS}
        progress.update({"format": CHECKPOINT_FORMAT, "hash": self.run_hash, "config": self.config.to_dict()})
        state = buffer.getvalue()
        progress["checksum"] = checkpoint_checksum(progress, state)
        files = {"state.pt": state, "progress.json": (json.dumps(progress, indent=1, sort_keys=True) + "\n").encode()}
        self.store.write_checkpoint(self.run_hash, self.step, files, keep_older=keep_older)

    def prepare_resume(self) -> list[int]:
        """Clear what a kill left beside the checkpoints; the steps of the published ones, newest first."""
        self.store.clean_checkpoint_leftovers(self.run_hash)  # this process holds the run's lock
        self.store.prepare_checkpoints(self.run_hash)  # files where folders should be: set aside, one line each
        self.drop_old_layout()
        return [step for step, _ in self.store.checkpoints(self.run_hash)]

    def resume(self, at_most: int | None = None, prepared: bool = False) -> bool:
        """Load the newest checkpoint that fits this run (of step ``at_most`` or earlier, when given: a packed
        group resumes all its runs at one step); set aside, in one line each, those that do not fit.
        ``prepared``: :meth:`prepare_resume` already ran (a packed group calls it to find the common step).

        True when the run resumed; False when it starts over (the trainer is then as freshly built).
        """
        if not prepared:
            self.prepare_resume()
        for step, folder in self.store.checkpoints(self.run_hash):
            if at_most is not None and step > at_most:
                continue
            try:
                progress = json.loads((folder / "progress.json").read_text())
                state = (folder / "state.pt").read_bytes()
                tensors = torch.load(io.BytesIO(state), map_location="cpu", weights_only=True)
                problem = self.checkpoint_problem(step, progress, tensors, state)
            except Exception as error:  # a damaged file fails in many ways; each one means "unusable"
                problem = f"unreadable: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            if problem is None:
                try:
                    self.load_checkpoint(progress, tensors)
                    return True
                except Exception as error:  # passed the checks but did not load: back to a fresh start
                    problem = f"does not load: {type(error).__name__}: {error}"
                    self.build()
            self.store.reject_checkpoint(folder, problem)
        return False

    def drop_old_layout(self) -> None:
        """A checkpoint of older code (``state.pt`` and ``progress.json`` written one after the other, no step
        in the state) cannot be checked for a torn write: it is removed and the run starts over."""
        folder = self.store.checkpoint_dir(self.run_hash)
        old = [folder / name for name in ("state.pt", "progress.json") if (folder / name).is_file()]
        if old:
            note(f"checkpoint {folder.name} was written by older code and cannot be checked; the run starts over")
            for path in old:
                path.unlink(missing_ok=True)

    def checkpoint_problem(self, step: int, progress: Any, tensors: Any, state: bytes | None = None) -> str | None:
        """Why a checkpoint (its ``progress.json`` and ``state.pt``, whose bytes are ``state``) does not fit this
        run, or None: its format, run and configuration, the shape of every field of its progress
        (:func:`progress_problem`), its steps, its checksum (when ``state`` is given), its tensors."""
        if not isinstance(progress, dict) or not isinstance(tensors, dict):
            return "not a checkpoint"
        if progress.get("format") != CHECKPOINT_FORMAT or tensors.get("format") != CHECKPOINT_FORMAT:
            return "another checkpoint format"
        if progress.get("hash") != self.run_hash or tensors.get("hash") != self.run_hash \
                or progress.get("config") != self.config.to_dict():
            return "it belongs to another run configuration"
        for key, kinds in PROGRESS_FIELDS.items():
            if not isinstance(progress.get(key), kinds) or isinstance(progress.get(key), bool):
                return f"progress.json has no valid {key!r}"
        if not progress["step"] == tensors.get("step") == step:
            return f"its files are of steps {progress['step']} and {tensors.get('step')}, its name says {step}"
        if not 0 < step <= self.total_steps:
            return f"step {step} is outside this run's {self.total_steps} steps"
        problem = progress_problem(progress, self.log_every, self.total_steps)
        if problem is not None:
            return f"progress.json: {problem}"
        # (a checkpoint written before checksums were, without one, is checked by all the rest)
        if state is not None and "checksum" in progress and progress["checksum"] != checkpoint_checksum(progress,
                                                                                                       state):
            return "its checksum does not match its contents (edited or damaged)"
        own = self.method.trainable_state()
        problem = tensor_dict_problem(tensors.get("method"), own, "method state")
        problem = problem or tensor_dict_problem(tensors.get("buffers"), self.eval_buffers(), "evaluation buffers")
        if self.method.keeps_best_state and (progress["best"] is None) != (tensors.get("best_state") is None):
            problem = problem or "its best point and best state disagree"
        if tensors.get("best_state") is not None:
            problem = problem or tensor_dict_problem(tensors["best_state"], own, "best state")
        return problem or optimizer_problem(tensors.get("optimizer"), self.optimizer)

    def load_checkpoint(self, progress: dict, tensors: dict) -> None:
        """Put a checked checkpoint's state into the method, the optimizer, the RNGs and the trainer."""
        self.method.load_trainable_state(tensors["method"])
        for name, value in tensors["buffers"].items():
            self.method.get_buffer(name).copy_(value)
        self.optimizer.load_state_dict(tensors["optimizer"])
        set_rng_state(tensors, self.device)
        for key in PROGRESS_FIELDS:
            setattr(self, key, progress[key])
        self.best_state = tensors["best_state"]


def rng_state(device: torch.device) -> dict:
    """The random streams a step draws from (dropout, data order): the CPU's, and the GPUs' on ``device`` cuda."""
    return {"rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None}


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restore what :func:`rng_state` returned (the GPUs' streams only on a cuda ``device``)."""
    torch.set_rng_state(state["rng"])
    if state.get("cuda_rng") is not None and device.type == "cuda":
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def checkpoint_checksum(progress: dict, state: bytes) -> str:
    """SHA-256 over a checkpoint's ``state.pt`` bytes and its ``progress.json`` fields (but ``checksum``), in
    canonical JSON: written into ``progress.json``, so an edited value in either file is caught on resume. (JSON
    numbers read back as the same floats, so the canonical text of what was written and what is read is one.)"""
    body = json.dumps({key: value for key, value in progress.items() if key != "checksum"}, sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(hashlib.sha256(state).digest() + body.encode()).hexdigest()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def point_problem(point: Any, what: str) -> str | None:
    """Why ``point`` is not an evaluation point as the trainer writes them (``dev_point``), or None."""
    if not isinstance(point, dict):
        return f"{what} is not an evaluation point"
    if not _count(point.get("step")) or point["step"] < 1:
        return f"{what} has no valid 'step'"
    for key in ("epoch", "score", "lenient_score", "invalid_rate"):
        if not _number(point.get(key)):
            return f"{what} has no valid {key!r}"
    if not isinstance(point.get("dagger"), bool):
        return f"{what} has no valid 'dagger'"
    for key in ("metrics", "lenient"):
        if not isinstance(point.get(key), dict) or not all(_number(v) for v in point[key].values()):
            return f"{what} has no valid {key!r}"
    return None


def progress_problem(progress: dict, log_every: int, total_steps: int) -> str | None:
    """Why a checkpoint's ``progress`` (its fields' types already checked) is not what the trainer writes at its
    step, or None: every evaluation point an evaluation point, in step order and before the step; the best points
    among them; the loss curve's ``[step, loss]`` pairs, one per ``log_every`` steps, with ``pending_loss`` the
    finite losses since its last one; times and counts non-negative."""
    step = progress["step"]
    steps = []
    for index, point in enumerate(progress["history"]):
        problem = point_problem(point, f"history[{index}]")
        if problem is not None:
            return problem
        steps.append(point["step"])
    if steps != sorted(set(steps)) or (steps and steps[-1] > step):
        return "the history's steps are out of order or past the checkpoint's step"
    for key in ("best", "best_lenient"):
        best = progress[key]
        if best is None:
            if steps:
                return f"{key!r} is missing though the history has evaluation points"
            continue
        if not _count(best.get("step")) or not _number(best.get("epoch")):
            return f"{key!r} has no valid step or epoch"
        problem = point_problem(best.get("dev"), f"{key}.dev") or point_problem(best.get("test"), f"{key}.test")
        if problem is not None:
            return problem
        if best["step"] not in steps or best["dev"]["step"] != best["step"]:
            return f"{key!r} is not one of the history's evaluation points"
    predictions = progress["best_predictions"]
    if (predictions is None) != (progress["best"] is None) or \
            (predictions is not None and not all(isinstance(text, str) for text in predictions)):
        return "'best_predictions' are not the best point's texts"
    curve = progress["loss_curve"]
    logged = list(range(log_every, step + 1, log_every))  # end_step's points up to this step (and the last step)
    if step == total_steps and step % log_every:
        logged.append(step)
    if len(curve) != len(logged):
        return f"the loss curve has {len(curve)} points, not the {len(logged)} of {step} steps"
    for index, (pair, at) in enumerate(zip(curve, logged)):
        if not (isinstance(pair, list) and len(pair) == 2 and _count(pair[0]) and _number(pair[1])
                and math.isfinite(pair[1]) and pair[0] == at):
            return f"loss_curve[{index}] is not a [step, loss] pair of this run"
    pending = progress["pending_loss"]
    unlogged = 0 if step == total_steps else step % log_every
    if len(pending) != unlogged or not all(_number(v) and math.isfinite(v) for v in pending):
        return "'pending_loss' is not the finite losses since the loss curve's last point"
    for key in ("train_seconds", "eval_seconds"):
        if not (math.isfinite(progress[key]) and progress[key] >= 0):
            return f"{key!r} is not a non-negative number"
    if progress["train_tokens"] < 0:
        return "'train_tokens' is negative"
    return None


def tensor_dict_problem(saved: Any, own: dict[str, torch.Tensor], what: str) -> str | None:
    """Why ``saved`` is not a state with ``own``'s names, shapes and dtypes (None when it is)."""
    if not isinstance(saved, dict) or set(saved) != set(own):
        return f"its {what} names other tensors"
    for key, value in saved.items():
        if not isinstance(value, torch.Tensor) or value.shape != own[key].shape or value.dtype != own[key].dtype:
            return f"its {what} {key!r} does not fit (different config or backbone?)"
    return None


def optimizer_problem(saved: Any, optimizer: torch.optim.Optimizer) -> str | None:
    """Why ``saved`` is not a state of ``optimizer`` (same groups, same parameter shapes), or None."""
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(groups, list) or not isinstance(saved.get("state"), dict) \
            or len(groups) != len(optimizer.param_groups):
        return "its optimizer state does not fit"
    shapes = {}
    for group, own in zip(groups, optimizer.param_groups):
        if not isinstance(group, dict) or len(group.get("params", ())) != len(own["params"]):
            return "its optimizer state does not fit"
        shapes.update({index: param.shape for index, param in zip(group["params"], own["params"])})
    for index, state in saved["state"].items():
        if index not in shapes or not isinstance(state, dict):
            return "its optimizer state does not fit"
        for key in ("exp_avg", "exp_avg_sq"):
            if not isinstance(state.get(key), torch.Tensor) or state[key].shape != shapes[index]:
                return "its optimizer state does not fit"
    return None
