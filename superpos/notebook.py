"""What a notebook checks of the parameters it was given, before anything runs.

papermill injects parameters as a cell of assignments (``# Parameters`` …) after the notebook's own
``parameters`` cell; a misspelled name (``-p profle smoke``) gives only papermill's warning, and ``-p`` passes
text (``-p lenient false`` is the string ``"false"``, which is true). :func:`check_parameters`, called in the
cell after them, compares the injected names with the ones the notebook declares and their values with the
declared types, and refuses a mismatch in one line.
"""
from __future__ import annotations

import ast
from collections.abc import Mapping

INJECTED_MARKER = "# Parameters\n"  # papermill's first line of the cell it injects


def _assigned(source: str, annotated: bool) -> dict[str, str]:
    """``{name: annotation text}`` of the top-level (annotated) assignments in ``source``."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    names = {}
    for node in tree.body:
        if annotated and isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = ast.unparse(node.annotation)
        elif not annotated and isinstance(node, ast.Assign):
            names.update({target.id: "" for target in node.targets if isinstance(target, ast.Name)})
    return names


def _fits(value, annotation: str) -> bool:
    """Whether ``value`` has the declared type (the types notebook parameters use)."""
    optional = annotation.startswith("Optional[")
    if optional:
        if value is None:
            return True
        annotation = annotation[len("Optional["):-1]
    if annotation == "bool":
        return isinstance(value, bool)
    if annotation == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation == "str":
        return isinstance(value, str)
    if annotation.startswith("list["):
        item = annotation[len("list["):-1]
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    return True


def check_parameters(namespace: Mapping) -> None:
    """Refuse, in one line, parameters papermill injected that the notebook does not declare, or whose value is
    not of the declared type. ``namespace`` is the notebook's ``globals()`` (outside IPython: nothing to check)."""
    history = namespace.get("In") or []
    declared = next((names for source in history if (names := _assigned(source, annotated=True))), {})
    injected = {name for source in history if source.startswith(INJECTED_MARKER)
                for name in _assigned(source, annotated=False)}
    unknown = sorted(injected - set(declared))
    if unknown:
        import difflib

        hints = [f"{name} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(name, declared, 1)) else name
                 for name in unknown]
        raise ValueError(f"notebook parameters: unknown parameter(s) {', '.join(hints)}; this notebook declares "
                         f"{', '.join(declared)}")
    for name in sorted(injected):
        value, annotation = namespace.get(name), declared[name]
        if not _fits(value, annotation):
            hint = (" (papermill's -p passes text: use -y for YAML values, e.g. -y \"" + name + ": "
                    + ("false" if "bool" in annotation else "[...]") + "\")") if isinstance(value, str) else ""
            raise ValueError(f"notebook parameters: {name} must be {annotation}, got {value!r}{hint}")


__all__ = ["check_parameters"]
