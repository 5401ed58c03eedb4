"""Report: records -> tables, figures, and the paper's numbers beside ours. Notebooks call only these.

Flow (one way): ``superpos.engine.load_records`` (one row per run) -> :func:`task_scores` (seeds averaged,
one row per setting x task) -> a table (:func:`method_table`, :func:`factor_table`, :func:`stability_table`,
:func:`beside_paper`) or a figure (:mod:`.figures`) -> :func:`publish_table` / :func:`publish_figure`
(files under ``results/<profile>/``, with a :func:`caption` naming model, data, budget and seeds).

Modules: ``names`` (display names and orders), ``settings`` (a setting's label and sort key), ``scores``
(seeds averaged per setting x task; curves), ``tables`` (Table 1 layout, ablations, costs), ``beside`` (the
paper's numbers beside ours), ``stability`` (standardized overall scoring,
Table 2; weight similarity, Figure 2d), ``figures`` (curves and losses, best points against a factor, Figure
2d's heatmaps, Table 2's bars; the style and lines they share), ``paper`` (the paper's Tables 1-3 as data),
``readout`` (nearest-token readouts of prompts), ``output`` (captions and files), ``glance`` (the paper's
claims judged on a store's runs by paired tests, ``stats``), ``baselines`` (the best constant answer; the
learnability gate).
"""
from .baselines import GATE_CEILING, GATE_MARGIN, baseline_scores, constant_baseline, learnability_gate, with_baseline
from .glance import CLAIMS, claim_summary, glance
from .figures import plot_curves, plot_factor, plot_losses, plot_similarity, plot_standardized
from .output import (Published, PublishedFigure, caption, markdown_table, output_dir, publish_figure,
                     publish_table, save_figure)
from .paper import PAPER_MODELS, paper_model, paper_table2, paper_task_scores, paper_values
from .readout import nearest_tokens, readout_table
from .stability import (beside_paper_table2, distinctiveness, paper_table2_check, stability_table,
                        standardized_overall, standardized_scores, weight_similarity)
from .beside import beside_paper, paper_table
from .names import method_label, methods_named, task_label, task_order, variant_label
from .scores import learning_curves, loss_curves, select, task_scores, with_variants
from .settings import Variant
from .tables import cost_table, factor_table, method_table

__all__ = [
    "CLAIMS", "glance", "claim_summary", "GATE_CEILING", "GATE_MARGIN", "baseline_scores", "constant_baseline",
    "learnability_gate", "with_baseline",
    "plot_curves", "plot_factor", "plot_losses", "plot_similarity", "plot_standardized",
    "Published", "PublishedFigure", "caption", "markdown_table", "output_dir", "publish_figure", "publish_table",
    "save_figure",
    "PAPER_MODELS", "paper_model", "paper_table2", "paper_task_scores", "paper_values",
    "nearest_tokens", "readout_table",
    "beside_paper_table2", "distinctiveness", "paper_table2_check", "stability_table", "standardized_overall",
    "standardized_scores", "weight_similarity",
    "beside_paper", "cost_table", "factor_table", "learning_curves", "loss_curves", "method_label", "method_table",
    "methods_named",
    "paper_table", "select", "task_label", "task_order", "task_scores", "variant_label", "with_variants", "Variant",
]
