"""The report layer and the profiles, on records the tests write (no model is loaded here)."""
from __future__ import annotations

import base64

import math
import xml.etree.ElementTree as ElementTree

import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from superpos import profiles, report
from superpos.engine import ResultsStore, RunConfig, expand, load_records
from superpos.report import paper as paper_module
from superpos.report.stability import standardized_overall

BUDGET = dict(max_steps=4, batch_size=4, eval_every=2, train_limit=16, eval_limit=8, max_input_tokens=32)


def make_record(store: ResultsStore, *, task="bbc-topic", method="superpos", method_config=None, dropout=False,
                seed=0, backbone="tiny-t5", metrics=None, dagger=False, lenient=None, status="done",
                history_scores=(10.0, 20.0), analysis=None, prompt_path=None, trainable_params=1000) -> dict:
    """A record in the engine's schema (the fields ``load_records`` reads), written into ``store``."""
    config = RunConfig(backbone=backbone, task=task, method=method, method_config=method_config or {},
                       dropout=dropout, seed=seed, **BUDGET).resolved()
    metrics = dict(metrics if metrics is not None else {"accuracy": 50.0})
    strict = {k: 0.0 for k in metrics} if dagger else dict(metrics)
    lenient_metrics = dict(lenient if lenient is not None else metrics)
    point = {"step": 4, "epoch": 1.0, "metrics": strict, "lenient": lenient_metrics,
             "score": sum(strict.values()) / len(strict), "lenient_score": sum(lenient_metrics.values()) / len(lenient_metrics),
             "invalid_rate": 0.25 if dagger else 0.0, "dagger": dagger, "n": 8, "n_invalid": 2 if dagger else 0}
    history = [{**point, "step": 2 * (i + 1), "epoch": 0.5 * (i + 1), "score": s} for i, s in enumerate(history_scores)]
    record = {"hash": config.run_hash(), "config": config.to_dict(), "status": status,
              "reason": None if status == "done" else "boom", "history": history if status == "done" else [],
              "loss_curve": [[1, 2.0], [4, 1.0]], "best": {"step": 4, "epoch": 1.0, "dev": point, "test": point}
              if status == "done" else None, "analysis": analysis or {}, "prompt_path": prompt_path, "steps": 4,
              "trainable_params": trainable_params, "timing": {"train_seconds": 1.0}, "peak_memory_mb": 1.0,
              "provenance": {"device": "cpu"}}
    store.put(record)
    return record


# ----------------------------------------------------------------------------- the paper's numbers
def test_paper_csv_is_the_shared_transcription():
    values = report.paper_values()
    assert len(values) == 440
    assert set(values["table"]) == {"table1", "table2", "table3"}
    cb = values[(values["table"] == "table1") & (values["task"] == "cb")]
    assert set(cb["metric"]) == {"macro_f1", "accuracy"}  # CB's F1 is macro-F1, as our task scores it
    scores = report.paper_task_scores("table1")
    row = scores[(scores["model"] == "t5-v1_1-base-lm-adapt") & (scores["method"] == "superpos")
                 & ~scores["dropout"] & (scores["task"] == "qqp")].iloc[0]
    assert row["score"] == pytest.approx((81.9 + 86.3) / 2)
    assert not row["dagger"]


def test_paper_averages_follow_from_the_tasks():
    """Two-metric tasks averaged first, then the 13 tasks: the paper's Avg. column within rounding."""
    scores = report.paper_task_scores("table1")
    averages = paper_module.paper_averages("table1")
    checked = 0
    for _, row in averages.iterrows():
        tasks = scores[(scores["model"] == row["model"]) & (scores["method"] == row["method"])
                       & (scores["dropout"] == row["dropout"])]
        if len(tasks) == 13:
            assert tasks["score"].mean() == pytest.approx(row["avg"], abs=0.06)
            checked += 1
    assert checked == 14


def test_standardized_scoring_reproduces_the_papers_table2_from_its_table1():
    """Table 2 = min-max per task over the 14 non-ATTEMPT rows of both model sizes, x100, then mean and
    population std over the 13 tasks (the only variant that matches; see superpos.report.stability)."""
    check = report.paper_table2_check()
    assert len(check) == 14
    table1 = report.paper_task_scores("table1")
    table1 = table1[table1["method"] != "attempt"].rename(columns={"model": "backbone"}).assign(variant=lambda f: f["method"])
    ours = standardized_overall(table1)
    printed = report.paper_table2()
    merged = ours.merge(printed.rename(columns={"model": "backbone"}), on=["backbone", "method", "dropout"],
                        suffixes=("", "_paper"))
    assert len(merged) == 14
    assert (merged["mean"] - merged["mean_paper"]).abs().max() <= 0.07  # printed to 0.1 (±0.05) from inputs printed to 0.1
    assert (merged["std"] - merged["std_paper"]).abs().max() <= 0.07  # printed to 0.1 (±0.05) from inputs printed to 0.1
    assert (merged["tasks"] == 13).all()


def test_other_standardization_variants_do_not_match():
    """The documented alternatives really miss: per model size, or ATTEMPT kept in the min/max."""
    table1 = report.paper_task_scores("table1").rename(columns={"model": "backbone"}).assign(variant=lambda f: f["method"])
    printed = report.paper_table2().rename(columns={"model": "backbone"})
    per_size = pd.concat([standardized_overall(g[g["method"] != "attempt"]) for _, g in table1.groupby("backbone")])
    merged = per_size.merge(printed, on=["backbone", "method", "dropout"], suffixes=("", "_paper"))
    assert (merged["mean"] - merged["mean_paper"]).abs().max() > 5
    with_attempt = standardized_overall(table1, complete_only=False)
    merged = with_attempt.merge(printed, on=["backbone", "method", "dropout"], suffixes=("", "_paper"))
    assert (merged["mean"] - merged["mean_paper"]).abs().max() > 5


def test_standardized_scores_formula_on_a_small_case():
    scores = pd.DataFrame({"backbone": "b", "method": ["a", "b", "c"] * 2, "variant": ["a", "b", "c"] * 2,
                           "dropout": False, "task": ["t1"] * 3 + ["t2"] * 3,
                           "score": [10.0, 20.0, 30.0, 50.0, 50.0, 50.0]})
    standard = report.standardized_scores(scores)
    assert standard[standard["task"] == "t1"]["s"].tolist() == [0.0, 50.0, 100.0]
    assert standard[standard["task"] == "t2"]["s"].isna().all()  # every setting tied: no ranking, left out
    overall = standardized_overall(scores)
    assert overall.set_index("method").loc["b", "mean"] == 50.0
    assert (overall["tasks"] == 1).all()


# ----------------------------------------------------------------------------- tables on crafted records
@pytest.fixture()
def store(tmp_path):
    return ResultsStore(tmp_path / "store")


