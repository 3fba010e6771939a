"""Plan the wheels a target needs built: one `WheelJob` per locked PyPI source, with its keys.

Wheel key = the source (tree digest, sdist hash or git commit) + the build environment's key + the
target's python tag + SOURCE_DATE_EPOCH. Build-environment key = what decides the build requirements
(a tree's pyproject.toml/setup.py/setup.cfg; an sdist's or commit's identity) + the locked
environments that may provide them (their record digests) + the index an isolated one would come from
+ the interpreter it would be made from. So a code edit changes only the wheel key, and a new backend
version in the lock changes both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from pixibuild import __version__
from pixibuild.conda.platforms import current_subdir
from pixibuild.files.digest import json_digest
from pixibuild.inputs.project import Project, Resolved
from pixibuild.install.noarch import environment_python_version
from pixibuild.net.auth import storage_key
from pixibuild.net.config import NetConfig
from pixibuild.pypi.requirements import read_requirements
from pixibuild.pypi.identity import builder_python
from pixibuild.pypi.hooks import source_date_epoch
from pixibuild.pypi.index import index_config
from pixibuild.pypi.jobs import LockedEnv, WheelJob
from pixibuild.pypi.sources import GitSource, SdistSource, TreeSource, source_of
from pixibuild.pypi.tree import requirement_files_digest, snapshot

WHEEL_FORMAT = 1
"""Bumped when the wheel step's output changes (normalisation, checks), so every wheel key changes."""


def locked_candidates(project: Project, target_env: str, host: str) -> list[LockedEnv]:
    """Environments of the lock for this machine's platform that have a python: the target's own
    first, then `default`, then the others by name (each distinct set of packages once)."""
    order = list(dict.fromkeys([target_env, "default", *project.environments()]))
    out: list[LockedEnv] = []
    seen: set[str] = set()
    for env in order:
        resolved = project.resolved.get((env, host))
        if resolved is None or any(r.is_source for r in resolved.conda):
            continue
        python = environment_python_version(resolved.conda)
        if python is None:
            continue
        wheels = [(w, d) for w, d in zip(resolved.pypi, resolved.pypi_digests) if w.is_wheel and not w.editable]
        digest = json_digest(["locked-env", host, sorted(resolved.conda_digests), sorted(d for _, d in wheels)])
        if digest in seen:
            continue
        seen.add(digest)
        out.append(LockedEnv(env=env, platform=host, conda=resolved.conda, wheels=tuple(w for w, _ in wheels),
                             digest=digest, python_version=python))
    return out


def python_tag(target: Resolved) -> str:
    version = environment_python_version(target.conda)
    return f"cp{version.replace('.', '')}" if version else "py3"


def plan_wheels(project: Project, target: Resolved, *, net: NetConfig | None = None,
                exclude: Iterable[str | Path] = ()) -> list[WheelJob]:
    """A job per PyPI source of `target` (none for plain wheels). `exclude`: directories inside a
    source tree that are not source (the build dir, the package store)."""
    lock_dir = project.lock_path.parent
    sources = [(r, source_of(r, lock_dir)) for r in target.pypi]
    sources = [(r, s) for r, s in sources if s is not None]
    if not sources:
        return []
    host = current_subdir()
    candidates = locked_candidates(project, target.env, host)
    index = index_config(target.pypi_indexes, net if net is not None else NetConfig.load(project_root=project.root))
    epoch = source_date_epoch()
    target_python = environment_python_version(target.conda)
    exclude = [Path(p) for p in exclude] + [project.root / ".pixi"]
    jobs = []
    for record, source in sources:
        snap = None
        rejected: tuple[str, ...] = ()
        requirements: list[str] | None = None
        usable = list(candidates)
        if isinstance(source, TreeSource):
            snap = snapshot(source.path, exclude=exclude)
            source_id = snap.digest
            requires_id = requirement_files_digest(source.path)
            requirements = read_requirements(source.path, f"pypi package {record.name} ({record.location})")
            usable = [c for c in candidates if not c.unmet(requirements)][:1]
            rejected = tuple(f"'{c.env}' lacks {', '.join(c.unmet(requirements))}" for c in candidates
                             if c.unmet(requirements))
        elif isinstance(source, SdistSource):
            source_id = record.sha256 or json_digest([storage_key(record.location), record.md5])
            requires_id = source_id
        else:
            assert isinstance(source, GitSource)
            source_id = json_digest([storage_key(source.url), source.commit, source.subdirectory])
            requires_id = source_id
        env_key = json_digest([__version__, WHEEL_FORMAT, "buildenv", requires_id, [c.digest for c in usable],
                               index.identity, builder_python()])
        key = json_digest([__version__, WHEEL_FORMAT, "wheel", source_id, env_key, python_tag(target),
                           target.platform, epoch, record.name, record.version])
        jobs.append(WheelJob(record=record, source=source, source_id=source_id, key=key, env_key=env_key,
                             candidates=tuple(usable), index=index,
                             requirements=tuple(requirements) if requirements is not None else None,
                             target_platform=target.platform, target_python=target_python, epoch=epoch,
                             lock_dir=lock_dir, snapshot=snap, rejected=rejected))
    return jobs

