"""Figure 2(d): how alike the learned superposition weights ``p'_i`` of different tasks are, one heatmap per prompt
token."""
from __future__ import annotations

import math

import pandas as pd
import seaborn as sns

from ..names import task_label, task_order
from .style import empty_figure, finished, new_figure


def plot_similarity(similarity: pd.DataFrame, *, backbone: str | None = None, columns: int = 5):
    """Figure 2(d): for each prompt token ``i``, the tasks x tasks cosine similarity of the learned ``p'_i``, for
    ``backbone`` (by name: the paper draws Figure 2 on T5 v1.1 Base LM-adapted; None: the only one there is).
    Fewer than two tasks: nothing to compare, no figure."""
    if backbone is not None:
        similarity = similarity[similarity["backbone"] == backbone]
    elif similarity["backbone"].nunique() > 1:
        raise ValueError(f"plot_similarity: runs of {similarity['backbone'].nunique()} backbones; name one (backbone=...)")
    if similarity.empty or similarity["task_a"].nunique() < 2:
        return empty_figure("no two tasks' superpos runs over the same sampled tokens to compare")
    first = similarity[["backbone", "variant", "dropout"]].drop_duplicates().iloc[0]
    similarity = similarity[(similarity["backbone"] == first["backbone"]) & (similarity["variant"] == first["variant"])
                            & (similarity["dropout"] == first["dropout"])]
    prompts = sorted(similarity["prompt"].unique())
    tasks = task_order(similarity["task_a"])
    labels = [task_label(t) for t in tasks]
    columns = max(1, min(columns, len(prompts)))
    rows = math.ceil(len(prompts) / columns)
    fig, axes = new_figure(rows, columns, width=1.2 + 0.55 * len(tasks), height=0.9 + 0.55 * len(tasks))
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
    return finished(fig)
