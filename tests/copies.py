"""Helpers shared by test modules (imported as a plain module: pytest puts tests/ on sys.path)."""
from __future__ import annotations

from superpos.engine import ResultsStore


def with_source(store: ResultsStore, source_store: ResultsStore, source: dict) -> ResultsStore:
    """``store`` holding a copy of the finished ATTEMPT source run ``source`` of ``source_store`` (its record, its
    prompt and its best-point state)."""
    for key in ("prompt_path", "state_path"):
        target = store.root / source[key]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((source_store.root / source[key]).read_bytes())
    store.put({key: value for key, value in source.items() if key != "cached"})
    return store
