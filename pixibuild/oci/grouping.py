"""Packages → at most N layers, a pure function of the package set and its dependency graph.

The rule (chosen so that layers are shared between images and stay stable as envs change):

1. If the packages fit (count ≤ budget), every package is its own layer. Its layer depends only
   on that package, so it is shared by every image that contains the package.
2. Otherwise rank packages by *popularity*: how many packages of the environment depend on it,
   directly or transitively (networkx ancestors in the `depends` graph), ties by name. The
   `budget - B` most popular packages (libc-, openssl-, python-like foundations, i.e. what other
   images most likely contain too) keep their own layers; the rest are spread over B = max(1,
   budget // 4) shared layers by a hash of the package name, so each of these depends only on
   the packages that hash into it.

Stability: adding a leaf package (nothing depends on it) adds exactly one layer in case 1; in
case 2 it changes only the bucket layer it hashes into, as long as the set of single-package
layers does not change — which holds whenever its dependencies are all single-layer packages
(a dependency is always at least as popular as its dependent). Crossing the budget (case 1 → 2)
regroups by design. Layers are ordered most popular first (base-most), buckets last.
"""

from __future__ import annotations

import hashlib
import re
from typing import Sequence

import networkx as nx

from pixibuild.conda.records import CondaRecord
from pixibuild.errors import InputError

DEFAULT_MAX_LAYERS = 100
"""Total layers an image may have (incl. base and env/app layers): under Docker's ~125 and overlayfs' 128."""


_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def _dep_name(spec: str) -> str:
    """Package name of a MatchSpec: "python >=3.8", "python>=3.8", "conda-forge::numpy 1.*" → name."""
    spec = spec.strip().split("::", 1)[-1]
    match = _NAME.match(spec)
    return match.group(0).lower() if match else ""


def dependency_graph(records: Sequence[CondaRecord]) -> nx.DiGraph:
    """Edge a → b when package a depends on package b (by name, within this package set)."""
    graph = nx.DiGraph()
    names = {r.name.lower() for r in records}
    for record in records:
        graph.add_node(record.name.lower())
        for spec in record.depends:
            dep = _dep_name(spec)
            if dep in names and dep != record.name.lower():
                graph.add_edge(record.name.lower(), dep)
    return graph


def popularity(graph: nx.DiGraph) -> dict[str, int]:
    """Number of packages that depend on each package, transitively."""
    return {node: len(nx.ancestors(graph, node)) for node in graph.nodes}


def _bucket(name: str, buckets: int) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % buckets


def group_packages(records: Sequence[CondaRecord], budget: int) -> list[list[CondaRecord]]:
    """Partition `records` into at most `budget` layers by the rule in the module docstring."""
    if budget < 1:
        raise InputError(f"the package layer budget must be at least 1, got {budget}", field="max-layers")
    by_name: dict[str, CondaRecord] = {}
    for record in records:
        key = record.name.lower()
        if key in by_name:
            raise InputError(f"package {record.name} appears twice in one environment")
        by_name[key] = record
    graph = dependency_graph(records)
    pop = popularity(graph)
    ranked = sorted(by_name, key=lambda n: (-pop[n], n))
    if len(ranked) <= budget:
        return [[by_name[n]] for n in ranked]
    buckets = max(1, budget // 4)
    singles = ranked[: budget - buckets]
    groups: list[list[str]] = [[] for _ in range(buckets)]
    for name in ranked[budget - buckets:]:
        groups[_bucket(name, buckets)].append(name)
    return [[by_name[n]] for n in singles] + [[by_name[n] for n in sorted(g)] for g in groups if g]


def layer_key(group: Sequence[CondaRecord], target_prefix: str) -> str:
    """Cache key of a package layer: member package hashes and the prefix they are installed at."""
    members = sorted(f"{r.name}={r.sha256 or r.md5 or r.url}" for r in group)
    return f"conda-packages\0{target_prefix}\0" + "\0".join(members)
