"""Figures: learning curves (Figure 2a, b), the m ablation (2c), weight similarity (2d), ablation bars.

Every function takes the long frames of :mod:`.tables` / :mod:`.stability` and returns a matplotlib
``Figure`` that is already closed in pyplot, so a notebook shows it exactly once (as the cell's value).
Axes are labelled with units; scores are percentages of the task's metric mean (paper §5).
"""
from __future__ import annotations

import math
import textwrap

import matplotlib

import matplotlib.pyplot as plt  # noqa: E402  (after matplotlib: the kernel's backend is already chosen)
import numpy as np
import pandas as pd

from .tables import dropout_mark, method_label, select, task_label, task_order, variant_key

SCORE_LABEL = "validation score (%)"
STEP_LABEL = "training step (optimizer updates)"
matplotlib.rcParams["svg.hashsalt"] = "superpos"  # stable element ids: SVGs diff cleanly between runs


def _grid(count: int, *, width: float = 4.0, height: float = 3.2, columns: int = 4):
    columns = max(1, min(columns, count))
    rows = max(1, math.ceil(count / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows + 0.6), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def _done(fig):
    fig.tight_layout()
    plt.close(fig)
    return fig


def _empty(message: str):
    fig, ax = plt.subplots(figsize=(6, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return _done(fig)


def _series_label(row_or_key: dict, hue: str) -> str:
    if hue == "dropout":
        return f"dropout {dropout_mark(row_or_key['dropout'])}"
    if hue == "variant":
        return method_label(row_or_key["method"], row_or_key["variant"])
    if hue == "setting":
        return f"{method_label(row_or_key['method'], row_or_key['variant'])}, dropout {dropout_mark(row_or_key['dropout'])}"
    return str(row_or_key[hue])


def _colors(labels) -> dict:
    """One colour per series label, the same in every panel of a figure."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if len(labels) > len(cycle):
        cycle = [plt.get_cmap("tab20")(i % 20) for i in range(len(labels))]
    return {label: cycle[i] for i, label in enumerate(labels)}


def _pad_limits(ax, values) -> None:
    """Keep at least a 5-point span on a percentage axis (flat curves otherwise get a ±0.05 axis)."""
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if values and max(values) - min(values) < 5:
        middle = (max(values) + min(values)) / 2
        ax.set_ylim(middle - 2.5, middle + 2.5)


def plot_curves(curves: pd.DataFrame, *, hue: str = "variant", x: str = "step", tasks=None, columns: int = 4):
    """Validation score against training steps, one panel per (backbone, task), one line per ``hue``
    (``variant``, ``dropout`` or ``setting``), the mean over seeds with a band of ± one std."""
    from matplotlib.ticker import MaxNLocator

    if tasks is not None:
        curves = curves[curves["task"].isin(list(tasks))]
    if curves.empty:
        return _empty("no evaluation points (no finished runs)")
    panels = [(b, t) for b in dict.fromkeys(curves["backbone"]) for t in task_order(curves[curves["backbone"] == b]["task"])]
    series = sorted({(m, v, bool(d)) for m, v, d in zip(curves["method"], curves["variant"], curves["dropout"])},
                    key=lambda k: (variant_key(k[1]), k[2]))
    labels = list(dict.fromkeys(_series_label(dict(zip(["method", "variant", "dropout"], key)), hue) for key in series))
    colors = _colors(labels)
    fig, axes = _grid(len(panels), columns=columns)
    several_backbones = curves["backbone"].nunique() > 1
    for ax, (backbone, task) in zip(axes, panels):
        panel = curves[(curves["backbone"] == backbone) & (curves["task"] == task)]
        for key in series:
            group = panel[(panel["method"] == key[0]) & (panel["variant"] == key[1]) & (panel["dropout"] == key[2])]
            if group.empty:
                continue
            label = _series_label(dict(zip(["method", "variant", "dropout"], key)), hue)
            stats = group.groupby(x)["score"].agg(["mean", "std", "count"]).reset_index().sort_values(x)
            ax.plot(stats[x], stats["mean"], marker="o", markersize=3, label=label, color=colors[label])
            if (stats["count"] > 1).any():
                ax.fill_between(stats[x], stats["mean"] - stats["std"].fillna(0), stats["mean"] + stats["std"].fillna(0),
                                color=colors[label], alpha=0.15, linewidth=0)
        _pad_limits(ax, panel["score"].tolist())
        ax.set_title(f"{task_label(task)}" + (f" — {backbone}" if several_backbones else ""))
        ax.set_xlabel(STEP_LABEL if x == "step" else "epoch")
        ax.set_ylabel(SCORE_LABEL)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    handles = [plt.Line2D([], [], color=colors[label], marker="o", markersize=3) for label in labels]
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.98), fontsize=8, frameon=False)
    plt.close(fig)
    return fig


def plot_factor(scores: pd.DataFrame, factor: str, *, xlabel: str, log2: bool = False, kind: str = "line",
                columns: int = 4, where: dict | None = None):
    """Best validation score against a factor (``m``, ``n_prompts``, ``init``, ``variant``), one panel
    per backbone, one line (or bar group) per task; error bars ± one std over seeds. ``where``:
    :func:`~superpos.report.tables.select` conditions applied first."""
    if where:
        scores = select(scores, **where)
    if scores.empty:
        return _empty("no finished runs")
    backbones = list(dict.fromkeys(scores["backbone"]))
    fig, axes = _grid(len(backbones), width=5.5 if kind == "bar" else 4.5, height=3.6, columns=columns)
    for ax, backbone in zip(axes, backbones):
        panel = scores[scores["backbone"] == backbone]
        tasks = task_order(panel["task"])
        values = list(dict.fromkeys(panel[factor]))
        values = (sorted(values, key=variant_key) if factor == "variant"
                  else sorted(values, key=lambda v: (isinstance(v, str), v)))
        if kind == "line":
            for task in tasks:
                rows = panel[panel["task"] == task].set_index(factor).reindex(values).dropna(subset=["score"])
                ax.errorbar(list(rows.index), rows["score"], yerr=rows["score_std"], marker="o", capsize=3,
                            label=task_label(task))
            if log2:
                ax.set_xscale("log", base=2)
                ax.set_xticks(values, [str(v) for v in values])
        else:
            width = 0.8 / max(1, len(tasks))
            positions = np.arange(len(values))
            for k, task in enumerate(tasks):
                rows = panel[panel["task"] == task].set_index(factor).reindex(values)
                ax.bar(positions + k * width - 0.4 + width / 2, rows["score"].fillna(0), width,
                       yerr=rows["score_std"].fillna(0), capsize=2, label=task_label(task))
            names = [method_label(str(v).split(" ")[0], str(v)) if factor == "variant" else str(v) for v in values]
            ax.set_xticks(positions, ["\n".join(textwrap.wrap(n, 14, break_long_words=False)) for n in names], fontsize=8)
        if kind == "line":
            _pad_limits(ax, panel["score"].tolist())
        else:
            low, high = float(panel["score"].min()), float(panel["score"].max())
            ax.set_ylim(min(0.0, low - 2), max(5.0, high + float(panel["score_std"].fillna(0).max()) + 2))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("best " + SCORE_LABEL)
        ax.set_title(backbone)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _done(fig)


def plot_similarity(similarity: pd.DataFrame, *, columns: int = 5):
    """Figure 2(d): for each prompt token ``i``, the tasks x tasks cosine similarity of the learned ``p'_i``."""
    if similarity.empty:
        return _empty("no two superpos runs over the same sampled tokens to compare")
    first = similarity[["backbone", "variant", "dropout"]].drop_duplicates().iloc[0]
    similarity = similarity[(similarity["backbone"] == first["backbone"]) & (similarity["variant"] == first["variant"])
                            & (similarity["dropout"] == first["dropout"])]
    prompts = sorted(similarity["prompt"].unique())
    tasks = task_order(similarity["task_a"])
    labels = [task_label(t) for t in tasks]
    fig, axes = _grid(len(prompts), width=2.9, height=2.9, columns=columns)
    image = None
    for ax, prompt in zip(axes, prompts):
        matrix = (similarity[similarity["prompt"] == prompt].pivot(index="task_a", columns="task_b", values="cosine")
                  .reindex(index=tasks, columns=tasks))
        image = ax.imshow(matrix.to_numpy(), vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_title(f"prompt token {prompt}", fontsize=9)
        ax.set_xticks(range(len(tasks)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(tasks)), labels, fontsize=7)
    fig.tight_layout()
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="cosine similarity of p′ᵢ between tasks")
    plt.close(fig)
    return fig


def plot_standardized(overall: pd.DataFrame):
    """Table 2 as bars: standardized overall score (0–100) per setting, error bars = std over tasks."""
    if overall.empty:
        return _empty("no complete settings to standardize")
    backbones = list(dict.fromkeys(overall["backbone"]))
    settings = list(dict.fromkeys(zip(overall["method"], overall["variant"], overall["dropout"])))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(settings) * len(backbones)), 4.2))
    width = 0.8 / len(backbones)
    positions = np.arange(len(settings))
    for k, backbone in enumerate(backbones):
        rows = overall[overall["backbone"] == backbone].set_index(["method", "variant", "dropout"]).reindex(settings)
        ax.bar(positions + k * width - 0.4 + width / 2, rows["mean"].fillna(0), width, yerr=rows["std"].fillna(0),
               capsize=3, label=backbone)
    ax.set_xticks(positions, [f"{method_label(m, v)}\ndropout {dropout_mark(d)}" for m, v, d in settings], fontsize=8)
    ax.set_ylabel("standardized overall score (0–100)")
    ax.set_ylim(0, 110)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _done(fig)


def add_caption(fig, caption: str):
    """Write ``caption`` under the figure (saved with ``bbox_inches="tight"``, it travels with the files)."""
    width = max(70, int(fig.get_figwidth() * 14))  # characters per line at 8 pt
    fig.text(0.005, -0.01, "\n".join(textwrap.wrap(caption, width=width)), ha="left", va="top", fontsize=8)
    return fig
