"""Where a model keeps its dropout: every probability it reads, and hooks that add dropout where it has none.

:meth:`~superpos.backbones.core.Backbone.set_dropout` switches these (off, the checkpoint's own rates, or one rate
everywhere).
"""
from __future__ import annotations

import functools

import torch.nn.functional as F
from torch import nn

# Float attributes that models read at forward time as a dropout probability (T5Attention.dropout,
# LlamaAttention.attention_dropout, ...). ``nn.Dropout`` modules are handled separately.
_DROPOUT_ATTRIBUTES = ("dropout", "attention_dropout", "attn_dropout", "hidden_dropout", "dropout_rate",
                       "activation_dropout", "resid_dropout", "embd_dropout")


def read_dropout(model: nn.Module) -> list[tuple[object, str, float]]:
    """Every dropout probability of ``model`` as ``(owner, attribute, value now)``.

    Owners are ``nn.Dropout`` modules (``p``), modules with a float dropout attribute read at forward
    time (``T5Attention.dropout``, ``LlamaAttention.attention_dropout``) and the config objects.
    """
    found = []
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            found.append((module, "p", float(module.p)))
            continue
        for attr in _DROPOUT_ATTRIBUTES:
            value = module.__dict__.get(attr)
            if isinstance(value, float):
                found.append((module, attr, value))
    configs = [model.config, getattr(model.config, "text_config", None)]
    for config in {id(c): c for c in configs if c is not None}.values():
        for key, value in vars(config).items():
            if "dropout" in key and isinstance(value, float) and not key.startswith("classifier"):
                found.append((config, key, value))
    return found


def _sublayer_dropout(rate: float, module: nn.Module, args, output):
    """Forward hook: dropout on a sublayer's output before the residual add (only in train mode)."""
    if not module.training or rate == 0.0:
        return None
    if isinstance(output, tuple):
        return (F.dropout(output[0], rate, training=True),) + tuple(output[1:])
    return F.dropout(output, rate, training=True)


def is_sublayer_dropout(hook) -> bool:
    """Whether a forward hook is :func:`add_sublayer_dropout`'s (inert in eval mode)."""
    return isinstance(hook, functools.partial) and hook.func is _sublayer_dropout


def add_sublayer_dropout(model: nn.Module, rate: float) -> list:
    """Dropout at ``rate`` on the output of every attention and MLP sublayer, before its residual add (where T5
    puts it), as forward hooks; returns their handles (``handle.remove()`` takes one away)."""
    return [module.register_forward_hook(functools.partial(_sublayer_dropout, rate)) for module in sublayers(model)]


def sublayers(model: nn.Module) -> list[nn.Module]:
    """Attention and MLP blocks of every decoder layer (Llama/Gemma/Qwen naming)."""
    found = [module for path, module in model.named_modules() if path.rsplit(".", 1)[-1] in ("self_attn", "mlp")]
    if not found:
        raise ValueError(f"dropout_rate: cannot place dropout in {type(model).__name__} "
                         f"(no self_attn/mlp sublayers)")
    return found
