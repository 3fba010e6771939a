"""The one-shot commands' wheel building (`pixibuild pack`, `pixibuild image`): the same jobs and
steps as the wheel rules, run in order in this process, each skipped when the store already has its
result (a wheel built by an earlier run or by `doit` is reused, by key)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pixibuild.conda.records import PypiRecord
from pixibuild.errors import BuildError, InputError, PixibuildError
from pixibuild.inputs.project import Project, Resolved
from pixibuild.net.config import NetConfig
from pixibuild.pypi import git
from pixibuild.pypi.build import build_wheel
from pixibuild.pypi.buildenv import prepare_build_env, read_choice
from pixibuild.pypi.plan import plan_wheels
from pixibuild.pypi.sources import GitSource, SdistSource
from pixibuild.pypi.wheels import WheelRef, is_built, resolve

if TYPE_CHECKING:
    from pixibuild.store.fetch import Fetcher

log = logging.getLogger(__name__)


def build_target_wheels(project: Project, target: Resolved, *, fetcher: "Fetcher", net: NetConfig,
                        hint: str = "") -> list[tuple[PypiRecord, Path]]:
    """Wheels for every PyPI source of `target`, built now unless the store has them. `hint` is
    appended to a failure (the command's way to skip sources instead)."""
    store_root = fetcher.store.root
    lock_dir = project.lock_path.parent
    out = []
    for job in plan_wheels(project, target, net=net, exclude=[store_root]):
        try:
            if is_built(store_root, job.key):
                out.append(resolve(store_root, WheelRef(job.key, job.record.name)))
                continue
            if isinstance(job.source, SdistSource):
                fetcher.fetch_one(job.record, lock_dir)
            elif isinstance(job.source, GitSource):
                git.checkout(job.source, store_root, net=net, what=job.where)
            try:
                read_choice(store_root, job)  # prepared by an earlier run, and its python still there
            except BuildError:
                prepare_build_env(job, store_root, net=net, blobs=lambda records: fetcher.fetch_all(records, lock_dir))
            log.info("building %s from %s", job.record.name, job.record.location)
            out.append(build_wheel(job, store_root))
        except PixibuildError as exc:
            if not hint:
                raise
            kind = InputError if isinstance(exc, InputError) else BuildError  # same exit code, one line
            raise kind(f"{exc} {hint}") from None
    return out
