"""The Ray executor on a local Ray instance (CPU): records, dependencies, a worker killed mid-run."""
from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from superpos.engine import GridSpec, ResultsStore, RunConfig, expand, load_records, run_grid  # noqa: E402
from superpos.engine.ray_executor import run_configs_on_ray  # noqa: E402

WORDS_A = "bright happy warm sunny glad kind calm".split()
WORDS_B = "dark sad cold rainy angry cruel grim".split()
BUDGET = {"max_steps": 2, "batch_size": 8, "eval_every": 2, "eval_batch_size": 16, "eval_limit": 8,
          "device": "cpu"}


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module: 2 CPU slots, no dashboard."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    # Functions defined here travel to the workers by value (the workers cannot import this test module).
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


@pytest.fixture()
def glue_dir(tmp_path, monkeypatch):
    """Tiny SST-2 and RTE in the hub's schema (label 1 iff the words come from set A)."""
    rng = random.Random(0)
    for task, count in (("sst2", (32, 16)), ("rte", (32, 16))):
        folder = tmp_path / "data" / task
        folder.mkdir(parents=True)
        for split, size in zip(("train", "validation"), count):
            rows = []
            for idx in range(size):
                label = idx % 2
                words = WORDS_A if label else WORDS_B
                text = " ".join(rng.choice(words) for _ in range(4))
                row = ({"sentence": text, "label": label, "idx": idx} if task == "sst2" else
                       {"premise": text, "hypothesis": " ".join(rng.choice(words) for _ in range(3)),
                        "label": 1 - label, "idx": idx})
                rows.append(row)
            (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    monkeypatch.setenv("SUPERPOS_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    return tmp_path / "data"


def test_grid_on_ray_writes_every_record_and_respects_sources(local_ray, glue_dir, tmp_path):
    spec = GridSpec(backbones=["tiny-t5"], tasks=["sst2", "rte"], methods=["simple", "attempt"],
                    attempt_sources=["sst2"], budget=BUDGET)
    store = ResultsStore(tmp_path / "store")
    result = run_grid(spec, store, executor="ray", progress=False)
    configs = expand(spec)
    assert (result.done, result.failed, result.cached) == (len(configs), 0, 0), [r.get("reason") for r in result.records]
    frame = load_records(tmp_path / "store", grid=spec)
    assert sorted(frame["method"]) == ["attempt", "simple", "simple"] and set(frame["status"]) == {"done"}
    attempt = next(r for r in result.records if r["config"]["method"] == "attempt")
    sources = [store.get(h) for h in attempt["config"]["sources"]]
    # The dependent run started only after its source had finished.
    assert all(s["provenance"]["finished"] <= attempt["provenance"]["started"] for s in sources)
    assert len({r["worker"]["pid"] for r in result.records}) >= 1
    # Second call: everything cached, nothing submitted.
    again = run_grid(spec, store, executor="ray", progress=False)
    assert (again.cached, again.done, again.failed) == (len(configs), 0, 0)


def test_a_packed_group_is_one_ray_task(local_ray, glue_dir, tmp_path):
    spec = GridSpec(backbones=["tiny-t5"], tasks=["sst2", "rte"], methods=["simple", "attempt"],
                    attempt_sources=["sst2"], budget=BUDGET)
    result = run_grid(spec, ResultsStore(tmp_path / "store"), executor="ray", progress=False, pack=2)
    assert (result.done, result.failed) == (3, 0), [r.get("reason") for r in result.records]
    simple = [r for r in result.records if r["config"]["method"] == "simple"]
    attempt = next(r for r in result.records if r["config"]["method"] == "attempt")
    assert [r["provenance"]["packed_runs"] for r in simple] == [2, 2]
    assert len({(r["worker"]["pid"], r["worker"]["host"]) for r in simple}) == 1  # one task trained both
    assert "packed_runs" not in attempt["provenance"]  # ready alone, after its source


def crash_once_then_run(config, store, **kwargs):
    """Kill the worker process on the first attempt of the seed-1 run (a marker file remembers)."""
    from superpos.engine.train import run

    if config.seed == 1:
        marker = Path(store.root) / f"crashed-{config.run_hash()}"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)  # no exception, no cleanup: as an OOM kill or a segfault
    return run(config, store, **kwargs)


def always_crash_seed_1(config, store, **kwargs):
    from superpos.engine.train import run

    if config.seed == 1:
        os._exit(1)
    return run(config, store, **kwargs)


def _configs(seeds):
    return [RunConfig(backbone="tiny-t5", task="sst2", method="simple", seed=seed, **BUDGET).resolved()
            for seed in seeds]


def test_a_killed_worker_is_retried_and_other_records_survive(local_ray, glue_dir, tmp_path):
    store = ResultsStore(tmp_path / "store")
    configs = _configs([0, 1, 2])
    result = run_configs_on_ray(configs, store, progress=False, max_retries=2, run_fn=crash_once_then_run)
    assert (result.done, result.failed) == (3, 0), [r.get("reason") for r in result.records]
    assert (Path(store.root) / f"crashed-{configs[1].run_hash()}").exists()  # it did die once
    for config in configs:
        assert store.get(config.run_hash())["status"] == "done"


def test_a_worker_that_keeps_dying_is_marked_failed(local_ray, glue_dir, tmp_path):
    store = ResultsStore(tmp_path / "store")
    configs = _configs([0, 1])
    result = run_configs_on_ray(configs, store, progress=False, max_retries=0, run_fn=always_crash_seed_1)
    assert (result.done, result.failed) == (1, 1)
    failed = store.get(configs[1].run_hash())
    assert failed["status"] == "failed" and "worker died" in failed["reason"] and failed["retryable"]
    assert store.get(configs[0].run_hash())["status"] == "done"
    assert len(list(store.records_dir.glob("*.json"))) == 2


def test_an_unreachable_cluster_is_one_line(tmp_path, monkeypatch, capsys):
    from superpos.__main__ import main

    def unreachable(*args, **kwargs):
        raise ConnectionError("ray client connection timeout\n(many more lines)")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", unreachable)
    import superpos.engine.ray_executor as executor

    monkeypatch.setattr(executor, "check_reachable", lambda address: None)  # past the port check: Ray's own error
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"backbones": ["tiny-llama"], "tasks": ["bbc-topic"], "methods": ["simple"],
                                "budget": {"max_steps": 1, "train_limit": 4, "eval_limit": 2, "device": "cpu"}}))
    assert main(["grid", str(grid), "--executor", "ray", "--ray-address", "ray://nowhere:1",
                 "--results", str(tmp_path / "store")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.endswith("superpos: error: ray: cannot connect to ray://nowhere:1 (ConnectionError: ray client "
                         "connection timeout)")
