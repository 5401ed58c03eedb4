"""Residual Prompt Tuning (Razdaibiedina et al., 2023), as the SuperPos paper ran it (§4.4).

The prompt ``P [n, d]`` (vocab init: ``n`` sampled unique token embeddings) is reparameterised by a
shallow MLP shared by all prompt tokens, with a skip connection:

    P' = LN(W_up ReLU(W_down P)) + P          (W_down: d -> b, W_up: b -> d, biases on)

The order follows the released ``ResMLP`` (arazd/ResidualPrompts): Linear, ReLU, Linear, then
LayerNorm on the MLP output, then the residual add. ``b = 128`` (§4.4, to match SuperPos' m), lr 0.3 and
weight decay 0.01 (§4.4, "as specified in the original paper") for the prompt and the MLP alike.

Unlike the original release, which saved the prompt *before* the MLP, ``export_prompt`` and the PEFT
export write the projected prompt ``P'``, the one the model actually saw.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..config import option
from .base import (PROMPT_INITS, MethodConfig, PromptMethod, init_linear_, lr_option, vocab_top_k_option,
                   weight_decay_option)
from .simple import add_prompt_parameter, load_initial_prompt

NONLINEARITIES = ("relu", "tanh", "sigmoid")


@dataclasses.dataclass
class ResidualConfig(MethodConfig):
    """Residual prompt tuning; defaults from the SuperPos paper §4.4."""

    kind = "residual"

    lr: float = lr_option(0.3, "AdamW learning rate for the prompt and the MLP (paper §4.4: 0.3).")
    weight_decay: float = weight_decay_option(0.01, "AdamW weight decay for the prompt and the MLP (paper §4.4: 0.01).")
    bottleneck: int = option(128, minimum=1, help="b: MLP bottleneck width (paper §4.4: 128, comparable to SuperPos' m).")
    layer_norm: bool = option(True, help="LayerNorm on the MLP output before the skip connection (Residual PT).")
    nonlinearity: str = option("relu", choices=NONLINEARITIES, help="MLP nonlinearity: relu (Residual PT default), tanh or sigmoid.")
    init: str = option("vocab", choices=PROMPT_INITS, help="Prompt init before the MLP: 'vocab' (paper §4.4), 'uniform' or 'labels'.")
    vocab_top_k: int | None = vocab_top_k_option()


class ResidualPrompt(PromptMethod):
    """``prompt [n, d]`` through ``down -> act -> up -> LayerNorm`` plus the skip connection."""

    name = "residual"
    config_class = ResidualConfig

    def __init__(self, config: ResidualConfig, embed_dim: int):
        super().__init__(config, embed_dim)
        add_prompt_parameter(self, config.n_prompts, embed_dim)
        act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[config.nonlinearity]
        layers = [nn.Linear(embed_dim, config.bottleneck), act(), nn.Linear(config.bottleneck, embed_dim)]
        if config.layer_norm:
            layers.append(nn.LayerNorm(embed_dim))
        self.mlp = nn.Sequential(*layers)

    @classmethod
    def build(cls, config, backbone, *, generator, label_words=None, source_prompts=None):
        method = cls(config, backbone.embed_dim)
        load_initial_prompt(method, method.prompt, config, backbone, generator, label_words)
        for layer in method.mlp:
            if isinstance(layer, nn.Linear):
                init_linear_(layer, generator)
        return method.to(backbone.device)

    def prompt_matrix(self) -> torch.Tensor:
        return self.mlp(self.prompt) + self.prompt

    def analysis_state(self) -> dict[str, list]:
        with torch.no_grad():
            return {"init_token_ids": self.init_token_ids.tolist(),
                    "prompt_norm": self.prompt_matrix().norm(dim=1).cpu().tolist(),
                    "skip_norm": self.prompt.norm(dim=1).cpu().tolist()}
