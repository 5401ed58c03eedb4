"""EPT: Efficient Prompt Tuning by multi-space projection and prompt fusion (Lan et al., 2024).

The seed is a summary; where it is vague the choice made here is named and marked *choice*.

1. **Prompt decomposition** (always on; seed "Mechanism 1", following DePT, Shi & Lipani 2023):
   a length-``l`` soft prompt becomes a short prompt ``P_s [s, d]`` (``s = n_prompts``) plus two
   low-rank matrices ``A [m, r]`` and ``B [r, d]`` (``m = max_length``, the longest input) that
   update the frozen input embeddings position-wise: ``X'_t = X_t + (α/√r)(A B)_t`` for the
   ``t``-th real token of each input. As in DePT's released code: ``A`` Kaiming-uniform, ``B = 0``
   (so ``X' = X`` at init), scaling ``α/√r``, and a separate learning rate for ``A, B``
   (``low_rank_lr``; *choice*: 1e-4, below the values DePT's released script searches, 5e-4, 5e-3 and 0.3). Positions are counted over unmasked tokens, so left or right
   padding gives the same update; tokens past ``max_length`` get none.
   *Choice* of defaults: ``s = 5, r = 4, m = 256`` keeps the budget of a 10-token prompt
   (``s·d + r·(m + d)`` = 7,936 vs ``10·d`` = 7,680 at ``d = 768``), the spirit of DePT's
   equal-budget decomposition.
2. **Prompt fusion** (``fusion``; seed "Mechanism 3"): an attention from the short prompt (queries)
   to the rows of the low-rank update ``U = (α/√r) A B`` (keys = values), i.e. the knowledge the
   low-rank matrices hold: ``F = g ⊙ softmax(P_s Uᵀ / √d) U`` with a trainable per-dimension gate
   ``g [d]`` (init 1). *Choice*: no query/key projections (the keys live in embedding space
   already); ``F = 0`` at init because ``B = 0``, so the start equals plain decomposition.
3. **Multi-space projection** (``projection``; seed "Mechanism 2"): ``N = n_spaces`` (4, the seed's
   selected value) subspace maps ``proj_i(P) = P + (P D_i) U_i`` with ``D_i [d, k]``, ``U_i [k, d]``
   (``k = projection_rank``; *choice*: low-rank residual maps, so the module stays small and the
   identity at init, ``U_i = 0``) and a gating network ``γ = softmax(W_g mean_t(P_s) + b_g)``
   ``[N]`` (*choice*: one task-level gate from the mean prompt token, since the gate reweights
   spaces "according to the task"). Its output is ``Σ_i γ_i proj_i(P_s) - P_s``.
4. **Reconstructed prompt** (seed: "combines the outputs of the multi-space projection and prompt
   fusion modules"): ``P = P_s + F + Σ_i γ_i (P_s D_i) U_i`` (*choice*: the two modules act in
   parallel on ``P_s`` and add their outputs, so each switch removes one term).

The seed's three ablation steps are configs: decomposition only (``fusion=False, projection=False``),
``+ fusion`` (``projection=False``) and the full method (both on, the default).

``prompt_matrix()`` is well defined (the reconstructed prompt is input-independent), but
``export_prompt`` raises: the method also changes the input embeddings, which a prompt alone would
drop; ``export_parts()`` returns both pieces.
"""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from ..config import option
from .base import (PROMPT_INITS, MethodConfig, PromptMethod, init_linear_, lr_option, vocab_top_k_option,
                   weight_decay_option)
from .simple import add_prompt_parameter, load_initial_prompt


@dataclasses.dataclass
class EptConfig(MethodConfig):
    """EPT; decomposition defaults keep a 10-token prompt's budget (see the module docstring)."""

    kind = "ept"

    n_prompts: int = option(5, help="s: length of the short prompt (< the 10 tokens it replaces).")
    lr: float = lr_option(0.3, "AdamW learning rate for the short prompt, fusion and projection (DePT/EPT: 0.3).")
    weight_decay: float = weight_decay_option(1e-5, "AdamW weight decay for every trainable part.")
    rank: int = option(4, minimum=1, help="r: rank of the low-rank input-embedding update A B.")
    max_length: int = option(256, minimum=1, help="m: rows of A, the longest input position updated (DePT: 256).")
    low_rank_alpha: float = option(8.0, above=0, help="alpha: the update is scaled by alpha / sqrt(r) (DePT's code).")
    low_rank_lr: float = lr_option(1e-4, "AdamW learning rate for A and B (a choice; DePT's script searches "
                                         "5e-4, 5e-3 and 0.3).")
    fusion: bool = option(True, help="Prompt fusion: attention from the short prompt to the low-rank update.")
    projection: bool = option(True, help="Multi-space projection with a gating network.")
    n_spaces: int = option(4, minimum=1, help="N: number of projection subspaces (EPT selects 4).")
    projection_rank: int = option(2, minimum=1, help="k: rank of each subspace map P + (P D_i) U_i.")
    init: str = option("vocab", choices=PROMPT_INITS, help="Short prompt init: 'vocab', 'uniform' or 'labels'.")
    vocab_top_k: int | None = vocab_top_k_option()

