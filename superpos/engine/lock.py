"""One writer per run: :class:`RunLock`, a process's hold on ``locks/<hash>.lock`` through ``flock``, which the
kernel drops when the process dies, however it dies."""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from .files import _UMASK, StoreError


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
