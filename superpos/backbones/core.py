"""The frozen language model behind every prompt method: encode, loss, greedy generation, dropout.

Shapes used below: ``B`` batch, ``L`` input tokens, ``T`` target tokens, ``n`` prompt vectors,
``d`` embedding width, ``V`` rows of the input embedding table.

Two kinds of model:

- ``seq2seq`` (T5): the soft prompt is prepended to the *encoder* input embeddings only and the
  encoder attention mask grows by ``n``; the decoder is fed the labels as usual.
- ``causal`` (Llama, SmolLM2, Gemma): one sequence ``[prompt, input + SEPARATOR, " " + target + eos]``;
  the loss counts the target tokens only.

:class:`Backbone` holds the model, its tokenizer and basic facts, encodes batches and switches the dropout; the
loss is computed in ``loss.py`` and greedy decoding in ``generation.py``, whose functions its methods call.
"""
from __future__ import annotations

import enum
from typing import Callable

import torch
from torch import nn

from . import fast
from . import generation as _generation
from . import loss as _loss
from .batch import IGNORE_INDEX, SEPARATOR, TARGET_PREFIX, Batch, MethodRows, PromptMethod
from .dropout import add_sublayer_dropout, read_dropout
from .names import NO_OWN_DROPOUT


class BackboneKind(str, enum.Enum):
    """Where a backbone takes the prompt (module docstring)."""

    SEQ2SEQ = "seq2seq"  # T5: before the encoder's input
    CAUSAL = "causal"    # Llama-style: before the input, one sequence with the target


class BackboneError(ValueError):
    """A backbone cannot be loaded or used as asked; the message is one line saying what to do."""


