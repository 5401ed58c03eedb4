"""Rows for the GLUE / SuperGLUE tasks: from a local folder, else from the Hugging Face hub.

Local folder (``get_task(name, data_dir=...)`` or ``$SUPERPOS_DATA``), searched first. The task's folder is
``<data_dir>/<Task>/`` or ``<data_dir>/<glue|super_glue|superglue>/<Task>/``, where ``<Task>`` is any of the
task's names, case-insensitive (``sst2``, ``SST-2``; ``multirc``, ``MultiRC``). Inside it, per split:

- hub schema (the field names, label ids and MultiRC ``idx`` dict of ``nyu-mll/glue`` / ``aps/super_glue``):
  ``train.{jsonl,json,parquet,csv}``, ``validation.{...}`` (MNLI also ``validation_matched``);
- the official release files: GLUE ``train.tsv`` / ``dev.tsv`` (MNLI ``dev_matched.tsv``; CoLA without
  header), SuperGLUE ``train.jsonl`` / ``val.jsonl`` (string or boolean labels, MultiRC nested by passage).

Hub: ``datasets.load_dataset(hub_id, config, split=...)``. With HF's offline variables set only the local
``datasets`` cache is tried; otherwise a 3-second socket check runs first, so a machine without network
fails at once with one :class:`TaskError` line instead of retrying for ~20 s.
"""
from __future__ import annotations

import ast
import csv
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ..paths import hub_is_offline, hub_status
from .base import Task, TaskError
from .registry import PAPER_SPECS, PAPER_TASKS, canonical_name

DATA_ENV = "SUPERPOS_DATA"
SPLIT_FILES = {
    "train": ("train",),
    "validation": ("validation", "validation_matched", "dev", "dev_matched", "val"),
}
EXTENSIONS = (".jsonl", ".json", ".parquet", ".csv", ".tsv")
#: Release files are read with "utf-8-sig": MRPC's train.tsv / dev.tsv begin with a byte-order mark, which read
#: as plain utf-8 becomes part of the first column's name ("\ufeffQuality") and hides the label column.
TEXT_ENCODING = "utf-8-sig"
BENCHMARK_DIRS = {"glue": ("glue",), "super_glue": ("super_glue", "superglue", "super-glue")}


