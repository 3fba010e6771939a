"""The `pixibuild` command: argument parsing and one-line errors; each subcommand lives in
`pixibuild/commands/<name>.py` and exposes `add_arguments(parser)` and `run(args) -> int`."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from typing import Sequence

from pixibuild import __version__
from pixibuild.errors import EXIT_BAD_INPUT, PixibuildError

# Subcommand modules, in the order `pixibuild --help` lists them. Modules that are not there
# (yet) are skipped, so each command lands on its own. Entries with a dot are absolute module
# names (the doit-backed `build` command lives in the rule set, outside the library).
COMMANDS = ("lock_info", "fetch", "pack", "unpack", "shell_hook", "image", "sbom", "pixibuild.rules.build_command")


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
        module_name = name if "." in name else f"{__package__}.commands.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        command = getattr(module, "COMMAND_NAME", name.replace("_", "-"))
        doc = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""
        p = sub.add_parser(command, help=doc, description=doc)
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
