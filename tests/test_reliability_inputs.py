"""Reliability of what comes in, without training: custom tasks' rows (no row dropped or clipped in silence), file
formats, names that could reach outside the store, path settings, grid files, local model folders that do not load,
and the fingerprints of local files that enter run hashes."""
from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import pytest

from superpos.engine import ResultsStore, RunConfig, RunError, StoreError, run
from superpos.engine.grid import GridSpec, expand
from superpos.tasks import Task, TaskError, get_task, read_rows, register_task, task_from_dataset, task_from_files, \
    unregister_task

TRAIN = [{"text": f"t{i}", "label": i % 6} for i in range(6)]


def one_line(error) -> str:
    text = str(error.value)
    assert "\n" not in text, text
    return text


# ---------------------------------------------------------------- 1. custom regression rows
@pytest.mark.parametrize("label, fragment", [
    (-3, "outside the task's label range [0, 5]"),
    (-0.5, "outside the task's label range [0, 5]"),
    (5.2, "outside the task's label range [0, 5]"),
    (7, "outside the task's label range [0, 5]"),
    (float("nan"), "not a finite number"),
    (float("inf"), "not a finite number"),
    ("-inf", "not a finite number"),
    (None, "not a number"),
    (True, "not a number"),
])
def test_a_regression_row_outside_its_range_is_refused_with_its_row(label, fragment):
    validation = [{"text": "a", "label": 1.0}, {"text": "b", "label": 2.0}, {"text": "c", "label": label}]
    with pytest.raises(TaskError, match="validation row 3") as error:
        task_from_dataset("scores", train=TRAIN, validation=validation, inputs=["text"], label_words=None,
                          metrics=["pearson"])
    assert fragment in one_line(error)


def test_a_regression_task_keeps_every_row_and_declares_its_range(tmp_path):
    rows = [{"text": f"x{i}", "label": value} for i, value in enumerate((0, 0.5, 2.5, 5))]
    task = task_from_dataset("scores", train=rows, validation=rows, inputs=["text"], label_words=None,
                             metrics=["pearson"])
    assert [e.label for e in task.examples("validation")] == [0.0, 0.5, 2.5, 5.0]  # 0 and 5 included: nothing lost
    assert task.label_range == (0.0, 5.0)
    narrower = dict(train=rows[1:], validation=rows[1:], inputs=["text"], label_words=None, metrics=["pearson"])
    assert task_from_dataset("likert", label_range=(0.5, 5), **narrower).label_range == (0.5, 5.0)
    with pytest.raises(TaskError, match="train row 1: label 0.5 is outside the task's label range \\[1, 5\\]"):
        task_from_dataset("likert", label_range=(1, 5), **narrower)
    with pytest.raises(TaskError, match="must lie within \\[0, 5\\]"):
        task_from_dataset("likert", label_range=(0, 10), **narrower)
    with pytest.raises(TaskError, match="regression tasks only"):
        task_from_dataset("words", train=TRAIN, validation=TRAIN, inputs=["text"], label_words=list("abcdef"),
                          label_range=(0, 5))
    # the same rows from a CSV file: "-3" on its third data row is refused, not dropped
    for name, labels in (("train.csv", ["1.5", "4"]), ("dev.csv", ["1.5", "4", "-3"])):
        with (tmp_path / name).open("w", newline="") as handle:
            csv.writer(handle).writerows([["text", "label"], *(["x", label] for label in labels)])
    with pytest.raises(TaskError, match="validation row 3: label '-3' is outside"):
        task_from_files("scores", train=tmp_path / "train.csv", validation=tmp_path / "dev.csv", inputs=["text"],
                        label_words=None, metrics=["pearson"])


def test_built_in_tasks_still_drop_the_hubs_unlabelled_rows():
    class HubLike(Task):
        def rows(self, split):
            return [{"s": "a", "label": 2.0}, {"s": "b", "label": -1.0}, {"s": "c", "label": 4.6}]

    task = HubLike("hub", description="", label_words=None, metric_names=["pearson"], fields=[("s", "s")])
    assert task.drops_unlabelled and [e.label for e in task.examples("train")] == [2.0, 4.6]
    assert len(get_task("bbc-topic").examples("validation")) == 1000  # a built-in task: as before


# ---------------------------------------------------------------- 6. rows and files
def test_a_null_input_field_is_refused_with_its_row():
    validation = [{"text": "a", "label": 0}, {"text": None, "label": 1}]
    with pytest.raises(TaskError, match="validation row 2: input field 'text' is empty \\(null\\)") as error:
        task_from_dataset("nulls", train=TRAIN, validation=validation, inputs=["text"], label_words=list("abcdef"))
    one_line(error)
    with pytest.raises(TaskError, match="train row 1: label is empty \\(null\\)"):
        task_from_dataset("nulls", train=[{"text": "a", "label": None}], validation=validation[:1], inputs=["text"],
                          label_words=["none", "some"])  # never the text "None", which a label word would take


