"""Figures: learning curves (Figure 2a, b), the m ablation (2c), weight similarity (2d), ablation bars, losses.

Every function takes the long frames of :mod:`.scores` / :mod:`.stability` and returns a matplotlib ``Figure``
(laid out by seaborn's ``relplot`` / ``FacetGrid``), already closed in pyplot. Figures carry no caption:
:func:`~superpos.report.publish_figure` adds the one-line title, writes the caption beside the files and adds
the meaning of the marks the figure uses (``fig.marks``). A figure with nothing to show or compare carries
``fig.unavailable`` (why) instead, and ``publish_figure`` does not write it.

The same conventions in every figure:

- one colour and marker per setting (:func:`~superpos.report.settings.setting_style`): a method's own colour
  for its default, fixed shades of it for its variants; dropout is the line style (solid off, dashed on) or,
  in bars, hatching (on), so an on/off pair shares its colour;
- scores in percent on 0–100 axes, three quantities side by side: the strict score (an invalid label zeroes
  the task, †), the lenient score (invalid labels count as wrong) and the invalid-label rate;
- at most :data:`MAX_LINES` lines per panel (more settings are split over panels, families kept together);
  lines drawn first are drawn wider, so a line hidden under a later one still shows at its edges;
- a strict mean over seeds that counts a seed's † zero is marked: × on a learning curve, † over a bar or point.
"""
from __future__ import annotations

import itertools
import math
import textwrap

import matplotlib

import matplotlib.pyplot as plt  # noqa: E402  (after matplotlib: the kernel's backend is already chosen)
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from .names import dropout_mark, method_label, task_label, task_order
from .scores import select
from .settings import METHOD_COLOURS, Variant, setting_styles, value_key, variant_named, variant_sorter

STEP_LABEL = "training step (optimizer updates)"
LOSS_LABEL = "training loss (token cross-entropy)"
#: (row name, column of the mean, column of its std over seeds, y label), in the order the panels show them.
QUANTITIES = (("strict", "strict_score", "strict_std", "strict score (%)"),
              ("lenient", "lenient_score", "lenient_std", "lenient score (%)"),
              ("invalid", "invalid_rate", "invalid_std", "invalid labels (%)"))
#: Best-point figures (:func:`plot_factor`): the invalid-label rate where the lenient score beside it is read (the
#: strict-best point of a run that never had all labels valid is its first evaluation, whatever came after).
AT_BEST_POINTS = QUANTITIES[:2] + (("invalid", "lenient_invalid_rate", "lenient_invalid_std",
                                    "invalid labels (%)\nat the lenient point"),)
#: Dropout: solid off, dashed on (lines); plain off, hatched on (bars).
DROPOUT_STYLE = {False: "-", True: "--"}
DROPOUT_HATCH = {False: "", True: "///"}
#: At most this many lines in one panel; their width, and how much wider a line drawn under another one is.
MAX_LINES, LINE_WIDTH, HALO = 5, 1.3, 1.4
#: The mark of a learning-curve point whose mean over seeds counts a seed's † zero, and its legend entry.
DAGGER_POINT = {"marker": "x", "color": "black", "s": 30, "linewidths": 1.3, "zorder": 6}
DAGGER_LABEL = "× mean counts a † seed (strict 0)"
MARK_BANDS = "Bands: ± one standard deviation over seeds"
MARK_CROSS = ("×: the strict mean over seeds counts a † seed (invalid labels, strict score 0); the lenient panel "
              "beside it shows the same runs without that 0")
MARK_ERRORS = "Error bars: ± one standard deviation over seeds"
MARK_DAGGER = "†: a strict score of 0 from invalid labels (†k/n: in k of n seeds)"
SVG_SALT = "superpos"
matplotlib.rcParams["svg.hashsalt"] = SVG_SALT  # stable element ids: SVGs diff cleanly between runs


def _figure(rows: int, columns: int, *, width: float, height: float):
    return plt.subplots(rows, columns, figsize=(width * columns, height * rows + 0.4), squeeze=False,
                        layout="constrained")


def _done(fig, marks=()):
    fig.marks = [mark for mark in marks if mark]
    plt.close(fig)
    return fig


def _empty(message: str):
    """A figure with nothing to show or compare: ``publish_figure`` writes no file and says ``message``."""
    fig, ax = plt.subplots(figsize=(6, 1.2), layout="constrained")
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    fig.unavailable = message
    return _done(fig)


