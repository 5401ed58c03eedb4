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

import contextlib
import dataclasses
import functools
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from . import fast

#: Causal models: text joined to every input, so the model knows an answer follows.
SEPARATOR = "\nAnswer:"
#: Causal models: text put before every target (BPE tokenizers fold the space into the word: " positive").
TARGET_PREFIX = " "
#: Label value that cross-entropy ignores (padding of the targets).
IGNORE_INDEX = fast.IGNORE_INDEX  # labels the loss skips (PyTorch cross-entropy's default)


class BackboneError(ValueError):
    """A backbone cannot be loaded or used as asked; the message is one line saying what to do."""


class PromptMethod(Protocol):
    """What a backbone needs of a prompt method (see ``superpos.methods``)."""

    def __call__(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, L, d], [B, L] -> (prompt [B, n, d], inputs_embeds [B, L, d])``."""


@dataclasses.dataclass
class Batch:
    """Token ids of a batch, right-padded to the longest example (dynamic padding).

    ``input_ids [B, L]`` and ``attention_mask [B, L]`` (1 = real token) hold the inputs, already truncated,
    without any prompt. ``labels [B, T]`` holds the target ids ending with eos, ``-100`` at padding;
    ``None`` when the batch is only for generation. Causal inputs already end with ``SEPARATOR``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def token_count(self) -> int:
        """Real (non-padding) input plus target tokens; prompt vectors not counted."""
        count = int(self.attention_mask.sum())
        if self.labels is not None:
            count += int((self.labels != IGNORE_INDEX).sum())
        return count

    def to(self, device) -> "Batch":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(move(self.input_ids), move(self.attention_mask), move(self.labels))

    @staticmethod
    def concat(batches: list["Batch"], pad_token_id: int) -> "Batch":
        """The batches one after another, ``[sum B, max L]`` (and ``[sum B, max T]`` targets), right-padded
        again to the longest of all; each row keeps its own tokens."""
        def cat(tensors: list[torch.Tensor], value: int) -> torch.Tensor:
            width = max(t.shape[1] for t in tensors)
            return torch.cat([F.pad(t, (0, width - t.shape[1]), value=value) for t in tensors])

        labels = None if batches[0].labels is None else cat([b.labels for b in batches], IGNORE_INDEX)
        return Batch(cat([b.input_ids for b in batches], pad_token_id),
                     cat([b.attention_mask for b in batches], 0), labels)


class MethodRows:
    """Several prompt methods over one batch: consecutive blocks of rows, each through its own method (the runs
    of a packed group, ``superpos.engine.packed``). ``sizes`` holds the rows of each method, in batch order.

    Called like a method, it returns ``(prompt [B, n, d], inputs_embeds [B, L, d], prompt_mask [B, n])`` with
    ``n`` the longest prompt: a shorter prompt is padded at its start, ``prompt_mask`` 0 there, so every row
    reads ``[padding, its prompt, its input]`` and the backbone moves the padding out of the way.
    """

    def __init__(self, methods: list, sizes: list[int]):
        if len(methods) != len(sizes):
            raise ValueError(f"MethodRows: {len(methods)} methods for {len(sizes)} row blocks")
        self.methods, self.sizes = list(methods), [int(size) for size in sizes]

    def __call__(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor):
        prompts, embeds, start = [], [], 0
        for method, size in zip(self.methods, self.sizes):
            prompt, rows = method(inputs_embeds[start:start + size], attention_mask[start:start + size])
            prompts.append(prompt)
            embeds.append(rows.to(inputs_embeds.dtype))
            start += size
        if start != inputs_embeds.shape[0]:
            raise ValueError(f"MethodRows: blocks of {sum(self.sizes)} rows for a batch of {inputs_embeds.shape[0]}")
        n = max(prompt.shape[1] for prompt in prompts)
        masks = [F.pad(attention_mask.new_ones(p.shape[:2]), (n - p.shape[1], 0)) for p in prompts]  # [b, n]
        prompts = [F.pad(p.to(prompts[0].dtype), (0, 0, n - p.shape[1], 0)) for p in prompts]         # [b, n, d]
        return torch.cat(prompts), torch.cat(embeds), torch.cat(masks)