class Backbone:
    """A frozen Hugging Face model plus its tokenizer, with the few operations prompt tuning needs.

    Attributes: ``name``, ``kind`` (``"seq2seq"`` or ``"causal"``), ``model`` (all parameters frozen),
    ``tokenizer``, ``embed_dim`` (``d``), ``device``, ``dtype``, ``source`` (where it came from),
    ``dropout_rate`` (the rate now in force, 0.0 when off), ``checkpoint_dropout_rate``.
    Build one with :func:`superpos.backbones.load_backbone`.
    """

    def __init__(self, name: str, kind: str, model: nn.Module, tokenizer, *, source: str = ""):
        if kind not in tuple(BackboneKind):
            raise ValueError(f"kind: expected one of {', '.join(k.value for k in BackboneKind)}, got {kind!r}")
        kind = BackboneKind(kind).value  # a plain string in records and reprs
        self.name, self.kind, self.model, self.tokenizer, self.source = name, kind, model, tokenizer, source
        model.requires_grad_(False)
        model.eval()
        if tokenizer.pad_token_id is None:  # Llama-style tokenizers ship without one; pads are masked anyway
            tokenizer.pad_token = tokenizer.eos_token
        self.pad_token_id = int(tokenizer.pad_token_id)
        self.eos_token_id = int(tokenizer.eos_token_id)
        self.embed_dim = int(model.get_input_embeddings().weight.shape[1])
        self._candidates: torch.Tensor | None = None
        #: Use the exact fast training loss of ``backbones/fast.py`` where it applies (Llama models, no dropout
        #: acting); ``False`` forces the plain Hugging Face forward (benchmarks compare both).
        self.fast_loss = True
        #: Start greedy generation with the fast path's first step where ``fast.prefills`` says so (bf16/fp16 on a
        #: CPU; Llama models); ``False`` keeps Hugging Face's forward for it.
        self.fast_prefill = True
        self._hooks: list = []
        # The checkpoint's own dropout, recorded once so set_dropout(True) can bring it back.
        self._checkpoint_dropout = read_dropout(model)
        self.checkpoint_dropout_rate = max((v for owner, _, v in self._checkpoint_dropout
                                            if isinstance(owner, nn.Module)), default=0.0)
        self.dropout_rate = self.checkpoint_dropout_rate
        if kind == "causal":
            probe = tokenizer("a").input_ids
            plain = tokenizer("a", add_special_tokens=False).input_ids
            # Special ids the tokenizer puts before a text (a BOS for Llama; nothing for SmolLM2).
            self._input_prefix = probe[: len(probe) - len(plain)] if probe[len(probe) - len(plain):] == plain else []
            self._separator_ids = tokenizer(SEPARATOR, add_special_tokens=False).input_ids

    def __repr__(self) -> str:
        return (f"Backbone({self.name!r}, kind={self.kind!r}, d={self.embed_dim}, params={self.parameter_count():,}, "
                f"dtype={self.dtype}, device={self.device}, dropout={self.dropout_rate})")

    # -- basic facts
    @property
    def device(self) -> torch.device:
        return self.embedding_weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embedding_weight.dtype

    @property
    def embedding_weight(self) -> torch.Tensor:
        """The frozen input embedding table ``[V, d]`` (the model's own tensor, not a copy).

        ``V`` can exceed the tokenizer (T5: 32128 rows, 32100 tokens); use :meth:`candidate_token_ids`
        to pick rows.
        """
        return self.model.get_input_embeddings().weight

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``[B, L] -> [B, L, d]`` through the model's own embedding module (keeps any built-in scaling)."""
        return self.model.get_input_embeddings()(input_ids)

    def _lm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Causal LM head on selected hidden states ``[..., d] -> [..., V]`` (with Gemma's soft cap)."""
        logits = self.model.get_output_embeddings()(hidden)
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def info(self) -> dict:
        """Small JSON-able description for run records."""
        return {"name": self.name, "kind": self.kind, "source": self.source, "embed_dim": self.embed_dim,
                "parameters": self.parameter_count(), "vocab_rows": int(self.embedding_weight.shape[0]),
                "tokenizer_size": len(self.tokenizer), "dtype": str(self.dtype).replace("torch.", ""),
                "device": str(self.device), "dropout_rate": self.dropout_rate,
                "checkpoint_dropout_rate": self.checkpoint_dropout_rate,
                "separator": SEPARATOR if self.kind == "causal" else None}

    # -- the vocabulary
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

    # -- encoding
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
        input_ids, attention_mask = _pad(rows, self.pad_token_id)
        label_ids = None if labels is None else _pad(labels, IGNORE_INDEX)[0]
        counted = sum(map(len, rows)) + (0 if labels is None else sum(map(len, labels)))
        return Batch(input_ids, attention_mask, label_ids, counted).to(self.device)

    def truncated_count(self, inputs: list[str], max_input_tokens: int) -> int:
        """How many of ``inputs`` :meth:`encode` would cut at ``max_input_tokens`` (same rule, same units)."""
        tok = self.tokenizer
        if self.kind == "seq2seq":
            return sum(len(ids) > max_input_tokens for ids in tok(list(inputs)).input_ids)
        room = max_input_tokens - len(self._input_prefix) - len(self._separator_ids)
        return sum(len(ids) > room for ids in tok(list(inputs), add_special_tokens=False).input_ids)

    # -- the loss (loss.py)
    def loss(self, batch: Batch, method: PromptMethod | None) -> torch.Tensor:
        """Mean cross-entropy over the target tokens of the batch (a float32 scalar); prompt and input never count.

        Calls ``prompt, embeds = method(inputs_embeds, attention_mask)`` once. ``method=None`` runs the model
        without a prompt (:func:`~superpos.backbones.loss.target_loss`).
        """
        return _loss.target_loss(self, batch, method)

    def token_losses(self, batch: Batch, method: PromptMethod | MethodRows | None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of every target position ``[N]`` and its batch row ``[N]`` (-1 where no target), for
        packed groups (:func:`~superpos.backbones.loss.token_losses`)."""
        return _loss.token_losses(self, batch, method)

    # -- greedy generation (generation.py)
    def generate(self, batch: Batch, method: PromptMethod | None, max_new_tokens: int) -> list[str]:
        """Greedy decoding, one string per example: special tokens dropped, whitespace stripped.

        Runs the model in eval mode (no dropout) and restores its mode afterwards. A batch gives the same
        tokens as its examples one at a time (:func:`~superpos.backbones.generation.generate_ids`).
        """
        return self.decode(self.generate_ids(batch, method, max_new_tokens))

    def generate_ids(self, batch: Batch, method: PromptMethod | None, max_new_tokens: int) -> list[list[int]]:
        """Greedy token ids per example, cut before the first eos (eos itself not included)."""
        return _generation.generate_ids(self, batch, method, max_new_tokens)

    def next_token_logits(self, batch: Batch, method: PromptMethod | None) -> torch.Tensor:
        """Float logits ``[B, V]`` of the first answer token (the first greedy step), in eval mode."""
        return _generation.next_token_logits(self, batch, method)

    def decode(self, token_ids: list[list[int]]) -> list[str]:
        """Texts of greedy token ids: special tokens dropped, whitespace stripped."""
        return [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in token_ids]

    def fast_first_step(self) -> bool:
        """Whether greedy generation's first step goes through the fast path (:func:`fast.causal_prefill`): a Llama
        backbone in bf16/fp16 on a CPU, ``fast_prefill`` on. Generation runs in eval mode, where dropout does not
        act."""
        return (self.kind == "causal" and self.fast_prefill and fast.prefills(self.dtype, self.device)
                and fast.supported(self.model, training=False))

    # -- the dropout switch (dropout.py)
    def train_mode(self, enabled: bool = True) -> None:
        """Put the frozen model in train mode (dropout acts, if :meth:`set_dropout` enabled it) or eval mode."""
        self.model.train(enabled)

    def set_dropout(self, enabled: bool, rate: float | None = None) -> None:
        """Switch the dropout of the frozen network.

        ``enabled=False`` sets every dropout probability to 0 (each ``nn.Dropout.p`` and each attention
        module's dropout attribute, plus the config fields), so the network is deterministic even in train
        mode, as when the engine trains a method next to it.

        ``enabled=True`` and ``rate=None`` restores the checkpoint's own rates (T5 v1.1 lm-adapt: 0.1).
        ``enabled=True`` with ``rate`` uses ``rate`` everywhere. A checkpoint without dropout needs ``rate``
        (``ValueError`` otherwise): SmolLM2 was pretrained without dropout (its only field,
        ``attention_dropout``, is 0.0), so dropout there is an addition, not the pretraining setting. For such
        models ``rate`` goes on the attention probabilities and, through forward hooks, on the output of every
        attention and MLP sublayer before its residual add (where T5 puts it).

        Dropout only acts in train mode (:meth:`train_mode`).
        """
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        if not enabled:
            self._write_dropout(lambda original: 0.0)
            self.dropout_rate = 0.0
            return
        if rate is not None and not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"dropout_rate: must be in [0, 1), got {rate}")
        if rate is None:
            if self.checkpoint_dropout_rate == 0.0:
                raise ValueError(f"dropout_rate: {NO_OWN_DROPOUT.format(name=self.name)}")
            self._write_dropout(lambda original: original)
            self.dropout_rate = self.checkpoint_dropout_rate
            return
        rate = float(rate)
        self._write_dropout(lambda original: rate)
        if not any(isinstance(owner, nn.Dropout) for owner, _, _ in self._checkpoint_dropout):
            # No dropout modules to set (Llama-style): add dropout after each sublayer.
            self._hooks = add_sublayer_dropout(self.model, rate)
        self.dropout_rate = rate

    def _write_dropout(self, rate_of: Callable[[float], float]) -> None:
        """Set every dropout probability recorded at load to ``rate_of(its checkpoint value)``."""
        for owner, attr, original in self._checkpoint_dropout:
            setattr(owner, attr, rate_of(original))


def _pad(rows: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ids padded on the right with ``value``: ``(ids [B, W], mask [B, W])``, ``W`` the longest row (at
    least 1)."""
    width = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask
