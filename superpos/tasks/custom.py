"""Your own task: rows from a CSV / JSON / JSON-lines / parquet file, a ``datasets.Dataset`` or a list of dicts.

>>> task = task_from_files("reviews", train="train.csv", validation="dev.csv", inputs=["text"],
...                        label_words=["negative", "positive"])
>>> register_task(task)          # now RunConfig(task="reviews", ...) and every grid know it

The input is T5-style, as for the paper's tasks: ``"reviews text: <text>"`` (one ``<field>: <value>`` per input
field). Labels may be class ids (0, 1, ...) or the label words themselves; ``label_words=None`` makes a regression
task scored like STS-B (targets rounded to 0.2 in [0, 5]). Metrics are any of
:data:`superpos.tasks.METRIC_LABELS` (default accuracy).

Every row is kept or the task is refused, in one line naming the split and the row (counted from 1, header aside):
a missing or null input field, a class id or word the task does not have, a regression label that is not a finite
number or lies outside the task's ``label_range`` (default ``(0, 5)``, STS-B's scale; a narrower one, e.g. ``(1, 5)``,
checks more) are errors, never dropped or clipped. (Built-in tasks drop the hub's unlabelled test rows, label -1.)

A registered task's rows are part of every run hash (:meth:`RowsTask.fingerprint`), so changing the file gives new
runs instead of serving records of the old data. Registration lives in the process that makes it: register in
each process that runs the task (a notebook, a script, a Ray worker's module).
"""
from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .base import Task, TaskError
from .metrics import METRIC_LABELS, REGRESSION_RANGE, normalize
from .registry import REGISTERED, TASKS, canonical_name

SPLITS = ("train", "validation")


class RowsTask(Task):
    """A task over rows held in memory (``{"train": [...], "validation": [...]}``, each row a dict)."""

    benchmark = "custom"
    #: Every row is checked when the task is built (a bad one is an error): none is dropped afterwards.
    drops_unlabelled = False

    def __init__(self, name: str, rows: dict[str, list[dict]], *, inputs: Sequence[str],
                 label_words: Sequence[str] | None, metrics: Sequence[str] = ("accuracy",), label: str = "label",
                 description: str = "", label_range: Sequence[float] | None = None):
        _check_name(name)
        self.label_range = _check_range(name, label_range, regression=label_words is None)
        if not inputs or isinstance(inputs, str):
            raise TaskError(f"{name}: inputs must be a list of field names, got {inputs!r}")
        unknown = [m for m in metrics if m not in METRIC_LABELS]
        if unknown or not metrics or isinstance(metrics, str):
            raise TaskError(f"{name}: unknown metric(s) {unknown or metrics!r}; known: {', '.join(METRIC_LABELS)}")
        super().__init__(name, description=description or f"custom task from {', '.join(inputs)} "
                                                           f"({'/'.join(metrics)})",
                         label_words=label_words, metric_names=metrics,
                         fields=tuple((field, field) for field in inputs))
        self.label_field = label
        self._fingerprint: str | None = None
        self._rows = {split: [self._row(row, split, i) for i, row in enumerate(rows.get(split) or [])]
                      for split in SPLITS}
        for split in SPLITS:
            if not self._rows[split]:
                raise TaskError(f"{name}: the {split} split has no rows")

    def _row(self, row: dict, split: str, position: int) -> dict:
        where = f"{self.name}: {split} row {position + 1}"
        if not isinstance(row, Mapping):
            raise TaskError(f"{where} is not an object of fields (got {type(row).__name__})")
        missing = [f for _, f in self.fields if f not in row] + ([self.label_field] if self.label_field not in row else [])
        if missing:
            raise TaskError(f"{where} has no field {', '.join(map(repr, missing))}; "
                            f"it has {', '.join(map(repr, row))}")
        for _, field in self.fields:
            value = row[field]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                raise TaskError(f"{where}: input field {field!r} is empty (null); give it a text, or drop the row")
        out = {field: row[field] for _, field in self.fields}
        out["label"] = self._label(row[self.label_field], split, position)
        out["idx"] = position
        return out

    def _label(self, value: Any, split: str, position: int) -> int | float:
        where = f"{self.name}: {split} row {position + 1}"
        if self.label_words is None:
            try:
                label = float(value)
            except (TypeError, ValueError):
                raise TaskError(f"{where}: label {value!r} is not a number (a regression task)") from None
            if isinstance(value, bool):
                raise TaskError(f"{where}: label {value!r} is not a number (a regression task)")
            if not math.isfinite(label):
                raise TaskError(f"{where}: label {value!r} is not a finite number (a regression task)")
            low, high = self.label_range
            if not low <= label <= high:
                raise TaskError(f"{where}: label {value!r} is outside the task's label range [{low:g}, {high:g}] "
                                "(label_range=...; targets are written on STS-B's 0-5 scale)")
            return label
        if value is None:  # never the text "None" (a label word "none" would take it)
            raise TaskError(f"{where}: label is empty (null); give a class id or one of {self.label_words}")
        text = str(value).strip()
        if text.lstrip("-").isdigit() and normalize(text) not in self._lookup:
            label = int(text)
            if not 0 <= label < len(self.label_words):
                raise TaskError(f"{where}: label id {label} is outside 0..{len(self.label_words) - 1}")
            return label
        if normalize(text) in self._lookup:
            return self._lookup[normalize(text)]
        raise TaskError(f"{where}: label {value!r} is neither a class id nor one of {self.label_words}")

    def rows(self, split: str) -> list[dict]:
        if split not in SPLITS:
            raise TaskError(f"{self.name}: split must be 'train' or 'validation', got {split!r}")
        return self._rows[split]

    def fingerprint(self) -> str:
        """Hash of the rows and the spec: part of the run hash of every run of this task (computed once: the rows
        do not change after construction)."""
        if self._fingerprint is None:
            from ..config import stable_hash

            self._fingerprint = stable_hash({"rows": self._rows, "inputs": [f for _, f in self.fields],
                                             "labels": self.label_words, "metrics": list(self.metric_names)})
        return self._fingerprint


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a ``.csv``, ``.tsv``, ``.json`` (an array of objects), ``.jsonl`` (one object a line) or
    ``.parquet`` file. A line that is not an object, or not JSON, is a :class:`TaskError` naming its line; CSV cells
    of any size are read (Python's csv module stops at 131,072 characters by default)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TaskError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        limit = csv.field_size_limit()
        csv.field_size_limit(sys.maxsize)  # a long document is a valid cell; the run truncates inputs itself
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",")
                rows = []
                for row in reader:
                    extra = row.pop(None, None)
                    if extra is not None:
                        raise TaskError(f"{path}: line {reader.line_num} has {len(extra)} more cell(s) than the "
                                        f"header's {len(reader.fieldnames)} columns")
                    rows.append(row)
                return rows
        except csv.Error as error:
            raise TaskError(f"{path}: not a readable {suffix[1:].upper()} file ({error})") from None
        except UnicodeDecodeError as error:
            raise TaskError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
        finally:
            csv.field_size_limit(limit)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if suffix in (".json", ".jsonl"):
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as error:
            raise TaskError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
        if text.lstrip().startswith("["):
            try:
                rows = json.loads(text)
            except json.JSONDecodeError as error:
                raise TaskError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
            for index, row in enumerate(rows):
                if not isinstance(row, dict):
                    raise TaskError(f"{path}: element {index + 1} of the array is not an object of fields "
                                    f"(got {type(row).__name__})")
            return rows
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise TaskError(f"{path}: line {number} is not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise TaskError(f"{path}: line {number} is not a JSON object of fields (got {type(row).__name__}); "
                                "a .jsonl file holds one object a line")
            rows.append(row)
        return rows
    raise TaskError(f"{path}: unknown file type {suffix!r}; use .csv, .tsv, .json, .jsonl or .parquet")