def test_table1_pivot_two_metric_average_dagger_and_avg(store):
    make_record(store, task="bbc-topic", method="simple", metrics={"macro_f1": 40.0, "accuracy": 60.0})
    make_record(store, task="bbc-next", method="simple", metrics={"accuracy": 70.0})
    make_record(store, task="bbc-topic", method="superpos", metrics={"macro_f1": 80.0, "accuracy": 90.0})
    make_record(store, task="bbc-next", method="superpos", metrics={"accuracy": 55.0}, dagger=True,
                lenient={"accuracy": 55.0})
    runs = load_records(store)
    scores = report.task_scores(runs)
    simple_topic = scores[(scores["method"] == "simple") & (scores["task"] == "bbc-topic")].iloc[0]
    assert simple_topic["score"] == 50.0  # two metrics averaged
    table, numbers = report.method_table(scores)
    assert list(table["Method"]) == ["Simple PT", "SuperPos PT"]
    topic_col = [c for c in table.columns if c.startswith("bbc-topic")][0]
    assert topic_col == "bbc-topic F1/Acc."
    assert table.loc[0, topic_col] == "40.0/60.0"
    next_col = [c for c in table.columns if c.startswith("bbc-next")][0]
    assert table.loc[1, next_col] == "0.0 †"  # strict: invalid labels zero the task
    assert numbers.loc[0, "Avg."] == pytest.approx((50.0 + 70.0) / 2)
    assert numbers.loc[1, "Avg."] == pytest.approx((85.0 + 0.0) / 2)
    assert table.loc[1, "Dropout"] == "✗"


def test_table1_avg_leaves_out_a_task_only_one_row_ran(store):
    """A source task run by simple prompt tuning alone (for ATTEMPT) keeps its column but enters no average, so
    every method is averaged over the same tasks; a row lacking a shared task prints "-" (as the paper's ATTEMPT,
    which skips its source tasks; here Residual PT stands in for it)."""
    for method, topic, same in (("simple", 60.0, 40.0), ("superpos", 70.0, 50.0), ("residual", 80.0, None)):
        make_record(store, task="bbc-topic", method=method, metrics={"macro_f1": topic, "accuracy": topic})
        if same is not None:
            make_record(store, task="bbc-same-topic", method=method, metrics={"accuracy": same})
    make_record(store, task="bbc-sts", method="simple", metrics={"pearson": 10.0, "spearman": 10.0})
    table, numbers = report.method_table(report.task_scores(load_records(store)))
    averages = dict(zip(table["Method"], numbers["Avg."]))
    assert averages["Simple PT"] == pytest.approx(50.0) and averages["SuperPos PT"] == pytest.approx(60.0)
    assert math.isnan(averages["Residual PT"]) and any(c.startswith("bbc-sts") for c in table.columns)


def test_lenient_scores_count_invalid_labels_as_wrong(store):
    make_record(store, task="bbc-next", method="superpos", metrics={"accuracy": 60.0}, dagger=True,
                lenient={"accuracy": 45.0})
    runs = load_records(store)
    strict = report.task_scores(runs)
    lenient = report.task_scores(runs, lenient=True)
    assert strict["score"].iloc[0] == 0.0 and strict["dagger"].iloc[0]
    assert lenient["score"].iloc[0] == 45.0
    table, _ = report.method_table(lenient, lenient=True)
    assert table.iloc[0, -2] == "45.0 †"


def test_seeds_average_with_spread_and_partial_daggers(store):
    make_record(store, task="bbc-next", seed=0, metrics={"accuracy": 60.0})
    make_record(store, task="bbc-next", seed=1, metrics={"accuracy": 80.0})
    make_record(store, task="bbc-next", seed=2, metrics={"accuracy": 70.0}, dagger=True)
    scores = report.task_scores(load_records(store))
    row = scores.iloc[0]
    assert row["seeds"] == 3 and row["daggers"] == 1
    assert row["score"] == pytest.approx((60 + 80 + 0) / 3)
    assert row["score_std"] == pytest.approx(np.std([60, 80, 0], ddof=1))
    assert report.tables.format_cell(row).endswith("†1/3")


def test_failed_runs_are_counted_not_averaged(store):
    make_record(store, task="bbc-next", seed=0, metrics={"accuracy": 60.0})
    make_record(store, task="bbc-next", seed=1, status="failed")
    row = report.task_scores(load_records(store)).iloc[0]
    assert row["seeds"] == 1 and row["failed"] == 1 and row["score"] == 60.0


def test_variant_labels():
    assert report.variant_label("superpos", {"m": 128, "softmax": False}) == "superpos"
    assert report.variant_label("superpos", {"softmax": True}) == "superpos (softmax)"
    assert report.variant_label("superpos", {"m": 16}) == "superpos m=16"
    assert report.variant_label("simple", {"n_prompts": 20}) == "simple n=20"
    assert report.variant_label("simple", {"init": "labels"}) == "simple init=labels"
    assert report.variant_label("ept", {"fusion": False, "projection": False}) == "ept (decomposition)"
    assert report.variant_label("ept", {"fusion": True, "projection": False}) == "ept (+ fusion)"
    assert report.variant_label("ept", {}) == "ept"
    assert report.method_label("superpos", "superpos (softmax)") == "SuperPos PT (softmax)"


def test_factor_table_with_difference_and_average(store):
    for task, plain, soft in (("bbc-topic", 60.0, 50.0), ("bbc-next", 70.0, 72.0)):
        metrics = {"macro_f1": plain, "accuracy": plain} if task == "bbc-topic" else {"accuracy": plain}
        make_record(store, task=task, metrics=metrics)
        metrics = {"macro_f1": soft, "accuracy": soft} if task == "bbc-topic" else {"accuracy": soft}
        make_record(store, task=task, method_config={"softmax": True}, metrics=metrics)
    scores = report.task_scores(load_records(store))
    table, numbers = report.factor_table(scores, "variant", difference=("superpos (softmax)", "superpos"))
    delta = [c for c in table.columns if c.startswith("Δ")][0]
    assert table[delta].tolist() == ["-10.0", "+2.0", "-4.0"]
    assert table["Task"].iloc[-1] == "Avg."
    assert numbers.iloc[-1][delta] == pytest.approx(-4.0)


def test_factor_table_where_selects(store):
    for n, score in ((1, 30.0), (10, 40.0), (20, 50.0)):
        make_record(store, method="simple", method_config={"n_prompts": n}, task="bbc-next", metrics={"accuracy": score})
    make_record(store, method="simple", method_config={"init": "uniform"}, task="bbc-next", metrics={"accuracy": 10.0})
    scores = report.task_scores(load_records(store))
    table, numbers = report.factor_table(scores, "n_prompts", where={"init": "vocab"})
    assert list(table.columns) == ["Backbone", "Task", "n=1", "n=10", "n=20"]
    assert numbers.loc[0, "n=10"] == 40.0
    table, _ = report.factor_table(scores, "init", where={"n_prompts": 10})
    assert list(table.columns) == ["Backbone", "Task", "init=uniform", "init=vocab"]