def _pack(mask: torch.Tensor, *tensors: torch.Tensor, left: bool) -> tuple[torch.Tensor, ...]:
    """Move the real positions of every row together, keeping their order; padding goes right or left.

    ``mask [B, S]``; each tensor ``[B, S, ...]`` is permuted the same way. Returns ``(mask, *tensors)``.
    A stable sort on the mask is that permutation: it lets the prompt sit right before the real tokens
    whatever padding the inputs came with.
    """
    key = mask.long() if left else 1 - mask.long()
    order = torch.argsort(key, dim=1, stable=True)
    out = [mask.gather(1, order)]
    for t in tensors:
        index = order.view(*order.shape, *([1] * (t.dim() - 2))).expand(*order.shape, *t.shape[2:])
        out.append(t.gather(1, index))
    return tuple(out)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids ``[B, S]`` counting real tokens only, so a padded row sees the same positions as alone."""
    return (mask.long().cumsum(1) - 1).clamp(min=0)


def _sublayer_dropout(rate: float, module: nn.Module, args, output):
    """Forward hook: dropout on a sublayer's output before the residual add (only in train mode)."""
    if not module.training or rate == 0.0:
        return None
    if isinstance(output, tuple):
        return (F.dropout(output[0], rate, training=True),) + tuple(output[1:])
    return F.dropout(output, rate, training=True)


# Float attributes that models read at forward time as a dropout probability (T5Attention.dropout,
# LlamaAttention.attention_dropout, ...). ``nn.Dropout`` modules are handled separately.
_DROPOUT_ATTRIBUTES = ("dropout", "attention_dropout", "attn_dropout", "hidden_dropout", "dropout_rate",
                       "activation_dropout", "resid_dropout", "embd_dropout")


