"""The engine: learning, caching, resuming, corrupt records, failures, determinism, CLI errors."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from superpos.engine import GridSpec, ResultsStore, RunConfig, expand, load_records, run, run_grid

REPO = Path(__file__).resolve().parents[1]
WORDS_A = "bright happy warm sunny glad kind calm".split()
WORDS_B = "dark sad cold rainy angry cruel grim".split()


@pytest.fixture()
def sst2_dir(tmp_path, monkeypatch):
    """A trivially learnable SST-2 in the hub's schema: label 1 iff the sentence uses words of set A."""
    import random

    rng = random.Random(0)
    folder = tmp_path / "data" / "sst2"
    folder.mkdir(parents=True)
    for split, count in (("train", 64), ("validation", 32)):
        rows = []
        for idx in range(count):
            label = idx % 2
            words = WORDS_A if label else WORDS_B
            rows.append({"sentence": " ".join(rng.choice(words) for _ in range(4)), "label": label, "idx": idx})
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    monkeypatch.setenv("SUPERPOS_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


def tiny_config(**changes) -> RunConfig:
    values = dict(backbone="tiny-t5", task="sst2", method="superpos", method_config={"m": 16}, epochs=2,
                  batch_size=8, eval_every=4, eval_batch_size=16, device="cpu", seed=0)
    values.update(changes)
    return RunConfig(**values)


def test_learns_a_trivial_task(sst2_dir, tmp_path):
    config = tiny_config(method="full", method_config={"lr": 3e-3}, epochs=3, eval_every=0)
    record = run(config, ResultsStore(tmp_path / "store"), progress=False)
    assert record["status"] == "done"
    losses = [loss for _, loss in record["loss_curve"]]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4
    assert record["best"]["test"]["lenient_score"] > 60.0  # chance is 50


def test_cached_runs_are_not_retrained(sst2_dir, tmp_path, monkeypatch):
    store = ResultsStore(tmp_path / "store")
    first = run(tiny_config(max_steps=2), store, progress=False)
    assert not first["cached"]

    import superpos.engine.train as train_module

    def refuse(*args, **kwargs):
        raise AssertionError("a cached run was trained again")

    monkeypatch.setattr(train_module, "Trainer", refuse)
    second = run(tiny_config(max_steps=2), store, progress=False)
    assert second["cached"] and second["history"] == first["history"]


def test_same_seed_same_result_and_other_seed_differs(sst2_dir, tmp_path):
    a = run(tiny_config(max_steps=6), ResultsStore(tmp_path / "a"), progress=False)
    b = run(tiny_config(max_steps=6), ResultsStore(tmp_path / "b"), progress=False)
    c = run(tiny_config(max_steps=6, seed=1), ResultsStore(tmp_path / "c"), progress=False)
    assert a["hash"] == b["hash"] != c["hash"]
    assert a["loss_curve"] == b["loss_curve"] and a["history"] == b["history"]
    assert a["loss_curve"] != c["loss_curve"]


def test_corrupt_record_is_reported_and_redone(sst2_dir, tmp_path, capsys):
    store = ResultsStore(tmp_path / "store")
    config = tiny_config(max_steps=2)
    record = run(config, store, progress=False)
    path = store.record_path(record["hash"])
    path.write_text('{"hash": "' + record["hash"] + '", "status": "do')  # a torn write from another tool
    again = run(config, store, progress=False)
    assert not again["cached"] and again["status"] == "done"
    assert "corrupt record" in capsys.readouterr().err
    assert path.with_suffix(".json.corrupt").exists()
    assert json.loads(path.read_text())["history"] == record["history"]


def test_nan_loss_fails_that_run_and_the_grid_goes_on(sst2_dir, tmp_path, monkeypatch):
    import superpos.backbones as backbones

    real_load = backbones.load_backbone

    def load_with_nan_for_dropout(name, **kwargs):
        backbone = real_load(name, **kwargs)
        if kwargs.get("dropout"):
            real_loss = backbone.loss
            backbone.loss = lambda batch, method: real_loss(batch, method) * float("nan")
        return backbone

    monkeypatch.setattr(backbones, "load_backbone", load_with_nan_for_dropout)
    spec = GridSpec(backbones=["tiny-t5"], tasks=["sst2"], methods=[{"method": "superpos", "config": {"m": 16}}],
                    dropout=[True, False], budget={"max_steps": 2, "batch_size": 8, "device": "cpu"})
    result = run_grid(spec, ResultsStore(tmp_path / "store"), progress=False)
    assert (result.done, result.failed) == (1, 1)
    failed = [r for r in result.records if r["status"] == "failed"][0]
    assert "non-finite loss" in failed["reason"]
    frame = load_records(tmp_path / "store", grid=spec)
    assert sorted(frame["status"]) == ["done", "failed"]


def test_grid_expands_attempt_sources_first(sst2_dir):
    spec = GridSpec(backbones=["tiny-t5"], tasks=["sst2", "rte"], methods=["simple", "attempt"],
                    attempt_sources=["sst2"], budget={"max_steps": 2})
    configs = expand(spec)
    methods = [(c.task, c.method) for c in configs]
    assert ("sst2", "attempt") not in methods  # never evaluated on its own source task
    attempt = [c for c in configs if c.method == "attempt"][0]
    source_hashes = {c.run_hash() for c in configs if c.method == "simple" and c.task == "sst2"}
    assert set(attempt.sources) == source_hashes
    assert methods.index(("rte", "attempt")) > methods.index(("sst2", "simple"))


def _cli(*args, env_extra=None, timeout=120):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TQDM_DISABLE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "superpos", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO)


