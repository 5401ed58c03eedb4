"""Tables from records: Table 1 (methods x tasks), ablation tables, the paper's numbers beside ours.

Everything starts from :func:`superpos.engine.load_records` (one row per run) and goes through
:func:`task_scores`, which averages seeds: one row per (backbone, method variant, dropout, task) with the
task score (the mean of the task's metrics, as Table 1 reports two-metric tasks), its spread over seeds,
the per-metric means and the dagger flag.

Conventions (paper §5):

- **strict** (default): a run that generated one invalid label scores 0 on that task (``†``).
- **lenient**: invalid labels count as wrong answers instead (``lenient=True``).
- ``†`` on an averaged cell: at least one seed produced an invalid label (``†k/n`` says how many).
- ``Avg.``: the mean of a row's task scores, printed only when the row has every task of the table
  (the paper prints "-" for ATTEMPT, which skips its four source tasks).
"""
from __future__ import annotations

import functools
import math
from typing import Iterable, Sequence

import pandas as pd

from ..tasks.metrics import METRIC_LABELS
from .paper import MODEL_LABELS, paper_averages, paper_model, paper_task_scores
from .settings import FIELD_NAMES as _FIELD_NAMES
from .settings import METHOD_ORDER, Variant, sort_variants, value_key

ENTRY = ("backbone", "method", "variant", "dropout")
#: Method-config fields carried into ``task_scores`` rows (a variant fixes them), for ablation tables.
CONFIG_COLUMNS = ("n_prompts", "m", "softmax", "init", "weights_init", "fusion", "projection")
METRIC_ORDER = tuple(METRIC_LABELS)
METHOD_LABELS = {"simple": "Simple PT", "residual": "Residual PT", "attempt": "ATTEMPT", "superpos": "SuperPos PT",
                 "ept": "EPT", "full": "Full fine-tuning"}
CHECK, CROSS = "✓", "✗"


# ----------------------------------------------------------------------------- names and order
@functools.lru_cache(maxsize=None)
def _task(name: str):
    try:
        from ..tasks import get_task

        return get_task(name)
    except Exception:  # an unknown or unloadable task still gets a table, under its own name
        return None


def task_label(name: str) -> str:
    """The task's display name (``SST-2``, ``bbc-topic``)."""
    task = _task(name)
    return getattr(task, "display_name", None) or name


def task_metrics(name: str, available: Iterable[str] = ()) -> tuple[str, ...]:
    """The task's metric names in Table 1's order (from the task registry, else from ``available``)."""
    task = _task(name)
    if task is not None:
        return tuple(task.metric_names)
    return tuple(m for m in METRIC_ORDER if m in set(available))


def metric_header(name: str, available: Iterable[str] = ()) -> str:
    """``F1/Acc.``-style header of a task's metrics."""
    return "/".join(METRIC_LABELS.get(m, m) for m in task_metrics(name, available))


def task_order(tasks: Iterable[str]) -> list[str]:
    """The paper's task order (Table 1) for its tasks, then the registry's order, then by name."""
    try:
        from ..tasks import TASKS

        known = list(TASKS)
    except Exception:
        known = []
    tasks = list(dict.fromkeys(tasks))
    return sorted(tasks, key=lambda t: (known.index(t) if t in known else len(known), t))


def variant_label(method: str, method_config: dict | None) -> str:
    """A short name for a method and how its config departs from the method's defaults (:class:`Variant`):
    ``superpos``, ``superpos (softmax)``, ``superpos m=16``, ``simple n=20``, ``simple init=labels``;
    EPT's ablation stages read ``ept (decomposition)``, ``ept (+ fusion)``, ``ept (+ projection only)``."""
    return Variant.of(method, method_config).label


def method_label(method: str, variant: str | None = None) -> str:
    """The paper's name for a method (``SuperPos PT``), with the variant's suffix."""
    variant = variant or method
    base = METHOD_LABELS.get(method, method)
    return base + variant[len(method):] if variant.startswith(method) else variant


def dropout_mark(value) -> str:
    return CHECK if bool(value) else CROSS


