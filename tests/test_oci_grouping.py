"""Package → layer grouping: within budget, a partition, order-independent, and stable when a
leaf package is added."""

from __future__ import annotations

import hashlib
import random

import pytest

from pixibuild.oci.grouping import group_packages, layer_key, popularity, dependency_graph
from pixibuild.conda.records import CondaRecord


def rec(name: str, depends: tuple[str, ...] = ()) -> CondaRecord:
    return CondaRecord(url=f"https://x/{name}-1-0.conda", file_name=f"{name}-1-0.conda", subdir="linux-64",
                       name=name, version="1", build="0", build_number=0, depends=depends,
                       sha256=hashlib.sha256(name.encode()).hexdigest())


def random_env(seed: int, n: int) -> list[CondaRecord]:
    """A random DAG: package i depends on a few packages with smaller index (with version specs)."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        deps = rng.sample(range(i), k=min(i, rng.randint(0, 4)))
        records.append(rec(f"p{i:03d}", tuple(f"p{d:03d} >=1.0" for d in sorted(deps)) + ("__glibc >=2.17",)))
    return records


def as_sets(groups) -> set[frozenset[str]]:
    return {frozenset(r.name for r in g) for g in groups}


def test_popularity_counts_transitive_dependents() -> None:
    env = [rec("app", ("python",)), rec("python", ("libc", "zlib")), rec("zlib", ("libc",)), rec("libc")]
    pop = popularity(dependency_graph(env))
    assert pop == {"app": 0, "python": 1, "zlib": 2, "libc": 3}
    groups = group_packages(env, 10)
    assert [g[0].name for g in groups] == ["libc", "zlib", "python", "app"]  # base-most first


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("budget", [1, 7, 30, 200])
def test_partition_within_budget_and_order_independent(seed: int, budget: int) -> None:
    env = random_env(seed, 120)
    groups = group_packages(env, budget)
    assert len(groups) <= budget
    names = [r.name for g in groups for r in g]
    assert sorted(names) == sorted(r.name for r in env)
    shuffled = env[:]
    random.Random(seed).shuffle(shuffled)
    assert [[r.name for r in g] for g in group_packages(shuffled, budget)] == [[r.name for r in g] for g in groups]


@pytest.mark.parametrize("seed", range(10))
def test_adding_a_leaf_under_budget_adds_exactly_one_layer(seed: int) -> None:
    env = random_env(seed, 60)
    leaf = rec("zz-leaf", tuple(r.name for r in random.Random(seed).sample(env, 3)))
    before, after = as_sets(group_packages(env, 90)), as_sets(group_packages(env + [leaf], 90))
    assert after - before == {frozenset({"zz-leaf"})} and before <= after


@pytest.mark.parametrize("seed", range(10))
def test_adding_a_leaf_over_budget_changes_only_its_bucket(seed: int) -> None:
    env = random_env(seed, 150)
    budget = 40
    before = group_packages(env, budget)
    singles = [g[0].name for g in before if len(g) == 1][:10]  # most popular single-package layers
    leaf = rec("new-leaf", tuple(random.Random(seed).sample(singles, 3)))
    after = group_packages(env + [leaf], budget)
    changed_old, new = as_sets(before) - as_sets(after), as_sets(after) - as_sets(before)
    assert len(new) == 1 and "new-leaf" in next(iter(new))
    # the one layer that changed is the bucket the leaf joined (or none, if it opened a new bucket)
    assert len(changed_old) <= 1
    if changed_old:
        assert next(iter(new)) - {"new-leaf"} == next(iter(changed_old))


def test_a_leaf_on_unpopular_packages_is_the_documented_exception() -> None:
    """The rule is only stable when the single-layer set stays the same; show the exception is real
    (so the test above is not vacuous) by finding a case where it moves."""
    moved = 0
    for seed in range(30):
        env = random_env(seed, 150)
        before = group_packages(env, 40)
        tails = [r.name for g in before if len(g) > 1 for r in g]
        leaf = rec("new-leaf", tuple(tails[:3]))
        after = group_packages(env + [leaf], 40)
        singles = lambda gs: {g[0].name for g in gs if len(g) == 1 and g[0].name != "new-leaf"}
        moved += singles(before) != singles(after)
    assert moved > 0


def test_layer_key_depends_on_members_and_prefix() -> None:
    a, b = rec("a"), rec("b")
    assert layer_key([a, b], "/app") == layer_key([b, a], "/app")
    assert layer_key([a], "/app") != layer_key([a], "/opt")
    assert layer_key([a], "/app") != layer_key([a, b], "/app")


def test_dependency_names_from_matchspec_forms() -> None:
    env = [rec("app", ("python>=3.8", "conda-forge::zlib 1.*", "libc[version='>=2']")),
           rec("python"), rec("zlib"), rec("libc")]
    assert set(dependency_graph(env).edges) == {("app", "python"), ("app", "zlib"), ("app", "libc")}