def _facets(grid, height_extra: float = 0.7):
    """A seaborn grid's figure laid out by matplotlib (legend and title outside the panels), a bit taller."""
    fig = grid.figure
    width, height = fig.get_size_inches()
    fig.set_size_inches(width, height + height_extra)
    fig.set_layout_engine("constrained")
    return fig


def _percent_axis(ax, label: str | None = None) -> None:
    """0–100 with a little room so a line at 0 or 100 stays visible off the frame."""
    ax.set_ylim(-4, 104)
    ax.set_yticks([0, 25, 50, 75, 100])
    ax.grid(alpha=0.3)
    ax.set_axisbelow(True)  # grid behind bars
    if label is not None:
        ax.set_ylabel(label, fontsize=8)
        ax.yaxis.label.set_visible(True)  # seaborn hides inner y labels: here each column shows its own quantity


def _columns(frame: pd.DataFrame, quantity: tuple) -> tuple[str, str | None, float]:
    """(value column, std column, factor to percent) of a quantity row; a frame without the strict/lenient
    split (older callers) draws its ``score`` in both score rows."""
    name, value, std, _ = quantity
    if value not in frame.columns and name != "invalid":
        value, std = "score", "score_std"
    return value, (std if std in frame.columns else None), (100.0 if name == "invalid" else 1.0)


def _long(frame: pd.DataFrame, quantities=QUANTITIES) -> pd.DataFrame:
    """``frame`` once per quantity: ``quantity`` (its label), ``value`` and ``spread`` in percent."""
    parts = []
    for quantity in quantities:
        value, std, scale = _columns(frame, quantity)
        parts.append(frame.assign(quantity=quantity[3], value=pd.to_numeric(frame[value], errors="coerce") * scale,
                                  spread=pd.to_numeric(frame[std], errors="coerce") * scale if std else np.nan))
    return pd.concat(parts, ignore_index=True)


# ----------------------------------------------------------------------------- settings: style and panels
def _settings(frame: pd.DataFrame) -> dict[tuple[str, str], Variant]:
    """``(method, variant label) -> setting`` of the rows of ``frame`` (its ``setting`` column, else by label)."""
    found = {}
    if "setting" in frame.columns:
        found = {(m, v): s for m, v, s in zip(frame["method"], frame["variant"], frame["setting"]) if isinstance(s, Variant)}
    return {**{(m, v): variant_named(m, v) for m, v in zip(frame["method"], frame["variant"])}, **found}


def _series(frame: pd.DataFrame) -> list[tuple]:
    """(method, variant, dropout) keys in Table 1's order, dropout off before on."""
    order = variant_sorter(frame)
    return sorted({(m, v, bool(d)) for m, v, d in zip(frame["method"], frame["variant"], frame["dropout"])},
                  key=lambda k: (order(k[1]), k[2]))


def _styles(series: list[tuple], hue: str, settings: dict | None = None) -> dict:
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


def _lines(frame: pd.DataFrame, hue: str) -> tuple[pd.DataFrame, list[str], dict, dict]:
    """For a figure of one line per setting: ``frame`` with its ``series`` and ``panel`` columns (:func:`_panels`),
    the panels, the series' styles (:func:`_styles`), and seaborn's hue and style arguments: one level per series,
    in order, with its colour, dash and marker."""
    settings, series = _settings(frame), _series(frame)
    styles = _styles(series, hue, settings)
    frame, panels = _panels(frame, series, settings)
    ids = {key: f"{i:03d}" for i, key in enumerate(series)}
    order = list(ids.values())
    semantics = dict(hue="series", hue_order=order, palette={ids[k]: s["color"] for k, s in styles.items()},
                     style="series", style_order=order, linewidth=LINE_WIDTH,
                     dashes={ids[k]: "" if s["linestyle"] == "-" else (4, 2) for k, s in styles.items()},
                     markers={ids[k]: s["marker"] for k, s in styles.items()})
    return frame, panels, styles, semantics


def _unhide(ax) -> None:
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


def _legend(fig, styles: dict, *, markers: bool = True, extra=()) -> None:
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


def _band(values) -> tuple[float, float]:
    """± one std over seeds, clipped to 0–100: a percentage's spread does not leave its range."""
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return max(0.0, mean - std), min(100.0, mean + std)