# ----------------------------------------------------------------------------- selection
def select(frame: pd.DataFrame, **conditions) -> pd.DataFrame:
    """Rows of ``frame`` (runs or task scores) whose columns equal the given values; a list or tuple value
    means "any of these". ``select(runs, method="superpos", dropout=False)``."""
    if frame.empty:
        return frame
    mask = pd.Series(True, index=frame.index)
    for column, value in conditions.items():
        if column not in frame.columns:
            raise ValueError(f"select: no column {column!r}; columns: {', '.join(map(str, frame.columns))}")
        values = list(value) if isinstance(value, (list, tuple, set)) else [value]
        mask &= frame[column].isin(values)
    return frame[mask].reset_index(drop=True)


# ----------------------------------------------------------------------------- scores per setting
def with_variants(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` plus a ``setting`` column (its :class:`Variant`) and a ``variant`` column (the setting's label)."""
    frame = frame.copy()
    if frame.empty:
        frame["setting"] = pd.Series(dtype=object)
        frame["variant"] = pd.Series(dtype=object)
        return frame
    frame["setting"] = [Variant.of(m, c) for m, c in zip(frame["method"], frame["method_config"])]
    frame["variant"] = [setting.label for setting in frame["setting"]]
    return frame


def metric_columns(frame: pd.DataFrame, split: str = "test") -> list[str]:
    prefix = f"{split}_"
    skip = {"score", "lenient_score", "invalid_rate", "dagger"}
    return [c for c in frame.columns if c.startswith(prefix) and c[len(prefix):] not in skip
            and c[len(prefix):] in METRIC_LABELS]


def task_scores(frame: pd.DataFrame, *, lenient: bool = False, by: Sequence[str] = ENTRY,
                split: str = "test") -> pd.DataFrame:
    """One row per (``by`` ..., task), seeds averaged.

    Columns: ``score`` (mean over finished seeds of the task score: strict, or lenient with
    ``lenient=True``), ``score_std`` (sample std over seeds; 0 for one seed), ``seeds`` (finished runs),
    ``failed`` (runs whose record says failed), ``daggers`` (seeds with an invalid label), ``dagger``
    (any), ``invalid_rate`` (mean fraction of invalid predictions), ``best_step`` (mean step of the strict-best
    point), ``best_lenient_step`` (mean step of the lenient-best point, where the lenient score is read), ``metrics``
    (``{metric: mean}``, strict values), and the config columns of ``by``. Whatever ``lenient`` says,
    ``strict_score``/``strict_std``, ``lenient_score``/``lenient_std`` and ``invalid_std`` are there too,
    for figures that show both conventions and the invalid rate side by side.
    """
    frame = with_variants(frame) if "variant" not in frame.columns else frame
    keys = list(by) + ["task"]
    columns = keys + [c for c in CONFIG_COLUMNS if c not in keys] + [
        "setting", "score", "score_std", "seeds", "failed", "daggers", "dagger", "invalid_rate", "best_step", "best_lenient_step",
        "metrics", "strict_score", "strict_std", "lenient_score", "lenient_std", "invalid_std"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    value = f"{split}_lenient_score" if lenient else f"{split}_score"
    metrics = metric_columns(frame, split)
    def spread(done: pd.DataFrame, column: str) -> tuple[float, float]:
        values = pd.to_numeric(done[column], errors="coerce").dropna()
        return (float(values.mean()) if len(values) else math.nan,
                float(values.std(ddof=1)) if len(values) > 1 else 0.0)

    rows = []
    for key, group in frame.groupby(keys, sort=False, dropna=False):
        done = group[group["status"] == "done"]
        scores = pd.to_numeric(done[value], errors="coerce").dropna()
        strict, lenient_values, invalid = (spread(done, f"{split}_{c}") for c in ("score", "lenient_score", "invalid_rate"))
        daggers = int(done[f"{split}_dagger"].fillna(False).astype(bool).sum()) if len(done) else 0
        means = {}
        for column in metrics:
            values = pd.to_numeric(done[column], errors="coerce").dropna()
            if len(values):
                means[column[len(split) + 1:]] = float(values.mean())
        first = group.iloc[0]
        rows.append({
            **{column: first[column] for column in CONFIG_COLUMNS if column in group.columns and column not in keys},
            **dict(zip(keys, key)),
            "setting": first["setting"] if "setting" in group.columns else None,
            "score": float(scores.mean()) if len(scores) else math.nan,
            "score_std": float(scores.std(ddof=1)) if len(scores) > 1 else 0.0,
            "seeds": int(len(scores)),
            "failed": int((group["status"] != "done").sum()),
            "daggers": daggers,
            "dagger": daggers > 0,
            "invalid_rate": float(pd.to_numeric(done[f"{split}_invalid_rate"], errors="coerce").mean())
            if len(done) else math.nan,
            "best_step": float(pd.to_numeric(done["best_step"], errors="coerce").mean()) if len(done) else math.nan,
            "best_lenient_step": float(pd.to_numeric(done.get("best_lenient_step", done["best_step"]),
                                                     errors="coerce").mean()) if len(done) else math.nan,
            "metrics": {m: means[m] for m in task_metrics(key[-1], means) if m in means} or means,
            "strict_score": strict[0], "strict_std": strict[1],
            "lenient_score": lenient_values[0], "lenient_std": lenient_values[1], "invalid_std": invalid[1],
        })
    return _sorted(pd.DataFrame(rows, columns=columns))


def _sorted(scores: pd.DataFrame) -> pd.DataFrame:
    if scores.empty:
        return scores.reset_index(drop=True)
    order = {t: i for i, t in enumerate(task_order(scores["task"]))}
    method_rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    keyed = scores.assign(
        _task=scores["task"].map(order),
        _method=scores["method"].map(lambda m: method_rank.get(m, len(method_rank))) if "method" in scores else 0,
    )
    if "variant" in keyed.columns:
        ranks = {v: i for i, v in enumerate(sort_variants(keyed, keyed["variant"]))}
        keyed["_variant"] = keyed["variant"].map(ranks)
    sort = [c for c in ("backbone", "_method", "_variant", "dropout") if c in keyed.columns] + ["_task"]
    keyed = keyed.sort_values(sort, kind="stable")
    return keyed.drop(columns=[c for c in ("_task", "_method", "_variant") if c in keyed.columns]).reset_index(drop=True)


# ----------------------------------------------------------------------------- formatting
def format_cell(row: pd.Series | dict, *, single: bool = False, digits: int = 1) -> str:
    """Table 1's cell: ``81.9/86.3`` (metric means), ``†`` for invalid labels, ``±`` for the seeds' spread.

    ``single=True`` prints the one task score instead of each metric (lenient tables: per-metric lenient
    values are not in the records' frame; ablation tables: one number per cell).
    """
    if not row["seeds"]:
        return "failed" if row["failed"] else "-"
    if single or not row["metrics"]:
        text = f"{row['score']:.{digits}f}"
    else:
        text = "/".join(f"{v:.{digits}f}" for v in row["metrics"].values())
    if row["seeds"] > 1:
        text += f" ±{row['score_std']:.{digits}f}"
    if row["dagger"]:
        text += " †" if row["daggers"] == row["seeds"] == 1 else f" †{row['daggers']}/{row['seeds']}"
    return text


def _task_header(task: str, scores: pd.DataFrame, lenient: bool) -> str:
    available = set()
    for metrics in scores.loc[scores["task"] == task, "metrics"]:
        available.update(metrics)
    header = "score (lenient)" if lenient else metric_header(task, available)
    return f"{task_label(task)} {header}".strip()


def method_table(scores: pd.DataFrame, *, lenient: bool = False, rows: Sequence[str] = ("backbone", "variant", "dropout"),
                 digits: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 1's layout from :func:`task_scores` output: one row per setting, one column per task, ``Avg.``.

    Returns ``(formatted, numeric)``: strings as the paper prints them, and the task scores as numbers
    (the same rows and columns; ``Avg.`` NaN where a task is missing).
    """
    if scores.empty:
        empty = pd.DataFrame()
        return empty, empty
    tasks = task_order(scores["task"])
    formatted, numeric = [], []
    for key, group in scores.groupby(list(rows), sort=False, dropna=False):
        key = dict(zip(rows, key))
        label = _row_label(key, group)
        by_task = {row["task"]: row for _, row in group.iterrows()}
        cells = {_task_header(t, scores, lenient): format_cell(by_task[t], single=lenient, digits=digits)
                 if t in by_task else "-" for t in tasks}
        values = {_task_header(t, scores, lenient): by_task[t]["score"] if t in by_task else math.nan for t in tasks}
        complete = all(t in by_task and not math.isnan(by_task[t]["score"]) for t in tasks)
        average = sum(by_task[t]["score"] for t in tasks) / len(tasks) if complete else math.nan
        formatted.append({**label, **cells, "Avg.": f"{average:.{digits}f}" if complete else "-"})
        numeric.append({**label, **values, "Avg.": average})
    return pd.DataFrame(formatted), pd.DataFrame(numeric)


def _row_label(key: dict, group: pd.DataFrame) -> dict:
    label = {}
    if "backbone" in key:
        label["Backbone"] = key["backbone"]
    if "variant" in key:
        label["Method"] = method_label(group["method"].iloc[0], key["variant"]) if "method" in group else key["variant"]
    elif "method" in key:
        label["Method"] = method_label(key["method"])
    if "dropout" in key:
        label["Dropout"] = dropout_mark(key["dropout"])
    for name, value in key.items():
        if name not in ("backbone", "variant", "method", "dropout"):
            label[name] = value
    return label


def factor_table(scores: pd.DataFrame, factor: str, *, rows: Sequence[str] = ("backbone", "task"),
                 digits: int = 1, difference: tuple | None = None,
                 where: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per (backbone, task), one column per value of ``factor`` (``m``, ``n_prompts``, ``init``,
    ``variant``, ``dropout``): the best validation score (seeds averaged), as ``(formatted, numeric)``.

    ``difference=(a, b)`` adds a column ``Δ (a − b)``. A final ``Avg.`` row averages tasks per column
    when every task has every value. ``where``: :func:`select` conditions applied first (e.g.
    ``{"init": "vocab"}`` for the prompt-length columns).
    """
    if where:
        scores = select(scores, **where)
    if scores.empty:
        empty = pd.DataFrame()
        return empty, empty
    values = list(dict.fromkeys(scores[factor]))
    values = sort_variants(scores, values) if factor == "variant" else \
        sorted(values, key=lambda v: (isinstance(v, str), value_key(factor, v)))
    names = {v: _factor_name(factor, v) for v in values}
    formatted, numeric = [], []
    for key, group in scores.groupby(list(rows), sort=False, dropna=False):
        key = dict(zip(rows, key))
        label = _row_label({k: v for k, v in key.items() if k != "task"}, group)
        if "task" in key:
            label["Task"] = task_label(key["task"])
        by_value = {row[factor]: row for _, row in group.iterrows()}
        cells = {names[v]: format_cell(by_value[v], single=True, digits=digits) if v in by_value else "-"
                 for v in values}
        number = {names[v]: by_value[v]["score"] if v in by_value else math.nan for v in values}
        if difference is not None:
            a, b = difference
            delta = number.get(names.get(a), math.nan) - number.get(names.get(b), math.nan)
            number[f"Δ ({names.get(a, a)} − {names.get(b, b)})"] = delta
            cells[f"Δ ({names.get(a, a)} − {names.get(b, b)})"] = "-" if math.isnan(delta) else f"{delta:+.{digits}f}"
        formatted.append({**label, **cells})
        numeric.append({**label, **number})
    numeric_frame = pd.DataFrame(numeric)
    formatted_frame = pd.DataFrame(formatted)
    if "Task" not in numeric_frame.columns:
        return formatted_frame, numeric_frame
    # One "Avg." row per group of the other row keys (backbone, method, ...), over its tasks, when complete.
    labels = [c for c in ("Backbone", "Method", "Dropout") if c in numeric_frame.columns]
    value_columns = [c for c in numeric_frame.columns if c not in {"Backbone", "Task", "Method", "Dropout"}]
    pieces_n, pieces_f = [], []
    groups = numeric_frame.groupby(labels, sort=False, dropna=False) if labels else [((), numeric_frame)]
    for _, group in groups:
        pieces_n.append(group)
        pieces_f.append(formatted_frame.loc[group.index])
        if len(group) > 1 and not group[value_columns].isna().any().any():
            average = group[value_columns].mean()
            label = {c: group[c].iloc[0] for c in labels}
            label["Task"] = "Avg."
            pieces_n.append(pd.DataFrame([{**label, **average.to_dict()}]))
            pieces_f.append(pd.DataFrame([{**{c: formatted_frame.loc[group.index[0], c] for c in labels}, "Task": "Avg.",
                                           **{c: (f"{v:+.{digits}f}" if c.startswith("Δ") else f"{v:.{digits}f}")
                                              for c, v in average.items()}}]))
    numeric_frame = pd.concat(pieces_n, ignore_index=True)
    formatted_frame = pd.concat(pieces_f, ignore_index=True)
    return formatted_frame, numeric_frame


def _factor_name(factor: str, value) -> str:
    if factor == "variant":
        method = str(value).split(" ")[0]
        return method_label(method, str(value))
    if factor == "dropout":
        return f"dropout {dropout_mark(value)}"
    return f"{_FIELD_NAMES.get(factor, factor)}={value}"


# ----------------------------------------------------------------------------- the paper beside ours
def beside_paper(scores: pd.DataFrame, *, table: str = "table1", digits: int = 1) -> pd.DataFrame:
    """Our task scores beside the paper's for the same setting, with the difference (ours − paper).

    A setting matches when our backbone is one of the paper's models (``paper.PAPER_MODELS``), the method
    and dropout agree and the method config is the paper's (its defaults, or ``softmax`` alone for Table 3).
    Rows: one per (backbone, method, dropout, task), plus an ``Avg.`` row per setting where both sides
    have every task of the paper's row. Empty when nothing matches.
    """
    columns = ["Backbone", "Method", "Dropout", "Task", "Ours", "Paper", "Δ (ours − paper)", "Source"]
    if scores.empty:
        return pd.DataFrame(columns=columns)
    paper = paper_task_scores(table)
    if paper.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for key, group in scores.groupby(["backbone", "method", "variant", "dropout"], sort=False):
        backbone, method, variant, dropout = key
        model = paper_model(backbone)
        softmax = variant == f"{method} (softmax)"
        if model is None or not (variant == method or softmax):
            continue
        theirs = paper[(paper["model"] == model) & (paper["method"] == method) & (paper["dropout"] == bool(dropout))
                       & (paper["softmax"] == softmax) & (paper["n_prompts"] == 10)]
        if theirs.empty:
            continue
        theirs = theirs.set_index("task")
        ours_all, paper_all = [], []
        for _, row in group.iterrows():
            if row["task"] not in theirs.index:
                continue
            p = theirs.loc[row["task"]]
            ours = row["score"]
            rows.append({"Backbone": backbone, "Method": method_label(method, variant), "Dropout": dropout_mark(dropout),
                         "Task": task_label(row["task"]),
                         "Ours": _mark(ours, row["dagger"], digits), "Paper": _mark(p["score"], p["dagger"], digits),
                         "Δ (ours − paper)": "-" if math.isnan(ours) else f"{ours - p['score']:+.{digits}f}",
                         "Source": f"paper {table.replace('table', 'Table ')}, {MODEL_LABELS.get(model, model)}"
                                   + ("" if p["source"] == "this paper" else f" ({p['source']})")})
            ours_all.append(ours)
            paper_all.append(p["score"])
        if len(ours_all) == len(theirs) and ours_all and not any(math.isnan(v) for v in ours_all):
            ours_avg, paper_avg = sum(ours_all) / len(ours_all), sum(paper_all) / len(paper_all)
            rows.append({"Backbone": backbone, "Method": method_label(method, variant), "Dropout": dropout_mark(dropout),
                         "Task": "Avg.", "Ours": f"{ours_avg:.{digits}f}", "Paper": f"{paper_avg:.{digits}f}",
                         "Δ (ours − paper)": f"{ours_avg - paper_avg:+.{digits}f}",
                         "Source": f"paper {table.replace('table', 'Table ')}, {MODEL_LABELS.get(model, model)}"})
    return pd.DataFrame(rows, columns=columns)


def _mark(value: float, dagger: bool, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" + (" †" if dagger else "")


def paper_table(table: str = "table1", *, models: Sequence[str] | None = None, methods: Sequence[str] | None = None,
                dropout: Sequence[bool] | None = None, digits: int = 1) -> pd.DataFrame:
    """The paper's own table (Table 1 or 3) in Table 1's layout, for reference beside a notebook's results:
    one row per (model, method, dropout, softmax), one column per task (``81.9/86.3``, ``†``), its ``Avg.``."""
    scores = paper_task_scores(table)
    if models is not None:
        scores = scores[scores["model"].isin(list(models))]
    if methods is not None:
        scores = scores[scores["method"].isin(list(methods))]
    if dropout is not None:
        scores = scores[scores["dropout"].isin([bool(d) for d in dropout])]
    if scores.empty:
        return pd.DataFrame()
    averages = paper_averages(table).set_index(["model", "method", "dropout", "softmax"])["avg"].to_dict()
    tasks = task_order(scores["task"])
    rows = []
    for key, group in scores.groupby(["model", "method", "dropout", "softmax", "source"], sort=False):
        model, method, drop, softmax, source = key
        by_task = {row["task"]: row for _, row in group.iterrows()}
        cells = {}
        for task in tasks:
            if task not in by_task:
                cells[f"{task_label(task)} {metric_header(task)}"] = "-"
                continue
            row = by_task[task]
            text = "/".join(f"{v:.{digits}f}" for v in row["metrics"].values())
            cells[f"{task_label(task)} {metric_header(task)}"] = text + (" †" if row["dagger"] else "")
        average = averages.get((model, method, drop, softmax))
        rows.append({"Model": MODEL_LABELS.get(model, model),
                     "Method": METHOD_LABELS.get(method, method) + (" (softmax)" if softmax else ""),
                     "Dropout": dropout_mark(drop), **cells,
                     "Avg.": "-" if average is None or (isinstance(average, float) and math.isnan(average))
                     else f"{average:.{digits}f}",
                     "Source": source})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- curves
def learning_curves(frame: pd.DataFrame, *, lenient: bool = False) -> pd.DataFrame:
    """Every evaluation point of every finished run, long form: config columns, ``step``, ``epoch``,
    ``score`` (validation score in percent, strict or lenient), ``strict_score`` and ``lenient_score``
    (both conventions, whatever ``lenient`` says), ``invalid_rate`` (fraction, 0..1), ``dagger``."""
    frame = with_variants(frame) if "variant" not in frame.columns else frame
    columns = ["backbone", "task", "method", "variant", "dropout", "seed", "hash", "step", "epoch", "score",
               "strict_score", "lenient_score", "invalid_rate", "dagger"]
    rows = []
    for _, run in frame[frame["status"] == "done"].iterrows() if not frame.empty else []:
        for point in run["history"] or []:
            rows.append({"backbone": run["backbone"], "task": run["task"], "method": run["method"],
                         "variant": run["variant"], "dropout": bool(run["dropout"]), "seed": run["seed"],
                         "hash": run["hash"], "step": point.get("step"), "epoch": point.get("epoch"),
                         "score": point.get("lenient_score" if lenient else "score"),
                         "strict_score": point.get("score"), "lenient_score": point.get("lenient_score"),
                         "invalid_rate": point.get("invalid_rate"), "dagger": point.get("dagger")})
    return pd.DataFrame(rows, columns=columns)


def loss_curves(frame: pd.DataFrame) -> pd.DataFrame:
    """The training loss of every finished run, long form (``step``, ``loss``: mean token cross-entropy)."""
    frame = with_variants(frame) if "variant" not in frame.columns else frame
    rows = []
    for _, run in frame[frame["status"] == "done"].iterrows() if not frame.empty else []:
        for step, loss in run["loss_curve"] or []:
            rows.append({"backbone": run["backbone"], "task": run["task"], "method": run["method"],
                         "variant": run["variant"], "dropout": bool(run["dropout"]), "seed": run["seed"],
                         "step": step, "loss": loss})
    return pd.DataFrame(rows, columns=["backbone", "task", "method", "variant", "dropout", "seed", "step", "loss"])


def cost_table(frame: pd.DataFrame, *, by: Sequence[str] = ("backbone", "method", "variant")) -> pd.DataFrame:
    """Trainable parameters per setting (the paper's efficiency argument); no timings (they vary run to run)."""
    frame = with_variants(frame) if "variant" not in frame.columns else frame
    done = frame[frame["status"] == "done"] if not frame.empty else frame
    if done.empty:
        return pd.DataFrame(columns=["Backbone", "Method", "Trainable parameters"])
    rows = []
    for key, group in done.groupby(list(by), sort=False):
        key = dict(zip(by, key))
        rows.append({"Backbone": key.get("backbone"), "Method": method_label(group["method"].iloc[0], key.get("variant")),
                     "Trainable parameters": f"{int(group['trainable_params'].max()):,}"})
    return pd.DataFrame(rows)
