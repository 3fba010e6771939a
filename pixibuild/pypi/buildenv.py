"""The Python a wheel is built with, and the build requirements around it.

First choice: an environment of the lock, for this machine's platform, whose packages satisfy the
project's build requirements (pixi-docker's `build` feature locks `build` + `flit-core`): installed
with pixibuild's own installer from verified store blobs into `<store>/pypi/envs/locked-<digest>`,
its `bin/python` runs the backend. Else an isolated environment: a venv of the interpreter running
pixibuild with the requirements pip-installed (wheels only) from the configured index
(`pixibuild.pypi.index`), kept in `<store>/pypi/envs/isolated-<hash>` for the same requirements,
index and interpreter. With neither, one error says what is missing and where it was looked for.

Preparing the environment is the build-environment node's action — the only step of a wheel build
that may touch the network — and its decision is written beside it, so the wheel node only reads.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import venv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from build import BuildBackendException, BuildException, ProjectBuilder
from packaging.requirements import InvalidRequirement, Requirement

from pixibuild.conda.platforms import current_subdir
from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.errors import BuildError, InputError
from pixibuild.files.atomic import atomic_directory, atomic_write_bytes
from pixibuild.files.digest import canonical_json, json_digest
from pixibuild.install.environment import install_environment
from pixibuild.net.config import NetConfig
from pixibuild.pypi.hooks import LoggedRunner, backend_environment, log_tail
from pixibuild.pypi.identity import builder_python
from pixibuild.pypi.index import pip_environment
from pixibuild.pypi.jobs import LockedEnv, WheelJob
from pixibuild.pypi.requirements import choice_path, read_requirements
from pixibuild.pypi.workdir import materialize
from pixibuild.store.blobs import Store
from pixibuild.store.roots import pypi_root

Blobs = Callable[[Sequence[CondaRecord | PypiRecord]], list[Path]]
"""Verified store paths for records: read from the store in the graph, fetched by the one-shot commands."""
PIP_TIMEOUT = 1800


@dataclass(frozen=True)
class BuildEnv:
    """The decision of a build-environment node, read by its wheel node."""

    kind: str
    """"locked" or "isolated"."""
    python: str
    bin_dir: str
    description: str

    def to_json(self) -> bytes:
        return canonical_json(asdict(self))


def read_choice(store_root: str | Path, job: WheelJob) -> BuildEnv:
    path = choice_path(store_root, job.env_key)
    try:
        data = json.loads(path.read_bytes())
        choice = BuildEnv(**data)
    except (OSError, ValueError, TypeError):
        raise BuildError("no build environment prepared (its buildenv node has not run)", field=job.where) from None
    if not Path(choice.python).exists():
        raise BuildError(f"build environment python {choice.python} is gone (run the build again)", field=job.where)
    return choice


# -- locked environments ---------------------------------------------------------------------------
def locked_env_dir(store_root: str | Path, env: LockedEnv) -> Path:
    return pypi_root(store_root) / "envs" / f"locked-{env.digest[:32]}"


def install_locked_env(env: LockedEnv, store_root: str | Path, blobs: Blobs) -> Path:
    """The locked environment installed for this machine (once per content); returns its prefix."""
    prefix = locked_env_dir(store_root, env)
    if (prefix / "conda-meta").is_dir():
        return prefix
    conda_paths = blobs(env.conda)
    wheel_paths = blobs(env.wheels) if env.wheels else []
    with Store(store_root).lock(f"pypi-env-{env.digest}"):
        if (prefix / "conda-meta").is_dir():
            return prefix
        with atomic_directory(prefix) as staging:
            install_environment(list(zip(env.conda, conda_paths)), staging, target_prefix=str(prefix),
                                wheels=list(zip(env.wheels, wheel_paths)), platform=env.platform)
    return prefix


def _locked_python(prefix: Path, env: LockedEnv) -> Path:
    for name in (f"bin/python{env.python_version}", "bin/python3", "bin/python"):
        if (prefix / name).exists():
            return prefix / name
    raise BuildError(f"{env.describe()} has no bin/python after installing it")


# -- isolated environments -------------------------------------------------------------------------
def isolated_env_dir(store_root: str | Path, requirements: Sequence[str], job: WheelJob) -> Path:
    key = json_digest(["isolated", sorted(requirements), job.index.identity, builder_python()])
    return pypi_root(store_root) / "envs" / f"isolated-{key[:32]}"


def _venv_python(prefix: Path) -> Path:
    return prefix / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def create_isolated_env(requirements: Sequence[str], job: WheelJob, store_root: str | Path,
                        net: NetConfig | None, rejected: Sequence[str] = ()) -> Path:
    """A venv with `requirements` installed from the job's index (kept for the same inputs)."""
    prefix = isolated_env_dir(store_root, requirements, job)
    if (prefix / ".pixibuild-complete").is_file():
        return prefix
    has_pip = importlib.util.find_spec("pip") is not None
    with Store(store_root).lock(f"pypi-env-{prefix.name}"):
        if (prefix / ".pixibuild-complete").is_file():
            return prefix
        with atomic_directory(prefix) as staging, tempfile.TemporaryDirectory(prefix="pip-") as tmp:
            try:
                venv.EnvBuilder(symlinks=os.name != "nt", with_pip=not has_pip).create(staging)
            except (OSError, subprocess.CalledProcessError) as exc:
                raise BuildError(f"cannot create an isolated build environment: {exc}", field=job.where) from None
            python = _venv_python(staging)
            pip = [sys.executable, "-m", "pip", "--python", str(python)] if has_pip else [str(python), "-m", "pip"]
            req_file = Path(tmp) / "requirements.txt"
            req_file.write_text("\n".join(requirements) + "\n")
            env = pip_environment(job.index, net, cache_dir=pypi_root(store_root) / "pip-cache", work_dir=Path(tmp))
            cmd = [*pip, "install", "--only-binary=:all:", "--no-warn-script-location", "--no-compile",
                   "--progress-bar", "off", "-r", str(req_file)]
            try:
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                      timeout=PIP_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise BuildError(f"installing build requirements timed out after {PIP_TIMEOUT}s",
                                 field=job.where) from None
            if proc.returncode != 0:
                lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines()
                         if line.strip().startswith("ERROR")] or [(proc.stderr or proc.stdout).strip()[-300:]]
                why = "; ".join(rejected) or f"the lock has no environment with python for {current_subdir()}"
                raise BuildError(
                    f"build requirements {', '.join(requirements)} are in no locked environment for "
                    f"{current_subdir()} ({why}), and cannot be installed from "
                    f"{job.index.describe()}: {lines[-1]}", field=job.where)
            (staging / ".pixibuild-complete").write_text("\n".join(requirements) + "\n")
    return prefix


