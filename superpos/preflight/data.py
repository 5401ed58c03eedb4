"""Each run's data as preflight sees it: every task loaded once, each run's splits, counts and longest inputs,
and its schedule (steps, evaluation points) as the Trainer counts it."""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from .report import first_line


def paper_sizes(task: str) -> tuple[int, int] | None:
    """The paper's (train, validation) rows of a GLUE/SuperGLUE task (the specs' ``sizes``); None elsewhere."""
    from ..tasks import GLUE_SPECS, SUPERGLUE_SPECS

    spec = {**GLUE_SPECS, **SUPERGLUE_SPECS}.get(task)
    return tuple(spec["sizes"]) if spec else None


def eval_points(total_steps: int, steps_per_epoch: int, eval_every: int) -> int:
    """Evaluation points of a run, as ``Trainer.is_eval_step`` places them (the last step always has one)."""
    every = eval_every or steps_per_epoch
    return total_steps // every + (total_steps % every != 0)


@dataclasses.dataclass
class RunData:
    """A run's splits, their counts, and their longest inputs (the worst-case batches)."""

    splits: Any
    train: int
    dev: int
    test: int
    dev_is_test: bool
    longest_train: list
    longest_dev: list
    target_chars: int


class Data:
    """Every task loaded once; each run's splits as ``RunConfig.splits`` draws them, from the loaded task."""

    def __init__(self):
        self.tasks: dict[str, Any] = {}
        self.failed: dict[str, str] = {}
        self._runs: dict[tuple, RunData] = {}

    def load(self, name: str) -> bool:
        from ..tasks import TaskError, get_task

        try:
            task = get_task(name)
            task.examples("train"), task.examples("validation")
        except Exception as error:  # TaskError says where the files go; anything else: one line too
            self.failed[name] = str(error) if isinstance(error, TaskError) else \
                f"{name}: {type(error).__name__}: {first_line(error)}"
            return False
        self.tasks[name] = task
        return True

    def run(self, config) -> RunData | None:
        """The run's splits (None when its task did not load), drawn as ``RunConfig.splits`` draws them."""
        from ..tasks import EVAL_SEED

        task = self.tasks.get(config.task)
        if task is None:
            return None
        key = (config.task, config.protocol, config.train_limit, config.eval_limit, config.test_limit, config.seed,
               config.batch_size, config.eval_batch_size)
        if key not in self._runs:
            splits = task.splits(config.protocol, seed=EVAL_SEED).limit(
                config.train_limit, config.eval_limit, config.seed, test_limit=config.test_limit)
            self._runs[key] = RunData(splits, len(splits.train), len(splits.dev), len(splits.test),
                                      splits.dev_is_test, longest(splits.train, config.batch_size),
                                      longest(splits.dev, config.eval_batch_size),
                                      max(len(t) for t in task.all_targets))
        return self._runs[key]

    def counts(self, config) -> tuple[int, int, int, bool]:
        """``(train, dev, test, dev_is_test)`` of a run; the paper's sizes (or the BBC suite's default) when its
        task did not load."""
        data = self.run(config)
        if data is not None:
            return data.train, data.dev, data.test, data.dev_is_test
        from ..tasks.offline import DEFAULT_EVAL_SIZE, DEFAULT_TRAIN_SIZE

        train, dev = paper_sizes(config.task) or (DEFAULT_TRAIN_SIZE, DEFAULT_EVAL_SIZE)
        train = min(train, config.train_limit or train)
        dev = min(dev, config.eval_limit or dev)
        return train, dev, dev, True


def longest(examples: list, count: int) -> list:
    """The ``count`` examples with the longest inputs (in characters: what tokenizes longest, near enough)."""
    return sorted(examples, key=lambda example: len(example.input_text), reverse=True)[:count]


def run_steps(config, train_rows: int) -> tuple[int, int]:
    """``(total steps, steps per epoch)`` as the Trainer counts them (``max_steps`` overrides epochs)."""
    per_epoch = max(1, math.ceil(train_rows / config.batch_size))
    return config.max_steps or config.epochs * per_epoch, per_epoch
