"""A setting's name and place in tables: a method plus how its config departs from the method's defaults.

:class:`Variant` is built from a record's ``method`` and ``method_config`` (typed values, never parsed back from
a label): its :attr:`~Variant.label` names rows, columns and legends (``superpos m=16``, ``simple init=labels``,
``ept (+ fusion)``) and its :meth:`~Variant.sort_key` orders them meaningfully (Table 1's methods, EPT's stages
in order, the default before its variants, numbers numerically, initializations in the order the papers list).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Iterable

import pandas as pd

METHOD_ORDER = ("simple", "attempt", "residual", "superpos", "ept", "full")  # Table 1's order, EPT added
FIELD_NAMES = {"n_prompts": "n", "m": "m", "init": "init", "softmax": "softmax", "weights_init": "p′ init"}
#: Values of choice fields in their meaningful order (Lester et al.'s inits; p′ starts, default first).
FACTOR_ORDER = {"init": ("uniform", "vocab", "labels"),
                "weights_init": ("auto", "one_hot", "normal", "uniform", "mean", "zeros")}
#: EPT's ablation stages by (fusion, projection), in order.
EPT_STAGE_NAMES = {(False, False): "decomposition", (True, False): "+ fusion", (False, True): "+ projection only",
                   (True, True): "+ fusion + projection"}


@functools.lru_cache(maxsize=None)
def _defaults(method: str) -> tuple[tuple[str, Any], ...]:
    try:
        from ..methods import METHODS

        return tuple(sorted(METHODS[method][0]().to_dict().items()))
    except Exception:  # a method this process does not know: every field counts as a change
        return ()


def value_key(field: str, value: Any) -> tuple:
    """Sort key of one config value: the field's meaningful order, else numbers numerically, then text."""
    order = FACTOR_ORDER.get(field)
    if order is not None and value in order:
        return (0, order.index(value), "")
    if isinstance(value, bool) or value is None:
        return (1, int(bool(value)), "")
    if isinstance(value, (int, float)):
        return (1, float(value), "")
    return (2, 0.0, str(value))


@dataclasses.dataclass(frozen=True)
class Variant:
    """One setting's method and its departures from the method's defaults (``changes``: ``(field, value)``
    pairs sorted by field; ATTEMPT's ``sources`` and a p′ init of ``auto`` are not departures)."""

    method: str
    changes: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, method: str, method_config: dict | None) -> "Variant":
        defaults = dict(_defaults(method))
        changes = {k: v for k, v in (method_config or {}).items()
                   if k in defaults and defaults[k] != v and k != "sources"
                   and not (k == "weights_init" and v == "auto")}
        if method == "ept" and ({"fusion", "projection"} & set(changes)):
            changes.setdefault("fusion", defaults.get("fusion", True))
            changes.setdefault("projection", defaults.get("projection", True))
        return cls(method, tuple(sorted((k, _hashable(v)) for k, v in changes.items())))

    @property
    def label(self) -> str:
        """``superpos``, ``superpos (softmax)``, ``superpos m=16``, ``simple n=20``, ``ept (+ fusion)``."""
        changes = dict(self.changes)
        if self.method == "ept" and "fusion" in changes:
            stage = EPT_STAGE_NAMES[(bool(changes.pop("fusion")), bool(changes.pop("projection")))]
            rest = "".join(f" {FIELD_NAMES.get(k, k)}={v}" for k, v in sorted(changes.items()))
            return f"ept ({stage}){rest}"
        words = ["(softmax)"] if changes.pop("softmax", False) else []
        words.extend(f"{FIELD_NAMES.get(k, k)}={v}" for k, v in sorted(changes.items()))
        return " ".join([self.method, *words])

    def sort_key(self) -> tuple:
        changes = dict(self.changes)
        rank = METHOD_ORDER.index(self.method) if self.method in METHOD_ORDER else len(METHOD_ORDER)
        stage = len(EPT_STAGE_NAMES)
        if self.method == "ept" and "fusion" in changes:
            stage = list(EPT_STAGE_NAMES).index((bool(changes.pop("fusion")), bool(changes.pop("projection"))))
        softmax = bool(changes.pop("softmax", False))
        return (rank, stage, softmax, len(changes) > 0,
                tuple((field, value_key(field, value)) for field, value in sorted(changes.items())))


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def variant_sorter(frame: pd.DataFrame) -> Callable[[str], tuple]:
    """A sort key for the ``variant`` labels of ``frame``, from its ``setting`` column (a :class:`Variant` per
    row); labels without one sort after, by name."""
    order = {}
    if "setting" in frame.columns:
        order = {label: setting.sort_key() for label, setting in zip(frame["variant"], frame["setting"])
                 if isinstance(setting, Variant)}
    return lambda label: (0, order[label], "") if label in order else (1, (), str(label))


def sort_variants(frame: pd.DataFrame, labels: Iterable[str]) -> list[str]:
    """``labels`` (variant labels found in ``frame``) in their settings' order, each once."""
    return sorted(dict.fromkeys(labels), key=variant_sorter(frame))
