"""Packages → at most N layers, a pure function of the package set and its dependency graph.

The rule (chosen so that layers are shared between images and stay stable as envs change):

1. If the packages fit (count ≤ budget), every package is its own layer. Its layer depends only
   on that package, so it is shared by every image that contains the package.
2. Otherwise rank packages by *popularity*: how many packages of the environment depend on it,
   directly or transitively (its ancestors in the `depends` graph), ties by name. The
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
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

from pixibuild.errors import InputError

if TYPE_CHECKING:
    from pixibuild.conda.records import CondaRecord

DEFAULT_MAX_LAYERS = 100
"""Total layers an image may have (incl. base and env/app layers): under Docker's ~125 and overlayfs' 128."""


_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def _dep_name(spec: str) -> str:
    """Package name of a MatchSpec: "python >=3.8", "python>=3.8", "conda-forge::numpy 1.*" → name."""
    spec = spec.strip().split("::", 1)[-1]
    match = _NAME.match(spec)
    return match.group(0).lower() if match else ""


def dependency_graph(records: Sequence[CondaRecord]) -> dict[str, set[str]]:
    """Package name → the names it depends on (within this package set; lower-cased)."""
    names = {r.name.lower() for r in records}
    graph: dict[str, set[str]] = {}
    for record in records:
        name = record.name.lower()
        deps = graph.setdefault(name, set())
        for spec in record.depends:
            dep = _dep_name(spec)
            if dep in names and dep != name:
                deps.add(dep)
    return graph


def popularity(graph: dict[str, set[str]]) -> dict[str, int]:
    """Number of packages that depend on each package, transitively (networkx's `ancestors`, itself
    never counted, cycles included). Plain dicts: importing networkx took 0.14–0.24 s of every image
    build's process for these ~150 nodes."""
    dependents: dict[str, list[str]] = {name: [] for name in graph}
    for name, deps in graph.items():
        for dep in deps:
            dependents[dep].append(name)
    out: dict[str, int] = {}
    for name in graph:
        seen, stack = {name}, [name]
        while stack:
            for parent in dependents[stack.pop()]:
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        out[name] = len(seen) - 1
    return out


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


# --------------------------------------------------------------------------------------------------
# Grouping chosen for a whole workspace
#
# In a monorepo many images share most packages. A layer blob is shared only when its content is:
# the same packages (same sha256s) at the same prefix for the same platform — a *domain*
# (`layer_domain`). Per-image grouping (above) ranks packages by each image's own dependency graph,
# so two images with nearly the same packages pick different single-package layers and fill their
# buckets differently: almost no bucket is shared. Workspace grouping decides, per domain, for all
# its images at once:
#
# - an image whose packages fit its budget keeps one layer per package (as above: nothing to gain);
# - otherwise the same *singles* everywhere: package names ranked by how many images of the domain
#   have them (then by dependency popularity, then name), taken while every over-budget image that
#   has the name still has room for it next to the buckets;
# - the other packages go to buckets by a hash of their name, in two tiers: names most images of the
#   domain have ("common", at least half of them) and the rest — so a common bucket holds the same
#   packages in every image and is one blob for all of them, and a project's own extras never
#   disturb it.
#
# Everything is decided from package *names* and budgets: bumping a package (a new sha256, same
# name) in one lock changes exactly the one layer that holds it, in that project's images only.

COMMON_SHARE = 0.5
"""A name is in the common tier when at least this share of the domain's images has it."""


def layer_domain(target_prefix: str, subdir: str) -> str:
    """Images whose layers can be the same blobs: same install prefix, same platform."""
    return f"{target_prefix}\0{subdir}"


@dataclass(frozen=True)
class ImageSet:
    """What workspace grouping needs to know about one image: its domain, its package-layer budget
    (`layerplan.package_budget`) and its package names with their popularity in its dependency graph."""

    domain: str
    budget: int
    names: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, records: Sequence[CondaRecord], budget: int, domain: str) -> "ImageSet":
        pop = popularity(dependency_graph(records))
        return cls(domain, budget, tuple(sorted((r.name.lower(), pop.get(r.name.lower(), 0)) for r in records)))

    @property
    def fits(self) -> bool:
        return len(self.names) <= self.budget