class Backbone:
    """A frozen Hugging Face model plus its tokenizer, with the few operations prompt tuning needs.

    Attributes: ``name``, ``kind`` (``"seq2seq"`` or ``"causal"``), ``model`` (all parameters frozen),
    ``tokenizer``, ``embed_dim`` (``d``), ``device``, ``dtype``, ``source`` (where it came from),
    ``dropout_rate`` (the rate now in force, 0.0 when off), ``checkpoint_dropout_rate``.
    Build one with :func:`superpos.backbones.load_backbone`.
    """

    def __init__(self, name: str, kind: str, model: nn.Module, tokenizer, *, source: str = ""):
        if kind not in ("seq2seq", "causal"):
            raise ValueError(f"kind: expected 'seq2seq' or 'causal', got {kind!r}")
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

    def train_mode(self, enabled: bool = True) -> None:
        """Put the frozen model in train mode (dropout acts, if :meth:`set_dropout` enabled it) or eval mode."""
        self.model.train(enabled)

    # -- vocabulary
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
        return Batch(input_ids, attention_mask, label_ids).to(self.device)

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

    def _prompted_inputs(self, batch: Batch, method: PromptMethod | MethodRows | None):
        """``(prompt [B, n, d], inputs_embeds [B, L, d], prompt_mask [B, n] or None)`` in the model's dtype; ``n``
        is 0 without a method; ``prompt_mask`` is None when every row has all ``n`` prompt vectors (one method)."""
        embeds = self.embed(batch.input_ids)
        if method is None:
            return embeds.new_zeros(embeds.shape[0], 0, embeds.shape[2]), embeds, None
        if isinstance(method, MethodRows):
            prompt, embeds, prompt_mask = method(embeds, batch.attention_mask)
        else:
            (prompt, embeds), prompt_mask = method(embeds, batch.attention_mask), None
        if prompt.dim() != 3 or prompt.shape[0] != embeds.shape[0] or prompt.shape[2] != self.embed_dim:
            raise ValueError(f"method returned a prompt of shape {list(prompt.shape)}; expected "
                             f"[{embeds.shape[0]}, n, {self.embed_dim}]")
        return prompt.to(self.dtype), embeds.to(self.dtype), prompt_mask

    def _with_prompt(self, prompt: torch.Tensor, embeds: torch.Tensor, mask: torch.Tensor,
                     prompt_mask: torch.Tensor | None = None):
        """``[prompt, inputs]``: embeddings ``[B, n + L, d]`` and the mask grown by ``prompt_mask`` (ones when None)."""
        ones = mask.new_ones(mask.shape[0], prompt.shape[1]) if prompt_mask is None else prompt_mask.to(mask.dtype)
        return torch.cat([prompt, embeds], dim=1), torch.cat([ones, mask], dim=1)

    # -- loss
    def loss(self, batch: Batch, method: PromptMethod | None) -> torch.Tensor:
        """Mean cross-entropy over the target tokens of the batch (a scalar); prompt and input never count.

        Calls ``prompt, embeds = method(inputs_embeds, attention_mask)`` once. ``method=None`` runs the
        model without a prompt.
        """
        logits, targets, _ = self._target_logits(batch, method)
        return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX)

    def token_losses(self, batch: Batch, method: PromptMethod | MethodRows | None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of every target token ``[N]`` (float32) and the batch row it belongs to ``[N]``.

        ``loss`` is their mean; a packed group (``method`` a :class:`MethodRows`) takes one mean per run.
        """
        logits, targets, rows = self._target_logits(batch, method)
        keep = targets != IGNORE_INDEX
        losses = F.cross_entropy(logits.float()[keep], targets[keep], reduction="none")
        return losses, rows[keep]

    def _target_logits(self, batch: Batch, method) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits [N, V], targets [N], rows [N])`` of the target positions (seq2seq: every label position,
        ``-100`` at padding), with the batch row of each."""
        if batch.labels is None:
            raise ValueError("loss: the batch has no targets (encode(inputs, targets, ...))")
        prompt, embeds, prompt_mask = self._prompted_inputs(batch, method)
        if self.kind == "causal" and self.fast_loss and fast.supported(self.model):
            # Same loss and gradients, less work: no padding in the linear layers, the prompt computed once
            # per batch, the last layer and LM head only where targets are read (see backbones/fast.py).
            blocks = method.sizes if isinstance(method, MethodRows) else None
            return fast.causal_target_logits(self, prompt, embeds, batch.attention_mask, batch.labels, prompt_mask,
                                             blocks)
        embeds, mask = self._with_prompt(prompt, embeds, batch.attention_mask, prompt_mask)
        if self.kind == "seq2seq":
            if prompt_mask is not None:  # prompts of several lengths: [prompt, input] together, padding after
                mask, embeds = _pack(mask, embeds, left=False)
            decoder_input_ids = self.model.prepare_decoder_input_ids_from_labels(labels=batch.labels)
            logits = self.model(inputs_embeds=embeds, attention_mask=mask,
                                decoder_input_ids=decoder_input_ids, use_cache=False).logits  # [B, T, V]
            rows = torch.arange(logits.shape[0], device=logits.device).repeat_interleave(logits.shape[1])
            return logits.flatten(0, 1), batch.labels.flatten(), rows

        # Causal: [prompt, input, target], real tokens packed to the left, padding at the end.
        labels = batch.labels
        target_mask = (labels != IGNORE_INDEX).long()
        target_embeds = self.embed(labels.clamp(min=0))
        embeds = torch.cat([embeds, target_embeds], dim=1)                       # [B, n + L + T, d]
        mask = torch.cat([mask, target_mask], dim=1)
        seq_labels = torch.cat([torch.full_like(mask[:, : -labels.shape[1]], IGNORE_INDEX), labels], dim=1)
        mask, embeds, seq_labels = _pack(mask, embeds, seq_labels, left=False)
        hidden = self.model.base_model(inputs_embeds=embeds, attention_mask=mask, position_ids=_positions(mask),
                                       use_cache=False).last_hidden_state       # [B, S, d]
        # Position t predicts token t + 1: run the LM head only where that token is a target.
        next_labels = seq_labels[:, 1:]
        where = next_labels != IGNORE_INDEX
        logits = self._lm_head(hidden[:, :-1][where])                           # [N, V], N target tokens
        return logits, next_labels[where], where.nonzero()[:, 0]

    def _lm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Causal LM head on selected hidden states ``[..., d] -> [..., V]`` (with Gemma's soft cap)."""
        logits = self.model.get_output_embeddings()(hidden)
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits

    # -- generation
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
        prompt, embeds, prompt_mask = self._prompted_inputs(batch, method)
        embeds, mask = self._with_prompt(prompt, embeds, batch.attention_mask, prompt_mask)
        if self.kind == "seq2seq" and prompt_mask is not None:  # as in the loss: padding after [prompt, input]
            mask, embeds = _pack(mask, embeds, left=False)
        return (self._seq2seq_steps if self.kind == "seq2seq" else self._causal_steps)(embeds, mask)

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
                             decoder_input_ids=previous[:, None], past_key_values=state["past"], use_cache=True)
            state["past"] = out.past_key_values
            return out.logits[:, -1].float()
        return step

    def _causal_steps(self, embeds: torch.Tensor, mask: torch.Tensor):
        """Step function for causal LMs: left-pack ``[pad, prompt, input]``, then one token at a time."""
        mask, embeds = _pack(mask, embeds, left=True)
        state = {"mask": mask, "positions": _positions(mask), "past": None}

        def step(previous):
            if previous is None:
                inputs = {"inputs_embeds": embeds}
            else:
                state["mask"] = torch.cat([state["mask"], state["mask"].new_ones(len(previous), 1)], dim=1)
                state["positions"] = state["positions"][:, -1:] + 1
                inputs = {"input_ids": previous[:, None]}
            out = self.model.base_model(**inputs, attention_mask=state["mask"], position_ids=state["positions"],
                                        past_key_values=state["past"], use_cache=True)
            state["past"] = out.past_key_values
            return self._lm_head(out.last_hidden_state[:, -1]).float()
        return step

    # -- dropout of the frozen network
    def _read_dropout(self) -> list[tuple[object, str, float]]:
        """Every dropout probability of the model as ``(owner, attribute, checkpoint value)``.

        Owners are ``nn.Dropout`` modules (``p``), modules with a float dropout attribute read at forward
        time (``T5Attention.dropout``, ``LlamaAttention.attention_dropout``) and the config objects.
        """
        found = []
        for module in self.model.modules():
            if isinstance(module, nn.Dropout):
                found.append((module, "p", float(module.p)))
                continue
            for attr in _DROPOUT_ATTRIBUTES:
                value = module.__dict__.get(attr)
                if isinstance(value, float):
                    found.append((module, attr, value))
        configs = [self.model.config, getattr(self.model.config, "text_config", None)]
        for config in {id(c): c for c in configs if c is not None}.values():
            for key, value in vars(config).items():
                if "dropout" in key and isinstance(value, float) and not key.startswith("classifier"):
                    found.append((config, key, value))
        return found

    def _write_dropout(self, rate_of: Callable[[float], float]) -> None:
        for owner, attr, original in self._checkpoint_dropout:
            setattr(owner, attr, rate_of(original))

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
                raise ValueError(f"dropout_rate: {self.name} has no dropout of its own (it was pretrained "
                                 f"without); pass a rate, e.g. dropout_rate=0.1")
            self._write_dropout(lambda original: original)
            self.dropout_rate = self.checkpoint_dropout_rate
            return
        rate = float(rate)
        self._write_dropout(lambda original: rate)
        if not any(isinstance(owner, nn.Dropout) for owner, _, _ in self._checkpoint_dropout):
            # No dropout modules to set (Llama-style): add dropout after each sublayer.
            self._hooks = [module.register_forward_hook(functools.partial(_sublayer_dropout, rate))
                           for module in self._sublayers()]
        self.dropout_rate = rate

    def _sublayers(self) -> list[nn.Module]:
        """Attention and MLP blocks of every decoder layer (Llama/Gemma/Qwen naming)."""
        found = [module for path, module in self.model.named_modules()
                 if path.rsplit(".", 1)[-1] in ("self_attn", "mlp")]
        if not found:
            raise ValueError(f"dropout_rate: cannot place dropout in {type(self.model).__name__} "
                             f"(no self_attn/mlp sublayers)")
        return found
