"""The backbones, methods and tasks a user can name, for ``list`` and the end of ``--help``.

The backbone and method registries live in modules that import torch (seconds), which ``--help`` should not wait
for: until those modules are loaded, their names and descriptions are read from the registries' source, without
running it. Once loaded (always, for ``list``), the registries themselves are read, so a method registered in
this process shows too.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
#: (module, its file, the registry's name in it)
BACKBONES_SOURCE = ("superpos.backbones.names", PACKAGE / "backbones" / "names.py", "BACKBONES")
METHODS_SOURCE = ("superpos.methods", PACKAGE / "methods" / "__init__.py", "METHODS")


def _literal_dict(path: Path, name: str) -> dict[str, ast.expr]:
    """The dict literal assigned to ``name`` at the top level of ``path``: ``{key: value node}``."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.AnnAssign):
            target = node.target
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        else:
            continue
        if isinstance(target, ast.Name) and target.id == name and isinstance(node.value, ast.Dict):
            return {ast.literal_eval(key): value for key, value in zip(node.value.keys, node.value.values)}
    raise LookupError(f"{path}: no dict literal {name}")


def static_backbones() -> dict[str, str]:
    """``{name: description}`` of the registered backbones, from the source of ``superpos/backbones/names.py``."""
    return {name: ast.literal_eval(value) for name, value in _literal_dict(*BACKBONES_SOURCE[1:]).items()}


def static_methods() -> dict[str, str]:
    """``{name: description}`` of the built-in methods, from the source of ``superpos/methods/__init__.py``
    (each entry is ``MethodSpec(config class, method class, description, label=..., ...)``)."""
    return {name: ast.literal_eval(_description(value)) for name, value in _literal_dict(*METHODS_SOURCE[1:]).items()}


def _description(spec: ast.expr) -> ast.expr:
    """The description argument of a ``MethodSpec(...)`` call: its third positional one, or ``description=``."""
    if not isinstance(spec, ast.Call):
        raise ValueError(f"not a MethodSpec(...) call: {ast.dump(spec)[:80]}")
    keywords = {keyword.arg: keyword.value for keyword in spec.keywords}
    return spec.args[2] if len(spec.args) > 2 else keywords["description"]


def backbones() -> dict[str, str]:
    if BACKBONES_SOURCE[0] not in sys.modules:
        try:
            return static_backbones()
        except (OSError, SyntaxError, ValueError, LookupError, AttributeError):  # the source moved: import it
            pass
    from ..backbones import BACKBONES

    return dict(BACKBONES)


def methods() -> dict[str, str]:
    if METHODS_SOURCE[0] not in sys.modules:
        try:
            return static_methods()
        except (OSError, SyntaxError, ValueError, LookupError, AttributeError):  # the source moved: import it
            pass
    from ..methods import METHODS

    return {name: spec.description for name, spec in METHODS.items()}


def tasks() -> dict[str, str]:
    from ..tasks import TASKS  # no torch there

    return dict(TASKS)


def listing() -> str:
    """Every backbone, method and task with its one-line description, in three titled blocks."""
    lines = []
    for title, table in (("backbones", backbones()), ("methods", methods()), ("tasks", tasks())):
        lines.append(f"{title}:")
        width = max(len(name) for name in table)
        lines.extend(f"  {name:<{width}}  {description}" for name, description in table.items())
    return "\n".join(lines)