# -- the node's action -----------------------------------------------------------------------------
def _dynamic_requirements(job: WheelJob, store_root: str | Path, python: Path, bin_dir: Path,
                          log: Path) -> list[str]:
    """What the backend asks for on top of [build-system] requires (get_requires_for_build_wheel),
    asked on a copy of the source (setuptools writes egg-info while answering)."""
    env = backend_environment(bin_dir=str(bin_dir), epoch=job.epoch, name=job.record.name, version=job.record.version)
    with tempfile.TemporaryDirectory(prefix="pixibuild-requires-") as tmp:
        src = materialize(job, store_root, Path(tmp))
        try:
            builder = ProjectBuilder(src, python_executable=str(python), runner=LoggedRunner(log, env))
            return sorted(builder.get_requires_for_build("wheel"))
        except (BuildBackendException, BuildException) as exc:
            tail = log_tail(log)
            raise BuildError(f"the build backend failed to report its requirements ({exc})"
                             + (f": {tail}" if tail else ""), field=job.where) from None


def prepare_build_env(job: WheelJob, store_root: str | Path, *, net: NetConfig | None, blobs: Blobs) -> BuildEnv:
    """Decide (and install) the environment `job` builds in; the decision is written for the wheel node."""
    store_root = Path(store_root)
    log = pypi_root(store_root) / "logs" / f"buildenv-{job.label}-{job.env_key[:12]}.log"
    log.unlink(missing_ok=True)
    requirements = list(job.requirements) if job.requirements is not None else None
    if requirements is None:
        with tempfile.TemporaryDirectory(prefix="pixibuild-src-") as tmp:
            requirements = read_requirements(materialize(job, store_root, Path(tmp)), job.where)
    for text in requirements:
        try:
            Requirement(text)
        except InvalidRequirement as exc:
            raise InputError(f"bad build requirement {text!r}: {exc}", field=job.where) from None
    choice: BuildEnv | None = None
    rejected = list(job.rejected)
    for candidate in job.candidates:
        if candidate.unmet(requirements):
            rejected.append(f"'{candidate.env}' lacks {', '.join(candidate.unmet(requirements))}")
            continue
        prefix = install_locked_env(candidate, store_root, blobs)
        python = _locked_python(prefix, candidate)
        dynamic = _dynamic_requirements(job, store_root, python, prefix / "bin", log)
        if candidate.unmet(dynamic):
            rejected.append(f"'{candidate.env}' lacks {', '.join(candidate.unmet(dynamic))} (asked for by the backend)")
            continue
        choice = BuildEnv("locked", str(python), str(prefix / "bin"), candidate.describe(requirements + dynamic))
        break
    if choice is None:
        prefix = create_isolated_env(requirements, job, store_root, net, rejected)
        python = _venv_python(prefix)
        dynamic = [r for r in _dynamic_requirements(job, store_root, python, python.parent, log)
                   if r not in requirements]
        if dynamic:
            prefix = create_isolated_env(sorted(set(requirements) | set(dynamic)), job, store_root, net, rejected)
            python = _venv_python(prefix)
        choice = BuildEnv("isolated", str(python), str(python.parent),
                          f"isolated environment ({', '.join(sorted(set(requirements) | set(dynamic)))} "
                          f"from {job.index.describe()})")
    atomic_write_bytes(choice_path(store_root, job.env_key), choice.to_json(), fsync=False)
    return choice