def test_a_long_csv_cell_is_read_and_a_bad_jsonl_line_is_one_line(tmp_path):
    import csv as csv_module

    limit = csv_module.field_size_limit()
    long = "word " * 40_000  # 200 kB: over the csv module's default limit of 131,072 characters
    path = tmp_path / "long.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([["text", "label"], [long, "1"], ["short", "0"]])
    rows = read_rows(path)
    assert [len(r["text"]) for r in rows] == [len(long), 5] and rows[1] == {"text": "short", "label": "0"}
    assert csv_module.field_size_limit() == limit  # the process's own limit is left as it was

    for text, fragment in (('{"text": "a", "label": 1}\n[1, 2]\n', "line 2 is not a JSON object of fields (got list)"),
                           ('{"text": "a", "label": 1}\n\n7\n', "line 3 is not a JSON object of fields (got int)"),
                           ('{"text": "a", "label": 1}\n{"text": \n', "line 2 is not valid JSON")):
        bad = tmp_path / "bad.jsonl"
        bad.write_text(text)
        with pytest.raises(TaskError, match=re.escape(fragment)) as error:
            read_rows(bad)
        one_line(error)
    array = tmp_path / "array.json"
    array.write_text('[{"text": "a", "label": 1}, "b"]')
    with pytest.raises(TaskError, match="element 2 of the array is not an object"):
        read_rows(array)
    extra = tmp_path / "extra.csv"
    extra.write_text("text,label\na,1\nb,0,surplus\n")
    with pytest.raises(TaskError, match="line 3 has 1 more cell"):
        read_rows(extra)


def test_a_custom_task_cannot_take_a_built_in_tasks_other_spelling():
    for name in ("sst-2", "sst_2", "bbc_topic"):
        with pytest.raises(TaskError, match="another spelling of the built-in task") as error:
            task_from_dataset(name, train=TRAIN, validation=TRAIN, inputs=["text"], label_words=list("abcdef"))
        one_line(error)
    task = task_from_dataset("reviews2", train=TRAIN, validation=TRAIN, inputs=["text"], label_words=list("abcdef"))
    register_task(task)
    try:
        register_task(task_from_dataset("reviews2", train=TRAIN[:3], validation=TRAIN, inputs=["text"],
                                        label_words=list("abcdef")), replace=True)  # its own name: replaced
    finally:
        unregister_task("reviews2")


# ---------------------------------------------------------------- 4. names that reach outside the store
def test_a_source_that_is_a_path_is_refused_and_nothing_outside_the_store_moves(tmp_path, capsys):
    other = ResultsStore(tmp_path / "results" / "X")
    victim = {"hash": "0123456789abcdef", "status": "done", "config": {"method": "simple", "task": "rte"},
              "best": {"step": 1, "dev": {}, "test": {}}}
    other.put(victim)
    store = ResultsStore(tmp_path / "results" / "cli")  # records/../../X is results/X
    escape = "../../X/records/0123456789abcdef"
    config = RunConfig(backbone="tiny-llama", task="bbc-topic", method="attempt", sources=[escape], device="cpu",
                       max_steps=2)
    with pytest.raises(RunError, match="is not a run hash") as error:
        run(config, store, progress=False)
    one_line(error)
    for name in (escape, "0123456789ABCDEF", "0123456789abcde", "", "../x"):
        with pytest.raises(StoreError, match="not a run hash"):
            store.get(name)
    assert json.loads(other.record_path("0123456789abcdef").read_text()) == victim  # in place, untouched
    assert not list(other.records_dir.glob("*.corrupt*")) and "corrupt" not in capsys.readouterr().err


def test_names_in_records_that_are_not_run_hashes_are_not_read_as_records(tmp_path, capsys):
    store = ResultsStore(tmp_path / "s")
    store.records_dir.mkdir(parents=True)
    (store.records_dir / "notes.json").write_text("[]")
    assert list(store.records()) == [] and (store.records_dir / "notes.json").exists()


