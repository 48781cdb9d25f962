"""What the client commands print: stdout lines and listing entries (text or JSON), and transfer
progress as rich bars with rate and ETA when stderr is a terminal (nothing otherwise)."""

from __future__ import annotations

import datetime as _dt
import stat
import sys
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from pyftps.proto.listing import RemoteEntry

__all__ = ["Bar", "Display", "emit", "entry_json", "entry_line", "wants_progress"]


def emit(line: str) -> None:
    """One line on stdout; names the server sent as undecodable bytes go out as those bytes."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        sys.stdout.write(line.encode("utf-8", "surrogateescape").decode("utf-8", "replace") + "\n")
        return
    sys.stdout.flush()
    buffer.write(line.encode("utf-8", "surrogateescape") + b"\n")


def _marker(entry: RemoteEntry) -> str:
    """``d`` directory, ``-`` file, ``l`` symbolic link, ``?`` anything else."""
    if entry.is_dir:
        return "d"
    if entry.is_dir is False:
        return "-"
    return "l" if entry.facts.get("type", "").lower().startswith("os.unix=slink") else "?"


def _iso(mtime: float | None) -> str:
    """ISO 8601 UTC to the second, ``-`` when unknown."""
    if mtime is None:
        return "-"
    return _dt.datetime.fromtimestamp(mtime, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _mode(facts: dict[str, str]) -> str:
    """``rwxr-xr-x`` from the ``unix.mode`` fact, ``?????????`` without it."""
    text = facts.get("unix.mode", "")
    try:
        bits = int(text, 8)
    except ValueError:
        return "?" * 9
    return stat.filemode(bits)[1:]


def entry_line(entry: RemoteEntry, long: bool) -> str:
    """One ``ls`` line: type, [mode, permissions,] size, time, name."""
    size = "-" if entry.size is None else str(entry.size)
    head = _marker(entry)
    if long:
        head += f"{_mode(dict(entry.facts))} {entry.facts.get('perm', '-'):<8}"
    return f"{head} {size:>14} {_iso(entry.mtime):<20} {entry.name}"


def entry_json(entry: RemoteEntry) -> dict[str, Any]:
    """One ``ls --json`` object, with the raw MLSx facts."""
    kinds = {"d": "dir", "-": "file", "l": "link", "?": "other"}
    return {
        "name": entry.name,
        "type": kinds[_marker(entry)],
        "size": entry.size,
        "mtime": None if entry.mtime is None else _iso(entry.mtime),
        "mtime_epoch": entry.mtime,
        "facts": dict(entry.facts),
    }


def wants_progress(quiet: bool, stream: TextIO | None = None) -> bool:
    """Bars only when not ``--quiet`` and stderr is a terminal (scripts and logs stay clean)."""
    target = sys.stderr if stream is None else stream
    return not quiet and target is not None and target.isatty()


class Bar:
    """One file's bar, drawn from its first byte on (a refused transfer shows none); ``update`` is a
    :data:`~pyftps.client.connection.Progress` callback."""

    def __init__(self, display: Display, label: str, total: int | None, start: int) -> None:
        self._display, self._label, self._total, self._start = display, label, total, start
        self._task: TaskID | None = None
        self._last = 0

    def update(self, done: int) -> None:
        """Record that ``done`` bytes moved in this transfer (after the resume offset)."""
        progress = self._display.progress
        if progress is None:
            return
        if self._task is None:
            self._task = progress.add_task(self._label, total=self._total, completed=self._start)
        progress.update(self._task, completed=self._start + done)
        self._display.count(done - self._last)
        self._last = done

    def finish(self) -> None:
        """Remove the file's bar when an overall bar carries on (multi-file commands)."""
        self._display.remove(self._task)


class Display:
    """A rich progress display, or a silent stand-in when ``enabled`` is false (a context manager)."""

    def __init__(self, enabled: bool, console: Console | None = None) -> None:
        self.progress: Progress | None = None
        self._overall: TaskID | None = None
        if enabled:
            self.progress = Progress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=console or Console(stderr=True),
            )

    @property
    def enabled(self) -> bool:
        """Whether bars are drawn."""
        return self.progress is not None

    def __enter__(self) -> Display:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.progress is not None:
            self.progress.stop()

    def overall(self, label: str, total: int) -> None:
        """Add a bar summing every later file's bytes (for multi-file commands)."""
        if self.progress is not None and total:
            self._overall = self.progress.add_task(label, total=total)

    def bar(self, label: str, total: int | None, start: int = 0) -> Bar:
        """A bar for one transfer of ``total`` bytes (None: unknown) resuming at ``start``."""
        return Bar(self, label, total, start)

    def count(self, delta: int) -> None:
        """Move the overall bar by ``delta`` bytes."""
        if self.progress is not None and self._overall is not None:
            self.progress.advance(self._overall, delta)

    def remove(self, task: TaskID | None) -> None:
        """Drop a finished file's bar when an overall bar shows the total."""
        if self.progress is not None and task is not None and self._overall is not None:
            self.progress.remove_task(task)

    def note(self, text: str) -> None:
        """A line on stderr above the bars (only when they are shown)."""
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
