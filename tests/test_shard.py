"""`--shard K/N`: every target in exactly one shard, loads balanced by package bytes, and a new project
moves few targets to another shard."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from pixibuild.demo.demo import write_demo
from pixibuild.errors import InputError
from pixibuild.graph.shard import SLACK, Shard, assign, parse_shard, select


def _weights(rng: random.Random, n: int) -> dict[str, int]:
    return {f"p{i:02d}:default:linux-64": int(rng.lognormvariate(15, 1.2)) for i in range(n)}


@pytest.mark.parametrize("count", [2, 3, 4, 8])
def test_every_target_in_one_shard_and_loads_balanced(count: int) -> None:
    rng = random.Random(count)
    for _ in range(30):
        weights = _weights(rng, 20)
        shards = assign(weights, count)
        assert set(shards) == set(weights) and set(shards.values()) <= set(range(1, count + 1))
        assert set().union(*(select(weights, Shard(k, count)) for k in range(1, count + 1))) == set(weights)
        loads = [sum(w for t, w in weights.items() if shards[t] == k) for k in range(1, count + 1)]
        assert max(loads) <= max(sum(weights.values()) / count * (1 + SLACK), max(weights.values())) + 1
        assert assign(dict(reversed(list(weights.items()))), count) == shards  # no dependence on order


def test_adding_a_project_keeps_most_targets_where_they_were() -> None:
    rng = random.Random(7)
    moved = total = 0
    for _ in range(50):
        weights = _weights(rng, 20)
        before = assign(weights, 3)
        after = assign({**weights, "new:default:linux-64": int(rng.lognormvariate(15, 1.2))}, 3)
        moved += sum(before[t] != after[t] for t in weights)
        total += len(weights)
    assert moved / total < 0.2, f"{moved} of {total} targets moved"


def test_shard_syntax() -> None:
    assert parse_shard("2/3") == Shard(2, 3) and parse_shard(" 1 / 1 ") == Shard(1, 1) and parse_shard("") is None
    for bad in ("0/3", "4/3", "1-3", "a/b", "3"):
        with pytest.raises(InputError, match="K/N"):
            parse_shard(bad)


def test_shards_of_the_demo_partition_its_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pixibuild.rules import workspace_tasks

    write_demo(tmp_path / "ws")
    monkeypatch.setenv("PIXIBUILD_CACHE_DIR", str(tmp_path / "store"))

    def outputs(shard: str | None) -> set[str]:
        graph = workspace_tasks(tmp_path / "ws", build_dir=tmp_path / "build", shard=shard)["PIXIBUILD_GRAPH"]
        return {n.name for n in graph.nodes() if n.kind in ("pack", "image", "unpack")}

    full = outputs(None)
    parts = [outputs(f"{k}/3") for k in (1, 2, 3)]
    assert set().union(*parts) == full and sum(len(p) for p in parts) == len(full)
    assert all(parts)
    monkeypatch.setenv("PIXIBUILD_SHARD", "2/3")
    assert outputs(None) == parts[1]


def test_doit_takes_the_shard_as_a_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`doit list shard=2/3` (doit's own command line, no pixibuild CLI) lists the same targets as
    `shard="2/3"` given to the rules."""
    import subprocess
    import sys

    from pixibuild.rules import workspace_tasks

    ws = tmp_path / "ws"
    write_demo(ws)
    (ws / "dodo.py").write_text("from pixibuild.rules import workspace_tasks\nglobals().update(workspace_tasks(__file__))\n")
    env = {**os.environ, "PIXIBUILD_CACHE_DIR": str(tmp_path / "store"), "PIXIBUILD_BUILD_DIR": str(tmp_path / "build")}
    env.pop("PIXIBUILD_SHARD", None)
    monkeypatch.setenv("PIXIBUILD_CACHE_DIR", str(tmp_path / "store"))
    monkeypatch.delenv("PIXIBUILD_SHARD", raising=False)
    graph = workspace_tasks(ws, build_dir=tmp_path / "build", shard="2/3")["PIXIBUILD_GRAPH"]
    expected = {n.name for n in graph.nodes() if n.kind in ("pack", "image", "unpack")}

    def listed(*args: str) -> set[str]:
        res = subprocess.run([sys.executable, "-m", "doit", "-f", str(ws / "dodo.py"), "-d", str(ws), "list",
                              "--all", *args], capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr
        names = {line.split()[0] for line in res.stdout.splitlines() if line.strip()}
        return {n for n in names if ":" in n and n.split(":", 1)[0] in ("pack", "image", "unpack")}

    assert expected and listed("shard=2/3") == expected
    assert listed() > expected
