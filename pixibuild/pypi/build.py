"""The wheel node's action: one PEP 517 build of a job's source, offline, in the environment its
build-environment node prepared; the result normalised, checked against the lock and the target,
and kept in the store under the job's key. A failed build leaves nothing but its log."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from build import BuildBackendException, BuildException, ProjectBuilder

from pixibuild.conda.platforms import current_subdir
from pixibuild.conda.records import PypiRecord
from pixibuild.errors import BuildError
from pixibuild.pypi.buildenv import read_choice
from pixibuild.pypi.hooks import LoggedRunner, backend_environment, log_tail
from pixibuild.pypi.jobs import WheelJob
from pixibuild.pypi.wheels import check_wheel, is_built, keep, normalize_wheel, resolve, WheelRef
from pixibuild.pypi.workdir import materialize
from pixibuild.store.roots import pypi_root


def log_path(store_root: str | Path, job: WheelJob) -> Path:
    return pypi_root(store_root) / "logs" / f"wheel-{job.label}-{job.key[:12]}.log"


def _python_version(python: str) -> str | None:
    try:
        out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=60)
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def build_wheel(job: WheelJob, store_root: str | Path) -> tuple[PypiRecord, Path]:
    """The built wheel of `job` (built now unless the store already has it for this key)."""
    ref = WheelRef(job.key, job.record.name)
    if is_built(store_root, job.key):
        return resolve(store_root, ref)
    env = read_choice(store_root, job)
    log = log_path(store_root, job)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"# {job.where}: building with {env.description}\n")
    environment = backend_environment(bin_dir=env.bin_dir, epoch=job.epoch, name=job.record.name,
                                      version=job.record.version)
    work_root = pypi_root(store_root) / "tmp"
    work_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wheel-", dir=work_root) as tmp:
        src = materialize(job, store_root, Path(tmp))
        out = Path(tmp) / "dist"
        try:
            builder = ProjectBuilder(src, python_executable=env.python, runner=LoggedRunner(log, environment))
            built = Path(builder.build("wheel", out))
        except (BuildBackendException, BuildException, subprocess.SubprocessError, OSError) as exc:
            tail = log_tail(log)
            raise BuildError(f"wheel build failed ({exc}); log {log}" + (f": {tail}" if tail else ""),
                             field=job.where) from None
        check_wheel(built.name, job.record, target_platform=job.target_platform, host_platform=current_subdir(),
                    target_python=job.target_python, builder_python=lambda: _python_version(env.python), where=job.where)
        final = Path(tmp) / "final" / built.name
        normalize_wheel(built, final, job.epoch)
        return keep(store_root, job.key, final, job.record)
