"""``export`` (a finished run's PEFT adapter, by run hash or record file) and ``preflight``, wired to the functions
that do the work (replaced here by stand-ins that record how they were called)."""
from __future__ import annotations

import json
import sys
import types

import pytest

from superpos.__main__ import main

HASH = "0123456789abcdef"


def _record(run_hash: str) -> dict:
    point = {"score": 50.0, "lenient_score": 50.0, "invalid_rate": 0.0}
    return {"hash": run_hash, "status": "done", "config": {"task": "bbc-topic", "method": "simple"},
            "best": {"step": 2, "dev": point, "test": point}}


@pytest.fixture()
def store(tmp_path):
    root = tmp_path / "store"
    (root / "records").mkdir(parents=True)
    for run_hash in (HASH, "0123ffffffffffff", "9999999999999999"):
        (root / "records" / f"{run_hash}.json").write_text(json.dumps(_record(run_hash)))
    return root


@pytest.fixture()
def exported(monkeypatch):
    """The calls of ``export_run``; it returns the folder as given."""
    import superpos.export as export_module

    calls = []

    def export_run(record_or_hash, folder, store=None):
        calls.append((record_or_hash, folder, store))
        return folder

    monkeypatch.setattr(export_module, "export_run", export_run)
    return calls


@pytest.mark.parametrize("run", [HASH, "01234567", "9999"])
def test_export_by_run_hash_or_a_unique_start_of_one(run, store, exported, tmp_path, capsys):
    folder = tmp_path / "adapter"
    assert main(["export", run, str(folder), "--results", str(store)]) == 0
    [(record, given, used)] = exported
    assert record["hash"].startswith(run) and record["status"] == "done"
    assert given == str(folder) and used.root == store
    assert capsys.readouterr().out.splitlines() == [f"export: run {record['hash']}: PEFT adapter in {folder}"]


def test_export_by_record_file_reads_the_store_around_it(store, exported, tmp_path, capsys):
    assert main(["export", str(store / "records" / f"{HASH}.json"), str(tmp_path / "adapter")]) == 0
    [(record, _, used)] = exported
    assert record["hash"] == HASH and used.root.resolve() == store.resolve()
    assert str(tmp_path / "adapter") in capsys.readouterr().out


@pytest.mark.parametrize("run, fragment", [
    ("fedcba9876543210", "export: no run 'fedcba9876543210' in "),
    ("0123", "export: '0123' starts 2 run hashes"),
    ("missing/record.json", "export: no such record file missing/record.json"),
    ("../store/records/x", "export: no run '../store/records/x' in "),
])
def test_export_of_an_unknown_run_is_one_line(run, fragment, store, exported, tmp_path, capsys):
    assert main(["export", run, str(tmp_path / "adapter"), "--results", str(store)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("superpos: error: ") and fragment in lines[0], lines
    assert not exported and not (tmp_path / "adapter").exists()


def test_export_of_a_file_that_is_not_a_record_is_one_line(exported, tmp_path, capsys):
    path = tmp_path / "notes.json"
    for text, problem in (("[1, 2]", "not a JSON object"), ("{garbage", "not JSON"),
                          (json.dumps({**_record(HASH), "config": None}), "no run config")):
        path.write_text(text)
        assert main(["export", str(path), str(tmp_path / "adapter")]) == 2
        assert f"is not a record ({problem}" in capsys.readouterr().err and not exported


def test_export_writes_the_adapter_of_a_finished_tiny_run(tmp_path, capsys):
    pytest.importorskip("peft")
    store, adapter = tmp_path / "store", tmp_path / "adapter"
    assert main(["run", "--backbone", "tiny-llama", "--task", "bbc-topic", "--method", "simple", "--max-steps", "1",
                 "--batch-size", "2", "--eval-limit", "4", "--train-limit", "4", "--device", "cpu",
                 "--results", str(store)]) == 0
    [record] = (store / "records").glob("*.json")
    capsys.readouterr()
    assert main(["export", record.stem[:8], str(adapter), "--results", str(store)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"export: run {record.stem}: PEFT adapter in {adapter}"]
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()


@pytest.fixture()
def preflight(monkeypatch):
    """A stand-in ``superpos.preflight`` module: its calls, and the exit status it returns."""
    calls = []
    module = types.ModuleType("superpos.preflight")

    def check(profile, *, device="auto", pack=None):
        calls.append((profile, device, pack))
        print(f"preflight table for {profile}")
        return 3

    module.preflight = check
    monkeypatch.setitem(sys.modules, "superpos.preflight", module)
    return calls


def test_preflight_passes_profile_and_device_and_returns_its_status(preflight, capsys):
    assert main(["preflight", "--profile", "paper", "--device", "cuda:1", "--pack", "4"]) == 3
    assert main(["preflight"]) == 3
    assert preflight == [("paper", "cuda:1", 4), ("quick", "auto", None)]
    assert capsys.readouterr().out.splitlines() == ["preflight table for paper", "preflight table for quick"]


@pytest.mark.parametrize("argv, fragment", [(["--profile", "nosuch"], "profile: unknown profile 'nosuch'"),
                                             (["--device", "tpu"], "device: must be 'auto', 'cpu' or 'cuda[:i]'")])
def test_preflight_bad_arguments_are_one_line(argv, fragment, capsys):
    pytest.importorskip("superpos.preflight")
    assert main(["preflight", *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], lines


def test_new_commands_are_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "export" in out and "preflight" in out and "--debug" in out
