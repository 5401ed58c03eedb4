"""Bring your own task and method: files, datasets, registration, the run hash, and the README's example."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from superpos.engine import ResultsStore, RunConfig, run
from superpos.methods import METHODS, SimpleConfig, SimplePrompt, register_method
from superpos.tasks import (TASKS, TaskError, get_task, read_rows, register_task, task_from_dataset, task_from_files,
                            unregister_task)

REPO = Path(__file__).resolve().parents[1]
GOOD = "great lovely fine superb".split()
BAD = "awful dull poor boring".split()


def write_reviews(folder: Path, n_train: int = 24, n_dev: int = 8, words: bool = False) -> None:
    for name, count in (("reviews_train.csv", n_train), ("reviews_dev.csv", n_dev)):
        with (folder / name).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            for i in range(count):
                label = i % 2
                text = " ".join((GOOD if label else BAD)[(i + k) % 4] for k in range(3))
                writer.writerow([text, ("negative", "positive")[label] if words else label])


@pytest.fixture()
def registered():
    names = []
    yield names
    for name in names:
        unregister_task(name)


def test_csv_task_reads_ids_or_label_words_and_scores(tmp_path, registered):
    write_reviews(tmp_path, words=True)
    task = task_from_files("reviews", train=tmp_path / "reviews_train.csv", validation=tmp_path / "reviews_dev.csv",
                           inputs=["text"], label_words=["negative", "positive"], metrics=["accuracy", "f1"])
    registered.append(register_task(task).name)
    assert "reviews" in TASKS and get_task("reviews") is task
    train = task.examples("train")
    assert train[1].input_text.startswith("reviews text: ") and train[1].target_text == "positive"
    assert [e.label for e in train[:4]] == [0, 1, 0, 1]
    gold = task.examples("validation")
    score = task.score([e.target_text for e in gold], gold)
    assert score.metrics == {"accuracy": 100.0, "f1": 100.0}


def test_dataset_task_and_its_fingerprint_in_the_run_hash(tmp_path, registered):
    from datasets import Dataset

    rows = [{"a": f"x{i}", "b": f"y{i}", "label": i % 3} for i in range(9)]
    task = task_from_dataset("triples", train=Dataset.from_list(rows), validation=rows[:3], inputs=["a", "b"],
                             label_words=["one", "two", "three"], metrics=["macro_f1", "accuracy"])
    registered.append(register_task(task).name)
    assert task.examples("validation")[0].input_text == "triples a: x0 b: y0"
    first = RunConfig(task="triples", method="simple").run_hash()
    changed = task_from_dataset("triples", train=rows[:-1], validation=rows[:3], inputs=["a", "b"],
                                label_words=["one", "two", "three"], metrics=["macro_f1", "accuracy"])
    register_task(changed, replace=True)
    assert RunConfig(task="triples", method="simple").run_hash() != first  # other rows, other runs
    # built-in tasks keep their hashes: no fingerprint enters them
    assert "task_data" not in str(RunConfig(task="bbc-topic").resolved().to_dict())


@pytest.mark.parametrize("make,fragment", [
    (lambda d: task_from_files("r", train=d / "missing.csv", validation=d / "missing.csv", inputs=["text"],
                               label_words=["no", "yes"]), "no such file"),
    (lambda d: task_from_files("r", train=d / "reviews_train.csv", validation=d / "reviews_dev.csv",
                               inputs=["body"], label_words=["no", "yes"]), "has no field 'body'"),
    (lambda d: task_from_files("r", train=d / "reviews_train.csv", validation=d / "reviews_dev.csv",
                               inputs=["text"], label_words=["no"]), "outside 0..0"),
    (lambda d: task_from_files("r", train=d / "reviews_train.csv", validation=d / "reviews_dev.csv",
                               inputs=["text"], label_words=["no", "yes"], metrics=["bleu"]), "unknown metric"),
    (lambda d: task_from_files("r", train=d / "reviews_train.csv", validation=d / "reviews_dev.csv",
                               inputs="text", label_words=["no", "yes"]), "list of field names"),
    (lambda d: task_from_files("My Task", train=d / "reviews_train.csv", validation=d / "reviews_dev.csv",
                               inputs=["text"], label_words=["no", "yes"]), "lowercase word"),
    (lambda d: register_task(task_from_files("rte", train=d / "reviews_train.csv", validation=d / "reviews_dev.csv",
                                             inputs=["text"], label_words=["no", "yes"])), "built-in task"),
])
def test_bad_custom_tasks_are_one_line(tmp_path, make, fragment):
    write_reviews(tmp_path)
    with pytest.raises(TaskError, match=fragment) as error:
        make(tmp_path)
    assert "\n" not in str(error.value)


def test_read_rows_formats(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "x", "label": 1}\n{"text": "y", "label": 0}\n')
    (tmp_path / "b.json").write_text('[{"text": "x", "label": 1}]')
    (tmp_path / "c.tsv").write_text("\ufefftext\tlabel\nx\t1\n", encoding="utf-8")
    assert [r["label"] for r in read_rows(tmp_path / "a.jsonl")] == [1, 0]
    assert read_rows(tmp_path / "b.json") == [{"text": "x", "label": 1}]
    assert read_rows(tmp_path / "c.tsv") == [{"text": "x", "label": "1"}]


def test_registered_method_runs_through_the_engine(tmp_path, registered):
    write_reviews(tmp_path)
    registered.append(register_task(task_from_files(
        "reviews", train=tmp_path / "reviews_train.csv", validation=tmp_path / "reviews_dev.csv", inputs=["text"],
        label_words=["negative", "positive"])).name)

    import dataclasses

    @dataclasses.dataclass
    class ShortConfig(SimpleConfig):
        """Simple prompt tuning with 3 prompts by default."""
        kind = "short"
        n_prompts: int = 3

    class ShortPrompt(SimplePrompt):
        name = "short"
        config_class = ShortConfig

    register_method("short", ShortConfig, ShortPrompt)
    try:
        with pytest.raises(ValueError, match="already a method"):
            register_method("short", ShortConfig, ShortPrompt)
        record = run(RunConfig(task="reviews", method="short", backbone="tiny-llama", max_steps=2, batch_size=4,
                               eval_every=2, device="cpu"), ResultsStore(tmp_path / "store"), progress=False)
        assert record["status"] == "done" and record["config"]["method_config"]["n_prompts"] == 3
    finally:
        METHODS.pop("short", None)


def test_readme_example_trains_superpos_on_a_csv(tmp_path, monkeypatch, registered):
    """The README's custom-task example, as written, with only its budget shortened."""
    readme = (REPO / "README.md").read_text()
    code = re.search(r"<!-- readme-example: custom-task -->\n```python\n(.*?)```", readme, re.S).group(1)
    assert "superpos" in code and "max_steps=200" in code
    code = code.replace("max_steps=200", "max_steps=2").replace("eval_every=50", "eval_every=2")
    write_reviews(tmp_path, n_train=16, n_dev=8)
    monkeypatch.chdir(tmp_path)
    registered.append("reviews")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    record = namespace["record"]
    assert record["status"] == "done" and record["config"]["task"] == "reviews" and record["steps"] == 2
    assert (tmp_path / "reviews_results" / "records" / f"{record['hash']}.json").is_file()