# ----------------------------------------------------------------------------- learning curves and losses
def plot_curves(curves: pd.DataFrame, *, hue: str = "variant", x: str = "step", tasks=None):
    """Validation scores against training steps from :func:`~superpos.report.learning_curves`: one row of three
    panels per (backbone, task), strict %, lenient % and invalid labels % side by side, one line per setting
    (colour and marker: the setting; line style: dropout; ``hue`` picks the legend's words: ``variant``,
    ``dropout`` or ``setting``), the mean over seeds with a band of ± one std. More than :data:`MAX_LINES`
    settings take several rows per task. A strict point whose mean counts a † seed is marked ×."""
    if tasks is not None:
        curves = curves[curves["task"].isin(list(tasks))]
    if curves.empty:
        return _empty("no evaluation points (no finished runs)")
    curves, panels, styles, semantics = _lines(curves, hue)
    data = _long(curves).dropna(subset=["value"])
    several_seeds = bool((data.groupby(["panel", "series", "quantity", x])["seed"].nunique() > 1).any())
    labels = [quantity[3] for quantity in QUANTITIES]
    grid = sns.relplot(data=data, kind="line", x=x, y="value", row="panel", col="quantity", row_order=panels,
                       col_order=labels, estimator="mean", errorbar=_band if several_seeds else None,
                       err_kws={"alpha": 0.12, "linewidth": 0}, legend=False, height=1.8, aspect=1.75,
                       facet_kws={"sharex": "row", "sharey": True, "despine": False}, **semantics)
    grid.set_titles("")
    grid.set_xlabels(STEP_LABEL if x == "step" else "epoch", fontsize=8)
    for (panel, label), ax in grid.axes_dict.items():
        _percent_axis(ax, label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
        for line in ax.get_lines():
            line.set_markersize(4)
        _unhide(ax)
    for row, panel in enumerate(panels):
        grid.axes[row, 0].set_title(panel, loc="left", fontsize=9)
    strict = data[(data["quantity"] == labels[0])]
    flagged = strict[strict["dagger"].fillna(False).astype(bool)] if "dagger" in strict.columns else strict.iloc[0:0]
    means = strict.groupby(["panel", "series", x])["value"].mean()
    for panel, points in flagged.groupby("panel"):
        marked = means.loc[sorted({(panel, s, step) for s, step in zip(points["series"], points[x])})]
        grid.axes_dict[(panel, labels[0])].scatter(marked.index.get_level_values(2), marked.to_numpy(), **DAGGER_POINT)
    fig = _facets(grid)
    cross = [(Line2D([], [], linestyle="none", marker="x", color="black", markersize=5), DAGGER_LABEL)]
    _legend(fig, styles, extra=cross if len(flagged) else ())
    return _done(fig, [MARK_BANDS if several_seeds else "", MARK_CROSS if len(flagged) else ""])


def plot_losses(losses: pd.DataFrame, *, hue: str = "variant", tasks=None, columns: int = 4, log: bool = True):
    """Training loss against optimizer step from :func:`~superpos.report.loss_curves` (a record's
    ``loss_curve``): one panel per (backbone, task), one line per setting (colour: the setting; line style:
    dropout, solid off, dashed on), the mean over seeds; shared y axis, logarithmic with ``log``."""
    if tasks is not None:
        losses = losses[losses["task"].isin(list(tasks))]
    losses = losses.assign(loss=pd.to_numeric(losses["loss"], errors="coerce")).dropna(subset=["loss"])
    if losses.empty:
        return _empty("no training losses (no finished runs)")
    losses, panels, styles, semantics = _lines(losses, hue)
    grid = sns.relplot(data=losses, kind="line", x="step", y="loss", col="panel", col_order=panels,
                       col_wrap=max(1, min(columns, len(panels))), estimator="mean", errorbar=None, legend=False,
                       height=2.5, aspect=1.36, facet_kws={"sharex": False, "sharey": True, "despine": False},
                       **{**semantics, "markers": False})
    grid.set_titles("{col_name}", size=9)
    grid.set_axis_labels(STEP_LABEL, LOSS_LABEL + (" (log)" if log else ""), fontsize=8)
    for ax in grid.axes.flat:
        if log and (losses["loss"] > 0).all():
            ax.set_yscale("log")
            # plain numbers (2, 0.5), not 2×10⁰; minor ticks labelled only when the axis spans < ~1 decade
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            narrow = losses["loss"].max() / losses["loss"].min() < 12
            ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}") if narrow else NullFormatter())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
        ax.grid(alpha=0.3, which="both")
        _unhide(ax)
    fig = _facets(grid, 0.6)
    _legend(fig, styles, markers=False)
    return _done(fig)


