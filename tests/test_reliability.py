"""Reliability of the store and the engine: kills at every write, damaged checkpoints and records, one writer
per run across processes, the best point's state, ATTEMPT's source point, stale leftovers.

Everything trains tiny-llama on the built-in bbc-topic task for a few steps on CPU.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import superpos.engine.files as files_module
import superpos.engine.store as store_module
import superpos.engine.train as train_module
from superpos.engine import ResultsStore, RunConfig, RunError, StoreError, run, run_configs

from copies import Killed, arm_kill, with_source

REPO = Path(__file__).resolve().parents[1]
METHOD_CONFIGS = {"simple": {}, "superpos": {"m": 16}, "residual": {"bottleneck": 8}, "ept": {"max_length": 64},
                  "full": {}}
COMPARED = ("history", "loss_curve", "best", "analysis", "steps", "status", "trainable_params")


def tiny(method: str = "superpos", **changes) -> RunConfig:
    """Six steps, evaluations at 2, 4 and 6, dropout on (so the RNG state matters on resume)."""
    values = dict(backbone="tiny-llama", task="bbc-topic", method=method, method_config=METHOD_CONFIGS.get(method, {}),
                  dropout=True, dropout_rate=0.1, max_steps=6, batch_size=4, train_limit=24, eval_limit=8,
                  eval_every=2, eval_batch_size=8, device="cpu", seed=0)
    values.update(changes)
    return RunConfig(**values)


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")


@pytest.fixture()
def state_scores(monkeypatch):
    """Dev scores that are a fixed function of the method's trainable state: the best point moves around, and
    a resume that restored anything else would score differently."""
    real = train_module.evaluate

    def scored(backbone, method, task, examples, **kwargs):
        score, predictions = real(backbone, method, task, examples, **kwargs)
        total = sum(float(v.double().sum()) for v in method.trainable_state().values())
        value = float(int(abs(total) * 1e5) % 97)
        return dataclasses.replace(score, score=value, lenient_score=value), predictions

    monkeypatch.setattr(train_module, "evaluate", scored)


@pytest.fixture()
def scripted_scores(monkeypatch):
    """Dev scores 10, 30, 20 at the three evaluations of a run: the best point is step 4 of 6."""
    real, calls = train_module.evaluate, []

    def scored(backbone, method, task, examples, **kwargs):
        score, predictions = real(backbone, method, task, examples, **kwargs)
        calls.append(1)
        value = (10.0, 30.0, 20.0)[(len(calls) - 1) % 3]
        return dataclasses.replace(score, score=value, lenient_score=value), predictions

    monkeypatch.setattr(train_module, "evaluate", scored)
    return calls


def same_run(record: dict, reference: dict, store: ResultsStore, reference_store: ResultsStore) -> None:
    """The two records are the same run, bit for bit: curves, best point, analysis, prompt and best state."""
    for key in COMPARED:
        assert record[key] == reference[key], key
    for key in ("prompt_path", "state_path"):
        assert (record[key] is None) == (reference[key] is None), key
        if record[key] is not None:
            ours, theirs = load_file(str(store.root / record[key])), load_file(str(reference_store.root / reference[key]))
            assert ours.keys() == theirs.keys()
            assert all(torch.equal(ours[name], theirs[name]) for name in ours), key


def leftovers(store: ResultsStore) -> list[str]:
    """Temporary files and checkpoints still in the store."""
    found = [str(p.relative_to(store.root)) for p in store.root.rglob("*.tmp*")]
    return found + [str(p.relative_to(store.root)) for p in store.checkpoints_dir.glob("*/*")]


# ---------------------------------------------------------------- A. atomic checkpoints, kills at every write
def count_events(monkeypatch, config, store) -> list[str]:
    """The kinds of the events of one uninterrupted run, in order (a write into a checkpoint folder is a
    ``checkpoint-write``)."""
    kinds = []

    def counted(real, name):
        def wrapped(*args, **kwargs):
            inside = name == "write_synced" and ".tmp-" in Path(args[0]).parent.name
            kinds.append("checkpoint-write" if inside else name)
            return real(*args, **kwargs)
        return wrapped

    for name, module in (("write_synced", files_module), ("publish", files_module), ("evaluate", train_module)):
        monkeypatch.setattr(module, name, counted(getattr(module, name), name))
    run(config, store, progress=False)
    monkeypatch.undo()
    return kinds


@pytest.mark.parametrize("method", ["superpos", "attempt"])
def test_a_kill_at_any_write_resumes_to_the_uninterrupted_record(method, tmp_path, monkeypatch, state_scores):
    source_store = ResultsStore(tmp_path / "source")
    source = run(tiny("simple"), source_store, progress=False)
    config = tiny(method, method_config={"bottleneck": 8}, sources=[source["hash"]]) if method == "attempt" else tiny()

    def fresh(name: str) -> ResultsStore:
        return with_source(ResultsStore(tmp_path / name), source_store, source)

    reference_store = fresh("reference")
    reference = run(config, reference_store, progress=False)
    kinds = count_events(pytest.MonkeyPatch(), config, fresh("count"))
    # 3 evaluations; 2 checkpoints of 2 files and 1 rename each; the best state, the prompt (not ATTEMPT's), the record
    assert kinds.count("evaluate") == 3 and kinds.count("checkpoint-write") == 4
    assert kinds.count("publish") == (4 if method == "attempt" else 5)
    cases = [(k, "before") for k in range(1, len(kinds) + 1)]
    cases += [(k, "torn") for k in range(1, len(kinds) + 1) if kinds[k - 1] == "checkpoint-write"]
    cases += [(len(kinds), "after")]
    for at, mode in cases:
        store = fresh(f"killed-{at}-{mode}")
        with pytest.MonkeyPatch.context() as patch:
            events = arm_kill(patch, at, mode)
            with pytest.raises(Killed):
                run(config, store, progress=False)
            assert events["fired"]
        record = run(config, store, progress=False)
        same_run(record, reference, store, reference_store)
        store.clean_stale()  # what the next process does first: the checkpoint of a record written just before a kill
        assert leftovers(store) == [], (at, mode)
    assert len(cases) == (18 if method == "attempt" else 20)


DYING_CHILD = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    import superpos.engine.files as files
    from superpos.engine import ResultsStore, RunConfig, run

    config, root, at = RunConfig.from_dict(json.loads(sys.argv[1])), sys.argv[2], int(sys.argv[3])
    real, calls = files.write_synced, []

    def dying(path, data):
        calls.append(path)
        if len(calls) == at:  # half the bytes, then gone: no handler, no cleanup
            Path(path).write_bytes(data[:len(data) // 2])
            os._exit(9)
        real(path, data)

    files.write_synced = dying
    run(config, ResultsStore(root), progress=False)
""")


