"""noarch: python packages: where their files go and the console scripts their entry points become.

The layout depends on the python in the same environment (`lib/pythonX.Y/site-packages`), so a
noarch package is relocated at install time, as conda and rattler do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from pixibuild.errors import InputError
from pixibuild.conda.platforms import is_windows
from pixibuild.conda.records import CondaRecord

_ENTRY_POINT = re.compile(r"^\s*([^=\s]+)\s*=\s*([\w.]+)\s*:\s*([\w.]+)\s*(\[.*\])?\s*$")


@dataclass(frozen=True)
class PythonLayout:
    """Where python things live in a prefix for one python version and platform."""

    version: str
    """"X.Y"."""
    platform: str
    site_packages_override: str | None = None

    @property
    def site_packages(self) -> str:
        if self.site_packages_override:
            return self.site_packages_override.strip("/")
        if is_windows(self.platform):
            return "Lib/site-packages"
        return f"lib/python{self.version}/site-packages"

    @property
    def bin_dir(self) -> str:
        return "Scripts" if is_windows(self.platform) else "bin"

    @property
    def python_path(self) -> str:
        return "python.exe" if is_windows(self.platform) else f"bin/python{self.version}"

    def shebang(self, target_prefix: str) -> str:
        path = f"{target_prefix.rstrip('/')}/{self.python_path}".replace("\\", "/")
        if len(path) > 127 - 2 or " " in path:
            return f"#!/bin/sh\n'''exec' \"{path}\" \"$0\" \"$@\" #'''"
        return f"#!{path}"


def environment_python_version(records: Iterable[CondaRecord]) -> str | None:
    """"X.Y" of the `python` package among `records`, if any."""
    for record in records:
        if record.name == "python":
            parts = record.version.split(".")
            if len(parts) >= 2:
                return f"{parts[0]}.{parts[1]}"
            return parts[0]
    return None


def site_packages_override(records: Iterable[CondaRecord]) -> str | None:
    """CEP-17: the python record may say where site-packages is (`python_site_packages_path`)."""
    for record in records:
        if record.name == "python":
            value = record.extra.get("python_site_packages_path")
            return value if isinstance(value, str) and value else None
    return None


def relocate(path: str, layout: PythonLayout) -> str:
    """The prefix path of a noarch python payload path."""
    if path.startswith("site-packages/"):
        return f"{layout.site_packages}/{path[len('site-packages/'):]}"
    if path.startswith("python-scripts/"):
        return f"{layout.bin_dir}/{path[len('python-scripts/'):]}"
    return path


@dataclass(frozen=True)
class EntryPoint:
    command: str
    module: str
    function: str


def parse_entry_point(package: str, text: str) -> EntryPoint:
    match = _ENTRY_POINT.match(text)
    if not match or "/" in match.group(1) or match.group(1) in (".", ".."):
        raise InputError(f"{package}: info/link.json: bad entry point {text!r} (expected 'name = module:function')")
    return EntryPoint(match.group(1), match.group(2), match.group(3))


def entry_point_script(entry: EntryPoint, layout: PythonLayout, target_prefix: str) -> bytes:
    """The console script rattler writes for an entry point, byte for byte."""
    import_name = entry.function.split(".", 1)[0]
    return (
        f"{layout.shebang(target_prefix)}\n"
        "# -*- coding: utf-8 -*-\n"
        "import re\n"
        "import sys\n\n"
        f"from {entry.module} import {import_name}\n\n"
        "if __name__ == '__main__':\n"
        "\tsys.argv[0] = re.sub(r'(-script\\.pyw?|\\.exe)?$', '', sys.argv[0])\n"
        f"\tsys.exit({entry.function}())\n"
    ).encode()
