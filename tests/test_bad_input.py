"""Bad input, table-driven: each kind is refused in one line naming what is wrong (``superpos: error: ...``,
exit status 2; a ``ValueError`` from the API), fast, before any model loads, with the store left as it was.
Also: run hashes do not move, type-equivalent spellings share a hash, a full disk or a read-only results
folder part-way is one line, and Ctrl-C is one line (exit status 130) saying what was kept."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import superpos
from superpos.__main__ import build_parser, main
from superpos.engine import GridSpec, ResultsStore, RunConfig, expand, run_configs
from superpos.engine.grid import Interrupted, StorageError

REPO = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TQDM_DISABLE": "1"}
#: A tiny run that trains in seconds on the embedded BBC suite.
TINY = dict(backbone="tiny-llama", task="bbc-topic", method="simple", max_steps=2, batch_size=4, eval_every=1,
            train_limit=8, eval_limit=4, eval_batch_size=4, max_input_tokens=32, device="cpu")


def test_the_package_under_test_is_this_checkout():
    assert Path(superpos.__file__).resolve().is_relative_to(REPO)


# ----------------------------------------------------------------------------- run hashes stay put
#: Committed reference records are found by these (code version 3: a change that moves them must be on purpose).
PINNED = {
    "default": "952e935be36a7a2c",  # RunConfig()
    "tiny": "64513a32a08a12e2",
    "quick_first": "334b96535afa470b",  # profile_configs("quick")[0]
}
TINY_PINNED = dict(backbone="tiny-llama", task="sst2", method="superpos", method_config={"m": 16}, max_steps=2,
                   dropout_rate=0.1)


def test_run_hashes_of_correctly_typed_configs_are_unchanged():
    from superpos.profiles import PROFILES, profile_configs

    assert RunConfig().run_hash() == PINNED["default"]
    assert RunConfig(**TINY_PINNED).run_hash() == PINNED["tiny"]
    assert profile_configs("quick", None)[0].run_hash() == PINNED["quick_first"]
    # every run of every profile keeps its hash through the record's JSON (what a store reads back)
    for profile in PROFILES:
        for config in profile_configs(profile, None):
            again = RunConfig.from_dict(json.loads(json.dumps(config.to_dict())))
            assert again.run_hash() == config.run_hash(), (profile, config.label())


def test_committed_reference_records_rehash_to_their_names():
    paths = sorted(REPO.glob("results/*/reference/records/*.json"))
    assert paths
    for path in paths:
        record = json.loads(path.read_text())
        assert RunConfig.from_dict(record["config"]).run_hash() == record["hash"] == path.stem


@pytest.mark.parametrize("spelled, canonical", [
    (dict(max_steps=2.0, seed=0.0, batch_size=8.0, epochs=1.0), dict(max_steps=2, seed=0, batch_size=8, epochs=1)),
    (dict(dropout_rate=0), dict(dropout_rate=0.0)),
    (dict(method_config={"m": 16.0, "lr": 1}), dict(method_config={"m": 16, "lr": 1.0})),
    (dict(method="attempt", method_config={}, sources=("0123456789abcdef",)),
     dict(method="attempt", method_config={}, sources=["0123456789abcdef"])),
])
def test_type_equivalent_spellings_share_one_hash(spelled, canonical):
    a, b = RunConfig(**{**TINY_PINNED, **spelled}), RunConfig(**{**TINY_PINNED, **canonical})
    assert a == b and a.run_hash() == b.run_hash()
    assert RunConfig.from_dict({**TINY_PINNED, **spelled}).run_hash() == b.run_hash()


def test_a_task_s_display_spelling_names_the_same_run():
    for spelling in ("SST-2", "sst_2", " Sst2 "):
        spelled = RunConfig(**{**TINY_PINNED, "task": spelling})
        assert spelled.resolved().task == "sst2" and spelled.run_hash() == RunConfig(**TINY_PINNED).run_hash()
    assert RunConfig(task="BBC-Topic").resolved().task == "bbc-topic"


def test_type_equivalent_spellings_in_a_grid_and_on_the_command_line():
    grid = dict(backbones=["tiny-llama"], tasks=["sst2"], methods=["simple"], budget={"max_steps": 2})
    same = {c.run_hash() for c in expand(GridSpec(**grid))}
    assert {c.run_hash() for c in expand(GridSpec(**{**grid, "seeds": [0.0], "budget": {"max_steps": 2.0}}))} == same
    args = build_parser().parse_args(["run", "--max-steps", "2.0", "--seed", "3", "--dropout-rate", "0",
                                      "--train-limit", "none"])
    assert (args.max_steps, args.seed, args.dropout_rate, args.train_limit) == (2, 3, 0.0, None)
    assert type(args.max_steps) is int and type(args.dropout_rate) is float


# ----------------------------------------------------------------------------- the table of bad inputs
def _grid(**fields) -> dict:
    base = dict(backbones=["tiny-llama"], tasks=["sst2"], methods=["simple"], budget={"max_steps": 2})
    return {**base, **fields}


def _model_folder(root: Path, kind: str) -> str:
    folder = root / f"model-{kind}"
    folder.mkdir()
    if kind != "no-config":
        config = {"garbage-config": "{not json", "no-model-type": '{"hidden_size": 8}'}.get(
            kind, '{"model_type": "llama", "hidden_size": 8}')
        (folder / "config.json").write_text(config)
    if kind in ("garbage-config", "no-model-type", "no-config"):
        (folder / "model.safetensors").write_bytes(b"")
    return str(folder)


# (kind, how, input, fragment of the one line). how: "api" (RunConfig/GridSpec kwargs, then resolved/expand),
# "cli" (argv after `python -m superpos`), "grid" (a grid file's JSON text), "folder" (a local model folder).
CASES = [
    # API configs
    ("bool as the string 'false'", "api", {"dropout": "false"}, "dropout: must be true or false"),
    ("bool as the string 'no'", "api", {"dropout": "no"}, "dropout: must be true or false"),
    ("bool as the number 1", "api", {"dropout": 1}, "dropout: must be true or false"),
    ("int as a string", "api", {"seed": "0"}, "seed: must be an integer"),
    ("int as a string (batch size)", "api", {"batch_size": "8"}, "batch_size: must be an integer"),
    ("int as a non-integral float", "api", {"seed": 1.5}, "seed: must be an integer"),
    ("int as a bool", "api", {"epochs": True}, "epochs: must be an integer"),
    ("int as infinity", "api", {"max_steps": float("inf")}, "max_steps: must be an integer"),
    ("float as a string", "api", {"dropout_rate": "0.1"}, "dropout_rate: must be a number"),
    ("float as NaN", "api", {"dropout_rate": float("nan")}, "dropout_rate: must be a finite number"),
    ("method_config None", "api", {"method_config": None}, "method_config: must be an object"),
    ("method_config a list", "api", {"method_config": [["m", 16]]}, "method_config: must be an object"),
    ("sources a string", "api", {"method": "attempt", "sources": "0123456789abcdef"}, "sources: must be a list"),
    ("sources entry not a string", "api", {"method": "attempt", "sources": [7]}, "sources: entry 0"),
    ("task a number", "api", {"task": 5}, "task: must be a string"),
    ("device None", "api", {"device": None}, "device: must be a string"),
    ("backbone empty", "api", {"backbone": ""}, "backbone: must name a backbone"),
    ("method field as a string", "api", {"method": "superpos", "method_config": {"m": "16"}}, "m: must be an integer"),
    ("method bool as a string", "api", {"method": "superpos", "method_config": {"softmax": "false"}},
     "softmax: must be true or false"),
    ("method float as a string", "api", {"method": "simple", "method_config": {"lr": "0.1"}}, "lr: must be a number"),
    ("grid axis as a string", "api-grid", {"tasks": "bbc-topic"}, "tasks: must be a list"),
    ("config from a list", "api-dict", ["seed", 0], "expected an object"),
    # command-line values
    ("--batch-size abc", "cli", ["run", "--batch-size", "abc"], "argument --batch-size: expected an integer"),
    ("--seed 1.5", "cli", ["run", "--seed", "1.5"], "argument --seed: expected an integer"),
    ("--dropout-rate abc", "cli", ["run", "--dropout-rate", "abc"], "argument --dropout-rate: expected a finite number"),
    ("--max-steps nan", "cli", ["run", "--max-steps", "nan"], "argument --max-steps: expected an integer"),
    ("--dropout-rate out of range", "cli", ["run", "--dropout-rate", "1.5"], "dropout_rate: must be in [0, 1)"),
    ("--epochs 0", "cli", ["run", "--epochs", "0"], "epochs: must be >= 1"),
    ("--set m=abc", "cli", ["run", "--set", "m=abc"], "m: must be an integer"),
    ("--set softmax=no", "cli", ["run", "--set", "softmax=no"], "softmax: must be true or false"),
    ("--set without =", "cli", ["run", "--set", "m"], "--set: expected KEY=VALUE"),
    ("--set unknown field", "cli", ["run", "--set", "mm=3"], "unknown field(s) mm"),
    ("unknown flag", "cli", ["run", "--bogus"], "unrecognized arguments: --bogus"),
    ("no command", "cli", [], "required: command"),
    ("unknown backbone", "cli", ["run", "--backbone", "gpt5"], "unknown backbone"),
    ("dropout on, no rate, a backbone pretrained without", "cli", ["run", "--dropout"],
     "smollm2-135m has no dropout of its own"),
    ("fp16 with T5", "cli", ["run", "--backbone", "tiny-t5", "--method", "full", "--dtype", "fp16"],
     "T5 overflows in float16"),
    ("fp16 on a CPU", "cli", ["run", "--backbone", "tiny-llama", "--dtype", "fp16", "--device", "cpu"],
     "fp16 runs on CUDA only"),
    # grid files
    ("grid: a JSON list", "grid", "[]", "must hold a JSON object"),
    ("grid: an empty object", "grid", "{}", "is an empty object"),
    ("grid: not JSON", "grid", "{tasks: [sst2]}", "is not valid JSON"),
    ("grid: no such file", "grid", None, "no such file"),
    ("grid: unknown field", "grid", json.dumps(_grid(task=["sst2"])), "unknown field(s) task"),
    ("grid: tasks a string", "grid", json.dumps(_grid(tasks="bbc-topic")), "tasks: must be a list"),
    ("grid: method entry without method", "grid", json.dumps(_grid(methods=[{"config": {"m": 4}}])),
     "methods[0]: names no \"method\""),
    ("grid: method entry with an unknown key", "grid",
     json.dumps(_grid(methods=[{"method": "simple", "confg": {}}])), "methods[0]: unknown key(s) confg"),
    ("grid: unknown method", "grid", json.dumps(_grid(methods=["prefix"])), "unknown method"),
    ("grid: unknown field in task_budget", "grid", json.dumps(_grid(task_budget={"sst2": {"epoch": 2}})),
     "task_budget.sst2: unknown or axis field 'epoch'"),
    ("grid: task_budget for a task not in the grid", "grid",
     json.dumps(_grid(task_budget={"rte": {"max_steps": 4}})), "task_budget: 'rte' not among the grid's tasks"),
    ("grid: task_budget entry not an object", "grid", json.dumps(_grid(task_budget={"sst2": 4})),
     "task_budget.sst2: must be an object"),
    ("grid: budget value of the wrong type", "grid", json.dumps(_grid(budget={"batch_size": "8"})),
     "budget.batch_size: must be an integer"),
    ("grid: dropout 'false'", "grid", json.dumps(_grid(dropout=["false"])), "dropout: must be true or false"),
    ("grid: seeds as strings", "grid", json.dumps(_grid(seeds=["0"])), "seeds: must be an integer"),
    ("grid: m of 1.5", "grid", json.dumps(_grid(methods=["superpos"], m=[1.5])), "m: must be an integer"),
    ("grid: empty axis", "grid", json.dumps(_grid(seeds=[])), "seeds: must name at least one value"),
    # local model folders
    ("folder: garbage config.json", "folder", "garbage-config", "config.json is not valid JSON"),
    ("folder: config.json without model_type", "folder", "no-model-type", "names no model_type"),
    ("folder: no weights", "folder", "no-weights", "has no model weights"),
    ("folder: no config.json", "folder", "no-config", "has no config.json"),
]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture()
def store(tmp_path) -> Path:
    """A store holding one record, so that "unchanged" means something."""
    root = tmp_path / "store"
    (root / "records").mkdir(parents=True)
    (root / "records" / "0123456789abcdef.json").write_text('{"hash": "0123456789abcdef", "status": "done"}\n')
    return root


def test_the_table_covers_at_least_30_kinds():
    assert len(CASES) >= 30 and len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("kind, how, value, fragment", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_one_line(kind, how, value, fragment, store, tmp_path, capsys, monkeypatch):
    for key, setting in OFFLINE.items():
        monkeypatch.setenv(key, setting)
    before = _snapshot(store)
    started = time.perf_counter()
    if how.startswith("api"):
        with pytest.raises(ValueError) as raised:
            if how == "api":
                RunConfig(**{**TINY, "method": "simple", **value}).resolved()
            elif how == "api-grid":
                expand(GridSpec(**_grid(**value)))
            else:
                RunConfig.from_dict(value)
        message = str(raised.value)
        assert "\n" not in message and fragment in message, message
    else:
        if how == "cli":
            argv = [*value, "--results", str(store)] if value else value
        elif how == "grid":
            path = tmp_path / "grid.json"
            if value is not None:
                path.write_text(value)
            argv = ["grid", str(path), "--results", str(store)]
        else:
            argv = ["run", "--backbone", _model_folder(tmp_path, value), "--results", str(store)]
        capsys.readouterr()
        code = main(argv)
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert code == 2 and not out, (code, out, err)
        assert len(lines) == 1 and lines[0].startswith("superpos: error: ") and fragment in lines[0], err
        if how == "folder":
            assert "backbone:" in lines[0]
    assert time.perf_counter() - started < 5
    assert _snapshot(store) == before


@pytest.mark.parametrize("kind", ["garbage-config", "no-weights"])
def test_loading_a_broken_local_folder_is_one_backbone_line(kind, tmp_path):
    from superpos.backbones import load_backbone
    from superpos.backbones.core import BackboneError

    with pytest.raises(BackboneError, match="^backbone: ") as raised:
        load_backbone(_model_folder(tmp_path, kind))
    assert "\n" not in str(raised.value)


def test_a_subprocess_bad_value_is_one_line_and_status_2(tmp_path):
    """The same through a real process: argparse's usage block is not printed, no traceback."""
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "superpos", "run", "--seed", "1.5", "--results",
                             str(tmp_path / "s")], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert result.returncode == 2 and not result.stdout
    assert result.stderr.strip().splitlines() == [
        "superpos: error: argument --seed: expected an integer, got '1.5' (see `python -m superpos run --help`)"]
    assert not (tmp_path / "s").exists()


