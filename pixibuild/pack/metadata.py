"""`pixi-pack.json` and `environment.yml`: the small files that make a pack pixi-pack compatible."""

from __future__ import annotations

import json
from typing import Iterable

from pixibuild import __version__
from pixibuild.conda.records import CondaRecord, PypiRecord

PACK_FORMAT_VERSION = "1"
PACKER_VERSION = f"pixibuild-{__version__}"
"""What we put in `pixi-pack-version`: pixi-unpack only warns when it differs from its own."""


def pixi_pack_json(platform: str) -> bytes:
    """Field order and formatting as pixi-pack's serde output (2-space indent, no newline)."""
    document = {"version": PACK_FORMAT_VERSION, "pixi-pack-version": PACKER_VERSION, "platform": platform}
    return json.dumps(document, indent=2).encode()


def environment_yml(conda: Iterable[CondaRecord], wheels: Iterable[PypiRecord]) -> bytes:
    """The compatibility-mode spec: `micromamba create -f environment.yml` against `./channel`."""
    lines = ["channels:", "  - ./channel", "  - nodefaults", "dependencies:"]
    lines += [f"  - {r.name}={r.version}={r.build}" for r in conda]
    wheel_lines = [f"    - {w.name}=={w.version}" for w in wheels]
    if wheel_lines:
        lines += ["  - pip:", "    - --no-index", "    - --find-links ./pypi", *wheel_lines]
    return ("\n".join(lines) + "\n").encode()
