"""Split a workspace's targets over N CI runners: `pixibuild build --shard K/N` builds shard K.

A target (project, environment, platform) goes to one shard, decided from names and sizes alone, so
every runner computes the same split without talking to the others:

- **balanced by package bytes**: a target weighs the bytes of its packages times the outputs it builds
  (pack, image, unpack); targets are placed heaviest first, and no shard takes more than 1.15× its share
  (or the heaviest target, if that is more) while another has room;
- **stable**: each target ranks the shards by a hash of its name and the shard number (rendezvous
  hashing) and takes the first with room. Adding a project changes no target's ranking and the capacity
  a little: about 9 in 10 targets keep their shard (and their runner's warm caches; measured on random
  20-project workspaces, `tests/test_shard.py`).

Runners share their work through the remote cache: a package several shards need is fetched by each
(from the cache once one runner has put it there); an image layer two shards share is built by whichever
gets there first, or by both at once (same bytes: both uploads succeed).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Mapping

from pixibuild.errors import InputError

SLACK = 0.15
ENV_SHARD = "PIXIBUILD_SHARD"


@dataclass(frozen=True)
class Shard:
    """Shard `index` (1-based) of `count`."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str | None, *, where: str = "--shard") -> Shard | None:
    """`K/N` with 1 ≤ K ≤ N; None for no sharding (None or empty)."""
    if text is None or not text.strip():
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise InputError(f"{text!r} is not K/N with 1 <= K <= N (e.g. 2/3: the second of three runners)",
                         field=where)
    return Shard(int(match[1]), int(match[2]))


def shard_from_environment(flag: str | None = None, doit_var: str | None = None) -> Shard | None:
    """`--shard`, else doit's `shard=K/N`, else `$PIXIBUILD_SHARD`."""
    if flag:
        return parse_shard(flag)
    if doit_var:
        return parse_shard(doit_var, where="shard=")
    return parse_shard(os.environ.get(ENV_SHARD), where=ENV_SHARD)


def _rank(name: str, shard: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{name}\0{shard}".encode()).digest()[:8], "big")


def assign(weights: Mapping[str, int], count: int) -> dict[str, int]:
    """Target name → shard (1-based): bounded-load rendezvous hashing over the weights."""
    if count < 1:
        raise ValueError("at least one shard")
    total = sum(max(1, w) for w in weights.values())
    largest = max((max(1, w) for w in weights.values()), default=1)
    capacity = max(total / count * (1 + SLACK), largest)
    load = [0.0] * (count + 1)
    out: dict[str, int] = {}
    for name in sorted(weights, key=lambda n: (-max(1, weights[n]), n)):
        weight = max(1, weights[name])
        ranked = sorted(range(1, count + 1), key=lambda k: _rank(name, k), reverse=True)
        chosen = next((k for k in ranked if load[k] + weight <= capacity), min(ranked, key=lambda k: load[k]))
        load[chosen] += weight
        out[name] = chosen
    return out


def select(weights: Mapping[str, int], shard: Shard | None) -> set[str]:
    """The target names shard `shard` builds (all of them without sharding)."""
    if shard is None:
        return set(weights)
    return {name for name, k in assign(weights, shard.count).items() if k == shard.index}


def target_id(label: str, env: str, platform: str) -> str:
    return f"{label}:{env}:{platform}"


__all__ = ["Shard", "assign", "parse_shard", "select", "shard_from_environment", "target_id"]
