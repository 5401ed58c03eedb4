"""Evaluation by greedy generation, scored with the task's strict and lenient rules (paper §5).

``evaluate`` scores one run; ``evaluate_many`` scores several runs of a packed group in one batched generation
loop, with the same predictions as each run alone.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch


def max_new_tokens_for(backbone, task) -> int:
    """Generation length from the longest label (every target the task can produce) plus one end token."""
    return max(len(backbone.token_ids(target)) for target in task.all_targets) + 1


def chunks(examples, batch_size: int) -> list[list[int]]:
    """Indices of ``examples`` in generation batches: ordered by input length, so that padding stays small."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_text))
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


@torch.no_grad()
def predict(backbone, method, examples, *, batch_size: int, max_new_tokens: int, max_input_tokens: int) -> list[str]:
    """Greedy predictions for ``examples``, in their order (generated in :func:`chunks`)."""
    predictions: list[str | None] = [None] * len(examples)
    for chunk in chunks(examples, batch_size):
        batch = backbone.encode([examples[i].input_text for i in chunk], None, max_input_tokens=max_input_tokens,
                                max_target_tokens=max_new_tokens)
        for index, text in zip(chunk, backbone.generate(batch, method, max_new_tokens=max_new_tokens)):
            predictions[index] = text
    return predictions


def evaluate(backbone, method, task, examples, *, batch_size: int, max_new_tokens: int, max_input_tokens: int):
    """Return ``(score, predictions)``: the task's ``Score`` (strict, lenient, invalid rate, †) and the texts."""
    was_training = method.training
    method.eval()
    try:
        predictions = predict(backbone, method, examples, batch_size=batch_size, max_new_tokens=max_new_tokens,
                              max_input_tokens=max_input_tokens)
    finally:
        method.train(was_training)
    return task.score(predictions, examples), predictions


@dataclasses.dataclass
class EvalJob:
    """One run's share of a packed evaluation: its method, task, examples and generation settings."""

    method: Any
    task: Any
    examples: list
    batch_size: int
    max_new_tokens: int
    max_input_tokens: int


@torch.no_grad()
def predict_many(backbone, jobs: list[EvalJob]) -> list[list[str]]:
    """Greedy predictions of every job, generated together: round ``i`` joins chunk ``i`` of each job (chunked as
    :func:`predict` chunks it alone) into one batch, each block of rows through its job's method, and cuts each
    row at its job's ``max_new_tokens``. The predictions are those of each job alone, up to float rounding."""
    from ..backbones import Batch, MethodRows

    plans = [chunks(job.examples, job.batch_size) for job in jobs]
    predictions: list[list[str | None]] = [[None] * len(job.examples) for job in jobs]
    for round_ in range(max(map(len, plans), default=0)):
        parts = [(job, plan[round_], out) for job, plan, out in zip(jobs, plans, predictions) if round_ < len(plan)]
        batches = [backbone.encode([job.examples[i].input_text for i in chunk], None,
                                   max_input_tokens=job.max_input_tokens, max_target_tokens=job.max_new_tokens)
                   for job, chunk, _ in parts]
        methods = MethodRows([job.method for job, _, _ in parts], [len(batch) for batch in batches])
        ids = backbone.generate_ids(Batch.concat(batches, backbone.pad_token_id), methods,
                                    max(job.max_new_tokens for job, _, _ in parts))
        start = 0
        for job, chunk, out in parts:
            texts = backbone.decode([row[:job.max_new_tokens] for row in ids[start:start + len(chunk)]])
            for index, text in zip(chunk, texts):
                out[index] = text
            start += len(chunk)
    return predictions


def evaluate_many(backbone, jobs: list[EvalJob]) -> list[tuple[Any, list[str]]]:
    """``evaluate`` for several runs at once (:func:`predict_many`): ``(score, predictions)`` per job."""
    modes = [job.method.training for job in jobs]
    for job in jobs:
        job.method.eval()
    try:
        predictions = predict_many(backbone, jobs)
    finally:
        for job, mode in zip(jobs, modes):
            job.method.train(mode)
    return [(job.task.score(texts, job.examples), texts) for job, texts in zip(jobs, predictions)]
