"""``superpos.preflight``: the checks before a long profile, on the CPU with tiny models.

The smoke profile as it is; the paper's profile with tiny-t5 in place of T5 and two of its tasks written as the
official release files (GLUE TSV, SuperGLUE JSONL) under ``$SUPERPOS_DATA``; a missing dataset, an out-of-memory
error and a full disk, each one problem line and exit 1. Nothing may reach the profile's results store: each test
points ``$SUPERPOS_RESULTS`` at a folder that must still not exist afterwards.
"""
from __future__ import annotations

import dataclasses
import io
import re

import pytest
import torch

import superpos.preflight.checker as checker_module
from superpos.engine import RunConfig
from superpos.engine.train import Trainer
from superpos.preflight import eval_points, preflight, run_steps
from superpos.profiles import NOTEBOOKS, estimated_steps, get_profile
from superpos.tasks.loading import DATA_ENV

from test_tasks import glue_release, rows_for, superglue_release

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.delenv("SUPERPOS_STORE", raising=False)
    monkeypatch.setenv("SUPERPOS_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setattr(checker_module, "TIMED_STEPS", 1)  # one timed step per shape is enough to test the path
    yield
    assert not (tmp_path / "results").exists(), "preflight wrote into the results store"


def checked(profile, **options) -> tuple[int, str]:
    out = io.StringIO()
    code = preflight(profile, out=out, **options)
    return code, out.getvalue()


def rows(text: str, check: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(check + " ")]


def problems(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("problem: ")]


def tiny_paper(tasks=("sst2", "rte")):
    """The paper's profile with tiny-t5 for its backbones, two of its tasks (RTE with a second input length), one
    value per ablation: the paper's budget (80 epochs, batch 32, fp32) over every prompt method (full fine-tuning's
    shapes are the smoke profile's)."""
    return dataclasses.replace(
        get_profile("paper"), backbones=("tiny-t5",), tasks=tasks, scopes={}, table3_backbones=(),
        full_finetuning=False, attempt_sources=("sst2",), m_values=(4,), prompt_lengths=(10,), inits=("vocab",),
        weights_inits=(),
        ept_stages=("ept",), dropout_methods=("simple",), curve_tasks=None, figure2_backbone=None,
        task_budget={"rte": {"max_input_tokens": 64}})


def write_release(root, names=("sst2", "rte")) -> None:
    for name in names:
        writer = superglue_release if name in ("rte", "cb", "copa", "wic", "boolq", "multirc") else glue_release
        writer(root, name, rows_for(name, 12), "train")
        writer(root, name, rows_for(name, 12, offset=500), "validation")


# ------------------------------------------------------------------------------------------------ the smoke profile

def test_smoke_profile_passes_on_the_cpu():
    code, text = checked("smoke")
    assert code == 0, text
    assert text.splitlines()[0].startswith("preflight smoke: 33 runs (0 already in")
    assert "cpu (" in text.splitlines()[0]
    assert len(rows(text, "backbone")) == 1 and " ok " in rows(text, "backbone")[0]
    assert [line.split()[1] for line in rows(text, "task")] == ["bbc-topic", "bbc-same-topic"]
    assert all("cut at 32 tokens" in line for line in rows(text, "task"))
    assert len(rows(text, "disk")) == 1 and "free" in rows(text, "disk")[0]
    steps = rows(text, "step")
    assert len(steps) == 7 and all(" cpu " in line and " ok " in line and "s/step" in line and "peak" in line
                                   for line in steps)
    projected = rows(text, "project")
    assert [line.split()[1] for line in projected] == [*NOTEBOOKS, "total"]
    total = re.search(r"(\d+) runs, ([\d,]+) steps", projected[-1])
    assert int(total[1]) == 33 and int(total[2].replace(",", "")) == estimated_steps("smoke")["total"]
    assert text.rstrip().endswith("preflight: all checks passed") and "Traceback" not in text
    # the rows come in the checks' order
    order = [line.split()[0] for line in text.splitlines()[2:] if line.split()[0] in
             ("backbone", "task", "disk", "step", "project")]
    assert order == sorted(order, key=["backbone", "task", "disk", "step", "project"].index)


# ------------------------------------------------------------------------------------ the paper's layout, tiny model

def test_paper_release_layout_with_a_tiny_backbone(tmp_path, monkeypatch):
    write_release(tmp_path / "data")
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "data"))
    code, text = checked(tiny_paper(), pack=2)  # packs of 2 on the CPU: the packed group's step and evaluation
    assert code == 0, text
    tasks = {line.split()[1]: line for line in rows(text, "task")}
    assert "train 12 of 67,349, validation 12 of 872" in tasks["sst2"] and "cut at 256 tokens" in tasks["sst2"]
    assert "train 12 of 2,490, validation 12 of 277" in tasks["rte"] and "cut at 64 tokens" in tasks["rte"]
    # 12 rows are not the paper's: warned, not failed
    assert any(line.startswith("warning: sst2: 12 training") for line in text.splitlines())
    steps = rows(text, "step")
    assert any("tiny-t5 superpos 256+10 x2" in line for line in steps)
    assert any("tiny-t5 superpos 64+10 x2" in line for line in steps)
    assert len(steps) == 9 and all(" ok " in line for line in steps)  # 5 methods x 2 lengths, ATTEMPT not on sst2
    assert "float32" in rows(text, "backbone")[0]  # the paper's dtype, fp32
    assert not problems(text)


