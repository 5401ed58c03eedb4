"""Reliability of a damaged store, with training (tiny-llama, bbc-topic, a few steps on CPU): checkpoints whose
progress.json or state.pt was edited or does not have the trainer's shape, files where checkpoint folders should be,
records that are not the run their name says, and what a kill right after a record leaves behind."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import superpos.engine.config as config_module
from superpos.engine import ResultsStore, StoreError, run

from copies import Killed, arm_kill
from test_reliability import leftovers, same_run, tiny

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")


@pytest.fixture(scope="module")
def killed_at_step_4(tmp_path_factory):
    """The uninterrupted run (its store and record), and a store whose run was killed with a checkpoint at step 4."""
    root = tmp_path_factory.mktemp("killed")
    config = tiny()
    reference_store = ResultsStore(root / "reference")
    reference = run(config, reference_store, progress=False)
    killed = ResultsStore(root / "killed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TQDM_DISABLE", "1")
        arm_kill(patch, 9, "before")  # the third evaluation: the checkpoint of step 4 is the newest
        with pytest.raises(Killed):
            run(config, killed, progress=False)
    assert [step for step, _ in killed.checkpoints(reference["hash"])] == [4]
    return config, reference, reference_store, killed.root


@pytest.fixture()
def killed(killed_at_step_4, tmp_path):
    config, reference, reference_store, root = killed_at_step_4
    store = ResultsStore(shutil.copytree(root, tmp_path / "s"))
    return config, reference, reference_store, store, store.checkpoint_dir(reference["hash"]) / "step-4"


def edit_progress(change):
    def damage(folder: Path) -> None:
        progress = json.loads((folder / "progress.json").read_text())
        change(progress)
        (folder / "progress.json").write_text(json.dumps(progress))
    return damage


def edit_state(folder: Path) -> None:
    """A valid state.pt whose method state holds one other value: it loads, and would train on from there."""
    tensors = torch.load(folder / "state.pt", weights_only=True)
    name = sorted(tensors["method"])[0]
    tensors["method"][name] = tensors["method"][name].clone()
    tensors["method"][name].view(-1)[0] += 0.25
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    (folder / "state.pt").write_bytes(buffer.getvalue())


DAMAGES = {
    "best is {}": (edit_progress(lambda p: p.update(best={})), "'best' has no valid step"),
    "pending_loss is ['x']": (edit_progress(lambda p: p.update(pending_loss=["x"])), "'pending_loss'"),
    "history is [5]": (edit_progress(lambda p: p.update(history=[5])), "history[0] is not an evaluation point"),
    "a loss value edited": (edit_progress(lambda p: p["loss_curve"][1].__setitem__(1, p["loss_curve"][1][1] + 0.5)),
                            "checksum"),
    "a dev score edited": (edit_progress(lambda p: p["best"]["dev"].update(score=p["best"]["dev"]["score"] + 1)),
                           "checksum"),
    "a loss curve point dropped": (edit_progress(lambda p: p["loss_curve"].pop()), "the loss curve has 3 points"),
    "a tensor value edited": (edit_state, "checksum"),
}


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_a_checkpoint_whose_contents_were_edited_is_set_aside_in_one_line(damage, killed, capsys):
    config, reference, reference_store, store, folder = killed
    change, fragment = DAMAGES[damage]
    change(folder)
    capsys.readouterr()
    record = run(config, store, progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "step-4 is unusable" in err[0] and fragment in err[0] and "set aside" in err[0], err
    assert record["resumed"] is False  # no older checkpoint: it starts over, and ends as the uninterrupted run
    same_run(record, reference, store, reference_store)
    assert run(config, store, progress=False)["cached"]


def test_an_untouched_checkpoint_resumes_with_its_checksum(killed, capsys):
    config, reference, reference_store, store, folder = killed
    assert "checksum" in json.loads((folder / "progress.json").read_text())
    capsys.readouterr()
    record = run(config, store, progress=False)
    assert record["resumed"] is True and capsys.readouterr().err == ""
    same_run(record, reference, store, reference_store)


def test_files_where_checkpoint_folders_should_be_are_set_aside(killed_at_step_4, tmp_path, capsys):
    config, reference, reference_store, _ = killed_at_step_4
    run_hash = reference["hash"]
    for case in ("a step file", "the run's folder a file"):
        store = ResultsStore(tmp_path / case.replace(" ", "-"))
        target = store.checkpoint_dir(run_hash) / "step-2" if case == "a step file" else store.checkpoint_dir(run_hash)
        target.parent.mkdir(parents=True)
        target.write_text("not a checkpoint")  # step 2 is the first checkpoint this run writes
        capsys.readouterr()
        record = run(config, store, progress=False)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is unusable (a file, not a checkpoint folder); set aside" in err[0], (case, err)
        same_run(record, reference, store, reference_store)
        assert run(config, store, progress=False)["cached"]
    store = ResultsStore(tmp_path / "checkpoints-a-file")
    store.root.mkdir()
    (store.root / "checkpoints").write_text("")
    with pytest.raises(StoreError, match="checkpoints is not a folder") as error:
        run(config, store, progress=False)
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------- records that are not their name's run
def test_a_record_saved_under_another_runs_hash_is_not_served(tmp_path, capsys):
    store = ResultsStore(tmp_path / "s")
    mine, other = tiny(max_steps=2), tiny(max_steps=2, seed=1)
    theirs = run(other, store, progress=False)
    my_hash = mine.resolved().run_hash()
    store.put({**{k: v for k, v in theirs.items() if k != "cached"}, "hash": my_hash})  # their record, my name
    capsys.readouterr()
    record = run(mine, store, progress=False)
    assert not record["cached"] and record["config"]["seed"] == 0 and record["hash"] == my_hash
    err = capsys.readouterr().err
    assert "holds another run's configuration" in err and f"{my_hash}.json.misplaced" in err
    kept = json.loads(store.records_dir.joinpath(f"{my_hash}.json.misplaced").read_text())
    assert kept["config"]["seed"] == 1  # set aside, not lost
    assert run(mine, store, progress=False)["cached"] and run(other, store, progress=False)["cached"]


def test_a_record_of_an_older_code_version_is_neither_served_nor_corrupt(tmp_path, capsys, monkeypatch):
    store = ResultsStore(tmp_path / "s")
    config = tiny(max_steps=2)
    current = run(config, store, progress=False)
    with monkeypatch.context() as patch:
        patch.setattr(config_module, "CODE_VERSION", config_module.CODE_VERSION - 1)
        old_hash = config.resolved().run_hash()
    old = {**{k: v for k, v in current.items() if k != "cached"}, "hash": old_hash}
    store.put(old)
    capsys.readouterr()
    assert sorted(r["hash"] for r in store.records()) == sorted([current["hash"], old_hash])  # read, kept
    assert run(config, store, progress=False)["hash"] == current["hash"]
    assert not list(store.records_dir.glob("*.corrupt*")) and not list(store.records_dir.glob("*.misplaced*"))
    assert capsys.readouterr().err == ""
    from superpos.engine.train import names_its_run

    assert names_its_run(current) and not names_its_run(old)  # as a record of this run, it would not be served


def test_a_done_record_with_an_empty_best_point_is_redone(tmp_path, capsys):
    store = ResultsStore(tmp_path / "s")
    config = tiny(max_steps=2)
    finished = run(config, store, progress=False)
    store.put({**{k: v for k, v in finished.items() if k != "cached"}, "best": {}})
    capsys.readouterr()
    record = run(config, store, progress=False)
    assert not record["cached"] and record["best"] == finished["best"]
    assert "a done record without a best point" in capsys.readouterr().err


# ---------------------------------------------------------------- 7. leftovers of a kill right after the record
DIES_AFTER_THE_RECORD = textwrap.dedent("""
    import json, os, sys
    import superpos.engine.files as files
    from superpos.engine import ResultsStore, RunConfig, run

    config, root = RunConfig.from_dict(json.loads(sys.argv[1])), sys.argv[2]
    real = files.publish

    def publish(tmp, path):
        real(tmp, path)
        if path.parent.name == "records":
            os._exit(9)  # the record is there; its checkpoints and its lock file are not cleaned

    files.publish = publish
    run(config, ResultsStore(root), progress=False)
