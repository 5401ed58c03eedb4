"""What makes the package's evidence decide: fixed evaluation data, the best-point rule, the paired tests and the
verdicts they give, each checked on numbers small enough to follow by hand."""
from __future__ import annotations

import math

import pandas as pd
import torch
import pytest

from superpos.engine.config import RunConfig
from superpos.engine.record import improves
from superpos.report.glance import LEVEL_MARGIN, claim_summary, glance
from superpos.report.stats import holm, paired_test, t_interval
from superpos.tasks import get_task
from superpos.tasks.metrics import score_predictions


# ---------------------------------------------------------------- evaluation data
@pytest.mark.parametrize("task", ["bbc-topic", "bbc-paraphrase", "bbc-multirc"])
def test_dev_and_test_examples_are_the_same_for_every_seed(task):
    configs = [RunConfig(task=task, seed=seed, protocol="heldout", train_limit=300, eval_limit=100) for seed in (0, 3)]
    first, second = (config.splits() for config in configs)
    assert [e.uid for e in first.dev] == [e.uid for e in second.dev]
    assert [e.uid for e in first.test] == [e.uid for e in second.test]
    assert [e.uid for e in first.train] != [e.uid for e in second.train]  # the seed draws the training sample
    assert not {e.uid for e in first.dev} & {e.uid for e in first.test}
    assert len(first.test) >= 400  # the other half of the 1,000 validation rows


def test_paper_protocol_fixes_its_evaluation_examples_too():
    a, b = (RunConfig(task="bbc-topic", seed=seed, eval_limit=64).splits() for seed in (0, 1))
    assert a.dev is a.test and [e.uid for e in a.test] == [e.uid for e in b.test]


def test_test_limit_belongs_to_the_heldout_protocol():
    with pytest.raises(ValueError, match="test_limit: applies to the 'heldout' protocol only"):
        RunConfig(task="bbc-topic", test_limit=100)
    assert len(RunConfig(task="bbc-topic", protocol="heldout", test_limit=100).splits().test) == 100


def test_new_tasks_build_what_they_say():
    para = get_task("bbc-paraphrase").examples("train")
    assert {e.target_text for e in para} == {"no", "yes"}
    for example in para[:50]:
        one, two = example.input_text.split(" sentence2: ")
        words = set(one.split()[2:])
        if example.target_text == "yes":  # sentence2 is sentence1 with words left out, in order
            assert set(two.split()) <= words
    overlap = get_task("bbc-overlap").examples("train")
    assert all(0 <= e.label <= 5 for e in overlap)
    assert min(e.label for e in overlap) == 0 and max(e.label for e in overlap) == 5


# ---------------------------------------------------------------- best point and scoring rules
def point(score, dagger=False, lenient=None):
    return {"score": score, "dagger": dagger, "lenient_score": score if lenient is None else lenient}


def test_a_valid_point_beats_a_dagger_one_whatever_its_sign():
    assert improves(point(0.0, dagger=True), point(-5.0))          # a valid MCC of -5 is a measurement
    assert not improves(point(-5.0), point(0.0, dagger=True))
    assert improves(point(10.0), point(12.0)) and not improves(point(12.0), point(12.0))  # the earlier at a tie
    assert not improves(point(0.0, dagger=True), point(0.0, dagger=True))
    assert improves(None, point(0.0, dagger=True))
    assert improves(point(0, lenient=40), point(0, lenient=41), lenient=True)


def test_lenient_scores_are_zero_when_no_prediction_is_valid():
    # every prediction invalid: the stand-in (the opposite label) would give an MCC of -100
    score = score_predictions(("mcc",), [0, 1, 0, 1], [None] * 4, labels=[0, 1])
    assert score.lenient == {"mcc": 0.0} and score.dagger and score.n_invalid == 4
    # one valid prediction: the stand-in rule applies to the rest (3 opposite labels, 1 right: MCC -57.7)
    partial = score_predictions(("mcc",), [0, 1, 0, 1], [0, None, None, None], labels=[0, 1])
    assert partial.lenient["mcc"] == pytest.approx(-57.735, abs=1e-3)


# ---------------------------------------------------------------- statistics
def test_t_interval_by_hand():
    mean, low, high = t_interval([1, 2, 3, 4, 5])   # sd = 1.5811, t(0.975, 4) = 2.7764
    assert mean == 3 and high - mean == pytest.approx(2.7764 * 1.5811 / math.sqrt(5), rel=1e-4)
    assert low == pytest.approx(3 - 1.9632, abs=1e-3)
    assert math.isnan(t_interval([2.0])[1])


