"""The dropout switch of the frozen network: off, the checkpoint's own rates, or one rate everywhere."""
from __future__ import annotations

import functools
from typing import Callable

import torch.nn.functional as F
from torch import nn

#: What a backbone pretrained without dropout says when dropout is asked for without a rate.
NO_OWN_DROPOUT = ("{name} has no dropout of its own (it was pretrained without); pass a rate, e.g. "
                  "dropout_rate=0.1 (--dropout-rate 0.1)")


def _sublayer_dropout(rate: float, module: nn.Module, args, output):
    """Forward hook: dropout on a sublayer's output before the residual add (only in train mode)."""
    if not module.training or rate == 0.0:
        return None
    if isinstance(output, tuple):
        return (F.dropout(output[0], rate, training=True),) + tuple(output[1:])
    return F.dropout(output, rate, training=True)


def is_sublayer_dropout(hook) -> bool:
    """Whether a forward hook is :meth:`DropoutSwitch.set_dropout`'s sublayer dropout (inert in eval mode)."""
    return isinstance(hook, functools.partial) and hook.func is _sublayer_dropout


# Float attributes that models read at forward time as a dropout probability (T5Attention.dropout,
# LlamaAttention.attention_dropout, ...). ``nn.Dropout`` modules are handled separately.
_DROPOUT_ATTRIBUTES = ("dropout", "attention_dropout", "attn_dropout", "hidden_dropout", "dropout_rate",
                       "activation_dropout", "resid_dropout", "embd_dropout")


class DropoutSwitch:
    """Read and set every dropout probability of the model (mixed into :class:`~superpos.backbones.core.Backbone`)."""

    def train_mode(self, enabled: bool = True) -> None:
        """Put the frozen model in train mode (dropout acts, if :meth:`set_dropout` enabled it) or eval mode."""
        self.model.train(enabled)

    def _read_dropout(self) -> list[tuple[object, str, float]]:
        """Every dropout probability of the model as ``(owner, attribute, checkpoint value)``.

        Owners are ``nn.Dropout`` modules (``p``), modules with a float dropout attribute read at forward
        time (``T5Attention.dropout``, ``LlamaAttention.attention_dropout``) and the config objects.
        """
        found = []
        for module in self.model.modules():
            if isinstance(module, nn.Dropout):
                found.append((module, "p", float(module.p)))
                continue
            for attr in _DROPOUT_ATTRIBUTES:
                value = module.__dict__.get(attr)
                if isinstance(value, float):
                    found.append((module, attr, value))
        configs = [self.model.config, getattr(self.model.config, "text_config", None)]
        for config in {id(c): c for c in configs if c is not None}.values():
            for key, value in vars(config).items():
                if "dropout" in key and isinstance(value, float) and not key.startswith("classifier"):
                    found.append((config, key, value))
        return found

    def _write_dropout(self, rate_of: Callable[[float], float]) -> None:
        for owner, attr, original in self._checkpoint_dropout:
            setattr(owner, attr, rate_of(original))

    def set_dropout(self, enabled: bool, rate: float | None = None) -> None:
        """Switch the dropout of the frozen network.

        ``enabled=False`` sets every dropout probability to 0 (each ``nn.Dropout.p`` and each attention
        module's dropout attribute, plus the config fields), so the network is deterministic even in train
        mode, as when the engine trains a method next to it.

        ``enabled=True`` and ``rate=None`` restores the checkpoint's own rates (T5 v1.1 lm-adapt: 0.1).
        ``enabled=True`` with ``rate`` uses ``rate`` everywhere. A checkpoint without dropout needs ``rate``
        (``ValueError`` otherwise): SmolLM2 was pretrained without dropout (its only field,
        ``attention_dropout``, is 0.0), so dropout there is an addition, not the pretraining setting. For such
        models ``rate`` goes on the attention probabilities and, through forward hooks, on the output of every
        attention and MLP sublayer before its residual add (where T5 puts it).

        Dropout only acts in train mode (:meth:`train_mode`).
        """
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        if not enabled:
            self._write_dropout(lambda original: 0.0)
            self.dropout_rate = 0.0
            return
        if rate is not None and not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"dropout_rate: must be in [0, 1), got {rate}")
        if rate is None:
            if self.checkpoint_dropout_rate == 0.0:
                raise ValueError(f"dropout_rate: {NO_OWN_DROPOUT.format(name=self.name)}")
            self._write_dropout(lambda original: original)
            self.dropout_rate = self.checkpoint_dropout_rate
            return
        rate = float(rate)
        self._write_dropout(lambda original: rate)
        if not any(isinstance(owner, nn.Dropout) for owner, _, _ in self._checkpoint_dropout):
            # No dropout modules to set (Llama-style): add dropout after each sublayer.
            self._hooks = [module.register_forward_hook(functools.partial(_sublayer_dropout, rate))
                           for module in self._sublayers()]
        self.dropout_rate = rate

    def _sublayers(self) -> list[nn.Module]:
        """Attention and MLP blocks of every decoder layer (Llama/Gemma/Qwen naming)."""
        found = [module for path, module in self.model.named_modules()
                 if path.rsplit(".", 1)[-1] in ("self_attn", "mlp")]
        if not found:
            raise ValueError(f"dropout_rate: cannot place dropout in {type(self.model).__name__} "
                             f"(no self_attn/mlp sublayers)")
        return found
