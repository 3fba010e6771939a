"""`pixibuild pack` end to end: one target's locked records → verified blobs → environment.tar.

The same functions back the doit rules (index and archive nodes); this module only sequences them
for the one-shot command.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Sequence

from pixibuild.files.atomic import atomic_directory, atomic_output
from pixibuild.files.progress import CountingWriter, Progress
from pixibuild.errors import InputError
from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.conda.platforms import is_windows
from pixibuild.pack.executable import Unpacker, write_executable
from pixibuild.pack.writer import PackContents, write_directory, write_tar

log = logging.getLogger(__name__)


def select_pypi(records: Sequence[PypiRecord], *, ignore_non_wheel: bool, lock_path: Path | str) -> list[PypiRecord]:
    """Wheels only: pixi-pack can ship nothing else (sdists and git checkouts would need a build)."""
    wheels = []
    for record in records:
        if record.is_wheel and not record.editable:
            wheels.append(record)
            continue
        what = "an editable install" if record.editable else "not a wheel"
        if ignore_non_wheel:
            log.warning("skipping pypi package %s (%s): %s", record.name, record.location, what)
            continue
        raise InputError(f"pypi package '{record.name}' ({record.location}) is {what}; "
                         "only wheels can be packed (pass --ignore-pypi-non-wheel to skip it)",
                         path=lock_path, field="pypi")
    return wheels


def check_packable(records: Sequence[CondaRecord], lock_path: Path | str) -> None:
    """Source packages are recipes, not archives: they cannot go into a pack."""
    for record in records:
        if record.is_source:
            raise InputError(f"conda package '{record.name}' is a source package ({record.url}); "
                             "build it first, then pack the built archive", path=lock_path, field="conda")


@dataclass(frozen=True)
class PackOutput:
    """Where the archive goes: a file, '-' for stdout, or a directory (`--directory-only`); with an
    `executable` unpacker, a self-extracting script instead of a tar (`--create-executable`)."""

    path: str
    directory_only: bool = False
    executable: Unpacker | None = None


def write_pack(contents: PackContents, output: PackOutput, progress: Progress | None = None) -> int:
    """Write atomically: a crash leaves the previous output (or nothing) under the final name.
    `progress` is told the bytes written (the archive, or its base64 in an executable)."""
    if output.directory_only:
        with atomic_directory(output.path) as tmp:
            write_directory(contents, tmp)
        return 0

    def write(out: BinaryIO) -> int:
        if progress is not None:
            out = CountingWriter(out, progress)  # type: ignore[assignment]
        if output.executable is None:
            return write_tar(contents, out)
        return write_executable(lambda stream: write_tar(contents, stream), out, platform=contents.platform,
                                unpacker=output.executable)

    if output.path == "-":
        size = write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return size
    executable = output.executable is not None and not is_windows(contents.platform)
    with atomic_output(output.path, mode=0o755 if executable else 0o644) as out:
        return write(out)
