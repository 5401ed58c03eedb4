"""ATTEMPT (Asai et al., 2022): an instance-wise mixture of frozen source prompts and a target prompt.

Pieces (shapes here):

- ``target`` ``P_target [n, d]``: trainable, vocab init (SuperPos paper §4.4: ten sampled unique tokens).
- ``source_prompts`` ``P_1..P_k [k, n, d]``: a *buffer*: prompts trained earlier on source tasks
  (the paper used QQP, QNLI, MNLI, SST-2, §4.4), kept frozen as in ATTEMPT (only the target prompt
  and the attention module train). The config names them (``sources``: run hashes or files); the
  engine resolves the names and passes the tensors to ``build_method(source_prompts=...)``; a source
  run's prompt is the one of its best evaluation point (``source_point``, as ATTEMPT's release keeps the
  best checkpoint of each source prompt) or of its last step.
- The attention module ``G`` (ATTEMPT's "sub" attention, the one of its released configs):
  ``h = LayerNorm(W_up SiLU(W_down x̂))`` with ``x̂ = max-pool of the input embeddings over tokens``,
  ``W_down: d -> 100`` and ``W_up: 100 -> d`` without biases (bottleneck 100: SuperPos §4.4).
  SiLU is the nonlinearity of ATTEMPT's released attention code; ``relu`` is an option.
- The attention set is the ``k`` source prompts *and* the target prompt (ATTEMPT includes it), each
  max-pooled over its ``n`` tokens to a key ``p̂_j [d]``:
  ``a_j = softmax_j(p̂_j · h / T)``, ``j = 1..k+1``.
- The instance prompt: ``P(x) = P_target + Σ_j a_j P_j`` (sum over sources and target).
- ``T`` (``temperature``): ``null`` means ``d · e``, ATTEMPT's choice (its released T5-base config
  uses 2087 = 768·e), which keeps the softmax soft at the start: ``h`` is layer-normalised
  (``|h| ≈ √d``) so raw scores grow with ``d``.

Deviation, on purpose: ATTEMPT max-pools the padded input, pad tokens included; here the pooling
ignores masked positions, so a batch's padding cannot change an example's prompt.

There is no single prompt matrix: ``prompt_matrix``/``export_prompt`` raise ``NotImplementedError``;
``export_target_prompt()`` returns ``P_target`` alone (the attention disabled).
"""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from ..config import option, require
from .base import (PROMPT_INITS, MethodConfig, PromptMethod, init_linear_, lr_option, vocab_top_k_option,
                   weight_decay_option)
from .simple import add_prompt_parameter, load_initial_prompt


@dataclasses.dataclass
class AttemptConfig(MethodConfig):
    """ATTEMPT; defaults from the SuperPos paper §4.4 (lr 0.3, weight decay 1e-5, bottleneck 100)."""

    kind = "attempt"

    lr: float = lr_option(0.3, "AdamW learning rate for the target prompt and the attention module (§4.4: 0.3).")
    weight_decay: float = weight_decay_option(1e-5, "AdamW weight decay (paper §4.4: 1e-5); source prompts never decay.")
    sources: list = option([], help="Names of the source prompts (run hashes or prompt files), resolved by the "
                                    "engine; the paper used QQP, QNLI, MNLI and SST-2 prompts.")
    bottleneck: int = option(100, minimum=1, help="Width of the attention module's bottleneck G (paper §4.4: 100).")
    temperature: float | None = option(None, above=0, help="Softmax temperature T; null = d * e (ATTEMPT's choice).")
    nonlinearity: str = option("silu", choices=("silu", "relu"), help="Attention bottleneck nonlinearity: silu (ATTEMPT's code) or relu.")
    init: str = option("vocab", choices=PROMPT_INITS, help="Target prompt init: 'vocab' (paper §4.4), 'uniform' or 'labels'.")
    vocab_top_k: int | None = vocab_top_k_option()
    source_point: str = option("best", choices=("best", "last"), help="Which prompt of each source run to use: 'best' (its best evaluation "
                                            "point; ATTEMPT's release keeps the best checkpoint of a source "
                                            "prompt) or 'last' (its final step).")

    def validate(self) -> None:
        require(all(isinstance(s, str) for s in self.sources), "sources", f"must be a list of names, got {self.sources!r}")


