"""Full fine-tuning: every backbone weight trains; no prompt (``n_prompts = 0``).

Building it sets ``requires_grad=True`` on all of ``backbone.model``'s parameters (the one method that
un-freezes the backbone: build it on a backbone no other method shares). ``forward`` returns an empty
``[B, 0, d]`` prompt and the input embeddings unchanged, so the backbone's prompt path is a no-op.

Hyperparameters: lr 1e-5 (paper §4.4, "to preserve the original weights"); weight decay 0.01 is our
choice (the paper gives none; it matches the prompt baselines and HF's usual fine-tuning value).
``trainable_state`` is the model's state dict; ``save`` writes the model's weights (tied weights once).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from ..config import option, require
from .base import CONFIG_FILE, STATE_FILE, MethodConfig, PromptMethod, lr_option, weight_decay_option


@dataclasses.dataclass
class FullConfig(MethodConfig):
    """Full fine-tuning of the backbone (paper §4.4: lr 1e-5)."""

    kind = "full"

    n_prompts: int = option(0, help="Always 0: full fine-tuning prepends no prompt.")
    lr: float = lr_option(1e-5, "AdamW learning rate for every backbone weight (paper §4.4: 1e-5).")
    weight_decay: float = weight_decay_option(0.01, "AdamW weight decay (our choice; the paper gives none).")

    def validate(self) -> None:
        require(self.n_prompts == 0, "n_prompts", f"full fine-tuning has no prompt: must be 0, got {self.n_prompts!r}")


class FullFineTuning(PromptMethod):
    """Holds a plain (unregistered) reference to the backbone model and trains all of it."""

    name = "full"
    config_class = FullConfig
    # The trainable state is the whole backbone: a copy at every improvement and a second model-sized file per
    # run would cost more than the state is worth, so a run keeps none (its record says ``state_path: null``).
    keeps_best_state = False

    def __init__(self, config: FullConfig, embed_dim: int, model: torch.nn.Module):
        super().__init__(config, embed_dim)
        object.__setattr__(self, "_model", model)  # not a submodule: method.parameters() stays empty

    @property
    def model(self) -> torch.nn.Module:
        return self._model

    @classmethod
    def build(cls, config, backbone, *, generator, label_words=None, source_prompts=None):
        backbone.model.requires_grad_(True)
        return cls(config, backbone.embed_dim, backbone.model)

    @property
    def n_prompts(self) -> int:
        return 0

    def prompt_matrix(self) -> torch.Tensor:
        weight = self.model.get_input_embeddings().weight
        return weight.new_zeros(0, self.embed_dim)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None):
        return inputs_embeds.new_zeros(inputs_embeds.shape[0], 0, inputs_embeds.shape[-1]), inputs_embeds

    def export_prompt(self) -> torch.Tensor:
        raise NotImplementedError("full: fine-tuning changes the model's weights, there is no prompt; use save()")

    def param_groups(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        return [{"params": params, "lr": self.config.lr, "weight_decay": self.config.weight_decay, "name": "full"}]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in self.model.state_dict().items()}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        tied = set(getattr(self.model, "_tied_weights_keys", None) or [])
        missing = [k for k in missing if k not in tied]
        if missing or unexpected:
            raise ValueError(f"full: state does not fit the model (missing: {', '.join(missing[:5]) or '-'}; "
                             f"unexpected: {', '.join(unexpected[:5]) or '-'})")

    def save(self, folder: str | Path) -> Path:
        from safetensors.torch import save_model

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"method": self.name, "config": self.config.to_dict(), "embed_dim": self.embed_dim, **self.build_info}
        (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        save_model(self.model, str(folder / STATE_FILE), metadata={"method": self.name})
        return folder

    def load_saved_state(self, folder: str | Path) -> None:
        from safetensors.torch import load_model

        load_model(self.model, str(Path(folder) / STATE_FILE), strict=True)

    def analysis_state(self) -> dict[str, list]:
        return {}