# ----------------------------------------------------------------------------- a failed run says why
def test_a_failed_run_prints_its_reason(tmp_path, capsys, monkeypatch):
    import superpos.backbones as backbones

    for key, setting in OFFLINE.items():
        monkeypatch.setenv(key, setting)
    real_load = backbones.load_backbone

    def load_with_nan(name, **kwargs):
        backbone = real_load(name, **kwargs)
        real_loss = backbone.loss
        backbone.loss = lambda batch, method: real_loss(batch, method) * float("nan")
        return backbone

    monkeypatch.setattr(backbones, "load_backbone", load_with_nan)
    argv = ["run", *(f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()), "--results", str(tmp_path / "s")]
    assert main(argv) == 1
    line = capsys.readouterr().out.strip()
    assert ": failed: non-finite loss (nan) at step 1; record " in line, line


# ----------------------------------------------------------------------------- a full disk, a read-only folder
@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "free some disk space"), (errno.EROFS, "writable folder"),
                                         (errno.EACCES, "permissions")])
def test_a_store_that_cannot_be_written_mid_run_is_one_line(code, words, store, capsys, monkeypatch):
    import superpos.engine as engine

    def refuse(config, store_, **kwargs):
        raise OSError(code, os.strerror(code), str(store_.records_dir / "x.json"))

    monkeypatch.setattr(engine, "run", refuse)
    before = _snapshot(store)
    assert main(["run", "--backbone", "tiny-llama", "--results", str(store)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and os.strerror(code) in lines[0] and words in lines[0], lines
    assert "x.json" in lines[0] and "run the same command again" in lines[0]
    assert _snapshot(store) == before


def test_a_full_disk_stops_the_grid_without_failed_records_and_rerunning_resumes(tmp_path, capsys, monkeypatch):
    """ENOSPC at the first checkpoint: one line, exit 2, no run recorded as failed; with space again the same
    command trains the grid to the end."""
    import superpos.engine.train as train

    for key, setting in OFFLINE.items():
        monkeypatch.setenv(key, setting)
    budget = {k: v for k, v in TINY.items() if k not in ("backbone", "task", "method")}
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"backbones": ["tiny-llama"], "tasks": ["bbc-topic"], "methods": ["simple"],
                                "seeds": [0, 1], "budget": budget}))
    store = tmp_path / "store"
    real_write = train.atomic_write_bytes

    def disk_full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(train, "atomic_write_bytes", disk_full)
    assert main(["grid", str(grid), "--results", str(store)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("superpos: error: cannot write ") and "No space left on device" in lines[-1]
    assert not list((store / "records").glob("*.json")), "a run was recorded as failed for a full disk"

    monkeypatch.setattr(train, "atomic_write_bytes", real_write)
    assert main(["grid", str(grid), "--results", str(store)]) == 0
    records = [json.loads(p.read_text()) for p in (store / "records").glob("*.json")]
    assert sorted(r["status"] for r in records) == ["done", "done"]


def test_a_grid_says_why_each_failed_run_failed(tmp_path, capsys, monkeypatch):
    """A run that cannot start (a hub id with the hub off) is recorded as failed; the grid names it and why."""
    for key, setting in OFFLINE.items():
        monkeypatch.setenv(key, setting)
    budget = {k: v for k, v in TINY.items() if k not in ("backbone", "task", "method")}
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"backbones": ["tiny-llama", "google/t5-small-lm-adapt"], "tasks": ["bbc-topic"],
                                "methods": ["simple"], "budget": budget}))
    assert main(["grid", str(grid), "--results", str(tmp_path / "store")]) == 1
    failed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("  failed: ")]
    assert len(failed) == 1 and "bbc-topic/simple" in failed[0] and "hub is off" in failed[0]


