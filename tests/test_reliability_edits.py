"""Reliability fixes whose last step lives outside the store and the tasks: run hashes of local files
(``RunConfig.run_hash``), the command line's ``--results``, ``--profile``, grid files and ``method_config: null``,
and task registration under another spelling of a built-in name."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from superpos.config import stable_hash
from superpos.engine import RunConfig
from superpos.engine.config import CODE_VERSION, NOT_HASHED
from superpos.tasks import Task, TaskError, canonical_name, register_task, unregister_task

TINY = dict(task="bbc-topic", method="simple", max_steps=1, batch_size=4, eval_every=1, train_limit=8,
            eval_limit=4, eval_batch_size=4, max_input_tokens=32, device="cpu")


def plain_hash(config: RunConfig) -> str:
    """The run hash as it was before fingerprints of local files entered it."""
    payload = {k: v for k, v in config.resolved().to_dict().items() if k not in NOT_HASHED}
    return stable_hash({**payload, "code_version": CODE_VERSION})


# ---------------------------------------------------------------- 2. run hashes of local files
def test_a_local_model_folders_run_hash_follows_its_contents(tmp_path, tiny_llama, monkeypatch):
    folder = tmp_path / "model"
    tiny_llama.model.save_pretrained(str(folder))
    tiny_llama.tokenizer.save_pretrained(str(folder))
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    first = RunConfig(backbone="model", **TINY).run_hash()
    assert RunConfig(backbone="model/", **TINY).run_hash() == first
    assert RunConfig(backbone=str(folder), **TINY).run_hash() == first
    monkeypatch.chdir(tmp_path / "sub")
    assert RunConfig(backbone="../model", **TINY).run_hash() == first
    weights = folder / "model.safetensors"
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same modification time
    assert RunConfig(backbone="../model", **TINY).run_hash() != first
    for name in ("tiny-llama", "tiny-t5", "smollm2-135m"):  # registered names: their hashes as before
        config = RunConfig(backbone=name, **TINY)
        assert config.run_hash() == plain_hash(config)


def test_release_files_under_superpos_data_enter_the_run_hash(tmp_path, monkeypatch):
    config = RunConfig(backbone="tiny-llama", **{**TINY, "task": "rte"})
    monkeypatch.delenv("SUPERPOS_DATA", raising=False)
    hub = config.run_hash()
    assert hub == plain_hash(config)  # the hub's rows: the hash as before
    monkeypatch.setenv("SUPERPOS_DATA", str(tmp_path))
    assert config.run_hash() == hub  # no files of the task there
    folder = tmp_path / "RTE"
    folder.mkdir()
    row = {"premise": "a", "hypothesis": "b", "label": "entailment", "idx": 0}
    (folder / "train.jsonl").write_text(json.dumps(row) + "\n")
    (folder / "val.jsonl").write_text(json.dumps(row) + "\n")
    local = config.run_hash()
    assert local != hub and RunConfig(backbone="tiny-llama", **{**TINY, "task": "RTE"}).run_hash() == local
    (folder / "val.jsonl").write_text(json.dumps({**row, "label": "not_entailment"}) + "\n")
    assert config.run_hash() not in (hub, local)
    bbc = RunConfig(backbone="tiny-llama", **TINY)
    assert bbc.run_hash() == plain_hash(bbc)  # other tasks: as before


# ---------------------------------------------------------------- 6. the command line
@pytest.fixture()
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPERPOS_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    return tmp_path


def run_flags() -> list[str]:
    return ["run", "--backbone", "tiny-llama", *(f"--{k.replace('_', '-')}={v}" for k, v in TINY.items())]


def one_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("superpos: error: "), lines
    return lines[0]


def test_an_empty_results_folder_or_a_profile_path_is_refused(results, capsys):
    from superpos.__main__ import main

    assert main([*run_flags(), "--results", ""]) == 2
    assert "--results: an empty path" in one_error(capsys)
    assert main([*run_flags(), "--profile", "../escape"]) == 2
    assert "is not a profile name" in one_error(capsys)
    grid = results / "grid.json"
    grid.write_text(json.dumps({"tasks": ["bbc-topic"], "methods": ["simple"], "budget": {"max_steps": 1}}))
    assert main(["grid", str(grid), "--profile", "../escape"]) == 2
    assert "is not a profile name" in one_error(capsys)
    assert not (results / "escape").exists() and not list(Path.cwd().glob("records"))


@pytest.mark.parametrize("data", [{"budget": {}}, {"seeds": [0]}, {"methods": ["simple"]}])
def test_a_grid_file_without_tasks_or_methods_is_refused(data, results, capsys):
    from superpos.__main__ import main

    grid = results / "grid.json"
    grid.write_text(json.dumps(data))
    assert main(["grid", str(grid), "--results", str(results / "store")]) == 2
    assert "names no" in one_error(capsys)
    assert not (results / "store").exists()


def test_method_config_null_in_a_config_file_is_refused(results, capsys):
    from superpos.__main__ import main

    config = results / "run.json"
    config.write_text(json.dumps({"backbone": "tiny-llama", "method_config": None, **TINY}))
    assert main(["run", "--config", str(config), "--results", str(results / "store")]) == 2
    assert "method_config: must be an object" in one_error(capsys)


# ---------------------------------------------------------------- 6. registration
def test_registering_another_spelling_of_a_built_in_task_is_refused():
    class Mine(Task):
        def rows(self, split):
            return [{"text": "a", "label": 0}]

    for name in ("sst-2", "sst_2", "bbc_topic"):
        with pytest.raises(TaskError, match="built-in task"):
            register_task(Mine(name, description="", label_words=["a"], metric_names=["accuracy"],
                               fields=[("text", "text")]))
        unregister_task(name)
    assert canonical_name("SST-2") == "sst2"
