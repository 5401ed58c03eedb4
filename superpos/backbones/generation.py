"""Greedy generation with a prompt: one KV-cached step at a time, a batch as its examples alone."""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from transformers import DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast

from . import fast
from .batch import Batch, PromptMethod, _pack, _positions


# The KV cache's name in model calls and outputs: later transformers 5.x renamed `past_key_values` to `cache`
# (the old name still works there, with a warning on every call).
_CACHE = "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"


class Generation:
    """Greedy decoding (mixed into :class:`~superpos.backbones.core.Backbone`)."""

    @torch.no_grad()
    def generate(self, batch: Batch, method: PromptMethod | None, max_new_tokens: int) -> list[str]:
        """Greedy decoding, one string per example: special tokens dropped, whitespace stripped.

        Runs the model in eval mode (no dropout) and restores its mode afterwards. A batch gives the same
        tokens as its examples one at a time: causal batches are left-padded so the prompt sits right
        before each example's real tokens, with positions counted over real tokens only.
        """
        return self.decode(self.generate_ids(batch, method, max_new_tokens))

    def decode(self, token_ids: list[list[int]]) -> list[str]:
        """Texts of greedy token ids: special tokens dropped, whitespace stripped."""
        return [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in token_ids]

    @torch.no_grad()
    def next_token_logits(self, batch: Batch, method: PromptMethod | None) -> torch.Tensor:
        """Float logits ``[B, V]`` of the first answer token (the first greedy step), in eval mode."""
        with self._eval_mode():
            return self._step_function(batch, method)(None)

    @torch.no_grad()
    def generate_ids(self, batch: Batch, method: PromptMethod | None, max_new_tokens: int) -> list[list[int]]:
        """Greedy token ids per example, cut before the first eos (eos itself not included)."""
        with self._eval_mode():
            return self._greedy(self._step_function(batch, method), len(batch), max_new_tokens)

    @contextlib.contextmanager
    def _eval_mode(self):
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)

    def _step_function(self, batch: Batch, method: PromptMethod | None):
        prompt, embeds, prompt_mask, blocks = self._prompted_inputs(batch, method)
        first = None
        if self.fast_first_step():
            # The first step without padding or repeated prompts (backbones/fast.py); the later steps as below.
            first = fast.causal_prefill(self, prompt, embeds, batch.attention_mask, prompt_mask, blocks)
        embeds, mask = self._with_prompt(prompt, embeds, batch.attention_mask, prompt_mask)
        if self.kind == "seq2seq":
            if prompt_mask is not None:  # as in the loss: padding after [prompt, input]
                mask, embeds = _pack(mask, embeds, left=False)
            return self._seq2seq_steps(embeds, mask)
        return self._causal_steps(embeds, mask, first)

    def fast_first_step(self) -> bool:
        """Whether greedy generation's first step goes through the fast path (:func:`fast.causal_prefill`): a Llama
        backbone in bf16/fp16 on a CPU, ``fast_prefill`` on. Generation runs in eval mode, where dropout does not
        act."""
        return (self.kind == "causal" and self.fast_prefill and fast.prefills(self.dtype, self.device)
                and fast.supported(self.model, training=False))

    def _greedy(self, step: Callable, batch_size: int, max_new_tokens: int) -> list[list[int]]:
        """Drive a step function ``previous tokens [B] | None -> next-token logits [B, V]`` greedily."""
        out: list[list[int]] = [[] for _ in range(batch_size)]
        finished = torch.zeros(batch_size, dtype=torch.bool, device=self.device)
        previous = None
        producible = min(len(self.tokenizer), self.embedding_weight.shape[0])
        for _ in range(max_new_tokens):
            # Rows past the tokenizer (T5's padding rows) are never a token: a random model could pick them.
            token = step(previous)[:, :producible].argmax(-1)                   # [B]
            token = torch.where(finished, torch.full_like(token, self.eos_token_id), token)
            for i, (t, done) in enumerate(zip(token.tolist(), finished.tolist())):  # one device sync
                if not done and t != self.eos_token_id:
                    out[i].append(t)
            finished |= token == self.eos_token_id
            if bool(finished.all()):
                break
            previous = token
        return out

    def _seq2seq_steps(self, embeds: torch.Tensor, mask: torch.Tensor):
        """Step function for T5: encode ``[prompt, input]`` once, then decode with the KV cache."""
        encoder_outputs = self.model.get_encoder()(inputs_embeds=embeds, attention_mask=mask)
        start = self.model.config.decoder_start_token_id
        state = {"past": None}

        def step(previous):
            if previous is None:
                previous = torch.full((embeds.shape[0],), start, dtype=torch.long, device=embeds.device)
            out = self.model(encoder_outputs=encoder_outputs, attention_mask=mask,
                             decoder_input_ids=previous[:, None], use_cache=True, **{_CACHE: state["past"]})
            state["past"] = getattr(out, _CACHE)
            return out.logits[:, -1].float()
        return step

    def _causal_steps(self, embeds: torch.Tensor, mask: torch.Tensor, first=None):
        """Step function for causal LMs: left-pack ``[pad, prompt, input]``, then one token at a time. ``first``:
        the first step already computed, ``(logits [B, V], per-layer keys and values)`` in that layout
        (:func:`~superpos.backbones.fast.causal_prefill`)."""
        mask, embeds = _pack(mask, embeds, left=True)
        state = {"mask": mask, "positions": _positions(mask), "past": None}

        def step(previous):
            if previous is None and first is not None:
                logits, keys_values = first
                state["past"] = DynamicCache(config=self.model.config)
                for index, (keys, values) in enumerate(keys_values):
                    state["past"].update(keys, values, index)
                return logits
            if previous is None:
                inputs = {"inputs_embeds": embeds}
            else:
                state["mask"] = torch.cat([state["mask"], state["mask"].new_ones(len(previous), 1)], dim=1)
                state["positions"] = state["positions"][:, -1:] + 1
                inputs = {"input_ids": previous[:, None]}
            out = self.model.base_model(**inputs, attention_mask=state["mask"], position_ids=state["positions"],
                                        use_cache=True, **{_CACHE: state["past"]})
            state["past"] = getattr(out, _CACHE)
            return self._lm_head(out.last_hidden_state[:, -1]).float()
        return step
