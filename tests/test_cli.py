"""The command line documents itself: defaults and choices in --help, every method field as a flag, --config,
--version."""
from __future__ import annotations

import dataclasses
import json

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
    declared = {field.name for config_class, _, _ in METHODS.values() for field in dataclasses.fields(config_class)}
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
