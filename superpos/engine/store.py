"""The results store: one JSON record per run, named by a stable hash of its full configuration.

Layout under a store root (``results/<profile>/``)::

    records/<hash>.json        the finished run (status done or failed); written atomically
    prompts/<hash>.safetensors the exported prompt (n x d) for nearest-token readouts
    checkpoints/<hash>/        an unfinished run's last checkpoint (removed when it finishes)

Writes go to a temporary file in the same folder and are renamed into place, so a crash
never leaves a half-written file that reads as done. A record that does not parse is
reported in one line, moved aside as ``<hash>.json.corrupt`` and treated as missing.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

from ..paths import store_dir


class StoreError(ValueError):
    """The results folder cannot be used (not writable, not a folder)."""


def stable_hash(payload: Any, length: int = 16) -> str:
    """Hex digest of the canonical JSON of ``payload`` (sorted keys, no whitespace)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a same-folder temp file, fsync and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; records are meant to be shared
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=1, sort_keys=True, default=str) + "\n").encode())


class ResultsStore:
    """Records, prompts and checkpoints of one profile (its working store, :func:`superpos.paths.store_dir`)
    or of any folder."""

    def __init__(self, root: str | Path | None = None, *, profile: str | None = None):
        if root is None:
            root = store_dir(profile or "default")
        self.root = Path(root)
        self.records_dir = self.root / "records"
        self.prompts_dir = self.root / "prompts"
        self.checkpoints_dir = self.root / "checkpoints"

    def ensure_writable(self) -> None:
        """Fail early, in one line, when the store cannot be written."""
        try:
            self.records_dir.mkdir(parents=True, exist_ok=True)
            probe = self.records_dir / f".write-probe-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as error:
            raise StoreError(f"results folder {self.root} is not writable ({error.strerror or error})") from None

    def record_path(self, run_hash: str) -> Path:
        return self.records_dir / f"{run_hash}.json"

    def prompt_path(self, run_hash: str) -> Path:
        return self.prompts_dir / f"{run_hash}.safetensors"

    def checkpoint_dir(self, run_hash: str) -> Path:
        return self.checkpoints_dir / run_hash

    def get(self, run_hash: str) -> dict | None:
        """The stored record, or None if absent. A corrupt file is reported, set aside, and treated as absent."""
        path = self.record_path(run_hash)
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict) or record.get("hash") != run_hash or "status" not in record:
                raise ValueError("not a superpos record for this hash")
            return record
        except (ValueError, UnicodeDecodeError) as error:
            aside = path.with_suffix(".json.corrupt")
            os.replace(path, aside)
            print(f"superpos: corrupt record {path.name} ({error}); moved to {aside.name}, the run will be redone",
                  file=sys.stderr)
            return None

    def is_done(self, run_hash: str) -> bool:
        record = self.get(run_hash)
        return record is not None and record["status"] == "done"

    def put(self, record: dict) -> Path:
        path = self.record_path(record["hash"])
        atomic_write_json(path, record)
        return path

    def records(self) -> Iterable[dict]:
        """Every readable record in the store (corrupt ones are reported and skipped)."""
        if not self.records_dir.exists():
            return
        for path in sorted(self.records_dir.glob("*.json")):
            record = self.get(path.stem)
            if record is not None:
                yield record
