"""What a build would run, and why, at package level — without running or writing anything.

A node runs when it is not up to date (graph/plan.is_up_to_date), and then so may its inputs;
an up-to-date node's inputs are not looked at (the build does not schedule them either). For each
node that would run, the reason is read from what the stamps kept of its last successful run
(graph/stamps.py: its key and a summary of its inputs) against today's inputs:

- `1 of 212 inputs changed: numpy-1.26.3-….conda → numpy-1.26.4-….conda (sha256 changed in
  apps/api/pixi.lock, env prod, linux-64)` — a bumped package, an edited `[tool.pixibuild]`
  (`image settings changed`), a changed base image or app files, a new pixibuild;
- `output deleted: build/…/environment.tar`, `not in the store`, `layer missing from the layer cache`;
- a node never built (a new layer, a new package) is compared with what the nodes that use it were
  last built from: `new package (sha256 changed in …)`;
- `its last run did not finish`, `broken project: <error>`.

Bytes to download are the lock's sizes of the packages not in the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from pixibuild.graph.plan import BuildGraph, Node, Workspace, is_up_to_date
from pixibuild.graph.stamps import INVALID, read_inputs

OUTPUT_KINDS = ("pack", "image", "unpack")


@dataclass
class Change:
    """One named input that differs from the node's last successful run."""

    input: str
    old: Any
    new: Any
    reason: str


@dataclass
class Step:
    """A node that would run."""

    name: str
    kind: str
    reasons: list[str]
    changes: list[Change] = field(default_factory=list)
    inputs: int = 0
    """How many named inputs the node has (for `N of M inputs changed`)."""
    download: int | None = None
    """Bytes a fetch node would download (None: the lock gives no size)."""
    packages: list[str] = field(default_factory=list)
    """For a layer: its packages (the node's name is a hash)."""

    @property
    def summary(self) -> str:
        return "; ".join(self.reasons)

    @property
    def title(self) -> str:
        return f"{self.name} ({', '.join(self.packages)})" if self.packages else self.name


@dataclass
class Plan:
    steps: list[Step]
    up_to_date: list[str]
    """Nodes looked at and found up to date (their inputs were not looked at)."""
    targets: list[str]

    @property
    def download_bytes(self) -> int:
        return sum(s.download or 0 for s in self.steps if s.kind == "fetch")

    @property
    def downloads(self) -> int:
        return sum(1 for s in self.steps if s.kind == "fetch")


def select(graph: BuildGraph, names: Iterable[str] = ()) -> list[str]:
    """The nodes a build of `names` starts from: task names, or kinds (`pack` = every pack node); by
    default every output node of a healthy project (what a bare `doit` builds). A name that is
    neither is a KeyError naming it."""
    names = list(names)
    if not names:
        return sorted(n.name for n in graph.nodes() if n.kind in OUTPUT_KINDS and not n.broken)
    out: list[str] = []
    for name in names:
        if graph.has(name):
            out.append(name)
            continue
        of_kind = sorted(n.name for n in graph.nodes(name))
        if not of_kind:
            raise KeyError(name)
        out += of_kind
    return list(dict.fromkeys(out))


def explain(ws: Workspace, graph: BuildGraph, names: Iterable[str] = ()) -> Plan:
    """The nodes a build of `names` would run, in an order a build could run them, with reasons."""
    targets = select(graph, names)
    steps: list[Step] = []
    current: list[str] = []
    seen: set[str] = set()
    dependents: dict[str, list[str]] = {}
    for node in graph.nodes():
        for dep in node.all_deps:
            dependents.setdefault(dep, []).append(node.name)

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        node = graph.node(name)
        if not node.broken and is_up_to_date(ws, node):
            current.append(name)
            return
        for dep in node.all_deps:
            visit(dep)
        steps.append(_step(ws, graph, node, dependents))

    for name in targets:
        visit(name)
    return Plan(steps, current, targets)


def _step(ws: Workspace, graph: BuildGraph, node: Node, dependents: dict[str, list[str]]) -> Step:
    if node.broken:
        return Step(node.name, node.kind, [f"broken project: {node.broken}"])
    full = node.full()
    inputs = full.input_values() or {}
    step = Step(node.name, node.kind, [], inputs=len(inputs))
    if node.kind == "layer":
        step.packages = [_package(v)[0].removesuffix(".conda").removesuffix(".tar.bz2")
                         for k, v in sorted(inputs.items()) if k.startswith("conda:")]
    if node.kind == "fetch":
        step.download = inputs.get("size")
    recorded = ws.stamps.log(node.kind).keys.get(node.name)
    if recorded == node.key:  # same inputs: something it made is gone
        missing = [str(p) for p in node.outputs if not p.exists()]
        step.reasons += [f"output deleted: {p}" for p in missing]
        if not missing:
            step.reasons.append(_missing_elsewhere(node))
        return step
    if recorded == INVALID:
        step.reasons.append("its last run did not finish (failed or interrupted)")
    previous = read_inputs(ws.build_dir, node.kind, node.name) if full.keep_inputs else None
    if previous is not None and previous.get("key") != node.key:
        _diff(step, previous.get("inputs") or {}, inputs, full.where)
    elif recorded is None and previous is None:
        _new(step, ws, graph, full, dependents)
    if not step.reasons:
        step.reasons.append("inputs changed (no record of what it was built from: built by an older "
                            "pixibuild, or its record was removed)")
    return step