def task_from_files(name: str, *, train: str | Path, validation: str | Path, inputs: Sequence[str],
                    label_words: Sequence[str] | None, metrics: Sequence[str] = ("accuracy",), label: str = "label",
                    description: str = "", label_range: Sequence[float] | None = None) -> RowsTask:
    """A task from a training and a validation file (see :func:`read_rows` for the formats)."""
    return RowsTask(name, {"train": read_rows(train), "validation": read_rows(validation)}, inputs=inputs,
                    label_words=label_words, metrics=metrics, label=label, description=description,
                    label_range=label_range)


def task_from_dataset(name: str, *, train, validation, inputs: Sequence[str], label_words: Sequence[str] | None,
                      metrics: Sequence[str] = ("accuracy",), label: str = "label", description: str = "",
                      label_range: Sequence[float] | None = None) -> RowsTask:
    """A task from two ``datasets.Dataset`` s (or anything with ``to_list()``, or lists of dicts)."""
    def as_rows(split) -> list[dict]:
        return split.to_list() if hasattr(split, "to_list") else list(split)

    return RowsTask(name, {"train": as_rows(train), "validation": as_rows(validation)}, inputs=inputs,
                    label_words=label_words, metrics=metrics, label=label, description=description,
                    label_range=label_range)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip() or name != name.strip().lower() or " " in name:
        raise TaskError(f"task name must be a lowercase word without spaces, got {name!r}")
    try:
        known = canonical_name(name)
    except TaskError:
        return
    if known != name and known in TASKS and known not in REGISTERED:  # "sst-2" would answer for SST-2
        raise TaskError(f"task name {name!r} is another spelling of the built-in task {known!r}; "
                        "choose another name")


def _check_range(name: str, label_range: Sequence[float] | None, *, regression: bool) -> tuple[float, float]:
    """A regression task's ``(low, high)`` label range: within STS-B's [0, 5], on which targets are written."""
    low, high = REGRESSION_RANGE
    if label_range is None:
        return float(low), float(high)
    if not regression:
        raise TaskError(f"{name}: label_range applies to regression tasks only (label_words=None)")
    try:
        first, last = (float(bound) for bound in label_range)
    except (TypeError, ValueError):
        raise TaskError(f"{name}: label_range must be two numbers (low, high), got {label_range!r}") from None
    if not (math.isfinite(first) and math.isfinite(last) and low <= first < last <= high):
        raise TaskError(f"{name}: label_range {tuple(label_range)} must lie within [{low:g}, {high:g}], low < high "
                        "(targets are written on STS-B's 0-5 scale: rescale labels into it)")
    return first, last
