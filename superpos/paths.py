"""Where things live. Paths resolve from the package, never from the working directory."""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
#: True when the package runs from its source checkout (``pip install -e`` or the repository itself); False when
#: installed as a wheel into site-packages, where nothing may be written beside it.
SOURCE_CHECKOUT = (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "notebooks").is_dir()
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


def results_dir() -> Path:
    """Root of the results store: ``$SUPERPOS_RESULTS``; else ``<repo>/results`` in a source checkout, or
    ``./results`` under the working directory when the package is installed (never inside site-packages)."""
    if os.environ.get("SUPERPOS_RESULTS"):
        return Path(os.environ["SUPERPOS_RESULTS"])
    return REPO_ROOT / "results" if SOURCE_CHECKOUT else Path.cwd() / "results"


def check_profile_name(profile: str) -> str:
    """``profile`` when it can name a folder under the results root (``results/<profile>/``), else ``ValueError``
    in one line: an empty name, a path (``../escape``, ``a/b``) or a hidden name (``.x``) would put a profile's
    records somewhere else than under the results root."""
    ok = isinstance(profile, str) and profile.strip() == profile and bool(profile) and "/" not in profile \
        and "\\" not in profile and "\0" not in profile and not profile.startswith(".")
    if not ok:
        raise ValueError(f"profile: {profile!r} is not a profile name (a plain folder name under the results root, "
                         "e.g. quick, cpu or mine; no '/', no leading '.')")
    return profile


def results_root(results: str | os.PathLike | None, profile: str) -> Path:
    """The store a command's ``--results`` / ``--profile`` name: ``--results`` when given (an empty string is
    refused, never read as the working directory or as "not given"), else ``<results root>/<profile>``."""
    if results is not None:
        if not str(results).strip():
            raise ValueError("--results: an empty path; name a folder (or leave --results out to use "
                             "results/<profile>/)")
        return Path(results).expanduser()
    return results_dir() / check_profile_name(profile)


def store_dir(profile: str) -> Path:
    """The working store of a profile, where its runs train and its notebooks read records:
    ``results/<profile>/`` (records/, prompts/, states/, readouts/, checkpoints/; not committed).

    ``$SUPERPOS_STORE`` (a store folder) replaces it for every profile: ``make report`` points it at the
    committed reference, ``results/<profile>/reference/``, so that notebooks render from that without training.
    """
    check_profile_name(profile)
    if os.environ.get("SUPERPOS_STORE"):
        return Path(os.environ["SUPERPOS_STORE"])
    return results_dir() / profile


def renders_dir(profile: str) -> Path:
    """Where a profile's tables, figures and executed notebooks go: ``$SUPERPOS_OUTPUT`` when set (``make
    reproduce`` points it at ``results/<profile>/fresh/``, ignored by git, so that fresh runs never overwrite the
    renders of the committed reference), else ``results/<profile>/`` (``make report``, ``make reference``)."""
    check_profile_name(profile)
    if os.environ.get("SUPERPOS_OUTPUT"):
        return Path(os.environ["SUPERPOS_OUTPUT"])
    return results_dir() / profile


def fresh_dir(profile: str) -> Path:
    """The renders of a reproduction's fresh runs: ``results/<profile>/fresh/`` (tables, figures, notebooks)."""
    return results_dir() / check_profile_name(profile) / "fresh"


def reference_dir(profile: str) -> Path:
    """The committed reference results of a profile: ``results/<profile>/reference/`` (records, prompts and
    readouts of the runs ``make reproduce`` compares its fresh runs with)."""
    return results_dir() / check_profile_name(profile) / "reference"


def cache_dir() -> Path:
    """Converted model weights and built datasets live here, outside the repository.

    ``$SUPERPOS_CACHE``, else ``$XDG_CACHE_HOME/superpos``, else ``~/.cache/superpos``. ``SUPERPOS_CACHE`` set to
    an empty string, or a cache path that is a file, is a ``ValueError`` in one line (an empty value would put
    converted weights into the working directory).
    """
    if "SUPERPOS_CACHE" in os.environ:
        value = os.environ["SUPERPOS_CACHE"]
        if not value.strip():
            raise ValueError("SUPERPOS_CACHE is set to an empty string; unset it (default ~/.cache/superpos) or "
                             "name a folder")
        folder, named = Path(value).expanduser(), "SUPERPOS_CACHE"
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        folder, named = Path(base) / "superpos", "the cache folder"
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{named} ({folder}) is a file, not a folder; point SUPERPOS_CACHE at a folder")
    return folder


_DIGESTS: dict[tuple, str] = {}


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex), remembered per process by (resolved path, size, modification time; inode
    and change time too, which a copy or ``touch -d`` cannot keep): a file rewritten since is hashed again, an
    unchanged one costs a ``stat``. Part of the run hashes of runs on local files (model folders, release files)."""
    import hashlib

    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns)
    digest = _DIGESTS.get(key)
    if digest is None:
        sha = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
        digest = _DIGESTS[key] = sha.hexdigest()
    return digest


OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def hub_is_offline() -> bool:
    """True when any of Hugging Face's offline variables is set to a true value."""
    return any(env_flag(v) for v in OFFLINE_VARIABLES)


def env_flag(name: str) -> bool:
    """Whether the environment variable ``name`` is set to a true value (1, true, yes, on; any case)."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


_REACHABLE: dict[tuple[str, int], str | None] = {}


def hub_host() -> tuple[str, int]:
    """The hub's host and port (``$HF_ENDPOINT``, default huggingface.co:443)."""
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)


def hub_status(timeout: float = 1.5) -> str | None:
    """``None`` when the hub answers a TCP connect within ``timeout`` s (DNS included), else why not in a few
    words (offline variables set, or the host unreachable). The network answer is remembered per process."""
    import socket
    import threading

    if hub_is_offline():
        return f"off ({', '.join(v for v in OFFLINE_VARIABLES if env_flag(v))} set)"
    host, port = hub_host()
    if (host, port) not in _REACHABLE:
        errors: list[str] = []

        def connect():
            try:
                socket.create_connection((host, port), timeout=timeout).close()
                errors.append("")
            except OSError as error:
                errors.append(type(error).__name__)
        # A thread, because DNS lookups ignore socket timeouts and can hang for many seconds.
        thread = threading.Thread(target=connect, daemon=True)
        thread.start()
        thread.join(timeout)
        outcome = errors[0] if errors else "timeout"
        _REACHABLE[(host, port)] = None if outcome == "" else f"unreachable ({host}:{port}: {outcome})"
    return _REACHABLE[(host, port)]


def shown_path(path: Path) -> str:
    """A path as printed: relative to the repository when inside it (no machine paths in logs or notebooks)."""
    path = Path(path)
    return str(path.relative_to(REPO_ROOT)) if path.is_absolute() and path.is_relative_to(REPO_ROOT) else str(path)
