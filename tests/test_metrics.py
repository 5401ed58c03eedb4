"""Metric values on crafted predictions, checked against numbers worked out by hand."""
from __future__ import annotations

import math

import pytest

from superpos.tasks import Score, average_score, get_task, parse_score, round_score, score_to_text
from superpos.tasks.metrics import compute_metrics, normalize, score_predictions


def approx(x):
    return pytest.approx(x, abs=1e-6)


# ----------------------------------------------------------------------------- single metrics


def test_binary_f1_and_accuracy_by_hand():
    gold = [1, 1, 1, 0, 0, 0]
    pred = [1, 1, 0, 1, 0, 0]  # TP=2 FN=1 FP=1 TN=2 -> P=R=2/3, F1=2/3, acc=4/6
    m = compute_metrics(("f1", "accuracy"), gold, pred)
    assert m == {"f1": approx(200 / 3), "accuracy": approx(400 / 6)}


def test_mcc_by_hand():
    gold = [1, 1, 1, 1, 0, 0, 0]
    pred = [1, 1, 1, 0, 1, 0, 0]  # TP=3 FN=1 FP=1 TN=2
    expected = (3 * 2 - 1 * 1) / math.sqrt((3 + 1) * (3 + 1) * (2 + 1) * (2 + 1))
    assert compute_metrics(("mcc",), gold, pred)["mcc"] == approx(100 * expected)


def test_cb_macro_f1_by_hand():
    # classes 0 entailment, 1 contradiction, 2 neutral
    gold = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 2, 2]
    # class 0: TP=2 FP=0 FN=1 -> F1=0.8; class 1: TP=1 FP=1 FN=1 -> 0.5; class 2: TP=1 FP=1 FN=0 -> 2/3
    macro = (0.8 + 0.5 + 2 / 3) / 3
    m = compute_metrics(("macro_f1", "accuracy"), gold, pred, labels=[0, 1, 2])
    assert m["macro_f1"] == approx(100 * macro)
    assert m["accuracy"] == approx(100 * 4 / 6)


def test_multirc_em_groups_and_f1a_by_hand():
    task = get_task("multirc")
    rows = [  # question q1: 3 options, q2: 2 options, q3: 1 option
        ("0-1", 1, "true"), ("0-1", 0, "false"), ("0-1", 1, "false"),  # q1 has one miss -> not exact
        ("0-2", 0, "false"), ("0-2", 1, "true"),                        # q2 all right
        ("1-1", 0, "true"),                                             # q3 wrong (a false positive)
    ]
    from superpos.tasks import Example

    examples = [Example("x", task.target_text(lab), lab, group, f"u{i}") for i, (group, lab, _) in enumerate(rows)]
    score = task.score([p for *_, p in rows], examples)
    # pooled options: TP=2 (q1a, q2b), FN=1 (q1c), FP=1 (q3) -> F1a = 2/3; EM = 1 of 3 questions
    assert score.metrics == {"f1a": approx(200 / 3), "em": approx(100 / 3)}
    assert score.score == approx((200 / 3 + 100 / 3) / 2)
    assert not score.dagger and score.invalid_rate == 0


def test_pearson_spearman_by_hand():
    gold = [1.0, 2.0, 3.0, 4.0]
    pred = [1.0, 3.0, 2.0, 4.0]
    # Pearson: deviations g=(-1.5,-.5,.5,1.5) p=(-1.5,.5,-.5,1.5): sum gp = 2.25-.25-.25+2.25 = 4, sum g^2 = 5
    # Spearman: same ranks as values here -> also 4/5
    m = compute_metrics(("pearson", "spearman"), gold, pred)
    assert m == {"pearson": approx(80.0), "spearman": approx(80.0)}
    # a constant side has no correlation: 0, not NaN
    assert compute_metrics(("pearson", "spearman"), gold, [2.0] * 4) == {"pearson": 0.0, "spearman": 0.0}


# ----------------------------------------------------------------------------- STS-B text


