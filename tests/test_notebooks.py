"""The notebooks: structure, a smoke execution of all of them, and nbval on the committed quick outputs.

- ``notebooks/*.ipynb`` are clean, parameterized sources: one ``parameters`` cell, no ``def``, kernel
  ``python3``, no outputs.
- Every notebook runs through papermill with the ``smoke`` profile (tiny random T5, seconds per run), into a
  temporary results folder (``SUPERPOS_RESULTS``), so nothing lands in the repository.
- ``results/quick/notebooks/*.ipynb`` are the executed copies ``make reproduce`` wrote (profile ``quick``),
  committed with the reference records they read (``results/quick/reference``). nbval re-executes them on a
  copy of that reference: every run is served from it, so nothing trains, and what the notebooks show must be
  what the records say.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from superpos import profiles
from superpos.paths import NOTEBOOKS_DIR, REPO_ROOT

NOTEBOOK_FILES = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
QUICK = REPO_ROOT / "results" / "quick"
EXECUTED = sorted((QUICK / "notebooks").glob("*.ipynb"))
SANITIZE = NOTEBOOKS_DIR / "nbval_sanitize.cfg"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def parameters_cells(notebook):
    return [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]


# ----------------------------------------------------------------------------- structure
def test_every_notebook_exists():
    assert [path.stem for path in NOTEBOOK_FILES] == list(profiles.NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_notebook_structure(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    assert len(parameters_cells(notebook)) == 1
    for cell in code_cells(notebook):
        assert "def " not in cell.source, "no function definitions in notebooks: shared logic lives in superpos.report"
        assert "class " not in cell.source
        assert not cell.get("outputs") and cell.get("execution_count") is None, "sources are committed without outputs"
    assert f'notebook_grid("{path.stem}"' in "".join(c.source for c in code_cells(notebook))
    assert "run_grid(" in "".join(c.source for c in code_cells(notebook))
    assert "load_records(" in "".join(c.source for c in code_cells(notebook))
    assert notebook.cells[0].cell_type == "markdown"


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_parameters_are_documented_for_papermill(path):
    from papermill import inspect_notebook

    parameters = inspect_notebook(str(path))
    assert {"profile", "tasks", "seeds", "backbones", "lenient"} <= set(parameters)
    assert parameters["profile"]["default"] == '"quick"' and parameters["profile"]["inferred_type_name"] == "str"
    assert all(p["help"] for p in parameters.values())


def test_no_code_is_repeated_across_notebooks():
    """Beyond the shared parameters/run cells, every code cell is particular to its notebook."""
    seen: dict[str, str] = {}
    for path in NOTEBOOK_FILES:
        notebook = nbformat.read(path, as_version=4)
        for cell in code_cells(notebook)[3:]:  # parameters, setup (names the notebook), run cell
            if cell.source in seen and seen[cell.source] != path.stem:
                if cell.source.startswith("runs = load_records"):
                    continue
                pytest.fail(f"{path.stem} repeats a cell of {seen[cell.source]}: {cell.source[:60]!r}")
            seen[cell.source] = path.stem


# ----------------------------------------------------------------------------- smoke execution
@pytest.mark.slow
def test_every_notebook_runs_with_the_smoke_profile(tmp_path, monkeypatch, capsys):
    from superpos.reproduce import reproduce

    monkeypatch.setenv("SUPERPOS_RESULTS", str(tmp_path / "results"))
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    code = reproduce("smoke", progress=False)
    printed = capsys.readouterr().out
    assert code == 0, printed
    root = tmp_path / "results" / "smoke" / "fresh"  # a reproduction renders its fresh runs under fresh/
    executed = sorted((root / "notebooks").glob("*.ipynb"))
    assert [p.stem for p in executed] == list(profiles.NOTEBOOKS)
    for path in executed:
        notebook = nbformat.read(path, as_version=4)
        assert notebook.metadata["papermill"]["parameters"] == {"profile": "smoke"}
        for cell in code_cells(notebook):
            for output in cell.get("outputs", []):
                assert output["output_type"] != "error", (path.stem, output)
                text = output.get("text", "")
                assert "it/s]" not in text and "Warning" not in text, (path.stem, text[:200])
    tables = sorted(p.name for p in (root / "tables").iterdir())
    figures = sorted(p.name for p in (root / "figures").iterdir())
    assert "table1_methods_smoke.md" in tables and "table2_stability_smoke.csv" in tables
    assert "fig2d_weight_similarity_smoke.svg" in figures and "fig2c_m_ablation_smoke.png" in figures
    assert all(name.rsplit(".", 1)[0].endswith("_smoke") for name in tables + figures)
    # training happens before rendering, with its own lines on the terminal: what trains, and the comparison
    runs = profiles.get_profile("smoke").runs()
    assert f"train: {runs} runs, 0 already in" in printed
    assert f"reproduced 0/{runs} runs: 0 identical, 0 within tolerance, 0 different ({runs} no reference)" in printed


@pytest.mark.parametrize("parameters, message", [
    ({"profle": "smoke"}, "unknown parameter(s) profle (did you mean profile?)"),
    ({"profile": "smoke", "lenient": "false"}, "lenient must be bool, got 'false'"),
    ({"profile": "smoke", "seeds": 0}, "seeds must be Optional[list[int]], got 0"),
])
def test_a_notebook_refuses_parameters_it_does_not_declare_before_anything_runs(parameters, message, tmp_path,
                                                                                monkeypatch):
    import papermill

    monkeypatch.setenv("SUPERPOS_RESULTS", str(tmp_path / "results"))
    with pytest.raises(papermill.PapermillExecutionError, match=re.escape(message)):
        papermill.execute_notebook(str(NOTEBOOK_FILES[0]), str(tmp_path / "out.ipynb"), parameters=parameters,
                                   kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    assert not (tmp_path / "results").exists()  # nothing trained, nothing written


# ----------------------------------------------------------------------------- the committed quick outputs
def _quick_hashes() -> dict[str, set[str]]:
    from superpos.engine import expand

    return {name: {c.run_hash() for c in expand(profiles.notebook_grid(name, "quick"))} for name in profiles.NOTEBOOKS}


def _quick_problems() -> list[str]:
    """Why the committed quick outputs cannot be checked: missing or unfinished records, executed copies
    missing or still being written (papermill leaves ``end_time`` empty until a notebook finishes)."""
    problems = []
    records = QUICK / "reference" / "records"
    for name, hashes in _quick_hashes().items():
        missing = [h for h in hashes if not (records / f"{h}.json").exists()
                   or json.loads((records / f"{h}.json").read_text()).get("status") != "done"]
        if missing:
            problems.append(f"{name}: {len(missing)} of {len(hashes)} quick runs have no finished record")
        path = QUICK / "notebooks" / f"{name}.ipynb"
        if not path.exists():
            problems.append(f"{name}: no executed copy")
            continue
        executed = nbformat.read(path, as_version=4)
        statuses = {cell.metadata.get("papermill", {}).get("status") for cell in executed.cells}
        if executed.metadata.get("papermill", {}).get("exception") or statuses != {"completed"}:
            problems.append(f"{name}: the executed copy is unfinished or failed")
    return problems


def test_committed_quick_notebooks_match_their_records():
    """Every run a committed quick notebook's parameters ask for has a finished record in results/quick, and
    the executed copies are of the current sources with the profile quick."""
    if not EXECUTED:
        pytest.skip("results/quick/notebooks/ holds no executed notebooks yet: run `make reproduce` and commit them")
    problems = _quick_problems()
    assert not problems, "; ".join(problems) + " (run `make reproduce` to completion and commit results/quick/)"
    for path in EXECUTED:
        executed = nbformat.read(path, as_version=4)
        source = nbformat.read(NOTEBOOKS_DIR / path.name, as_version=4)
        assert executed.metadata["papermill"]["parameters"] == {"profile": "quick"}
        injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert len(injected) == 1
        assert [c.source for c in executed.cells if c not in injected] == [c.source for c in source.cells], (
            f"{path.name}: the executed copy is of an older notebook; run `make reproduce` again")


def test_committed_quick_notebooks_carry_no_timestamps():
    """Rendering the same records twice leaves git clean: no times, durations or random ids in the copies."""
    if not EXECUTED:
        pytest.skip("results/quick/notebooks/ holds no executed notebooks yet")
    for path in EXECUTED:
        text = path.read_text()
        for volatile in ('"start_time"', '"end_time"', '"duration"', '"iopub.execute_input"'):
            assert volatile not in text, f"{path.name} holds {volatile}"


def test_nbval_on_the_committed_quick_notebooks(tmp_path):
    """nbval re-executes results/quick/notebooks/*.ipynb on a copy of the reference records (nothing trains)."""
    if not EXECUTED:
        pytest.skip("results/quick/notebooks/ holds no executed notebooks yet: run `make reproduce` and commit them")
    problems = _quick_problems()
    if problems:  # re-executing now would train the missing runs (or race a running `make reproduce`)
        pytest.fail("nbval not started: " + "; ".join(problems) + " (run `make reproduce` to completion first)")
    import shutil

    store = tmp_path / "store"
    shutil.copytree(QUICK / "reference", store)
    env = {**os.environ, **OFFLINE, "TQDM_DISABLE": "1", "TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore",
           "SUPERPOS_STORE": str(store), "SUPERPOS_RESULTS": str(tmp_path / "results")}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", str(QUICK / "notebooks"),
               "--nbval-sanitize-with", str(SANITIZE), "--nbval-cell-timeout", "600",
               "--nbval-kernel-name", "python3", "--rootdir", str(REPO_ROOT), "-o", "addopts=", "-o", "testpaths="]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