# ---------------------------------------------------------------- 5. records and locks
def test_a_done_record_without_a_best_point_is_set_aside(tmp_path, capsys):
    store = ResultsStore(tmp_path / "s")
    base = {"hash": "0123456789abcdef", "status": "done", "config": {"method": "simple", "task": "rte"}}
    for best in ({}, {"dev": {}}, {"test": {}, "dev": None}):
        store.put({**base, "best": best})
        assert store.get("0123456789abcdef") is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all("corrupt record" in line and "best" in line for line in err), err
    store.put({**base, "best": {"dev": {}, "test": {}}})  # the shape itself is a record's
    assert store.get("0123456789abcdef") is not None


def test_a_lock_that_is_a_folder_or_a_locks_file_is_one_line(tmp_path):
    store = ResultsStore(tmp_path / "s")
    store.lock_path("0123456789abcdef").mkdir(parents=True)
    with pytest.raises(StoreError, match="is a folder, not a lock file") as error:
        with store.lock("0123456789abcdef"):
            pass
    one_line(error)
    store.clean_stale()  # passes over it, and leaves it
    assert store.lock_path("0123456789abcdef").is_dir()
    other = ResultsStore(tmp_path / "t")
    other.root.mkdir()
    (other.root / "locks").write_text("")
    with pytest.raises(StoreError, match="is not a folder, so no run can be locked") as error:
        with other.lock("0123456789abcdef", wait=False):
            pass
    one_line(error)


# ---------------------------------------------------------------- 6. path settings and grid files
def test_profile_names_and_empty_paths_are_refused(tmp_path, monkeypatch):
    from superpos import paths

    monkeypatch.setenv("SUPERPOS_RESULTS", str(tmp_path / "results"))
    for bad in ("../escape", "a/b", "", ".hidden", "..", " x"):
        for function in (paths.store_dir, paths.reference_dir, paths.fresh_dir, paths.renders_dir):
            with pytest.raises(ValueError, match="is not a profile name"):
                function(bad)
        with pytest.raises(ValueError, match="is not a profile name"):
            paths.results_root(None, bad)
        with pytest.raises(ValueError, match="is not a profile name"):
            ResultsStore(profile=bad)
    assert paths.results_root(None, "mine") == tmp_path / "results" / "mine"
    assert paths.results_root(str(tmp_path / "r"), "../ignored") == tmp_path / "r"
    for empty in ("", "  "):
        with pytest.raises(ValueError, match="--results: an empty path"):
            paths.results_root(empty, "cli")
        with pytest.raises(StoreError, match="an empty path"):
            ResultsStore(empty)
    assert not any(tmp_path.iterdir())  # nothing written anywhere


def test_superpos_cache_empty_or_a_file_is_one_line(tmp_path, monkeypatch):
    from superpos.paths import cache_dir

    monkeypatch.setenv("SUPERPOS_CACHE", "")
    with pytest.raises(ValueError, match="SUPERPOS_CACHE is set to an empty string"):
        cache_dir()
    afile = tmp_path / "cache"
    afile.write_text("")
    monkeypatch.setenv("SUPERPOS_CACHE", str(afile))
    with pytest.raises(ValueError, match="is a file, not a folder"):
        cache_dir()
    monkeypatch.setenv("SUPERPOS_CACHE", str(tmp_path / "fine"))
    assert cache_dir() == tmp_path / "fine"


@pytest.mark.parametrize("data, fragment", [
    ({"budget": {}}, "names no tasks and no methods"),
    ({"seeds": [0]}, "names no tasks and no methods"),
    ({"tasks": ["bbc-topic"]}, "names no methods"),
    ({"methods": ["simple"], "budget": {"max_steps": 2}}, "names no tasks"),
    ({}, "is an empty object"),
    ([], "must hold a JSON object"),
])
def test_a_grid_file_names_its_tasks_and_methods(data, fragment):
    with pytest.raises(ValueError, match=fragment) as error:
        GridSpec.from_file_data(data, "grid.json")
    one_line(error)
    assert GridSpec.from_file_data({"tasks": ["bbc-topic"], "methods": ["simple"]}).tasks == ["bbc-topic"]


def test_a_task_budget_entry_in_a_display_spelling_is_the_same_task():
    base = dict(backbones=["tiny-llama"], methods=["simple"], budget={"max_steps": 2})
    for tasks, budget in ((["sst2"], {"SST-2": {"max_steps": 3}}), (["SST-2"], {"sst2": {"max_steps": 3}}),
                          (["sst_2"], {"Sst-2": {"max_steps": 3}})):
        spec = GridSpec(tasks=tasks, task_budget=budget, **base)
        assert spec.tasks_outside() == [] and spec.task_budget == {"sst2": {"max_steps": 3}}
        (config,) = expand(spec)
        assert config.task == "sst2" and config.max_steps == 3
    with pytest.raises(ValueError, match="names the same task as another entry"):
        GridSpec(tasks=["sst2"], task_budget={"sst2": {}, "SST-2": {}}, **base)
    assert GridSpec(tasks=["sst2"], task_budget={"rte": {}}, **base).tasks_outside() == ["rte"]


