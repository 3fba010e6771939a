"""The planned work of building one locked PyPI source into a wheel: what the rules turn into nodes
and the one-shot commands run in order. Everything here is decided when the graph is loaded, from
the lock, the manifest and the source tree, without touching the network."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.pypi.index import IndexConfig
from pixibuild.pypi.sources import Source
from pixibuild.pypi.tree import TreeSnapshot


@dataclass(frozen=True)
class LockedEnv:
    """An environment of the lock, for this machine's platform, that can run a build backend."""

    env: str
    platform: str
    conda: tuple[CondaRecord, ...]
    wheels: tuple[PypiRecord, ...]
    digest: str
    python_version: str
    """"X.Y" of its python."""

    def provides(self) -> dict[str, tuple[str, str]]:
        """canonical PyPI name → (version, what): conda packages by their PyPI purl (else their own
        name, which conda-forge keeps equal to the PyPI name) and the locked wheels."""
        out: dict[str, tuple[str, str]] = {}
        for record in self.conda:
            names = [p[len("pkg:pypi/"):].split("@")[0].split("?")[0] for p in record.extra.get("purls") or ()
                     if isinstance(p, str) and p.startswith("pkg:pypi/")] or [record.name]
            for name in names:
                out.setdefault(canonicalize_name(name), (record.version, f"{record.name} {record.version}"))
        for wheel in self.wheels:
            out.setdefault(canonicalize_name(wheel.name), (wheel.version, f"{wheel.name} {wheel.version} (pypi)"))
        return out

    def unmet(self, requirements: list[str]) -> list[str]:
        """The requirements this environment does not satisfy (markers evaluated for its python)."""
        provided = self.provides()
        missing = []
        for text in requirements:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                missing.append(text)
                continue
            if req.marker is not None and not req.marker.evaluate({"python_version": self.python_version,
                                                                   "python_full_version": self.python_version + ".0"}):
                continue
            found = provided.get(canonicalize_name(req.name))
            if found is None or (req.specifier and not req.specifier.contains(found[0], prereleases=True)):
                missing.append(text)
        return missing

    def describe(self, requirements: list[str] | None = None) -> str:
        provided = self.provides()
        names = [provided[canonicalize_name(Requirement(r).name)][1] for r in requirements or ()
                 if canonicalize_name(Requirement(r).name) in provided]
        return f"locked environment '{self.env}' ({self.platform})" + (f": {', '.join(names)}" if names else "")


@dataclass(frozen=True)
class WheelJob:
    """One wheel to build: the lock's record, where its source is, and every key of its nodes."""

    record: PypiRecord
    source: Source
    source_id: str
    """Tree digest, sdist sha256 (or its URL when the lock has no hash) or git commit."""
    key: str
    """The wheel node's key: source, build environment, target python tag, SOURCE_DATE_EPOCH."""
    env_key: str
    """The build-environment node's key: what decides the requirements, the locked candidates, the index."""
    candidates: tuple[LockedEnv, ...]
    index: IndexConfig
    requirements: tuple[str, ...] | None
    """Static build requirements when known when planning (a local tree), else None."""
    target_platform: str
    target_python: str | None
    epoch: int
    lock_dir: Path
    snapshot: TreeSnapshot | None = None
    rejected: tuple[str, ...] = ()
    """Why the lock's environments cannot build it, when that is known when planning (a local tree)."""

    @property
    def label(self) -> str:
        return canonicalize_name(self.record.name)

    @property
    def node(self) -> str:
        return f"wheel:{self.label}@{self.key[:12]}"

    @property
    def env_node(self) -> str:
        return f"buildenv:{self.label}@{self.env_key[:12]}"

    @property
    def where(self) -> str:
        return f"pypi package {self.record.name} ({self.record.location})"