def test_paper_beside_ours_with_differences(store):
    backbone = "google/t5-base-lm-adapt"
    make_record(store, backbone=backbone, task="rte", method="superpos", metrics={"accuracy": 72.4})
    make_record(store, backbone=backbone, task="cb", method="superpos", metrics={"macro_f1": 80.0, "accuracy": 80.0})
    make_record(store, backbone="tiny-t5", task="rte", method="superpos", metrics={"accuracy": 50.0})
    scores = report.task_scores(load_records(store))
    beside = report.beside_paper(scores)
    assert list(beside["Task"]) == ["RTE", "CB"]  # the paper's order; tiny-t5 has no paper counterpart
    rte = beside[beside["Task"] == "RTE"].iloc[0]
    assert rte["Ours"] == "72.4" and rte["Paper"] == "70.4" and rte["Δ (ours − paper)"] == "+2.0"
    cb = beside[beside["Task"] == "CB"].iloc[0]
    assert cb["Paper"] == "80.2" and cb["Δ (ours − paper)"] == "-0.2"  # (78.3 + 82.1) / 2
    assert "Table 1" in rte["Source"]
    # Table 3: the softmax variant on Small.
    make_record(store, backbone="google/t5-small-lm-adapt", task="rte", method_config={"softmax": True},
                metrics={"accuracy": 50.0})
    beside3 = report.beside_paper(report.task_scores(load_records(store)), table="table3")
    soft = beside3[beside3["Method"] == "SuperPos PT (softmax)"].iloc[0]
    assert soft["Paper"] == "52.0" and soft["Δ (ours − paper)"] == "-2.0"
    assert report.beside_paper(report.task_scores(load_records(store)).iloc[0:0]).empty


def test_paper_table_layout():
    table = report.paper_table("table1", models=["t5-v1_1-small-lm-adapt"], dropout=[False])
    assert list(table["Method"]) == ["Simple PT", "ATTEMPT", "Residual PT", "SuperPos PT"]
    superpos = table[table["Method"] == "SuperPos PT"].iloc[0]
    assert superpos["QQP F1/Acc."] == "79.1/83.3" and superpos["Avg."] == "70.2"
    attempt = table[table["Method"] == "ATTEMPT"].iloc[0]
    assert attempt["QQP F1/Acc."] == "-" and attempt["CB F1/Acc."] == "0.0/0.0 †"


def test_learning_curves_and_selection(store):
    make_record(store, method="superpos", history_scores=(10.0, 30.0))
    make_record(store, method="simple", history_scores=(5.0, 8.0))
    runs = load_records(store)
    curves = report.learning_curves(report.select(runs, method="superpos"))
    assert curves["step"].tolist() == [2, 4] and curves["score"].tolist() == [10.0, 30.0]
    with pytest.raises(ValueError, match="no column"):
        report.select(runs, colour="red")


def test_weight_similarity_needs_the_same_sampled_tokens(store):
    w = {"bbc-topic": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], "bbc-next": [[1.0, 0.0, 0.0], [0.0, -1.0, 0.0]],
         "bbc-sts": [[0.0, 1.0, 0.0], [0.0, 1.0, 1.0]]}
    for task, weights in w.items():
        make_record(store, task=task, method_config={"m": 3, "n_prompts": 2},
                    metrics={"pearson": 1.0, "spearman": 1.0} if task == "bbc-sts" else {"accuracy": 1.0},
                    analysis={"weights": weights, "token_ids": [5, 6, 7]})
    similarity = report.weight_similarity(load_records(store))
    assert sorted(similarity["prompt"].unique()) == [1, 2]
    first = similarity[similarity["prompt"] == 1].set_index(["task_a", "task_b"])["cosine"]
    assert first[("bbc-topic", "bbc-next")] == pytest.approx(1.0)
    assert first[("bbc-topic", "bbc-sts")] == pytest.approx(0.0)
    second = similarity[similarity["prompt"] == 2].set_index(["task_a", "task_b"])["cosine"]
    assert second[("bbc-topic", "bbc-next")] == pytest.approx(-1.0)
    assert second[("bbc-topic", "bbc-sts")] == pytest.approx(1 / math.sqrt(2))
    assert len(report.distinctiveness(similarity)) == 3
    make_record(store, task="bbc-copa", method_config={"m": 3, "n_prompts": 2}, metrics={"accuracy": 1.0},
                analysis={"weights": [[1, 0, 0], [0, 1, 0]], "token_ids": [1, 2, 3]})
    with pytest.raises(ValueError, match="different tokens"):
        report.weight_similarity(load_records(store))


def test_nearest_tokens_are_computed_once_then_read_from_the_cache(store, tmp_path):
    import torch
    from safetensors.torch import save_file

    class Tokenizer:
        def decode(self, ids):
            return f" tok{ids[0]}"

        def convert_ids_to_tokens(self, i):
            return f"<{i}>"

    class Backbone:
        tokenizer = Tokenizer()
        embedding_weight = torch.eye(6)

        def candidate_token_ids(self):
            return torch.arange(1, 6)

    prompt = torch.zeros(2, 6)
    prompt[0, 3], prompt[0, 1] = 1.0, 0.1
    prompt[1, 5], prompt[1, 4] = 1.0, 0.5
    (store.root / "prompts").mkdir(parents=True)
    save_file({"prompt": prompt}, str(store.root / "prompts" / "x.safetensors"))
    make_record(store, method="simple", prompt_path="prompts/x.safetensors")
    calls = []

    def load(name):
        calls.append(name)
        return Backbone()

    runs = load_records(store)
    readouts = report.nearest_tokens(runs, store, k=2, load=load)
    assert readouts["tokens"].tolist() == [["tok3", "tok1"], ["tok5", "tok4"]]
    assert calls == ["tiny-t5"]
    again = report.nearest_tokens(runs, store, k=2, load=lambda name: pytest.fail("loaded a model"))
    assert again["tokens"].tolist() == readouts["tokens"].tolist()
    table = report.readout_table(again)
    assert table["Nearest tokens (cosine)"].iloc[0] == "tok3 (0.99) · tok1 (0.10)"


