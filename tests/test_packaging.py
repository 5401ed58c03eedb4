"""Set-up files agree with each other: pyproject is the source, environment.yml and Makefile follow it."""
from __future__ import annotations

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
    torch_pin = next(d for d in project["project"]["dependencies"] if d.startswith("torch"))
    assert torch_pin.replace(" ", "") in pip_lines


def test_ci_calls_the_readme_test_command():
    assert "make test" in (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "make test" in readme and "make reproduce" in readme
