"""Prompt methods: the trainable part of a run, one module per method, a registry by name.

```python
method = build_method({"method": "superpos", "m": 64}, backbone, seed=0)   # or a config object
prompt, embeds = method(inputs_embeds, attention_mask)                    # [B, n, d], [B, L, d]
optimizer = torch.optim.AdamW(method.param_groups())
method.save(folder); method = load_method(folder, backbone)
```

A method needs from the backbone only ``embedding_weight [V, d]``, ``embed_dim``, ``device``,
``candidate_token_ids(top_k)``, ``token_ids(text)``, ``name`` and (``full``) ``model``.

Each method's entry in :data:`METHODS` (a :class:`MethodSpec`) is all the rest of the package needs of it: its
classes and description, and how the report shows it (label, colour, order, the fields that name its variants).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, NamedTuple

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


class MethodSpec(NamedTuple):
    """A registered method: what builds it, and how tables and figures show it."""

    config_class: type[MethodConfig]
    method_class: type[PromptMethod]
    #: One line for ``python -m superpos list``.
    description: str
    #: Its name in tables, legends and captions (the paper's: ``SuperPos PT``).
    label: str
    #: Its default setting's colour in every figure (``#rrggbb``); its variants take shades of it.
    colour: str
    #: Its place in tables and legends (the built-ins: Table 1's order).
    order: float
    #: The config fields whose values name its variants, each with the word labels write for it
    #: (``{"n_prompts": "n", "init": "init"}``: ``simple n=20``, ``simple init=labels``).
    variant_fields: Mapping[str, str] = MappingProxyType({})


#: Colours a method registered without one takes, the first one no method uses yet: matplotlib's tab10 (less its
#: pink and grey, which stand for softmax SuperPos and unknown methods), then tab20b's dark hues.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#bcbd22", "#17becf",
           "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")

METHODS: dict[str, MethodSpec] = {
    "simple": MethodSpec(
        SimpleConfig, SimplePrompt,
        "Lester et al. prompt tuning: n free prompt vectors (vocab/uniform/labels init)",
        label="Simple PT", colour="#1f77b4", order=0, variant_fields={"n_prompts": "n", "init": "init"}),
    "superpos": MethodSpec(
        SuperPosConfig, SuperPosPrompt,
        "SuperPos-Prompt: p_i = (E_freeze + dE_i) p'_i over m sampled token embeddings",
        label="SuperPos PT", colour="#d62728", order=3,
        variant_fields={"m": "m", "softmax": "softmax", "weights_init": "p′ init"}),
    "residual": MethodSpec(
        ResidualConfig, ResidualPrompt,
        "Residual prompt tuning: P' = LN(MLP(P)) + P, bottleneck 128",
        label="Residual PT", colour="#ff7f0e", order=2),
    "attempt": MethodSpec(
        AttemptConfig, AttemptPrompt,
        "ATTEMPT: input-wise attention over frozen source prompts and a target prompt",
        label="ATTEMPT", colour="#2ca02c", order=1),
    "ept": MethodSpec(
        EptConfig, EptPrompt,
        "EPT: short prompt + low-rank input update, prompt fusion, multi-space projection",
        label="EPT", colour="#9467bd", order=4, variant_fields={"fusion": "fusion", "projection": "projection"}),
    "full": MethodSpec(
        FullConfig, FullFineTuning,
        "Full fine-tuning of every backbone weight (no prompt)",
        label="Full fine-tuning", colour="#8c564b", order=5),
}

__all__ = [
    "METHODS", "MethodSpec", "PALETTE", "register_method", "variant_fields", "build_method", "load_method",
    "read_state_file", "method_config", "PromptMethod", "MethodConfig",
    "SimpleConfig", "SimplePrompt", "SuperPosConfig", "SuperPosPrompt", "ResidualConfig", "ResidualPrompt",
    "AttemptConfig", "AttemptPrompt", "EptConfig", "EptPrompt", "FullConfig", "FullFineTuning",
    "export_peft_adapter", "export_prompt_tensor_as_peft", "read_peft_prompt",
]


def register_method(name: str, config_class: type[MethodConfig], method_class: type[PromptMethod],
                    description: str = "", *, label: str | None = None, colour: str | None = None,
                    order: float | None = None, variant_fields: Mapping[str, str] | None = None,
                    replace: bool = False) -> MethodSpec:
    """Make a method known by ``name`` to ``build_method``, ``RunConfig``, grids, the CLI and the report of this
    process, and return its :class:`MethodSpec`.

    ``config_class`` is a :class:`MethodConfig` dataclass (fields with ``option(...)`` help, checks in
    ``validate``); ``method_class`` a :class:`PromptMethod` with ``build``, ``prompt_matrix`` (or ``forward``)
    and ``config_class``. See ``superpos/methods/simple.py`` for the smallest complete one. How the report shows
    it: ``label`` (default: ``name``), ``colour`` (default: the first colour of :data:`PALETTE` no method has),
    ``order`` (default: after every method registered so far), ``variant_fields`` (``{field: word}``; default:
    none).
    """
    if not (isinstance(config_class, type) and issubclass(config_class, MethodConfig)):
        raise ValueError(f"register_method: config_class must subclass MethodConfig, got {config_class!r}")
    if not (isinstance(method_class, type) and issubclass(method_class, PromptMethod)):
        raise ValueError(f"register_method: method_class must subclass PromptMethod, got {method_class!r}")
    if name in METHODS and not replace:
        raise ValueError(f"register_method: {name!r} is already a method; pass replace=True to replace it")
    if any(spec.config_class is config_class for key, spec in METHODS.items() if key != name):
        raise ValueError(f"register_method: {config_class.__name__} already belongs to another method")
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(variant_fields or {}) - fields)
    if unknown:
        raise ValueError(f"register_method: variant_fields {', '.join(unknown)} are not fields of "
                         f"{config_class.__name__}")
    others = [spec for key, spec in METHODS.items() if key != name]
    if colour is None:
        used = {spec.colour for spec in others}
        colour = next((c for c in PALETTE if c not in used), PALETTE[len(others) % len(PALETTE)])
    spec = MethodSpec(config_class, method_class,
                      description or (method_class.__doc__ or name).strip().splitlines()[0],
                      label=label or name, colour=colour,
                      order=order if order is not None else max((s.order for s in others), default=-1) + 1,
                      variant_fields=MappingProxyType(dict(variant_fields or {})))
    METHODS[name] = spec
    return spec


def variant_fields() -> dict[str, str]:
    """Every registered method's variant fields with their words in labels (``{"n_prompts": "n", "m": "m", ...}``),
    in the methods' order: a field names variants the same way whichever method has it."""
    words: dict[str, str] = {}
    for spec in sorted(METHODS.values(), key=lambda spec: spec.order):
        for field, word in spec.variant_fields.items():
            words.setdefault(field, word)
    return words


def method_config(config: ConfigBase | dict[str, Any], method: str | None = None) -> MethodConfig:
    """A method config from a config object or a dict (``{"method": name, **fields}`` or ``method=name``)."""
    if isinstance(config, MethodConfig):
        if method is not None and METHODS[method].config_class is not type(config):
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
    return METHODS[name].config_class.from_dict(data)


def method_name(config: MethodConfig) -> str:
    for name, spec in METHODS.items():
        if type(config) is spec.config_class:
            return name
    raise ValueError(f"method: no registered method uses {type(config).__name__}")


def build_method(config: ConfigBase | dict[str, Any], backbone, *, label_words: list[str] | None = None,
                 source_prompts: torch.Tensor | None = None, seed: int = 0, method: str | None = None) -> PromptMethod:
    """Build a method on ``backbone``. Sampling and initialisation draw from ``torch.Generator(seed)``,
    so the same (config, backbone, seed) builds the same method."""
    config = method_config(config, method)
    name = method_name(config)
    module_cls = METHODS[name].method_class
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
    config = METHODS[name].config_class.from_dict(meta["config"])
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
