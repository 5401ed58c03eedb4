"""Greedy generation with a prompt: one KV-cached step at a time, a batch as its examples alone.

Functions take the backbone (a :class:`~superpos.backbones.core.Backbone`) first; its ``generate``,
``generate_ids`` and ``next_token_logits`` methods call them. A *step function* maps the previous tokens
``[B]`` (``None`` at the first step) to the next-token logits ``[B, V]`` (float32).
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn
from transformers import DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast

from . import fast
from .batch import Batch, PromptMethod, _pack, _positions
from .loss import prompted_inputs, with_prompt

# The KV cache's name in model calls and outputs: later transformers 5.x renamed `past_key_values` to `cache`
# (the old name still works there, with a warning on every call).
_CACHE = "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"


@torch.no_grad()
def generate_ids(backbone, batch: Batch, method: PromptMethod | None, max_new_tokens: int) -> list[list[int]]:
    """Greedy token ids per example, cut before the first eos (eos itself not included).

    Runs the model in eval mode (no dropout) and restores its mode afterwards. A batch gives the same
    tokens as its examples one at a time: causal batches are left-padded so the prompt sits right
    before each example's real tokens, with positions counted over real tokens only.
    """
    with eval_mode(backbone.model):
        return greedy(backbone, step_function(backbone, batch, method), len(batch), max_new_tokens)


@torch.no_grad()
def next_token_logits(backbone, batch: Batch, method: PromptMethod | None) -> torch.Tensor:
    """Float logits ``[B, V]`` of the first answer token (the first greedy step), in eval mode."""
    with eval_mode(backbone.model):
        return step_function(backbone, batch, method)(None)


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """``model`` in eval mode inside the block, in its own mode again after it."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def step_function(backbone, batch: Batch, method: PromptMethod | None) -> Callable:
    """The step function of ``batch`` under ``method``'s prompt (seq2seq or causal, as the backbone is)."""
    prompt, embeds, prompt_mask, blocks = prompted_inputs(backbone, batch, method)
    first = None
    if backbone.fast_first_step():
        # The first step without padding or repeated prompts (backbones/fast.py); the later steps as below.
        first = fast.causal_prefill(backbone, prompt, embeds, batch.attention_mask, prompt_mask, blocks)
    embeds, mask = with_prompt(prompt, embeds, batch.attention_mask, prompt_mask)
    if backbone.kind == "seq2seq":
        if prompt_mask is not None:  # as in the loss: padding after [prompt, input]
            mask, embeds = _pack(mask, embeds, left=False)
        return seq2seq_steps(backbone.model, embeds, mask)
    return causal_steps(backbone, embeds, mask, first)


def greedy(backbone, step: Callable, batch_size: int, max_new_tokens: int) -> list[list[int]]:
    """Drive a step function ``previous tokens [B] | None -> next-token logits [B, V]`` greedily."""
    out: list[list[int]] = [[] for _ in range(batch_size)]
    finished = torch.zeros(batch_size, dtype=torch.bool, device=backbone.device)
    previous = None
    eos = backbone.eos_token_id
    producible = min(len(backbone.tokenizer), backbone.embedding_weight.shape[0])
    for _ in range(max_new_tokens):
        # Rows past the tokenizer (T5's padding rows) are never a token: a random model could pick them.
        token = step(previous)[:, :producible].argmax(-1)                   # [B]
        token = torch.where(finished, torch.full_like(token, eos), token)
        for i, (t, done) in enumerate(zip(token.tolist(), finished.tolist())):  # one device sync
            if not done and t != eos:
                out[i].append(t)
        finished |= token == eos
        if bool(finished.all()):
            break
        previous = token
    return out


def seq2seq_steps(model: nn.Module, embeds: torch.Tensor, mask: torch.Tensor) -> Callable:
    """Step function for T5: encode ``[prompt, input]`` (``embeds [B, n + L, d]``, ``mask [B, n + L]``) once, then
    decode with the KV cache."""
    encoder_outputs = model.get_encoder()(inputs_embeds=embeds, attention_mask=mask)
    start = model.config.decoder_start_token_id
    state = {"past": None}

    def step(previous):
        if previous is None:
            previous = torch.full((embeds.shape[0],), start, dtype=torch.long, device=embeds.device)
        out = model(encoder_outputs=encoder_outputs, attention_mask=mask,
                    decoder_input_ids=previous[:, None], use_cache=True, **{_CACHE: state["past"]})
        state["past"] = getattr(out, _CACHE)
        return out.logits[:, -1].float()
    return step


def causal_steps(backbone, embeds: torch.Tensor, mask: torch.Tensor, first=None) -> Callable:
    """Step function for causal LMs: left-pack ``[pad, prompt, input]``, then one token at a time. ``first``:
    the first step already computed, ``(logits [B, V], per-layer keys and values)`` in that layout
    (:func:`~superpos.backbones.fast.causal_prefill`)."""
    model = backbone.model
    mask, embeds = _pack(mask, embeds, left=True)
    state = {"mask": mask, "positions": _positions(mask), "past": None}

    def step(previous):
        if previous is None and first is not None:
            logits, keys_values = first
            state["past"] = DynamicCache(config=model.config)
            for index, (keys, values) in enumerate(keys_values):
                state["past"].update(keys, values, index)
            return logits
        if previous is None:
            inputs = {"inputs_embeds": embeds}
        else:
            state["mask"] = torch.cat([state["mask"], state["mask"].new_ones(len(previous), 1)], dim=1)
            state["positions"] = state["positions"][:, -1:] + 1
            inputs = {"input_ids": previous[:, None]}
        out = model.base_model(**inputs, attention_mask=state["mask"], position_ids=state["positions"],
                               use_cache=True, **{_CACHE: state["past"]})
        state["past"] = getattr(out, _CACHE)
        return backbone._lm_head(out.last_hidden_state[:, -1]).float()
    return step
