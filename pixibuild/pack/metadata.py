"""`pixi-pack.json` and `environment.yml`: the small files that make a pack pixi-pack compatible."""

from __future__ import annotations

import json
from typing import Iterable

from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.pack.format import CHANNEL_DIR, PACK_FORMAT_VERSION, PACKER_VERSION, PYPI_DIR


def pixi_pack_json(platform: str) -> bytes:
    """Field order and formatting as pixi-pack's serde output (2-space indent, no newline)."""
    document = {"version": PACK_FORMAT_VERSION, "pixi-pack-version": PACKER_VERSION, "platform": platform}
    return json.dumps(document, indent=2).encode()


def environment_yml(conda: Iterable[CondaRecord], wheels: Iterable[PypiRecord]) -> bytes:
    """The compatibility-mode spec: `micromamba create -f environment.yml` against `./channel`."""
    lines = ["channels:", f"  - ./{CHANNEL_DIR}", "  - nodefaults", "dependencies:"]
    lines += [f"  - {r.name}={r.version}={r.build}" for r in conda]
    wheel_lines = [f"    - {w.name}=={w.version}" for w in wheels]
    if wheel_lines:
        lines += ["  - pip:", "    - --no-index", f"    - --find-links ./{PYPI_DIR}", *wheel_lines]
    return ("\n".join(lines) + "\n").encode()
