"""Shared helpers for the benchmarks: goals, a plain-text result table, JSON output, timing and memory probes.

Not a benchmark itself (`make bench` runs every bench/*.py: running this file does nothing).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

COLUMNS = ("measure", "measured", "baseline", "ratio", "goal", "met?")


@dataclass(frozen=True)
class Goal:
    """A target for a ratio: `op` is "<=" or ">="; `text` is how the table shows it."""

    op: str
    value: float

    def met(self, ratio: float | None) -> bool | None:
        if ratio is None or math.isnan(ratio):
            return None
        return ratio <= self.value if self.op == "<=" else ratio >= self.value

    def __str__(self) -> str:
        return f"{'≤' if self.op == '<=' else '≥'} {fmt_number(self.value)}"


@dataclass(frozen=True)
class Line:
    """One row of the result table. `goal=None` means the line is informative only."""

    measure: str
    engine: str
    baseline: str = ""
    ratio: float | None = None
    goal: Goal | None = None

    @property
    def met(self) -> bool | None:
        return self.goal.met(self.ratio) if self.goal else None

    def cells(self) -> list[str]:
        met = {True: "yes", False: "NO: goal missed", None: ""}[self.met]
        ratio = "" if self.ratio is None else f"{fmt_number(self.ratio)}×"
        return [self.measure, self.engine, self.baseline, ratio, str(self.goal or ""), met]


def fmt_number(value: float) -> str:
    """3 significant digits, thousands separated: 0.0123, 1.23, 12.3, 1,234."""
    if value == 0 or math.isnan(value) or math.isinf(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{fmt_number(n / size)} {unit}"
    return f"{fmt_number(n)} B"


def fmt_seconds(s: float) -> str:
    if abs(s) >= 1:
        return f"{fmt_number(s)} s"
    if abs(s) >= 1e-3:
        return f"{fmt_number(s * 1e3)} ms"
    return f"{fmt_number(s * 1e6)} µs"


def render_table(rows: Iterable[Sequence[str]], columns: Sequence[str] = COLUMNS) -> str:
    rows = [list(map(str, r)) for r in rows]
    widths = [max(len(str(c)), *(len(r[i]) for r in rows)) if rows else len(str(c)) for i, c in enumerate(columns)]

    def line(cells):
        return "| " + " | ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(columns), rule, *(line(r) for r in rows)])


def print_results(title: str, lines: Sequence[Line], notes: Sequence[str] = (), file=None) -> None:
    """The table, its notes, then one plain verdict line ("all goals met" or which goal was missed)."""
    file = file or sys.stdout
    print(f"\n{title}\n", file=file)
    print(render_table(line.cells() for line in lines), file=file)
    for note in notes:
        print(f"  - {note}", file=file)
    missed = [line.measure for line in lines if line.met is False]
    if missed:
        print(f"\ngoal missed: {'; '.join(missed)}", file=file)
    else:
        print("\nall goals met", file=file)


def emit_json(payload: dict) -> None:
    """One JSON object, alone on stdout."""
    sys.stdout.write(json.dumps(payload, sort_keys=True) + "\n")
    sys.stdout.flush()


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def rss_bytes() -> int:
    """Current resident set size (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def subprocess_env() -> dict[str, str]:
    """The environment for a measurement subprocess: the repository root importable, nothing else changed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env
