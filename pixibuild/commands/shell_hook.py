"""Print the activation script of an installed prefix (like `pixi shell-hook`), or an image entrypoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pixibuild.commands.args import add_environment_argument, add_shell_argument
from pixibuild.install.activation import activate_script, entrypoint_script
from pixibuild.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prefix_arg", nargs="?", default=None, metavar="PREFIX",
                        help="installed prefix, e.g. ./env from `pixibuild unpack` (default: .pixi/envs/ENV)")
    parser.add_argument("-p", "--prefix", default=None, help="the same as PREFIX")
    add_environment_argument(parser, verb="activate")
    add_shell_argument(parser)
    parser.add_argument("--target-prefix", default=None,
                        help="the path the prefix will be used at (default: its own absolute path)")
    parser.add_argument("--entrypoint", action="store_true",
                        help='print an image entrypoint script: activation, then exec "$@"')


def run(args: argparse.Namespace) -> int:
    if args.prefix_arg and args.prefix and Path(args.prefix_arg) != Path(args.prefix):
        raise InputError("give the prefix either as PREFIX or -p/--prefix, not both", field="--prefix")
    given = args.prefix_arg or args.prefix
    prefix = Path(given) if given else Path(".pixi") / "envs" / args.environment
    if not prefix.is_dir():
        raise InputError(f"{prefix}: no installed environment here")
    target = args.target_prefix or str(prefix.absolute())
    text = entrypoint_script(prefix, target) if args.entrypoint else activate_script(prefix, target, args.shell)
    sys.stdout.write(text)
    return 0