def test_publish_writes_csv_md_png_svg_with_profile_in_names(store, tmp_path, monkeypatch):
    monkeypatch.setenv("SUPERPOS_RESULTS", str(tmp_path / "results"))
    make_record(store, task="bbc-next", metrics={"accuracy": 60.0}, history_scores=(10.0, 60.0))
    runs = load_records(store)
    scores = report.task_scores(runs)
    table, numbers = report.method_table(scores)
    text = report.caption("smoke", runs, "Table 1")
    for word in ("tiny-t5", "bbc-next", "seed 0", "1 run", "One seed", "tables/PROVENANCE_smoke.md"):
        assert word in text
    shown = report.publish_table(table, "table1", "smoke", title="Table 1", caption=text, data=numbers)
    folder = tmp_path / "results" / "smoke" / "tables"
    assert sorted(p.name for p in folder.iterdir()) == ["PROVENANCE_smoke.json", "PROVENANCE_smoke.md",
                                                        "table1_smoke.csv", "table1_smoke.md"]
    provenance = (folder / "PROVENANCE_smoke.md").read_text()
    for word in ("tiny-t5", "bbc-next", "batch 4", "Seeds:** 0", "numbers mean nothing", "†k/n"):
        assert word in provenance
    assert "| Backbone |" in (folder / "table1_smoke.md").read_text()
    assert "Table 1." in repr(shown) and "<table" in shown._repr_html_()
    assert str(tmp_path) not in repr(shown)  # nothing machine-specific in what a notebook shows
    figure = report.plot_curves(report.learning_curves(runs))
    shown = report.publish_figure(figure, "curves", "smoke", title="Learning curves", caption=text)
    figures = tmp_path / "results" / "smoke" / "figures"
    assert sorted(p.name for p in figures.iterdir()) == ["curves_smoke.md", "curves_smoke.png", "curves_smoke.svg"]
    page = (figures / "curves_smoke.md").read_text()  # the caption, its pointer to the provenance file a link
    assert page.startswith(f"**Learning curves.** {text.split('tables/')[0]}")
    assert "[tables/PROVENANCE_smoke.md](../tables/PROVENANCE_smoke.md)" in page
    # the caption is beside the pixels, not in them: the figure's only text above the panels is its title
    assert figure.get_suptitle() == "Learning curves"
    assert all(text not in t.get_text() for t in figure.findobj(matplotlib.text.Text))
    bundle = shown._repr_mimebundle_()
    assert set(bundle) == {"image/png", "text/plain"} and text in bundle["text/plain"]
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")
    assert text in repr(shown) and str(tmp_path) not in repr(shown)


def test_figures_on_empty_and_small_inputs(store):
    make_record(store, method_config={"m": 16}, metrics={"accuracy": 40.0})
    make_record(store, method_config={"m": 1, "weights_init": "normal"}, metrics={"accuracy": 30.0})
    scores = report.task_scores(load_records(store))
    assert sorted(scores["m"]) == [1, 16]
    for figure in (report.plot_factor(scores, "m", xlabel="m", log2=True),
                   report.plot_factor(scores, "variant", xlabel="variant", kind="bar"),
                   report.plot_curves(report.learning_curves(load_records(store).iloc[0:0])),
                   report.plot_similarity(pd.DataFrame(columns=["backbone"])),
                   report.plot_standardized(pd.DataFrame())):
        assert figure.axes


# ----------------------------------------------------------------------------- profiles
@pytest.mark.parametrize("profile", list(profiles.PROFILES))
def test_every_notebook_grid_expands(profile):
    for notebook in profiles.NOTEBOOKS:
        configs = expand(profiles.notebook_grid(notebook, profile))
        assert configs, (profile, notebook)


def test_table1_grid_runs_full_fine_tuning_with_dropout_only():
    configs = expand(profiles.notebook_grid("01_method", "paper"))
    full = [c for c in configs if c.method == "full"]
    assert full and all(c.dropout for c in full)
    assert all(not c.dropout for c in configs if c.method != "full")
    attempt = [c for c in configs if c.method == "attempt"]
    assert {c.task for c in attempt} == set(profiles.PAPER_TASKS) - {"qqp", "qnli", "mnli", "sst2"}
    assert {c.backbone for c in configs} == {"google/t5-small-lm-adapt", "google/t5-base-lm-adapt"}
    assert all(c.epochs == 80 and c.batch_size == 32 for c in configs)


def test_notebooks_share_runs():
    """The quick profile's notebooks reuse each other's runs (same config, same hash)."""
    def hashes(notebook):
        return {c.run_hash() for c in expand(profiles.notebook_grid(notebook, "quick"))}

    first = hashes("01_method")
    assert hashes("05_stability_analysis") <= first | hashes("02_dropout_ablation")
    assert {c.run_hash() for c in expand(profiles.notebook_grid("02_dropout_ablation", "quick")) if not c.dropout} <= first
    assert len(hashes("03_m_ablation") & first) == 1  # m = 128 is 01's SuperPos
    assert len(hashes("06_prompt_tuning_baselines") & first) == 0  # Lester's vocab init: top 5,000 tokens only
    assert len(hashes("07_ept") & first) == 2  # full EPT and SuperPos
    assert len(hashes("04_softmax_variant") & first) == 1


