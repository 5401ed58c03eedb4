"""SuperPos-Prompt (paper §3, Fig. 1f): every prompt token is a superposition of sampled token embeddings.

Symbols (paper §3), with the shapes used here:

- ``m`` sampled unique token embeddings ``e_1 .. e_m``; the paper's ``E_freeze ∈ R^{d×m}`` holds them as
  columns. Here ``e_freeze`` is a *buffer* ``[m, d]`` (rows = tokens): shared by all ``n`` prompts,
  never trained and so never shrunk by weight decay (the reason for the split, §3).
- ``delta_e`` = the ``ΔE_i``: one ``[m, d]`` matrix per prompt token, a parameter ``[n, m, d]``
  initialised to zero (§3: ``ΔE_init = 0``).
- ``weights`` = the ``p'_i ∈ R^m``: a parameter ``[n, m]``.
- ``p_i = (E_freeze + ΔE_i) p'_i``, computed for all ``n`` at once as
  ``einsum('nm,nmd->nd', weights, e_freeze[None] + delta_e)``.
- ``softmax=True`` (App. A.2): ``p_i = (E_freeze + ΔE_i) softmax(p'_i)``, an expected embedding; the
  paper found it worse (Table 3) and did not use it in the main runs.

Initialising ``p'`` (``weights_init``): the paper does not say. Default ``"auto"`` means
``"one_hot"`` for the linear superposition and ``"zeros"`` for the softmax variant.

- ``one_hot`` (default): ``p'_i`` is the indicator of sampled token ``i mod m`` (for ``m >= n`` the first
  ``n`` of the ``m`` sampled tokens, all distinct). Then every ``p_i`` starts as a real token embedding: at
  step 0 the prompt is exactly a ``simple`` prompt with vocab init, which §3 motivates ("initiating the
  prompt with token representations is generally more beneficial than random vectors", after Lester et al.)
  and which makes SuperPos-vs-simple comparisons isolate the reparameterisation. The other ``m - 1``
  weights are zero but receive gradient ``e_j · ∂L/∂p_i`` from the first step, so the superposition
  forms during training. For ``m < n`` prompts ``i`` and ``i + m`` start at the same token and part
  through their own ``ΔE_i`` and positions; so the m ablation uses one kind of start for every m. With
  the same seed every task samples the same tokens, so every task starts from the same ``p'``.
- ``normal``: ``p'_ij ~ N(0, 1/m)``: a random superposition whose expected squared norm equals a
  token's (for near-orthogonal embeddings), but whose direction is no token's.
- ``uniform``: ``p'_ij ~ U(-√(3/m), √(3/m))``, same variance as ``normal``.
- ``mean``: ``p'_ij = 1/m``: every prompt starts at the mean of the sampled embeddings (all prompts
  equal; a short vector, since the mean of many embeddings shrinks).
- ``zeros``: ``p' = 0``. With ``softmax`` this is the uniform mixture (= ``mean``); without it the
  prompt starts at zero.
"""
from __future__ import annotations

import dataclasses
import enum
import math

import torch
from torch import nn

from ..config import option
from .base import (MethodConfig, PromptMethod, embedding_rows, lr_option, sample_unique_ids, vocab_top_k_option,
                   weight_decay_option)

class WeightsInit(str, enum.Enum):
    """How p′ starts (the paper does not say; ``auto``: one-hot for the linear form, zeros for the softmax one)."""

    AUTO = "auto"
    ONE_HOT = "one_hot"  # prompt i on sampled token i mod m: every p_i starts as a real token embedding
    NORMAL = "normal"
    UNIFORM = "uniform"
    MEAN = "mean"        # every p_i the mean of the sampled tokens
    ZEROS = "zeros"


WEIGHT_INITS = tuple(init.value for init in WeightsInit)


@dataclasses.dataclass
class SuperPosConfig(MethodConfig):
    """SuperPos-Prompt; defaults from paper §4.3–4.4 (m = 128, lr 0.01, weight decay 1e-5)."""

    kind = "superpos"

    lr: float = lr_option(0.01, "AdamW learning rate for ΔE and p' (paper §4.4: 0.01).")
    weight_decay: float = weight_decay_option(1e-5, "AdamW weight decay on ΔE and p' (paper §4.4: 1e-5); "
                                            "E_freeze is a buffer and never decays.")
    m: int = option(128, minimum=1, help="Number of unique sampled token embeddings superposed (paper §4.3: 128; "
                              "gains level off beyond it, Fig. 2c).")
    softmax: bool = option(False, help="Use p_i = E softmax(p'_i) (paper App. A.2; worse in Table 3).")
    weights_init: str = option("auto", choices=WEIGHT_INITS, help="Init of p': 'auto' (= one_hot, or zeros with softmax), "
                                            "'one_hot', 'normal' N(0,1/m), 'uniform', 'mean' (1/m), 'zeros'.")
    vocab_top_k: int | None = vocab_top_k_option("the m tokens")

    def resolved_weights_init(self) -> str:
        if self.weights_init == "auto":
            return "zeros" if self.softmax else "one_hot"
        return self.weights_init


