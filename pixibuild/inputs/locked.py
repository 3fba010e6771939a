"""`--locked`: refuse to build from a lock that no longer satisfies the manifest, like
`pixi install --locked`. Checked: the environment and platform exist in the lock, the lock's
channels are the manifest's, and every conda / PyPI dependency the manifest names for that
environment and platform is pinned by a package of that name whose version satisfies the spec.

Why: building from a stale lock would silently ship something other than what the manifest says.
"""

from __future__ import annotations

import re
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion
from packaging.version import Version as Pep440Version

from pixibuild.conda.platforms import platform_machine
from pixibuild.conda.version import MatchSpec, VersionError
from pixibuild.errors import InputError
from pixibuild.inputs.lockfile import LockFile
from pixibuild.inputs.manifest import Manifest
from pixibuild.conda.records import CondaRecord, PypiRecord

_SOURCE_KEYS = ("path", "git", "url")
_DEFAULT_CHANNEL_HOST = "https://conda.anaconda.org/"


def normalize_pypi_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def channel_url(channel: str) -> str:
    """`conda-forge` → `https://conda.anaconda.org/conda-forge` (how pixi expands channel names)."""
    channel = channel.strip()
    if "://" not in channel:
        channel = _DEFAULT_CHANNEL_HOST + channel
    return channel.rstrip("/")


def check_locked(manifest: Manifest, lock: LockFile, env: str, platform: str) -> None:
    """Raise InputError (one line, listing every problem) unless `lock` satisfies `manifest` for
    `env` on `platform`."""
    manifest.environment(env)
    if platform not in manifest.environment_platforms(env):
        known = ", ".join(manifest.environment_platforms(env)) or "none"
        raise InputError(f"environment {env!r} has no platform {platform!r} (manifest has: {known})",
                         path=manifest.path, field="platforms")
    locked_env = lock.environment(env)
    if platform in locked_env.platforms:
        conda = locked_env.conda_packages(platform)
        pypi = locked_env.pypi_packages(platform)
    else:  # locks leave out platforms without packages; any dependency is then reported missing
        conda, pypi = [], []
        if lock.platforms and platform not in lock.platforms:
            known = ", ".join(lock.platforms)
            raise InputError(f"lock has no platform {platform!r} (lock has: {known}; run `pixi lock`)",
                             path=lock.path, field="platforms")

    problems: list[str] = []
    wanted_channels = [channel_url(c) for c in manifest.environment_channels(env)]
    have_channels = [channel_url(c) for c in locked_env.channels]
    if wanted_channels and wanted_channels != have_channels:
        problems.append(f"channels {wanted_channels} but lock has {have_channels}")
    problems += _conda_problems(manifest.dependencies(env, platform), conda, manifest)
    problems += _pypi_problems(manifest.pypi_dependencies(env, platform), pypi, conda, manifest)
    if problems:
        raise InputError(f"lock does not satisfy {manifest.path.name} for environment {env!r} on "
                         f"{platform}: {'; '.join(problems)} (run `pixi lock`)",
                         path=lock.path, field="--locked")


def _conda_problems(deps: dict[str, Any], records: list[CondaRecord], manifest: Manifest) -> list[str]:
    by_name: dict[str, list[CondaRecord]] = {}
    for record in records:
        by_name.setdefault(record.name.lower(), []).append(record)
    problems = []
    for name, spec in deps.items():
        bare_name = name.split("::")[-1].lower()
        candidates = by_name.get(bare_name)
        if not candidates:
            problems.append(f"missing conda package {bare_name}")
            continue
        if isinstance(spec, dict) and any(k in spec for k in _SOURCE_KEYS) or _is_location(spec):
            continue  # a source / local / direct-URL package: pinned by name, not by version
        text = _conda_spec_text(spec, name, manifest)
        try:
            match = MatchSpec.parse(f"{bare_name} {text}".strip())
        except VersionError as exc:
            raise InputError(f"invalid spec for {name}: {exc}", path=manifest.path, field="dependencies") from None
        if not any(r.is_source or match.matches(r.name, r.version, r.build) for r in candidates):
            found = ", ".join(f"{r.version} {r.build}" for r in candidates)
            problems.append(f"{bare_name} {text} but lock has {found}")
    return problems


def _is_location(spec: Any) -> bool:
    """A string spec that is a URL or a path to an archive (`pkg = "https://.../pkg-1-0.conda"`)."""
    return isinstance(spec, str) and ("/" in spec or "\\" in spec or spec.endswith((".conda", ".tar.bz2")))


