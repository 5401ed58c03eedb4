"""The results store: one JSON record per run, named by a stable hash of its full configuration.

Layout under a store root (``results/<profile>/``)::

    records/<hash>.json            the finished run (status done or failed)
    prompts/<hash>.safetensors     the exported prompt [n, d]: ``prompt`` at the best evaluation point (the one
                                   the record's scores come from) and ``last`` at the final step
    states/<hash>.safetensors      the method's trainable state at the best evaluation point, with what
                                   rebuilds the method in its metadata (``superpos.methods.load_method``)
    checkpoints/<hash>/step-<N>/   an unfinished run's newest checkpoint (removed when the run finishes)
    locks/<hash>.lock              held by the one process that trains the run (its pid, host, start)

Every file is written to a temporary name in its folder, fsynced and renamed into place, so a crash never
leaves a half-written file under a real name; a checkpoint is a folder written the same way and published by
one rename, so its files always belong to the same step. A record that does not parse, or does not have a
record's shape, is reported in one line, set aside as ``<hash>.json.corrupt`` (``.corrupt.1``, ... when
that name is taken) and treated as missing; in a store that cannot be written it is reported and left.
Reading never needs write access. Paths are built from run hashes only (16 hex digits, :func:`check_run_hash`),
so no name reaches outside the store. A lock path that is a folder, or a ``locks``/``checkpoints`` that is a file,
is one line (:class:`StoreError`), never a traceback; a file where a checkpoint folder should be is set aside.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..paths import store_dir
from .files import StoreError, atomic_write_folder, atomic_write_json, is_stale_temp, note, set_aside
from .lock import RunLock

RECORD_STATUSES = ("done", "failed")
CHECKPOINT_PREFIX = "step-"
#: What a run hash looks like (:func:`stable_hash`'s 16 hex digits): the only names the store builds paths from.
RUN_HASH = re.compile(r"[0-9a-f]{16}")
#: How often a process waiting for another one's run looks at the lock again (seconds).
LOCK_POLL_SECONDS = 0.5


def is_run_hash(name: object) -> bool:
    """Whether ``name`` has a run hash's form (16 lowercase hex digits)."""
    return isinstance(name, str) and RUN_HASH.fullmatch(name) is not None


def check_run_hash(name: object, what: str = "run hash") -> str:
    """``name`` when it has a run hash's form, else :class:`StoreError` in one line: paths in the store are built
    from run hashes only, so that no name (``../other/records/<hash>``) can reach outside it."""
    if not is_run_hash(name):
        shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:77] + "..."
        raise StoreError(f"{what}: {shown} is not a run hash (16 hex digits, as `python -m superpos run` prints "
                         "them and records are named)")
    return name


