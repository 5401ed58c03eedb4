"""Helpers shared by test modules (imported as a plain module: pytest puts tests/ on sys.path)."""
from __future__ import annotations

from pathlib import Path

import superpos.engine.files as files_module
import superpos.engine.train as train_module
from superpos.engine import ResultsStore


class Killed(BaseException):
    """A simulated kill: nothing in the engine handles it."""


def arm_kill(monkeypatch, at: int, mode: str, evaluate: tuple = (train_module, "evaluate")) -> dict:
    """Count the engine's events (each file write, each rename that publishes, each call of ``evaluate``, a
    (module, name) pair: a packed group's is ``(packed, "evaluate_many")``) and kill at event ``at``: ``before``
    it, ``torn`` halfway through a write (before it, for the other kinds), or ``after`` it."""
    events = {"count": 0, "fired": False}

    def wrap(function, kind):
        def wrapped(*args, **kwargs):
            events["count"] += 1
            if events["count"] == at and not events["fired"]:
                if mode == "before" or (mode == "torn" and kind != "write"):
                    events["fired"] = True
                    raise Killed
                if mode == "torn":
                    path, data = args
                    Path(path).write_bytes(data[:len(data) // 2])
                    events["fired"] = True
                    raise Killed
            result = function(*args, **kwargs)
            if events["count"] == at and mode == "after":
                events["fired"] = True
                raise Killed
            return result
        return wrapped

    module, name = evaluate
    monkeypatch.setattr(files_module, "write_synced", wrap(files_module.write_synced, "write"))
    monkeypatch.setattr(files_module, "publish", wrap(files_module.publish, "publish"))
    monkeypatch.setattr(module, name, wrap(getattr(module, name), "evaluate"))
    return events


def with_source(store: ResultsStore, source_store: ResultsStore, source: dict) -> ResultsStore:
    """``store`` holding a copy of the finished ATTEMPT source run ``source`` of ``source_store`` (its record, its
    prompt and its best-point state)."""
    for key in ("prompt_path", "state_path"):
        target = store.root / source[key]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((source_store.root / source[key]).read_bytes())
    store.put({key: value for key, value in source.items() if key != "cached"})
    return store
