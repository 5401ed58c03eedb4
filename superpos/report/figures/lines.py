"""One line per setting: its style (colour and marker of the setting, line style of dropout), the split of many
settings over panels of at most :data:`~.style.MAX_LINES` lines, seaborn's hue and style arguments, lines kept
visible under later ones, and the legend."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from ..names import method_label, task_label, task_order
from ..settings import Variant, setting_styles, variant_named, variant_sorter
from .style import DROPOUT_STYLE, HALO, LINE_WIDTH, MAX_LINES


def settings_of(frame: pd.DataFrame) -> dict[tuple[str, str], Variant]:
    """``(method, variant label) -> setting`` of the rows of ``frame`` (its ``setting`` column, else by label)."""
    found = {}
    if "setting" in frame.columns:
        found = {(m, v): s for m, v, s in zip(frame["method"], frame["variant"], frame["setting"]) if isinstance(s, Variant)}
    return {**{(m, v): variant_named(m, v) for m, v in zip(frame["method"], frame["variant"])}, **found}


def series_keys(frame: pd.DataFrame) -> list[tuple]:
    """(method, variant, dropout) keys in Table 1's order, dropout off before on."""
    order = variant_sorter(frame)
    return sorted({(m, v, bool(d)) for m, v, d in zip(frame["method"], frame["variant"], frame["dropout"])},
                  key=lambda k: (order(k[1]), k[2]))


def line_styles(series: list[tuple], hue: str, settings: dict | None = None) -> dict:
    """Per series key: legend label (``hue``: ``variant``, ``dropout`` or ``setting``), colour and marker (one per
    setting, the same in every figure) and line style (dropout)."""
    settings = {**{(m, v): variant_named(m, v) for m, v, _ in series}, **(settings or {})}
    palette = setting_styles(settings[(m, v)] for m, v, _ in series)
    styles = {}
    for method, variant, dropout in series:
        name, state = method_label(method, variant), f"dropout {'on' if dropout else 'off'}"
        colour, marker = palette[settings[(method, variant)]]
        styles[(method, variant, dropout)] = {"label": {"dropout": state, "setting": f"{name}, {state}"}.get(hue, name),
                                              "color": colour, "marker": marker, "linestyle": DROPOUT_STYLE[dropout]}
    return styles


def _line_groups(series: list[tuple], settings: dict) -> list[list[tuple]]:
    """``series`` over the fewest panels of at most :data:`MAX_LINES` lines, a setting's dropout pair together;
    among those, the split that mixes the fewest families (a method; softmax SuperPos apart), then the most even."""
    if len(series) <= MAX_LINES:
        return [series]
    units = [list(unit) for _, unit in itertools.groupby(series, key=lambda key: key[:2])]

    def family(unit):
        return unit[0][0], bool(dict(settings[unit[0][:2]].changes).get("softmax", False))

    for count in range(math.ceil(len(series) / MAX_LINES), len(units) + 1):
        best = None
        for cuts in itertools.combinations(range(1, len(units)), count - 1):
            parts = [units[a:b] for a, b in zip((0, *cuts), (*cuts, len(units)))]
            sizes = [sum(map(len, part)) for part in parts]
            if max(sizes) <= MAX_LINES:
                cost = (sum(len({family(u) for u in part}) > 1 for part in parts), max(sizes) - min(sizes))
                best = min(best or (cost, parts), (cost, parts), key=lambda found: found[0])
        if best:
            return [[key for unit in part for key in unit] for part in best[1]]
    return [[key] for key in series]


def _group_name(group: list[tuple], settings: dict) -> str:
    families = dict.fromkeys((m, bool(dict(settings[(m, v)].changes).get("softmax", False))) for m, v, _ in group)
    return ", ".join(method_label(m) + (" (softmax)" if softmax else "") for m, softmax in families)


