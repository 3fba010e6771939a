"""The `pixibuild` command: argument parsing and one-line errors; each subcommand lives in
`pixibuild/commands/<name>.py` and exposes `add_arguments(parser)` and `run(args) -> int`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from . import __version__
from .errors import EXIT_BAD_INPUT, PixibuildError

# Subcommand modules, in the order `pixibuild --help` lists them.
COMMANDS = ("lock_info",)


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors already; keep its message on one line like ours."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"pixibuild: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pixibuild", description="Build pixi environments into pixi-pack archives, "
                     "installed prefixes and OCI images, reproducibly.")
    parser.add_argument("-V", "--version", action="version", version=f"pixibuild {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (repeatable)")
    parser.add_argument("-q", "--quiet", action="store_true", help="errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        module = importlib.import_module(f".commands.{name}", __package__)
        doc = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""
        p = sub.add_parser(name.replace("_", "-"), help=doc, description=doc)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.ERROR if args.quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="pixibuild: %(message)s", stream=sys.stderr)
    try:
        return int(args._run(args) or 0)
    except PixibuildError as exc:
        print(f"pixibuild: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("pixibuild: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
