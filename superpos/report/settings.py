"""A setting's name, place and colour in tables and figures: a method plus how its config departs from the
method's defaults.

:class:`Variant` is built from a record's ``method`` and ``method_config`` (typed values, never parsed back from
a label): its :attr:`~Variant.label` names rows, columns and legends (``superpos m=16``, ``simple init=labels``,
``ept (+ fusion)``) and its :meth:`~Variant.sort_key` orders them meaningfully (Table 1's methods, EPT's stages
in order, the default before its variants, numbers numerically, initializations in the order the papers list).
:func:`setting_style` gives it one colour and marker, the same in every figure: the method's own colour for its
default (softmax SuperPos a family of its own), fixed shades of it for its variants.

A method's name, colour, place and the words of its variant fields come from its registration
(:class:`superpos.methods.MethodSpec`), so a method registered with :func:`superpos.methods.register_method`
shows in tables and figures with nothing else to edit.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Iterable

import pandas as pd

from ..methods import METHODS, variant_fields

#: Values of choice fields in their meaningful order (Lester et al.'s inits; p′ starts, default first).
FACTOR_ORDER = {"init": ("uniform", "vocab", "labels"),
                "weights_init": ("auto", "one_hot", "normal", "uniform", "mean", "zeros")}
#: EPT's ablation stages by (fusion, projection), in order.
EPT_STAGE_NAMES = {(False, False): "decomposition", (True, False): "+ fusion", (False, True): "+ projection only",
                   (True, True): "+ fusion + projection"}


def _defaults(method: str) -> tuple[tuple[str, Any], ...]:
    """The method's config defaults as sorted ``(field, value)`` pairs; none for a method this process does not know
    (every field then counts as a change)."""
    spec = METHODS.get(method)
    return _config_defaults(spec.config_class) if spec is not None else ()


@functools.lru_cache(maxsize=None)
def _config_defaults(config_class: type) -> tuple[tuple[str, Any], ...]:
    try:
        return tuple(sorted(config_class().to_dict().items()))
    except (TypeError, ValueError):  # a config with a required field has no defaults to depart from
        return ()


def method_rank(method: str) -> float:
    """The method's place in tables and legends (its registration's ``order``); an unknown method after every
    known one."""
    spec = METHODS.get(method)
    return spec.order if spec is not None else math.inf


def field_word(field: str, method: str | None = None) -> str:
    """The word labels write for a config field: the method's own (its ``variant_fields``), else any registered
    method's for the same field (``n_prompts`` reads ``n`` everywhere), else the field's name."""
    spec = METHODS.get(method) if method is not None else None
    own = spec.variant_fields if spec is not None else {}
    return own.get(field) or variant_fields().get(field, field)


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
        variant = cls(method, tuple(sorted((k, _hashable(v)) for k, v in changes.items())))
        _NAMED.setdefault((method, variant.label), variant)
        return variant

    @property
    def label(self) -> str:
        """``superpos``, ``superpos (softmax)``, ``superpos m=16``, ``simple n=20``, ``ept (+ fusion)``."""
        changes = dict(self.changes)
        if self.method == "ept" and "fusion" in changes:
            stage = EPT_STAGE_NAMES[(bool(changes.pop("fusion")), bool(changes.pop("projection")))]
            rest = "".join(f" {field_word(k, self.method)}={v}" for k, v in sorted(changes.items()))
            return f"ept ({stage}){rest}"
        words = ["(softmax)"] if changes.pop("softmax", False) else []
        words.extend(f"{field_word(k, self.method)}={v}" for k, v in sorted(changes.items()))
        return " ".join([self.method, *words])

    def sort_key(self) -> tuple:
        changes = dict(self.changes)
        rank = method_rank(self.method)
        stage = len(EPT_STAGE_NAMES)
        if self.method == "ept" and "fusion" in changes:
            stage = list(EPT_STAGE_NAMES).index((bool(changes.pop("fusion")), bool(changes.pop("projection"))))
        softmax = bool(changes.pop("softmax", False))
        return (rank, stage, softmax, len(changes) > 0,
                tuple((field, value_key(field, value)) for field, value in sorted(changes.items())))


#: Every setting named in this process, by (method, label): a frame that kept only the labels gets its settings back.
_NAMED: dict[tuple[str, str], Variant] = {}


def variant_named(method: str, label: str) -> Variant:
    """The setting whose :attr:`~Variant.label` is ``label`` (one built by :meth:`Variant.of` in this process, or
    the method's default), else a stand-in that keeps the label apart from every other setting."""
    if (method, label) in _NAMED:
        return _NAMED[(method, label)]
    return Variant(method) if label == method else Variant(method, (("label", str(label)),))


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


# ----------------------------------------------------------------------------- one colour per setting
#: SuperPos with softmax weights is a family of its own (tab10's pink); a method this process does not know is grey.
SOFTMAX_COLOUR, OTHER_COLOUR = "#e377c2", "#7f7f7f"
#: Slot k of a family: its hue mixed toward black (> 0) or white (< 0) by SHADES[k], drawn with MARKERS[k];
#: slot 0 is the family's own colour (a method's default setting).
SHADES = (0.0, 0.45, -0.42, 0.72, -0.6, 0.25, -0.25, 0.6)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h")
#: The slot of each named departure from a method's defaults, whichever figure shows it.
SLOTS = {("weights_init", "normal"): 1, ("weights_init", "uniform"): 2, ("weights_init", "one_hot"): 3,
         ("weights_init", "mean"): 4, ("weights_init", "zeros"): 5,
         ("init", "labels"): 1, ("init", "uniform"): 2, ("init", "vocab"): 3,
         ("stage", "+ fusion"): 1, ("stage", "decomposition"): 2, ("stage", "+ projection only"): 3}
#: Fields that do not change a setting's colour (how the vocabulary is sampled for an initialization).
UNCOLOURED_FIELDS = ("vocab_top_k",)


def method_colour(method: str) -> str:
    """The method's own colour (its registration's ``colour``), the one its default setting has in every figure."""
    spec = METHODS.get(method)
    return spec.colour if spec is not None else OTHER_COLOUR


def numeric_field(field: str, method: str) -> bool:
    """Whether ``field`` is an ordered number that names variants (``m``, ``n_prompts``): one of the registered
    variant fields with a numeric default in ``method``'s config. Its values take a sequential shade of the family,
    lighter below the default value, darker above."""
    default = dict(_defaults(method)).get(field)
    return field in variant_fields() and isinstance(default, (int, float)) and not isinstance(default, bool)


def shade(colour: str, amount: float) -> str:
    """``colour`` mixed toward black (``amount`` > 0) or white (< 0), as ``#rrggbb``."""
    from matplotlib.colors import to_hex, to_rgb

    target = 0.0 if amount > 0 else 1.0
    return to_hex(tuple(c + (target - c) * abs(amount) for c in to_rgb(colour)))


def _family(variant: "Variant") -> tuple[str, dict]:
    """(the family's colour, the changes left to place in it)."""
    changes = dict(variant.changes)
    if variant.method == "superpos" and changes.pop("softmax", False):
        return SOFTMAX_COLOUR, changes
    return method_colour(variant.method), changes


def setting_style(variant: "Variant", slot: int | None = None) -> tuple[str, str]:
    """``(colour, marker)`` of a setting, the same in every figure: its family's colour (the method's, or
    softmax SuperPos's) for the default, a fixed shade of it for a named departure (:data:`SLOTS`: EPT's stages,
    p′ starts, initializations), a sequential shade for a numeric one (m, n: lighter below the default, darker
    above). ``slot`` forces a slot of the family (a figure resolving two settings that would share a colour)."""
    import zlib

    family, changes = _family(variant)
    if slot is not None:
        return shade(family, SHADES[slot % len(SHADES)]), MARKERS[slot % len(MARKERS)]
    if variant.method == "ept" and "fusion" in changes:
        stage = EPT_STAGE_NAMES[(bool(changes.pop("fusion")), bool(changes.pop("projection", True)))]
        if stage != EPT_STAGE_NAMES[(True, True)]:
            changes = {"stage": stage}
    defaults = dict(_defaults(variant.method))
    for field, value in sorted(changes.items()):
        if field in UNCOLOURED_FIELDS:
            continue
        if (field, value) in SLOTS:
            return setting_style(variant, SLOTS[(field, value)])
        default = defaults.get(field)
        if numeric_field(field, variant.method) and isinstance(value, (int, float)) and value > 0 and default > 0:
            ratio = math.log2(value / default)
            return shade(family, 0.85 * math.tanh(ratio / 4)), MARKERS[1 + int(abs(ratio)) % (len(MARKERS) - 1)]
        return setting_style(variant, 1 + zlib.crc32(f"{field}={value}".encode()) % (len(SHADES) - 1))
    return family, MARKERS[0]


def setting_styles(settings: Iterable["Variant"]) -> dict["Variant", tuple[str, str]]:
    """``setting -> (colour, marker)`` for the settings of one figure: each its :func:`setting_style`, but a
    setting whose colour another one of the figure already has (two departures a figure rarely shows together)
    takes its family's next free slot, so no two settings of a figure share a colour."""
    styles, used = {}, set()
    for variant in dict.fromkeys(settings):
        colour, marker = setting_style(variant)
        slot = 0
        while colour in used and slot < len(SHADES):
            slot += 1
            colour, marker = setting_style(variant, slot)
        used.add(colour)
        styles[variant] = (colour, marker)
    return styles
