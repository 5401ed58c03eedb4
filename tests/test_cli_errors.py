"""Errors a new user meets: a misspelt name gets a "did you mean", expected errors stay one line, an unexpected
one says so in one line (exit status 1) and --debug shows the traceback of any."""
from __future__ import annotations

import pytest

from superpos.__main__ import main
from superpos.suggest import did_you_mean


@pytest.mark.parametrize("name, known, said", [
    ("superpose", ["simple", "superpos", "residual"], " (did you mean 'superpos'?)"),
    ("SuperPos", ["simple", "superpos"], " (did you mean 'superpos'?)"),  # case aside
    ("t5-smal", ["t5-base", "t5-small", "tiny-t5"], " (did you mean 't5-small'?)"),
    ("quik", ["quick", "cpu", "paper"], " (did you mean 'quick'?)"),
    ("bbc-toppic", ["bbc-topic", "bbc-same-topic", "bbc-next"], " (did you mean 'bbc-topic'?)"),  # the closest
    ("tiny", ["tiny-t5", "tiny-lm"], " (did you mean 'tiny-t5' or 'tiny-lm'?)"),  # equally close
    ("gpt5", ["smollm2-135m", "tiny-t5", "tiny-llama"], ""),
    ("superpos", ["superpos"], ""),  # known names are not suggested to themselves
    ("", ["a"], ""),
    (5, ["a"], ""),
])
def test_did_you_mean(name, known, said):
    assert did_you_mean(name, known) == said


def test_did_you_mean_takes_a_stricter_cutoff():
    assert did_you_mean("t5-large", ["t5-base", "t5-small"]) == " (did you mean 't5-base'?)"
    assert did_you_mean("t5-large", ["t5-base", "t5-small"], cutoff=0.8) == ""  # another real hub id
    assert did_you_mean("t5-smal", ["t5-base", "t5-small"], cutoff=0.8) == " (did you mean 't5-small'?)"


@pytest.mark.parametrize("argv, fragment", [
    (["run", "--method", "superpose"], "unknown method 'superpose' (did you mean 'superpos'?)"),
    (["run", "--task", "bbc-topc"], "unknown task 'bbc-topc' (did you mean 'bbc-topic'?)"),
    (["run", "--backbone", "tiny-lama"], "unknown backbone 'tiny-lama' (did you mean 'tiny-llama'?)"),
    (["run", "--backbone", "t5-smal"], "unknown backbone 't5-smal' (did you mean 't5-small'?)"),
    (["reproduce", "--profile", "quik"], "unknown profile 'quik' (did you mean 'quick'?)"),
    (["glance", "--profile", "papr"], "unknown profile 'papr' (did you mean 'paper'?)"),
])
def test_a_misspelt_name_gets_a_suggestion_in_its_one_line(argv, fragment, tmp_path, capsys):
    extra = ["--results", str(tmp_path / "s")] if argv[0] == "run" else []
    assert main([*argv, *extra]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("superpos: error: ") and fragment in lines[0], lines
    assert "Hugging Face cache" not in lines[0]  # a typo of a registered name is said before any network question
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("name", ["t5-large", "google/t5-large-lm-adapt", "HuggingFaceTB/SmolLM2-360M"])
def test_real_hub_ids_near_a_registered_name_are_not_refused(name):
    from superpos.engine.config import check_backbone_name

    check_backbone_name(name)


def _broken_run(error: BaseException):
    def run(config, store, **kwargs):
        raise error

    return run


@pytest.mark.parametrize("error, name", [(TypeError("unsupported operand"), "TypeError"),
                                         (KeyError("best"), "KeyError"),
                                         (AttributeError(), "AttributeError"),
                                         (OSError(5, "Input/output error"), "OSError")])
def test_an_unexpected_error_is_one_line_saying_so(error, name, tmp_path, capsys, monkeypatch):
    import superpos.engine as engine

    monkeypatch.setattr(engine, "run", _broken_run(error))
    assert main(["run", "--backbone", "tiny-llama", "--results", str(tmp_path / "s")]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"superpos: error: unexpected {name}"), lines
    assert "--debug" in lines[0] and "Traceback" not in lines[0]


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback_of_an_unexpected_error(where, tmp_path, capsys, monkeypatch):
    import superpos.engine as engine

    monkeypatch.setattr(engine, "run", _broken_run(TypeError("unsupported operand")))
    argv = ["run", "--backbone", "tiny-llama", "--results", str(tmp_path / "s")]
    assert main(["--debug", *argv] if where == "before" else [*argv, "--debug"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "TypeError: unsupported operand" in err and "raise error" in err
    assert err.strip().splitlines()[-1].startswith("superpos: error: unexpected TypeError: unsupported operand")


def test_debug_shows_the_traceback_of_bad_input_too(tmp_path, capsys):
    assert main(["--debug", "run", "--m", "0", "--results", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert err.strip().splitlines()[-1].startswith("superpos: error: m: must be >= 1")


@pytest.mark.parametrize("error", [ValueError("seed: must be an integer"), ImportError("install ray")])
def test_expected_errors_stay_one_line(error, tmp_path, capsys, monkeypatch):
    import superpos.engine as engine

    monkeypatch.setattr(engine, "run", _broken_run(error))
    assert main(["run", "--backbone", "tiny-llama", "--results", str(tmp_path / "s")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"superpos: error: {error}"]


def test_an_unknown_command_is_one_line(capsys):
    assert main(["rn"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "invalid choice: 'rn'" in lines[0]
