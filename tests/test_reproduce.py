"""Precision (``dtype="auto"``), the code version in the run hash, and ``make reproduce``'s check against the
committed reference: train, compare (identical / within tolerance / different), accept, render from it."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from superpos.backbones import precision
from superpos.engine import ResultsStore, RunConfig, run
from superpos.engine import config as run_config
from superpos.engine.compare import TOLERANCE, compare_record, headline, compare_samples, sample_spread, summary_line
from superpos import profiles

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TQDM_DISABLE": "1"}
TINY = dict(backbone="tiny-llama", task="bbc-topic", max_steps=2, batch_size=4, eval_every=2, train_limit=8,
            eval_limit=8, eval_batch_size=8, max_input_tokens=32)


# ----------------------------------------------------------------------------- precision
def test_auto_picks_bf16_only_where_the_cpu_runs_it_natively(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv(precision.AUTO_DTYPE_VARIABLE, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    dtype, reason = precision.resolve_precision("auto", cpu)
    assert dtype == "fp32" and "emulated" in reason
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert precision.resolve_precision("auto", cpu) == ("bf16", "auto: CPU with avx512_bf16 (native bf16 matmul)")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert precision.resolve_precision("auto", cpu)[0] == "bf16"
    assert precision.resolve_precision("fp32", cpu) == ("fp32", "asked for explicitly")
    with pytest.raises(ValueError, match="dtype"):
        precision.resolve_precision("fp8", cpu)


def test_the_environment_can_say_what_auto_means_and_a_run_keeps_its_hash(monkeypatch, tmp_path):
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setenv(precision.AUTO_DTYPE_VARIABLE, "fp32")
    assert precision.resolve_precision("auto", cpu) == ("fp32", "auto: SUPERPOS_AUTO_DTYPE=fp32")
    assert precision.resolve_precision("bf16", cpu)[0] == "bf16"  # only auto follows it
    config = RunConfig(**TINY)
    record = run(config, ResultsStore(tmp_path), progress=False)
    assert record["hash"] == config.run_hash() == RunConfig(**TINY, dtype="auto").run_hash()
    assert record["precision"]["dtype"] == "fp32" and "SUPERPOS_AUTO_DTYPE" in record["precision"]["reason"]
    monkeypatch.setenv(precision.AUTO_DTYPE_VARIABLE, "fp8")
    with pytest.raises(ValueError, match="SUPERPOS_AUTO_DTYPE: must be one of fp32, bf16, fp16 or unset"):
        precision.resolve_precision("auto", cpu)


def test_run_config_defaults_to_auto_and_rejects_unknown_dtypes():
    assert RunConfig().dtype == "auto"
    with pytest.raises(ValueError, match="dtype"):
        RunConfig(dtype="fp64")


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_both_precisions_train_with_fp32_trainable_state(tmp_path, monkeypatch, dtype):
    """The frozen backbone runs in the asked dtype; the prompt, its AdamW state and the loss stay fp32; the
    record says what ran and why."""
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    from superpos.engine.train import Trainer

    config = RunConfig(method="superpos", dtype=dtype, **TINY).resolved()
    trainer = Trainer(config, config.run_hash(), ResultsStore(tmp_path), None, progress=False)
    assert trainer.backbone.dtype == {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    loss = trainer.train_step(trainer.batch_at(0))
    assert isinstance(loss, float) and loss == loss
    assert all(p.dtype == torch.float32 for p in trainer.method.parameters())
    assert all(v.dtype == torch.float32 for state in trainer.optimizer.state.values() for k, v in state.items()
               if k != "step")
    record = run(config, ResultsStore(tmp_path / "store"), progress=False)
    assert record["precision"]["dtype"] == dtype and record["precision"]["reason"] == "asked for explicitly"
    assert record["precision"]["backbone_dtype"] == {"fp32": "float32", "bf16": "bfloat16"}[dtype]


def test_full_fine_tuning_keeps_fp32_weights_under_bf16(tmp_path, monkeypatch):
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    from superpos.engine.train import Trainer

    config = RunConfig(method="full", dtype="bf16", **TINY).resolved()
    trainer = Trainer(config, config.run_hash(), ResultsStore(tmp_path), None, progress=False)
    assert trainer.backbone.dtype == torch.float32 and isinstance(trainer.autocast, torch.autocast)
    trainer.train_step(trainer.batch_at(0))
    assert all(p.dtype == torch.float32 for p in trainer.method.parameters())


def test_the_code_version_is_part_of_the_run_hash(monkeypatch):
    before = RunConfig(**TINY).run_hash()
    monkeypatch.setattr(run_config, "CODE_VERSION", run_config.CODE_VERSION + 1)
    assert RunConfig(**TINY).run_hash() != before


# ----------------------------------------------------------------------------- verdicts
def _record(score=60.0, lenient=62.0, invalid=0.0, loss=0.5, history_tail=0.0):
    history = [{"step": 1, "score": 10.0, "lenient_score": 20.0, "invalid_rate": 0.5},
               {"step": 2, "score": score, "lenient_score": lenient + history_tail, "invalid_rate": invalid}]
    return {"hash": "h", "status": "done", "steps": 2, "history": history, "loss_curve": [[1, 2.0], [2, loss]],
            "best": {"step": 2, "test": history[1], "dev": history[1]}, "precision": {"dtype": "fp32"},
            "config": {"task": "bbc-topic", "method": "simple", "method_config": {"n_prompts": 10}, "dropout": False,
                       "seed": 0}}


def test_verdicts_identical_within_tolerance_different_and_missing():
    reference = _record()
    assert compare_record(copy.deepcopy(reference), reference)["verdict"] == "identical"
    near = _record(score=60.0 + TOLERANCE["score"] - 0.5, loss=0.5 * (1 + TOLERANCE["final_loss"] / 2))
    assert compare_record(near, reference)["verdict"] == "within tolerance"
    far = _record(score=60.0 + TOLERANCE["score"] + 0.5)
    row = compare_record(far, reference)
    assert row["verdict"] == "different" and row["detail"].startswith("score 60.0 -> 63.5")
    drifted = _record(loss=0.5 * (1 + 2 * TOLERANCE["final_loss"]))
    assert compare_record(drifted, reference)["verdict"] == "different"
    assert compare_record(reference, None)["verdict"] == "no reference"
    failed = {**_record(), "status": "failed", "reason": "non-finite loss"}
    assert compare_record(failed, reference)["verdict"] == "failed"
    other_seed, other_budget = _record(), _record()  # the setting: the configuration but its seed
    other_seed["config"]["seed"], other_budget["config"]["max_steps"] = 1, 99
    settings = [compare_record(record, None)["setting"] for record in (reference, other_seed, other_budget)]
    assert settings[0] == settings[1] != settings[2]


def test_summary_line_counts_each_verdict():
    import pandas as pd

    frame = pd.DataFrame({"verdict": ["identical"] * 3 + ["within tolerance", "different", "no reference"]})
    assert summary_line(frame) == ("reproduced 4/6 runs: 3 identical, 1 within tolerance, 1 different "
                                   "(1 no reference)")
    frame["precision"] = ["fp32"] * 4 + ["bf16", "bf16"]
    frame["reference_precision"] = ["fp32"] * 5 + [None]
    assert summary_line(frame) == ("reproduced 4/6 runs: 3 identical, 1 within tolerance, 1 different "
                                   "(1 no reference; 1 ran in bf16 against a reference in fp32: another precision "
                                   "gives another sample of a run, not its copy; SUPERPOS_AUTO_DTYPE=fp32 reruns in "
                                   "the reference's)")
    frame["precision"] = ["fp32"] * 6
    frame["device"] = ["cpu (x86_64, AVX512 kernels, 2 threads)"] * 6
    frame["reference_device"] = ["cpu (x86_64, 2 threads)"] * 6  # references older than the kernel names
    assert summary_line(frame).endswith("(1 no reference; 6 ran on cpu (x86_64, AVX512 kernels, 2 threads) against a "
                                        "reference that does not name its CPU kernels (cpu (x86_64, 2 threads)): the "
                                        "README says which machine kind made it)")
    frame["reference_device"] = ["cpu (x86_64, AVX2 kernels, 2 threads)"] * 2 + [None] * 4
    assert summary_line(frame).endswith("(1 no reference; 2 ran on another machine kind than the reference "
                                        "(cpu (x86_64, AVX512 kernels, 2 threads) against cpu (x86_64, AVX2 "
                                        "kernels, 2 threads)): its rounding gives another sample of a run, not "
                                        "its copy)")
    frame["score"], frame["reference_score"] = [50.0] * 5 + [90.0], [40.0] * 5 + [None]  # the last: no reference
    assert summary_line(frame).endswith("its copy; as a sample of 5 paired runs, means fresh against reference: "
                                        "strict 50.0 against 40.0 (difference +10.0, 95% CI +10.0 to +10.0: "
                                        "shifted))")
    frame["verdict"] = ["identical"] * 5 + ["no reference"]  # no run different: nothing to judge as a sample
    assert "as a sample" not in summary_line(frame)


def test_runs_judged_as_a_sample_by_the_mean_paired_difference():
    import pandas as pd

    # Differences 1, 2, 3: mean 2, sd 1, t(0.975, 2 df) = 4.3027, half-width 4.3027 / sqrt(3) = 2.4841.
    frame = pd.DataFrame({"setting": ["a", "a", "a", "b"], "verdict": ["different"] * 4,
                          "score": [41.0, 52.0, 73.0, 90.0], "reference_score": [40.0, 50.0, 70.0, None]})
    samples = compare_samples(frame)
    row = samples.loc["score"]
    assert row["n"] == 3 and row["fresh_mean"] == pytest.approx(55.333, abs=1e-3)
    assert row["mean_difference"] == pytest.approx(2.0)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((2 - 2.4841, 2 + 2.4841), abs=1e-4)
    assert row["verdict"] == "consistent" and row["median_abs_difference"] == 2.0
    assert row["seed_median_abs_difference"] == 20.0  # reference seeds of setting a: |10|, |30|, |20|
    frame["score"] = [42.0, 53.0, 74.0, 90.0]  # differences 2, 3, 4: interval 0.516 .. 5.484 misses 0
    assert compare_samples(frame).loc["score", "verdict"] == "shifted"
    assert "strict 56.3 against 53.3 (difference +3.0, 95% CI +0.5 to +5.5: shifted)" in summary_line(frame)
    assert sample_spread(frame) == ("; median |fresh - reference| per run: strict 3.0 (between two seeds of one "
                                    "setting in the reference: strict 20.0)")
    assert sample_spread(frame.assign(verdict="identical")) == ""
    two = frame.iloc[:2]
    assert compare_samples(two).loc["score", "verdict"] == "too few runs"
    assert "as a sample" not in summary_line(two)


# ----------------------------------------------------------------------------- the cycle
@pytest.mark.slow
def test_reproduce_accept_retrain_compare_and_report(tmp_path, monkeypatch, capsys):
    """Accept a smoke reproduction as reference; training again from nothing matches it run for run; a
    moved reference number is reported as different; the report renders from the reference alone."""
    from superpos.reproduce import reproduce

    monkeypatch.setenv("SUPERPOS_RESULTS", str(tmp_path))
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    root = tmp_path / "smoke"
    assert reproduce("smoke", ["04"], progress=False, accept=True) == 0
    executed = (root / "notebooks" / "04_softmax_variant.ipynb").read_bytes()
    records = sorted((root / "reference" / "records").glob("*.json"))
    assert len(records) == len(profiles.profile_configs("smoke", ["04"])) and (root / "reference" / "prompts").is_dir()

    import shutil

    shutil.rmtree(root / "records")  # a fresh clone: the working store is empty, everything trains again
    capsys.readouterr()
    committed = {path: path.read_bytes() for path in root.glob("*/*") if path.parent.name in ("tables", "figures", "notebooks")}
    assert reproduce("smoke", ["04"], progress=False) == 0
    count = len(records)
    out = capsys.readouterr().out
    assert f"reproduced {count}/{count} runs: {count} identical, 0 within tolerance, 0 different" in out
    assert "compared with the" in out and "reference in" in out  # which reference: the one in this precision
    # fresh runs render under fresh/, never over the reference's renders; identical runs render identically
    assert {path: path.read_bytes() for path in root.glob("*/*") if path.parent.name in ("tables", "figures", "notebooks")} == committed
    # the same records render the same notebook; only papermill's note of where it wrote it differs
    fresh = (root / "fresh" / "notebooks" / "04_softmax_variant.ipynb").read_bytes()
    assert fresh.replace(b"/smoke/fresh/notebooks/", b"/smoke/notebooks/") == executed
    assert "identical" in (root / "fresh" / "tables" / "reproduction_smoke.md").read_text()

    moved = json.loads(records[0].read_text())
    moved["best"]["test"]["score"] += 10
    records[0].write_text(json.dumps(moved))
    assert reproduce("smoke", ["04"], progress=False) == 0
    assert "1 different" in capsys.readouterr().out

    shutil.rmtree(root / "records")
    assert reproduce("smoke", ["04"], progress=False, from_reference=True) == 0
    assert not (root / "records").exists() or not any((root / "records").iterdir()), "the report trained"
    with pytest.raises(ValueError, match="not in"):
        reproduce("smoke", ["01"], progress=False, from_reference=True)

    from superpos.__main__ import main

    capsys.readouterr()
    tables = {path: path.read_bytes() for path in (root / "tables").iterdir()}
    assert main(["glance", "--profile", "smoke", "--reference"]) == 0  # the claims, on a partial grid
    out = capsys.readouterr().out
    assert "SuperPos − SuperPos (softmax)" in out and f"of its {len(profiles.profile_configs('smoke'))} runs" in out
    assert {path: path.read_bytes() for path in (root / "tables").iterdir()} == tables  # printed, nothing written

    reference = root / "reference" / "records"
    damaged = sorted(reference.glob("*.json"))[0]
    damaged.write_text("{garbage")
    assert main(["glance", "--profile", "smoke", "--reference"]) == 0
    assert "left in place" in capsys.readouterr().err
    assert damaged.read_text() == "{garbage" and not list(reference.glob("*.corrupt*"))  # the reference untouched


def test_a_full_render_clears_stale_outputs_but_keeps_the_comparison(tmp_path, monkeypatch):
    from superpos.reproduce import clear_outputs

    monkeypatch.setenv("SUPERPOS_RESULTS", str(tmp_path))
    tables, figures = tmp_path / "quick" / "tables", tmp_path / "quick" / "figures"
    for folder, names in ((tables, ("old_quick.md", "reproduction_quick.md", "reproduction_quick.csv")),
                          (figures, ("old_quick.png",))):
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).write_text("x")
    clear_outputs("quick")
    assert sorted(p.name for p in tables.iterdir()) == ["reproduction_quick.csv", "reproduction_quick.md"]
    assert not any(figures.iterdir())


@pytest.mark.parametrize("mistake", ["pack 0", "report without a reference"])
def test_a_reproduction_that_cannot_start_leaves_the_outputs_alone(mistake, tmp_path, monkeypatch):
    """A bad argument or a missing reference run fails before anything is trained or removed."""
    from superpos.reproduce import reproduce

    monkeypatch.setenv("SUPERPOS_RESULTS", str(tmp_path))
    table, figure = tmp_path / "smoke" / "tables" / "old_smoke.md", tmp_path / "smoke" / "figures" / "old_smoke.png"
    for path in (table, figure):
        path.parent.mkdir(parents=True)
        path.write_text("x")
    with pytest.raises(ValueError, match="pack" if mistake == "pack 0" else "not in"):
        if mistake == "pack 0":
            reproduce("smoke", progress=False, pack=0)
        else:
            reproduce("smoke", progress=False, from_reference=True)
    assert table.exists() and figure.exists()
    assert not (tmp_path / "smoke" / "records").exists() or not any((tmp_path / "smoke" / "records").iterdir())


def test_extend_builds_the_reference_over_several_sittings(tmp_path, monkeypatch, capsys):
    """`make extend`: runs the reference holds are not trained again, runs that finish are added (also when a
    Ctrl-C ends the call), runs the profile no longer asks for leave it, and it renders once complete."""
    import shutil

    from superpos import reproduce as reproducing
    from superpos.engine.grid import Interrupted

    monkeypatch.setenv("SUPERPOS_RESULTS", str(tmp_path))
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    root, names = tmp_path / "smoke", ["04"]
    hashes = sorted(config.run_hash() for config in profiles.profile_configs("smoke", names))
    assert len(hashes) >= 2
    assert reproducing.reproduce("smoke", names, progress=False, extend=True) == 0  # from nothing: all train
    reference = root / "reference" / "records"
    assert sorted(path.stem for path in reference.glob("*.json")) == hashes
    assert (root / "notebooks" / "04_softmax_variant.ipynb").exists()
    kept = {h: (reference / f"{h}.json").read_bytes() for h in hashes[1:]}

    # Another machine: an empty working store, a reference that lacks one run and holds one no longer asked for.
    shutil.rmtree(root / "records")
    (reference / f"{hashes[0]}.json").unlink()
    (reference / "0123456789abcdef.json").write_text("{}")
    capsys.readouterr()
    real_train = reproducing.train_profile

    def train_then_ctrl_c(*args, **kwargs):
        real_train(*args, **kwargs)
        raise Interrupted("interrupted")

    monkeypatch.setattr(reproducing, "train_profile", train_then_ctrl_c)
    with pytest.raises(Interrupted):
        reproducing.reproduce("smoke", names, progress=False, extend=True)
    out = capsys.readouterr().out
    assert f"{len(hashes) - 1} of {len(hashes)} runs are in the reference" in out
    assert f"{len(hashes) - 1} already in" in out  # copied from the reference, not trained again
    assert f"1 runs added; the reference holds {len(hashes)} of the {len(hashes)} runs" in out
    assert sorted(path.stem for path in reference.glob("*.json")) == hashes  # the stale one left
    assert all((reference / f"{h}.json").read_bytes() == record for h, record in kept.items())

    monkeypatch.setattr(reproducing, "train_profile", real_train)
    assert reproducing.reproduce("smoke", names, progress=False, extend=True) == 0  # complete: nothing trains
    assert f"train: {len(hashes)} runs, {len(hashes)} already in" in capsys.readouterr().out
    with pytest.raises(ValueError, match="exclude each other"):
        reproducing.reproduce("smoke", names, progress=False, extend=True, accept=True)


def test_extend_adds_each_run_to_the_reference_as_it_finishes(tmp_path, monkeypatch):
    """A process killed mid-way (no Ctrl-C, no ``finally``) still leaves every finished run in the reference."""
    from superpos import reproduce as reproducing
    from superpos.engine import grid

    monkeypatch.setenv("SUPERPOS_RESULTS", str(tmp_path))
    reference = tmp_path / "smoke" / "reference" / "records"
    seen = []

    def run_then_look(config, store, **kwargs):
        seen.append(sorted(path.stem for path in reference.glob("*.json")))  # what the reference held before
        return {"hash": config.run_hash(), "config": config.to_dict(), "status": "done"}

    def put_and_return(config, store, **kwargs):
        record = run_then_look(config, store)
        store.put({**record, "history": [], "loss_curve": [], "best": {"dev": {}, "test": {}}, "analysis": {},
                   "prompt_path": None})
        return record

    real = grid.run_configs
    monkeypatch.setattr(grid, "run_configs", lambda *a, **k: real(*a, **{**k, "run_fn": put_and_return, "pack": 1}))
    monkeypatch.setattr("superpos.engine.run_configs", grid.run_configs)
    hashes = [config.run_hash() for config in profiles.profile_configs("smoke", ["01"])]
    reproducing.extend_reference("smoke", ["01"], progress=False)
    assert [len(held) for held in seen] == list(range(len(hashes)))  # run k saw the k runs before it added


def test_a_reproductions_lenient_number_is_the_test_score_at_the_chosen_point_not_the_best_dev_score():
    record = {"best": {"test": {"score": 0.0, "invalid_rate": 0.002}},
              "best_lenient": {"test": {"lenient_score": 70.5}},
              "history": [{"step": 50, "lenient_score": 91.0}, {"step": 100, "lenient_score": 88.0}],  # dev points
              "loss_curve": [[100, 0.25]]}
    assert headline(record) == {"score": 0.0, "lenient_score": 70.5, "invalid_rate": 0.2, "final_loss": 0.25}
