"""Nearest-vocabulary readouts of learned prompts (Lester et al. 2021, §7 "Interpretability").

For every finished run that exported its prompt (``record["prompt_path"]``: safetensors ``{"prompt": n x d}``),
each prompt row is compared by cosine similarity with every real token embedding of the run's backbone;
the ``k`` nearest tokens are the row's readout.

Computing it needs the backbone's embedding table and tokenizer, so the result is cached per run in
``results/<profile>/readouts/<hash>-k<k>.json``: a notebook re-executed on stored runs reads that file
and loads no model.
"""
from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import pandas as pd

from ..engine import ResultsStore, open_store
from ..engine.files import atomic_write_json

COLUMNS = ["backbone", "task", "method", "variant", "dropout", "seed", "hash", "prompt", "tokens", "cosines"]


def readout_path(store: ResultsStore, run_hash: str, k: int) -> Path:
    return store.root / "readouts" / f"{run_hash}-k{k}.json"


def _token_text(tokenizer, token_id: int) -> str:
    """The token as text; a piece that is no text on its own (whitespace, part of a UTF-8 character in a
    byte-level BPE) is shown as the tokenizer's raw token instead."""
    text = tokenizer.decode([int(token_id)]).strip()
    if not text or "\ufffd" in text:
        text = str(tokenizer.convert_ids_to_tokens(int(token_id)))
    return text


def compute_readout(prompt, backbone, k: int) -> list[dict]:
    """``k`` nearest real tokens (cosine) of each row of ``prompt [n, d]`` in ``backbone``'s embedding table."""
    import torch

    with torch.no_grad():
        ids = torch.as_tensor(backbone.candidate_token_ids(), dtype=torch.long).cpu()
        table = backbone.embedding_weight.detach().float().cpu()[ids]
        table = torch.nn.functional.normalize(table, dim=1)
        rows = torch.nn.functional.normalize(prompt.float().cpu(), dim=1)
        cosine = rows @ table.T
        values, index = cosine.topk(k, dim=1)
    return [{"prompt": i + 1, "token_ids": ids[index[i]].tolist(),
             "tokens": [_token_text(backbone.tokenizer, t) for t in ids[index[i]].tolist()],
             "cosines": [round(float(v), 4) for v in values[i]]} for i in range(rows.shape[0])]


def nearest_tokens(frame: pd.DataFrame, where, *, k: int = 5, load=None) -> pd.DataFrame:
    """The readout of every finished run in ``frame`` that has an exported prompt, long form (one row per
    prompt token): ``tokens`` (k nearest, nearest first) and ``cosines``.

    ``where``: the store (or profile name / folder) the records came from. ``load``: backbone loader
    (default :func:`superpos.backbones.load_backbone`), called at most once per backbone and only for runs
    without a cached readout.
    """
    from .scores import with_variants

    store = open_store(where)
    if frame.empty:
        return pd.DataFrame(columns=COLUMNS)
    runs = with_variants(frame)
    runs = runs[(runs["status"] == "done") & runs["prompt_path"].notna()]
    backbones: dict[str, object] = {}
    rows = []
    for _, run in runs.iterrows():
        path = readout_path(store, run["hash"], k)
        if path.exists():
            readout = json.loads(path.read_text())
        else:
            if run["backbone"] not in backbones:
                if load is None:
                    from ..backbones import load_backbone as load
                # Quietly: a first execution must show what a re-execution from the cache shows (nbval).
                with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
                    warnings.simplefilter("ignore")
                    backbones[run["backbone"]] = load(run["backbone"])
            from safetensors.torch import load_file

            prompt = load_file(str(store.root / run["prompt_path"]))["prompt"]
            readout = {"hash": run["hash"], "backbone": run["backbone"], "k": k,
                       "rows": compute_readout(prompt, backbones[run["backbone"]], k)}
            atomic_write_json(path, readout)
        for item in readout["rows"]:
            rows.append({"backbone": run["backbone"], "task": run["task"], "method": run["method"],
                         "variant": run["variant"], "dropout": bool(run["dropout"]), "seed": run["seed"],
                         "hash": run["hash"], "prompt": item["prompt"], "tokens": item["tokens"],
                         "cosines": item["cosines"]})
    return pd.DataFrame(rows, columns=COLUMNS)


def readout_table(readouts: pd.DataFrame, *, digits: int = 2) -> pd.DataFrame:
    """Display form: one row per (backbone, task, variant, seed, prompt token), the nearest tokens as
    ``token (cos)`` joined by `` · ``."""
    from .names import method_label, task_label

    if readouts.empty:
        return pd.DataFrame(columns=["Backbone", "Task", "Method", "Seed", "Prompt token", "Nearest tokens (cosine)"])
    rows = []
    for _, row in readouts.iterrows():
        rows.append({"Backbone": row["backbone"], "Task": task_label(row["task"]),
                     "Method": method_label(row["method"], row["variant"]), "Seed": row["seed"],
                     "Prompt token": row["prompt"],
                     "Nearest tokens (cosine)": " · ".join(f"{t!r} ({c:.{digits}f})" if not t.isprintable() else
                                                           f"{t} ({c:.{digits}f})"
                                                           for t, c in zip(row["tokens"], row["cosines"]))})
    return pd.DataFrame(rows)