def test_quick_profile_fits_its_budget():
    """`make reproduce` (all 7 notebooks, quick) must finish within 30 minutes on a 2-core CPU with nothing
    cached. Per-unit costs measured there in fp32 (see superpos/profiles.py), taken at their slow end: 1.4 s per
    prompt-tuning step, 3 s per step with the frozen network's dropout on or full fine-tuning (the plain
    Hugging Face forward), 6 s per evaluation of 64 examples, 5 s per backbone load, 10 s per notebook kernel,
    30 s to convert the GGUF once."""
    configs = profiles.profile_configs("quick")
    slow = sum(c.max_steps for c in configs if c.dropout or c.method == "full")
    fast = sum(c.max_steps for c in configs) - slow
    evaluations = sum(c.max_steps // c.eval_every for c in configs)
    seconds = fast * 1.4 + slow * 3.0 + evaluations * 6 + len(configs) * 5 + len(profiles.NOTEBOOKS) * 10 + 30
    assert seconds <= 30 * 60, seconds
    assert all(c.max_steps >= 48 for c in configs), "fewer steps than this and most methods emit invalid labels"


def test_profile_and_notebook_names():
    assert profiles.notebook_name("01") == profiles.notebook_name("1") == "01_method"
    assert profiles.notebook_name("notebooks/07_ept.ipynb") == "07_ept"
    with pytest.raises(ValueError, match="unknown notebook"):
        profiles.notebook_name("99")
    with pytest.raises(ValueError, match="unknown profile"):
        profiles.get_profile("huge")
    grid = profiles.notebook_grid("01", "quick", tasks=["bbc-next"], seeds=[3])
    assert grid.tasks == ["bbc-next"] and grid.seeds == [3]
    m_configs = expand(profiles.notebook_grid("03", "paper"))
    assert sorted(c.method_config["m"] for c in m_configs) == sorted([1, 2, 4, 8, 16, 32, 64, 128, 256] * 7)
    assert {c.method_config["weights_init"] for c in m_configs} == {"auto"}  # one kind of p′ start for every m


def test_weights_init_ablation_and_table3_rows():
    quick = expand(profiles.notebook_grid("04", "quick"))  # quick leaves the p′-start ablation to profile cpu
    assert sorted((c.method_config["softmax"], c.method_config["weights_init"]) for c in quick) == [
        (False, "auto"), (True, "auto")]
    configs = expand(profiles.notebook_grid("04", "quick", weights_inits=["one_hot", "normal", "uniform"]))
    starts = sorted((c.method_config["softmax"], c.method_config["weights_init"]) for c in configs)
    assert starts == [(False, "auto"), (False, "normal"), (False, "uniform"),
                      (True, "auto"), (True, "normal"), (True, "one_hot"), (True, "uniform")]
    # the cpu profile bounds the ablation to one task and one seed; its softmax row keeps every task and seed
    cpu = expand(profiles.notebook_grid("04", "cpu"))
    ablation = [c for c in cpu if c.method_config["weights_init"] != "auto"]
    assert {c.task for c in ablation} == {"bbc-topic"} and {c.seed for c in ablation} == {0} and len(ablation) == 5
    assert {c.task for c in cpu if c.method_config["weights_init"] == "auto"} == set(profiles.CPU_TASKS)
    # Table 3's SuperPos row on the original T5-Base (App. A.1) runs in the paper profile, plain SuperPos only
    paper = expand(profiles.notebook_grid("04", "paper"))
    t5_base = [c for c in paper if c.backbone == "t5-base"]
    assert len(t5_base) == len(profiles.PAPER_TASKS)
    assert all(c.method == "superpos" and c.method_config["weights_init"] == "auto" and not c.method_config["softmax"]
               for c in t5_base)


def test_lester_baselines_sample_vocab_among_the_5000_most_frequent_tokens():
    configs = expand(profiles.notebook_grid("06", "quick"))
    for config in configs:
        vocab = config.method_config["init"] == "vocab"
        assert config.method_config["vocab_top_k"] == (5000 if vocab else None)


@pytest.mark.parametrize("profile", list(profiles.PROFILES))
def test_label_initialization_only_on_tasks_with_label_words(profile):
    from superpos.tasks import get_task

    for config in expand(profiles.notebook_grid("06_prompt_tuning_baselines", profile)):
        if config.method_config.get("init") == "labels":
            assert get_task(config.task).label_words, (profile, config.task)


# ----------------------------------------------------------------------------- figure content and files
QUANTITY_LABELS = ["strict score (%)", "lenient score (%)", "invalid labels (%)"]


def _score_axes(figure):
    """The visible axes of a figure, by y label."""
    axes = {}
    for ax in figure.axes:
        if ax.get_visible():
            axes.setdefault(ax.get_ylabel(), []).append(ax)
    return axes


def _mixed_store(store):
    """Two methods x dropout on/off; one seed of superpos emits invalid labels (strict 0, lenient 40)."""
    for method in ("simple", "superpos"):
        for dropout in (False, True):
            make_record(store, method=method, dropout=dropout, history_scores=(10.0, 30.0))
    make_record(store, method="superpos", seed=1, dagger=True, lenient={"accuracy": 40.0}, history_scores=(0.0, 0.0))
    return load_records(store)


def test_curves_show_strict_lenient_and_invalid_rows_on_0_100(store):
    runs = _mixed_store(store)
    curves = report.learning_curves(runs)
    assert {"strict_score", "lenient_score", "invalid_rate"} <= set(curves.columns)
    figure = report.plot_curves(curves, hue="setting")
    axes = _score_axes(figure)
    assert [label for label in QUANTITY_LABELS if label in axes] == QUANTITY_LABELS
    for ax in figure.axes:
        low, high = ax.get_ylim()
        assert low <= 0 and high >= 100 and high <= 110
    strict, lenient, invalid = (figure.axes[i] for i in range(3))  # one task: one column of three panels
    assert strict.get_shared_x_axes().joined(strict, invalid)
    # the seed with invalid labels: strict 0, lenient 40, invalid 25% at its last point (superpos, dropout off)
    superpos_off = [line for line in invalid.get_lines() if line.get_linestyle() == "-"]
    assert max(max(line.get_ydata()) for line in superpos_off) == pytest.approx(12.5)  # 25% on one of two seeds
    assert max(max(line.get_ydata()) for line in lenient.get_lines()) > max(max(line.get_ydata()) for line in strict.get_lines()) - 1e-9
    # one colour per variant, dropout as line style: 4 settings -> 2 colours x 2 styles
    lines = strict.get_lines()
    assert len(lines) == 4
    assert len({matplotlib.colors.to_hex(line.get_color()) for line in lines}) == 2
    assert sorted(line.get_linestyle() for line in lines) == ["-", "-", "--", "--"]
    legend = figure.legends[0]
    assert {t.get_text() for t in legend.get_texts()} == {
        "Simple PT, dropout off", "Simple PT, dropout on", "SuperPos PT, dropout off", "SuperPos PT, dropout on",
        report.figures.DAGGER_LABEL}  # the † seed of superpos: its strict points are marked, and the legend says so


def test_factor_figures_show_three_rows_in_the_factors_order(store):
    for init, accuracy in (("labels", 30.0), ("uniform", 20.0), ("vocab", 40.0)):
        make_record(store, method="simple", method_config={"init": init}, metrics={"accuracy": accuracy})
    scores = report.task_scores(load_records(store))
    for lenient in (False, True):  # the notebook's convention does not change what the figure shows
        figure = report.plot_factor(report.task_scores(load_records(store), lenient=lenient), "init",
                                    xlabel="initialization", kind="bar")
        axes = _score_axes(figure)
        assert list(axes) == [quantity[3] for quantity in report.figures.AT_BEST_POINTS]
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend == ["uniform", "vocab", "labels"]  # meaning order, not alphabetical
    heights = [patch.get_height() for patch in axes["strict score (%)"][0].patches]
    assert heights == [20.0, 40.0, 30.0]
    for m in (64, 1, 16):
        make_record(store, method_config={"m": m, "weights_init": "normal"} if m == 1 else {"m": m})
    scores = report.task_scores(report.select(load_records(store), method="superpos"))
    figure = report.plot_factor(scores, "m", xlabel="m", log2=True)
    (container,) = _score_axes(figure)["strict score (%)"][0].containers  # one task: one error-bar line
    assert list(container.lines[0].get_xdata()) == [1, 16, 64]


def test_a_method_keeps_its_colour_whatever_else_a_figure_shows():
    from superpos.report.figures import line_styles

    alone = line_styles([("superpos", "superpos", False)], hue="variant")
    beside = line_styles([("ept", "ept (decomposition)", False), ("simple", "simple", False), ("ept", "ept", False),
                         ("superpos", "superpos (softmax)", False), ("superpos", "superpos", True)], hue="variant")
    assert alone[("superpos", "superpos", False)]["color"] == beside[("superpos", "superpos", True)]["color"]
    colours = [style["color"] for style in beside.values()]
    assert len(set(map(str, colours))) == len(colours)  # every variant its own colour


def test_standardized_figure_shows_strict_lenient_and_invalid(store):
    runs = _mixed_store(store)
    scores = report.task_scores(runs)
    _, overall = report.stability_table(scores)
    labels = [ax.get_ylabel() for ax in report.plot_standardized(overall, scores=scores).axes]
    assert len(labels) == 3 and labels[2].startswith("invalid labels (%)") and "lenient" in labels[1]
    assert len(report.plot_standardized(overall).axes) == 1


def test_best_point_figures_read_the_invalid_rate_where_the_lenient_score_is_read(store):
    """A run with an invalid label at every evaluation keeps its first point as strict-best: its invalid rate
    there (25 %) says nothing of where it ended. Bar figures read it at the lenient point (5 %), beside the
    lenient score read there."""
    record = make_record(store, method="simple", dagger=True, lenient={"accuracy": 60.0})
    later = {**record["best"]["dev"], "step": 8, "lenient_score": 70.0, "invalid_rate": 0.05, "n_invalid": 0}
    store.put({**record, "best_lenient": {"step": 8, "epoch": 2.0, "dev": later, "test": later}})
    scores = report.task_scores(load_records(store))
    assert scores["invalid_rate"].iloc[0] == 0.25 and scores["lenient_invalid_rate"].iloc[0] == 0.05
    figure = report.plot_factor(scores, "init", xlabel="initialization", kind="bar")
    invalid = _score_axes(figure)[report.figures.AT_BEST_POINTS[2][3]][0]
    assert [patch.get_height() for patch in invalid.patches] == [pytest.approx(5.0)]


def test_loss_figure_has_one_line_per_setting(store):
    runs = _mixed_store(store)
    losses = report.loss_curves(runs)
    figure = report.plot_losses(losses, hue="setting")
    (ax,) = [ax for ax in figure.axes if ax.get_visible()]
    assert len(ax.get_lines()) == 4  # simple/superpos x dropout off/on, seeds averaged
    assert ax.get_yscale() == "log" and ax.get_xlabel().startswith("training step")
    by_style = {line.get_linestyle() for line in ax.get_lines()}
    assert by_style == {"-", "--"}
    figure = report.plot_losses(report.loss_curves(report.select(runs, dropout=False)))
    assert len(figure.axes[0].get_lines()) == 2
    assert report.plot_losses(losses.iloc[0:0]).axes


def test_published_figures_are_byte_identical_and_carry_their_caption(store, tmp_path, monkeypatch):
    monkeypatch.setenv("SUPERPOS_RESULTS", str(tmp_path / "results"))
    runs = _mixed_store(store)
    caption = report.caption("smoke", runs, "Curves")
    folder = tmp_path / "results" / "smoke" / "figures"
    text = report.publish_figure(report.plot_curves(report.learning_curves(runs)), "curves", "smoke", title="Curves",
                                 caption=caption).caption  # the caption and what the marks it uses mean
    assert text.startswith(caption) and report.figures.MARK_CROSS in text
    first = {suffix: (folder / f"curves_smoke.{suffix}").read_bytes() for suffix in ("png", "svg", "md")}
    matplotlib.rcParams["svg.hashsalt"] = None  # a notebook may reset rcParams: the files must not depend on it
    try:
        figure = report.plot_curves(report.learning_curves(runs))
        report.publish_figure(figure, "curves", "smoke", title="Curves", caption=caption)
        again = {suffix: (folder / f"curves_smoke.{suffix}").read_bytes() for suffix in ("png", "svg", "md")}
        assert again == first  # a fresh figure from the same records
        report.save_figure(figure, tmp_path / "twice.png", title="Curves", caption=text)
        report.save_figure(figure, tmp_path / "twice.svg", title="Curves", caption=text)
        assert (tmp_path / "twice.png").read_bytes() == first["png"]  # the same figure saved again
        assert (tmp_path / "twice.svg").read_bytes() == first["svg"]
    finally:
        matplotlib.rcParams["svg.hashsalt"] = "superpos"
    with Image.open(folder / "curves_smoke.png") as image:
        assert image.text["Title"] == "Curves" and image.text["Description"] == text
        assert "Software" not in image.text
    svg = ElementTree.fromstring(first["svg"])
    texts = [element.text for element in svg.iter() if element.tag.endswith("description") or element.tag.endswith("title")]
    assert text in texts
    assert b"<dc:date>" not in first["svg"]


# ----------------------------------------------------------------------------- what a reader must be able to trust
def _data_lines(ax):
    """The lines of a panel that draw a setting (not the marks on them)."""
    return [line for line in ax.get_lines() if line.get_linestyle() not in ("None", "none", " ", "")]


def _legend_colours(figure) -> dict[str, str]:
    """Legend label -> colour (#rrggbb) of a figure's lines or bars."""
    colours = {}
    for legend in figure.legends:
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            colour = handle.get_color() if isinstance(handle, matplotlib.lines.Line2D) else handle.get_facecolor()
            colours[text.get_text()] = matplotlib.colors.to_hex(colour)
    return colours


def _variant_store(store):
    """Every kind of variant the notebooks compare, on one task: SuperPos linear and softmax from several p′
    starts, m values, EPT's stages, simple prompt tuning's initializations and lengths."""
    configs = [("superpos", {}), ("superpos", {"softmax": True}), ("superpos", {"m": 16}), ("superpos", {"m": 256}),
               *(("superpos", {"weights_init": start}) for start in ("normal", "uniform")),
               *(("superpos", {"softmax": True, "weights_init": start}) for start in ("one_hot", "normal", "uniform")),
               ("ept", {}), ("ept", {"fusion": False, "projection": False}), ("ept", {"projection": False}),
               ("simple", {}), ("simple", {"init": "uniform"}), ("simple", {"init": "labels"}),
               ("simple", {"n_prompts": 1}), ("simple", {"n_prompts": 20}), ("residual", {})]
    for method, config in configs:
        make_record(store, method=method, method_config=config, history_scores=(10.0, 30.0))
    return load_records(store)


def test_each_variant_keeps_one_colour_across_figures(store):
    """Softmax SuperPos is pink in its curves and in its bars; EPT's stages, p′ starts, m values, initializations
    and prompt lengths each keep one colour whatever else a figure shows, and no two settings of a figure share one."""
    runs = report.with_variants(_variant_store(store))
    scores = report.task_scores(runs)
    figures = {
        "softmax curves": report.plot_curves(report.learning_curves(report.select(runs, method="superpos"))),
        "table 3 bars": report.plot_factor(report.select(scores, variant=["superpos", "superpos (softmax)"]), "variant",
                                           xlabel="weights", kind="bar"),
        "ept bars": report.plot_factor(report.select(scores, variant=["superpos", "ept (decomposition)", "ept (+ fusion)",
                                                                      "ept"]), "variant", xlabel="method", kind="bar"),
        "ept curves": report.plot_curves(report.learning_curves(report.select(runs, method=["ept", "superpos"]))),
        "methods": report.plot_curves(report.learning_curves(
            report.select(runs, variant=["simple", "residual", "superpos", "ept"]))),
        "simple variants": report.plot_losses(report.loss_curves(report.select(runs, method="simple"))),
    }
    seen: dict[str, dict[str, str]] = {}
    for name, figure in figures.items():
        colours = _legend_colours(figure)
        settings = {label: colour for label, colour in colours.items() if label != report.figures.DAGGER_LABEL}
        assert len(set(settings.values())) == len(settings), (name, settings)  # one colour per setting in a figure
        for label, colour in settings.items():
            seen.setdefault(label, {})[name] = colour
    # the bar legends name the factor's values: variants by their label, as the curves do
    for label, where in seen.items():
        assert len(set(where.values())) == 1, (label, where)  # one colour per setting across figures
    assert seen["SuperPos PT (softmax)"].keys() >= {"softmax curves", "table 3 bars"}
    assert seen["EPT (decomposition)"].keys() >= {"ept bars", "ept curves"}
    assert seen["EPT (+ fusion)"]["ept bars"] != seen["EPT (decomposition)"]["ept bars"]
    # a setting's colour is its own, not its place among the settings of a figure
    from superpos.report.settings import Variant, setting_style

    for method, config in (("superpos", {"softmax": True}), ("superpos", {"m": 16}), ("simple", {"init": "labels"}),
                           ("simple", {"n_prompts": 20}), ("ept", {"projection": False}),
                           ("superpos", {"weights_init": "one_hot", "softmax": True})):
        alone = setting_style(Variant.of(method, config))
        crowded = report.figures.line_styles(
            [(m, Variant.of(m, c).label, False) for m, c in ((method, config), ("superpos", {}), ("ept", {}),
                                                            ("superpos", {"weights_init": "normal"}))], "variant",
            {(m, Variant.of(m, c).label): Variant.of(m, c) for m, c in ((method, config), ("superpos", {}), ("ept", {}),
                                                                         ("superpos", {"weights_init": "normal"}))})
        assert crowded[(method, Variant.of(method, config).label, False)]["color"] == alone[0], (method, config)
    assert setting_style(Variant.of("superpos", {"softmax": True}))[0] != setting_style(
        Variant.of("superpos", {"weights_init": "one_hot", "softmax": True}))[0]


def test_no_panel_holds_more_than_five_lines(store):
    runs = _variant_store(store)
    for method in ("simple", "superpos"):  # dropout on for two methods: with the rest, more than five settings
        make_record(store, method=method, dropout=True, history_scores=(0.0, 0.0))
    runs = load_records(store)
    superpos = report.select(runs, method="superpos", dropout=False)  # 9 settings: linear and softmax, m, p′ starts
    figure = report.plot_curves(report.learning_curves(superpos))
    panels = [ax for ax in figure.axes if ax.get_visible()]
    assert max(len(_data_lines(ax)) for ax in panels) <= 5 and sum(len(_data_lines(ax)) for ax in panels) == 9 * 3
    # the softmax settings share their panels: no panel mixes linear and softmax weights when it need not
    titles = [ax.get_title(loc="left") for ax in panels if ax.get_title(loc="left")]
    assert len(titles) == 2 and any("(softmax)" in t for t in titles) and not all("(softmax)" in t for t in titles)
    for frame in (runs, report.select(runs, method=["simple", "superpos"])):
        for figure in (report.plot_curves(report.learning_curves(frame), hue="setting"),
                       report.plot_losses(report.loss_curves(frame), hue="setting")):
            assert max(len(_data_lines(ax)) for ax in figure.axes) <= 5
    lengths = report.plot_factor(report.task_scores(report.select(runs, method="simple", dropout=False)), "n_prompts",
                                 xlabel="n", log2=True, where={"init": "vocab"})
    assert max(len(_data_lines(ax)) for ax in lengths.axes) <= 5


def test_a_strict_mean_that_counts_a_dagger_seed_is_marked(store):
    """Two seeds: one learns (30 at its last point), one emits invalid labels there (strict 0): the mean (15) is
    drawn with an × on that point only; the lenient panel beside it shows both seeds' real scores."""
    make_record(store, seed=0, history_scores=(10.0, 30.0))
    record = make_record(store, seed=1, history_scores=(10.0, 30.0), lenient={"accuracy": 40.0})
    history = [dict(point) for point in record["history"]]
    history[1].update(score=0.0, dagger=True)
    history[0].update(dagger=False, lenient_score=10.0, invalid_rate=0.0)
    store.put({**record, "history": history})
    curves = report.learning_curves(load_records(store))
    figure = report.plot_curves(curves)
    strict, lenient = figure.axes[0], figure.axes[1]
    (crosses,) = strict.collections[-1:]
    assert [list(point) for point in crosses.get_offsets()] == [[4.0, 15.0]]
    assert report.figures.MARK_CROSS in figure.marks and report.figures.MARK_BANDS in figure.marks
    assert report.figures.DAGGER_LABEL in {t.get_text() for t in figure.legends[0].get_texts()}
    # without a † seed: no ×, and no caption words about it (one seed: no band either)
    clean = report.plot_curves(curves[curves["seed"] == 0])
    assert clean.marks == [] and not clean.axes[0].collections


def test_overlapping_lines_stay_visible(store):
    """Simple and SuperPos PT with dropout on both sit at 0 the whole run: the one drawn first is wider, so it shows
    at the edges of the other."""
    for method in ("simple", "superpos"):
        make_record(store, method=method, dropout=True, history_scores=(0.0, 0.0))
        make_record(store, method=method, history_scores=(10.0 if method == "simple" else 30.0, 50.0))
    figure = report.plot_curves(report.learning_curves(load_records(store)), hue="setting")
    dashed = [line for line in _data_lines(figure.axes[0]) if line.get_linestyle() == "--"]
    solid = [line for line in _data_lines(figure.axes[0]) if line.get_linestyle() == "-"]
    assert len(dashed) == 2 and dashed[0].get_linewidth() > dashed[1].get_linewidth()
    assert dashed[0].get_color() != dashed[1].get_color()
    assert len({line.get_linewidth() for line in solid}) == 1  # lines apart keep their width


def test_a_figure_with_nothing_to_compare_writes_no_file(store, tmp_path, monkeypatch):
    monkeypatch.setenv("SUPERPOS_RESULTS", str(tmp_path / "results"))
    make_record(store, task="bbc-topic", method_config={"m": 3, "n_prompts": 2},
                analysis={"weights": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], "token_ids": [5, 6, 7]})
    runs = load_records(store)
    similarity = report.weight_similarity(runs)  # one task: nothing to compare
    folder = tmp_path / "results" / "smoke" / "figures"
    folder.mkdir(parents=True)
    (folder / "fig2d_smoke.png").write_bytes(b"an earlier render")
    shown = report.publish_figure(report.plot_similarity(similarity), "fig2d", "smoke", title="Figure 2(d)",
                                  caption=report.caption("smoke", runs, "Cosine similarity"))
    assert not any(folder.iterdir())  # nothing written, the earlier render removed
    assert shown.files == [] and repr(shown).count("\n") == 0 and "Not drawn: " in repr(shown)
    assert set(shown._repr_mimebundle_()) == {"text/plain"}
    assert not (tmp_path / "results" / "smoke" / "tables").exists()  # and no provenance for a figure not drawn