# ----------------------------------------------------------------------------- best points against a factor
def _factor_values(frame: pd.DataFrame, factor: str) -> list:
    values = list(dict.fromkeys(frame[factor]))
    if factor == "variant":
        return sorted(values, key=variant_sorter(frame))
    return sorted(values, key=lambda v: value_key(factor, v))


def _factor_name(factor: str, value) -> str:
    if factor == "variant":
        return method_label(str(value).split(" ")[0], str(value))
    if factor == "dropout":
        return f"dropout {dropout_mark(value)}"
    return str(value)


def _tick(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _dagger_text(row) -> str:
    seeds = int(row.get("seeds", 1) or 1)
    return "†" if seeds <= 1 else f"†{int(row['daggers'])}/{seeds}"


def _bar_styles(scores: pd.DataFrame, factor: str, values: list) -> dict:
    """Per factor value: (colour, hatch) of the setting its rows run (dropout: hatched on), one per value."""
    settings = _settings(scores)
    first = {value: scores[scores[factor] == value].iloc[0] for value in values}
    palette = setting_styles(settings[(row["method"], row["variant"])] for row in first.values())
    return {value: (palette[settings[(row["method"], row["variant"])]][0], DROPOUT_HATCH[bool(row["dropout"])])
            for value, row in first.items()}


def plot_factor(scores: pd.DataFrame, factor: str, *, xlabel: str, log2: bool = False, kind: str = "line",
                columns: int = 4, where: dict | None = None):
    """Best validation scores of :func:`~superpos.report.task_scores` rows (``strict_score``,
    ``lenient_score``, ``invalid_rate`` and their ``*_std`` over seeds) against a factor (``m``,
    ``n_prompts``, ``init``, ``variant``): strict %, lenient % and invalid labels % at the lenient point
    (:data:`AT_BEST_POINTS`). ``kind="line"``: the factor on x, one row of three panels per (backbone, task), the
    line in the method's colour; ``kind="bar"``: three rows of panels, one column per backbone, tasks on x, one
    bar per factor value in its setting's colour, in the factor's order. Error bars ± one std over seeds (with
    several); † over a strict score that counts a seed's invalid labels. ``where``:
    :func:`~superpos.report.scores.select` conditions applied first."""
    if where:
        scores = select(scores, **where)
    if scores.empty:
        return _empty("no finished runs")
    scores = scores[scores["backbone"].isin(list(dict.fromkeys(scores["backbone"]))[:columns])]
    values = _factor_values(scores, factor)
    quantities = AT_BEST_POINTS if "lenient_invalid_rate" in scores.columns else QUANTITIES
    labels = [quantity[3] for quantity in quantities]
    data = _long(scores, quantities)
    marks = {"errors": False, "daggers": False}

    def errors(rows):
        shown = rows["spread"].fillna(0) if (rows.get("seeds", pd.Series([1])) > 1).any() else None
        marks["errors"] |= shown is not None and bool((shown > 0).any())
        return shown if marks["errors"] else None

    def daggers(ax, xs, rows):
        for x, (_, row) in zip(xs, rows.iterrows()):
            if row["quantity"] == labels[0] and int(row.get("daggers", 0) or 0) > 0:
                ax.text(x, row["value"] + 3, _dagger_text(row), ha="center", va="bottom", fontsize=8)
                marks["daggers"] = True

    if kind == "line":
        tasks = {b: task_order(scores.loc[scores["backbone"] == b, "task"]) for b in dict.fromkeys(scores["backbone"])}
        several = len(tasks) > 1
        data["panel"] = [task_label(t) + (f" — {b}" if several else "") for b, t in zip(data["backbone"], data["task"])]
        panels = [task_label(t) + (f" — {b}" if several else "") for b in tasks for t in tasks[b]]
        grid = sns.FacetGrid(data, row="panel", col="quantity", row_order=panels, col_order=labels, sharex="row",
                             sharey=True, height=1.9, aspect=1.5, despine=False)
        for (panel, label), ax in grid.axes_dict.items():
            cell = data[(data["panel"] == panel) & (data["quantity"] == label)]
            for method, rows in cell.groupby("method", sort=False):
                rows = rows.set_index(factor).reindex(values).dropna(subset=["value"])
                ax.errorbar(list(rows.index), rows["value"], yerr=errors(rows), marker="o", markersize=4, capsize=3,
                            color=METHOD_COLOURS.get(method, "#7f7f7f"), label=method_label(method))
                daggers(ax, list(rows.index), rows)
            if log2:
                ax.set_xscale("log", base=2)
                ax.set_xticks(values, [_tick(v) for v in values])
                ax.minorticks_off()
            _percent_axis(ax, label)
        grid.set_titles("")
        for row, panel in enumerate(panels):
            grid.axes[row, 0].set_title(panel, loc="left", fontsize=9)
        grid.set_xlabels(xlabel, fontsize=8)
        fig = _facets(grid, 0.3)
    else:
        styles = _bar_styles(scores, factor, values)
        backbones = list(dict.fromkeys(scores["backbone"]))
        tasks_all = task_order(scores["task"])
        width = max(4.5, 0.9 + len(tasks_all) * (0.25 * len(values) + 0.35))
        grid = sns.FacetGrid(data, row="quantity", col="backbone", row_order=labels, col_order=backbones,
                             sharex=True, sharey=True, height=1.9, aspect=width / 1.9, despine=False)
        for (label, backbone), ax in grid.axes_dict.items():
            cell = data[(data["quantity"] == label) & (data["backbone"] == backbone)]
            tasks = task_order(cell["task"])
            positions, bar = np.arange(len(tasks)), 0.8 / max(1, len(values))
            for k, level in enumerate(values):
                rows = cell[cell[factor] == level].set_index("task").reindex(tasks)
                xs = positions + k * bar - 0.4 + bar / 2
                colour, hatch = styles[level]
                ax.bar(xs, rows["value"], bar, color=colour, hatch=hatch, edgecolor="white" if hatch else None,
                       linewidth=0, yerr=errors(rows), capsize=2, error_kw={"linewidth": 0.8})
                daggers(ax, xs, rows.reset_index())
            ax.set_xticks(positions, [task_label(t) for t in tasks], fontsize=8)
            _percent_axis(ax, label)
        grid.set_titles("")
        if len(backbones) > 1:
            for column, backbone in enumerate(backbones):
                grid.axes[0, column].set_title(backbone, fontsize=10)
        grid.set_xlabels("task", fontsize=8)
        fig = _facets(grid, 0.5)
        handles = [Patch(facecolor=styles[v][0], hatch=styles[v][1], edgecolor="white") for v in values]
        fig.legend(handles, [_factor_name(factor, v) for v in values], loc="outside lower center",
                   ncols=min(len(values), 3), fontsize=8, frameon=False, title=xlabel, title_fontsize=8)
    return _done(fig, [MARK_ERRORS if marks["errors"] else "", MARK_DAGGER if marks["daggers"] else ""])


# ----------------------------------------------------------------------------- Figure 2(d) and Table 2
def plot_similarity(similarity: pd.DataFrame, *, backbone: str | None = None, columns: int = 5):
    """Figure 2(d): for each prompt token ``i``, the tasks x tasks cosine similarity of the learned ``p'_i``, for
    ``backbone`` (by name: the paper draws Figure 2 on T5 v1.1 Base LM-adapted; None: the only one there is).
    Fewer than two tasks: nothing to compare, no figure."""
    if backbone is not None:
        similarity = similarity[similarity["backbone"] == backbone]
    elif similarity["backbone"].nunique() > 1:
        raise ValueError(f"plot_similarity: runs of {similarity['backbone'].nunique()} backbones; name one (backbone=...)")
    if similarity.empty or similarity["task_a"].nunique() < 2:
        return _empty("no two tasks' superpos runs over the same sampled tokens to compare")
    first = similarity[["backbone", "variant", "dropout"]].drop_duplicates().iloc[0]
    similarity = similarity[(similarity["backbone"] == first["backbone"]) & (similarity["variant"] == first["variant"])
                            & (similarity["dropout"] == first["dropout"])]
    prompts = sorted(similarity["prompt"].unique())
    tasks = task_order(similarity["task_a"])
    labels = [task_label(t) for t in tasks]
    columns = max(1, min(columns, len(prompts)))
    rows = math.ceil(len(prompts) / columns)
    fig, axes = _figure(rows, columns, width=1.2 + 0.55 * len(tasks), height=0.9 + 0.55 * len(tasks))
    flat = list(axes.flat)
    for ax in flat[len(prompts):]:
        ax.set_visible(False)
    # One colour range for every panel, fitted to the pairs between different tasks (the diagonal is 1 by definition)
    off = similarity.loc[similarity["task_a"] != similarity["task_b"], "cosine"]
    low = math.floor(10 * float(off.min())) / 10 if len(off) else -1.0
    high = max(low + 0.1, math.ceil(10 * float(off.max())) / 10) if len(off) else 1.0
    for index, (ax, prompt) in enumerate(zip(flat, prompts)):
        matrix = (similarity[similarity["prompt"] == prompt].pivot(index="task_a", columns="task_b", values="cosine")
                  .reindex(index=tasks, columns=tasks))
        sns.heatmap(matrix.to_numpy(), ax=ax, vmin=low, vmax=high, cmap="viridis", annot=len(tasks) <= 8, fmt=".2f",
                    annot_kws={"fontsize": 7}, square=True, cbar=index == len(prompts) - 1,
                    cbar_kws={"label": "cosine of p′ᵢ between tasks", "shrink": 0.8},
                    xticklabels=labels if index // columns == rows - 1 or index + columns >= len(prompts) else False,
                    yticklabels=labels if index % columns == 0 else False)
        ax.set_title(f"prompt token {prompt}", fontsize=9)
        ax.tick_params(labelsize=7)
    return _done(fig)


def plot_standardized(overall: pd.DataFrame, *, scores: pd.DataFrame | None = None):
    """Table 2 as bars: the standardized overall score (0–100; ``mean``, error bars ``std`` over tasks, from
    :func:`~superpos.report.stability_table`) per setting, in the setting's colour (hatched: dropout on; a second
    backbone lighter). With ``scores`` (:func:`~superpos.report.task_scores` rows), three rows: standardized from
    the strict scores, from the lenient scores, and the invalid-label rate (%) at the lenient point averaged over
    tasks (error bars: std over tasks)."""
    from .stability import SETTING, standardized_overall

    if overall.empty:
        return _empty("no complete settings to standardize")
    if scores is not None and not scores.empty and {"strict_score", "lenient_score"} <= set(scores.columns):
        rate = AT_BEST_POINTS[2][1] if AT_BEST_POINTS[2][1] in scores.columns else "invalid_rate"
        invalid = (scores.assign(invalid=pd.to_numeric(scores[rate], errors="coerce") * 100)
                   .groupby(list(SETTING), sort=False)["invalid"].agg(["mean", "std"]).reset_index())
        rows = [("standardized, strict (0–100)", standardized_overall(scores, value="strict_score")),
                ("standardized, lenient (0–100)", standardized_overall(scores, value="lenient_score")),
                (AT_BEST_POINTS[2][3] if rate != "invalid_rate" else "invalid labels (%)", invalid)]
    else:
        rows = [("standardized overall score (0–100)", overall)]
    backbones = list(dict.fromkeys(overall["backbone"]))
    keys = list(dict.fromkeys(zip(overall["method"], overall["variant"], overall["dropout"])))
    palette = _styles([(m, v, bool(d)) for m, v, d in keys], "setting", _settings(scores if scores is not None else overall))
    fig, axes = _figure(len(rows), 1, width=max(6.0, 1.1 * len(keys) * len(backbones) + 1), height=2.0)
    width, positions = 0.8 / len(backbones), np.arange(len(keys))
    for row, (ax, (label, frame)) in enumerate(zip(axes[:, 0], rows)):
        for k, backbone in enumerate(backbones):
            values = frame[frame["backbone"] == backbone].set_index(["method", "variant", "dropout"]).reindex(keys)
            std = values["std"].fillna(0)
            ax.bar(positions + k * width - 0.4 + width / 2, values["mean"], width, yerr=std if (std > 0).any() else None,
                   capsize=3, color=[palette[(m, v, bool(d))]["color"] for m, v, d in keys], alpha=1.0 - 0.45 * k,
                   hatch=[DROPOUT_HATCH[bool(d)] for _, _, d in keys], edgecolor="white", linewidth=0,
                   error_kw={"linewidth": 0.8}, label=backbone)
        ax.set_xticks(positions, [f"{method_label(m, v)}\ndropout {dropout_mark(d)}" for m, v, d in keys], fontsize=8)
        if row < len(rows) - 1:
            ax.tick_params(labelbottom=False)
        ax.set_ylabel("\n".join(textwrap.wrap(label, 22)), fontsize=8)
        _percent_axis(ax)
    if len(backbones) > 1:
        handles = [Patch(facecolor="#7f7f7f", alpha=1.0 - 0.45 * k) for k in range(len(backbones))]
        fig.legend(handles, backbones, loc="outside lower center", ncols=min(len(backbones), 4), fontsize=8,
                   frameon=False)
    return _done(fig)
