"""Graph benchmark: a generated 1,000-package / 20-project workspace run through doit.

Prints `doit list` time, cold full build, no-op run (goal < 1 s), and the run after one package
changed in one lock (tasks executed, by kind), as numbers and ratios.

    .venv/bin/python bench/graph.py [--packages 1000] [--projects 20] [--jobs 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchlib import run_doit, write_dodo

from pixibuild.demo.synthetic import bump_package, write_workspace


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--packages", type=int, default=1000)
    ap.add_argument("--projects", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="work dir to keep (default: a temp dir, removed)")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="pixibuild-bench-graph-"))
    env = {"PIXIBUILD_CACHE_DIR": str(work / "store"), "PIXIBUILD_BUILD_DIR": str(work / "build")}
    try:
        t = time.perf_counter()
        projects = write_workspace(work, n_packages=args.packages, n_projects=args.projects)
        print(f"generate workspace: {time.perf_counter() - t:.2f} s ({args.packages} packages, {len(projects)} projects)")
        write_dodo(work)
        listing = run_doit(work, "list", "--all", env=env)
        n_tasks = len([l for l in listing.output.splitlines() if l.strip()])
        print(f"doit list (first, parses locks): {listing.seconds:.2f} s, {n_tasks} tasks")
        listing = run_doit(work, "list", "--all", env=env)
        print(f"doit list (lock cache warm):     {listing.seconds:.2f} s")
        cold = run_doit(work, "-n", str(args.jobs), "-P", "thread", env=env)
        assert cold.returncode == 0, cold.output[-2000:]
        kinds = collections.Counter(n.split(":")[0] for n in cold.executed)
        store_mb = sum(f.stat().st_size for f in (work / "store").rglob("*") if f.is_file()) / 1e6
        print(f"cold full build:  {cold.seconds:.2f} s, {len(cold.executed)} actions {dict(kinds)}, store {store_mb:.0f} MB")
        noop = run_doit(work, "-n", str(args.jobs), "-P", "thread", env=env)
        assert noop.returncode == 0 and not noop.executed, noop.output[-2000:]
        print(f"no-op run:        {noop.seconds:.2f} s, {len(noop.executed)} actions (goal < 1 s)")
        bump_package(projects[0], _some_package(projects[0]))
        change = run_doit(work, "-n", str(args.jobs), "-P", "thread", env=env)
        assert change.returncode == 0, change.output[-2000:]
        kinds = collections.Counter(n.split(":")[0] for n in change.executed)
        print(f"one-package change: {change.seconds:.2f} s, {len(change.executed)} actions {dict(kinds)}")
        print(f"ratio cold/no-op: {cold.seconds / noop.seconds:.1f}x; cold/one-change: {cold.seconds / change.seconds:.1f}x")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _some_package(project: Path) -> str:
    """A package that is a root of the project (its [dependencies]), so others may share it."""
    for line in (project / "pixi.toml").read_text().splitlines():
        if line.startswith('"pkg'):
            return line.split('"')[1]
    raise SystemExit("no package found")


if __name__ == "__main__":
    sys.exit(main())