class EptPrompt(PromptMethod):
    """Short prompt + low-rank input update, with optional prompt fusion and multi-space projection."""

    name = "ept"
    config_class = EptConfig

    def __init__(self, config: EptConfig, embed_dim: int):
        super().__init__(config, embed_dim)
        d, s = embed_dim, config.n_prompts
        add_prompt_parameter(self, s, d)
        self.lora_a = nn.Parameter(torch.zeros(config.max_length, config.rank))
        self.lora_b = nn.Parameter(torch.zeros(config.rank, d))
        self.scaling = config.low_rank_alpha / math.sqrt(config.rank)
        if config.fusion:
            self.fusion_gate = nn.Parameter(torch.ones(d))
        if config.projection:
            self.proj_down = nn.Parameter(torch.zeros(config.n_spaces, d, config.projection_rank))
            self.proj_up = nn.Parameter(torch.zeros(config.n_spaces, config.projection_rank, d))
            self.gate = nn.Linear(d, config.n_spaces)

    @classmethod
    def build(cls, config, backbone, *, generator, label_words=None, source_prompts=None):
        method = cls(config, backbone.embed_dim)
        load_initial_prompt(method, method.prompt, config, backbone, generator, label_words)
        with torch.no_grad():
            a = torch.empty(method.lora_a.shape)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)  # DePT: A Kaiming, B zeros
            method.lora_a.copy_(a)
            if config.projection:
                bound = 1.0 / math.sqrt(method.embed_dim)
                method.proj_down.copy_(torch.empty(method.proj_down.shape).uniform_(-bound, bound, generator=generator))
                init_linear_(method.gate, generator)
        return method.to(backbone.device)

    # -- pieces --------------------------------------------------------------------------------
    def input_update(self) -> torch.Tensor:
        """``U = (α/√r) A B`` ``[max_length, d]``: the update of the input embedding at each position."""
        return self.scaling * (self.lora_a @ self.lora_b)

    def fusion_term(self, update: torch.Tensor | None = None) -> torch.Tensor:
        update = self.input_update() if update is None else update
        scores = self.prompt @ update.T / math.sqrt(self.embed_dim)  # [s, max_length]
        return self.fusion_gate * (torch.softmax(scores, dim=-1) @ update)

    def space_weights(self) -> torch.Tensor:
        """Gating weights ``γ [N]`` over the projection subspaces."""
        return torch.softmax(self.gate(self.prompt.mean(dim=0)), dim=-1)

    def projection_term(self) -> torch.Tensor:
        per_space = torch.einsum("sd,ndk,nke->nse", self.prompt, self.proj_down, self.proj_up)  # [N, s, d]
        return torch.einsum("n,nse->se", self.space_weights(), per_space)

    def prompt_matrix(self) -> torch.Tensor:
        prompt = self.prompt
        if self.config.fusion:
            prompt = prompt + self.fusion_term()
        if self.config.projection:
            prompt = prompt + self.projection_term()
        return prompt

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None):
        batch, length, _ = inputs_embeds.shape
        update = self.input_update()  # [m, d]
        if attention_mask is None:
            mask = torch.ones(batch, length, dtype=torch.long, device=inputs_embeds.device)
        else:
            mask = attention_mask.to(torch.long)
        positions = mask.cumsum(dim=1) - 1  # index among the real tokens
        valid = (mask > 0) & (positions < update.shape[0])
        # A one-hot product rather than ``update[positions]``: the indexing backward accumulates repeated
        # positions in a thread-dependent order on CPU, which broke run-to-run determinism. Built by comparison,
        # not ``F.one_hot``, which reads its input's range back to the host (a wait on a GPU).
        one_hot = positions.unsqueeze(-1) == torch.arange(update.shape[0], device=positions.device)  # [B, L, m]
        rows = (one_hot & valid.unsqueeze(-1)).to(update.dtype) @ update  # [B, L, d]
        shifted = inputs_embeds + rows.to(inputs_embeds.dtype)
        prompt = self.prompt_matrix().to(inputs_embeds.dtype)
        return prompt.unsqueeze(0).expand(batch, -1, -1), shifted

    # -- optimisation and export -----------------------------------------------------------------
    def param_groups(self):
        low_rank = [self.lora_a, self.lora_b]
        ids = {id(p) for p in low_rank}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return [
            {"params": rest, "lr": self.config.lr, "weight_decay": self.config.weight_decay, "name": "ept.prompt"},
            {"params": low_rank, "lr": self.config.low_rank_lr, "weight_decay": self.config.weight_decay,
             "name": "ept.low_rank"},
        ]

    def export_prompt(self) -> torch.Tensor:
        raise NotImplementedError("ept: the method also adds a low-rank update to the input embeddings, which a "
                                  "prompt alone would drop; use save(), or export_parts() for both pieces")

    def export_parts(self) -> dict[str, torch.Tensor]:
        """``prompt [s, d]`` (reconstructed) and ``input_update [max_length, d]``, detached CPU float32."""
        with torch.no_grad():
            return {"prompt": self.prompt_matrix().detach().to("cpu", torch.float32).clone(),
                    "input_update": self.input_update().detach().to("cpu", torch.float32).clone()}

    def analysis_state(self) -> dict[str, list]:
        with torch.no_grad():
            out = {"input_update_norm": [float(self.input_update().norm())]}
            if self.config.projection:
                out["space_weights"] = self.space_weights().cpu().tolist()
            return out
