"""The shared machinery of every prompt method: config base, module base, sampling helpers.

Symbols used throughout (the paper's, spelled out once):

- ``n`` = ``n_prompts``: number of soft prompt tokens prepended to the input.
- ``d`` = ``embed_dim``: the backbone's input embedding width.
- ``V``: rows of the frozen input embedding table ``backbone.embedding_weight`` ``[V, d]``.

A method is an ``nn.Module`` that owns only its trainable parts (and the buffers that rebuild it,
such as sampled token ids). The frozen backbone is never registered inside a method, except that
``full`` keeps a plain reference to it. ``forward(inputs_embeds, attention_mask)`` returns
``(prompt [B, n, d], inputs_embeds [B, L, d])``; the backbone prepends the prompt.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import math
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..config import ConfigBase, option, require

CONFIG_FILE = "config.json"
STATE_FILE = "state.safetensors"
#: The metadata entry of a state file (:meth:`PromptMethod.state_file_bytes`) that holds the method's description.
STATE_METADATA_KEY = "superpos.method"


# --------------------------------------------------------------------------- configs
def lr_option(default: float, help: str) -> Any:
    """A learning-rate field (> 0); methods redeclare it with their paper default."""
    return option(default, help=help, above=0)


def weight_decay_option(default: float, help: str) -> Any:
    """A weight-decay field (>= 0); methods redeclare it with their paper default."""
    return option(default, help=help, minimum=0)


@dataclasses.dataclass
class MethodConfig(ConfigBase):
    """Fields every method shares. Subclasses redeclare a field to change its default."""

    kind: ClassVar[str] = "method"

    n_prompts: int = option(10, help="n: number of soft prompt tokens prepended to every input (paper §4.4: 10).",
                            minimum=1)
    lr: float = lr_option(0.01, "AdamW learning rate for this method's trainable parameters.")
    weight_decay: float = weight_decay_option(0.01, "AdamW (decoupled) weight decay; never applied to frozen buffers.")

    def __post_init__(self) -> None:
        self.check_types()  # types, choices and bounds of every field (superpos.config.option)
        self.validate()

    def validate(self) -> None:
        """Checks across fields (one field's own checks live in its ``option``)."""


class PromptInit(str, enum.Enum):
    """How a prompt of real-token starts begins (simple, Residual, ATTEMPT's target, EPT's short prompt)."""

    VOCAB = "vocab"      # sampled unique token embeddings
    UNIFORM = "uniform"  # [-0.5, 0.5]
    LABELS = "labels"    # the label words' embeddings, the rest sampled


PROMPT_INITS = tuple(init.value for init in PromptInit)


def vocab_top_k_option(what: str = "vocab inits") -> Any:
    """The ``vocab_top_k`` field shared by every method that samples token embeddings."""
    return option(None, help=f"Sample {what} among the top-k most frequent tokens only; null = all real tokens "
                             "(the SuperPos paper §4.4; Lester et al. used 5000).", minimum=1)


# --------------------------------------------------------------------------- sampling helpers
def candidate_ids(backbone, top_k: int | None, field_name: str, needed: int) -> torch.Tensor:
    """The backbone's real token ids (optionally the ``top_k`` most frequent), on CPU.

    Raises ``ValueError`` naming ``field_name`` when fewer than ``needed`` exist.
    """
    ids = backbone.candidate_token_ids(top_k) if top_k is not None else backbone.candidate_token_ids()
    ids = torch.as_tensor(ids, dtype=torch.long).flatten().cpu()
    require(needed <= ids.numel(), field_name,
            f"{needed} unique tokens requested but the backbone {getattr(backbone, 'name', '')!r} has only "
            f"{ids.numel()} candidate tokens{f' in its top {top_k}' if top_k is not None else ''}")
    return ids


def sample_unique_ids(backbone, count: int, generator: torch.Generator, *, top_k: int | None = None,
                      field_name: str = "n_prompts") -> torch.Tensor:
    """``count`` distinct real token ids drawn uniformly with ``generator`` (CPU LongTensor)."""
    ids = candidate_ids(backbone, top_k, field_name, count)
    order = torch.randperm(ids.numel(), generator=generator)[:count]
    return ids[order].clone()


def embedding_rows(backbone, ids: torch.Tensor) -> torch.Tensor:
    """Float32 copies of the input embeddings of ``ids`` ``[k, d]`` (detached: the table stays frozen).

    Through ``backbone.embed`` when the backbone has it, so models that scale inside their embedding
    module (Gemma) give the vectors the model really sees; else rows of ``embedding_weight``.
    """
    table = backbone.embedding_weight
    ids = ids.to(table.device)
    with torch.no_grad():
        rows = backbone.embed(ids.unsqueeze(0))[0] if hasattr(backbone, "embed") else table[ids]
    return rows.detach().to(torch.float32).clone()


def init_linear_(layer: nn.Linear, generator: torch.Generator) -> nn.Linear:
    """PyTorch's default ``nn.Linear`` init, drawn from ``generator`` so builds are reproducible."""
    with torch.no_grad():
        w = torch.empty(layer.weight.shape, dtype=torch.float32)
        nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=generator)
        layer.weight.copy_(w)
        if layer.bias is not None:
            fan_in = layer.weight.shape[1]
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            b = torch.empty(layer.bias.shape, dtype=torch.float32).uniform_(-bound, bound, generator=generator)
            layer.bias.copy_(b)
    return layer