def test_paired_test_by_hand():
    result = paired_test([2.0, 4.0, 3.0])           # t = 3 / (1 / √3) = 5.196 with 2 df: p = 0.0351
    assert result["mean"] == 3 and result["p"] == pytest.approx(0.0351, abs=1e-4)
    assert paired_test([0.0, 0.0])["p"] == 1.0 and paired_test([1.0, 1.0])["p"] == 0.0


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1 -> 0.03, 0.06, 0.04 -> made non-decreasing: 0.03, 0.06, 0.06
    assert holm([0.04, 0.01, 0.03, math.nan])[:3] == pytest.approx([0.06, 0.03, 0.06])
    assert math.isnan(holm([0.04, 0.01, 0.03, math.nan])[3])


# ---------------------------------------------------------------- verdicts
def runs_frame(rows: list[tuple]) -> pd.DataFrame:
    """Minimal records frame: (task, method, method_config, dropout, seed, test score, final loss)."""
    return pd.DataFrame([{"backbone": "tiny-t5", "task": task, "method": method, "method_config": config,
                          "dropout": dropout, "seed": seed, "status": "done", "test_score": score,
                          "test_lenient_score": score, "loss_curve": [[1, loss]], "m": config.get("m", 128)}
                         for task, method, config, dropout, seed, score, loss in rows])


def test_verdicts_pair_by_seed_and_correct_for_the_claim():
    seeds = range(5)
    rows = [("t", "superpos", {}, False, s, 60.0 + s, 1.0) for s in seeds]
    rows += [("t", "simple", {}, False, s, 50.0 + s + (0.5 if s % 2 else -0.5), 1.0) for s in seeds]  # behind by ~10
    rows += [("t", "residual", {}, False, s, 70.0 + s, 1.0) for s in seeds]  # ahead by exactly 10 every seed
    rows += [("t", "superpos", {"softmax": True}, False, s, 59.0 + s + (3 if s % 2 else -3), 1.0) for s in seeds]
    rows += [("t", "superpos", {"m": 256}, False, s, 60.0 + s + (0.2 if s % 2 else -0.2), 1.0) for s in seeds]
    table = glance(runs_frame(rows)).set_index("comparison")
    simple = table.loc["SuperPos − simple"]
    assert simple["pairs"] == 5 and simple["difference"] == pytest.approx(10.1) and simple["verdict"] == "supported"
    assert table.loc["SuperPos − residual", "verdict"] == "contradicted"          # a finding against the paper
    assert table.loc["SuperPos − SuperPos (softmax)", "verdict"] == "inconclusive"  # +1 within seed noise of ±3
    levels = table.loc["m = 256 − m = 128 (levels off)"]
    assert levels["ci_high"] < LEVEL_MARGIN and levels["verdict"] == "supported"
    # Holm over the claim's two comparisons: each p doubled at most
    assert simple["p_holm"] <= 2 * simple["p"] + 1e-9
    summary = claim_summary(glance(runs_frame(rows))).set_index("claim")
    assert summary.loc["SuperPos-Prompt beats the other prompt methods", "verdict"] == "contradicted"


GAINS = (3.0, 0.5, 4.0, 1.0, 2.5)