def test_a_missing_dataset_is_one_problem_line(tmp_path, monkeypatch):
    write_release(tmp_path / "data", names=("sst2",))
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "data"))
    code, text = checked(tiny_paper())
    assert code == 1
    lines = problems(text)
    assert len(lines) == 1, text
    assert lines[0].startswith("problem: rte:") and "RTE/" in lines[0] and "train.jsonl" in lines[0]
    assert "Traceback" not in text
    assert " missing " in [line for line in rows(text, "task") if line.split()[1] == "rte"][0]
    # the other task's shapes are still measured
    assert any(" ok " in line for line in rows(text, "step"))


# ------------------------------------------------------------------------------- out of memory, a full disk, bad input

def test_out_of_memory_and_a_full_disk_are_problem_lines(monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity "
                                     "of 79.19 GiB of which 1.00 GiB is free.\nmore text")

    monkeypatch.setattr(Trainer, "train_step", out_of_memory)
    monkeypatch.setattr("superpos.engine.packed.PackedGroup.train_step", out_of_memory)
    monkeypatch.setattr(checker_module.shutil, "disk_usage", lambda path: type("U", (), {"free": 1000})())
    code, text = checked("smoke", pack=4)
    assert code == 1 and "Traceback" not in text
    lines = problems(text)
    memory = [line for line in lines if "out of memory" in line]
    assert len(memory) == 7  # one per run shape
    assert any("x4 on cpu: out of memory at 4 x 4 rows" in line and "--pack 2" in line for line in memory)
    assert any("full 32+0 x1" in line and "runs alone" in line for line in memory)
    assert all("\n" not in line and "more text" not in line for line in memory)
    disk = [line for line in lines if line.startswith("problem: disk:")]
    assert len(disk) == 1 and "1,000 B free" in disk[0] and "SUPERPOS_RESULTS" in disk[0]
    assert all(" OOM " in line for line in rows(text, "step"))
    assert all(" partial " in line for line in rows(text, "project"))


def test_bad_arguments_raise_one_line():
    for call in (lambda: preflight("nope"), lambda: preflight("smoke", pack=0),
                 lambda: preflight("smoke", device="tpu")):
        with pytest.raises(ValueError) as error:
            call()
        assert "\n" not in str(error.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_a_problem_line():
    code, text = checked("smoke", device="cuda")
    assert code == 1 and len(problems(text)) == 1 and "CUDA is not available" in problems(text)[0]


# ------------------------------------------------------------------------------------------- counting as the Trainer

@pytest.mark.parametrize("rows_, batch, epochs, max_steps, every", [(12, 32, 80, None, 0), (1000, 8, 1, 48, 24),
                                                                     (100, 8, 3, None, 0), (37, 4, 2, 25, 7)])
def test_steps_and_evaluation_points_as_the_trainer_counts_them(rows_, batch, epochs, max_steps, every):
    config = RunConfig(batch_size=batch, epochs=epochs, max_steps=max_steps, eval_every=every)
    total, per_epoch = run_steps(config, rows_)
    trainer = Trainer.__new__(Trainer)  # only the schedule: no data, no model
    trainer.config, trainer.total_steps, trainer.steps_per_epoch = config, total, per_epoch
    assert total == (max_steps or epochs * -(-rows_ // batch))
    assert eval_points(total, per_epoch, every) == sum(trainer.is_eval_step(s) for s in range(1, total + 1))
