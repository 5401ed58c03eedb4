"""The record a run returns: the stored JSON as a dict, with read-only attribute access and a one-row frame."""
from __future__ import annotations

import json

import pytest

from superpos.engine import ResultsStore, run

TINY = dict(backbone="tiny-llama", task="bbc-topic", method="simple", max_steps=2, batch_size=4, eval_every=1,
            train_limit=8, eval_limit=4, eval_batch_size=4, max_input_tokens=32, device="cpu")


def test_a_run_returns_a_typed_read_only_record_and_stores_plain_json(tmp_path):
    store = ResultsStore(tmp_path)
    record = run(TINY, store, progress=False)
    assert record.best.test.score == record["best"]["test"]["score"] and record.config.method == "simple"
    assert record.best.step == record["best"]["step"] and record.history[-1].step == 2
    with pytest.raises(AttributeError, match="no field 'bestt'"):
        record.bestt
    with pytest.raises(AttributeError, match="read-only"):
        record.best.score = 100
    frame = record.to_frame()
    assert len(frame) == 1 and frame.loc[0, "method"] == "simple" and frame.loc[0, "test_score"] == record.best.test.score
    plain = record.to_dict()
    plain["status"] = "changed"
    assert record.status == "done"  # a deep copy
    on_disk = json.loads((tmp_path / "records" / f"{record.hash}.json").read_text())
    assert on_disk == {k: v for k, v in record.items() if k != "cached"}
    assert run(TINY, store, progress=False).cached  # served from the store, typed the same way
