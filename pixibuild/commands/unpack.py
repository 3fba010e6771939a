"""Install a pixi-pack environment.tar into OUTPUT_DIR/ENV_NAME and write an activation script (pixi-unpack compatible)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import IO, Callable

from pixibuild.commands.args import add_shell_argument
from pixibuild.errors import InputError
from pixibuild.install.activation import SCRIPT_EXT, activate_script
from pixibuild.files.atomic import atomic_directory, atomic_write_bytes
from pixibuild.files.progress import Progress, counting_opener
from pixibuild.files.verified import verifying
from pixibuild.install.environment import install_environment
from pixibuild.install.conda_meta import HISTORY_PIXI_UNPACK
from pixibuild.install.existing import ENVIRONMENT, OTHER, changes, installed_packages, target_kind, unowned_files
from pixibuild.pack.reader import PackReader, conda_packages, validate_metadata, wheels

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pack_file", nargs="?", default="environment.tar", metavar="PACK_FILE",
                        help="pack tar, '-' for stdin, or an extracted pack directory (default: ./environment.tar)")
    parser.add_argument("-o", "--output-directory", default=".", metavar="OUTPUT_DIR",
                        help="where ENV_NAME and activate.<ext> go (default: current directory)")
    parser.add_argument("-e", "--env-name", default="env", metavar="ENV_NAME", help="environment directory name (default: env)")
    parser.add_argument("--force", action="store_true",
                        help="replace OUTPUT_DIR/ENV_NAME even when it is not a conda environment (an existing "
                             "conda environment is always replaced, and the changes are listed)")
    add_shell_argument(parser)


def unpack(pack_file: str | Path, output_dir: Path, env_name: str = "env", shell: str = "bash",
           platform: str | None = None, *, force: bool = False) -> Path:
    """Install the pack; returns the environment directory.

    The environment is built beside its final place and swapped in whole, so a failure leaves an
    existing environment untouched, and removes the directories this call created. An existing
    conda environment is replaced (the changes are reported); any other non-empty directory is
    refused unless `force`."""
    output_dir = Path(output_dir).absolute()
    env_dir = output_dir / env_name
    kind = target_kind(env_dir)
    if kind == OTHER and not force:
        raise InputError(f"{env_dir}: exists and is not a conda environment (no conda-meta/): refusing to replace "
                         "it and everything in it (choose another -o/-e, or pass --force)")
    before = installed_packages(env_dir) if kind == ENVIRONMENT else None
    unowned = unowned_files(env_dir) if kind == ENVIRONMENT else []
    created = _missing_dirs(output_dir)
    try:
        with PackReader(pack_file) as reader:
            meta = validate_metadata(reader, platform)
            packages = conda_packages(reader)
            pypi = wheels(reader)
            total = sum(record.size or 0 for record, _ in packages)
            # every archive is checked against the pack's repodata.json while it is read (the VerifiedBlobs
            # of `packages`, whatever wraps their streams)
            with Progress("unpack", nbytes=total) as progress, atomic_directory(env_dir) as staging, \
                    verifying(s for _, s in [*packages, *pypi]):
                # the bytes read from the package archives (info, then payload) tell how far linking is
                counted = [(record, counting_opener(_opener(source), progress)) for record, source in packages]
                install_environment(counted, staging, target_prefix=str(env_dir), wheels=pypi,
                                    platform=meta["platform"], history=HISTORY_PIXI_UNPACK)
                # every archive was read by now, some by the forked second linker (install/forked.py),
                # whose reads this process does not see: the last line says all of them
                progress.update(nbytes=max(0, total - progress.bytes))
                script = activate_script(staging, str(env_dir), shell,
                                         platform=meta["platform"] if shell != "cmd" else None)
        atomic_write_bytes(output_dir / f"activate.{SCRIPT_EXT[shell]}", script.encode())
    except BaseException:
        _remove_empty(created)
        raise
    if before is not None:
        diff = changes(before, [r for r, _ in packages])
        print(f"Replaced the conda environment at {env_dir}: {diff.counts()}.", file=sys.stderr)
        for line in diff.lines():
            print(line, file=sys.stderr)
        if unowned:
            shown = ", ".join(unowned[:5]) + (f", … ({len(unowned) - 5} more)" if len(unowned) > 5 else "")
            print(f"  ! {len(unowned)} file{'s' if len(unowned) != 1 else ''} no package installed went with it: "
                  f"{shown}", file=sys.stderr)
    elif kind == OTHER:
        log.warning("replaced %s (--force)", env_dir)
    return env_dir


def _opener(source: Callable[[], IO[bytes]] | Path) -> Callable[[], IO[bytes]]:
    """A pack member (an opener already) or an extracted pack's file, as an opener."""
    return source if callable(source) else lambda: open(source, "rb")


def _missing_dirs(path: Path) -> list[Path]:
    """`path` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and path.parent != path:
        missing.append(path)
        path = path.parent
    return missing


def _remove_empty(dirs: list[Path]) -> None:
    """Remove the directories a failed run created (deepest first; only while they are empty)."""
    for path in dirs:
        with contextlib.suppress(OSError):
            os.rmdir(path)


def run(args: argparse.Namespace) -> int:
    unpack(args.pack_file, Path(args.output_directory), args.env_name, args.shell, force=args.force)
    print(f"Finished unpacking to {Path(args.output_directory).absolute()}.", file=sys.stderr)
    return 0
