"""The task interface: rows in the hub's schema become text-to-text :class:`Example` s, split and scored.

A :class:`Task` is one small spec (prefix, the row fields that make the input, label words, metrics);
subclasses only say where rows come from (:mod:`.loading` for GLUE/SuperGLUE, :mod:`.offline` for BBC).
"""
from __future__ import annotations

import dataclasses
import enum
import random
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from .metrics import Score, normalize, parse_score, score_predictions, score_to_text

class Protocol(str, enum.Enum):
    """Where the best point is chosen and where its score is read."""

    PAPER = "paper"      # both on the validation split, as the paper does
    HELDOUT = "heldout"  # chosen on dev, read on test examples the choice never saw


PROTOCOLS = tuple(protocol.value for protocol in Protocol)
SMALL_TRAIN = 10_000  # heldout protocol: below this many training rows, halve validation into dev/test
HELDOUT_DEV = 1_000   # heldout protocol: above it, hold out this many training rows as dev
#: Seeds every choice of evaluation examples (the dev/test partition, ``eval_limit``/``test_limit`` subsamples):
#: fixed, so a task's dev and test examples are the same whatever the run seed, and runs pair example by example.
EVAL_SEED = 0


class TaskError(ValueError):
    """A task cannot be built or loaded; the message is one line saying what to do."""


@dataclasses.dataclass(frozen=True)
class Example:
    """One text-to-text example. ``label`` is the class id (int) or, for STS-B-like tasks, the gold score
    (float, unrounded); ``group`` the question id for MultiRC-like tasks; ``uid`` unique within the task."""

    input_text: str
    target_text: str
    label: int | float
    group: str | None = None
    uid: str = ""


@dataclasses.dataclass
class Splits:
    """Train / dev (model selection) / test (reported). Under the paper protocol ``dev is test``."""

    train: list[Example]
    dev: list[Example]
    test: list[Example]
    protocol: str = "paper"
    seed: int = 0

    @property
    def dev_is_test(self) -> bool:
        return self.dev is self.test

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "dev": len(self.dev), "test": len(self.test)}

    def limit(self, train_limit: int | None = None, eval_limit: int | None = None, seed: int = 0,
              test_limit: int | None = None) -> "Splits":
        """Subsamples: at most ``train_limit`` training examples drawn with the run's ``seed``; at most
        ``eval_limit`` dev examples and ``test_limit`` test examples (under the paper protocol, where dev is test,
        ``eval_limit`` caps both) drawn with the fixed :data:`EVAL_SEED`, so every seed is evaluated on the same
        examples. Whole groups are kept (a MultiRC question is never cut; the last group may overshoot)."""
        tr = take(self.train, train_limit, seed)
        dev = take(self.dev, eval_limit, EVAL_SEED)
        test = dev if self.dev_is_test else take(self.test, test_limit, EVAL_SEED)
        return Splits(tr, dev, test, self.protocol, self.seed)


def _units(examples: Sequence[Example]) -> list[list[Example]]:
    """Examples grouped into indivisible units (a MultiRC question, else one example), in first-seen order."""
    units: dict[Any, list[Example]] = {}
    for i, ex in enumerate(examples):
        units.setdefault(ex.group if ex.group is not None else ("#", i), []).append(ex)
    return list(units.values())


def _partition(examples: Sequence[Example], n_first: int, seed: int) -> tuple[list[Example], list[Example]]:
    """Shuffle whole units with ``seed``; the first units up to ``n_first`` examples, then the rest
    (both returned in their original order)."""
    units = _units(examples)
    random.Random(seed).shuffle(units)
    first: set[int] = set()
    count = 0
    for unit in units:
        if count >= n_first:
            break
        first.update(id(ex) for ex in unit)
        count += len(unit)
    a = [ex for ex in examples if id(ex) in first]
    b = [ex for ex in examples if id(ex) not in first]
    return a, b


def take(examples: list[Example], n: int | None, seed: int = 0) -> list[Example]:
    """At most ``n`` examples chosen with ``seed`` by whole groups, in original order (``None``: all)."""
    if n is None or n >= len(examples):
        return examples
    return _partition(examples, n, seed)[0]