@pytest.mark.parametrize("args, fragment", [
    (["run", "--method", "prefix"], "unknown method"),
    (["run", "--task", "imdb"], "unknown task"),
    (["run", "--backbone", "gpt5"], "unknown backbone"),
    (["run", "--set", "m=0"], "m"),
    (["run", "--method", "attempt", "--source", "0123456789abcdef", "--task", "bbc-topic"], "not finished"),
    (["run", "--batch-size", "0"], "batch_size"),
])
def test_cli_errors_are_one_clear_line(args, fragment, tmp_path):
    started = time.perf_counter()
    result = _cli(*args, "--results", str(tmp_path / "store"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("superpos: error:") and fragment in lines[0], result.stderr
    assert time.perf_counter() - started < 30  # no model was loaded


def test_cli_refuses_an_unwritable_results_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = _cli("run", "--backbone", "tiny-t5", "--results", str(blocker / "store"))
    assert result.returncode == 2 and "not writable" in result.stderr


def test_cli_list_names_everything():
    result = _cli("list")
    assert result.returncode == 0
    for name in ("smollm2-135m", "tiny-t5", "superpos", "simple", "residual", "attempt", "ept", "full", "sst2",
                 "multirc", "bbc-topic"):
        assert name in result.stdout


def test_killed_run_resumes_to_the_uninterrupted_result(sst2_dir, tmp_path):
    args = ["run", "--backbone", "tiny-t5", "--task", "sst2", "--method", "superpos", "--set", "m=16",
            "--epochs", "2", "--batch-size", "8", "--eval-every", "4", "--device", "cpu"]
    env = {"SUPERPOS_DATA": str(sst2_dir)}
    reference = _cli(*args, "--results", str(tmp_path / "reference"), env_extra=env)
    assert reference.returncode == 0, reference.stderr
    reference_record = next((tmp_path / "reference" / "records").glob("*.json"))

    store = tmp_path / "killed"
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TQDM_DISABLE": "1", **env}
    process = subprocess.Popen([sys.executable, "-m", "superpos", *args, "--results", str(store)], env=full_env,
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    progress = None
    while time.time() < deadline and process.poll() is None:
        found = [path for path in (store / "checkpoints").glob("*/step-*/progress.json")
                 if ".tmp-" not in path.parent.name]  # a published checkpoint, not one being written
        if found and json.loads(found[0].read_text())["step"] >= 4:
            progress = found[0]
            break
        time.sleep(0.05)
    assert progress is not None, "no checkpoint appeared before the run ended"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not list((store / "records").glob("*.json"))

    resumed = _cli(*args, "--results", str(store), env_extra=env)
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads(next((store / "records").glob("*.json")).read_text())
    expected = json.loads(reference_record.read_text())
    assert record["resumed"] is True
    assert record["history"] == expected["history"]
    assert record["loss_curve"] == expected["loss_curve"]
    assert record["best"] == expected["best"]


def test_ctrl_c_saves_a_checkpoint_that_resumes(sst2_dir, tmp_path):
    args = ["run", "--backbone", "tiny-t5", "--task", "sst2", "--method", "simple", "--epochs", "3",
            "--batch-size", "8", "--eval-every", "8", "--device", "cpu", "--results", str(tmp_path / "s")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TQDM_DISABLE": "1",
           "SUPERPOS_DATA": str(sst2_dir)}
    process = subprocess.Popen([sys.executable, "-m", "superpos", *args], env=env, cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "s" / "checkpoints").glob("*/step-*/progress.json")):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err
    again = _cli(*args, env_extra={"SUPERPOS_DATA": str(sst2_dir)})
    assert again.returncode == 0, again.stderr
    assert json.loads(next((tmp_path / "s" / "records").glob("*.json")).read_text())["resumed"] is True


@pytest.mark.slow
def test_short_real_run_on_the_embedded_default(tmp_path):
    config = RunConfig(backbone="smollm2-135m", task="bbc-topic", method="superpos", max_steps=3, batch_size=4,
                       train_limit=12, eval_limit=8, eval_every=3, device="cpu")
    record = run(config, ResultsStore(tmp_path / "store"), progress=False)
    assert record["status"] == "done"
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in record["loss_curve"])
    assert record["best"]["test"]["invalid_rate"] is not None
    assert record["trainable_params"] > 0 and record["timing"]["tokens_per_s"] > 0
    assert (tmp_path / "store" / record["prompt_path"]).exists()
    assert len(record["analysis"]["weights"]) == 10


def script_evaluations(monkeypatch, points: list[tuple[float, float, bool]]) -> None:
    """Make the engine's evaluations return ``points`` in turn: ``(strict, lenient, †)`` each."""
    import superpos.engine.train as train_module
    from superpos.tasks.metrics import Score

    scripted = iter(points)

    def fake_evaluate(*args, **kwargs):
        strict, lenient, dagger = next(scripted)
        return Score(metrics={"accuracy": strict}, lenient={"accuracy": lenient}, score=strict,
                     lenient_score=lenient, invalid_rate=0.1 if dagger else 0.0, dagger=dagger, n=32), []

    monkeypatch.setattr(train_module, "evaluate", fake_evaluate)


def test_each_score_is_reported_at_its_own_best_point(sst2_dir, tmp_path, monkeypatch):
    """A † run's lenient score comes from its best lenient point, not from the strict-best point."""
    from superpos.engine.frame import best_lenient_point, record_row

    script_evaluations(monkeypatch, [(0.0, 70.0, True), (60.0, 60.0, False), (55.0, 65.0, False)])
    record = run(tiny_config(max_steps=12, eval_every=4), ResultsStore(tmp_path / "store"), progress=False)
    assert record["best"]["step"] == 8 and record["best"]["test"]["score"] == 60.0
    assert record["best_lenient"]["step"] == 4 and record["best_lenient"]["test"]["lenient_score"] == 70.0
    row = record_row(record)
    assert (row["test_score"], row["test_lenient_score"], row["best_step"], row["best_lenient_step"]) == (60.0, 70.0, 8, 4)
    # a record written before best_lenient existed gets the same point back from its validation history
    older = {key: value for key, value in record.items() if key != "best_lenient"}
    assert best_lenient_point(older)["step"] == 4 and record_row(older)["test_lenient_score"] == 70.0


def test_at_an_equal_strict_score_a_point_with_valid_labels_beats_a_dagger(sst2_dir, tmp_path, monkeypatch):
    """A run whose first point is 0 † and whose later points are valid but score exactly 0 (an MCC of 0, say)
    converged to valid labels: its best point is a valid one, reported without †; a later valid 0 changes nothing."""
    script_evaluations(monkeypatch, [(0.0, 20.0, True), (0.0, 0.0, False), (0.0, 0.0, False)])
    record = run(tiny_config(max_steps=12, eval_every=4), ResultsStore(tmp_path / "store"), progress=False)
    assert record["best"]["step"] == 8 and not record["best"]["test"]["dagger"]
    assert record["best_lenient"]["step"] == 4


def test_record_says_how_many_inputs_were_truncated(sst2_dir, tmp_path, tiny_t5):
    # sst2_dir sentences are 4 words: at 6 tokens (eos included) some are cut, at 64 none
    examples = __import__("superpos.tasks", fromlist=["get_task"]).get_task("sst2").examples("train")
    lengths = [len(tiny_t5.tokenizer(e.input_text).input_ids) for e in examples]
    assert tiny_t5.truncated_count([e.input_text for e in examples], 6) == sum(n > 6 for n in lengths)
    store = ResultsStore(tmp_path / "store")
    cut = run(tiny_config(max_steps=1, max_input_tokens=8), store, progress=False)["data"]["truncated"]
    whole = run(tiny_config(max_steps=1, max_input_tokens=64), store, progress=False)["data"]["truncated"]
    assert cut["max_input_tokens"] == 8 and 0 < cut["train"] <= 1 and 0 < cut["eval"] <= 1
    assert whole["train"] == whole["eval"] == 0.0