def _simple(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def _child(folder: Path, names: Sequence[str]) -> Path | None:
    """The sub-folder of ``folder`` whose name matches one of ``names`` (case, ``-`` and ``_`` ignored)."""
    if not folder.is_dir():
        return None
    wanted = {_simple(n) for n in names}
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and _simple(entry.name) in wanted:
            return entry
    return None


def local_data_fingerprint(name: str) -> str | None:
    """A hash of the local files a GLUE/SuperGLUE task's rows come from (``$SUPERPOS_DATA``: release files or
    hub-schema files, train and validation), part of its runs' hashes so that other files give other runs; ``None``
    when its rows come from the hub (no ``$SUPERPOS_DATA``, or no file of the task there) and for every other task,
    whose hashes stay as they were. The contents count, not the paths (file digests are remembered per process by
    path, size and modification time: :func:`superpos.paths.file_digest`)."""
    if not os.environ.get(DATA_ENV):
        return None
    try:
        name = canonical_name(name)
    except TaskError:
        return None
    if name not in PAPER_TASKS:
        return None
    task = BenchmarkTask(name, **PAPER_SPECS[name])  # as get_task builds it
    files = {split: task.local_file(split) for split in SPLIT_FILES}
    if not any(files.values()):
        return None
    from ..config import stable_hash
    from ..paths import file_digest

    return stable_hash({split: None if path is None else [path.name, file_digest(path)]
                        for split, path in files.items()})


class BenchmarkTask(Task):
    """A GLUE or SuperGLUE task, loaded from a local folder or the hub (see module docstring).

    Spec fields beyond :class:`Task`'s: ``benchmark``, ``hub_id`` (default repo), ``hub_config``,
    ``hub_splits`` (our split name -> hub split), ``label_names`` (the hub's class names, to map string or
    boolean labels of release files), ``official_dir``, ``tsv`` (GLUE TSV reading: ``columns`` for headerless
    files, ``rename`` release column -> hub field, ``label`` column), ``official_rows`` (release JSONL row ->
    hub rows, for MultiRC), ``train_size`` (documented size of the hub train split).
    """

    def __init__(self, name: str, *, benchmark: str, hub_id: str, hub_config: str, label_names: Sequence[str] = (),
                 hub_splits: dict[str, str] | None = None, official_dir: str = "", tsv: dict | None = None,
                 official_rows: Callable[[dict], list[dict]] | None = None, sizes: tuple[int, int] = (0, 0),
                 data_dir: str | os.PathLike | None = None, **spec):
        super().__init__(name, **spec)
        self.benchmark = benchmark
        self.hub_id = hub_id
        self.hub_config = hub_config
        self.hub_splits = {"train": "train", "validation": "validation", **(hub_splits or {})}
        self.label_names = list(label_names)
        self.official_dir = official_dir or self.display_name
        self.tsv = tsv or {}
        self.official_rows = official_rows
        self.sizes = sizes
        data_dir = data_dir or os.environ.get(DATA_ENV) or None
        self.data_dir = Path(data_dir).expanduser() if data_dir else None
        self._rows: dict[str, list[dict]] = {}

    # ------------------------------------------------------------------ sources

    def local_folder(self) -> Path | None:
        """The folder holding this task's files under ``data_dir``, if any."""
        if self.data_dir is None:
            return None
        names = (self.name, self.display_name, self.hub_config, self.official_dir)
        for root in (self.data_dir, _child(self.data_dir, BENCHMARK_DIRS[self.benchmark])):
            found = _child(root, names) if root is not None else None
            if found is not None:
                return found
        return None

    def local_file(self, split: str) -> Path | None:
        folder = self.local_folder()
        if folder is None:
            return None
        for stem in SPLIT_FILES[split]:
            for ext in EXTENSIONS:
                path = folder / f"{stem}{ext}"
                if path.is_file():
                    return path
        return None

    def rows(self, split: str) -> list[dict]:
        if split not in SPLIT_FILES:
            raise TaskError(f"{self.name}: split must be 'train' or 'validation', got {split!r}")
        if split not in self._rows:
            path = self.local_file(split)
            raw = self._read_local(path) if path is not None else self._read_hub(split)
            self._rows[split] = [self._normalize_row(r) for r in raw]
        return self._rows[split]

    def source(self, split: str = "train") -> str:
        """Where ``split`` comes from: a local file path or ``hub:<id>/<config>``."""
        path = self.local_file(split)
        return str(path) if path is not None else f"hub:{self.hub_id}/{self.hub_config}"

    # ------------------------------------------------------------------ local files

    def _read_local(self, path: Path) -> list[dict]:
        ext = path.suffix
        if ext == ".tsv":
            return self._read_tsv(path)
        if ext == ".parquet":
            import pyarrow.parquet as pq

            rows = pq.read_table(path).to_pylist()
        elif ext == ".csv":
            with path.open(newline="", encoding=TEXT_ENCODING) as fh:
                rows = list(csv.DictReader(fh))
        else:  # .jsonl / .json (JSON lines, or one JSON array)
            text = path.read_text(encoding=TEXT_ENCODING)
            stripped = text.lstrip()
            rows = json.loads(text) if stripped.startswith("[") else [json.loads(l) for l in text.splitlines() if l.strip()]
        if self.official_rows is not None and rows and self._is_official(rows[0]):
            rows = [r for row in rows for r in self.official_rows(row)]
        return rows

    def _is_official(self, row: dict) -> bool:
        return "passage" in row and isinstance(row["passage"], dict)

    def _read_tsv(self, path: Path) -> list[dict]:
        if not self.tsv:
            raise TaskError(f"{self.name}: {path} is a TSV file but {self.display_name} is not released as TSV")
        csv.field_size_limit(sys.maxsize)
        with path.open(newline="", encoding=TEXT_ENCODING) as fh:
            reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            lines = list(reader)
        columns = self.tsv.get("columns")
        first = 0
        if columns is None:
            columns, lines, first = lines[0], lines[1:], 1
        rename, label_col = self.tsv["rename"], self.tsv["label"]
        missing = [col for col in (*rename, label_col) if col not in columns]
        if missing:
            raise TaskError(f"{self.name}: {path} has no column {', '.join(map(repr, missing))}; its header is "
                            f"{columns}")
        rows, malformed = [], []
        for i, line in enumerate(lines):
            if len(line) != len(columns):  # a stray tab or a cut line (a few exist in the release files)
                malformed.append(i + first + 1)
                continue
            raw = dict(zip(columns, line))
            row = {field: raw[col] for col, field in rename.items()}
            row["label"] = raw.get(label_col, -1)
            row["idx"] = i
            rows.append(row)
        if malformed:
            shown = ", ".join(map(str, malformed[:5])) + (", ..." if len(malformed) > 5 else "")
            print(f"superpos: {self.name}: dropped {len(malformed)} of {len(lines)} lines of {path} whose field "
                  f"count is not the header's {len(columns)} (line {shown})", file=sys.stderr)
        return rows

    # ------------------------------------------------------------------ hub

    def _read_hub(self, split: str) -> list[dict]:
        looked = f"no {SPLIT_FILES[split][0]} file under {self.local_folder()}" if self.local_folder() else (
            f"no {self.official_dir}/ folder under {self.data_dir}" if self.data_dir else
            f"no data_dir given (pass data_dir=... or set ${DATA_ENV})")
        why = hub_status(3.0)
        if why is None or hub_is_offline():
            try:
                from datasets import load_dataset

                ds = load_dataset(self.hub_id, self.hub_config, split=self.hub_splits[split])
                return ds.to_list()
            except Exception as err:  # the hub or the cache failed: say so in one line
                why = why or f"failed ({err.__class__.__name__}: {str(err).splitlines()[0][:160] if str(err) else ''})"
        raise TaskError(
            f"{self.name}: {looked}, and the hub ({self.hub_id}) is {why}. Put the official release files "
            f"({self.official_dir}/{'train.tsv, dev.tsv' if self.tsv else 'train.jsonl, val.jsonl'}) or hub-schema "
            f"train/validation .jsonl/.parquet/.csv under <data_dir>/{self.official_dir}/, or run where the hub "
            f"is reachable, or use an offline bbc-* task.")

    # ------------------------------------------------------------------ schema

    def _normalize_row(self, row: dict) -> dict:
        row = dict(row)
        row["label"] = self._label(row.get("label", -1))
        idx = row.get("idx")
        if isinstance(idx, str) and idx.lstrip().startswith("{"):
            row["idx"] = ast.literal_eval(idx)
        elif isinstance(idx, str) and idx.strip().lstrip("-").isdigit():
            row["idx"] = int(idx)
        return row

    def _label(self, value) -> int | float:
        if self.is_regression:
            return float(value) if value not in (None, "") else -1.0
        if value is None:
            return -1
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, (int, float)):
            return int(value)
        text = str(value).strip()
        if text in ("", "-"):  # no gold label (release test files, MNLI items without consensus)
            return -1
        if text.lstrip("-").isdigit():
            return int(text)
        lowered = [n.lower() for n in self.label_names]
        if text.lower() in lowered:
            return lowered.index(text.lower())
        raise TaskError(f"{self.name}: unknown label {value!r}; expected an id or one of {self.label_names}")