def _panels(frame: pd.DataFrame, series: list[tuple], settings: dict) -> tuple[pd.DataFrame, list[str]]:
    """``frame`` with ``series`` (an id per setting, in order) and ``panel`` (its panel's title: backbone x task x
    group of at most :data:`MAX_LINES` settings), and the panels in order."""
    groups = _line_groups(series, settings)
    ids = {key: f"{i:03d}" for i, key in enumerate(series)}
    group_of = {key: g for g, group in enumerate(groups) for key in group}
    several = frame["backbone"].nunique() > 1
    keys = list(zip(frame["method"], frame["variant"], frame["dropout"].astype(bool)))
    frame = frame.assign(series=[ids[k] for k in keys], _group=[group_of[k] for k in keys])
    titles, order = [], []
    for backbone in dict.fromkeys(frame["backbone"]):
        for task in task_order(frame.loc[frame["backbone"] == backbone, "task"]):
            for group in sorted(set(frame.loc[(frame["backbone"] == backbone) & (frame["task"] == task), "_group"])):
                title = task_label(task) + (f" — {backbone}" if several else "")
                title += f" · {_group_name(groups[group], settings)}" if len(groups) > 1 else ""
                titles.append(((backbone, task, group), title))
                order.append(title)
    names = dict(titles)
    frame["panel"] = [names[key] for key in zip(frame["backbone"], frame["task"], frame["_group"])]
    return frame.drop(columns="_group"), order


def line_semantics(frame: pd.DataFrame, hue: str) -> tuple[pd.DataFrame, list[str], dict, dict]:
    """For a figure of one line per setting: ``frame`` with its ``series`` and ``panel`` columns (:func:`_panels`),
    the panels, the series' styles (:func:`line_styles`), and seaborn's hue and style arguments: one level per series,
    in order, with its colour, dash and marker."""
    settings, series = settings_of(frame), series_keys(frame)
    styles = line_styles(series, hue, settings)
    frame, panels = _panels(frame, series, settings)
    ids = {key: f"{i:03d}" for i, key in enumerate(series)}
    order = list(ids.values())
    semantics = dict(hue="series", hue_order=order, palette={ids[k]: s["color"] for k, s in styles.items()},
                     style="series", style_order=order, linewidth=LINE_WIDTH,
                     dashes={ids[k]: "" if s["linestyle"] == "-" else (4, 2) for k, s in styles.items()},
                     markers={ids[k]: s["marker"] for k, s in styles.items()})
    return frame, panels, styles, semantics


def unhide(ax) -> None:
    """Widen each line that lines drawn after it cover (within 1.5 % of the axis at 90 % of its points), by
    :data:`HALO` points per covering line, so that it shows at their edges: two settings that both sit at 0 (or
    at 100) stay two visible lines."""
    log = ax.get_yscale() == "log"
    low, high = (np.log10(v) if log else v for v in ax.get_ylim())
    lines = [line for line in ax.get_lines() if line.get_linestyle() not in ("None", "none", " ", "")
             and len(line.get_xdata()) > 0]
    points = [(np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)) for line in lines]
    if log:
        points = [(x, np.log10(np.clip(y, 1e-12, None))) for x, y in points]
    for i, line in enumerate(lines):
        x, y = points[i]
        covering = 0
        for later_x, later_y in points[i + 1:]:
            inside = (x >= later_x.min()) & (x <= later_x.max())
            close = np.abs(y[inside] - np.interp(x[inside], later_x, later_y)) <= 0.015 * abs(high - low)
            covering += bool(inside.sum()) and close.sum() >= 0.9 * len(x)
        if covering:
            line.set_linewidth(line.get_linewidth() + HALO * covering)
            line.set_markersize(line.get_markersize() + HALO * covering)


def line_legend(fig, styles: dict, *, markers: bool = True, extra=()) -> None:
    """One entry per label, below the panels (beside them it competes with the title for a narrow figure's
    width); ``extra``: (handle, label) of the marks the figure uses."""
    seen = {}
    for style in styles.values():
        seen.setdefault(style["label"], style)
    handles = [Line2D([], [], color=s["color"], linestyle=s["linestyle"], marker=s["marker"] if markers else None,
                      markersize=4.5) for s in seen.values()]
    labels = list(seen)
    for handle, label in extra:
        handles.append(handle)
        labels.append(label)
    columns = max(2, min(3, int(fig.get_size_inches()[0] / 2.6)))  # a one-panel figure: two columns
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), columns), fontsize=8, frameon=False)

