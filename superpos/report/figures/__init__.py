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

from .curves import plot_curves, plot_losses
from .factor import plot_factor
from .lines import line_styles
from .similarity import plot_similarity
from .standardized import plot_standardized
from .style import (AT_BEST_POINTS, DAGGER_LABEL, DROPOUT_HATCH, DROPOUT_STYLE, LOSS_LABEL, MARK_BANDS, MARK_CROSS,
                    MARK_DAGGER, MARK_ERRORS, MAX_LINES, QUANTITIES, STEP_LABEL, SVG_SALT)

__all__ = ["plot_curves", "plot_losses", "plot_factor", "plot_similarity", "plot_standardized", "line_styles",
           "AT_BEST_POINTS", "DAGGER_LABEL", "DROPOUT_HATCH", "DROPOUT_STYLE", "LOSS_LABEL", "MARK_BANDS", "MARK_CROSS",
           "MARK_DAGGER", "MARK_ERRORS", "MAX_LINES", "QUANTITIES", "STEP_LABEL", "SVG_SALT"]
