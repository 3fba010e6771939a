"""Conda subdirs: which exist, which one this machine is, and what they mean for OCI images."""

from __future__ import annotations

import platform as _platform
import sys

KNOWN_SUBDIRS = (
    "noarch",
    "linux-32", "linux-64", "linux-aarch64", "linux-armv6l", "linux-armv7l",
    "linux-ppc64", "linux-ppc64le", "linux-s390x", "linux-riscv32", "linux-riscv64",
    "osx-64", "osx-arm64",
    "win-32", "win-64", "win-arm64",
    "emscripten-wasm32", "wasi-wasm32", "zos-z",
)

_OCI_ARCH = {
    "linux-64": ("amd64", None),
    "linux-aarch64": ("arm64", "v8"),
    "linux-ppc64le": ("ppc64le", None),
    "linux-s390x": ("s390x", None),
    "linux-armv7l": ("arm", "v7"),
    "linux-armv6l": ("arm", "v6"),
    "linux-32": ("386", None),
    "linux-riscv64": ("riscv64", None),
}


def current_subdir() -> str:
    """The conda subdir of this machine, as pixi-unpack's `Platform::current()` would say."""
    machine = _platform.machine().lower()
    if sys.platform.startswith("linux"):
        arch = {"x86_64": "64", "amd64": "64", "aarch64": "aarch64", "arm64": "aarch64",
                "ppc64le": "ppc64le", "s390x": "s390x", "i686": "32", "i386": "32",
                "armv7l": "armv7l", "armv6l": "armv6l", "riscv64": "riscv64"}.get(machine, machine)
        return f"linux-{arch}"
    if sys.platform == "darwin":
        return "osx-arm64" if machine == "arm64" else "osx-64"
    if sys.platform == "win32":
        return "win-arm64" if machine == "arm64" else "win-64"
    return f"{sys.platform}-{machine}"


def is_windows(subdir: str) -> bool:
    return subdir.startswith("win-")


def oci_platform(subdir: str) -> tuple[str, str, str | None]:
    """(os, architecture, variant) of an OCI image config for a linux conda subdir."""
    try:
        arch, variant = _OCI_ARCH[subdir]
    except KeyError:
        raise ValueError(f"no OCI image platform for conda subdir {subdir!r} (linux subdirs only)") from None
    return "linux", arch, variant
