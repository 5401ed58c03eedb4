"""Encoding: text to token ids, the backbone's vocabulary, and the inputs cut before any prompt is added."""
from __future__ import annotations

import torch

from .batch import IGNORE_INDEX, TARGET_PREFIX, Batch


class Encoding:
    """Tokenize, truncate and pad batches (mixed into :class:`~superpos.backbones.core.Backbone`)."""

    def candidate_token_ids(self, top_k: int | None = None) -> torch.Tensor:
        """Ids ``[K]`` of tokens the tokenizer really produces, most frequent first.

        Excludes special tokens (pad, eos, unk, T5's ``<extra_id_*>``, chat markers) and embedding rows the
        tokenizer never produces (T5's 28 padding rows). Order is by id, which is the frequency proxy:
        SentencePiece stores pieces by descending score, byte-level BPE by merge rank (Lester et al. 2021
        sample from T5's 5,000 most common tokens this way). ``top_k`` keeps the first ``top_k`` (all of
        them if there are fewer).
        """
        if self._candidates is None:
            tok = self.tokenizer
            rows = min(len(tok), self.embedding_weight.shape[0])
            special = set(tok.all_special_ids)
            special |= {i for i, added in tok.added_tokens_decoder.items() if added.special}
            ids = [i for i in range(rows) if i not in special]
            self._candidates = torch.tensor(ids, dtype=torch.long)
        ids = self._candidates
        if top_k is not None:
            if top_k < 1:
                raise ValueError(f"top_k: must be >= 1, got {top_k}")
            ids = ids[:top_k]
        return ids.to(self.device)

    def token_ids(self, text: str) -> list[int]:
        """Token ids of a label word as it appears in a target, without special tokens.

        Causal models see targets as ``" " + text`` (so ``"positive"`` gives the one BPE token
        ``"Ġpositive"``); seq2seq targets are tokenized as they are.
        """
        if self.kind == "causal":
            text = TARGET_PREFIX + text
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    # -- batches
    def encode(self, inputs: list[str], targets: list[str] | None = None, max_input_tokens: int = 512,
               max_target_tokens: int = 16) -> Batch:
        """Tokenize a batch, padded on the right to its longest example.

        Inputs are cut to ``max_input_tokens`` here, *before* any prompt is prepended, so a long input
        never pushes prompt vectors out. Seq2seq inputs end with eos (inside the limit); causal inputs are
        ``[bos?] + input + SEPARATOR`` with the separator kept whole inside the limit. Targets are cut to
        ``max_target_tokens`` including their final eos.
        """
        if max_input_tokens < 1 or max_target_tokens < 1:
            raise ValueError("max_input_tokens and max_target_tokens must be >= 1")
        if targets is not None and len(targets) != len(inputs):
            raise ValueError(f"targets: {len(targets)} for {len(inputs)} inputs")
        tok = self.tokenizer
        if self.kind == "seq2seq":
            rows = tok(list(inputs), max_length=max_input_tokens, truncation=True).input_ids
            labels = None if targets is None else tok(list(targets), max_length=max_target_tokens,
                                                      truncation=True).input_ids
        else:
            room = max_input_tokens - len(self._input_prefix) - len(self._separator_ids)
            if room < 1:
                raise ValueError(f"max_input_tokens: {max_input_tokens} leaves no room beside the separator")
            plain = tok(list(inputs), add_special_tokens=False).input_ids
            rows = [self._input_prefix + ids[:room] + self._separator_ids for ids in plain]
            labels = None
            if targets is not None:
                plain = tok([TARGET_PREFIX + t for t in targets], add_special_tokens=False).input_ids
                labels = [ids[: max_target_tokens - 1] + [self.eos_token_id] for ids in plain]
        input_ids, attention_mask = self._pad(rows, self.pad_token_id)
        label_ids = None if labels is None else self._pad(labels, IGNORE_INDEX)[0]
        counted = sum(map(len, rows)) + (0 if labels is None else sum(map(len, labels)))
        return Batch(input_ids, attention_mask, label_ids, counted).to(self.device)

    def truncated_count(self, inputs: list[str], max_input_tokens: int) -> int:
        """How many of ``inputs`` :meth:`encode` would cut at ``max_input_tokens`` (same rule, same units)."""
        tok = self.tokenizer
        if self.kind == "seq2seq":
            return sum(len(ids) > max_input_tokens for ids in tok(list(inputs)).input_ids)
        room = max_input_tokens - len(self._input_prefix) - len(self._separator_ids)
        return sum(len(ids) > room for ids in tok(list(inputs), add_special_tokens=False).input_ids)

    @staticmethod
    def _pad(rows: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(1, max(len(r) for r in rows))
        ids = torch.full((len(rows), width), value, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        return ids, mask