def test_run_configs_raises_one_storage_line_and_runs_nothing_more(store):
    configs = [RunConfig(**{**TINY, "seed": seed}).resolved() for seed in (0, 1)]
    called = []

    def full(config, store_, **kwargs):
        called.append(config.seed)
        raise OSError(errno.ENOSPC, "No space left on device")

    before = _snapshot(store)
    with pytest.raises(StorageError, match="No space left on device.*run the same command again"):
        run_configs(configs, ResultsStore(store), progress=False, run_fn=full)
    assert called == [0] and _snapshot(store) == before


# ----------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_before_training_says_nothing_was_saved(store, capsys, monkeypatch):
    import superpos.engine as engine

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "run", interrupted)
    assert main(["run", "--backbone", "tiny-llama", "--results", str(store)]) == 130
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "before" in lines[0] and "saved a checkpoint" in lines[0], lines
    assert "is saved at step" not in lines[0]

    monkeypatch.setattr("superpos.__main__.build_parser", interrupted)  # Ctrl-C while torch imports
    assert main(["run"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == [
        "superpos: interrupted before training started; nothing was saved"]


def test_ctrl_c_after_a_checkpoint_names_its_step(store, capsys, monkeypatch):
    import superpos.engine as engine

    config = RunConfig(**{**TINY, "backbone": "tiny-llama"}).resolved()
    checkpoint = ResultsStore(store).checkpoint_dir(config.run_hash()) / "step-4"  # a published checkpoint
    checkpoint.mkdir(parents=True)
    (checkpoint / "progress.json").write_text('{"step": 4}')

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "run", interrupted)
    argv = ["run", *(f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()), "--results", str(store)]
    assert main(argv) == 130
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "is saved at step 4" in lines[0] and "resumes" in lines[0], lines


def test_ctrl_c_in_a_grid_names_the_finished_runs(store):
    """Every finished run of the grid counts, those after the interrupted one in its order too."""
    configs = [RunConfig(**{**TINY, "seed": seed}).resolved() for seed in (0, 1, 2)]
    results = ResultsStore(store)

    def done(config):
        return {"hash": config.run_hash(), "config": config.to_dict(), "status": "done",
                "best": {"step": 1, "dev": {}, "test": {}}}

    results.put(done(configs[2]))  # finished in an earlier sitting

    def first_done_then_ctrl_c(config, store_, **kwargs):
        if config.seed == 1:
            raise KeyboardInterrupt
        store_.put(record := done(config))
        return record

    with pytest.raises(Interrupted, match="before .* saved a checkpoint.*2 finished runs kept"):
        run_configs(configs, results, progress=False, run_fn=first_done_then_ctrl_c)


def _interrupt_when(process: subprocess.Popen, ready, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None and not ready():
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # the terminal's Ctrl-C: the whole foreground process group


def _start(args: list[str], cwd: Path, env_extra: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(REPO), **(env_extra or {})}
    return subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _imports_torch(pid: int) -> bool:
    """Whether the process has begun loading torch's libraries (Linux: /proc; elsewhere assumed after 1 s): by
    then superpos' own handling of Ctrl-C is in place. Earlier, during Python's start-up, a SIGINT is Python's
    (a traceback or exit -2), not superpos'."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        time.sleep(1.0)
        return True


def test_ctrl_c_during_imports_is_one_line(tmp_path):
    process = _start(["-m", "superpos", "run", "--backbone", "tiny-llama", "--results", str(tmp_path / "s")],
                     tmp_path)
    _interrupt_when(process, lambda: _imports_torch(process.pid))  # torch is still importing then
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("superpos: interrupted"), err
    assert "Traceback" not in err and "is saved" not in err


def test_ctrl_c_while_a_notebook_renders_is_one_line_and_leaves_no_partial_copy(tmp_path):
    """make reproduce under Ctrl-C: no ZMQError traceback from the kernel, the half-executed notebook removed,
    the previous render of it left as it was."""
    import nbformat

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    slow = nbformat.v4.new_notebook()
    slow.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    slow.cells = [nbformat.v4.new_code_cell("profile = 'quick'"),
                  nbformat.v4.new_code_cell("print('started', flush=True)\nimport time\ntime.sleep(120)"),
                  nbformat.v4.new_code_cell("print('finished')")]
    slow.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(slow, notebooks / "04_softmax_variant.ipynb")
    results = tmp_path / "results"
    (results / "quick").mkdir(parents=True)
    import shutil

    shutil.copytree(REPO / "results" / "quick" / "reference", results / "quick" / "reference")
    previous = results / "quick" / "notebooks" / "04_softmax_variant.ipynb"
    previous.parent.mkdir()
    previous.write_text("the previous render\n")
    partial = previous.parent / ".partial" / previous.name
    script = ("import sys, pathlib; import superpos.reproduce as r; r.NOTEBOOKS_DIR = pathlib.Path(sys.argv[1]); "
              "from superpos.__main__ import main; "
              "sys.exit(main(['reproduce', '--profile', 'quick', '--from-reference', '--notebook', '04']))")
    process = _start(["-c", script, str(notebooks)], tmp_path, {"SUPERPOS_RESULTS": str(results)})
    _interrupt_when(process, lambda: partial.exists() and "started" in partial.read_text())
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "ZMQError" not in err, err
    said = [line for line in err.splitlines() if line.startswith("superpos:")]
    assert len(said) == 1 and "interrupted while rendering 04_softmax_variant" in said[0], err
    assert "partial copy was removed" in said[0] and "previous render" in said[0]
    assert not partial.exists() and not partial.parent.exists()
    assert previous.read_text() == "the previous render\n"