""")

HOLDS_THE_LOCK = textwrap.dedent("""
    import sys, time
    from superpos.engine import ResultsStore
    with ResultsStore(sys.argv[1]).lock(sys.argv[2]):
        print("held", flush=True)
        time.sleep(120)
""")


def test_a_kill_right_after_the_record_leaves_nothing_once_the_record_is_served(tmp_path):
    config = tiny()
    store = ResultsStore(tmp_path / "s")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    child = subprocess.run([sys.executable, "-c", DIES_AFTER_THE_RECORD, json.dumps(config.to_dict()), str(store.root)],
                           env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert child.returncode == 9, child.stderr
    run_hash = config.resolved().run_hash()
    assert store.is_done(run_hash) and store.checkpoint_dir(run_hash).is_dir() and store.lock_path(run_hash).exists()

    holder = subprocess.Popen([sys.executable, "-c", HOLDS_THE_LOCK, str(store.root), run_hash], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert run(config, store, progress=False)["cached"]  # served; another live process holds the lock: kept
        assert store.checkpoint_dir(run_hash).is_dir() and store.lock_path(run_hash).exists()
    finally:
        holder.kill()
        holder.wait()
    assert run(config, store, progress=False)["cached"]  # nobody holds it now: this process cleans
    assert leftovers(store) == [] and not store.checkpoint_dir(run_hash).exists()
    assert not list(store.locks_dir.glob("*"))
