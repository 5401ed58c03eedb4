"""The preflight table: its rows, problems and warnings, and the numbers as its cells write them."""
from __future__ import annotations

import dataclasses
from typing import TextIO


@dataclasses.dataclass
class Row:
    check: str
    what: str
    device: str
    status: str
    measured: str


class Report:
    """The table's rows, the problems (exit 1) and the warnings (printed, exit unchanged)."""

    def __init__(self):
        self.rows: list[Row] = []
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def add(self, check: str, what: str, device: str, status: str, measured: str) -> None:
        self.rows.append(Row(check, what, device, status, measured))

    def render(self, out: TextIO, header: str) -> None:
        print(header, file=out)
        if self.rows:
            head = Row("check", "what", "device", "status", "measured")
            rows = [head, *self.rows]
            widths = [max(len(getattr(row, field)) for row in rows) for field in ("check", "what", "device", "status")]
            for row in rows:
                cells = [getattr(row, field).ljust(width)
                         for field, width in zip(("check", "what", "device", "status"), widths)]
                print("  ".join([*cells, row.measured]).rstrip(), file=out)
        for line in self.warnings:
            print(f"warning: {line}", file=out)
        for line in self.problems:
            print(f"problem: {line}", file=out)
        count = len(self.problems)
        verdict = "all checks passed" if not count else \
            f"{count} problem{'s' if count > 1 else ''}: fix {'them' if count > 1 else 'it'} before the run"
        print(f"preflight: {verdict}", file=out)


def first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


def size_text(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError


def duration_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:,.1f} h"


def hours_text(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:,.0f}" if hours >= 100 else f"{hours:.1f}" if hours >= 1 else f"{hours:.2g}"
