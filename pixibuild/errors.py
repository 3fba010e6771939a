"""One error type the CLI can print as a single line, with an exit code that tells why."""

from __future__ import annotations

from pathlib import Path

EXIT_FAILURE = 1
"""A build step failed (network, hash mismatch, disk): retrying may help."""
EXIT_BAD_INPUT = 2
"""The user's input is wrong (unreadable lock, unknown environment...): retrying will not help."""


class PixibuildError(Exception):
    """An error for the user: its message is one line naming the file, package or field."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, path: str | Path | None = None, field: str | None = None):
        prefix = ""
        if path is not None:
            prefix += f"{path}: "
        if field:
            prefix += f"{field}: "
        text = prefix + message
        # Keep it one line: multi-line detail (YAML marks, tracebacks) is folded.
        super().__init__(" ".join(text.split()) if "\n" in text else text)
        self.path = path
        self.field = field


class InputError(PixibuildError):
    """Bad input (lock, manifest, CLI argument, package archive): exit code 2."""

    exit_code = EXIT_BAD_INPUT


class BuildError(PixibuildError):
    """A step could not be completed (download, verification, I/O): exit code 1."""

    exit_code = EXIT_FAILURE