class AttemptPrompt(PromptMethod):
    """Instance prompt ``P_target + Σ_j softmax_j(pool(P_j)·G(pool(X))/T) P_j`` over sources and target."""

    name = "attempt"
    config_class = AttemptConfig

    def __init__(self, config: AttemptConfig, embed_dim: int, n_sources: int):
        super().__init__(config, embed_dim)
        add_prompt_parameter(self, config.n_prompts, embed_dim, name="target")
        self.register_buffer("source_prompts", torch.zeros(n_sources, config.n_prompts, embed_dim))
        self.attn_down = nn.Linear(embed_dim, config.bottleneck, bias=False)
        self.attn_act = nn.SiLU() if config.nonlinearity == "silu" else nn.ReLU()
        self.attn_up = nn.Linear(config.bottleneck, embed_dim, bias=False)
        self.layer_norm = nn.LayerNorm(embed_dim)
        self.temperature = float(config.temperature) if config.temperature is not None else embed_dim * math.e
        # Mean attention over [sources..., target] in evaluation passes, for analyses (not saved).
        self.register_buffer("_attention_sum", torch.zeros(n_sources + 1), persistent=False)
        self.register_buffer("_attention_count", torch.zeros((), dtype=torch.long), persistent=False)

    @classmethod
    def build(cls, config, backbone, *, generator, label_words=None, source_prompts=None):
        d = backbone.embed_dim
        if isinstance(source_prompts, (list, tuple)) and source_prompts:
            source_prompts = torch.stack([torch.as_tensor(p).detach().cpu() for p in source_prompts])
        require(source_prompts is not None and torch.as_tensor(source_prompts).numel() > 0, "sources",
                "attempt needs the source prompts as a [k, n, d] tensor (build_method(source_prompts=...)); "
                "train them first as simple runs on the source tasks")
        sources = torch.as_tensor(source_prompts).detach().to("cpu", torch.float32)
        if sources.dim() == 2:
            sources = sources.unsqueeze(0)
        require(sources.dim() == 3 and sources.shape[1:] == (config.n_prompts, d), "source_prompts",
                f"expected [k, n_prompts={config.n_prompts}, d={d}], got {list(sources.shape)}")
        require(not config.sources or len(config.sources) == sources.shape[0], "sources",
                f"{len(config.sources)} names but {sources.shape[0]} source prompt tensors")
        method = cls(config, d, sources.shape[0])
        load_initial_prompt(method, method.target, config, backbone, generator, label_words)
        with torch.no_grad():
            method.source_prompts.copy_(sources)
        init_linear_(method.attn_down, generator)
        init_linear_(method.attn_up, generator)
        return method.to(backbone.device)

    @property
    def n_sources(self) -> int:
        return int(self.source_prompts.shape[0])

    # -- the mixture -----------------------------------------------------------------------
    @staticmethod
    def pool_inputs(inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Max over the unmasked tokens ``[B, L, d] -> [B, d]`` (zeros for an all-masked row)."""
        x = inputs_embeds.float()
        if attention_mask is None:
            return x.max(dim=1).values
        keep = attention_mask.to(torch.bool).unsqueeze(-1)
        pooled = x.masked_fill(~keep, float("-inf")).max(dim=1).values
        return torch.where(keep.any(dim=1), pooled, torch.zeros_like(pooled))

    def attention(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention weights ``[B, k + 1]`` over ``[source_1 .. source_k, target]``."""
        x = self.pool_inputs(inputs_embeds, attention_mask)
        h = self.layer_norm(self.attn_up(self.attn_act(self.attn_down(x))))  # [B, d]
        keys = self.prompt_set().max(dim=1).values  # [k + 1, d]: max-pooled prompts
        return torch.softmax(h @ keys.T / self.temperature, dim=-1)

    def prompt_set(self) -> torch.Tensor:
        """``[k + 1, n, d]``: the frozen sources, then the trainable target."""
        return torch.cat([self.source_prompts, self.target.unsqueeze(0)], dim=0)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None):
        weights = self.attention(inputs_embeds, attention_mask)  # [B, k + 1]
        mixture = torch.einsum("bk,knd->bnd", weights, self.prompt_set())
        prompt = self.target.unsqueeze(0) + mixture
        if not self.training:  # evaluation passes only: what the trained module does
            with torch.no_grad():
                self._attention_sum += weights.detach().float().sum(0)
                self._attention_count += weights.shape[0]
        return prompt.to(inputs_embeds.dtype), inputs_embeds

    # -- export ------------------------------------------------------------------------------
    def prompt_matrix(self) -> torch.Tensor:
        raise NotImplementedError("attempt: the prompt depends on each input (attention over source prompts); "
                                  "save() the method, or export_target_prompt() for P_target alone")

    def export_prompt(self) -> torch.Tensor:
        return self.prompt_matrix()

    def export_target_prompt(self) -> torch.Tensor:
        """``P_target`` alone, the attention disabled, as a detached CPU float32 ``[n, d]`` tensor."""
        return self.target.detach().to("cpu", torch.float32).clone()

    def analysis_state(self) -> dict[str, list]:
        count = max(int(self._attention_count), 1)
        return {"sources": list(self.config.sources) or [f"source_{i}" for i in range(self.n_sources)],
                "mean_attention": (self._attention_sum / count).cpu().tolist(),
                "temperature": [self.temperature]}