def test_captions_stay_short_and_say_only_the_marks_they_use(store, tmp_path, monkeypatch):
    """At most 80 words, whatever the runs; the provenance once per profile, beside the tables; † and ± explained
    only where a table uses them; mixed code versions, precisions or machines still warned of."""
    monkeypatch.setenv("SUPERPOS_RESULTS", str(tmp_path / "results"))
    runs = _variant_store(store)
    longest = "Figure 2(b): validation score (%) against training steps, dropout off, every method of the paper's Table 1"
    text = report.caption("smoke", runs, longest)
    assert len(text.split()) <= report.output.CAPTION_WORDS - 25
    mixed = runs.assign(code_version=[1, 2] * (len(runs) // 2) + [1] * (len(runs) % 2),
                        precision=["bf16", "fp32"] * (len(runs) // 2) + ["bf16"] * (len(runs) % 2),
                        machine=[f"a machine with a long description of its kernels, number {i % 3}" for i in range(len(runs))])
    warned = report.caption("smoke", mixed, longest)
    assert warned.count("Warning:") == 3 and "mix 2 code versions" in warned and "mix 3 machine kinds" in warned
    table, _ = report.method_table(report.task_scores(runs))
    marked = report.publish_table(table.assign(Extra="0.0 †"), "t", "smoke", title="T", caption=text)
    assert "†: a strict score of 0" in marked.caption and "±" not in marked.caption
    shown = report.publish_table(table, "t", "smoke", title="T", caption=warned)
    assert len(shown.caption.split()) <= report.output.CAPTION_WORDS
    assert "†" not in shown.caption and "±" not in shown.caption  # no cell carries a mark
    provenance = (tmp_path / "results" / "smoke" / "tables" / "PROVENANCE_smoke.md").read_text()
    assert "machine kinds" not in provenance and "a machine with a long description" in provenance
    assert f"**Runs:** {len(runs)}" in provenance  # the runs of every caption published, each once
    figure = report.plot_curves(report.learning_curves(report.select(runs, method="superpos")))
    drawn = report.publish_figure(figure, "c", "smoke", title="C", caption=warned)
    assert len(drawn.caption.split()) <= report.output.CAPTION_WORDS and "±" not in drawn.caption  # one seed: no bands


# ----------------------------------------------------------------------------- results at a glance
def test_notebook_parameters_name_what_each_notebook_varies():
    import json

    from superpos.paths import NOTEBOOKS_DIR

    expected = {"02_dropout_ablation": "dropout_methods", "03_m_ablation": "m_values", "04_softmax_variant": "weights_inits",
                "06_prompt_tuning_baselines": "prompt_lengths", "07_ept": "ept_stages"}
    for name, factor in expected.items():
        cells = json.loads((NOTEBOOKS_DIR / f"{name}.ipynb").read_text())["cells"]
        parameters = next("".join(c["source"]) for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
        assert f"{factor}: Optional[list[" in parameters, name
        grid_cell = next("".join(c["source"]) for c in cells if "notebook_grid(" in "".join(c["source"]))
        assert f"{factor}={factor}" in grid_cell, name
    grid = expand(profiles.notebook_grid("03", "quick", m_values=[512]))
    assert [c.method_config["m"] for c in grid] == [512]
    stages = expand(profiles.notebook_grid("07", "quick", ept_stages=["decomposition"]))
    assert sorted(c.method for c in stages) == ["ept", "superpos"]
    with pytest.raises(ValueError, match="ept_stages: unknown stage"):
        profiles.notebook_grid("07", "quick", ept_stages=["everything"])
    with pytest.raises(ValueError, match="m_values: must be a non-empty list"):
        profiles.notebook_grid("03", "quick", m_values=512)


def test_settings_are_named_and_ordered_from_their_typed_configs():
    from superpos.report.settings import Variant

    settings = [Variant.of("ept", {}), Variant.of("superpos", {"softmax": True, "weights_init": "one_hot"}),
                Variant.of("superpos", {"m": 16}), Variant.of("simple", {"init": "labels"}),
                Variant.of("superpos", {"weights_init": "uniform"}), Variant.of("ept", {"fusion": False, "projection": False}),
                Variant.of("superpos", {"m": 256}), Variant.of("superpos", {"weights_init": "auto"}),
                Variant.of("simple", {"init": "uniform"}), Variant.of("ept", {"projection": False}),
                Variant.of("superpos", {"softmax": True}), Variant.of("superpos", {"weights_init": "normal"})]
    ordered = [v.label for v in sorted(settings, key=Variant.sort_key)]
    assert ordered == ["simple init=uniform", "simple init=labels", "superpos", "superpos m=16", "superpos m=256",
                       "superpos p′ init=normal", "superpos p′ init=uniform", "superpos (softmax)",
                       "superpos (softmax) p′ init=one_hot", "ept (decomposition)", "ept (+ fusion)", "ept"]
    # m orders numerically (16 before 256; a label sort would put "256" after "16" only by luck) and
    # ATTEMPT's sources are not a departure from its defaults
    assert Variant.of("attempt", {"sources": ["abc"]}).label == "attempt"


def test_gate_runs_take_each_gate_tasks_own_seeds_and_train_before_the_other_runs():
    cpu = profiles.get_profile("cpu")
    gate = profiles.gate_configs(cpu)
    seeds = {task: sorted(c.seed for c in gate if c.task == task) for task in {c.task for c in gate}}
    assert seeds["bbc-restate"] == [0, 1, 2, 3, 4]  # its own gate_task_seeds
    assert seeds["bbc-next"] == [0, 1, 2]  # gate_seeds
    assert all(seeds[task] == [0, 1, 2, 3, 4] for task in cpu.tasks)  # notebook 01's runs: the profile's seeds
    assert {c.method for c in gate} == {"simple"} and not any(c.dropout for c in gate)
    configs = profiles.profile_configs(cpu)
    ordered = [c.run_hash() for c in configs]
    first = {c.run_hash() for c in gate} | {s for c in configs for s in c.sources}
    assert sorted(ordered.index(h) for h in first) == list(range(len(first)))  # ATTEMPT's sources and the gate
    # a profile without a gate has no gate grids
    assert profiles.gate_grids("quick") == []
