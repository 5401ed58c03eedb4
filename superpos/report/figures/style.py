"""What every figure shares: the quantities it shows and their axes, the dropout marks, the caption marks, and
the scaffolding (a figure of panels, a seaborn grid's layout, the empty figure, the finished one)."""
from __future__ import annotations

import matplotlib

import matplotlib.pyplot as plt  # noqa: E402  (after matplotlib: the kernel's backend is already chosen)
import numpy as np
import pandas as pd

STEP_LABEL = "training step (optimizer updates)"
LOSS_LABEL = "training loss (token cross-entropy)"
#: (row name, column of the mean, column of its std over seeds, y label), in the order the panels show them.
QUANTITIES = (("strict", "strict_score", "strict_std", "strict score (%)"),
              ("lenient", "lenient_score", "lenient_std", "lenient score (%)"),
              ("invalid", "invalid_rate", "invalid_std", "invalid labels (%)"))
#: Best-point figures (:func:`~.factor.plot_factor`): the invalid-label rate where the lenient score beside it is read (the
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


def new_figure(rows: int, columns: int, *, width: float, height: float):
    """A figure of ``rows`` x ``columns`` panels, each ``width`` x ``height`` inches, and its axes (always 2-D)."""
    return plt.subplots(rows, columns, figsize=(width * columns, height * rows + 0.4), squeeze=False,
                        layout="constrained")


def finished(fig, marks=()):
    """``fig`` closed in pyplot, with the caption marks it uses (``fig.marks``)."""
    fig.marks = [mark for mark in marks if mark]
    plt.close(fig)
    return fig


def empty_figure(message: str):
    """A figure with nothing to show or compare: ``publish_figure`` writes no file and says ``message``."""
    fig, ax = plt.subplots(figsize=(6, 1.2), layout="constrained")
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    fig.unavailable = message
    return finished(fig)


def facet_figure(grid, height_extra: float = 0.7):
    """A seaborn grid's figure laid out by matplotlib (legend and title outside the panels), a bit taller."""
    fig = grid.figure
    width, height = fig.get_size_inches()
    fig.set_size_inches(width, height + height_extra)
    fig.set_layout_engine("constrained")
    return fig


def percent_axis(ax, label: str | None = None) -> None:
    """0–100 with a little room so a line at 0 or 100 stays visible off the frame."""
    ax.set_ylim(-4, 104)
    ax.set_yticks([0, 25, 50, 75, 100])
    ax.grid(alpha=0.3)
    ax.set_axisbelow(True)  # grid behind bars
    if label is not None:
        ax.set_ylabel(label, fontsize=8)
        ax.yaxis.label.set_visible(True)  # seaborn hides inner y labels: here each column shows its own quantity


def quantity_columns(frame: pd.DataFrame, quantity: tuple) -> tuple[str, str | None, float]:
    """(value column, std column, factor to percent) of a quantity row; a frame without the strict/lenient
    split (older callers) draws its ``score`` in both score rows."""
    name, value, std, _ = quantity
    if value not in frame.columns and name != "invalid":
        value, std = "score", "score_std"
    return value, (std if std in frame.columns else None), (100.0 if name == "invalid" else 1.0)


def long_quantities(frame: pd.DataFrame, quantities=QUANTITIES) -> pd.DataFrame:
    """``frame`` once per quantity: ``quantity`` (its label), ``value`` and ``spread`` in percent."""
    parts = []
    for quantity in quantities:
        value, std, scale = quantity_columns(frame, quantity)
        parts.append(frame.assign(quantity=quantity[3], value=pd.to_numeric(frame[value], errors="coerce") * scale,
                                  spread=pd.to_numeric(frame[std], errors="coerce") * scale if std else np.nan))
    return pd.concat(parts, ignore_index=True)


def seed_band(values) -> tuple[float, float]:
    """± one std over seeds, clipped to 0–100: a percentage's spread does not leave its range."""
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return max(0.0, mean - std), min(100.0, mean + std)