# --------------------------------------------------------------------------- the module base
class PromptMethod(nn.Module):
    """Base of every method. Subclasses set ``name`` and ``config_class`` and implement
    ``build`` and ``prompt_matrix`` (input-independent methods) or ``forward``."""

    name: ClassVar[str] = "base"
    config_class: ClassVar[type[MethodConfig]] = MethodConfig

    def __init__(self, config: MethodConfig, embed_dim: int):
        super().__init__()
        self.config = config
        self.embed_dim = int(embed_dim)
        #: What ``build_method`` was called with besides tensors; saved so ``load`` can rebuild.
        self.build_info: dict[str, Any] = {}

    # -- construction ------------------------------------------------------------------
    @classmethod
    def build(cls, config, backbone, *, generator: torch.Generator, label_words=None, source_prompts=None):
        raise NotImplementedError

    @property
    def n_prompts(self) -> int:
        return int(self.config.n_prompts)

    # -- the prompt --------------------------------------------------------------------
    def prompt_matrix(self) -> torch.Tensor:
        """The projected prompt ``[n, d]`` (float32) for input-independent methods."""
        raise NotImplementedError(f"{self.name}: the prompt depends on the input; there is no single prompt matrix")

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None):
        prompt = self.prompt_matrix().to(dtype=inputs_embeds.dtype, device=inputs_embeds.device)
        return prompt.unsqueeze(0).expand(inputs_embeds.shape[0], -1, -1), inputs_embeds

    def export_prompt(self) -> torch.Tensor:
        """The final prompt as a plain detached CPU float32 tensor ``[n, d]``."""
        return self.prompt_matrix().detach().to("cpu", torch.float32).clone()

    # -- optimisation ------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        """Parameter groups for ``torch.optim.AdamW`` with the config's lr and weight decay."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "lr": self.config.lr, "weight_decay": self.config.weight_decay,
                 "name": self.name}]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for group in self.param_groups() for p in group["params"]]

    def trainable_parameter_count(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    # -- state -------------------------------------------------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Trainable parameters plus the persistent buffers that rebuild the method."""
        return {k: v.detach() for k, v in self.state_dict().items()}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"{self.name}: state does not fit this method "
                             f"(missing: {', '.join(missing) or '-'}; unexpected: {', '.join(unexpected) or '-'})")
        for key, value in state.items():
            if tuple(value.shape) != tuple(own[key].shape):
                raise ValueError(f"{self.name}: state {key!r} has shape {tuple(value.shape)}, "
                                 f"the method expects {tuple(own[key].shape)} (different config or backbone?)")
        self.load_state_dict(state, strict=True)

    #: Whether a run keeps this method's trainable state at its best evaluation point (``states/<hash>``).
    keeps_best_state: ClassVar[bool] = True

    def state_metadata(self) -> dict[str, Any]:
        """What rebuilds the method besides its tensors: name, config, ``embed_dim`` and build info."""
        return {"method": self.name, "config": self.config.to_dict(), "embed_dim": self.embed_dim, **self.build_info}

    def state_file_bytes(self, state: dict[str, torch.Tensor] | None = None) -> bytes:
        """``state`` (default: the current trainable state) as safetensors bytes, with :meth:`state_metadata`
        in the file's metadata, so that :func:`superpos.methods.load_method` rebuilds the method from this one
        file."""
        from safetensors.torch import save

        state = self.trainable_state() if state is None else state
        tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
        return save(tensors, metadata={STATE_METADATA_KEY: json.dumps(self.state_metadata(), sort_keys=True)})

    def save(self, folder: str | Path) -> Path:
        """Write ``config.json`` (method name, config, build info) and ``state.safetensors``, from which
        :func:`superpos.methods.load_method` rebuilds the method."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"method": self.name, "config": self.config.to_dict(), "embed_dim": self.embed_dim,
                **self.build_info}
        (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        state = {k: v.detach().to("cpu").contiguous().clone() for k, v in self.trainable_state().items()}
        save_file(state, str(folder / STATE_FILE), metadata={"method": self.name})
        return folder

    def analysis_state(self) -> dict[str, list]:
        """Small JSON-able extras for analyses."""
        return {}

    def extra_repr(self) -> str:
        return f"n_prompts={self.n_prompts}, embed_dim={self.embed_dim}"
