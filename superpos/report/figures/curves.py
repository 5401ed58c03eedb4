"""Learning curves (Figure 2a, b: strict, lenient and invalid labels against training steps) and training losses."""
from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from .lines import line_legend, line_semantics, unhide
from .style import (DAGGER_LABEL, DAGGER_POINT, LOSS_LABEL, MARK_BANDS, MARK_CROSS, QUANTITIES, STEP_LABEL,
                    empty_figure, facet_figure, finished, long_quantities, percent_axis, seed_band)


def plot_curves(curves: pd.DataFrame, *, hue: str = "variant", x: str = "step", tasks=None):
    """Validation scores against training steps from :func:`~superpos.report.learning_curves`: one row of three
    panels per (backbone, task), strict %, lenient % and invalid labels % side by side, one line per setting
    (colour and marker: the setting; line style: dropout; ``hue`` picks the legend's words: ``variant``,
    ``dropout`` or ``setting``), the mean over seeds with a band of ± one std. More than :data:`MAX_LINES`
    settings take several rows per task. A strict point whose mean counts a † seed is marked ×."""
    if tasks is not None:
        curves = curves[curves["task"].isin(list(tasks))]
    if curves.empty:
        return empty_figure("no evaluation points (no finished runs)")
    curves, panels, styles, semantics = line_semantics(curves, hue)
    data = long_quantities(curves).dropna(subset=["value"])
    several_seeds = bool((data.groupby(["panel", "series", "quantity", x])["seed"].nunique() > 1).any())
    labels = [quantity[3] for quantity in QUANTITIES]
    grid = sns.relplot(data=data, kind="line", x=x, y="value", row="panel", col="quantity", row_order=panels,
                       col_order=labels, estimator="mean", errorbar=seed_band if several_seeds else None,
                       err_kws={"alpha": 0.12, "linewidth": 0}, legend=False, height=1.8, aspect=1.75,
                       facet_kws={"sharex": "row", "sharey": True, "despine": False}, **semantics)
    grid.set_titles("")
    grid.set_xlabels(STEP_LABEL if x == "step" else "epoch", fontsize=8)
    for (panel, label), ax in grid.axes_dict.items():
        percent_axis(ax, label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
        for line in ax.get_lines():
            line.set_markersize(4)
        unhide(ax)
    for row, panel in enumerate(panels):
        grid.axes[row, 0].set_title(panel, loc="left", fontsize=9)
    strict = data[(data["quantity"] == labels[0])]
    flagged = strict[strict["dagger"].fillna(False).astype(bool)] if "dagger" in strict.columns else strict.iloc[0:0]
    means = strict.groupby(["panel", "series", x])["value"].mean()
    for panel, points in flagged.groupby("panel"):
        marked = means.loc[sorted({(panel, s, step) for s, step in zip(points["series"], points[x])})]
        grid.axes_dict[(panel, labels[0])].scatter(marked.index.get_level_values(2), marked.to_numpy(), **DAGGER_POINT)
    fig = facet_figure(grid)
    cross = [(Line2D([], [], linestyle="none", marker="x", color="black", markersize=5), DAGGER_LABEL)]
    line_legend(fig, styles, extra=cross if len(flagged) else ())
    return finished(fig, [MARK_BANDS if several_seeds else "", MARK_CROSS if len(flagged) else ""])


def plot_losses(losses: pd.DataFrame, *, hue: str = "variant", tasks=None, columns: int = 4, log: bool = True):
    """Training loss against optimizer step from :func:`~superpos.report.loss_curves` (a record's
    ``loss_curve``): one panel per (backbone, task), one line per setting (colour: the setting; line style:
    dropout, solid off, dashed on), the mean over seeds; shared y axis, logarithmic with ``log``."""
    if tasks is not None:
        losses = losses[losses["task"].isin(list(tasks))]
    losses = losses.assign(loss=pd.to_numeric(losses["loss"], errors="coerce")).dropna(subset=["loss"])
    if losses.empty:
        return empty_figure("no training losses (no finished runs)")
    losses, panels, styles, semantics = line_semantics(losses, hue)
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
        unhide(ax)
    fig = facet_figure(grid, 0.6)
    line_legend(fig, styles, markers=False)
    return finished(fig)
