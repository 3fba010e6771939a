"""Show the packages a pixi.lock pins for one environment and platform.

`pixibuild lock-info [MANIFEST_PATH] -e ENV -p PLATFORM [--json] [--locked]`: name, version,
build, url and sha256 per package, conda packages first, then PyPI. MANIFEST_PATH is a pixi.toml /
pyproject.toml or the directory holding it (default: the current directory); the lock is the
`pixi.lock` next to it. With `--locked` the lock must also satisfy the manifest.
"""

from __future__ import annotations

import argparse
import json
import sys

from pixibuild.commands.args import add_target_arguments, manifest_arg
from pixibuild.errors import InputError
from pixibuild.net.auth import redact_url  # credentials written into a lock's URLs are never printed
from pixibuild.inputs.lockfile import read_lock
from pixibuild.inputs.locked import check_locked
from pixibuild.inputs.manifest import find_manifest, read_manifest
from pixibuild.inputs.project import aligned_lock



def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser, verb="show")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--locked", action="store_true",
                        help="fail unless the lock satisfies the manifest (like `pixi install --locked`)")


def run(args: argparse.Namespace) -> int:
    manifest_path = find_manifest(manifest_arg(args))
    lock_path = manifest_path.parent / "pixi.lock"
    lock = read_lock(lock_path)
    manifest = None
    try:  # named platforms (p1, p2… in a v7 lock) go by the manifest's names, as in pixi
        manifest = read_manifest(manifest_path)
        lock = aligned_lock(lock, manifest)
    except InputError:
        if args.locked:
            raise
    platform = args.platform
    env = lock.environment(args.environment)
    conda = env.conda_packages(platform)
    pypi = env.pypi_packages(platform)
    if args.locked:
        check_locked(manifest, lock, args.environment, platform)

    rows = [{"kind": "conda", "name": r.name, "version": r.version, "build": r.build, "url": redact_url(r.url),
             "sha256": r.sha256, "source": r.is_source} for r in conda]
    rows += [{"kind": "pypi", "name": r.name, "version": r.version, "build": "", "url": redact_url(r.location),
              "sha256": r.sha256, "editable": r.editable} for r in pypi]
    out = sys.stdout
    if args.json:
        json.dump({"lock": str(lock_path), "lock_version": lock.version, "environment": args.environment,
                   "platform": platform, "subdir": env.subdir(platform), "channels": env.channels,
                   "packages": rows}, out, indent=2, sort_keys=True)
        out.write("\n")
        return 0
    out.write(f"# {lock_path} (v{lock.version}) environment {args.environment}, platform {platform}: "
              f"{len(conda)} conda, {len(pypi)} pypi\n")
    widths = [max([len(str(row[key])) for row in rows] + [len(key)]) for key in ("name", "version", "build")]
    for row in rows:
        out.write(f"{row['name']:<{widths[0]}}  {row['version']:<{widths[1]}}  {row['build']:<{widths[2]}}  "
                  f"{row['url']}  {row['sha256'] or '-'}\n")
    return 0
