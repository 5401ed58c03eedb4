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

import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..config import stable_hash  # the store's names are hashes of configs
from ..paths import store_dir

RECORD_STATUSES = ("done", "failed")
CHECKPOINT_PREFIX = "step-"
#: What a run hash looks like (:func:`stable_hash`'s 16 hex digits): the only names the store builds paths from.
RUN_HASH = re.compile(r"[0-9a-f]{16}")
#: A temporary file whose writer cannot be identified is left alone until it is this old (seconds).
STALE_TMP_SECONDS = 24 * 3600
#: How often a process waiting for another one's run looks at the lock again (seconds).
LOCK_POLL_SECONDS = 0.5


class StoreError(ValueError):
    """The results folder cannot be used (not writable, not a folder, unreadable)."""


_UMASK = os.umask(0)
os.umask(_UMASK)
_HOST = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:40] or "host"
_PROCESS_STARTED = time.time()


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


def note(message: str) -> None:
    """One line on stderr, the way the store and the engine report what they fixed or skipped."""
    print(f"superpos: {message}", file=sys.stderr)


# ---------------------------------------------------------------- write primitives
def write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (a name nobody reads yet) and fsync it."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def sync_dir(folder: Path) -> None:
    """fsync a folder, so a rename inside it survives a power cut (not possible everywhere: skipped there)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish(tmp: Path, path: Path) -> None:
    """Rename the finished ``tmp`` (a file, or a folder when ``path`` does not exist) to ``path``: the one
    step at which a write becomes visible."""
    os.replace(tmp, path)
    sync_dir(path.parent)


def temp_prefix(name: str) -> str:
    """Temporary names carry the writer's pid and host, so a later process can tell a dead writer's leftovers."""
    return f".{name}.{os.getpid()}@{_HOST}."


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a same-folder temp file, fsync and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; records are meant to be shared
        write_synced(Path(tmp), data)
        publish(Path(tmp), path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=1, sort_keys=True, default=str) + "\n").encode())


def set_aside(path: Path, suffix: str) -> Path:
    """Move ``path`` to ``<name><suffix>``, or ``<name><suffix>.1``, ... : never over an earlier one."""
    for index in range(10_000):
        aside = path.with_name(path.name + suffix + (f".{index}" if index else ""))
        if aside.exists():
            continue
        try:
            os.link(path, aside)  # fails if the name was taken meanwhile, unlike a rename
        except FileExistsError:
            continue
        except OSError:  # no hard links here (a folder, or a file system without them)
            os.rename(path, aside)
            return aside
        os.unlink(path)
        return aside
    raise StoreError(f"cannot set {path} aside: too many earlier copies")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OSError:
        return True
    return True


def is_stale_temp(path: Path) -> bool:
    """A leftover temporary file: its writer (named in it) is gone from this host, or it is a day old."""
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        return False
    writer = path.name[:-len(".tmp")].rsplit(".", 2)
    if len(writer) == 3 and "@" in writer[1]:
        pid, _, host = writer[1].partition("@")
        if host == _HOST and pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            return True
    return age > STALE_TMP_SECONDS


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


# ---------------------------------------------------------------- one writer per run
def _try_lock(fd: int) -> bool:
    """A non-blocking exclusive lock on ``fd``; the kernel drops it when the process dies, however it dies."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class RunLock:
    """The hold of one process on one run, through ``locks/<hash>.lock``.

    The file is locked with ``flock`` while held and names its holder (pid, host, start). A holder that
    dies, even by SIGKILL, loses the lock with its process, so a lock is never stale: the next process takes
    the file over. On release the holder removes the file (still locked, so no one can take it meanwhile).
    """

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None
        self.waited = False

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True when this process now holds it. A lock path that is a folder, or a
        ``locks`` that is a file, is a :class:`StoreError` in one line (nothing could hold the run through it)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise StoreError(f"{self.path.parent} is not a folder, so no run can be locked; remove or rename it "
                             "(it holds only lock files, made again as needed)") from None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
            except (IsADirectoryError, NotADirectoryError):
                raise StoreError(f"lock {self.path} is a folder, not a lock file; remove it (nothing holds a run "
                                 "through a folder)") from None
            if not _try_lock(fd):
                os.close(fd)
                return False
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                break
            os.close(fd)  # the previous holder removed the file between our open and lock: lock the new one
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(holder).encode())
        self.fd = fd
        return True

    def holder(self) -> str:
        """Who holds the lock, in words (as far as its file tells)."""
        try:
            info = json.loads(self.path.read_text())
            return f"pid {info['pid']} on {info['host']} since {info['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "unknown holder"

    def release(self) -> None:
        if self.fd is None:
            return
        if sys.platform != "win32":  # Windows cannot remove an open file; the next holder reuses it
            self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None

    @property
    def held(self) -> bool:
        return self.fd is not None


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

    def write_checkpoint(self, run_hash: str, step: int, files: dict[str, bytes]) -> Path:
        """Write ``files`` as the checkpoint of ``step``, all or nothing, then drop the older checkpoints.

        The files go to ``step-<N>.tmp-<pid>/``, are fsynced, and the folder is renamed to ``step-<N>/``.
        Only the holder of the run's lock may call this.
        """
        folder = self.checkpoint_dir(run_hash)
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{CHECKPOINT_PREFIX}{step}"
        tmp = folder / f"{final.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name, data in files.items():
            write_synced(tmp / name, data)
        sync_dir(tmp)
        if final.is_dir() and not final.is_symlink():  # the same step again (Ctrl-C right after an evaluation point)
            shutil.rmtree(final)
        elif final.exists() or final.is_symlink():  # not a checkpoint (prepare_checkpoints sets such ones aside)
            final.unlink()
        publish(tmp, final)
        for _, older in self.checkpoints(run_hash):
            if older != final:
                shutil.rmtree(older, ignore_errors=True)
        return final

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
