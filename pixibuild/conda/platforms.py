"""Conda subdirs, in one table: which exist, what each says to repodata (arch/platform), to PEP 508
markers (platform_machine), to OCI images (architecture/variant), and which one this machine is."""

from __future__ import annotations

import platform as _platform
import sys
from dataclasses import dataclass

from pixibuild.errors import InputError


@dataclass(frozen=True)
class Subdir:
    """What a conda subdir means elsewhere. `arch` is rattler's `Platform::arch()` (repodata's
    `arch` field); `machine` is PEP 508's platform_machine; `oci` the image (architecture, variant)."""

    name: str
    arch: str | None
    machine: str = ""
    oci: tuple[str, str | None] | None = None

    @property
    def family(self) -> str:
        """linux, osx, win, ... (repodata's `platform` field)."""
        return self.name.rsplit("-", 1)[0]


_TABLE = (
    Subdir("noarch", None),
    Subdir("linux-32", "x86", "i686", ("386", None)),
    Subdir("linux-64", "x86_64", "x86_64", ("amd64", None)),
    Subdir("linux-aarch64", "aarch64", "aarch64", ("arm64", "v8")),
    Subdir("linux-armv6l", "armv6l", "armv6l", ("arm", "v6")),
    Subdir("linux-armv7l", "armv7l", "armv7l", ("arm", "v7")),
    Subdir("linux-ppc64", "ppc64", "ppc64"),
    Subdir("linux-ppc64le", "ppc64le", "ppc64le", ("ppc64le", None)),
    Subdir("linux-s390x", "s390x", "s390x", ("s390x", None)),
    Subdir("linux-riscv32", "riscv32", "riscv32"),
    Subdir("linux-riscv64", "riscv64", "riscv64", ("riscv64", None)),
    Subdir("osx-64", "x86_64", "x86_64"),
    Subdir("osx-arm64", "arm64", "arm64"),
    Subdir("win-32", "x86", "x86"),
    Subdir("win-64", "x86_64", "AMD64"),
    Subdir("win-arm64", "arm64", "ARM64"),
    Subdir("emscripten-wasm32", "wasm32"),
    Subdir("wasi-wasm32", "wasm32"),
    Subdir("zos-z", "z"),
    # subdirs rattler can parse though conda-forge does not publish them
    Subdir("linux-loongarch64", "loongarch64", "loongarch64"),
    Subdir("linux-ppc", "ppc", "ppc"),
    Subdir("emscripten-wasm64", "wasm64"),
    Subdir("freebsd-32", "x86"), Subdir("freebsd-64", "x86_64"), Subdir("freebsd-arm64", "arm64"),
    Subdir("freebsd-ppc64", "ppc64"), Subdir("freebsd-ppc64le", "ppc64le"),
    Subdir("ios-arm64", "arm64"), Subdir("iossimulator-arm64", "arm64"), Subdir("iossimulator-64", "x86_64"),
    Subdir("android-aarch64", "aarch64"), Subdir("android-armv7a", "armv7a"), Subdir("android-64", "x86_64"),
    Subdir("android-32", "x86"),
)
SUBDIRS: dict[str, Subdir] = {s.name: s for s in _TABLE}
KNOWN_SUBDIRS = tuple(s.name for s in _TABLE[: _TABLE.index(SUBDIRS["zos-z"]) + 1])
"""The subdirs conda channels publish (what `pixibuild` accepts as a target platform)."""

_HOST_ARCH = {"x86_64": "64", "amd64": "64", "aarch64": "aarch64", "arm64": "aarch64", "ppc64le": "ppc64le",
              "s390x": "s390x", "i686": "32", "i386": "32", "armv7l": "armv7l", "armv6l": "armv6l",
              "riscv64": "riscv64"}


def current_subdir() -> str:
    """The conda subdir of this machine, as pixi-unpack's `Platform::current()` would say."""
    machine = _platform.machine().lower()
    if sys.platform.startswith("linux"):
        return f"linux-{_HOST_ARCH.get(machine, machine)}"
    if sys.platform == "darwin":
        return "osx-arm64" if machine == "arm64" else "osx-64"
    if sys.platform == "win32":
        return "win-arm64" if machine == "arm64" else "win-64"
    return f"{sys.platform}-{machine}"


def is_windows(subdir: str) -> bool:
    return subdir.startswith("win-")


def arch_and_platform(subdir: str) -> tuple[str | None, str | None]:
    """(arch, platform) repodata fields for a subdir, e.g. linux-64 → ("x86_64", "linux")."""
    known = SUBDIRS.get(subdir)
    if known is None or known.arch is None:
        return None, None
    return known.arch, known.family


def platform_machine(subdir: str) -> str:
    """PEP 508 `platform_machine` of a subdir ("" when unknown)."""
    known = SUBDIRS.get(subdir)
    return known.machine if known else ""


def oci_platform(subdir: str) -> tuple[str, str, str | None]:
    """(os, architecture, variant) of an OCI image config for a linux conda subdir."""
    known = SUBDIRS.get(subdir)
    if known is None or known.oci is None:
        images = ", ".join(s.name for s in _TABLE if s.oci)
        raise InputError(f"no OCI image platform for conda subdir {subdir!r} (images are built for: {images})",
                         field="platform")
    arch, variant = known.oci
    return "linux", arch, variant