def test_a_gated_glance_tests_only_the_tasks_that_pass_the_learnability_gate():
    """bbc-topic: simple prompt tuning 58-62 over five seeds, far above its constant answer and below 95: it passes.
    bbc-paraphrase: 96-98, above the gate's ceiling of 95: its difference is shown but tested no more, and it takes
    no share of Holm's correction: SuperPos's paired gains (3, 0.5, 4, 1, 2.5; mean 2.2, t = 3.42, p = 0.027) are
    supported on bbc-topic alone, where both tasks tested together double that p past 0.05."""
    rows = []
    for task, base in (("bbc-topic", 58.0), ("bbc-paraphrase", 96.0)):
        rows += [(task, "simple", {}, False, s, base + s % 3, 1.0) for s in range(5)]
        rows += [(task, "superpos", {}, False, s, base + s % 3 + gain, 1.0) for s, gain in enumerate(GAINS)]
    open_table = glance(runs_frame(rows)).set_index(["task", "comparison"])
    gated = glance(runs_frame(rows), gate=True).set_index(["task", "comparison"])
    topic, paraphrase = ("bbc-topic", "SuperPos − simple"), ("bbc-paraphrase", "SuperPos − simple")
    assert open_table.loc[topic, "verdict"] == open_table.loc[paraphrase, "verdict"] == "inconclusive"
    assert open_table.loc[topic, "p_holm"] == pytest.approx(2 * open_table.loc[topic, "p"], abs=2e-3)
    assert gated.loc[paraphrase, "verdict"] == "not testable: the task is outside the learnability gate " \
                                               "(interval reaches 97.8 (≥ 95))"
    assert gated.loc[paraphrase, "difference"] == open_table.loc[paraphrase, "difference"] == pytest.approx(2.2)
    assert gated.loc[topic, "verdict"] == "supported"
    assert gated.loc[topic, "p_holm"] == gated.loc[topic, "p"] == pytest.approx(0.027, abs=1e-3)


def test_one_seed_is_not_testable_and_dropout_on_smollm2_gives_its_reason():
    rows = [("t", "superpos", {}, False, 0, 60.0, 0.4), ("t", "simple", {}, False, 0, 50.0, 0.4),
            ("t", "simple", {}, True, 0, 0.0, 12.5)]
    frame = runs_frame(rows)
    frame["backbone"] = "smollm2-135m"
    table = glance(frame).set_index("comparison")
    assert table.loc["SuperPos − simple", "verdict"].startswith("not testable: 1 paired seed")
    reason = table.loc["simple: dropout off − on", "verdict"]
    assert reason.startswith("not testable: the backbone was pretrained without dropout")
    assert "12.50 against 0.40" in reason


# ---------------------------------------------------------------- text computed from the records
def test_every_generated_block_of_the_docs_is_what_the_committed_records_give():
    from superpos.paths import REPO_ROOT
    from superpos.report.generated import DOCS, block, blocks

    seen = []
    for name in DOCS:
        text = (REPO_ROOT / name).read_text()
        for kind, profile, start, end in blocks(text):
            seen.append((name, kind, profile))
            assert text[start:end] == block(kind, profile), \
                f"{name}'s {kind} block for {profile} is stale: python -m superpos glance --write-docs"
    assert ("README.md", "glance", "cpu") in seen and ("docs/TASKS.md", "gate", "cpu") in seen


def test_profiles_hold_no_result_narrative():
    """A profile's note describes its budget; what the runs show is computed (glance, gate), never typed."""
    from superpos.profiles import PROFILES

    for profile in PROFILES.values():
        for word in ("learn", "above the majority", "invalid labels at", "supported", "levels off", "beats"):
            assert word not in profile.note, (profile.name, word)


def test_fp16_is_refused_where_it_would_train_without_a_gradient_scaler():
    from superpos.backbones.precision import resolve_precision

    with pytest.raises(ValueError, match="fp16 trains without a gradient scaler"):
        resolve_precision("fp16", torch.device("cuda"))
    with pytest.raises(ValueError, match="fp16 runs on CUDA only"):
        resolve_precision("fp16", torch.device("cpu"))


def test_verdicts_read_the_lenient_score_and_show_the_strict_one_with_its_daggers():
    """On 500 test examples one stray invalid label zeroes a strict score: the test compares lenient scores
    (invalid labels counted wrong), and the strict means stand beside them with the seeds their rule zeroed."""
    rows = []
    for seed in range(5):
        rows.append({"backbone": "tiny-t5", "task": "t", "method": "superpos", "method_config": {}, "dropout": False,
                     "seed": seed, "status": "done", "test_score": 0.0 if seed < 3 else 70.0,
                     "test_lenient_score": 70.0 + seed, "loss_curve": [[1, 1.0]], "m": 128})
        rows.append({"backbone": "tiny-t5", "task": "t", "method": "simple", "method_config": {}, "dropout": False,
                     "seed": seed, "status": "done", "test_score": 60.0, "test_lenient_score": 60.0 + seed,
                     "loss_curve": [[1, 1.0]], "m": None})
    row = glance(pd.DataFrame(rows)).set_index("comparison").loc["SuperPos − simple"]
    assert row["difference"] == pytest.approx(10.0) and row["verdict"] == "supported"
    assert row["strict"] == "28.0 (†3/5) vs 60.0"
