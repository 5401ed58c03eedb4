"""The frozen language model behind every prompt method: encode, loss, greedy generation, dropout.

Shapes used below: ``B`` batch, ``L`` input tokens, ``T`` target tokens, ``n`` prompt vectors,
``d`` embedding width, ``V`` rows of the input embedding table.

Two kinds of model:

- ``seq2seq`` (T5): the soft prompt is prepended to the *encoder* input embeddings only and the
  encoder attention mask grows by ``n``; the decoder is fed the labels as usual.
- ``causal`` (Llama, SmolLM2, Gemma): one sequence ``[prompt, input + SEPARATOR, " " + target + eos]``;
  the loss counts the target tokens only.
"""
from __future__ import annotations

import enum

import torch
from torch import nn

from .batch import SEPARATOR
from .dropout import DropoutSwitch
from .encoding import Encoding
from .generation import Generation
from .loss import Loss


class BackboneKind(str, enum.Enum):
    """Where a backbone takes the prompt (module docstring)."""

    SEQ2SEQ = "seq2seq"  # T5: before the encoder's input
    CAUSAL = "causal"    # Llama-style: before the input, one sequence with the target


class BackboneError(ValueError):
    """A backbone cannot be loaded or used as asked; the message is one line saying what to do."""


class Backbone(Encoding, Loss, Generation, DropoutSwitch):
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
        self._checkpoint_dropout = self._read_dropout()
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
