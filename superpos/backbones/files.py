"""Cache folders that appear whole or not at all, even with concurrent builders or a Ctrl-C."""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

try:
    import fcntl
except ImportError:  # Windows: no lock; the atomic rename alone still keeps the folder whole
    fcntl = None


@contextlib.contextmanager
def _exclusive(lock_path: Path):
    """Hold an exclusive advisory lock, so concurrent processes wait instead of building the same thing."""
    if fcntl is None:
        yield
        return
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_atomically(target: Path, build: Callable[[Path], None]) -> Path:
    """Return ``target``, first running ``build(tmp)`` into a sibling temp folder renamed into place.

    The rename is atomic: readers see a complete folder or none. Concurrent callers wait on a lock file
    and find the finished folder (without the lock, the first rename wins and the others discard their
    copy). An interrupted build leaves no partial ``target``: its temp folder is removed on the way out.
    """
    target = Path(target)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(target.parent / f".{target.name}.lock"):
        if target.is_dir():  # built by another process while we waited
            return target
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir()
            build(tmp)
            try:
                os.rename(tmp, target)
            except OSError:
                if not target.is_dir():  # not a lost race: a real failure
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


#: Weight files ``from_pretrained`` reads from a local folder (single file or sharded with an index).
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def model_folder_problem(folder: str | Path) -> str | None:
    """Why a local folder is not a loadable Hugging Face model, in one line, or ``None`` when it looks whole.

    Cheap (no transformers import): ``config.json`` must be a JSON object with a ``model_type`` and some
    weights must be there. Tokenizer files are checked when the backbone loads."""
    import json

    folder = Path(folder).expanduser()
    config = folder / "config.json"
    if not config.is_file():
        return f"local folder {folder} has no config.json (not a saved Hugging Face model)"
    try:
        data = json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        why = str(error).splitlines()[0] if str(error) else type(error).__name__
        return f"{config} is not valid JSON ({why})"
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        return f"{config} names no model_type (not a Hugging Face model config)"
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        return f"local folder {folder} has no model weights ({' or '.join(WEIGHT_FILES[::2])})"
    return None


#: Files of a local model folder that decide what it computes: its config, its weights (one file or shards) and
#: its tokenizer's files, as ``from_pretrained`` reads them (patterns, top level of the folder only).
MODEL_FILE_PATTERNS = ("config.json", "generation_config.json", "model*.safetensors", "model.safetensors.index.json",
                       "pytorch_model*.bin", "pytorch_model.bin.index.json", "tokenizer*", "special_tokens_map.json",
                       "added_tokens.json", "vocab*", "merges.txt", "*.model", "chat_template*",
                       "preprocessor_config.json")


def local_model_fingerprint(name: str) -> str | None:
    """For a backbone given as a local model folder, a hash of what it holds (its config, weights and tokenizer
    files: :data:`MODEL_FILE_PATTERNS`), part of its runs' hashes so that a folder whose files change gives new
    runs, never the records of the old model; ``None`` for registered names and hub ids, whose hashes stay as they
    were. The contents count, not the path: ``x``, ``x/``, ``../x`` or a copy elsewhere are one model. File digests
    are remembered per process by path, size and modification time (:func:`superpos.paths.file_digest`)."""
    import fnmatch

    from ..paths import file_digest
    from .names import BACKBONES

    if name in BACKBONES:
        return None
    folder = Path(name).expanduser()
    if not folder.is_dir():
        return None
    folder = folder.resolve()
    files = sorted(path for path in folder.iterdir() if path.is_file() and not path.name.startswith(".")
                   and any(fnmatch.fnmatch(path.name, pattern) for pattern in MODEL_FILE_PATTERNS))
    from ..config import stable_hash

    return "local:" + stable_hash({path.name: file_digest(path) for path in files})