# Ties (x * 5 ending in .5) go to the even multiple, as T5's tf.round(x * 5) / 5: 0.1 -> 0.0, 0.5 -> 0.4,
# 3.3 -> 3.2, but 0.3 -> 0.4 and 3.1 -> 3.2 (1.5 -> 2, 15.5 -> 16).
@pytest.mark.parametrize("value,text", [(3.3, "3.2"), (3.31, "3.4"), (3.29, "3.2"), (3.1, "3.2"), (3.09, "3.0"),
                                        (4.95, "5.0"), (4.9, "4.8"), (5.0, "5.0"), (0.09, "0.0"), (0.1, "0.0"),
                                        (0.3, "0.4"), (0.5, "0.4"), (0.7, "0.8"), (2.5, "2.4"), (2, "2.0"),
                                        (1.48, "1.4")])
def test_stsb_rounding_to_point_two(value, text):
    assert score_to_text(value) == text
    assert round_score(value) == float(text)


@pytest.mark.parametrize("text,value", [("3.4", 3.4), (" 3.4 ", 3.4), ("5", 5.0), ("0", 0.0), ("0.0", 0.0),
                                        (".5", 0.5), ("4.", 4.0), ("5.2", None), ("-0.2", None), ("abc", None),
                                        ("3.4.1", None), ("nan", None), ("inf", None), ("", None), ("3,4", None),
                                        ("3.4 points", None)])
def test_stsb_parsing(text, value):
    assert parse_score(text) == value


def test_stsb_task_targets_and_score():
    task = get_task("stsb")
    from superpos.tasks import Example

    examples = [Example("x", task.target_text(g), g, None, str(i)) for i, g in enumerate([0.0, 1.3, 2.9, 4.4, 5.0])]
    assert [ex.target_text for ex in examples] == ["0.0", "1.2", "2.8", "4.4", "5.0"]  # ties to even: 6.5 -> 6, 14.5 -> 14
    assert len(task.all_targets) == 26 and task.all_targets[0] == "0.0" and task.all_targets[-1] == "5.0"
    score = task.score([ex.target_text for ex in examples], examples)
    assert not score.dagger and score.score > 99.0


# ----------------------------------------------------------------------------- invalid-label rules


def test_normalization_is_light():
    assert normalize("  Positive \n") == "positive"
    task = get_task("sst2")
    assert task.parse(" POSITIVE ") == 1
    assert task.parse("positive.") is None  # punctuation is not stripped
    assert task.parse("very positive") is None


def test_strict_and_lenient_binary_by_hand():
    task = get_task("mrpc")  # F1/Acc., 0 not_equivalent, 1 equivalent
    from superpos.tasks import Example

    gold = [1, 1, 0, 0, 1]
    examples = [Example("x", task.target_text(g), g, None, str(i)) for i, g in enumerate(gold)]
    preds = ["equivalent", "banana", "not_equivalent", "EQUIVALENT", "equivalent"]
    score = task.score(preds, examples)
    # strict: one invalid -> everything 0, dagger
    assert score.dagger and score.metrics == {"f1": 0.0, "accuracy": 0.0} and score.score == 0.0
    assert score.invalid_rate == approx(0.2) and score.n_invalid == 1 and score.n == 5
    # lenient: the invalid one (gold 1) becomes 0 -> preds [1,0,0,1,1]: TP=2 FN=1 FP=1 TN=1
    assert score.lenient == {"f1": approx(200 / 3), "accuracy": approx(60.0)}
    assert score.lenient_score == approx((200 / 3 + 60) / 2)
    assert score.format() == "0.0/0.0 †"


def test_lenient_invalid_on_negative_is_a_false_positive():
    task = get_task("qqp")
    from superpos.tasks import Example

    examples = [Example("x", task.target_text(g), g, None, str(i)) for i, g in enumerate([1, 0])]
    score = task.score(["duplicate", "???"], examples)
    # the invalid on gold 0 becomes 1: TP=1 FP=1 -> P=.5 R=1 F1=2/3, acc .5
    assert score.lenient == {"f1": approx(200 / 3), "accuracy": approx(50.0)}