def _missing_elsewhere(node: Node) -> str:
    if node.kind in ("fetch", "verify"):
        return "not in the store (its blob was removed)"
    if node.kind == "layer":
        return "layer missing from the layer cache"
    return "an output it keeps outside the build dir is missing"


def _package(value: Any) -> tuple[str, str, str]:
    """(file, sha256, record digest) of a `conda:`/`pypi:` input value."""
    parts = str(value).split(" ")
    file = parts[0]
    sha = next((p[7:] for p in parts if p.startswith("sha256:")), "")
    rec = next((p[4:] for p in parts if p.startswith("rec:")), "")
    return file, sha, rec


def _package_change(key: str, old: Any, new: Any, where: str) -> str:
    """`numpy-1.26.3….conda → numpy-1.26.4….conda (sha256 changed in apps/api/pixi.lock, env prod, linux-64)`."""
    if old is None:
        return f"new package {_package(new)[0]}{f' (in {where})' if where else ''}"
    if new is None:
        return f"{_package(old)[0]} removed{f' (from {where})' if where else ''}"
    old_file, new_file = _package(old)[0], _package(new)[0]
    what = f"{old_file} → {new_file}" if old_file != new_file else new_file
    return f"{what} ({_what_changed(old, new, where)})"


def _what_changed(old: Any, new: Any, where: str) -> str:
    (_, old_sha, _), (_, new_sha, _) = _package(old), _package(new)
    place = f" in {where}" if where else ""
    return f"sha256 changed{place}" if old_sha != new_sha else f"lock record changed, same file{place}"


_WORDS = {
    "settings": "image settings changed ([tool.pixibuild] edited)",
    "base": "base image changed",
    "app files": "app files changed (the image's `include`)",
    "lock": "pixi.lock changed",
}


def _change_reason(key: str, old: Any, new: Any, where: str) -> str:
    kind = key.split(":", 1)[0]
    if kind in ("conda", "pypi"):
        return _package_change(key, old, new, where)
    if kind == "wheel":
        return f"the wheel of {key.split(':', 1)[1]} changed (its sources or build environment)"
    if kind == "layer":
        return f"layer {key.split(':', 1)[1]} {'added' if old is None else 'removed' if new is None else 'changed'}"
    if kind == "manifest":
        env_platform = key.split(":", 1)[1].replace(":", ", ")
        return f"manifest changed for {env_platform} (dependencies, channels or [tool.pixibuild])"
    if key in _WORDS:
        return _WORDS[key]
    return f"{key} changed: {old!r} → {new!r}"


def _diff(step: Step, old: dict[str, Any], new: dict[str, Any], where: str) -> None:
    keys = sorted(set(old) | set(new))
    for key in keys:
        if old.get(key) != new.get(key):
            step.changes.append(Change(key, old.get(key), new.get(key), _change_reason(key, old.get(key),
                                                                                      new.get(key), where)))
    if not step.changes:
        step.reasons.append("same inputs, another pixibuild version (or graph format)")
        return
    # layers and packages tell the same story for an image: packages first, layers only when alone
    packages = [c for c in step.changes if not c.input.startswith("layer:")]
    shown = packages or step.changes
    head = [c.reason for c in shown[:3]]
    more = len(shown) - len(head)
    step.reasons.append(f"{len(step.changes)} of {max(len(new), len(old))} inputs changed: " + "; ".join(head)
                        + (f"; and {more} more" if more else ""))


def _new(step: Step, ws: Workspace, graph: BuildGraph, node: Node, dependents: dict[str, list[str]]) -> None:
    """A node never built: say what is new about its packages, judged by what the nodes that use it
    were last built from (a new layer after a bump: `new package (sha256 changed in …)`)."""
    inputs = node.input_values() or {}
    if node.kind in ("fetch", "verify"):
        size = inputs.get("size")
        step.reasons.append(f"not in the store: {inputs.get('file', node.name)}"
                            + (f" ({size:,} bytes)" if isinstance(size, int) else ""))
        return
    packages = {k: v for k, v in inputs.items() if k.startswith(("conda:", "pypi:"))}
    before: dict[str, Any] | None = None
    for user in dependents.get(node.name, ()):
        kind = graph.node(user).kind
        recorded = read_inputs(ws.build_dir, kind, user)
        if recorded is not None:
            before = recorded.get("inputs") or {}
            break
    if not packages or before is None:
        step.reasons.append("never built")
        return
    changed = [(k, before.get(k), v) for k, v in sorted(packages.items()) if before.get(k) != v]
    if not changed:
        step.reasons.append("new grouping of packages already built (layers regrouped)")
        return
    for key, old, new in changed[:3]:
        file = _package(new)[0]
        if old is None:
            step.reasons.append(f"{file}: new package{f' (in {node.where})' if node.where else ''}")
        else:
            step.reasons.append(f"{file}: new package ({_what_changed(old, new, node.where)})")
    if len(changed) > 3:
        step.reasons.append(f"and {len(changed) - 3} more new packages")