# ---------------------------------------------------------------- record schema
def record_problem(record: Any, run_hash: str) -> str | None:
    """Why ``record`` is not a usable record of ``run_hash`` (None when it is)."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("hash") != run_hash:
        return f"it names hash {record.get('hash')!r}"
    if record.get("status") not in RECORD_STATUSES:
        return f"unknown status {record.get('status')!r}"
    config = record.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("method"), str) or not isinstance(config.get("task"), str):
        return "no run config"
    best = record.get("best")
    if best is not None and not (isinstance(best, dict) and isinstance(best.get("dev", {}), dict)
                                 and isinstance(best.get("test", {}), dict)):
        return "'best' is not an evaluation point"
    if record["status"] == "done" and not (isinstance(best, dict) and isinstance(best.get("dev"), dict)
                                           and isinstance(best.get("test"), dict)):
        return "a done record without a best point (dev and test)"
    for key in ("history", "loss_curve"):
        if not isinstance(record.get(key, []), list):
            return f"'{key}' is not a list"
    for key in ("prompt_path", "state_path"):
        if record.get(key) is not None and not isinstance(record[key], str):
            return f"'{key}' is not a path"
    return None


# ---------------------------------------------------------------- the store
class ResultsStore:
    """Records, prompts, best-point states and checkpoints of one profile (its working store,
    :func:`superpos.paths.store_dir`) or of any folder. ``read_only``: a store only read (a committed reference):
    a damaged record there is reported and left in place, never moved."""

    def __init__(self, root: str | Path | None = None, *, profile: str | None = None, read_only: bool = False):
        if root is None:
            root = store_dir("default" if profile is None else profile)
        if not str(root).strip():  # Path("") is the working directory: never a store by accident
            raise StoreError("results folder: an empty path; name a folder")
        self.root = Path(root)
        self.read_only = read_only
        self.records_dir = self.root / "records"
        self.prompts_dir = self.root / "prompts"
        self.states_dir = self.root / "states"
        self.checkpoints_dir = self.root / "checkpoints"
        self.locks_dir = self.root / "locks"

    def ensure_writable(self) -> None:
        """Fail early, in one line, when the store cannot be written."""
        try:
            self.records_dir.mkdir(parents=True, exist_ok=True)
            probe = self.records_dir / f".write-probe-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as error:
            raise StoreError(f"results folder {self.root} is not writable ({error.strerror or error})") from None

    # -- names (from run hashes only: see check_run_hash)
    def record_path(self, run_hash: str) -> Path:
        return self.records_dir / f"{check_run_hash(run_hash)}.json"

    def prompt_path(self, run_hash: str) -> Path:
        return self.prompts_dir / f"{check_run_hash(run_hash)}.safetensors"

    def state_path(self, run_hash: str) -> Path:
        return self.states_dir / f"{check_run_hash(run_hash)}.safetensors"

    def checkpoint_dir(self, run_hash: str) -> Path:
        return self.checkpoints_dir / check_run_hash(run_hash)

    def lock_path(self, run_hash: str) -> Path:
        return self.locks_dir / f"{check_run_hash(run_hash)}.lock"

    # -- records
    def get(self, run_hash: str) -> dict | None:
        """The stored record, or None if absent. A damaged one is reported, set aside, and treated as absent.
        ``run_hash`` must have a run hash's form (:class:`StoreError` otherwise): nothing outside the store is read."""
        path = self.record_path(run_hash)
        try:
            text = path.read_text()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as error:
            raise StoreError(f"record {path} cannot be read ({error.strerror or error})") from None
        try:
            record = json.loads(text)
        except ValueError as error:  # UnicodeDecodeError included
            problem = f"not JSON: {error}"
        else:
            problem = record_problem(record, run_hash)
            if problem is None:
                return record
        self._set_aside_record(path, problem)
        return None

    def _set_aside_record(self, path: Path, problem: str) -> None:
        if self.read_only:
            note(f"corrupt record {path.name} ({problem}); left in place in {self.root}, read as missing")
            return
        try:
            aside = set_aside(path, ".corrupt")
        except FileNotFoundError:  # another process set it aside first
            return
        except OSError as error:
            note(f"corrupt record {path.name} ({problem}); left in place, the store cannot be written "
                 f"({error.strerror or error})")
            return
        note(f"corrupt record {path.name} ({problem}); moved to {aside.name}, the run will be redone")

    def set_aside_other_run(self, run_hash: str, problem: str) -> None:
        """Move a record that is not the run its name says (``problem``: whose it is) to
        ``<hash>.json.misplaced`` (numbered), so the run can train without losing it; one line says so."""
        path = self.record_path(run_hash)
        if self.read_only:
            return
        try:
            aside = set_aside(path, ".misplaced")
        except FileNotFoundError:
            return
        except OSError as error:
            note(f"record {path.name} {problem}; it cannot be moved ({error.strerror or error}) and will be "
                 "replaced by the run's own record")
            return
        note(f"record {path.name} {problem}; moved to {aside.name}, the run trains")

    def is_done(self, run_hash: str) -> bool:
        record = self.get(run_hash)
        return record is not None and record["status"] == "done"

    def put(self, record: dict) -> Path:
        path = self.record_path(record["hash"])
        atomic_write_json(path, record)
        return path

    def records(self) -> Iterable[dict]:
        """Every readable record in the store (damaged ones are reported and skipped)."""
        if not self.records_dir.exists():
            return
        for path in sorted(self.records_dir.glob("*.json")):
            if not is_run_hash(path.stem):  # not a record's name: not the store's
                continue
            record = self.get(path.stem)
            if record is not None:
                yield record

    # -- locks
    @contextmanager
    def lock(self, run_hash: str, *, wait: bool = True, label: str | None = None) -> Iterator[RunLock]:
        """Hold ``run_hash``'s lock for the block; released on any exit, exceptions and Ctrl-C included.

        When another process holds it: with ``wait``, say so in one line and wait until it is free; else
        yield at once with ``lock.held`` false. ``lock.waited`` tells whether this call waited.
        """
        lock = RunLock(self.lock_path(run_hash))
        try:
            if not lock.try_acquire() and wait:
                note(f"{label or run_hash} is being trained by another process ({lock.holder()}); "
                     "waiting for it to finish")
                lock.waited = True
                while not lock.try_acquire():
                    time.sleep(LOCK_POLL_SECONDS)
            yield lock
        finally:
            lock.release()

    # -- checkpoints
    def checkpoints(self, run_hash: str) -> list[tuple[int, Path]]:
        """The published checkpoints of ``run_hash`` as ``(step, folder)``, newest first (``step-<N>`` folders;
        anything else there is not a checkpoint: :meth:`stray_checkpoints`)."""
        folder = self.checkpoint_dir(run_hash)
        found = []
        for path in folder.glob(f"{CHECKPOINT_PREFIX}*") if folder.is_dir() else ():
            step = path.name[len(CHECKPOINT_PREFIX):]
            if step.isdigit() and path.is_dir():
                found.append((int(step), path))
        return sorted(found, reverse=True)

    def stray_checkpoints(self, run_hash: str) -> list[Path]:
        """Entries of ``run_hash``'s checkpoint folder named like a checkpoint (``step-<N>``) that are not
        folders: nothing reads them, but a later checkpoint of that step could not be written over them."""
        folder = self.checkpoint_dir(run_hash)
        return sorted(path for path in (folder.glob(f"{CHECKPOINT_PREFIX}*") if folder.is_dir() else ())
                      if path.name[len(CHECKPOINT_PREFIX):].isdigit() and not path.is_dir())

    def prepare_checkpoints(self, run_hash: str) -> None:
        """Make ``run_hash``'s checkpoint folder usable before a run resumes or writes one: a file where
        ``checkpoints/`` should be is a :class:`StoreError` (one line); a file where the run's folder or one of
        its ``step-<N>`` folders should be is set aside (one line each). Only the holder of the run's lock."""
        if self.checkpoints_dir.exists() and not self.checkpoints_dir.is_dir():
            raise StoreError(f"{self.checkpoints_dir} is not a folder, so no checkpoint can be kept; remove or rename "
                             "it (it holds only unfinished runs' checkpoints)")
        folder = self.checkpoint_dir(run_hash)
        if folder.exists() and not folder.is_dir():
            self.reject_checkpoint(folder, "a file, not a checkpoint folder")
        for path in self.stray_checkpoints(run_hash):
            self.reject_checkpoint(path, "a file, not a checkpoint folder")

    def write_checkpoint(self, run_hash: str, step: int, files: dict[str, bytes], *,
                         keep_older: bool = False) -> Path:
        """Write ``files`` as the checkpoint of ``step``, all or nothing, then drop the run's other checkpoints
        (unless ``keep_older``: a packed group drops them once every run of the group has written this step).

        The files go to ``step-<N>.tmp-<pid>/``, are fsynced, and the folder is renamed to ``step-<N>/``.
        Only the holder of the run's lock may call this.
        """
        folder = self.checkpoint_dir(run_hash)
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{CHECKPOINT_PREFIX}{step}"
        atomic_write_folder(final, files)  # over the same step again (Ctrl-C right after an evaluation point)
        if not keep_older:
            self.keep_only_checkpoint(run_hash, step)
        return final

    def keep_only_checkpoint(self, run_hash: str, step: int) -> None:
        """Remove the checkpoints of ``run_hash`` but the one of ``step``."""
        for other_step, other in self.checkpoints(run_hash):
            if other_step != step:
                shutil.rmtree(other, ignore_errors=True)

    def reject_checkpoint(self, path: Path, problem: str) -> None:
        """Set a checkpoint that does not match its run aside (one line says why); it is never read again."""
        try:
            aside = set_aside(path, ".rejected")
        except OSError as error:
            note(f"checkpoint {path} is unusable ({problem}) and cannot be moved ({error.strerror or error})")
            return
        note(f"checkpoint {path.parent.name}/{path.name} is unusable ({problem}); set aside as {aside.name}")

    def clean_checkpoint_leftovers(self, run_hash: str) -> None:
        """Remove half-written checkpoint folders of ``run_hash`` (only its lock holder writes them)."""
        folder = self.checkpoint_dir(run_hash)
        for path in folder.glob(f"{CHECKPOINT_PREFIX}*.tmp-*") if folder.is_dir() else ():
            shutil.rmtree(path, ignore_errors=True)

    def remove_checkpoints(self, run_hash: str) -> None:
        shutil.rmtree(self.checkpoint_dir(run_hash), ignore_errors=True)

    def clean_finished(self, run_hash: str) -> None:
        """Remove what a finished run (its record is written) may have left: its checkpoints and its lock file,
        after a kill between the record and the cleanup. Only when this process can take the run's lock (never
        under another live process's hold); a read-only store is left alone. Best effort, silent."""
        if self.read_only:
            return
        try:
            if not (self.checkpoint_dir(run_hash).exists() or self.lock_path(run_hash).exists()):
                return
            with self.lock(run_hash, wait=False) as lock:  # released (its file removed) on the way out
                if lock.held and self.checkpoint_dir(run_hash).is_dir():
                    self.remove_checkpoints(run_hash)
        except (OSError, StoreError):
            pass

    # -- cleaning
    def clean_stale(self) -> None:
        """Remove what is provably left over: temporary files of dead writers (or a day old) in records/,
        prompts/ and states/, the checkpoints of finished runs, and lock files nobody holds."""
        for folder in (self.records_dir, self.prompts_dir, self.states_dir):
            for path in folder.glob(".*.tmp") if folder.is_dir() else ():
                if is_stale_temp(path):
                    path.unlink(missing_ok=True)
        for folder in sorted(self.checkpoints_dir.iterdir()) if self.checkpoints_dir.is_dir() else ():
            if folder.is_dir() and is_run_hash(folder.name) and self.is_done(folder.name):
                with self.lock(folder.name, wait=False) as lock:
                    if lock.held:
                        self.remove_checkpoints(folder.name)
        for path in self.locks_dir.glob("*.lock") if self.locks_dir.is_dir() else ():
            if not path.is_file():  # a folder there is reported when its run is locked, never removed here
                continue
            lock = RunLock(path)
            if lock.try_acquire():
                lock.release()
