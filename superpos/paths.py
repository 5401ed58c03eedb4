"""Where things live. Paths resolve from the package, never from the working directory."""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


def results_dir() -> Path:
    """Root of the results store: ``$SUPERPOS_RESULTS`` or ``<repo>/results``."""
    return Path(os.environ.get("SUPERPOS_RESULTS", REPO_ROOT / "results"))


def cache_dir() -> Path:
    """Converted model weights and built datasets live here, outside the repository.

    ``$SUPERPOS_CACHE``, else ``$XDG_CACHE_HOME/superpos``, else ``~/.cache/superpos``.
    """
    if "SUPERPOS_CACHE" in os.environ:
        return Path(os.environ["SUPERPOS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "superpos"


OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def hub_is_offline() -> bool:
    """True when any of Hugging Face's offline variables is set to a true value."""
    return any(os.environ.get(v, "").lower() in {"1", "true", "yes", "on"} for v in OFFLINE_VARIABLES)