class Task:
    """One task: how a hub-schema row becomes an :class:`Example`, how splits are made, how it is scored.

    ``fields``: ``(prefix, row_field)`` pairs; the input is ``"<name> <prefix>: <value> <prefix>: <value>"``
    (T5 style), unless ``formatter`` (row -> text without the task prefix) is given.
    ``label_words[i]`` is the target text of class ``i``; ``None`` makes a regression task (targets are the
    score rounded to 0.2, written ``"3.4"``). ``metric_names`` in Table 1's order.
    """

    benchmark = "custom"

    def __init__(self, name: str, *, description: str, label_words: Sequence[str] | None,
                 metric_names: Sequence[str], fields: Sequence[tuple[str, str]] = (),
                 formatter: Callable[[dict], str] | None = None, display_name: str | None = None,
                 grouped: bool = False, prefix: str | None = None):
        self.name = name
        self.display_name = display_name or name
        self.description = description
        self.label_words = list(label_words) if label_words is not None else None
        self.metric_names = tuple(metric_names)
        self.fields = tuple(fields)
        self.formatter = formatter
        self.grouped = grouped
        self.prefix = prefix if prefix is not None else name
        self._lookup = {normalize(w): i for i, w in enumerate(self.label_words or [])}
        if self.label_words is not None and len(self._lookup) != len(self.label_words):
            raise TaskError(f"{name}: label words must be distinct after normalization: {self.label_words}")
        self._cache: dict[str, list[Example]] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # ------------------------------------------------------------------ data (subclasses)

    def rows(self, split: str) -> list[dict]:
        """Rows of ``split`` (``"train"`` or ``"validation"``) in the hub's schema, labels as ids / floats."""
        raise NotImplementedError

    # ------------------------------------------------------------------ formatting

    @property
    def is_regression(self) -> bool:
        return self.label_words is None

    def format_input(self, row: dict) -> str:
        body = self.formatter(row) if self.formatter else " ".join(f"{p}: {_clean(row[f])}" for p, f in self.fields)
        return f"{self.prefix} {body}"

    def target_text(self, label: int | float) -> str:
        if self.label_words is None:
            return score_to_text(label)
        return self.label_words[int(label)]

    @property
    def all_targets(self) -> list[str]:
        """Every target string the task can ask for (label words, or the 26 STS-B values 0.0 … 5.0)."""
        if self.label_words is not None:
            return list(self.label_words)
        return [f"{k / 5:.1f}" for k in range(26)]

    @property
    def max_target_words(self) -> int:
        return max(len(t.split()) for t in self.all_targets)

    def group_of(self, row: dict) -> str | None:
        if not self.grouped:
            return None
        idx = row["idx"]
        return f"{idx['paragraph']}-{idx['question']}"

    def example(self, row: dict, split: str, position: int) -> Example:
        idx = row.get("idx", position)
        key = "-".join(str(idx[k]) for k in ("paragraph", "question", "answer")) if isinstance(idx, dict) else idx
        label = float(row["label"]) if self.is_regression else int(row["label"])
        return Example(self.format_input(row), self.target_text(label), label, self.group_of(row),
                       f"{self.name}/{split}/{key}")

    #: Whether :meth:`examples` drops unlabelled rows (label -1, as in the hub's test splits: any label below 0 or
    #: NaN). Built-in tasks do; a task that checks every row itself (``RowsTask``) sets it False, so no row of its
    #: is ever dropped in silence.
    drops_unlabelled = True

    def examples(self, split: str) -> list[Example]:
        """All labelled examples of ``split`` (rows with label -1, as in hub test splits, are dropped, unless
        :attr:`drops_unlabelled` is False: then every row is an example)."""
        if split not in self._cache:
            rows = self.rows(split)
            keep = (lambda row: float(row["label"]) >= 0) if self.drops_unlabelled else (lambda row: True)
            self._cache[split] = [self.example(r, split, i) for i, r in enumerate(rows) if keep(r)]
        return self._cache[split]

    # ------------------------------------------------------------------ splits

    def splits(self, protocol: str = "paper", seed: int = EVAL_SEED) -> Splits:
        """``paper``: train on train, dev = test = validation (the paper reports the best validation epoch).
        ``heldout``: with fewer than 10k training rows the validation split is halved (seeded, whole
        MultiRC questions) into dev and test; otherwise 1k training rows (seeded) become dev and the
        validation split is the test set. Model selection then never sees the reported examples. Runs pass
        the fixed :data:`EVAL_SEED`, so the partition does not depend on the run seed."""
        if protocol not in PROTOCOLS:
            raise TaskError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        train, val = self.examples("train"), self.examples("validation")
        if protocol == "paper":
            return Splits(train, val, val, protocol, seed)
        if len(train) < SMALL_TRAIN:
            dev, test = _partition(val, len(val) // 2, seed)
            return Splits(train, dev, test, protocol, seed)
        dev, rest = _partition(train, HELDOUT_DEV, seed)
        return Splits(rest, dev, val, protocol, seed)

    # ------------------------------------------------------------------ scoring

    def parse(self, prediction: str) -> int | float | None:
        """The label a generated string stands for (after :func:`normalize`), or ``None`` if invalid."""
        if self.label_words is None:
            return parse_score(prediction)
        return self._lookup.get(normalize(prediction))

    def score(self, predictions: Sequence[str], examples: Sequence[Example]) -> Score:
        """Score generated strings against ``examples`` (see :mod:`.metrics` for formulas and both rules)."""
        if len(predictions) != len(examples):
            raise ValueError(f"{self.name}: {len(predictions)} predictions for {len(examples)} examples")
        parsed = [self.parse(p) for p in predictions]
        labels = None if self.label_words is None else list(range(len(self.label_words)))
        groups = [ex.group or ex.uid for ex in examples] if self.grouped else None
        return score_predictions(self.metric_names, [ex.label for ex in examples], parsed,
                                 labels=labels, groups=groups)

    def label_counts(self, examples: Sequence[Example]) -> dict[str, int]:
        """Target counts (regression: counts per unit bin ``"0-1"`` … ``"4-5"``), for balance reports."""
        if self.label_words is None:
            return dict(sorted(Counter(f"{min(int(ex.label), 4)}-{min(int(ex.label), 4) + 1}"
                                       for ex in examples).items()))
        counts = Counter(ex.target_text for ex in examples)
        return {w: counts.get(w, 0) for w in self.label_words}

    def info(self) -> dict[str, Any]:
        """One row for task listings (``python -m superpos list``)."""
        return {"name": self.name, "display": self.display_name, "benchmark": self.benchmark,
                "metrics": "/".join(self.metric_names),
                "targets": " / ".join(self.label_words) if self.label_words else "score 0.0–5.0 (step 0.2)",
                "description": self.description}


def _clean(value: Any) -> str:
    return " ".join(str(value).split())
