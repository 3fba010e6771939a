"""A source tree's static build requirements and where its build-environment decision is kept: what
planning a wheel node needs, without the build frontend's environment code (the installer, venv, pip
settings: ~45 ms of imports in every planning process, python -X importtime)."""

from __future__ import annotations

from pathlib import Path

from pixibuild.errors import InputError
from pixibuild.store.roots import pypi_root


def read_requirements(source_dir: Path, where: str) -> list[str]:
    """The static build requirements ([build-system] requires, or PEP 517's setuptools default), as
    PyPA build reads and validates them (imported here, on first use: ~25 ms)."""
    from build import BuildException, ProjectBuilder

    try:
        return sorted(ProjectBuilder(source_dir).build_system_requires)
    except BuildException as exc:
        raise InputError(f"bad [build-system] table: {exc}", field=where) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the build system: {exc}", field=where) from None


def choice_path(store_root: str | Path, env_key: str) -> Path:
    """Where the build-environment node writes which Python builds the wheels of `env_key`."""
    return pypi_root(store_root) / "envs" / f"choice-{env_key}.json"
