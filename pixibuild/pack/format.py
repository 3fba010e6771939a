"""The pack format's constants, shared by the writer and the reader (pixi-pack's layout):

    pixi-pack.json                      {"version": PACK_FORMAT_VERSION, "pixi-pack-version", "platform"}
    environment.yml                     the compatibility-mode spec (conda-style, `pip:` for wheels)
    channel/<subdir>/repodata.json      one local channel per subdir
    channel/<subdir>/<package archive>
    pypi/<wheel>
"""

from __future__ import annotations

from pixibuild import __version__

PACK_FORMAT_VERSION = "1"
"""pixi-pack's archive format version; a reader refuses any other."""

PACKER_VERSION = f"pixibuild-{__version__}"
"""What we put in `pixi-pack-version`: pixi-unpack only warns when it differs from its own."""

METADATA_FILE = "pixi-pack.json"
ENVIRONMENT_FILE = "environment.yml"
CHANNEL_DIR = "channel"
PYPI_DIR = "pypi"


def channel_member(subdir: str, file_name: str) -> str:
    """Where a package archive (or `repodata.json`) of `subdir` sits in a pack."""
    return f"{CHANNEL_DIR}/{subdir}/{file_name}"


def wheel_member(file_name: str) -> str:
    """Where a wheel sits in a pack."""
    return f"{PYPI_DIR}/{file_name}"
