"""The 13 tasks through formatting, loading and scoring on rows the tests write; the offline BBC suite.

Nothing is downloaded: rows are written to ``tmp_path`` in the hub's schema (jsonl / parquet / csv) and as
the official release files (GLUE TSV, SuperGLUE JSONL).
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import superpos.tasks.base as base
from superpos.tasks import (PAPER_TASKS, TASKS, Splits, TaskError, canonical_name, describe_tasks, get_task, take)
from superpos.tasks.loading import DATA_ENV

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    for k, v in OFFLINE.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv(DATA_ENV, raising=False)


# ----------------------------------------------------------------------------- rows in the hub's schema

WORDS = ["river", "bank", "money", "cat", "dog", "house", "tree", "light", "stone", "road"]


def hub_row(task: str, i: int) -> dict:
    """Row ``i`` of ``task`` exactly as ``nyu-mll/glue`` / ``aps/super_glue`` serve it."""
    w = WORDS[i % len(WORDS)]
    s1, s2 = f"The {w} is near the house number {i}.", f"A {w} stands by house {i}, they say."
    if task == "qqp":
        return {"question1": f"How big is a {w}?", "question2": f"What size is a {w} {i}?", "label": i % 2, "idx": i}
    if task == "qnli":
        return {"question": f"Where is the {w}?", "sentence": s1, "label": i % 2, "idx": i}
    if task in ("mnli", "rte", "cb"):
        return {"premise": s1, "hypothesis": s2, "label": i % (3 if task != "rte" else 2), "idx": i}
    if task in ("sst2", "cola"):
        return {"sentence": s1, "label": i % 2, "idx": i}
    if task == "stsb":
        return {"sentence1": s1, "sentence2": s2, "label": round((i * 0.73) % 5.0, 2), "idx": i}
    if task == "mrpc":
        return {"sentence1": s1, "sentence2": s2, "label": i % 2, "idx": i}
    if task == "multirc":  # 3 answer options per question, 2 questions per paragraph
        q, a = divmod(i, 3)
        p, pw = q // 2, WORDS[(q // 2) % len(WORDS)]
        paragraph = f"<b>Sent 1: </b>The {pw} is near the house number {p}.<br><b>Sent 2: </b>A {pw} stands by house {p}.<br>"
        return {"paragraph": paragraph, "question": f"What is near house {q}?", "answer": f"the {WORDS[a]}",
                "label": int(a == q % 3), "idx": {"paragraph": p, "question": q, "answer": a}}
    if task == "copa":
        return {"premise": s1, "choice1": "It rained.", "choice2": f"The {w} fell.",
                "question": ("cause", "effect")[i % 2], "label": (i // 2) % 2, "idx": i}
    if task == "wic":
        return {"word": w, "sentence1": s1, "sentence2": s2, "start1": 4, "start2": 2, "end1": 4 + len(w),
                "end2": 2 + len(w), "label": i % 2, "idx": i}
    if task == "boolq":
        return {"question": f"is the {w} near the house", "passage": s1 + " " + s2, "label": i % 2, "idx": i}
    raise KeyError(task)


def rows_for(task: str, n: int, offset: int = 0) -> list[dict]:
    return [hub_row(task, offset + i) for i in range(n)]


def write_hub(folder: Path, rows: list[dict], fmt: str, stem: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    elif fmt == "csv":
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def make_hub_dir(root: Path, task: str, fmt: str = "jsonl", n_train: int = 12, n_val: int = 12) -> Path:
    folder = root / get_task(task).hub_config
    write_hub(folder, rows_for(task, n_train), fmt, "train")
    write_hub(folder, rows_for(task, n_val, offset=1000), fmt, "validation_matched" if task == "mnli" else "validation")
    return root


# ----------------------------------------------------------------------------- the 13 tasks from hub-schema files

EXPECTED_INPUT = {
    "rte": "rte premise: The river is near the house number 0. hypothesis: A river stands by house 0, they say.",
    "copa": "copa premise: The river is near the house number 0. question: what was the cause? "
            "choice1: It rained. choice2: The river fell.",
    "multirc": "multirc question: What is near house 0? answer: the river paragraph: The river is near the house "
               "number 0. A river stands by house 0.",
    "wic": "wic word: river sentence1: The river is near the house number 0. sentence2: A river stands by house 0, "
           "they say.",
    "boolq": "boolq question: is the river near the house passage: The river is near the house number 0. A river "
             "stands by house 0, they say.",
    "sst2": "sst2 sentence: The river is near the house number 0.",
    "qqp": "qqp question1: How big is a river? question2: What size is a river 0?",
}


def test_thirteen_paper_tasks_registered():
    assert len(PAPER_TASKS) == 13 and all(t in TASKS for t in PAPER_TASKS)
    assert [get_task(t).display_name for t in PAPER_TASKS] == [
        "QQP", "QNLI", "MNLI", "SST-2", "STS-B", "MRPC", "CoLA", "MultiRC", "RTE", "CB", "COPA", "WiC", "BoolQ"]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
@pytest.mark.parametrize("name", PAPER_TASKS)
def test_task_from_hub_schema_files(tmp_path, name, fmt):
    make_hub_dir(tmp_path, name, fmt)
    task = get_task(name, data_dir=str(tmp_path))
    assert task.source("train").endswith(f"train.{fmt}")
    splits = task.splits("paper")
    assert splits.sizes() == {"train": 12, "dev": 12, "test": 12} and splits.dev_is_test
    ex = splits.train[0]
    assert ex.input_text.startswith(task.prefix + " ")
    if name in EXPECTED_INPUT:
        assert ex.input_text == EXPECTED_INPUT[name]
    assert len({e.uid for e in splits.train}) == 12
    for e in splits.train + splits.test:
        assert e.target_text in task.all_targets
        assert task.parse(e.target_text) is not None
    if name == "multirc":
        assert ex.group == "0-0" and len({e.group for e in splits.train}) == 4
    # gold targets as predictions: every metric at its best (STS-B: rounding to 0.2 costs a little)
    score = task.score([e.target_text for e in splits.test], splits.test)
    assert not score.dagger and score.invalid_rate == 0 and set(score.metrics) == set(task.metric_names)
    assert score.score > (97.0 if task.is_regression else 99.999)
    # garbage: strict zero with a dagger, lenient computed
    bad = task.score(["?"] * len(splits.test), splits.test)
    assert bad.dagger and bad.score == 0.0 and bad.invalid_rate == 1.0 and set(bad.lenient) == set(task.metric_names)


@pytest.mark.parametrize("name", [t for t in PAPER_TASKS if t != "multirc"])
def test_task_from_hub_schema_csv(tmp_path, name):
    make_hub_dir(tmp_path, name, "csv", n_train=6, n_val=6)
    ref_root = make_hub_dir(tmp_path / "ref", name, "jsonl", n_train=6, n_val=6)
    ours, ref = get_task(name, data_dir=tmp_path).examples("train"), get_task(name, data_dir=ref_root).examples("train")
    assert ours == ref


# ----------------------------------------------------------------------------- official release files

def write_tsv(path: Path, header: list[str] | None, lines: list[list], *, bom: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = ("\t".join(header) + "\n" if header else "") + "".join("\t".join(map(str, l)) + "\n" for l in lines)
    path.write_text(("\ufeff" if bom else "") + text, encoding="utf-8")


def glue_release(root: Path, name: str, rows: list[dict], split: str) -> None:
    """Write ``rows`` (hub schema) as the GLUE release TSV of ``name``."""
    d = root / get_task(name).official_dir
    file = {"train": "train.tsv", "validation": "dev_matched.tsv" if name == "mnli" else "dev.tsv"}[split]
    names = get_task(name).label_names
    if name == "sst2":
        write_tsv(d / file, ["sentence", "label"], [[r["sentence"], r["label"]] for r in rows])
    elif name == "cola":  # no header
        write_tsv(d / file, None, [["gj04", r["label"], "*" if not r["label"] else "", r["sentence"]] for r in rows])
    elif name == "mrpc":  # the release's MRPC files begin with a UTF-8 byte-order mark
        write_tsv(d / file, ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                  [[r["label"], 100 + i, 200 + i, r["sentence1"], r["sentence2"]] for i, r in enumerate(rows)], bom=True)
    elif name == "qqp":
        write_tsv(d / file, ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
                  [[i, 2 * i, 2 * i + 1, r["question1"], r["question2"], r["label"]] for i, r in enumerate(rows)])
    elif name == "stsb":
        write_tsv(d / file, ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1",
                             "sentence2", "score"],
                  [[i, "main-news", "f", "2012", i, "none", "none", r["sentence1"], r["sentence2"], r["label"]]
                   for i, r in enumerate(rows)])
    elif name == "mnli":
        extra = ["label1"] if split == "train" else ["label1", "label2", "label3", "label4", "label5"]
        header = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                  "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", *extra, "gold_label"]
        write_tsv(d / file, header, [[i, i, f"{i}e", "fiction", "( x )", "( y )", "(ROOT x)", "(ROOT y)",
                                      r["premise"], r["hypothesis"], *[names[r["label"]]] * len(extra),
                                      names[r["label"]]] for i, r in enumerate(rows)])
    elif name == "qnli":
        write_tsv(d / file, ["index", "question", "sentence", "label"],
                  [[i, r["question"], r["sentence"], names[r["label"]]] for i, r in enumerate(rows)])


def superglue_release(root: Path, name: str, rows: list[dict], split: str) -> None:
    """Write ``rows`` (hub schema) as the SuperGLUE release JSONL of ``name`` (string / boolean labels)."""
    task = get_task(name)
    path = root / task.official_dir / {"train": "train.jsonl", "validation": "val.jsonl"}[split]
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    if name == "multirc":  # nested: passage -> questions -> answers
        passages: dict[int, dict] = {}
        for r in rows:
            p = passages.setdefault(r["idx"]["paragraph"], {"idx": r["idx"]["paragraph"], "version": 1.1,
                                                           "passage": {"text": r["paragraph"], "questions": []}})
            qs = p["passage"]["questions"]
            if not qs or qs[-1]["idx"] != r["idx"]["question"]:
                qs.append({"question": r["question"], "answers": [], "idx": r["idx"]["question"]})
            qs[-1]["answers"].append({"text": r["answer"], "idx": r["idx"]["answer"], "label": r["label"]})
        out = list(passages.values())
    else:
        for r in rows:
            r = dict(r)
            if name in ("rte", "cb"):
                r["label"] = task.label_names[r["label"]]
            elif name in ("wic", "boolq"):
                r["label"] = bool(r["label"])
            out.append(r)
    path.write_text("".join(json.dumps(r) + "\n" for r in out))


RELEASE = [("glue", n) for n in ("qqp", "qnli", "mnli", "sst2", "stsb", "mrpc", "cola")] + \
          [("super_glue", n) for n in ("multirc", "rte", "cb", "copa", "wic", "boolq")]


@pytest.mark.parametrize("bench,name", RELEASE)
def test_official_release_files_match_hub_schema(tmp_path, bench, name):
    writer = glue_release if bench == "glue" else superglue_release
    release = tmp_path / "release" / bench.upper()  # nested under <data_dir>/<GLUE|SUPER_GLUE>/<Task>/
    train, val = rows_for(name, 9), rows_for(name, 9, offset=500)
    writer(release, name, train, "train")
    writer(release, name, val, "validation")
    hub = make_hub_dir(tmp_path / "hub", name, n_train=9)
    write_hub(hub / get_task(name).hub_config, val, "jsonl", "validation_matched" if name == "mnli" else "validation")
    ours = get_task(name, data_dir=tmp_path / "release")
    ref = get_task(name, data_dir=hub)
    assert ours.local_file("train").suffix == (".tsv" if bench == "glue" else ".jsonl")
    for split in ("train", "validation"):
        a, b = ours.examples(split), ref.examples(split)
        assert [(e.input_text, e.target_text, e.label, e.group) for e in a] == \
               [(e.input_text, e.target_text, e.label, e.group) for e in b]


def test_tsv_quotes_are_literal(tmp_path):
    # the GLUE TSVs are not CSV-quoted: a lone double quote must not swallow the following lines
    write_tsv(tmp_path / "SST-2" / "train.tsv", ["sentence", "label"],
              [['he said " hello', 1], ["it 's fine", 0], ['"quoted" words', 1]])
    write_tsv(tmp_path / "SST-2" / "dev.tsv", ["sentence", "label"], [["ok", 1]])
    ex = get_task("sst2", data_dir=tmp_path).examples("train")
    assert [e.input_text for e in ex] == ['sst2 sentence: he said " hello', "sst2 sentence: it 's fine",
                                          'sst2 sentence: "quoted" words']


def test_release_file_with_byte_order_mark_keeps_every_label(tmp_path):
    rows = rows_for("mrpc", 6)
    glue_release(tmp_path, "mrpc", rows, "train")
    assert (tmp_path / "MRPC" / "train.tsv").read_bytes().startswith(b"\xef\xbb\xbf")
    examples = get_task("mrpc", data_dir=tmp_path).examples("train")
    assert [e.label for e in examples] == [r["label"] for r in rows] and len(examples) == 6


def test_tsv_lines_with_another_field_count_are_dropped_and_counted(tmp_path, capsys):
    write_tsv(tmp_path / "SST-2" / "train.tsv", ["sentence", "label"],
              [["fine", 1], ["a stray\ttab", 0], ["cut"], ["good", 0]])
    examples = get_task("sst2", data_dir=tmp_path).examples("train")
    assert [e.input_text for e in examples] == ["sst2 sentence: fine", "sst2 sentence: good"]
    err = capsys.readouterr().err
    assert "dropped 2 of 4 lines" in err and "line 3, 4" in err and len(err.strip().splitlines()) == 1


def test_tsv_without_the_label_column_is_one_line(tmp_path):
    write_tsv(tmp_path / "MRPC" / "train.tsv", ["Qual", "#1 ID", "#2 ID", "#1 String", "#2 String"], [[1, 1, 2, "a", "b"]])
    with pytest.raises(TaskError, match="no column 'Quality'"):
        get_task("mrpc", data_dir=tmp_path).examples("train")


def test_data_dir_from_environment_and_aliases(tmp_path, monkeypatch):
    make_hub_dir(tmp_path, "sst2")
    (tmp_path / "sst2").rename(tmp_path / "SST-2")
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    for alias in ("sst2", "SST-2", "sst_2"):
        assert canonical_name(alias) == "sst2"
        assert len(get_task(alias).examples("train")) == 12
    with pytest.raises(TaskError, match="unknown task"):
        get_task("sst3")


# ----------------------------------------------------------------------------- no data: one line, fast

def test_missing_data_offline_is_one_fast_line(tmp_path):
    start = time.perf_counter()
    with pytest.raises(TaskError) as err:
        get_task("rte", data_dir=tmp_path).splits()
    message = str(err.value)
    assert time.perf_counter() - start < 10
    assert "\n" not in message and "HF_HUB_OFFLINE" in message and "RTE/" in message and "bbc-" in message


def test_missing_data_without_network_fails_fast(tmp_path, monkeypatch):
    for k in OFFLINE:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: refused at once
    start = time.perf_counter()
    with pytest.raises(TaskError, match="unreachable") as err:
        get_task("sst2", data_dir=tmp_path).splits()
    assert time.perf_counter() - start < 5 and "\n" not in str(err.value)


def test_hub_is_called_with_configured_id(tmp_path, monkeypatch):
    calls = []

    class FakeDataset:
        def __init__(self, rows):
            self.rows = rows

        def to_list(self):
            return self.rows

    def fake_load_dataset(path, name, split):
        calls.append((path, name, split))
        return FakeDataset(rows_for("mnli", 4))

    import datasets

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    task = get_task("mnli", hub_id="my-org/glue-mirror")
    assert len(task.splits().test) == 4
    assert calls == [("my-org/glue-mirror", "mnli", "train"), ("my-org/glue-mirror", "mnli", "validation_matched")]


# ----------------------------------------------------------------------------- protocols

def test_heldout_small_task_halves_validation(tmp_path):
    make_hub_dir(tmp_path, "rte", n_train=20, n_val=21)
    task = get_task("rte", data_dir=tmp_path)
    paper, held = task.splits("paper", seed=0), task.splits("heldout", seed=0)
    assert paper.dev is paper.test and not held.dev_is_test
    assert len(held.dev) == 10 and len(held.test) == 11 and held.train == paper.train
    assert {e.uid for e in held.dev} | {e.uid for e in held.test} == {e.uid for e in paper.test}
    assert not {e.uid for e in held.dev} & {e.uid for e in held.test}
    assert [e.uid for e in task.splits("heldout", seed=0).dev] == [e.uid for e in held.dev]  # seeded
    assert [e.uid for e in task.splits("heldout", seed=1).dev] != [e.uid for e in held.dev]
    with pytest.raises(TaskError):
        task.splits("test-on-train")


def test_heldout_multirc_never_splits_a_question(tmp_path):
    make_hub_dir(tmp_path, "multirc", n_train=30, n_val=60)
    held = get_task("multirc", data_dir=tmp_path).splits("heldout", seed=3)
    dev_groups, test_groups = {e.group for e in held.dev}, {e.group for e in held.test}
    assert dev_groups and test_groups and not dev_groups & test_groups
    assert len(held.dev) + len(held.test) == 60


def test_heldout_large_task_holds_out_training_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(base, "SMALL_TRAIN", 10)
    monkeypatch.setattr(base, "HELDOUT_DEV", 5)
    make_hub_dir(tmp_path, "multirc", n_train=30, n_val=12)
    task = get_task("multirc", data_dir=tmp_path)
    held = task.splits("heldout", seed=0)
    assert held.test == task.examples("validation")
    assert 5 <= len(held.dev) <= 7 and len(held.dev) + len(held.train) == 30  # whole questions of 3 options
    assert not {e.group for e in held.dev} & {e.group for e in held.train}


def test_limit_keeps_groups_and_identity(tmp_path):
    make_hub_dir(tmp_path, "multirc", n_train=30, n_val=30)
    splits = get_task("multirc", data_dir=tmp_path).splits("paper")
    small = splits.limit(train_limit=7, eval_limit=4, seed=0)
    assert small.dev is small.test and len(small.train) == 9 and len(small.test) == 6  # whole questions
    assert all(sum(e.group == g for e in small.train) == 3 for g in {e.group for e in small.train})
    assert take(splits.train, None) is splits.train


# ----------------------------------------------------------------------------- tokenization (no download)

def test_targets_tokenize_short_with_byt5():
    transformers = pytest.importorskip("transformers")
    tok = transformers.ByT5Tokenizer()
    for name in TASKS:
        task = get_task(name)
        assert task.max_target_words == 1
        lengths = [len(tok(t).input_ids) for t in task.all_targets]
        longest = max(len(t.encode()) for t in task.all_targets)
        assert max(lengths) == longest + 1  # bytes + </s>
        assert len(set(task.all_targets)) == len(task.all_targets)


def test_inputs_tokenize(tmp_path):
    transformers = pytest.importorskip("transformers")
    tok = transformers.ByT5Tokenizer()
    for name in PAPER_TASKS:
        make_hub_dir(tmp_path, name, n_train=3, n_val=3)
        ex = get_task(name, data_dir=tmp_path).examples("train")
        batch = tok([e.input_text for e in ex])
        assert all(len(ids) > 10 for ids in batch.input_ids)


# ----------------------------------------------------------------------------- listing, import cost

def test_describe_tasks_lists_everything():
    rows = describe_tasks()
    assert [r["name"] for r in rows] == list(TASKS) and len(rows) == 13 + 9  # GLUE/SuperGLUE + the BBC suite
    assert all(r["name"].startswith("bbc-") == (r["benchmark"] == "bbc") for r in rows)
    assert {"name", "display", "benchmark", "metrics", "targets", "description"} <= set(rows[0])


def test_import_is_light():
    code = ("import sys, superpos.tasks; bad = [m for m in ('torch', 'transformers', 'datasets', 'sklearn', "
            "'scipy') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- offline BBC suite

BBC = [t for t in TASKS if t.startswith("bbc-")]


def test_bbc_suite_names_and_types():
    assert BBC == ["bbc-topic", "bbc-same-topic", "bbc-next", "bbc-copa", "bbc-paraphrase", "bbc-restate",
                   "bbc-overlap", "bbc-sts", "bbc-multirc"]
    with pytest.raises(TaskError):
        get_task("bbc-topic", data_dir="/somewhere")


@pytest.mark.parametrize("name", BBC)
def test_bbc_task_is_deterministic_and_leak_free(name):
    start = time.perf_counter()
    task = get_task(name)
    splits = task.splits("paper")
    assert time.perf_counter() - start < 2.0
    assert splits.sizes() == {"train": 1000, "dev": 1000, "test": 1000}
    again = get_task(name).splits("paper")
    assert again.train == splits.train and again.test == splits.test  # same seed, same examples
    other = get_task(name, seed=1).splits("paper")
    assert other.train != splits.train
    # no input, sentence or article on both sides
    train_inputs, val_inputs = {e.input_text for e in splits.train}, {e.input_text for e in splits.test}
    assert len(train_inputs) == 1000 and not train_inputs & val_inputs
    arts = {s: {a for r in task.rows(s) for a in r["articles"]} for s in ("train", "validation")}
    assert arts["train"] and arts["validation"] and not arts["train"] & arts["validation"]
    # labels valid and not degenerate
    for e in splits.train:
        assert task.parse(e.target_text) is not None
    counts = task.label_counts(splits.train)
    shares = sorted((c / sum(counts.values()) for c in counts.values()), reverse=True)
    if task.is_regression:  # gold scores spread over the range: three unit bins hold >= 10% each, four >= 5%
        assert shares[2] >= 0.10 and shares[3] >= 0.05
    else:
        assert len(shares) == len(task.label_words) and shares[-1] >= 0.15
    # gold as predictions scores (nearly) perfectly
    assert task.score([e.target_text for e in splits.test], splits.test).score > 97.0
    # inputs stay short for CPU runs
    assert max(len(e.input_text.split()) for e in splits.train) <= 130


def test_bbc_sizes_configurable_and_heldout():
    task = get_task("bbc-next", train_size=60, eval_size=30)
    assert task.splits().sizes() == {"train": 60, "dev": 30, "test": 30}
    held = task.splits("heldout", seed=0)
    assert held.sizes() == {"train": 60, "dev": 15, "test": 15}


def test_bbc_multirc_groups():
    task = get_task("bbc-multirc", train_size=40, eval_size=20)
    ex = task.examples("train")
    groups = {}
    for e in ex:
        groups.setdefault(e.group, []).append(e.label)
    assert all(len(v) == 4 and 1 <= sum(v) <= 3 for v in groups.values())
    held = task.splits("heldout")
    assert not {e.group for e in held.dev} & {e.group for e in held.test}


def test_bbc_sts_scores_in_range_and_rounded():
    task = get_task("bbc-sts", train_size=200, eval_size=40)
    ex = task.examples("train")
    assert all(0.0 <= e.label <= 5.0 for e in ex)
    assert all(abs(float(e.target_text) * 5 - round(float(e.target_text) * 5)) < 1e-9 for e in ex)
    assert len({e.target_text for e in ex}) > 10


def test_splits_type():
    assert isinstance(get_task("bbc-copa", train_size=10, eval_size=10).splits(), Splits)


def test_bbc_suite_same_across_processes():
    code = ("import hashlib; from superpos.tasks import get_task; print(hashlib.md5(''.join(e.input_text + "
            "e.target_text for n in ('bbc-copa', 'bbc-multirc') for e in get_task(n, train_size=50, eval_size=20)"
            ".examples('train')).encode()).hexdigest())")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**__import__("os").environ, "PYTHONHASHSEED": str(h)}).stdout for h in (1, 2)}
    assert len(outs) == 1


def test_bbc_suite_summary_reports_balance():
    from superpos.tasks.offline import suite_summary

    rows = suite_summary(train_size=100, eval_size=40)
    assert len(rows) == 2 * len(BBC) and all(r["examples"] >= 40 for r in rows)
    assert all(sum(r["labels"].values()) == r["examples"] for r in rows)
