"""Files that a crash never leaves half-written: each one is written to a temporary name in its folder, fsynced and
renamed into place (:func:`atomic_write_bytes`); a folder of files is written the same way and published by one
rename (:func:`atomic_write_folder`). A damaged file is moved aside, never over an earlier one (:func:`set_aside`);
a dead writer's temporary files are recognised by the pid and host in their names (:func:`is_stale_temp`).

The store's one-line messages live here too: :class:`StoreError` for a folder that cannot be used, :func:`note`
for what was fixed or skipped.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: A temporary file whose writer cannot be identified is left alone until it is this old (seconds).
STALE_TMP_SECONDS = 24 * 3600


class StoreError(ValueError):
    """The results folder cannot be used (not writable, not a folder, unreadable)."""


_UMASK = os.umask(0)
os.umask(_UMASK)
_HOST = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:40] or "host"


#: errno values that mean "this folder cannot take more writes", not "this run is broken".
STORAGE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, getattr(errno, "EDQUOT", errno.ENOSPC)}


def is_storage_error(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in STORAGE_ERRNOS


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


def atomic_write_folder(final: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (name -> bytes) as the folder ``final``, all or nothing: into ``<final>.tmp-<pid>/``,
    fsynced, then renamed over whatever ``final`` was (an earlier folder of that name is removed first)."""
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, data in files.items():
        write_synced(tmp / name, data)
    sync_dir(tmp)
    if final.is_dir() and not final.is_symlink():  # the same folder again (e.g. a step checkpointed twice)
        shutil.rmtree(final)
    elif final.exists() or final.is_symlink():  # a file of that name: the folder replaces it
        final.unlink()
    publish(tmp, final)


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


# ---------------------------------------------------------------- leftovers of dead writers
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
