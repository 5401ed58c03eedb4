"""The command line documents itself: defaults and choices in --help, every method field as a flag, --config,
--version; --version and --help answer without importing torch; run's summary line."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from superpos.__main__ import build_parser, main, method_fields
from superpos.methods import METHODS

TINY = ["--backbone", "tiny-llama", "--task", "bbc-topic", "--max-steps", "1", "--batch-size", "2",
        "--eval-limit", "4", "--train-limit", "8", "--device", "cpu"]


def test_help_shows_defaults_choices_and_every_method_field(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Choices: paper, heldout. Default: paper." in text
    assert "Choices: auto, fp32, bf16, fp16. Default: auto." in text
    assert "Defaults: simple 0.01, superpos 0.01, residual 0.3, attempt 0.3, ept 0.3, full 1e-05." in text
    for name in method_fields():
        if name not in ("sources",):
            assert f"--{name.replace('_', '-')}" in text, name
    # every field of every method config is reachable
    declared = {field.name for spec in METHODS.values() for field in dataclasses.fields(spec.config_class)}
    assert declared - {"sources"} <= set(method_fields())
    # a field two methods declare with other choices takes either method's (the method's config checks its own)
    assert "Choices: relu, tanh, sigmoid, silu." in text
    args = build_parser().parse_args(["run", "--method", "attempt", "--nonlinearity", "silu"])
    assert args.method__nonlinearity == "silu"


def test_method_flags_and_config_file_build_the_same_run(tmp_path, capsys):
    store = tmp_path / "store"
    assert main(["run", *TINY, "--method", "superpos", "--m", "16", "--softmax", "--results", str(store)]) == 0
    first = capsys.readouterr().out
    record = json.loads(next((store / "records").glob("*.json")).read_text())
    assert record["config"]["method_config"]["m"] == 16 and record["config"]["method_config"]["softmax"] is True
    config = tmp_path / "run.json"
    config.write_text(json.dumps({**{k: v for k, v in record["config"].items() if k != "device"}}))
    assert main(["run", "--config", str(config), "--results", str(store)]) == 0
    assert ": cached;" in capsys.readouterr().out and "done" in first
    assert ": done; strict " in first and " %); lenient " in first and "; record " in first
    yaml_config = tmp_path / "run.yaml"
    yaml_config.write_text("method: superpos\nmethod_config: {m: 16, softmax: true}\n")
    assert main(["run", "--config", str(yaml_config), *TINY, "--results", str(store)]) == 0
    assert ": cached;" in capsys.readouterr().out  # the same run as the flags gave


@pytest.mark.parametrize("args, fragment", [
    (["run", "--protocol", "random"], "invalid choice: 'random'"),
    (["run", "--weights-init", "zero"], "invalid choice: 'zero'"),
    (["run", "--method", "simple", "--m", "16"], "unknown field(s) m"),
    (["run", "--config", "missing.json"], "--config: no such file"),
    (["run", "--m", "0"], "m: must be >= 1"),
])
def test_bad_flags_are_one_line(args, fragment, tmp_path, capsys):
    assert main([*args, "--results", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "store" / "records").exists()


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("superpos ")


def test_report_to_tensorboard_mirrors_the_record(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    plain, mirrored = tmp_path / "plain", tmp_path / "mirrored"
    args = ["run", *TINY, "--max-steps", "4", "--eval-every", "2", "--method", "simple"]
    assert main([*args, "--results", str(plain)]) == 0
    assert main([*args, "--results", str(mirrored), "--report-to", "tensorboard"]) == 0
    a = json.loads(next((plain / "records").glob("*.json")).read_text())
    b = json.loads(next((mirrored / "records").glob("*.json")).read_text())
    assert a["hash"] == b["hash"] and a["history"] == b["history"] and a["loss_curve"] == b["loss_curve"]
    events = EventAccumulator(str(mirrored / "tensorboard" / b["hash"]))
    events.Reload()
    assert [e.step for e in events.Scalars("eval/strict")] == [p["step"] for p in b["history"]]
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx([v for _, v in b["loss_curve"]])


REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "pandas")


def _imported(*argv: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """``python -X importtime -m superpos ARGV``: the result and the top-level packages it imported."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "superpos", *argv], capture_output=True,
                            text=True, env=env, timeout=60, cwd=REPO)
    modules = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines()
               if line.startswith("import time:") and "|" in line}
    return result, modules


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["grid", "--help"]])
def test_version_and_help_do_not_import_torch(argv):
    result, modules = _imported(*argv)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "superpos" in modules and not modules & set(HEAVY), sorted(modules & set(HEAVY))
    if argv != ["--version"]:  # the listing is there all the same, read without torch
        for name in ("smollm2-135m", "tiny-llama", "superpos", "residual", "bbc-topic", "sst2"):
            assert f"\n  {name} " in result.stdout, name


def test_the_listing_read_without_torch_is_the_registries():
    from superpos.backbones import BACKBONES
    from superpos.cli import listing

    assert listing.static_backbones() == BACKBONES
    static = listing.static_methods()
    assert list(static)[:6] == ["simple", "superpos", "residual", "attempt", "ept", "full"]
    assert static == {name: METHODS[name][2] for name in static}
    assert main(["list"]) == 0  # the registries themselves, loaded


def _done_record(**best) -> dict:
    def point(step, score, lenient, invalid):
        test = {"score": score, "lenient_score": lenient, "invalid_rate": invalid}
        return {"step": step, "dev": test, "test": test}

    return {"hash": "0123456789abcdef", "status": "done", "config": {"protocol": "paper"},
            "best": point(*best["strict"]), "best_lenient": point(*best["lenient"])}


def test_the_summary_names_each_best_point_with_its_own_step(tmp_path, capsys, monkeypatch):
    """The strict best and the lenient best are often different validation points; every number is a percent."""
    import superpos.engine as engine

    record = _done_record(strict=(5, 0.0, 0.0, 1.0), lenient=(10, 0.0, 21.53, 0.575))
    monkeypatch.setattr(engine, "run", lambda config, store, **kwargs: record)
    assert main(["run", "--backbone", "tiny-llama", "--results", str(tmp_path / "s")]) == 0
    line = capsys.readouterr().out.strip()
    assert line.endswith(": done; strict 0.0 % at step 5 (invalid labels 100.0 %); lenient 21.5 % at step 10 "
                         f"(invalid labels 57.5 %); record {tmp_path / 's' / 'records' / '0123456789abcdef.json'}")


def test_the_summary_of_an_older_record_rebuilds_the_lenient_best():
    from superpos.cli.commands import best_points

    record = _done_record(strict=(48, 39.0525, 39.0525, 0.0), lenient=(48, 0, 0, 0))
    del record["best_lenient"]
    record["history"] = [{"step": 24, "lenient_score": 41.26, "invalid_rate": 0.03125},
                         {"step": 48, "lenient_score": 39.0525, "invalid_rate": 0.0}]
    assert best_points(record) == ("strict 39.1 % at step 48 (invalid labels 0.0 %); "
                                   "lenient 41.3 % at step 24 (invalid labels 3.1 %)")
    assert best_points({"status": "done"}) == ("strict - at step - (invalid labels -); "
                                               "lenient - at step - (invalid labels -)")
