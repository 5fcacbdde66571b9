"""The progress of a long command on stderr: a live bar (rich) on a terminal, and plain lines, one
per tenth of the way, anywhere else (a log file, a pipe), which a bar's carriage returns would garble."""

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:,.0f} events/s")


class EventProgress:
    """A context manager and a `progress(done, total)` callable, counting events."""

    def __init__(self, what: str, stream: TextIO | None = None):
        self.what, self.stream = what, stream or sys.stderr
        self.bar: Progress | None = None
        self.shown, self.shown_tenths, self.started = -1, -1, time.monotonic()

    def __enter__(self) -> "EventProgress":
        if self.stream.isatty():
            self.bar = Progress(TextColumn(self.what), BarColumn(), MofNCompleteColumn(), _Rate(),
                                TimeRemainingColumn(), console=Console(file=self.stream))
            self.task = self.bar.add_task(self.what, total=None)
            self.bar.start()
        return self

    def __call__(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done, total=total)
            return
        tenths = 10 * done // total if total else 10
        if tenths > self.shown_tenths or (done == total != self.shown):  # the last line is the final count
            self.shown, self.shown_tenths = done, tenths
            rate = done / max(time.monotonic() - self.started, 1e-9)
            print(f"{self.what}: {done:,}/{total:,} events ({tenths * 10}%), {rate:,.0f} events/s",
                  file=self.stream, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
