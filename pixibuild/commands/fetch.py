"""Download and verify every package of a locked environment into the global package store.

`pixibuild fetch [MANIFEST_PATH] -e ENV -p PLATFORM`: MANIFEST_PATH is a project directory, its
manifest (pixi.toml / pyproject.toml) or its pixi.lock. Conda archives and PyPI distributions are fetched
once per machine into the content-addressed store (--cache-dir, else $PIXIBUILD_CACHE_DIR, else the XDG
cache), verified against the lock's sha256 (else md5). Network settings come from pixi's config files;
credentials from --auth-file / $RATTLER_AUTH_FILE / ~/.netrc (the flags are those of `commands/args.py`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pixibuild.commands.args import (add_fetch_arguments, add_target_arguments, make_fetcher, manifest_arg,
                                     net_config, remote_cache)
from pixibuild.errors import InputError
from pixibuild.conda.platforms import current_subdir
from pixibuild.conda.records import CondaRecord, PypiRecord

Record = CondaRecord | PypiRecord  # (the fetcher, httpx and the store are imported in run(): a fast start)

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser, verb="fetch", lock_too=True, repeatable_platform=True)
    parser.add_argument("--all-platforms", action="store_true", help="every platform the environment locks")
    add_fetch_arguments(parser)
    parser.add_argument("--no-pypi", action="store_true", help="skip PyPI distributions")


def lock_path_for(path: Path) -> Path:
    """pixi keeps `pixi.lock` beside the manifest: accept the directory, the manifest or the lock."""
    if path.is_dir():
        lock = path / "pixi.lock"
    elif path.name.endswith(".lock"):
        lock = path
    elif path.exists():
        lock = path.parent / "pixi.lock"
    else:
        raise InputError("no such file or directory", path=path)
    if not lock.is_file():
        raise InputError("no pixi.lock here (run `pixi lock` first)", path=lock)
    return lock


def _fetchable(record: Record, base_dir: Path) -> bool:
    """Source packages and local source trees are built, not downloaded."""
    if isinstance(record, CondaRecord):
        return not record.is_source
    if record.editable or record.location.startswith("git+"):
        return False  # git sources are fetched at their commit by the build (pixibuild.pypi.git)
    return not (record.is_path and "://" not in record.location and (base_dir / record.location).is_dir())


def run(args: argparse.Namespace) -> int:
    from pixibuild.inputs.lockfile import read_lock  # the lock reader lives in its own module (lock helper)

    lock_path = lock_path_for(Path(manifest_arg(args)))
    env = read_lock(lock_path).environment(args.environment)
    platforms = list(env.platforms) if args.all_platforms else (args.platform or [current_subdir()])
    base_dir = lock_path.parent
    records: list[Record] = []
    skipped: list[str] = []
    for platform in platforms:
        packages: list[Record] = [*env.conda_packages(platform)]
        if not args.no_pypi:
            packages += env.pypi_packages(platform)
        for record in packages:
            if _fetchable(record, base_dir):
                records.append(record)
            else:
                skipped.append(record.dist_name if isinstance(record, CondaRecord) else record.name)
    if skipped:
        log.info("not fetched (built from source): %s", ", ".join(sorted(set(skipped))))
    net = net_config(args, base_dir)
    remote = remote_cache(args, base_dir, net)
    with make_fetcher(args, base_dir, net, remote) as fetcher:
        try:
            paths = fetcher.fetch_all(records, base_dir)
        finally:
            fetcher.store.close()
            if remote is not None:
                remote.close()
    stats, store = fetcher.stats, fetcher.store
    unique = len(set(paths))
    n_pypi = sum(isinstance(r, PypiRecord) for r in records)
    from_cache = f", {stats['remote']} from the remote cache" if remote is not None else ""
    print(f"{unique} packages ({len(records) - n_pypi} conda, {n_pypi} pypi records; {', '.join(platforms)}) "
          f"verified in {store.root}: {stats['downloaded']} downloaded, {stats['cached']} already there, "
          f"{stats['local']} local{from_cache}")
    return 0
