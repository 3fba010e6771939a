"""What a graph run did, in one line at its end (and as JSON for scripts).

    pixibuild: 58 nodes: 3 local hits, 17 remote hits, 36 built (fetch 12, index 5, …), 2 checked; remote cache
    oci://host/org/cache (readwrite): 35 uploads, 0.1 MB downloaded, 3.4 MB uploaded; 14 layers compressed

- local hits: nodes already up to date here (content-key stamp and outputs present);
- remote hits: nodes whose result came from the remote cache (a pulled entry, or a fetch node whose package
  the cache had by its sha256);
- built: nodes whose action ran here (a fetch from a channel counts as built), by kind;
- checked: lock and verify nodes, which check inputs and produce nothing;
- uploads and bytes: the remote cache's traffic; layers compressed: image layers tarred and gzipped here.

`pixibuild -v build` (or `PIXIBUILD_VERBOSE=1 doit`) adds one line per node saying where it came from;
`PIXIBUILD_SUMMARY_JSON=FILE` writes the same numbers (and every node's outcome) as JSON.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping

CHECK_KINDS = ("lock", "verify")
OUTCOMES = ("local", "remote", "built", "checked")


@dataclass
class RunStats:
    """Node outcomes of one run (thread-safe). A node's first "remote" outcome is kept: doit reports the
    node as up to date after its pull task restored it."""

    outcomes: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, name: str, kind: str, outcome: str) -> None:
        if outcome == "built" and kind in CHECK_KINDS:
            outcome = "checked"
        with self._lock:
            if self.outcomes.get(name) == "remote" and outcome == "local":
                return
            self.outcomes[name] = outcome
            self.kinds[name] = kind

    def reset(self) -> None:
        with self._lock:
            self.outcomes.clear()
            self.kinds.clear()

    def counts(self) -> dict[str, Any]:
        with self._lock:
            totals = Counter(self.outcomes.values())
            built = Counter(self.kinds[n] for n, o in self.outcomes.items() if o == "built")
            return {"nodes": len(self.outcomes), **{o: totals.get(o, 0) for o in OUTCOMES},
                    "built_by_kind": dict(sorted(built.items())), "outcomes": dict(sorted(self.outcomes.items()))}


RUN = RunStats()
"""The current process's run (doit runs nodes in threads of one process)."""


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def summary(stats: Mapping[str, Any], remote: Mapping[str, Any] | None, remote_name: str | None,
            remote_mode: str | None, layers_compressed: int) -> str:
    """The one line (see the module docstring); `stats` is `RunStats.counts()`, `remote` the cache's
    `RemoteStats.as_dict()` (None without a remote cache)."""
    by_kind = ", ".join(f"{k} {n}" for k, n in stats["built_by_kind"].items())
    line = (f"pixibuild: {stats['nodes']} nodes: {stats['local']} local hits, {stats['remote']} remote hits, "
            f"{stats['built']} built{f' ({by_kind})' if by_kind else ''}, {stats['checked']} checked; ")
    if remote is None:
        line += "no remote cache"
    else:
        line += (f"remote cache {remote_name} ({remote_mode}): {remote['uploads']} uploads, "
                 f"{_mb(remote['downloaded'])} downloaded, {_mb(remote['uploaded'])} uploaded")
    return line + f"; {layers_compressed} layers compressed"


def as_json(stats: Mapping[str, Any], remote: Mapping[str, Any] | None, remote_name: str | None,
            remote_mode: str | None, layers_compressed: int) -> str:
    return json.dumps({**stats, "remote_cache": remote_name, "remote_mode": remote_mode, "remote_stats": remote,
                       "layers_compressed": layers_compressed}, indent=1, sort_keys=True)


_LINE = re.compile(r"pixibuild: (?P<nodes>\d+) nodes: (?P<local>\d+) local hits, (?P<remote>\d+) remote hits, "
                   r"(?P<built>\d+) built(?: \((?P<kinds>[^)]*)\))?, (?P<checked>\d+) checked; (?P<cache>.*?); "
                   r"(?P<compressed>\d+) layers compressed")


def parse_summary(text: str) -> dict[str, Any]:
    """The numbers of the last summary line in `text` (a run's stderr); ValueError when there is none."""
    matches = list(_LINE.finditer(text))
    if not matches:
        raise ValueError("no pixibuild summary line found")
    m = matches[-1]
    kinds = dict((k, int(n)) for k, n in (part.rsplit(" ", 1) for part in m["kinds"].split(", "))) if m["kinds"] else {}
    out: dict[str, Any] = {k: int(m[k]) for k in ("nodes", "local", "remote", "built", "checked", "compressed")}
    out["built_by_kind"] = kinds
    cache = re.match(r"remote cache (\S+) \((\w+)\): (\d+) uploads, ([\d.]+) MB downloaded, ([\d.]+) MB uploaded",
                     m["cache"])
    if cache:
        out.update(remote_cache=cache[1], mode=cache[2], uploads=int(cache[3]), downloaded_mb=float(cache[4]),
                   uploaded_mb=float(cache[5]))
    return out
