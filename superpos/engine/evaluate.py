"""Evaluation by greedy generation, scored with the task's strict and lenient rules (paper §5)."""
from __future__ import annotations

import torch


def max_new_tokens_for(backbone, task) -> int:
    """Generation length from the longest label (every target the task can produce) plus one end token."""
    return max(len(backbone.token_ids(target)) for target in task.all_targets) + 1


@torch.no_grad()
def predict(backbone, method, examples, *, batch_size: int, max_new_tokens: int, max_input_tokens: int) -> list[str]:
    """Greedy predictions for ``examples``, in their order.

    Examples are generated in order of input length so that padding stays small.
    """
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_text))
    predictions: list[str | None] = [None] * len(examples)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
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
