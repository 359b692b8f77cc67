"""The one progress display of every long command (plan, eval, reproduce, maze-code, text-to-pddl, distill, train).

A command that runs for more than a few seconds shows one line per thing it counts (problems, cells, steps,
training steps): what, how many of how many, time so far, and a short free-text note (solved so far, the module
being called, the retry count). It is drawn on stderr, so stdout stays for results; on a terminal it redraws in
place, and piped (CI logs, tests) rich prints it once when it ends instead of one line per refresh.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

#: progress, plans and errors go to stderr, results (tables, listings) to stdout; piped output is not hard-wrapped
console = Console(stderr=True, soft_wrap=not sys.stderr.isatty())


class Line:
    """One counted line of the display."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress, self._task = progress, task

    def advance(self, by: int = 1, note: str | None = None) -> None:
        self._progress.update(self._task, advance=by, **({} if note is None else {"note": note}))

    def update(self, *, completed: int | None = None, total: int | None = None, note: str | None = None,
               description: str | None = None) -> None:
        changes = {k: v for k, v in (("completed", completed), ("total", total), ("description", description))
                   if v is not None}
        self._progress.update(self._task, **changes, **({} if note is None else {"note": note}))

    @property
    def completed(self) -> int:
        return int(self._progress.tasks[self._task].completed)


class Display:
    """The display of one command: lines are added as the command discovers what it counts (``reproduce``: one
    line for the cells, one for the problems of the current cell)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.lines: list[Line] = []

    def line(self, description: str, total: int | None, note: str = "") -> Line:
        return Line(self.progress, self.progress.add_task(description, total=total, note=note))

    def remove(self, line: Line) -> None:
        self.progress.remove_task(line._task)

    def print(self, *objects: object, **kwargs: object) -> None:
        """Print above the display (a plan's step, a warning), which keeps drawing below."""
        self.progress.console.print(*objects, **kwargs)

    def stop(self) -> None:
        self.progress.stop()


@contextmanager
def progress(description: str | None = None, total: int | None = None, note: str = "") -> Iterator[Display]:
    """Show the display while the block runs; with ``description``, its first line is already there
    (``display.lines[0]``)."""
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[note]}"), console=console, transient=False)
    display = Display(bar)
    if description is not None:
        display.lines.append(display.line(description, total, note))
    with bar:
        yield display
