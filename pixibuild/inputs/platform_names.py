"""Workspace platforms with names and virtual packages (pixi ≥ 0.60, lock v7), and how a lock's
platform names map to the manifest's — as pixi does it.

A manifest may declare `{ name = "cuda-linux-64", platform = "linux-64", cuda = "12" }`. pixi writes
such *rich* platforms into pixi.lock under short aliases (`p1`, `p2`, … in declaration order) and, on
load, renames each locked platform back to the manifest platform with the same *identity*: the same
conda subdir and the same customised virtual packages (those that differ from the subdir's defaults).
A rename applies only when exactly one manifest platform matches and neither name is taken
(pixi: crates/pixi_core/src/lock_file/platform_rename.rs, crates/pixi_manifest/src/platform.rs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

from pixibuild.conda.version import Version, VersionError

VirtualPackage = tuple[str, str, str]
"""(name, version text, build string) of a virtual package, e.g. ("__cuda", "12", "")."""

# pixi_default_versions: what pixi assumes about a subdir without customisation
_DEFAULT_LINUX, _DEFAULT_GLIBC, _DEFAULT_WINDOWS, _DEFAULT_MACOS = "4.18", "2.28", "10.0", "13.0"
# rattler_virtual_packages::Archspec::from_platform
_ARCHSPEC = {"win-32": "x86", "linux-32": "x86", "win-64": "x86_64", "osx-64": "x86_64", "linux-64": "x86_64",
             "linux-aarch64": "aarch64", "linux-armv6l": "aarch64", "linux-armv7l": "aarch64",
             "linux-loongarch64": "loongarch64", "linux-ppc64le": "ppc64le", "linux-ppc64": "ppc64",
             "linux-ppc": "ppc", "linux-s390x": "s390x", "linux-riscv32": "riscv32", "linux-riscv64": "riscv64",
             "win-arm64": "aarch64", "osx-arm64": "m1", "ios-arm64": "aarch64", "iossimulator-arm64": "aarch64",
             "android-aarch64": "aarch64", "iossimulator-64": "x86_64", "android-64": "x86_64", "android-32": "x86"}
# the manifest's friendly keys, in pixi's canonical order (it names unnamed platforms in this order)
FRIENDLY = (("cuda", "__cuda", "version"), ("archspec", "__archspec", "microarch"), ("glibc", "__glibc", "version"),
            ("linux", "__linux", "version"), ("macos", "__osx", "version"), ("windows", "__win", "version"))
_ALIASES = {"osx": "macos"}


def subdir_defaults(subdir: str) -> list[VirtualPackage]:
    """pixi's `subdir_default_virtual_packages`."""
    out: list[VirtualPackage] = []
    family = subdir.split("-", 1)[0]
    if family in ("linux", "osx", "freebsd", "emscripten", "ios", "iossimulator", "android"):  # Platform::is_unix
        out.append(("__unix", "0", "0"))
    if family == "linux":
        out += [("__linux", _DEFAULT_LINUX, ""), ("__glibc", _DEFAULT_GLIBC, "")]
    if family == "win":
        out.append(("__win", _DEFAULT_WINDOWS, ""))
    if family == "osx":
        out.append(("__osx", _DEFAULT_MACOS, ""))
    if subdir in _ARCHSPEC:
        out.append(("__archspec", "0", _ARCHSPEC[subdir]))
    return out


def _same(a: VirtualPackage, b: VirtualPackage) -> bool:
    if a[0] != b[0] or a[2] != b[2]:
        return False
    try:
        return Version(a[1]) == Version(b[1])
    except VersionError:
        return a[1] == b[1]


def customised(packages: Iterable[VirtualPackage], subdir: str) -> list[VirtualPackage]:
    """The packages that are not the subdir's defaults, sorted by name: a platform's identity."""
    defaults = subdir_defaults(subdir)
    return sorted((p for p in packages if not any(_same(p, d) for d in defaults)), key=lambda p: p[0])


def parse_locked(raw: str) -> VirtualPackage | None:
    """`__name=version[=build]` as pixi.lock stores it (None when it does not parse, as in pixi)."""
    parts = raw.split("=", 2)
    if len(parts) < 2 or not parts[0]:
        return None
    try:
        Version(parts[1])
    except VersionError:
        return None
    return (parts[0].lower(), parts[1], parts[2] if len(parts) == 3 else "")