def test_a_process_that_dies_mid_write_leaves_nothing_that_changes_the_record(tmp_path):
    config = tiny()
    reference_store = ResultsStore(tmp_path / "reference")
    reference = run(config, reference_store, progress=False)
    store = ResultsStore(tmp_path / "s")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    # Writes: checkpoints of steps 2 and 4 (two files each), the best state, then the prompt: it dies there.
    child = subprocess.run([sys.executable, "-c", DYING_CHILD, json.dumps(config.to_dict()), str(store.root), "6"],
                           env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert child.returncode == 9, child.stderr
    assert list(store.prompts_dir.glob(".*.tmp"))  # the torn prompt, under its temporary name only
    assert store.get(config.resolved().run_hash()) is None
    record = run(config, store, progress=False)
    assert record["resumed"] is True
    same_run(record, reference, store, reference_store)
    assert leftovers(store) == []


def test_a_checkpoint_is_one_folder_that_names_its_step(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path / "s")
    with pytest.MonkeyPatch.context() as patch:
        arm_kill(patch, 9, "before")  # the third evaluation: checkpoints of steps 2 and 4 were written
        with pytest.raises(Killed):
            run(tiny(), store, progress=False)
    (run_hash,) = [p.name for p in store.checkpoints_dir.iterdir()]
    assert [step for step, _ in store.checkpoints(run_hash)] == [4]  # the older one is gone
    folder = store.checkpoints(run_hash)[0][1]
    assert sorted(p.name for p in folder.iterdir()) == ["progress.json", "state.pt"]
    assert json.loads((folder / "progress.json").read_text())["step"] == 4
    assert torch.load(folder / "state.pt", weights_only=True)["step"] == 4


@pytest.fixture()
def two_checkpoints(tmp_path):
    """A killed run with checkpoints at steps 2 and 4 (the older one kept), and the uninterrupted record."""
    config = tiny()
    reference_store = ResultsStore(tmp_path / "reference")
    reference = run(config, reference_store, progress=False)
    early, store = ResultsStore(tmp_path / "early"), ResultsStore(tmp_path / "s")
    for target, at in ((early, 5), (store, 9)):  # at the second evaluation; at the third one
        with pytest.MonkeyPatch.context() as patch:
            arm_kill(patch, at, "before")
            with pytest.raises(Killed):
                run(config, target, progress=False)
    run_hash = config.resolved().run_hash()
    os.rename(early.checkpoints(run_hash)[0][1], store.checkpoint_dir(run_hash) / "step-2")
    assert [step for step, _ in store.checkpoints(run_hash)] == [4, 2]
    return config, store, reference, reference_store, store.checkpoint_dir(run_hash)


def damage_progress_empty(folder: Path, tmp_path: Path) -> None:
    (folder / "progress.json").write_text("{}")


def damage_state_truncated(folder: Path, tmp_path: Path) -> None:
    data = (folder / "state.pt").read_bytes()
    (folder / "state.pt").write_bytes(data[:len(data) // 3])


def damage_state_of_another_config(folder: Path, tmp_path: Path) -> None:
    other = ResultsStore(tmp_path / "other")
    with pytest.MonkeyPatch.context() as patch:
        arm_kill(patch, 9, "before")
        with pytest.raises(Killed):
            run(tiny(method_config={"m": 12}), other, progress=False)
    (other_folder,) = other.checkpoints_dir.glob("*/step-4")
    (folder / "state.pt").write_bytes((other_folder / "state.pt").read_bytes())


def damage_steps_torn(folder: Path, tmp_path: Path) -> None:
    older = folder.parent / "step-2"
    (folder / "progress.json").write_text((older / "progress.json").read_text())


def damage_progress_not_json(folder: Path, tmp_path: Path) -> None:
    (folder / "progress.json").write_bytes(b"\x00\xff{")


@pytest.mark.parametrize("damage", [damage_progress_empty, damage_state_truncated, damage_state_of_another_config,
                                    damage_steps_torn, damage_progress_not_json])
def test_a_damaged_checkpoint_is_set_aside_and_an_older_one_used(damage, two_checkpoints, tmp_path, capsys):
    config, store, reference, reference_store, folder = two_checkpoints
    damage(folder / "step-4", tmp_path)
    capsys.readouterr()
    record = run(config, store, progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "step-4 is unusable" in err[0] and "set aside" in err[0], err
    assert record["resumed"] is True
    same_run(record, reference, store, reference_store)
    assert not store.checkpoint_dir(record["hash"]).exists()
    assert run(config, store, progress=False)["cached"]  # and every later call is fine


def test_a_run_whose_checkpoints_are_all_damaged_starts_over(two_checkpoints, tmp_path, capsys):
    config, store, reference, reference_store, folder = two_checkpoints
    damage_progress_empty(folder / "step-4", tmp_path)
    damage_state_truncated(folder / "step-2", tmp_path)
    capsys.readouterr()
    record = run(config, store, progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("unusable" in line for line in err), err
    assert record["resumed"] is False
    same_run(record, reference, store, reference_store)


def test_a_checkpoint_of_older_code_is_dropped_in_one_line(tmp_path, capsys):
    config, store = tiny(), ResultsStore(tmp_path / "s")
    reference_store = ResultsStore(tmp_path / "reference")
    reference = run(config, reference_store, progress=False)
    folder = store.checkpoint_dir(config.resolved().run_hash())
    folder.mkdir(parents=True)
    (folder / "progress.json").write_text(json.dumps({"step": 4}))
    (folder / "state.pt").write_bytes(b"old")
    capsys.readouterr()
    record = run(config, store, progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "older code" in err[0], err
    assert record["resumed"] is False
    same_run(record, reference, store, reference_store)


# ---------------------------------------------------------------- B. one writer per run
def test_a_busy_run_is_skipped_or_waited_for(tmp_path, monkeypatch, capsys):
    config = tiny().resolved()
    store = ResultsStore(tmp_path / "s")
    finished = run(config, ResultsStore(tmp_path / "other"), progress=False)

    def refuse(*args, **kwargs):
        raise AssertionError("a run held by another process was trained")

    monkeypatch.setattr(train_module, "Trainer", refuse)
    with store.lock(config.run_hash()):
        skipped = run(config, store, progress=False, busy="skip")
        assert skipped["status"] == "busy" and f"pid {os.getpid()}" in skipped["reason"]
        assert store.get(config.run_hash()) is None  # a stand-in, never stored

        served = {}
        waiter = threading.Thread(target=lambda: served.update(run(config, store, progress=False)))
        with monkeypatch.context() as patch:
            patch.setattr(store_module, "LOCK_POLL_SECONDS", 0.02)
            waiter.start()
            time.sleep(0.5)
            assert waiter.is_alive()  # waiting for the lock
            store.put({key: value for key, value in finished.items() if key != "cached"})
    waiter.join(timeout=30)
    assert served["cached"] and served["history"] == finished["history"]
    assert "being trained by another process" in capsys.readouterr().err
    assert not list(store.locks_dir.glob("*.lock"))  # released and removed
    with pytest.raises(ValueError, match="busy"):
        run(config, store, busy="never")


CHILD = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    import superpos.engine.train as train
    from superpos.engine import ResultsStore, RunConfig, run, run_configs

    marker, store_root, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    configs = [RunConfig.from_dict(c) for c in json.loads(sys.argv[4])]
    real_fit = train.Trainer.fit

    def counted_fit(self):
        with open(marker, "a") as handle:  # one line per trainer start
            handle.write(self.run_hash + "\\n")
        time.sleep(1.0)  # hold the lock long enough for the others to meet it
        return real_fit(self)

    train.Trainer.fit = counted_fit
    while not go.exists():
        time.sleep(0.01)
    store = ResultsStore(store_root)
    if len(configs) == 1:
        records = [run(configs[0], store, progress=False)]
    else:
        records = run_configs(configs, store, progress=False).records
    print(json.dumps([[r["hash"], r["status"], bool(r.get("cached"))] for r in records]))
""")


def start_together(tmp_path: Path, store: ResultsStore, groups: list[list[RunConfig]]) -> tuple[list, list[str]]:
    """Start one process per group of configs, release them at once; their outputs and the trainer starts."""
    marker, go = tmp_path / "starts.txt", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    processes = [subprocess.Popen([sys.executable, "-c", CHILD, str(marker), str(store.root), str(go),
                                   json.dumps([c.to_dict() for c in group])], env=env, cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for group in groups]
    time.sleep(0.5)
    go.write_text("")
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        outputs.append((json.loads(out.strip().splitlines()[-1]), err))
    return outputs, marker.read_text().split()


def test_three_processes_started_together_on_one_run_train_it_once(tmp_path):
    config = tiny().resolved()
    reference_store = ResultsStore(tmp_path / "reference")
    reference = run(config, reference_store, progress=False)
    store = ResultsStore(tmp_path / "s")
    outputs, starts = start_together(tmp_path, store, [[config]] * 3)
    assert starts == [config.run_hash()]  # trained once
    results = [result[0] for result, _ in outputs]
    assert sorted(cached for _, _, cached in results) == [False, True, True]
    waited = [err for (result, err) in outputs if result[0][2]]
    assert all("waiting for it to finish" in err for err in waited), waited
    same_run(store.get(config.run_hash()), reference, store, reference_store)
    assert leftovers(store) == [] and not list(store.locks_dir.glob("*.lock"))


def test_two_processes_on_overlapping_grids_train_each_run_once(tmp_path):
    a, b = (tiny(seed=seed).resolved() for seed in (0, 1))
    reference_store = ResultsStore(tmp_path / "reference")
    references = {config.run_hash(): run(config, reference_store, progress=False) for config in (a, b)}
    store = ResultsStore(tmp_path / "s")
    outputs, starts = start_together(tmp_path, store, [[a, b], [b, a]])  # each meets the other's run next
    assert sorted(starts) == sorted(references)  # each run trained once
    for result, _ in outputs:
        assert [status for _, status, _ in result] == ["done", "done"]
        assert [cached for _, _, cached in result] == [False, True]
    for run_hash, reference in references.items():
        same_run(store.get(run_hash), reference, store, reference_store)


# ---------------------------------------------------------------- C. the best point's state
def spy_on_best(monkeypatch) -> list:
    """Record the method's outputs on a fixed input at every new best point."""
    seen = []
    real = train_module.Trainer.save_best_state

    def spied(self):
        real(self)
        generator = torch.Generator().manual_seed(1)
        embeds = torch.randn(2, 5, self.backbone.embed_dim, generator=generator)
        mask = torch.ones(2, 5, dtype=torch.long)
        was_training = self.method.training
        self.method.train()  # no evaluation statistics from this probe
        with torch.no_grad():
            seen.append([t.detach().clone() for t in self.method(embeds, mask)])
        self.method.train(was_training)

    monkeypatch.setattr(train_module.Trainer, "save_best_state", spied)
    return seen


def source_records(store: ResultsStore) -> RunConfig:
    """A finished simple run to serve as an ATTEMPT source; returns the ATTEMPT config that uses it."""
    source = run(tiny("simple"), store, progress=False)
    return tiny("attempt", method_config={"bottleneck": 8}, sources=[source["hash"]])


@pytest.mark.parametrize("method", ["simple", "superpos", "residual", "ept", "attempt"])
def test_the_best_point_state_rebuilds_the_method_and_its_prompt(method, tmp_path, monkeypatch, scripted_scores,
                                                                  tiny_llama):
    from superpos.methods import PromptMethod, load_method

    store = ResultsStore(tmp_path / "s")
    config = source_records(store) if method == "attempt" else tiny(method)
    seen = spy_on_best(monkeypatch)
    record = run(config, store, progress=False)
    assert record["best"]["step"] == 4 and record["steps"] == 6
    assert record["state_path"] == f"states/{record['hash']}.safetensors"
    loaded = load_method(store.root / record["state_path"], tiny_llama)
    assert isinstance(loaded, PromptMethod) and loaded.name == method
    loaded.train()
    generator = torch.Generator().manual_seed(1)
    embeds = torch.randn(2, 5, tiny_llama.embed_dim, generator=generator)
    with torch.no_grad():
        outputs = loaded(embeds, torch.ones(2, 5, dtype=torch.long))
    assert all(torch.equal(a, b) for a, b in zip(outputs, seen[-1]))  # the method as it was at step 4
    if method in ("ept", "attempt"):
        assert record["prompt_path"] is None  # no single prompt: the state is the export
        return
    prompts = load_file(str(store.root / record["prompt_path"]))
    assert torch.equal(prompts["prompt"], loaded.export_prompt())
    assert not torch.equal(prompts["prompt"], prompts["last"])
    if method == "superpos":  # the analysis is the best point's too
        assert record["analysis"]["weights"] == loaded.weights.tolist()


def test_full_fine_tuning_keeps_no_state(tmp_path):
    record = run(tiny("full"), ResultsStore(tmp_path / "s"), progress=False)
    assert record["status"] == "done" and record["state_path"] is None and record["prompt_path"] is None
    assert not (tmp_path / "s" / "states").exists()


def test_attempt_uses_its_sources_best_or_last_prompts(tmp_path, scripted_scores):
    from superpos.methods import read_state_file

    store = ResultsStore(tmp_path / "s")
    best_config = source_records(store)
    source_hash = best_config.sources[0]
    source = store.get(source_hash)
    prompts = load_file(str(store.root / source["prompt_path"]))
    last_config = dataclasses.replace(best_config, method_config={**best_config.method_config, "source_point": "last"})
    assert best_config.resolved().method_config["source_point"] == "best"
    assert best_config.run_hash() != last_config.run_hash()
    for config, key in ((best_config, "prompt"), (last_config, "last")):
        record = run(config, store, progress=False)
        _, state = read_state_file(store.root / record["state_path"])
        assert torch.equal(state["source_prompts"][0], prompts[key])

    # A source stored by older code: no best state, and its prompt file holds the last step's prompt only.
    older = {key: value for key, value in source.items() if key != "state_path"}
    store.put(older)
    from safetensors.torch import save_file

    save_file({"prompt": prompts["last"]}, str(store.root / source["prompt_path"]))
    retry = dict(max_steps=4)
    with pytest.raises(RunError, match=f"source run {source_hash} was stored by older code.*retrain it") as error:
        run(dataclasses.replace(best_config, **retry), store, progress=False)
    assert "\n" not in str(error.value)
    record = run(dataclasses.replace(last_config, **retry), store, progress=False)
    _, state = read_state_file(store.root / record["state_path"])
    assert torch.equal(state["source_prompts"][0], prompts["last"])


def test_run_hashes_of_the_committed_references_are_unchanged():
    records = [json.loads(path.read_text()) for path in REPO.glob("results/*/reference/records/*.json")]
    kept = [r for r in records if r["config"]["method"] != "attempt"]
    assert kept, "no committed reference records"
    for record in kept:
        assert RunConfig.from_dict(record["config"]).run_hash() == record["hash"]


# ---------------------------------------------------------------- D. a damaged store
@pytest.mark.parametrize("text, problem", [
    ('{"hash": "%s", "status": "done"}', "no run config"),
    ('{"hash": "%s", "status": "running", "config": {"method": "simple", "task": "rte"}}', "unknown status"),
    ('{"hash": "%s", "status": "done", "config": {"method": "simple", "task": "rte"}, "best": [1]}', "best"),
    ('{"hash": "%s", "status": "failed", "config": {"method": "simple", "task": "rte"}, "history": 3}', "history"),
    ('[1, 2]', "not a JSON object"),
])
def test_a_record_that_is_not_a_record_is_set_aside_numbered(text, problem, tmp_path, capsys):
    store = ResultsStore(tmp_path / "s")
    path = store.record_path("0123456789abcdef")
    path.parent.mkdir(parents=True)
    for copy in range(3):
        path.write_text(text.replace("%s", "0123456789abcdef") if "%s" in text else text)
        assert store.get("0123456789abcdef") is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(problem in line and "corrupt record" in line for line in err), err
    names = sorted(p.name for p in store.records_dir.iterdir())
    assert names == ["0123456789abcdef.json.corrupt", "0123456789abcdef.json.corrupt.1",
                     "0123456789abcdef.json.corrupt.2"]


def read_only(monkeypatch, store: ResultsStore) -> None:
    """Make ``store`` behave as on a read-only mount (the tests may run as root, who ignores permissions)."""
    def refuse(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    for name in ("link", "rename", "replace", "unlink", "mkdir", "open"):
        real = getattr(os, name)

        def guarded(*args, _real=real, _name=name, **kwargs):
            target = str(args[0])
            writing = _name != "open" or (len(args) > 1 and args[1] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if target.startswith(str(store.root)) and writing:
                refuse()
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, guarded)

    def no_writes(self):
        raise StoreError(f"results folder {self.root} is not writable (Read-only file system)")

    monkeypatch.setattr(ResultsStore, "ensure_writable", no_writes)


def test_a_read_only_store_serves_its_records_and_reports_damage(tmp_path, monkeypatch, capsys):
    from superpos.engine import load_records

    config = tiny(max_steps=2)
    store = ResultsStore(tmp_path / "s")
    finished = run(config, store, progress=False)
    broken = store.record_path("fedcba9876543210")
    broken.write_text('{"hash": "fedcba9876543210", "status": "do')
    capsys.readouterr()
    read_only(monkeypatch, store)
    monkeypatch.setattr(train_module, "Trainer", None)  # nothing may train
    assert run(config, store, progress=False)["cached"]
    assert run_configs([config.resolved()], store, progress=False).cached == 1
    frame = load_records(store)
    assert list(frame["hash"]) == [finished["hash"]]
    err = capsys.readouterr().err
    assert "corrupt record fedcba9876543210.json" in err and "left in place" in err
    assert broken.exists() and not list(store.records_dir.glob("*.corrupt*"))
    with pytest.raises(StoreError, match="not writable"):
        run(tiny(max_steps=3), store, progress=False)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_leftovers_are_cleaned_at_the_next_start(tmp_path):
    store = ResultsStore(tmp_path / "s")
    done = run(tiny(max_steps=2), store, progress=False)
    host, dead = files_module._HOST, dead_pid()
    stale, kept = [], []
    for folder, name in ((store.records_dir, "a.json"), (store.prompts_dir, "a.safetensors"),
                         (store.states_dir, "a.safetensors")):
        stale.append(folder / f".{name}.{dead}@{host}.x1.tmp")
        kept.append(folder / f".{name}.{os.getpid()}@{host}.x2.tmp")  # a live writer
        kept.append(folder / f".{name}.{dead}@elsewhere.x3.tmp")  # another host's writer: unknown
        stale.append(folder / f".{name}.oldstyle.tmp")
    for path in stale + kept:
        path.write_text("")
    old = time.time() - files_module.STALE_TMP_SECONDS - 60
    os.utime(store.records_dir / ".a.json.oldstyle.tmp", (old, old))
    os.utime(store.prompts_dir / ".a.safetensors.oldstyle.tmp", (old, old))
    os.utime(store.states_dir / ".a.safetensors.oldstyle.tmp", (old, old))
    orphan = store.checkpoint_dir(done["hash"]) / "step-2"  # a kill between the record and the cleanup
    orphan.mkdir(parents=True)
    unfinished = store.checkpoint_dir("0123456789abcdef") / "step-2"
    unfinished.mkdir(parents=True)
    store.lock_path("0123456789abcdef").write_text('{"pid": 1}')  # its holder is gone: nobody holds it
    store.clean_stale()
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept)
    assert not store.checkpoint_dir(done["hash"]).exists() and unfinished.exists()
    assert not store.lock_path("0123456789abcdef").exists()


def test_a_killed_lock_holder_frees_the_run(tmp_path):
    store = ResultsStore(tmp_path / "s")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from superpos.engine import ResultsStore
        with ResultsStore({str(store.root)!r}).lock("0123456789abcdef"):
            print("held", flush=True)
            time.sleep(60)
    """)], env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with store.lock("0123456789abcdef", wait=False) as lock:
        assert not lock.held and f"pid {holder.pid}" in lock.holder()
    holder.kill()
    holder.wait()
    with store.lock("0123456789abcdef", wait=False) as lock:
        assert lock.held
