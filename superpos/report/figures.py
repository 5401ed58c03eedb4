"""Figures: learning curves (Figure 2a, b), the m ablation (2c), weight similarity (2d), ablation bars, losses.

Every function takes the long frames of :mod:`.tables` / :mod:`.stability` and returns a matplotlib
``Figure`` that is already closed in pyplot. Figures carry no caption: :func:`~superpos.report.publish_figure`
adds the one-line title and writes the caption beside the files.

Score figures show three rows of panels sharing the x axis: the strict score (an invalid label zeroes
the task, †), the lenient score (invalid labels count as wrong) and the invalid-label rate, all in percent
on 0–100 axes. One colour per method variant, in every panel; dropout is the line style (solid off,
dashed on), so an on/off pair shares its colour.
"""
from __future__ import annotations

import math
import textwrap

import matplotlib

import matplotlib.pyplot as plt  # noqa: E402  (after matplotlib: the kernel's backend is already chosen)
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from .settings import value_key, variant_sorter
from .names import dropout_mark, method_label, task_label, task_order
from .scores import select

STEP_LABEL = "training step (optimizer updates)"
LOSS_LABEL = "training loss (token cross-entropy)"
#: (row name, column of the mean, column of its std over seeds, y label), top to bottom.
QUANTITIES = (("strict", "strict_score", "strict_std", "strict score (%)"),
              ("lenient", "lenient_score", "lenient_std", "lenient score (%)"),
              ("invalid", "invalid_rate", "invalid_std", "invalid labels (%)"))
#: Best-point figures (:func:`plot_factor`): the invalid-label rate where the lenient score beside it is read (the
#: strict-best point of a run that never had all labels valid is its first evaluation, whatever came after).
AT_BEST_POINTS = QUANTITIES[:2] + (("invalid", "lenient_invalid_rate", "lenient_invalid_std",
                                    "invalid labels (%)\nat the lenient point"),)
#: Line style per dropout setting: solid off, dashed on (an on/off pair shares its colour).
DROPOUT_STYLE = {False: "-", True: "--"}
SVG_SALT = "superpos"
matplotlib.rcParams["svg.hashsalt"] = SVG_SALT  # stable element ids: SVGs diff cleanly between runs


def _figure(rows: int, columns: int, *, width: float, height: float):
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows + 0.4), squeeze=False,
                             layout="constrained")
    return fig, axes


def _done(fig):
    plt.close(fig)
    return fig


def _empty(message: str):
    """A figure saying why there is nothing to draw; ``publish_figure`` puts the reason first in its caption."""
    fig, ax = plt.subplots(figsize=(6, 1.2), layout="constrained")
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    fig.unavailable = message
    return _done(fig)


def _percent_axis(ax) -> None:
    """0–100 with a little room so a line at 0 or 100 stays visible off the frame."""
    ax.set_ylim(-4, 104)
    ax.set_yticks([0, 25, 50, 75, 100])
    ax.grid(alpha=0.3)
    ax.set_axisbelow(True)  # grid behind bars


def _label_panel(ax, row: int, column: int, top, *, xlabel: str, ylabel: str) -> None:
    """A panel of a strict / lenient / invalid grid: percent axis, x shared down the column with its labels
    on the bottom row only, y labels in the first column only."""
    _percent_axis(ax)
    if row:
        ax.sharex(top)
    if row < len(QUANTITIES) - 1:
        ax.tick_params(labelbottom=False)
    else:
        ax.set_xlabel(xlabel, fontsize=8)
    if column == 0:
        ax.set_ylabel(ylabel, fontsize=8)
    else:
        ax.tick_params(labelleft=False)


def _columns(frame: pd.DataFrame, quantity: tuple) -> tuple[str, str | None, float]:
    """(value column, std column, factor to percent) of a quantity row; a frame without the strict/lenient
    split (older callers) draws its ``score`` in both score rows."""
    name, value, std, _ = quantity
    if value not in frame.columns and name != "invalid":
        value, std = "score", "score_std"
    return value, (std if std in frame.columns else None), (100.0 if name == "invalid" else 1.0)


def _series(frame: pd.DataFrame) -> list[tuple]:
    """(method, variant, dropout) keys in Table 1's order, dropout off before on."""
    order = variant_sorter(frame)
    return sorted({(m, v, bool(d)) for m, v, d in zip(frame["method"], frame["variant"], frame["dropout"])},
                  key=lambda k: (order(k[1]), k[2]))


def _palette(count: int) -> list:
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return cycle if count <= len(cycle) else [plt.get_cmap("tab20")(i % 20) for i in range(count)]