def same_identity(a: list[VirtualPackage], b: list[VirtualPackage]) -> bool:
    return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))


@dataclass(frozen=True)
class ManifestPlatform:
    """A workspace platform: its name (what features, targets and the lock call it), conda subdir and
    declared virtual packages."""

    name: str
    subdir: str
    declared: tuple[VirtualPackage, ...] = ()

    @property
    def is_subdir_platform(self) -> bool:
        return self.name == self.subdir

    def identity(self) -> list[VirtualPackage]:
        return customised(self.declared, self.subdir)


def manifest_platform(entry: Any) -> ManifestPlatform | None:
    """One `workspace.platforms` entry (a subdir string or a table); None when it is neither."""
    if isinstance(entry, str):
        return ManifestPlatform(entry, entry)
    if not isinstance(entry, dict):
        return None
    name, subdir = entry.get("name"), entry.get("platform")
    subdir = subdir if isinstance(subdir, str) else name
    if not isinstance(subdir, str):
        return None
    declared: list[VirtualPackage] = []
    cuda = entry.get("cuda")
    if isinstance(cuda, str):
        declared.append(("__cuda", cuda, ""))
    elif isinstance(cuda, dict):
        if isinstance(cuda.get("driver"), str):
            declared.append(("__cuda", cuda["driver"], ""))
        if isinstance(cuda.get("arch"), str):
            declared.append(("__cuda_arch", cuda["arch"], ""))
    for key, value in entry.items():
        key = _ALIASES.get(key, key)
        friendly = next((f for f in FRIENDLY if f[0] == key and key != "cuda"), None)
        if friendly is not None and isinstance(value, str):
            declared.append((friendly[1], "0", value) if friendly[2] == "microarch" else (friendly[1], value, ""))
        elif key.startswith("__") and isinstance(value, str):
            version, _, build = value.partition("=")
            declared.append((key.lower(), version, build))
    if not isinstance(name, str):
        name = synthesized_name(subdir, declared)
    return ManifestPlatform(name, subdir, tuple(declared))


def synthesized_name(subdir: str, declared: Iterable[VirtualPackage]) -> str:
    """pixi's name for a platform table without `name`: the subdir, then `key-value` of each
    customised virtual package (friendly keys in canonical order, then raw ones by name)."""
    custom = customised(declared, subdir)
    parts = [subdir]
    used: set[str] = set()
    for key, conda_name, kind in FRIENDLY:
        package = next((p for p in custom if p[0] == conda_name), None)
        if package is None:
            continue
        if kind == "version" and package[2] not in ("", "0"):
            continue
        if kind == "microarch" and not (package[1] == "0" and package[2]):
            continue
        used.add(conda_name)
        parts.append(f"{key}-{_segment(package[2] if kind == 'microarch' else package[1])}")
    for name, version, build in custom:
        if name in used:
            continue
        value = version if build in ("", "0") else f"{version}={build}"
        parts.append(f"{_segment(name.lstrip('_'))}-{_segment(value)}")
    return "-".join(parts)


def _segment(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def platform_renames(locked: dict[str, tuple[str, tuple[str, ...]]],
                     manifest: list[ManifestPlatform]) -> dict[str, str]:
    """pixi's `compute_renames`: locked name → manifest name, for every locked platform (name →
    (subdir, virtual packages as the lock writes them)) that matches exactly one manifest platform by
    identity, where the manifest name is not taken by another locked platform and the locked name is
    not itself a manifest platform's name."""
    renames: dict[str, str] = {}
    manifest_names = {p.name for p in manifest}
    for locked_name, (subdir, raw_packages) in locked.items():
        identity = customised([p for p in map(parse_locked, raw_packages) if p is not None], subdir)
        matching = [p for p in manifest if p.subdir == subdir and same_identity(p.identity(), identity)]
        if len(matching) != 1:
            continue
        target = matching[0].name
        if target == locked_name or target in locked or locked_name in manifest_names:
            continue
        renames[locked_name] = target
    return renames
