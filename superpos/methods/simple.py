"""Simple prompt tuning (Lester et al., 2021): ``n`` free prompt vectors prepended to the input.

Initializations (Lester et al. 2021, §3 / Fig. 3b):

- ``uniform``: every entry from U[-0.5, 0.5] (Lester's "random uniform"; lands off the embedding
  manifold and learns poorly, as Lester et al. report).
- ``vocab``: ``n`` distinct real token embeddings, sampled uniformly from the backbone's candidate
  tokens, or from its ``vocab_top_k`` most frequent ones (Lester used the 5,000 most frequent). The
  SuperPos paper §4.4 samples from the whole embedding layer: ``vocab_top_k=None``, the default.
- ``labels``: row ``i`` is the embedding of class label word ``i`` (the mean of its token embeddings
  when a label spans several tokens); rows beyond the number of labels are vocab-sampled as above.
  Needs ``label_words`` at build time (regression tasks have none).
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..config import option, require
from .base import PROMPT_INITS, MethodConfig, PromptMethod, embedding_rows, sample_unique_ids, vocab_top_k_option


@dataclasses.dataclass
class SimpleConfig(MethodConfig):
    """Lester et al. prompt tuning; defaults from the SuperPos paper §4.4 (lr 0.01, weight decay 0.01)."""

    kind = "simple"

    init: str = option("vocab", choices=PROMPT_INITS, help="Prompt initialization: 'vocab' (sampled unique real token embeddings), "
                                     "'uniform' (U[-0.5, 0.5]) or 'labels' (class-label word embeddings, rest vocab).")
    vocab_top_k: int | None = vocab_top_k_option()
    uniform_range: float = option(0.5, help="Half-width a of the U[-a, a] init (Lester et al.: 0.5).", above=0)


def initial_prompt(config, backbone, generator: torch.Generator, label_words=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial ``[n, d]`` prompt and the token ids behind each row (-1: not a single token).

    Shared by ``simple``, ``residual`` (vocab init), ``attempt`` (target prompt) and ``ept`` (short prompt).
    """
    n, d = config.n_prompts, backbone.embed_dim
    init = getattr(config, "init", "vocab")
    top_k = getattr(config, "vocab_top_k", None)
    if init == "uniform":
        a = float(getattr(config, "uniform_range", 0.5))
        prompt = torch.empty(n, d, dtype=torch.float32).uniform_(-a, a, generator=generator)
        return prompt, torch.full((n,), -1, dtype=torch.long)
    if init == "vocab":
        ids = sample_unique_ids(backbone, n, generator, top_k=top_k, field_name="n_prompts")
        return embedding_rows(backbone, ids), ids
    if init == "labels":
        require(bool(label_words), "init",
                "'labels' needs the task's label words (build_method(label_words=...)); regression tasks have none")
        rows, ids = [], []
        for word in list(label_words)[:n]:
            token_ids = [int(t) for t in backbone.token_ids(str(word))]
            require(len(token_ids) > 0, "init", f"label word {word!r} tokenizes to nothing")
            rows.append(embedding_rows(backbone, torch.tensor(token_ids)).mean(0))
            ids.append(token_ids[0] if len(token_ids) == 1 else -1)
        rest = n - len(rows)
        prompt = torch.stack(rows)
        id_tensor = torch.tensor(ids, dtype=torch.long)
        if rest > 0:
            extra = sample_unique_ids(backbone, rest, generator, top_k=top_k, field_name="n_prompts")
            prompt = torch.cat([prompt, embedding_rows(backbone, extra)])
            id_tensor = torch.cat([id_tensor, extra])
        return prompt, id_tensor
    raise ValueError(f"init: unknown value {init!r}")


def add_prompt_parameter(method: nn.Module, n: int, embed_dim: int, name: str = "prompt") -> nn.Parameter:
    """Register on ``method`` the ``[n, d]`` prompt parameter ``name`` (zeros until :func:`load_initial_prompt`)
    and the ``init_token_ids`` buffer ``[n]`` naming the token each row starts from (-1: none)."""
    parameter = nn.Parameter(torch.zeros(n, embed_dim))
    method.register_parameter(name, parameter)
    method.register_buffer("init_token_ids", torch.full((n,), -1, dtype=torch.long))
    return parameter


def load_initial_prompt(method, parameter: "nn.Parameter", config, backbone, generator: torch.Generator,
                        label_words=None) -> None:
    """Fill ``parameter`` ``[n, d]`` with :func:`initial_prompt` and record the ids in ``method.init_token_ids``."""
    prompt, ids = initial_prompt(config, backbone, generator, label_words)
    with torch.no_grad():
        parameter.copy_(prompt)
        method.init_token_ids.copy_(ids)


class SimplePrompt(PromptMethod):
    """``prompt`` ``[n, d]``: a free parameter, prepended as is."""

    name = "simple"
    config_class = SimpleConfig

    def __init__(self, config: SimpleConfig, embed_dim: int):
        super().__init__(config, embed_dim)
        add_prompt_parameter(self, config.n_prompts, embed_dim)

    @classmethod
    def build(cls, config, backbone, *, generator, label_words=None, source_prompts=None):
        method = cls(config, backbone.embed_dim)
        load_initial_prompt(method, method.prompt, config, backbone, generator, label_words)
        return method.to(backbone.device)

    def prompt_matrix(self) -> torch.Tensor:
        return self.prompt

    def analysis_state(self) -> dict[str, list]:
        return {"init_token_ids": self.init_token_ids.tolist()}
