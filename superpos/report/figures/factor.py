"""Best points against a factor (Figure 2c's m ablation, initializations, prompt lengths, Table 3's and EPT's
variants): a line per method over the factor's values, or a bar per value over the tasks."""
from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Patch

from ..names import dropout_mark, method_label, task_label, task_order
from ..scores import select
from ..settings import method_colour, setting_styles, value_key, variant_sorter
from .lines import settings_of
from .style import (AT_BEST_POINTS, DROPOUT_HATCH, MARK_DAGGER, MARK_ERRORS, QUANTITIES, empty_figure, facet_figure,
                    finished, long_quantities, percent_axis)


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
    settings = settings_of(scores)
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
        return empty_figure("no finished runs")
    scores = scores[scores["backbone"].isin(list(dict.fromkeys(scores["backbone"]))[:columns])]
    values = _factor_values(scores, factor)
    quantities = AT_BEST_POINTS if "lenient_invalid_rate" in scores.columns else QUANTITIES
    labels = [quantity[3] for quantity in quantities]
    data = long_quantities(scores, quantities)
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
                            color=method_colour(method), label=method_label(method))
                daggers(ax, list(rows.index), rows)
            if log2:
                ax.set_xscale("log", base=2)
                ax.set_xticks(values, [_tick(v) for v in values])
                ax.minorticks_off()
            percent_axis(ax, label)
        grid.set_titles("")
        for row, panel in enumerate(panels):
            grid.axes[row, 0].set_title(panel, loc="left", fontsize=9)
        grid.set_xlabels(xlabel, fontsize=8)
        fig = facet_figure(grid, 0.3)
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
            percent_axis(ax, label)
        grid.set_titles("")
        if len(backbones) > 1:
            for column, backbone in enumerate(backbones):
                grid.axes[0, column].set_title(backbone, fontsize=10)
        grid.set_xlabels("task", fontsize=8)
        fig = facet_figure(grid, 0.5)
        handles = [Patch(facecolor=styles[v][0], hatch=styles[v][1], edgecolor="white") for v in values]
        fig.legend(handles, [_factor_name(factor, v) for v in values], loc="outside lower center",
                   ncols=min(len(values), 3), fontsize=8, frameon=False, title=xlabel, title_fontsize=8)
    return finished(fig, [MARK_ERRORS if marks["errors"] else "", MARK_DAGGER if marks["daggers"] else ""])
