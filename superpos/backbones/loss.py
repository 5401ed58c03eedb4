"""The training loss: ``[prompt, input]`` through the frozen model, cross-entropy on the target tokens only.

For a batch of ``B`` examples with targets ``y_1 .. y_T`` (eos last), prompt ``P`` (``n`` vectors) and input
``x``, the loss is the mean over all real target tokens of the batch of ``-log p(y_t | P, x, y_<t)``: the
prompt-tuning objective, where the frozen model's weights get no gradient and the prompt's parameters do.

Functions take the backbone (a :class:`~superpos.backbones.core.Backbone`) first; its ``loss`` and
``token_losses`` methods call them. Shapes: ``B`` batch, ``L`` input tokens, ``T`` target tokens, ``n`` prompt
vectors, ``d`` embedding width, ``V`` vocabulary rows, ``N`` target positions of the batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import fast
from .batch import IGNORE_INDEX, Batch, MethodRows, PromptBlock, PromptMethod, _pack, _positions, same_rows


def prompted_inputs(backbone, batch: Batch, method: PromptMethod | MethodRows | None):
    """``(prompt [B, n, d], inputs_embeds [B, L, d], prompt_mask [B, n] or None, blocks)`` in the model's dtype;
    ``n`` is 0 without a method; ``prompt_mask`` is None when every row has all ``n`` prompt vectors (one
    method); ``blocks`` (``PromptBlock``) the rows of each method and whether its prompt is one for all of
    them, read from the method's output before any cast (a cast copies an expanded prompt into every row)."""
    embeds = backbone.embed(batch.input_ids)
    if method is None:
        prompt = embeds.new_zeros(embeds.shape[0], 0, embeds.shape[2])
        return prompt, embeds, None, [PromptBlock(embeds.shape[0], 0, False)]
    if isinstance(method, MethodRows):
        prompt, embeds, prompt_mask = method(embeds, batch.attention_mask)
        blocks = method.blocks
    else:
        (prompt, embeds), prompt_mask = method(embeds, batch.attention_mask), None
        blocks = [PromptBlock(prompt.shape[0], prompt.shape[1], same_rows(prompt))]
    if prompt.dim() != 3 or prompt.shape[0] != embeds.shape[0] or prompt.shape[2] != backbone.embed_dim:
        raise ValueError(f"method returned a prompt of shape {list(prompt.shape)}; expected "
                         f"[{embeds.shape[0]}, n, {backbone.embed_dim}]")
    return prompt.to(backbone.dtype), embeds.to(backbone.dtype), prompt_mask, blocks


def with_prompt(prompt: torch.Tensor, embeds: torch.Tensor, mask: torch.Tensor,
                prompt_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``[prompt, inputs]``: embeddings ``[B, n + L, d]`` and the mask ``[B, n + L]`` grown by ``prompt_mask``
    (ones when None)."""
    ones = mask.new_ones(mask.shape[0], prompt.shape[1]) if prompt_mask is None else prompt_mask.to(mask.dtype)
    return torch.cat([prompt, embeds], dim=1), torch.cat([ones, mask], dim=1)


def target_loss(backbone, batch: Batch, method: PromptMethod | None) -> torch.Tensor:
    """Mean cross-entropy over the target tokens of the batch (a float32 scalar); prompt and input never count.

    Calls ``prompt, embeds = method(inputs_embeds, attention_mask)`` once. ``method=None`` runs the model
    without a prompt.
    """
    logits, targets, _ = target_logits(backbone, batch, method)
    return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX)


def token_losses(backbone, batch: Batch, method: PromptMethod | MethodRows | None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of every target position ``[N]`` (float32) and the batch row it belongs to ``[N]``; a
    position that holds no target (seq2seq's label padding) has loss 0 and row -1 (kept, not removed: removing
    it would read the device to learn how many remain).

    :func:`target_loss` is the targets' mean; a packed group (``method`` a :class:`MethodRows`) takes one mean
    per run.
    """
    logits, targets, rows = target_logits(backbone, batch, method)
    losses = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX, reduction="none")
    return losses, torch.where(targets != IGNORE_INDEX, rows, -1)


def target_logits(backbone, batch: Batch, method) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logits [N, V], targets [N], rows [N])`` of the target positions (seq2seq: every label position,
    ``-100`` at padding), with the batch row of each."""
    if batch.labels is None:
        raise ValueError("loss: the batch has no targets (encode(inputs, targets, ...))")
    prompt, embeds, prompt_mask, blocks = prompted_inputs(backbone, batch, method)
    model = backbone.model
    if backbone.kind == "causal" and backbone.fast_loss and fast.supported(model):
        # Same loss and gradients, less work: no padding in the linear layers, the prompt computed once
        # per batch, the last layer and LM head only where targets are read (see backbones/fast.py).
        return fast.causal_target_logits(backbone, prompt, embeds, batch.attention_mask, batch.labels, prompt_mask,
                                         blocks)
    embeds, mask = with_prompt(prompt, embeds, batch.attention_mask, prompt_mask)
    if backbone.kind == "seq2seq":
        if prompt_mask is not None:  # prompts of several lengths: [prompt, input] together, padding after
            mask, embeds = _pack(mask, embeds, left=False)
        decoder_input_ids = model.prepare_decoder_input_ids_from_labels(labels=batch.labels)
        logits = model(inputs_embeds=embeds, attention_mask=mask,
                       decoder_input_ids=decoder_input_ids, use_cache=False).logits  # [B, T, V]
        rows = torch.arange(logits.shape[0], device=logits.device).repeat_interleave(logits.shape[1])
        return logits.flatten(0, 1), batch.labels.flatten(), rows

    # Causal: [prompt, input, target], real tokens packed to the left, padding at the end.
    labels = batch.labels
    target_mask = (labels != IGNORE_INDEX).long()
    target_embeds = backbone.embed(labels.clamp(min=0))
    embeds = torch.cat([embeds, target_embeds], dim=1)                       # [B, n + L + T, d]
    mask = torch.cat([mask, target_mask], dim=1)
    seq_labels = torch.cat([torch.full_like(mask[:, : -labels.shape[1]], IGNORE_INDEX), labels], dim=1)
    mask, embeds, seq_labels = _pack(mask, embeds, seq_labels, left=False)
    hidden = model.base_model(inputs_embeds=embeds, attention_mask=mask, position_ids=_positions(mask),
                              use_cache=False).last_hidden_state                # [B, S, d]
    # Position t predicts token t + 1: run the LM head only where that token is a target.
    next_labels = seq_labels[:, 1:]
    where = next_labels != IGNORE_INDEX
    logits = backbone._lm_head(hidden[:, :-1][where])                          # [N, V], N target tokens
    return logits, next_labels[where], where.nonzero()[:, 0]
