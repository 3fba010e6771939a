"""Install a pixi-pack environment.tar into OUTPUT_DIR/ENV_NAME and write an activation script (pixi-unpack compatible)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import IO, Callable

from pixibuild.commands.args import add_shell_argument
from pixibuild.install.activation import SCRIPT_EXT, activate_script
from pixibuild.files.atomic import atomic_directory, atomic_write_bytes
from pixibuild.files.progress import Progress, counting_opener
from pixibuild.files.verified import verifying
from pixibuild.install import install_environment
from pixibuild.install.conda_meta import HISTORY_PIXI_UNPACK
from pixibuild.pack.reader import PackReader, conda_packages, validate_metadata, wheels

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pack_file", nargs="?", default="environment.tar", metavar="PACK_FILE",
                        help="pack tar, '-' for stdin, or an extracted pack directory (default: ./environment.tar)")
    parser.add_argument("-o", "--output-directory", default=".", metavar="OUTPUT_DIR",
                        help="where ENV_NAME and activate.<ext> go (default: current directory)")
    parser.add_argument("-e", "--env-name", default="env", metavar="ENV_NAME", help="environment directory name (default: env)")
    add_shell_argument(parser)


def unpack(pack_file: str | Path, output_dir: Path, env_name: str = "env", shell: str = "bash",
           platform: str | None = None) -> Path:
    """Install the pack; returns the environment directory. The environment is swapped in whole."""
    output_dir = Path(output_dir).absolute()
    env_dir = output_dir / env_name
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
    script = activate_script(env_dir, str(env_dir), shell, platform=meta["platform"] if shell != "cmd" else None)
    atomic_write_bytes(output_dir / f"activate.{SCRIPT_EXT[shell]}", script.encode())
    return env_dir


def _opener(source: Callable[[], IO[bytes]] | Path) -> Callable[[], IO[bytes]]:
    """A pack member (an opener already) or an extracted pack's file, as an opener."""
    return source if callable(source) else lambda: open(source, "rb")


def run(args: argparse.Namespace) -> int:
    unpack(args.pack_file, Path(args.output_directory), args.env_name, args.shell)
    print(f"Finished unpacking to {Path(args.output_directory).absolute()}.", file=sys.stderr)
    return 0
