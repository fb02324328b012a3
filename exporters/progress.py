"""Progress of an export: thread-safe counters, snapshots for callbacks, and a hand-written TTY bar.

Workers call ``Progress.add_bytes``/``item_done``; whoever wants to show progress passes a
callback taking a ``Snapshot`` (the Python API) or uses ``ProgressBar`` (the CLI, on a TTY only,
on stderr, redrawn at most ``REDRAW_HZ`` times a second).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

REDRAW_HZ = 8.0
_BAR_WIDTH = 24


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Where an export stands."""

    items_done: int
    items_total: int
    failed: int
    bytes_done: int
    elapsed: float

    @property
    def rate(self) -> float:
        """Bytes per second so far."""
        return self.bytes_done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left, from the item rate so far (None until something finished)."""
        done = self.items_done + self.failed
        if done == 0 or self.elapsed <= 0:
            return None
        return (self.items_total - done) * self.elapsed / done


ProgressCallback = Callable[[Snapshot], None]


class Progress:
    """Counters shared by the workers; calls ``callback`` (if any) on every change, throttled by it."""

    def __init__(self, items_total: int, callback: ProgressCallback | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()  # guards the counters
        self._clock = clock
        self._start = clock()
        self._total, self._done, self._failed, self._bytes = items_total, 0, 0, 0
        self._callback = callback

    def add_bytes(self, n: int) -> None:
        with self._lock:
            self._bytes += n
        self._notify()

    def item_done(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self._done += 1
            else:
                self._failed += 1
        self._notify()

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(self._done, self._total, self._failed, self._bytes, self._clock() - self._start)

    def _notify(self) -> None:
        if self._callback is not None:
            self._callback(self.snapshot())


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # unreachable


def human_seconds(s: float | None) -> str:
    if s is None:
        return "--:--"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def render(snap: Snapshot, width: int = _BAR_WIDTH) -> str:
    """One line: bar, items, bytes, rate, ETA."""
    done = snap.items_done + snap.failed
    frac = done / snap.items_total if snap.items_total else 1.0
    filled = int(frac * width)
    bar = "#" * filled + "-" * (width - filled)
    failed = f", {snap.failed} failed" if snap.failed else ""
    return f"[{bar}] {done}/{snap.items_total} items{failed}  {human_bytes(snap.bytes_done)}  {human_bytes(snap.rate)}/s  ETA {human_seconds(snap.eta)}"


class ProgressBar:
    """A callback drawing ``render`` on a terminal, rewriting one line; ``finish`` ends the line."""

    def __init__(self, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream or sys.stderr
        self._clock = clock
        self._last = 0.0
        self._lock = threading.Lock()  # one writer at a time
        self._drawn = False

    def __call__(self, snap: Snapshot) -> None:
        now = self._clock()
        final = snap.items_done + snap.failed >= snap.items_total
        with self._lock:
            if not final and now - self._last < 1.0 / REDRAW_HZ:
                return
            self._last = now
            self._stream.write("\r" + render(snap) + "\x1b[K")
            self._stream.flush()
            self._drawn = True

    def finish(self) -> None:
        with self._lock:
            if self._drawn:
                self._stream.write("\n")
                self._stream.flush()
                self._drawn = False


def wants_bar(stream: TextIO, quiet: bool) -> bool:
    """A bar only on an interactive terminal, and not when asked to be quiet."""
    return not quiet and hasattr(stream, "isatty") and stream.isatty()
