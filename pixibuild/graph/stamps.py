"""What each node last built, kept so that deciding "up to date" for thousands of nodes reads one
file per node kind instead of one file per node.

`<build>/.stamps/<kind>.log` is an append-only log of `<node name>\\t<key>` lines: the last line of a
node wins. Before a node's action starts changing its outputs, `<name>\\t-` is appended (the outputs
no longer match any key), and `<name>\\t<key>` once it succeeded; so a crash between the two leaves
the node out of date, and a key seen before (inputs reverted) never vouches for outputs a later action
replaced. A torn last line (crash mid-append) is ignored: that node reruns. The log is compacted
(rewritten with one line per node, atomically) when it grows to several times its live size.

Beside it, `<build>/.stamps/<kind>/<sha of name>.json` holds the node's inputs summary of its last
successful run, which `pixibuild plan` diffs against today's inputs to say *why* a node would run.
Appends from threads of one process and from several processes are serialised with flock; each
line is one `write` on an O_APPEND descriptor.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from pixibuild.files.atomic import atomic_write_bytes

INVALID = "-"
COMPACT_FACTOR = 4
"""Rewrite a log once it holds this many times more lines than live nodes (and > COMPACT_MIN)."""
COMPACT_MIN = 4096


def stamps_dir(build_dir: Path) -> Path:
    return Path(build_dir) / ".stamps"


def inputs_path(build_dir: Path, kind: str, name: str) -> Path:
    """Where a node's inputs summary of its last successful run is kept."""
    safe = hashlib.sha256(name.encode()).hexdigest()[:24]
    return stamps_dir(build_dir) / kind / f"{safe}.json"


def read_inputs(build_dir: Path, kind: str, name: str) -> dict[str, Any] | None:
    """The recorded summary (`{"key":…, "inputs":{…}, "where":…}`), or None (never built, or unreadable)."""
    try:
        data = json.loads(inputs_path(build_dir, kind, name).read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("name") == name else None


class StampLog:
    """The recorded keys of one node kind in one build dir (see the module docstring)."""

    def __init__(self, build_dir: Path, kind: str):
        self.path = stamps_dir(build_dir) / f"{kind}.log"
        self.keys: dict[str, str] = {}
        self._offset = 0
        self._lines = 0
        self._partial = b""
        self._inode = -1
        self._lock = threading.Lock()
        self.refresh()

    def key(self, name: str) -> str | None:
        """The key the node's current outputs were built from (None: unknown or invalidated)."""
        key = self.keys.get(name)
        return None if key in (None, INVALID) else key

    def refresh(self) -> None:
        """Read what was appended since the last read (other processes and threads write too)."""
        with self._lock:
            try:
                with open(self.path, "rb") as fh:
                    inode = os.fstat(fh.fileno()).st_ino
                    if inode != self._inode:  # first read, or compacted by someone: read it all
                        self.keys.clear()
                        self._offset, self._lines, self._partial, self._inode = 0, 0, b"", inode
                    fh.seek(self._offset)
                    data = fh.read()
            except FileNotFoundError:
                return
            self._offset += len(data)
            data = self._partial + data
            complete, _, self._partial = data.rpartition(b"\n")
            if not complete:
                return
            keys = self.keys
            for line in complete.decode("utf-8", "replace").split("\n"):
                name, sep, key = line.partition("\t")
                if sep and key and "\t" not in key:
                    keys[name] = key
                self._lines += 1

    def invalidate(self, name: str) -> None:
        """The node's outputs are about to change: no key vouches for them until `record`."""
        if self.keys.get(name, INVALID) != INVALID:
            self._append(name, INVALID)

    def record(self, name: str, key: str) -> None:
        self._append(name, key)

    def _append(self, name: str, key: str) -> None:
        if "\n" in name or "\t" in name:
            raise ValueError(f"node name with a tab or newline: {name!r}")
        line = f"{name}\t{key}\n".encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            while True:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    try:
                        if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                            continue  # compacted while we waited: append to the new file
                    except FileNotFoundError:
                        continue
                    os.write(fd, line)
                    self.keys[name] = key
                    self._lines += 1
                    if self._lines > max(COMPACT_MIN, COMPACT_FACTOR * len(self.keys)):
                        self._compact_locked()
                    return
                finally:
                    os.close(fd)  # releases the flock

    def _compact_locked(self) -> None:
        """Rewrite the log with one line per node (caller holds the flock and self._lock)."""
        with open(self.path, "rb") as fh:
            data = fh.read()
        keys: dict[str, str] = {}
        for line in data.decode("utf-8", "replace").split("\n")[:-1]:
            name, sep, key = line.partition("\t")
            if sep and key:
                keys[name] = key
        body = "".join(f"{n}\t{k}\n" for n, k in keys.items() if k != INVALID).encode()
        atomic_write_bytes(self.path, body, fsync=False)
        self.keys = {n: k for n, k in keys.items() if k != INVALID}
        self._offset, self._lines, self._partial = len(body), len(self.keys), b""
        self._inode = os.stat(self.path).st_ino


class Stamps:
    """The stamp logs of a build dir, one per node kind, read on first use."""

    def __init__(self, build_dir: Path):
        self.build_dir = Path(build_dir)
        self._logs: dict[str, StampLog] = {}
        self._lock = threading.Lock()

    def log(self, kind: str) -> StampLog:
        with self._lock:
            log = self._logs.get(kind)
            if log is None:
                log = self._logs[kind] = StampLog(self.build_dir, kind)
            return log

    def recorded(self, kind: str, name: str) -> str | None:
        return self.log(kind).key(name)

    def write_inputs(self, kind: str, name: str, key: str, inputs: dict[str, Any] | None, where: str = "") -> None:
        """Keep the inputs summary of a successful run (small JSON; for `pixibuild plan`)."""
        if inputs is None:
            return
        body = json.dumps({"name": name, "key": key, "where": where, "inputs": inputs},
                          sort_keys=True, separators=(",", ":"), default=str).encode()
        atomic_write_bytes(inputs_path(self.build_dir, kind, name), body, fsync=False)
