"""What a run shows people while it works: consoles, progress, the summary table.

Bars with rate and ETA on a terminal; in a log (a file or a pipe), a plain line
per stage every half minute and tables wide enough not to break words.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text


def log_console(stderr: bool = True) -> Console:
    """Standard error (progress, summaries) or output; when it is a file or a pipe (a log),
    wide enough that tables and lines do not wrap mid-word."""
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console = Console(stderr=stderr, width=max(console.width, 160))
    return console


def progress_display(quiet: bool, console: Console) -> Progress | _LogProgress:
    """Bars on a terminal; in a log, a line every half minute; nothing with --quiet."""
    if not quiet and not console.is_terminal:
        return _LogProgress(console)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        disable=quiet,
        transient=False,
    )


class _RateColumn(ProgressColumn):
    """Rows per second since the stage started in this invocation (rows an earlier invocation
    did are left out; shards finish in bursts, so the rate is over the whole time)."""

    def render(self, task: Task) -> Text:
        done = task.completed - task.fields.get("resumed_at", 0)
        return Text(rate_text(done, task.elapsed or 0.0, task.fields.get("unit", "row")))


def rate_text(done: float, elapsed: float, unit: str = "row") -> str:
    """'3.2 rows/s', or '4.1 s/row' below one a second (`unit`: what is counted)."""
    if elapsed < 1 or done <= 0:
        return ""
    rate = done / elapsed
    return f"{rate:.1f} {unit}s/s" if rate >= 1 else f"{elapsed / done:.1f} s/{unit}"


class _LogProgress:
    """The progress interface for logs: a plain line per stage every `every_s` seconds."""

    def __init__(self, console: Console, every_s: float = 30.0):
        self.console = console
        self.every_s = every_s
        self.tasks: dict[int, dict[str, Any]] = {}

    def __enter__(self) -> _LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        for task in self.tasks.values():
            self._line(task)

    def add_task(self, description: str, total: float, completed: float = 0, **fields: Any) -> int:
        now = time.monotonic()
        task = {
            "name": description,
            "total": total,
            "completed": completed,
            "resumed_at": completed,
            "started": now,
            "printed": now,
            **fields,
        }
        self.tasks[len(self.tasks)] = task
        return len(self.tasks) - 1

    def advance(self, task_id: int, amount: float) -> None:
        self.update(task_id, advance=amount)

    def update(self, task_id: int, advance: float = 0, **fields: Any) -> None:
        task = self.tasks[task_id]
        task["completed"] += advance
        task.update(fields)
        if time.monotonic() - task["printed"] >= self.every_s:
            self._line(task)

    def _line(self, task: dict[str, Any]) -> None:
        task["printed"] = now = time.monotonic()
        elapsed = now - task["started"]
        rate = rate_text(task["completed"] - task["resumed_at"], elapsed, task.get("unit", "row"))
        status = task.get("status") or ""
        parts = [f"{task['completed']:.0f}/{task['total']:.0f}", f"{elapsed:.0f}s", rate, status]
        self.console.print(
            f"{task['name']}: " + ", ".join(p for p in parts if p), highlight=False, soft_wrap=True
        )


def print_summary(rows: Sequence[Sequence[Any]], console: Console) -> None:
    """The run's one summary table: per stage, status, rows in, kept, rejected with the top
    reasons, seconds."""
    table = Table(title="run summary", show_lines=False)
    for column in ("stage", "status", "in", "kept", "rejected", "top reasons", "seconds"):
        table.add_column(
            column, justify="right" if column in ("in", "kept", "rejected", "seconds") else "left"
        )
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    console.print(table)
