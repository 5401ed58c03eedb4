"""What a backbone reads and returns: encoded batches, the prompt-method protocol, packed method rows.

Shapes: ``B`` batch, ``L`` input tokens, ``T`` target tokens, ``n`` prompt vectors, ``d`` embedding width.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F


#: Causal models: text joined to every input, so the model knows an answer follows.
SEPARATOR = "\nAnswer:"
#: Causal models: text put before every target (BPE tokenizers fold the space into the word: " positive").
TARGET_PREFIX = " "
#: Label value that cross-entropy ignores (padding of the targets).
IGNORE_INDEX = -100  # labels the loss skips (PyTorch cross-entropy's default)


class PromptBlock(NamedTuple):
    """Consecutive rows of a batch that one method prompts (one run of a packed group; the whole batch alone)."""

    rows: int     # how many rows
    length: int   # its prompt's vectors (a shorter prompt than the batch's ``n`` is left-padded to it)
    shared: bool  # every row holds the same prompt (an input-independent method): computed once


def same_rows(prompt: torch.Tensor) -> bool:
    """Whether every row of ``prompt [b, n, d]`` is one prompt, read from its layout alone (no value is read, so
    no wait on a GPU): a single row, or one prompt expanded over the rows (stride 0), as every input-independent
    method returns it. A prompt copied into each row counts as per-row: still exact, only not computed once."""
    return prompt.shape[0] <= 1 or prompt.stride(0) == 0


def to_device(values: list, device: torch.device, dtype: torch.dtype = torch.long) -> torch.Tensor:
    """A host list as a tensor on ``device``. On a GPU through pinned memory and a non-blocking copy: a copy from
    pageable memory would make the host wait for all work queued before it."""
    tensor = torch.tensor(values, dtype=dtype)
    return tensor.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else tensor


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
    #: ``token_count`` as the encoder counted it from the token lists: reading it never waits on a GPU.
    counted_tokens: int | None = dataclasses.field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def token_count(self) -> int:
        """Real (non-padding) input plus target tokens; prompt vectors not counted."""
        if self.counted_tokens is not None:
            return self.counted_tokens
        count = int(self.attention_mask.sum())
        if self.labels is not None:
            count += int((self.labels != IGNORE_INDEX).sum())
        return count

    def to(self, device) -> "Batch":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(move(self.input_ids), move(self.attention_mask), move(self.labels), self.counted_tokens)

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
    reads ``[padding, its prompt, its input]`` and the backbone moves the padding out of the way. After a call,
    ``blocks`` describes each method's rows and prompt (``PromptBlock``), read from shapes and layouts only.
    """

    def __init__(self, methods: list, sizes: list[int]):
        if len(methods) != len(sizes):
            raise ValueError(f"MethodRows: {len(methods)} methods for {len(sizes)} row blocks")
        self.methods, self.sizes = list(methods), [int(size) for size in sizes]
        self.blocks: list[PromptBlock] = []

    def __call__(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor):
        if sum(self.sizes) != inputs_embeds.shape[0]:
            raise ValueError(f"MethodRows: blocks of {sum(self.sizes)} rows for a batch of {inputs_embeds.shape[0]}")
        prompts, embeds, start = [], [], 0
        for method, size in zip(self.methods, self.sizes):
            prompt, rows = method(inputs_embeds[start:start + size], attention_mask[start:start + size])
            prompts.append(prompt)
            embeds.append(rows.to(inputs_embeds.dtype))
            start += size
        self.blocks = [PromptBlock(size, p.shape[1], same_rows(p)) for size, p in zip(self.sizes, prompts)]
        n = max(block.length for block in self.blocks)
        row_lengths = to_device([block.length for block in self.blocks for _ in range(block.rows)],
                                     inputs_embeds.device)
        positions = torch.arange(n, device=inputs_embeds.device)
        prompt_mask = (positions >= n - row_lengths[:, None]).to(attention_mask.dtype)                  # [B, n]
        dtype = prompts[0].dtype
        prompts = [p.to(dtype) if p.shape[1] == n else F.pad(p.to(dtype), (0, 0, n - p.shape[1], 0))
                   for p in prompts]                                                                     # [b, n, d]
        return torch.cat(prompts), torch.cat(embeds), prompt_mask


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
