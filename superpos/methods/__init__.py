"""Prompt methods: the trainable part of a run, one module per method, a registry by name.

```python
method = build_method({"method": "superpos", "m": 64}, backbone, seed=0)   # or a config object
prompt, embeds = method(inputs_embeds, attention_mask)                    # [B, n, d], [B, L, d]
optimizer = torch.optim.AdamW(method.param_groups())
method.save(folder); method = load_method(folder, backbone)
```

A method needs from the backbone only ``embedding_weight [V, d]``, ``embed_dim``, ``device``,
``candidate_token_ids(top_k)``, ``token_ids(text)``, ``name`` and (``full``) ``model``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigBase
from .attempt import AttemptConfig, AttemptPrompt
from .base import CONFIG_FILE, STATE_FILE, STATE_METADATA_KEY, MethodConfig, PromptMethod
from .ept import EptConfig, EptPrompt
from .full import FullConfig, FullFineTuning
from .peft_export import export_peft_adapter, export_prompt_tensor_as_peft, read_peft_prompt
from .residual import ResidualConfig, ResidualPrompt
from .simple import SimpleConfig, SimplePrompt
from .superposition import SuperPosConfig, SuperPosPrompt

METHODS: dict[str, tuple[type[MethodConfig], type[PromptMethod], str]] = {
    "simple": (SimpleConfig, SimplePrompt, "Lester et al. prompt tuning: n free prompt vectors (vocab/uniform/labels init)"),
    "superpos": (SuperPosConfig, SuperPosPrompt, "SuperPos-Prompt: p_i = (E_freeze + dE_i) p'_i over m sampled token embeddings"),
    "residual": (ResidualConfig, ResidualPrompt, "Residual prompt tuning: P' = LN(MLP(P)) + P, bottleneck 128"),
    "attempt": (AttemptConfig, AttemptPrompt, "ATTEMPT: input-wise attention over frozen source prompts and a target prompt"),
    "ept": (EptConfig, EptPrompt, "EPT: short prompt + low-rank input update, prompt fusion, multi-space projection"),
    "full": (FullConfig, FullFineTuning, "Full fine-tuning of every backbone weight (no prompt)"),
}

__all__ = [
    "METHODS", "register_method", "build_method", "load_method", "read_state_file", "method_config", "PromptMethod",
    "MethodConfig",
    "SimpleConfig", "SimplePrompt", "SuperPosConfig", "SuperPosPrompt", "ResidualConfig", "ResidualPrompt",
    "AttemptConfig", "AttemptPrompt", "EptConfig", "EptPrompt", "FullConfig", "FullFineTuning",
    "export_peft_adapter", "export_prompt_tensor_as_peft", "read_peft_prompt",
]


def register_method(name: str, config_class: type[MethodConfig], method_class: type[PromptMethod],
                    description: str = "", *, replace: bool = False) -> None:
    """Make a method known by ``name`` to ``build_method``, ``RunConfig``, grids and the CLI of this process.

    ``config_class`` is a :class:`MethodConfig` dataclass (fields with ``option(...)`` help, checks in
    ``validate``); ``method_class`` a :class:`PromptMethod` with ``build``, ``prompt_matrix`` (or ``forward``)
    and ``config_class``. See ``superpos/methods/simple.py`` for the smallest complete one.
    """
    if not (isinstance(config_class, type) and issubclass(config_class, MethodConfig)):
        raise ValueError(f"register_method: config_class must subclass MethodConfig, got {config_class!r}")
    if not (isinstance(method_class, type) and issubclass(method_class, PromptMethod)):
        raise ValueError(f"register_method: method_class must subclass PromptMethod, got {method_class!r}")
    if name in METHODS and not replace:
        raise ValueError(f"register_method: {name!r} is already a method; pass replace=True to replace it")
    if any(cfg is config_class for key, (cfg, _, _) in METHODS.items() if key != name):
        raise ValueError(f"register_method: {config_class.__name__} already belongs to another method")
    METHODS[name] = (config_class, method_class, description or (method_class.__doc__ or name).strip().splitlines()[0])


def method_config(config: ConfigBase | dict[str, Any], method: str | None = None) -> MethodConfig:
    """A method config from a config object or a dict (``{"method": name, **fields}`` or ``method=name``)."""
    if isinstance(config, MethodConfig):
        if method is not None and METHODS[method][0] is not type(config):
            raise ValueError(f"method: config is a {type(config).__name__}, not a {method!r} config")
        return config
    if isinstance(config, ConfigBase):
        raise ValueError(f"method: {type(config).__name__} is not a method config")
    if not isinstance(config, dict):
        raise ValueError(f"method: expected a method config or a dict, got {type(config).__name__}")
    data = dict(config)
    name = data.pop("method", None) or method
    if name is None:
        raise ValueError(f"method: the dict names no method; known: {', '.join(METHODS)}")
    if name not in METHODS:
        raise ValueError(f"method: unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name][0].from_dict(data)


def method_name(config: MethodConfig) -> str:
    for name, (config_cls, _, _) in METHODS.items():
        if type(config) is config_cls:
            return name
    raise ValueError(f"method: no registered method uses {type(config).__name__}")


def build_method(config: ConfigBase | dict[str, Any], backbone, *, label_words: list[str] | None = None,
                 source_prompts: torch.Tensor | None = None, seed: int = 0, method: str | None = None) -> PromptMethod:
    """Build a method on ``backbone``. Sampling and initialisation draw from ``torch.Generator(seed)``,
    so the same (config, backbone, seed) builds the same method."""
    config = method_config(config, method)
    name = method_name(config)
    module_cls = METHODS[name][1]
    generator = torch.Generator().manual_seed(int(seed))
    built = module_cls.build(config, backbone, generator=generator, label_words=label_words,
                             source_prompts=source_prompts)
    built.build_info = {"seed": int(seed), "label_words": list(label_words) if label_words else None,
                        "backbone": getattr(backbone, "name", None)}
    return built


def load_method(path: str | Path, backbone) -> PromptMethod:
    """Rebuild a method on ``backbone``, with the same prompt and outputs: from a folder written by
    ``method.save(folder)``, or from a state file written from ``method.state_file_bytes()`` (a run's
    best-point state, ``states/<hash>.safetensors`` in a results store)."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_file():
        meta, state = read_state_file(path)
    else:
        meta, state = json.loads((path / CONFIG_FILE).read_text()), None
    name = meta.get("method")
    if name not in METHODS:
        raise ValueError(f"method: {path} names unknown method {name!r}")
    config = METHODS[name][0].from_dict(meta["config"])
    if meta.get("embed_dim") not in (None, backbone.embed_dim):
        raise ValueError(f"method: saved for embed_dim={meta['embed_dim']}, the backbone has {backbone.embed_dim}")
    if name == "full" and state is None:
        built = build_method(config, backbone, seed=meta.get("seed", 0))
        built.load_saved_state(path)
        return built
    state = load_file(str(path / STATE_FILE)) if state is None else state
    built = build_method(config, backbone, seed=meta.get("seed", 0), label_words=meta.get("label_words"),
                         source_prompts=state.get("source_prompts"))
    built.load_trainable_state(state)
    return built


def read_state_file(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The method description and tensors of a state file (``method.state_file_bytes()``)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        text = (handle.metadata() or {}).get(STATE_METADATA_KEY)
        if text is None:
            raise ValueError(f"method: {path} is not a method state file (no {STATE_METADATA_KEY!r} metadata)")
        return json.loads(text), {key: handle.get_tensor(key) for key in handle.keys()}