# ---------------------------------------------------------------- 3. a local model folder that does not load
def saved_model(tmp_path: Path, name: str, tiny_llama) -> Path:
    folder = tmp_path / name
    tiny_llama.model.save_pretrained(str(folder))
    tiny_llama.tokenizer.save_pretrained(str(folder))
    return folder


def test_a_local_folder_whose_weights_do_not_fit_its_config_is_one_line(tmp_path, tiny_llama):
    from transformers import BertConfig

    from superpos.backbones import BackboneError, load_backbone

    good = saved_model(tmp_path, "good", tiny_llama)
    loaded = load_backbone(str(good))
    assert loaded.kind == "causal" and loaded.model.config.model_type == "llama"
    bert = saved_model(tmp_path, "bert", tiny_llama)
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
               vocab_size=100).save_pretrained(str(bert))
    with pytest.raises(BackboneError, match="does not hold the model its config.json names \\(bert\\)") as error:
        load_backbone(str(bert))
    assert "missing from its weights" in one_line(error) and "not in the model" in str(error.value)


# ---------------------------------------------------------------- 2. fingerprints of local files
def test_a_local_model_fingerprint_follows_its_contents_not_its_spelling(tmp_path, tiny_llama, monkeypatch):
    from superpos.backbones.files import local_model_fingerprint

    folder = saved_model(tmp_path, "model", tiny_llama)
    monkeypatch.chdir(tmp_path)
    first = local_model_fingerprint("model")
    assert first.startswith("local:")
    (tmp_path / "sub").mkdir()
    assert local_model_fingerprint("model/") == local_model_fingerprint(str(folder)) == first
    monkeypatch.chdir(tmp_path / "sub")
    assert local_model_fingerprint("../model") == first
    (folder / "README.md").write_text("notes")  # not a file the model is read from
    assert local_model_fingerprint(str(folder)) == first
    weights = folder / "model.safetensors"
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one byte of one weight: same size, and the same modification time below
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = local_model_fingerprint(str(folder))
    assert changed != first
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-5}))
    assert local_model_fingerprint(str(folder)) not in (first, changed)
    for name in ("tiny-llama", "smollm2-135m", "t5-base", "google/t5-base-lm-adapt", "no/such-folder"):
        assert local_model_fingerprint(name) is None  # registered names and hub ids: hashes as before


def test_release_files_under_superpos_data_have_a_fingerprint(tmp_path, monkeypatch):
    from superpos.tasks.loading import local_data_fingerprint

    monkeypatch.delenv("SUPERPOS_DATA", raising=False)
    assert local_data_fingerprint("rte") is None
    monkeypatch.setenv("SUPERPOS_DATA", str(tmp_path))
    assert local_data_fingerprint("rte") is None  # no files of the task there: the hub's rows
    folder = tmp_path / "RTE"
    folder.mkdir()
    row = {"premise": "a", "hypothesis": "b", "label": "entailment", "idx": 0}
    (folder / "train.jsonl").write_text(json.dumps(row) + "\n")
    (folder / "val.jsonl").write_text(json.dumps(row) + "\n")
    first = local_data_fingerprint("rte")
    assert first is not None and local_data_fingerprint("RTE") == first
    (folder / "val.jsonl").write_text(json.dumps({**row, "label": "not_entailment"}) + "\n")
    assert local_data_fingerprint("rte") not in (None, first)
    assert local_data_fingerprint("bbc-topic") is None and local_data_fingerprint("sst2") is None


@pytest.mark.parametrize("device", ["cuda:abc", "cuda:-1", "cuda:", "gpu"])
def test_a_malformed_device_is_one_line(device):
    from superpos.engine import RunConfig

    with pytest.raises(ValueError, match=r"^device: must be 'auto', 'cpu' or 'cuda\[:i\]'"):
        RunConfig(device=device)


def test_an_unreachable_ray_address_fails_in_seconds_not_minutes():
    import socket
    import time

    from superpos.engine.ray_executor import check_reachable

    with socket.socket() as probe:  # a port nobody listens on: bind, read it, close
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.perf_counter()
    with pytest.raises(ValueError, match=rf"^ray: cannot connect to 127.0.0.1:{port} \(nothing answered"):
        check_reachable(f"127.0.0.1:{port}", timeout=2)
    assert time.perf_counter() - started < 5
    check_reachable("auto")  # left to Ray
