"""``make reproduce``: execute every notebook with papermill for one profile.

The sources in ``notebooks/`` stay clean (parameters, no outputs); executed copies go to
``results/<profile>/notebooks/`` with the profile injected (``-p profile <name>``). Runs are shared through
the results store, so a second call serves finished runs from ``results/<profile>/records`` and takes
minutes. Kernels get ``TQDM_DISABLE=1`` (no progress bars inside executed notebooks) and quiet
transformers logging; papermill's own bar (cells per notebook) stays on the terminal.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from pathlib import Path

from .paths import NOTEBOOKS_DIR, OFFLINE_VARIABLES, REPO_ROOT, hub_is_offline, results_dir
from .profiles import NOTEBOOKS, get_profile, notebook_grid, notebook_name

KERNEL = "python3"
START_TIMEOUT_S = 180
#: Environment of every notebook kernel (papermill starts kernels with the caller's environment).
KERNEL_ENVIRONMENT = {"TQDM_DISABLE": "1", "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false",
                      "PYTHONWARNINGS": "ignore"}
_SUMMARY = re.compile(r"grid: \d+ runs: .*")


@contextlib.contextmanager
def kernel_environment(extra: dict[str, str]):
    """Set ``extra`` in ``os.environ`` for the kernels started inside; restore afterwards."""
    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def executed_dir(profile: str) -> Path:
    """Where executed copies of the notebooks go: ``results/<profile>/notebooks``."""
    return results_dir() / profile / "notebooks"


def select_notebooks(notebooks: list[str] | None) -> list[str]:
    return list(NOTEBOOKS) if not notebooks else [notebook_name(n) for n in notebooks]


def grid_status(notebook: str, profile: str) -> tuple[int, int]:
    """``(runs, stored)``: how many runs the notebook's grid has and how many the store already holds."""
    from .engine import ResultsStore, expand

    store = ResultsStore(results_dir() / profile)
    configs = expand(notebook_grid(notebook, profile))
    return len(configs), sum(store.is_done(config.run_hash()) for config in configs)


def grid_summaries(path: Path) -> list[str]:
    """The grid summary lines (``grid: N runs: ...``) an executed notebook printed."""
    import nbformat

    lines = []
    for cell in nbformat.read(path, as_version=4).cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                lines.extend(_SUMMARY.findall(output.get("text", "")))
    return lines


def reproduce(profile: str = "quick", notebooks: list[str] | None = None, *, output_dir: str | Path | None = None,
              cell_timeout_s: int | None = None, start_timeout_s: int = START_TIMEOUT_S, progress: bool = True) -> int:
    """Execute the notebooks (all, in order, or ``notebooks``) under ``profile``; return an exit code
    (0: every notebook ran and no run failed; 1 otherwise). Raises ``ValueError`` for unknown names."""
    import papermill

    spec = get_profile(profile)
    names = select_notebooks(notebooks)
    out = Path(output_dir) if output_dir is not None else executed_dir(profile)
    out.mkdir(parents=True, exist_ok=True)
    timeout = cell_timeout_s if cell_timeout_s is not None else spec.cell_timeout_s
    if profile == "paper" and hub_is_offline():
        print(f"superpos: profile paper loads T5 from the hub, but {'/'.join(OFFLINE_VARIABLES)} say offline; "
              "run `make reproduce PROFILE=paper OFFLINE=0` on a machine with network", file=sys.stderr)
    print(f"reproduce: profile {profile} ({spec.description}) -> {out}", flush=True)
    failures, started = [], time.perf_counter()
    with kernel_environment(KERNEL_ENVIRONMENT):
        for index, name in enumerate(names, 1):
            runs, stored = grid_status(name, profile)
            print(f"[{index}/{len(names)}] {name}: {runs} runs, {stored} in the store, {runs - stored} to train",
                  flush=True)
            target = out / f"{name}.ipynb"
            clock = time.perf_counter()
            try:
                papermill.execute_notebook(
                    str(NOTEBOOKS_DIR / f"{name}.ipynb"), str(target), parameters={"profile": profile},
                    kernel_name=KERNEL, progress_bar={"disable": not progress, "leave": True, "file": sys.stderr},
                    start_timeout=start_timeout_s, execution_timeout=timeout, cwd=str(NOTEBOOKS_DIR),
                    extra_arguments=["--IPKernelApp.log_level=ERROR"])  # no start-up chatter on the terminal
            except Exception as error:  # a failing notebook must not stop the others
                first = str(error).strip().splitlines()
                failures.append(name)
                print(f"    {name} failed: {type(error).__name__}: {first[-1] if first else ''} "
                      f"(see {target})", file=sys.stderr, flush=True)
            if target.exists():
                relative_papermill_paths(target)
            summaries = grid_summaries(target) if target.exists() else []
            for line in summaries:
                print(f"    {line}", flush=True)
                if not line.endswith(" 0 failed"):
                    failures.append(f"{name} (failed runs)")
            print(f"    {name}: {time.perf_counter() - clock:.0f} s", flush=True)
    total = time.perf_counter() - started
    print(f"reproduce: {len(names)} notebooks in {total / 60:.1f} min; executed copies in {out}; tables and "
          f"figures in {results_dir() / profile}", flush=True)
    if failures:
        print(f"reproduce: problems in {', '.join(dict.fromkeys(failures))}", file=sys.stderr)
        return 1
    return 0


def relative_papermill_paths(path: Path) -> None:
    """Papermill records absolute input/output paths; keep them relative to the repository."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    meta = notebook.metadata.get("papermill", {})
    changed = False
    for key in ("input_path", "output_path"):
        value = meta.get(key)
        if value and Path(value).is_absolute() and Path(value).is_relative_to(REPO_ROOT):
            meta[key] = str(Path(value).relative_to(REPO_ROOT))
            changed = True
    if changed:
        nbformat.write(notebook, path)