def test_macro_f1_leaves_out_classes_absent_from_gold_and_predictions():
    # a 3-class task scored on a subset without class 2: classes 0 (TP=2, FN=0, FP=1 -> F1 = 4/5) and
    # 1 (TP=1, FN=1, FP=0 -> 2/3) are averaged; class 2 is not a 0 in the mean
    gold, pred = [0, 0, 1, 1], [0, 0, 0, 1]
    assert compute_metrics(("macro_f1",), gold, pred, labels=[0, 1, 2])["macro_f1"] == approx(100 * (4 / 5 + 2 / 3) / 2)
    # a class that only the predictions use counts (F1 = 0 for it), as scikit-learn's default label set does
    assert compute_metrics(("macro_f1",), [0, 0], [0, 2], labels=[0, 1, 2])["macro_f1"] == approx(100 * (2 / 3 + 0) / 2)
    # the lenient stand-in for an invalid label (-1) is a wrong answer, not a class of its own
    assert compute_metrics(("macro_f1",), [0, 1], [0, -1], labels=[0, 1, 2])["macro_f1"] == approx(100 * (1 + 0) / 2)


def test_lenient_multiclass_invalid_is_its_own_wrong_class():
    task = get_task("cb")
    from superpos.tasks import Example

    gold = [0, 1, 2, 2]
    examples = [Example("x", task.target_text(g), g, None, str(i)) for i, g in enumerate(gold)]
    score = task.score(["entailment", "contradiction", "neutral", "maybe"], examples)
    # invalid -> class -1: class 0 F1=1, class 1 F1=1, class 2 TP=1 FN=1 FP=0 -> 2/3
    assert score.lenient["macro_f1"] == approx(100 * (1 + 1 + 2 / 3) / 3)
    assert score.lenient["accuracy"] == approx(75.0)
    assert score.dagger and score.score == 0.0


def test_lenient_regression_substitutes_midpoint():
    gold = [1.0, 2.0, 3.0, 4.0]
    s = score_predictions(("pearson", "spearman"), gold, [1.0, None, 3.0, 4.0], labels=None)
    # filled = [1, 2.5, 3, 4]: deviations g=(-1.5,-.5,.5,1.5), p=(-1.625,-.125,.375,1.375)
    gp = 1.5 * 1.625 + 0.5 * 0.125 + 0.5 * 0.375 + 1.5 * 1.375
    pp = 1.625 ** 2 + 0.125 ** 2 + 0.375 ** 2 + 1.375 ** 2
    assert s.lenient["pearson"] == approx(100 * gp / math.sqrt(5 * pp))
    assert s.lenient["spearman"] == approx(100.0)  # ranks unchanged
    assert s.dagger and s.metrics == {"pearson": 0.0, "spearman": 0.0}


def test_all_valid_strict_equals_lenient():
    task = get_task("cola")
    from superpos.tasks import Example

    examples = [Example("x", task.target_text(g), g, None, str(i)) for i, g in enumerate([1, 0, 1, 1])]
    score = task.score(["acceptable", "unacceptable", "unacceptable", "acceptable"], examples)
    assert score.metrics == score.lenient and not score.dagger
    assert score.metrics["mcc"] == approx(100 * (2 * 1 - 0 * 1) / math.sqrt(2 * 3 * 1 * 2))


def test_score_needs_one_prediction_per_example():
    task = get_task("rte")
    from superpos.tasks import Example

    with pytest.raises(ValueError):
        task.score(["entailment"], [Example("x", "entailment", 0), Example("y", "entailment", 0)])


# ----------------------------------------------------------------------------- averages (Table 1)


