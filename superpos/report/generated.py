"""Blocks of the docs that are computed from committed records, never typed: the README's "Results at a glance"
(:func:`~superpos.report.glance.glance_markdown`) and docs/TASKS.md's learnability gate
(:func:`~superpos.report.baselines.learnability_gate`), each from a profile's committed reference.

A block sits between ``<!-- <kind> <profile>: ... -->`` and ``<!-- /<kind> <profile> -->``;
``python -m superpos glance --write-docs`` rewrites every block of README.md and docs/TASKS.md, and a test checks
that each one equals what the records give.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..paths import REPO_ROOT

DOCS = ("README.md", "docs/TASKS.md", "docs/NOTEBOOKS.md")
_START = re.compile(r"<!-- (glance|gate|cost) (\w+): [^>]*-->\n")


def reference_runs(profile: str, configs: list | None = None):
    """The committed reference's finished runs of ``profile`` (of ``configs``: all the profile asks for by default)."""
    from ..engine import ResultsStore, load_records
    from ..paths import reference_dir
    from ..profiles import profile_configs

    configs = profile_configs(profile) if configs is None else configs
    return load_records(ResultsStore(reference_dir(profile), read_only=True), configs, only_done=True)


def block(kind: str, profile: str) -> str:
    """The body of one generated block."""
    from ..profiles import gate_configs, get_profile, profile_configs
    from .baselines import learnability_gate
    from .glance import glance_markdown
    from .output import markdown_table

    if kind == "glance":
        return glance_markdown(reference_runs(profile), wanted=len(profile_configs(profile)),
                               gate=bool(get_profile(profile).gate_tasks))
    if kind == "gate":
        configs = gate_configs(profile)
        runs = reference_runs(profile, configs)
        return (f"From {len(runs)} of the {len(configs)} simple prompt tuning runs of profile {profile}'s reference.\n\n"
                + markdown_table(learnability_gate(runs)) + "\n")
    if kind == "cost":
        return cost_text(reference_runs(profile), profile_configs(profile))
    raise ValueError(f"unknown generated block {kind!r}")


def cost_text(runs, configs: list) -> str:
    """What a reference's runs cost, from their records (training and evaluation seconds, the machine and
    precision they name), and the whole profile projected at each task's and method's median per run."""
    import statistics

    done = runs[runs["status"] == "done"] if not runs.empty else runs
    if done.empty:
        return f"No finished run yet (the profile asks for {len(configs)}).\n"
    seconds = done["train_seconds"].astype(float) + done["eval_seconds"].astype(float)
    per = {key: statistics.median(list(values)) for key, values in seconds.groupby([done["task"], done["method"]])}
    overall = statistics.median(seconds)
    projected = sum(per.get((c.task, c.method), overall) for c in configs)
    machines = "; ".join(sorted({str(d) for d in done["device_name"].dropna()}))
    precisions = "/".join(sorted({str(p) for p in done["precision"].dropna()}))
    by_task = ", ".join(f"{task} {statistics.median(list(group)) / 60:.1f}"
                        for task, group in seconds.groupby(done["task"]))
    return (f"From the {len(done)} finished runs of the {len(configs)} the profile asks for ({precisions}; {machines}): "
            f"{done['train_seconds'].astype(float).sum() / 3600:.1f} h of training and "
            f"{done['eval_seconds'].astype(float).sum() / 3600:.1f} h of evaluation, a median of {overall / 60:.1f} min "
            f"per run (by task, minutes: {by_task}); all {len(configs)} runs at each task's and method's median: "
            f"{projected / 3600:.1f} h. The timings include whatever else ran on the machine.\n")


def blocks(text: str) -> list[tuple[str, str, int, int]]:
    """``(kind, profile, start, end)`` of each generated block's body in ``text``."""
    found = []
    for match in _START.finditer(text):
        kind, profile = match.groups()
        end = text.find(f"<!-- /{kind} {profile} -->", match.end())
        if end < 0:
            raise ValueError(f"the generated {kind} block of profile {profile} has no end marker")
        found.append((kind, profile, match.end(), end))
    return found


def write_docs(root: Path = REPO_ROOT) -> list[str]:
    """Rewrite every generated block of the docs from the committed references; return what was written."""
    written = []
    for name in DOCS:
        path = Path(root) / name
        text = path.read_text()
        for kind, profile, start, end in sorted(blocks(text), key=lambda item: -item[2]):
            text = text[:start] + block(kind, profile) + text[end:]
            written.append(f"{name}: {kind} {profile}")
        path.write_text(text)
    return written