#: Each method's own colour (its default variant), the same in every figure: the matplotlib cycle's first six.
METHOD_COLOURS = {"simple": 0, "residual": 1, "attempt": 2, "superpos": 3, "ept": 4, "full": 5}


def _variant_colours(keys: list[tuple[str, str]]) -> dict:
    """``(method, variant) -> colour``: a method's default variant always in its own colour
    (:data:`METHOD_COLOURS`), every other variant in the colours left, in order."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    spare = [c for i, c in enumerate(cycle) if i not in METHOD_COLOURS.values()]
    spare += [plt.get_cmap("tab20")(i) for i in range(1, 20, 2)]  # the light halves, after the cycle's own
    colours, others = {}, 0
    for method, variant in dict.fromkeys(keys):
        if variant == method and method in METHOD_COLOURS:
            colours[(method, variant)] = cycle[METHOD_COLOURS[method] % len(cycle)]
        else:
            colours[(method, variant)] = spare[others % len(spare)]
            others += 1
    return colours


def _styles(series: list[tuple], hue: str) -> dict:
    """Per series key: legend label, colour (one per variant, a method's own for its default) and line style
    (dropout)."""
    colours = _variant_colours([(method, variant) for method, variant, _ in series])
    styles = {}
    for method, variant, dropout in series:
        name = method_label(method, variant)
        state = f"dropout {'on' if dropout else 'off'}"
        label = {"dropout": state, "setting": f"{name}, {state}"}.get(hue, name)
        styles[(method, variant, dropout)] = {"label": label, "color": colours[(method, variant)],
                                              "linestyle": DROPOUT_STYLE[dropout]}
    return styles


def _legend(fig, styles: dict, **marker) -> None:
    seen = {}
    for style in styles.values():
        seen.setdefault(style["label"], style)
    handles = [plt.Line2D([], [], color=s["color"], linestyle=s["linestyle"], **marker) for s in seen.values()]
    # Below the panels: beside them it competes with the title for the width of narrow figures.
    fig.legend(handles, list(seen), loc="outside lower center", ncols=min(len(seen), 4), fontsize=8, frameon=False)


def _panels(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return [(b, t) for b in dict.fromkeys(frame["backbone"]) for t in task_order(frame[frame["backbone"] == b]["task"])]


def _layout(frame: pd.DataFrame, hue: str, columns: int) -> tuple[list, dict, int, int]:
    """(panels, series styles, columns, rows of panels) for a figure with one panel per backbone x task."""
    panels = _panels(frame)
    columns = max(1, min(columns, len(panels)))
    return panels, _styles(_series(frame), hue), columns, math.ceil(len(panels) / columns)


def _panel_title(backbone: str, task: str, several_backbones: bool) -> str:
    return task_label(task) + (f" — {backbone}" if several_backbones else "")


def plot_curves(curves: pd.DataFrame, *, hue: str = "variant", x: str = "step", tasks=None, columns: int = 4):
    """Validation scores against training steps from :func:`~superpos.report.learning_curves`
    (``strict_score``, ``lenient_score``, ``invalid_rate`` of every evaluation point in a record's
    ``history``): per (backbone, task) a column of three panels (strict %, lenient %, invalid labels %),
    one line per setting (colour: variant; line style: dropout; ``hue`` picks the legend's words:
    ``variant``, ``dropout`` or ``setting``), the mean over seeds with a band of ± one std."""
    if tasks is not None:
        curves = curves[curves["task"].isin(list(tasks))]
    if curves.empty:
        return _empty("no evaluation points (no finished runs)")
    panels, styles, columns, blocks = _layout(curves, hue, columns)
    fig, axes = _figure(3 * blocks, columns, width=3.4, height=1.75)
    several_backbones = curves["backbone"].nunique() > 1
    for index in range(blocks * columns):
        block, column = divmod(index, columns)
        column_axes = [axes[3 * block + row, column] for row in range(3)]
        if index >= len(panels):
            for ax in column_axes:
                ax.set_visible(False)
            continue
        backbone, task = panels[index]
        panel = curves[(curves["backbone"] == backbone) & (curves["task"] == task)]
        for row, (ax, quantity) in enumerate(zip(column_axes, QUANTITIES)):
            value, _, scale = _columns(panel, quantity)
            for key, style in styles.items():
                group = panel[(panel["method"] == key[0]) & (panel["variant"] == key[1]) & (panel["dropout"] == key[2])]
                values = pd.to_numeric(group[value], errors="coerce") * scale
                stats = values.groupby(group[x]).agg(["mean", "std", "count"]).dropna(subset=["mean"])
                if stats.empty:
                    continue
                ax.plot(stats.index, stats["mean"], marker="o", markersize=2.5, linewidth=1.3,
                        color=style["color"], linestyle=style["linestyle"])
                if (stats["count"] > 1).any():
                    std = stats["std"].fillna(0)
                    # clipped to the scale's 0-100: a percentage's spread does not leave its range
                    low, high = (stats["mean"] - std).clip(lower=0), (stats["mean"] + std).clip(upper=100)
                    ax.fill_between(stats.index, low, high, color=style["color"], alpha=0.12, linewidth=0)
            _label_panel(ax, row, column, column_axes[0], xlabel=STEP_LABEL if x == "step" else "epoch",
                         ylabel=quantity[3])
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
        column_axes[0].set_title(_panel_title(backbone, task, several_backbones), fontsize=10)
    _legend(fig, styles, marker="o", markersize=3)
    return _done(fig)


def plot_losses(losses: pd.DataFrame, *, hue: str = "variant", tasks=None, columns: int = 4, log: bool = True):
    """Training loss against optimizer step from :func:`~superpos.report.loss_curves` (a record's
    ``loss_curve``): one panel per (backbone, task), one line per setting (colour: variant; line style:
    dropout, solid off, dashed on), the mean over seeds; shared y axis, logarithmic with ``log``."""
    if tasks is not None:
        losses = losses[losses["task"].isin(list(tasks))]
    losses = losses.assign(loss=pd.to_numeric(losses["loss"], errors="coerce")).dropna(subset=["loss"])
    if losses.empty:
        return _empty("no training losses (no finished runs)")
    panels, styles, columns, rows = _layout(losses, hue, columns)
    fig, axes = _figure(rows, columns, width=3.4, height=2.5)
    flat = list(axes.flat)
    several_backbones = losses["backbone"].nunique() > 1
    for ax in flat[len(panels):]:
        ax.set_visible(False)
    for i, (ax, (backbone, task)) in enumerate(zip(flat, panels)):
        if i:
            ax.sharey(flat[0])
        panel = losses[(losses["backbone"] == backbone) & (losses["task"] == task)]
        for key, style in styles.items():
            group = panel[(panel["method"] == key[0]) & (panel["variant"] == key[1]) & (panel["dropout"] == key[2])]
            if group.empty:
                continue
            mean = group.groupby("step")["loss"].mean()
            ax.plot(mean.index, mean.to_numpy(), color=style["color"], linestyle=style["linestyle"], linewidth=1.3)
        if log and (losses["loss"] > 0).all():
            ax.set_yscale("log")
            # plain numbers (2, 0.5), not 2×10⁰; minor ticks labelled only when the axis spans < ~1 decade
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            narrow = losses["loss"].max() / losses["loss"].min() < 12
            ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}") if narrow else NullFormatter())
        ax.set_title(_panel_title(backbone, task, several_backbones), fontsize=10)
        ax.set_xlabel(STEP_LABEL, fontsize=8)
        if i % columns == 0:
            ax.set_ylabel(LOSS_LABEL + (" (log)" if log else ""), fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
        ax.grid(alpha=0.3, which="both")
    _legend(fig, styles)
    return _done(fig)


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


def plot_factor(scores: pd.DataFrame, factor: str, *, xlabel: str, log2: bool = False, kind: str = "line",
                columns: int = 4, where: dict | None = None):
    """Best validation scores of :func:`~superpos.report.task_scores` rows (``strict_score``,
    ``lenient_score``, ``invalid_rate`` and their ``*_std`` over seeds) against a factor (``m``,
    ``n_prompts``, ``init``, ``variant``), three rows of panels (strict %, lenient %, invalid labels % at the
    lenient point: :data:`AT_BEST_POINTS`),
    one column per backbone. ``kind="line"``: the factor on x, one line per task; ``kind="bar"``: tasks
    on x, one bar (one colour) per factor value, in the factor's order. Error bars ± one std over seeds.
    ``where``: :func:`~superpos.report.scores.select` conditions applied first."""
    if where:
        scores = select(scores, **where)
    if scores.empty:
        return _empty("no finished runs")
    backbones = list(dict.fromkeys(scores["backbone"]))[:columns]
    values = _factor_values(scores, factor)
    tasks_all = task_order(scores["task"])
    if kind == "bar":
        width = max(4.5, 0.9 + len(tasks_all) * (0.25 * len(values) + 0.35))
    else:
        width = 4.5
    fig, axes = _figure(3, len(backbones), width=width, height=1.9)
    palette = _palette(max(len(values), len(tasks_all)))
    if factor == "variant" and kind == "bar":  # a method's colour as in every other figure
        methods = dict(zip(scores["variant"], scores["method"]))
        colours = _variant_colours([(methods[value], value) for value in values])
        palette = [colours[(methods[value], value)] for value in values]
    for column, backbone in enumerate(backbones):
        panel = scores[scores["backbone"] == backbone]
        tasks = task_order(panel["task"])
        quantities = AT_BEST_POINTS if "lenient_invalid_rate" in panel.columns else QUANTITIES
        for row, quantity in enumerate(quantities):
            ax = axes[row, column]
            value, std, scale = _columns(panel, quantity)
            if kind == "line":
                for task in tasks:
                    rows = panel[panel["task"] == task].set_index(factor).reindex(values).dropna(subset=[value])
                    ax.errorbar(list(rows.index), rows[value] * scale,
                                yerr=rows[std].fillna(0) * scale if std else None, marker="o", markersize=4,
                                capsize=3, color=palette[tasks_all.index(task)], label=task_label(task))
                if log2:
                    ax.set_xscale("log", base=2)
                    ax.set_xticks(values, [str(v) for v in values])
                    ax.minorticks_off()
            else:
                bar = 0.8 / max(1, len(values))
                positions = np.arange(len(tasks))
                for k, level in enumerate(values):
                    rows = panel[panel[factor] == level].set_index("task").reindex(tasks)
                    ax.bar(positions + k * bar - 0.4 + bar / 2, rows[value] * scale, bar, color=palette[k],
                           yerr=rows[std].fillna(0) * scale if std else None, capsize=2,
                           error_kw={"linewidth": 0.8}, label=_factor_name(factor, level))
                ax.set_xticks(positions, [task_label(t) for t in tasks], fontsize=8)
            _label_panel(ax, row, column, axes[0, column], xlabel=xlabel if kind == "line" else "task",
                         ylabel=quantity[3])
        if len(backbones) > 1:
            axes[0, column].set_title(backbone, fontsize=10)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize=8, frameon=False,
               title=None if kind == "line" else xlabel, title_fontsize=8)
    return _done(fig)


def plot_similarity(similarity: pd.DataFrame, *, backbone: str | None = None, columns: int = 5):
    """Figure 2(d): for each prompt token ``i``, the tasks x tasks cosine similarity of the learned ``p'_i``, for
    ``backbone`` (by name: the paper draws Figure 2 on T5 v1.1 Base LM-adapted; None: the only one there is)."""
    if backbone is not None:
        similarity = similarity[similarity["backbone"] == backbone]
    elif similarity["backbone"].nunique() > 1:
        raise ValueError(f"plot_similarity: runs of {similarity['backbone'].nunique()} backbones; name one (backbone=...)")
    if similarity.empty:
        return _empty("no two superpos runs over the same sampled tokens to compare")
    first = similarity[["backbone", "variant", "dropout"]].drop_duplicates().iloc[0]
    similarity = similarity[(similarity["backbone"] == first["backbone"]) & (similarity["variant"] == first["variant"])
                            & (similarity["dropout"] == first["dropout"])]
    import seaborn as sns

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
    """Table 2 as bars: the standardized overall score (0–100; ``mean``, error bars ``std`` over tasks,
    from :func:`~superpos.report.stability_table`) per setting, one colour per backbone. With ``scores``
    (:func:`~superpos.report.task_scores` rows), three rows: standardized from the strict scores, from the
    lenient scores, and the invalid-label rate (%) at the lenient point averaged over tasks (error bars: std over
    tasks)."""
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
    settings = list(dict.fromkeys(zip(overall["method"], overall["variant"], overall["dropout"])))
    fig, axes = _figure(len(rows), 1, width=max(6.0, 1.1 * len(settings) * len(backbones) + 1), height=2.0)
    palette = _palette(len(backbones))
    width = 0.8 / len(backbones)
    positions = np.arange(len(settings))
    for row, (ax, (label, frame)) in enumerate(zip(axes[:, 0], rows)):
        for k, backbone in enumerate(backbones):
            values = frame[frame["backbone"] == backbone].set_index(["method", "variant", "dropout"]).reindex(settings)
            ax.bar(positions + k * width - 0.4 + width / 2, values["mean"], width, yerr=values["std"].fillna(0),
                   capsize=3, color=palette[k], error_kw={"linewidth": 0.8}, label=backbone)
        ax.set_xticks(positions, [f"{method_label(m, v)}\ndropout {dropout_mark(d)}" for m, v, d in settings],
                      fontsize=8)
        if row < len(rows) - 1:
            ax.tick_params(labelbottom=False)
        ax.set_ylabel("\n".join(textwrap.wrap(label, 22)), fontsize=8)
        _percent_axis(ax)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize=8, frameon=False)
    return _done(fig)
