"""Set-up files agree with each other: pyproject is the source, environment.yml and Makefile follow it."""
from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_environment_yml_parses_and_names_the_same_extras():
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_lines = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    editable = next(line for line in pip_lines if line.startswith("-e"))
    extras = set(re.search(r"\[(.*)\]", editable).group(1).split(","))
    make_extras = set(re.search(r'-e "\.\[(.*)\]"', (REPO / "Makefile").read_text()).group(1).split(","))
    assert extras == make_extras
    assert extras <= set(project["project"]["optional-dependencies"])
    # the package declares a range of torch; conda's pip step, like `make install`, pins the release inside it
    torch_range = next(d for d in project["project"]["dependencies"] if d.startswith("torch"))
    make_pin = re.search(r"pip install -q (torch==[\d.]+)", (REPO / "Makefile").read_text()).group(1)
    assert make_pin in pip_lines and torch_range != make_pin
    from packaging.specifiers import SpecifierSet

    assert make_pin.split("==")[1] in SpecifierSet(torch_range[len("torch"):])
    # conda hands these lines to pip as a requirements file, where options such as --no-deps are refused
    assert not [line for line in pip_lines if line.startswith("--")]


def test_ci_calls_the_readme_test_command():
    assert "make test" in (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "make test" in readme and "make reproduce" in readme


def test_installed_without_editable_mode_writes_results_under_the_working_directory(tmp_path):
    """A wheel install (no -e) must not put results/ inside site-packages; the library works from there."""
    import shutil
    import subprocess
    import sys

    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "superpos", source / "superpos", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(target), str(source)], check=True, capture_output=True, timeout=300)
    work = tmp_path / "work"
    work.mkdir()
    probe = ("import superpos, superpos.paths as p; from superpos.reproduce import reproduce\n"
             "print(superpos.__file__); print(p.SOURCE_CHECKOUT); print(p.results_dir()); print(p.store_dir('quick'))\n"
             "try:\n    reproduce('smoke')\nexcept ValueError as e:\n    print(e)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("SUPERPOS_RESULTS", "SUPERPOS_STORE", "PYTHONPATH")}
    env["PYTHONPATH"] = str(target)
    out = subprocess.run([sys.executable, "-c", probe], cwd=work, env=env, capture_output=True, text=True,
                         timeout=300, check=True).stdout.splitlines()
    assert out[0].startswith(str(target)) and out[1] == "False"
    assert out[2] == str(work / "results") and out[3] == str(work / "results" / "quick")
    assert "source repository" in out[4]


def test_make_targets_pass_profile_pack_and_notebooks_to_the_cli():
    import shutil
    import subprocess

    import pytest

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    alone = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}  # under `make test`
    for target, flag in (("reproduce", ""), ("report", "--from-reference"), ("reference", "--accept"),
                         ("extend", "--extend")):
        dry = subprocess.run(["make", "-n", "--no-print-directory", "-o", ".venv/.installed-stamp", target,
                              "PROFILE=cpu", "PACK=4", "NOTEBOOKS=01_method 05"],
                             cwd=REPO, env=alone, capture_output=True, text=True, check=True)
        command = next(line for line in dry.stdout.splitlines() if "-m superpos" in line)
        assert "-m superpos reproduce --profile cpu --notebook 01_method --notebook 05" in command, command
        assert flag in command and (("--pack 4" in command) == (target != "report")), command


def test_everything_the_package_imports_is_declared():
    """Every third-party module superpos imports comes from a declared dependency: the core list, or the extra
    that the feature importing it belongs to (notebooks, Ray, PEFT export)."""
    import ast
    import re
    import sys
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    name = lambda requirement: re.split(r"[<>=!~ \[]", requirement)[0].lower().replace("_", "-")  # noqa: E731
    core = {name(r) for r in project["dependencies"]}
    extras = {extra: {name(r) for r in reqs} for extra, reqs in project["optional-dependencies"].items()}
    distribution = {"sklearn": "scikit-learn", "yaml": "pyyaml", "huggingface_hub": "huggingface-hub"}
    optional = {"papermill": "notebooks", "nbformat": "notebooks", "jupyter_client": "notebooks", "ray": "ray",
                "peft": "export"}
    for path in (REPO / "superpos").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top == "superpos":
                    continue
                wanted = distribution.get(top, top).lower().replace("_", "-")
                where = extras[optional[top]] if top in optional else core
                assert wanted in where, f"{path.relative_to(REPO)} imports {top}, not declared in {optional.get(top, 'dependencies')}"