@dataclass(frozen=True)
class DomainGrouping:
    """The decision for one domain (see above)."""

    singles: tuple[str, ...]
    """Single-package layers of over-budget images, base-most first."""
    common: frozenset[str]
    common_buckets: int
    rare_buckets: int

    def digest(self) -> str:
        return hashlib.sha256(repr((self.singles, sorted(self.common), self.common_buckets,
                                    self.rare_buckets)).encode()).hexdigest()


@dataclass(frozen=True)
class WorkspaceGrouping:
    """Package → layer grouping for every image of a workspace, decided per domain."""

    domains: dict

    @classmethod
    def of(cls, images: Iterable[ImageSet]) -> "WorkspaceGrouping":
        by_domain: dict[str, list[ImageSet]] = {}
        for image in images:
            by_domain.setdefault(image.domain, []).append(image)
        return cls({domain: _decide(sets) for domain, sets in sorted(by_domain.items())})

    def digest(self, domain: str) -> str | None:
        decision = self.domains.get(domain)
        return decision.digest() if decision is not None else None

    def group(self, records: Sequence[CondaRecord], budget: int, domain: str) -> list[list[CondaRecord]]:
        """The layers of one image of `domain` (at most `budget` of them)."""
        decision = self.domains.get(domain)
        if decision is None or len(records) <= budget:
            return group_packages(records, budget)
        by_name: dict[str, CondaRecord] = {}
        for record in records:
            key = record.name.lower()
            if key in by_name:
                raise InputError(f"package {record.name} appears twice in one environment")
            by_name[key] = record
        singles = [n for n in decision.singles if n in by_name]
        if len(singles) + decision.common_buckets + decision.rare_buckets > budget:
            return group_packages(records, budget)  # an image the decision was not made for
        single_set = set(singles)
        common: list[list[str]] = [[] for _ in range(decision.common_buckets)]
        rare: list[list[str]] = [[] for _ in range(decision.rare_buckets)]
        for name in sorted(by_name):
            if name in single_set:
                continue
            if (name in decision.common and common) or not rare:
                common[_bucket(name, len(common))].append(name)
            else:
                rare[_bucket(name, len(rare))].append(name)
        return [[by_name[n]] for n in singles] + [[by_name[n] for n in g] for g in common + rare if g]


def _decide(images: list[ImageSet]) -> DomainGrouping:
    over = [i for i in images if not i.fits]
    if not over:
        return DomainGrouping((), frozenset(), 0, 0)
    frequency: dict[str, int] = {}
    pop: dict[str, int] = {}
    for image in images:
        for name, p in image.names:
            frequency[name] = frequency.get(name, 0) + 1
            pop[name] = max(pop.get(name, 0), p)
    buckets = max(1, min(i.budget for i in over) // 4)
    room = {id(i): i.budget - buckets for i in over}
    holders: dict[str, list[ImageSet]] = {}
    for image in over:
        for name, _ in image.names:
            holders.setdefault(name, []).append(image)
    singles: list[str] = []
    for name in sorted(holders, key=lambda n: (-frequency[n], -pop[n], n)):
        if all(room[id(i)] > 0 for i in holders[name]):
            singles.append(name)
            for image in holders[name]:
                room[id(image)] -= 1
    threshold = max(2, math.ceil(len(images) * COMMON_SHARE))
    common = frozenset(n for n, f in frequency.items() if f >= threshold)
    bucketed = set(holders) - set(singles)
    if not bucketed & common:  # one tier only: it gets every bucket
        common_buckets, rare_buckets = 0, buckets
    elif not bucketed - common:
        common_buckets, rare_buckets = buckets, 0
    else:
        common_buckets, rare_buckets = buckets - buckets // 2, buckets // 2
    return DomainGrouping(tuple(singles), common, common_buckets, rare_buckets)