def _conda_spec_text(spec: Any, name: str, manifest: Manifest) -> str:
    if isinstance(spec, str):
        return "" if spec.strip() == "*" else spec.strip()
    if isinstance(spec, dict):
        version = str(spec.get("version", "*")).strip()
        build = spec.get("build")
        text = "" if version == "*" else version
        if build:
            text = f"{text or '*'} {build}"
        return text
    raise InputError(f"invalid dependency spec {spec!r}", path=manifest.path, field=f"dependencies.{name}")


_SYS_PLATFORM = {"linux": ("linux", "Linux", "posix"), "osx": ("darwin", "Darwin", "posix"),
                 "win": ("win32", "Windows", "nt")}


def _marker_environment(conda: list[CondaRecord], extra: str) -> dict[str, str] | None:
    """PEP 508 marker variables of the locked environment (python from the lock, platform from
    the packages' subdir); None when the lock has no python to evaluate markers against."""
    python = next((r for r in conda if r.name == "python"), None)
    if python is None:
        return None
    subdir = next((r.subdir for r in conda if r.subdir != "noarch"), python.subdir)
    sys_platform, system, os_name = _SYS_PLATFORM.get(subdir.split("-")[0], ("linux", "Linux", "posix"))
    major_minor = ".".join(python.version.split(".")[:2])
    return {"python_version": major_minor, "python_full_version": python.version, "os_name": os_name,
            "sys_platform": sys_platform, "platform_system": system,
            "platform_machine": platform_machine(subdir), "implementation_name": "cpython",
            "platform_python_implementation": "CPython", "platform_release": "", "platform_version": "",
            "implementation_version": python.version, "extra": extra}


def _extra_problems(record: PypiRecord, extras: list[str], by_name: dict, from_conda: dict,
                    conda: list[CondaRecord], manifest: Manifest) -> list[str]:
    """Requirements an extra adds (`ipython ; extra == 'jupyter'`) must be locked too."""
    # packaging's requirement/marker parsers cost 30-80 ms to import (python -X importtime); only locks
    # with PyPI extras get here, and planning a monorepo must not pay for them
    from packaging.markers import UndefinedEnvironmentName
    from packaging.requirements import InvalidRequirement, Requirement

    problems = []
    for extra in extras:
        environment = _marker_environment(conda, extra)
        if environment is None:
            return []
        for text in record.requires_dist:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue  # rattler would not have written it; nothing we can check
            if req.marker is None or "extra" not in str(req.marker):
                continue
            try:
                needed = req.marker.evaluate(environment)
            except UndefinedEnvironmentName:
                continue
            key = normalize_pypi_name(req.name)
            if needed and key not in by_name and key not in from_conda:
                problems.append(f"missing pypi package {req.name} (needed by {record.name}[{extra}])")
    return problems


def _pypi_problems(deps: dict[str, Any], records: list[PypiRecord], conda: list[CondaRecord],
                   manifest: Manifest) -> list[str]:
    by_name = {normalize_pypi_name(r.name): r for r in records}
    from_conda = {}
    for record in conda:
        for purl in record.extra.get("purls") or ():
            if isinstance(purl, str) and purl.startswith("pkg:pypi/"):
                from_conda[normalize_pypi_name(purl[len("pkg:pypi/"):].split("@")[0].split("?")[0])] = record
    problems = []
    for name, spec in deps.items():
        key = normalize_pypi_name(name)
        if isinstance(spec, dict) and spec.get("marker"):
            continue  # environment markers need the target interpreter: pixi decides at solve time
        record = by_name.get(key)
        if record is None:
            if key in from_conda:
                continue  # provided by a conda package (pixi's PyPI-conda mapping)
            problems.append(f"missing pypi package {name}")
            continue
        if isinstance(spec, dict) and spec.get("extras"):
            problems += _extra_problems(record, list(spec["extras"]), by_name, from_conda, conda, manifest)
        if isinstance(spec, dict) and any(k in spec for k in _SOURCE_KEYS):
            continue
        text = spec if isinstance(spec, str) else str(spec.get("version", "*")) if isinstance(spec, dict) else None
        if text is None:
            raise InputError(f"invalid dependency spec {spec!r}", path=manifest.path,
                             field=f"pypi-dependencies.{name}")
        text = text.strip()
        if text in ("", "*") or not record.version:
            continue
        try:
            ok = SpecifierSet(text).contains(Pep440Version(record.version), prereleases=True)
        except InvalidSpecifier:
            raise InputError(f"invalid version specifier {text!r} for {name}", path=manifest.path,
                             field="pypi-dependencies") from None
        except InvalidVersion:
            continue  # not a PEP 440 version (a VCS snapshot): nothing to compare
        if not ok:
            problems.append(f"{name} {text} but lock has {record.version}")
    return problems

