"""Progress of long work (fetch, pack, unpack, image layers) on stderr, the same way everywhere.

Work that ends within `delay` (2 s) prints nothing. After that: on a terminal one status line redrawn at
most ten times a second and ended with a newline; elsewhere (CI logs, `2> file`) a plain line every
`interval` seconds (5 s) and a last one when done, so a log shows the job is alive without drowning in
carriage returns. Only stderr is written: stdout stays the command's output (`pack -o - | …`). It is
silent when warnings are (`pixibuild -q`), and `PIXIBUILD_PROGRESS_DELAY` / `PIXIBUILD_PROGRESS_INTERVAL`
change the two times (e.g. a CI that wants a line a minute).

Inside a build graph (doit runs nodes side by side, between its own task lines) progress is always
plain lines (`lines=True`), each naming its node; work that cannot count its bytes (an image layer)
shows a heartbeat: the elapsed time, every interval.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
import time
from typing import BinaryIO, Callable, TextIO

REDRAW = 0.1
"""Seconds between two redraws of the terminal line."""


def _seconds(name: str, default: float) -> float:
    try:
        return max(0.0, float(os.environ.get(name, default)))
    except ValueError:
        return default


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f}"


class Progress:
    """Thread-safe counters of items and bytes done, shown as described in the module docstring."""

    def __init__(self, label: str, *, items: int | None = None, nbytes: int | None = None, unit: str = "packages",
                 stream: TextIO | None = None, enabled: bool | None = None, delay: float | None = None,
                 lines: bool = False, heartbeat: bool = False):
        self.label, self.items_total, self.bytes_total, self.unit = label, items, nbytes, unit
        self.items = self.bytes = 0
        self.stream = stream or sys.stderr
        self.enabled = logging.getLogger("pixibuild").isEnabledFor(logging.WARNING) if enabled is None else enabled
        try:
            self.tty = not lines and self.stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self.delay = _seconds("PIXIBUILD_PROGRESS_DELAY", 2.0) if delay is None else delay
        self.interval = REDRAW if self.tty else _seconds("PIXIBUILD_PROGRESS_INTERVAL", 5.0)
        self.shown = False
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._last: float | None = None
        self._closed = False
        self._stop = threading.Event()
        self._beater: threading.Thread | None = None
        if heartbeat and self.enabled:
            self._beater = threading.Thread(target=self._beat, name="progress-heartbeat", daemon=True)
            self._beater.start()

    def _beat(self) -> None:
        """Draw on a clock (work that has nothing to count), until closed."""
        while not self._stop.wait(min(1.0, max(self.interval, 0.05))):
            with self._lock:
                self._maybe_draw()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(done=exc[0] is None)

    def update(self, items: int = 0, nbytes: int = 0) -> None:
        with self._lock:
            self.items += items
            self.bytes += nbytes
            self._maybe_draw()

    def text(self) -> str:
        """`label: 3/10 packages, 12.0/40.0 MB, 6.0 MB/s, 2s`: whatever is known."""
        elapsed = time.monotonic() - self._start
        parts = []
        if self.items_total is not None or self.items:
            total = f"/{self.items_total}" if self.items_total is not None else ""
            parts.append(f"{self.items}{total} {self.unit}")
        if self.bytes_total or self.bytes:
            total = f"/{_mb(self.bytes_total)}" if self.bytes_total else ""
            parts.append(f"{_mb(min(self.bytes, self.bytes_total) if self.bytes_total else self.bytes)}{total} MB")
            if elapsed >= 0.5:  # a rate over a few milliseconds says nothing
                parts.append(f"{_mb(int(self.bytes / elapsed))} MB/s")
        parts.append(f"{elapsed:.0f}s")
        return f"{self.label}: {', '.join(parts)}"

    def _maybe_draw(self) -> None:
        if not self.enabled or self._closed:
            return
        now = time.monotonic()
        if now - self._start < self.delay:
            return
        if self._last is not None and now - self._last < self.interval:
            return
        self._last = now
        self._write(self.text())

    def _write(self, line: str, *, final: bool = False) -> None:
        try:
            if self.tty:
                self.stream.write(f"\r{line}\x1b[K" + ("\n" if final else ""))
            else:
                self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # stderr gone: progress is not worth failing the work for
            self.enabled = False
        self.shown = True

    def close(self, done: bool = True) -> None:
        """End the line on a terminal; in a log, say it finished — only if anything was shown."""
        self._stop.set()
        if self._beater is not None and self._beater is not threading.current_thread():
            # gone before the next node starts: an unpack node forks its second linker only when it is
            # the process's one thread (install/forked.py)
            self._beater.join()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.enabled and self.shown:
                self._write(self.text() + (", done" if done else ", stopped"), final=True)


class CountingWriter:
    """A binary stream wrapper that reports every write's size to a `Progress`."""

    def __init__(self, out: BinaryIO, progress: Progress):
        self._out, self._progress = out, progress

    def write(self, data: bytes) -> int:
        written = self._out.write(data)
        self._progress.update(nbytes=len(data))
        return written if written is not None else len(data)

    def flush(self) -> None:
        self._out.flush()


class CountingReader(io.RawIOBase):
    """A raw binary stream over `inner` that reports every read's size to a `Progress` (seeks pass through);
    wrap it in `io.BufferedReader` like any raw stream."""

    def __init__(self, inner: BinaryIO, progress: Progress):
        self._inner, self._progress = inner, progress

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._inner.seekable()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        self._progress.update(nbytes=len(data))
        return len(data)

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            super().close()


def counting_opener(opener: Callable[[], BinaryIO], progress: Progress) -> Callable[[], BinaryIO]:
    """An opener (`() -> stream`) whose streams report what is read from them."""
    def open_counted() -> BinaryIO:
        return io.BufferedReader(CountingReader(opener(), progress), 1 << 16)  # type: ignore[return-value]

    return open_counted
