"""Table 2 as bars: the standardized overall score per setting (and, beside it, the invalid-label rate)."""
from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from ..names import dropout_mark, method_label
from ..stability import SETTING, standardized_overall
from .lines import line_styles, settings_of
from .style import AT_BEST_POINTS, DROPOUT_HATCH, empty_figure, finished, new_figure, percent_axis


def plot_standardized(overall: pd.DataFrame, *, scores: pd.DataFrame | None = None):
    """Table 2 as bars: the standardized overall score (0–100; ``mean``, error bars ``std`` over tasks, from
    :func:`~superpos.report.stability_table`) per setting, in the setting's colour (hatched: dropout on; a second
    backbone lighter). With ``scores`` (:func:`~superpos.report.task_scores` rows), three rows: standardized from
    the strict scores, from the lenient scores, and the invalid-label rate (%) at the lenient point averaged over
    tasks (error bars: std over tasks)."""
    if overall.empty:
        return empty_figure("no complete settings to standardize")
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
    palette = line_styles([(m, v, bool(d)) for m, v, d in keys], "setting", settings_of(scores if scores is not None else overall))
    fig, axes = new_figure(len(rows), 1, width=max(6.0, 1.1 * len(keys) * len(backbones) + 1), height=2.0)
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
        percent_axis(ax)
    if len(backbones) > 1:
        handles = [Patch(facecolor="#7f7f7f", alpha=1.0 - 0.45 * k) for k in range(len(backbones))]
        fig.legend(handles, backbones, loc="outside lower center", ncols=min(len(backbones), 4), fontsize=8,
                   frameon=False)
    return finished(fig)
