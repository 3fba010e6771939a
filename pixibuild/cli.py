"""The `pixibuild` command: argument parsing and one-line errors; each subcommand lives in
`pixibuild/commands/<name>.py` and exposes `add_arguments(parser)` and `run(args) -> int`."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import re
import select
import signal
import sys
import threading
from typing import Any, Iterator, Mapping, Sequence, TextIO

from pixibuild import __version__
from pixibuild.errors import EXIT_BAD_INPUT, PixibuildError

COMMANDS = {
    "lock-info": "pixibuild.commands.lock_info",
    "fetch": "pixibuild.commands.fetch",
    "pack": "pixibuild.commands.pack",
    "unpack": "pixibuild.commands.unpack",
    "shell-hook": "pixibuild.commands.shell_hook",
    "image": "pixibuild.commands.image",
    "cache": "pixibuild.commands.cache",
    "sbom": "pixibuild.commands.sbom",
    "build": "pixibuild.rules.build_command",  # doit-backed: it lives in the rule set, outside the library
    "plan": "pixibuild.commands.plan",
    "graph": "pixibuild.commands.graph",
}
"""Command name → module, in the order `pixibuild --help` lists them."""


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors already; keep its message on one line like ours."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"pixibuild: error: {message}\n")


def _wanted(commands: Mapping[str, str], argv: Sequence[str] | None) -> Mapping[str, str]:
    """The command modules to import: only the one the command line names (a command module imports
    what its command needs: the installer ~50 ms, httpx ~60 ms; `pixibuild pack` must not pay for
    `image`), every one when none is named (`pixibuild --help`, a usage error)."""
    args = sys.argv[1:] if argv is None else argv
    first = next((a for a in args if not a.startswith("-")), None)
    return {first: commands[first]} if first in commands else commands


def build_parser(commands: Mapping[str, str] = COMMANDS, argv: Sequence[str] | None = ()) -> argparse.ArgumentParser:
    """The argument parser; with `argv`, only the command it names is loaded."""
    parser = _Parser(prog="pixibuild", description="Build pixi environments into pixi-pack archives, "
                     "installed prefixes and OCI images, reproducibly.")
    parser.add_argument("-V", "--version", action="version", version=f"pixibuild {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (repeatable)")
    parser.add_argument("-q", "--quiet", action="store_true", help="errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for command, module_name in _wanted(commands, argv).items():
        module = importlib.import_module(module_name)
        doc = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""
        p = sub.add_parser(command, help=doc, description=doc)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def embedded_unpack_main(argv: Sequence[str] | None = None) -> int:
    """The unpacker inside a self-extracting environment (`pack --create-executable`): `pixibuild unpack`
    with pixi-unpack's command line (`-v`/`-q` may come anywhere), on the target's python, where only
    the standard library can be expected: without the zstandard module, `.conda` packages are read
    through the `zstd` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbosity = [a for a in argv if re.fullmatch(r"-v+|-q|--verbose|--quiet", a)]
    rest = [a for a in argv if a not in verbosity]
    try:
        import zstandard  # noqa: F401
    except ImportError:
        from pixibuild.conda import zstd_cli

        sys.modules["zstandard"] = zstd_cli
    return main([*verbosity, "unpack", *rest], commands={"unpack": COMMANDS["unpack"]})


EXIT_STDOUT_CLOSED = 128 + getattr(signal, "SIGPIPE", 13)
"""141: what a shell reports for `cat`, `seq`, `git log`... when the reader of their output goes away
(they die of SIGPIPE). Not 0: a `pack -o - | …` whose reader died must not look like a complete
archive, and `set -o pipefail` scripts treat us like coreutils. (pixi itself panics there, exit 101:
prefix-dev/pixi#2043.)"""