def test_average_reproduces_table1_rows():
    # T5v1.1-Small, SuperPos PT without dropout: Avg. 70.2
    row = {"qqp": {"f1": 79.1, "accuracy": 83.3}, "qnli": 85.3, "mnli": 71.7, "sst2": 89.8,
           "stsb": {"pearson": 84.0, "spearman": 84.0}, "mrpc": {"f1": 89.9, "accuracy": 85.8}, "cola": 38.9,
           "multirc": {"f1a": 66.6, "em": 16.7}, "rte": 64.6, "cb": {"macro_f1": 73.6, "accuracy": 76.8},
           "copa": 58.0, "wic": 65.7, "boolq": 68.9}
    assert round(average_score(row), 1) == 70.2
    # T5v1.1-Small, Simple PT with dropout (daggered tasks score 0): Avg. 37.1
    row = {"qqp": {"f1": 58.2, "accuracy": 65.5}, "qnli": 50.6, "mnli": 33.2, "sst2": 79.4,
           "stsb": {"pearson": 9.8, "spearman": 7.9}, "mrpc": {"f1": 81.2, "accuracy": 68.4}, "cola": 0.0,
           "multirc": {"f1a": 17.3, "em": 0.3}, "rte": 52.3, "cb": {"macro_f1": 0.0, "accuracy": 0.0},
           "copa": 0.0, "wic": 50.6, "boolq": 62.2}
    assert round(average_score(row), 1) == 37.1


def test_average_of_scores_strict_and_lenient():
    a = Score({"f1": 80.0, "accuracy": 90.0}, {"f1": 80.0, "accuracy": 90.0}, 85.0, 85.0, 0.0, False)
    b = Score({"accuracy": 0.0}, {"accuracy": 60.0}, 0.0, 60.0, 0.1, True)
    assert average_score({"a": a, "b": b}) == approx(42.5)
    assert average_score({"a": a, "b": b}, lenient=True) == approx(72.5)
    with pytest.raises(ValueError):
        average_score({})


# ----------------------------------------------------------------------------- cross-check with evaluate


def test_cross_check_with_evaluate_scripts():
    evaluate = pytest.importorskip("evaluate", reason="evaluate is not installed (optional extra 'evaluate')")
    try:
        glue_mrpc = evaluate.load("glue", "mrpc")
        glue_cola = evaluate.load("glue", "cola")
        glue_stsb = evaluate.load("glue", "stsb")
        sg_cb = evaluate.load("super_glue", "cb")
        sg_multirc = evaluate.load("super_glue", "multirc")
    except Exception as err:  # the wheel ships no metric scripts; the hub is needed to fetch them
        pytest.skip(f"evaluate's glue/super_glue metric scripts cannot be loaded here ({type(err).__name__})")
    gold, pred = [1, 0, 1, 1, 0, 1, 0], [1, 0, 0, 1, 1, 1, 0]
    ours = compute_metrics(("f1", "accuracy", "mcc"), gold, pred)
    ref = glue_mrpc.compute(predictions=pred, references=gold)
    assert ours["f1"] == approx(100 * ref["f1"]) and ours["accuracy"] == approx(100 * ref["accuracy"])
    assert ours["mcc"] == approx(100 * glue_cola.compute(predictions=pred, references=gold)["matthews_correlation"])
    g, p = [0.0, 1.2, 2.5, 3.3, 4.8], [0.4, 1.0, 2.0, 3.8, 4.6]
    ref = glue_stsb.compute(predictions=p, references=g)
    ours = compute_metrics(("pearson", "spearman"), g, p)
    assert ours["pearson"] == approx(100 * ref["pearson"]) and ours["spearman"] == approx(100 * ref["spearmanr"])
    g3, p3 = [0, 1, 2, 2, 1, 0], [0, 2, 2, 1, 1, 0]
    ref = sg_cb.compute(predictions=p3, references=g3)
    assert compute_metrics(("macro_f1",), g3, p3, labels=[0, 1, 2])["macro_f1"] == approx(100 * ref["f1"])
    idx = [{"paragraph": 0, "question": 0, "answer": 0}, {"paragraph": 0, "question": 0, "answer": 1},
           {"paragraph": 0, "question": 1, "answer": 0}, {"paragraph": 1, "question": 0, "answer": 0}]
    gm, pm = [1, 0, 1, 0], [1, 1, 1, 0]
    ref = sg_multirc.compute(predictions=[{"idx": i, "prediction": x} for i, x in zip(idx, pm)], references=gm)
    ours = compute_metrics(("f1a", "em"), gm, pm, groups=[f"{i['paragraph']}-{i['question']}" for i in idx])
    assert ours["f1a"] == approx(100 * ref["f1_a"]) and ours["em"] == approx(100 * ref["exact_match"])