def initial_weights(kind: str, n: int, m: int, generator: torch.Generator) -> torch.Tensor:
    if kind == "one_hot":  # row i picks token i mod m: torch.eye(n, m) when m >= n
        weights = torch.zeros(n, m)
        weights[torch.arange(n), torch.arange(n) % m] = 1.0
        return weights
    if kind == "normal":
        return torch.randn(n, m, generator=generator) / math.sqrt(m)
    if kind == "uniform":
        bound = math.sqrt(3.0 / m)
        return torch.empty(n, m).uniform_(-bound, bound, generator=generator)
    if kind == "mean":
        return torch.full((n, m), 1.0 / m)
    if kind == "zeros":
        return torch.zeros(n, m)
    raise ValueError(f"weights_init: unknown value {kind!r}")


class SuperPosPrompt(PromptMethod):
    """``p_i = (E_freeze + ΔE_i) p'_i`` for ``i = 1..n``, batched over ``n``."""

    name = "superpos"
    config_class = SuperPosConfig

    def __init__(self, config: SuperPosConfig, embed_dim: int):
        super().__init__(config, embed_dim)
        n, m = config.n_prompts, config.m
        self.register_buffer("e_freeze", torch.zeros(m, embed_dim))
        self.register_buffer("token_ids", torch.zeros(m, dtype=torch.long))
        self.delta_e = nn.Parameter(torch.zeros(n, m, embed_dim))
        self.weights = nn.Parameter(torch.zeros(n, m))

    @classmethod
    def build(cls, config, backbone, *, generator, label_words=None, source_prompts=None):
        method = cls(config, backbone.embed_dim)
        ids = sample_unique_ids(backbone, config.m, generator, top_k=config.vocab_top_k, field_name="m")
        with torch.no_grad():
            method.token_ids.copy_(ids)
            method.e_freeze.copy_(embedding_rows(backbone, ids))
            method.weights.copy_(initial_weights(config.resolved_weights_init(), config.n_prompts, config.m,
                                                 generator))
        return method.to(backbone.device)

    @classmethod
    def from_tensors(cls, e_freeze: torch.Tensor, weights: torch.Tensor, delta_e: torch.Tensor | None = None,
                     **config_changes) -> "SuperPosPrompt":
        """A method from explicit tensors (tests, analyses): ``e_freeze [m, d]``, ``weights [n, m]``."""
        n, m = weights.shape
        config = SuperPosConfig(n_prompts=n, m=m, **config_changes)
        method = cls(config, e_freeze.shape[1])
        with torch.no_grad():
            method.e_freeze.copy_(e_freeze)
            method.weights.copy_(weights)
            if delta_e is not None:
                method.delta_e.copy_(delta_e)
        return method

    def superposition_weights(self) -> torch.Tensor:
        """The effective weights ``[n, m]`` (softmaxed when ``softmax``)."""
        return torch.softmax(self.weights, dim=-1) if self.config.softmax else self.weights

    def prompt_matrix(self) -> torch.Tensor:
        basis = self.e_freeze.unsqueeze(0) + self.delta_e  # [n, m, d]: E_freeze + ΔE_i per prompt
        return torch.einsum("nm,nmd->nd", self.superposition_weights(), basis)

    def analysis_state(self) -> dict[str, list]:
        with torch.no_grad():
            return {
                "weights": self.weights.detach().cpu().tolist(),
                "token_ids": self.token_ids.cpu().tolist(),
                "delta_e_norm": self.delta_e.detach().flatten(1).norm(dim=1).cpu().tolist(),
                "prompt_norm": self.prompt_matrix().detach().norm(dim=1).cpu().tolist(),
            }

    def extra_repr(self) -> str:
        return f"n_prompts={self.n_prompts}, m={self.config.m}, embed_dim={self.embed_dim}, softmax={self.config.softmax}"