def main(argv: Sequence[str] | None = None, *, commands: Mapping[str, str] = COMMANDS) -> int:
    parser = build_parser(commands, argv)
    args = parser.parse_args(argv)
    level = logging.ERROR if args.quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="pixibuild: %(message)s", stream=sys.stderr)
    try:
        try:
            code = int(args._run(args) or 0)
            sys.stdout.flush()  # buffered output meets a closed pipe here, not at interpreter exit
            return code
        except BrokenPipeError:
            if not stdout_is_closed():
                raise  # a pipe to something else (a subprocess, a socket): a real failure
            return quiet_exit_on_closed_stdout()
    except StdoutClosed:
        return EXIT_STDOUT_CLOSED  # stdout already points at devnull
    except PixibuildError as exc:
        print(f"pixibuild: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError as exc:
        print(f"pixibuild: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pixibuild: interrupted", file=sys.stderr)
        return 130


def _fd_is_closed_pipe(fd: int) -> bool:
    """A pipe whose reader has gone: poll() reports POLLERR on the write end (Linux and macOS)."""
    if not hasattr(select, "poll"):  # pragma: no cover - Windows: the error came from stdout, trust it
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    try:
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except OSError:  # pragma: no cover
        return False


def stdout_is_closed(stdout: TextIO | None = None) -> bool:
    """True when our stdout is a pipe nobody reads any more (`pixibuild … | head -3`)."""
    try:
        return _fd_is_closed_pipe((stdout or sys.stdout).fileno())
    except (AttributeError, ValueError, OSError):  # replaced or closed sys.stdout
        return False


def quiet_exit_on_closed_stdout() -> int:
    """The reader of our output left: say nothing, and make sure Python's own flush at exit cannot
    complain either (the standard recipe: point stdout, and stderr if it shared the pipe, at devnull)."""
    silence_closed_stdout()
    return EXIT_STDOUT_CLOSED


_READER_LEFT = threading.Event()
"""Set once our stdout was found closed and pointed at devnull: another thread whose write met the
same closed pipe (doit's parallel task threads print too) can no longer see the pipe, only this."""


def silence_closed_stdout(stdout: TextIO | None = None) -> None:
    stdout = stdout or sys.stdout
    _READER_LEFT.set()
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (stdout, sys.stderr):
        try:
            fd = stream.fileno()
        except (AttributeError, ValueError, OSError):
            continue
        if stream is stdout or _fd_is_closed_pipe(fd):
            os.dup2(devnull, fd)
    os.close(devnull)


class StdoutClosed(KeyboardInterrupt):
    """Our stdout's reader left while a library that catches every Exception was printing (doit: it
    would report a task failure with a traceback). A KeyboardInterrupt, so such code stops the way it
    stops on Ctrl-C; `main` turns it into the quiet exit."""


LISTING_CHUNK = 1 << 16
"""A listing's lines are handed to the stream in chunks this large."""


class _StdoutGuard:
    """A stand-in for sys.stdout that flushes every write (the closed pipe shows at once: a build stops
    at its next line) and, when the reader has left, silences stdout and raises `StdoutClosed`. With
    `flush_each=False` (long listings) lines are gathered here and written in 64 KiB chunks: with
    PYTHONUNBUFFERED set (common in CI and Dockerfiles) each write would be a system call (29,000 for
    a large monorepo's `doit list`); the closed pipe shows when a chunk is written or on flush."""

    def __init__(self, stream: TextIO, flush_each: bool = True):
        self._stream = stream
        self._flush_each = flush_each
        self._pending: list[str] = []
        self._pending_size = 0

    def write(self, text: str) -> int:
        if not self._flush_each:
            self._pending.append(text)
            self._pending_size += len(text)
            if self._pending_size >= LISTING_CHUNK:
                self._write_pending()
            return len(text)
        try:
            written = self._stream.write(text)
            self._stream.flush()
            return written
        except BrokenPipeError:
            self._reader_left()
            raise

    def _write_pending(self) -> None:
        text = "".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        try:
            self._stream.write(text)
        except BrokenPipeError:
            self._reader_left()
            raise

    def flush(self) -> None:
        if self._pending:
            self._write_pending()
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._reader_left()
            raise

    def _reader_left(self) -> None:
        """Raise StdoutClosed if the broken pipe is our stdout's (not, say, a subprocess's)."""
        if _READER_LEFT.is_set() or stdout_is_closed(self._stream):
            silence_closed_stdout(self._stream)
            raise StdoutClosed() from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_stdout(stream: TextIO, *, flush_each: bool = True) -> TextIO:
    """`stream` behind a `_StdoutGuard`: for code that prints through a library catching every Exception."""
    return _StdoutGuard(stream, flush_each)  # type: ignore[return-value]


@contextlib.contextmanager
def stdout_closed_interrupts() -> Iterator[TextIO]:
    """While inside: sys.stdout is guarded (see `_StdoutGuard`); yields the guard for code that was
    handed the original stream earlier and takes an explicit one (doit's `outfile`)."""
    saved = sys.stdout
    guard = _StdoutGuard(saved)
    sys.stdout = guard  # type: ignore[assignment]
    try:
        yield guard  # type: ignore[misc]
    finally:
        sys.stdout = saved


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
