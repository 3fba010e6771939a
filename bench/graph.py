"""Graph benchmark: a generated monorepo (default 1,000 packages / 20 projects) run through doit.

Prints `doit list` time (first, with the lock and plan caches cold; then warm), the cold full build,
the no-op run (goal < 1 s at 5,000 packages / 100 projects = 6,303 tasks), and the run after one
package changed in one lock (tasks executed, by kind). Each warm measurement is repeated (`--repeats`)
and printed as min / median of wall seconds, with the doit process's own CPU seconds and peak RSS
(the CI machine runs other jobs: CPU time is the steadier number).

`--scale` builds three monorepos of ~1k, ~6k and ~20k tasks (small packages, so the cold builds stay
short) and prints the cost per task of a no-op run and of `doit list --all` at each size, and the
slope between sizes (what each extra task costs).

    .venv/bin/python bench/graph.py [--packages 1000] [--projects 20] [--jobs 2] [--repeats 3] [--keep DIR]
    .venv/bin/python bench/graph.py --scale [--keep DIR]
"""

from __future__ import annotations

import argparse
import collections
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchlib import DoitRun, run_doit, write_dodo

from pixibuild.demo.synthetic import bump_package, write_workspace

SCALES = ((1000, 20), (5000, 100), (16000, 320))
"""(packages, projects) giving ~1.3k, ~6.3k and ~20k tasks."""


def _summary(runs: list[DoitRun]) -> str:
    walls = [r.seconds for r in runs]
    cpus = [r.cpu for r in runs]
    return (f"{min(walls):.2f} / {statistics.median(walls):.2f} s wall (min / median of {len(runs)}), "
            f"cpu {min(cpus):.2f} s, peak RSS {max(r.rss_mb for r in runs):.0f} MB")


def _repeat(n: int, work: Path, *args: str, env: dict[str, str]) -> list[DoitRun]:
    runs = [run_doit(work, *args, env=env) for _ in range(n)]
    for run in runs:
        assert run.returncode == 0, run.output[-2000:]
    return runs


def _prepare(work: Path, packages: int, projects: int, median_kib: float) -> list[Path]:
    """Generate the workspace, or reuse the one a previous `--keep` run left there."""
    if (work / "projects").is_dir() and (work / "channel").is_dir():
        dirs = sorted(p for p in (work / "projects").iterdir() if (p / "pixi.lock").exists())
        print(f"reusing workspace {work} ({len(dirs)} projects)")
        return dirs
    t = time.perf_counter()
    dirs = write_workspace(work, n_packages=packages, n_projects=projects, median_kib=median_kib)
    print(f"generate workspace: {time.perf_counter() - t:.2f} s ({packages} packages, {len(dirs)} projects)")
    return dirs


def _env(work: Path, build: str) -> dict[str, str]:
    return {"PIXIBUILD_CACHE_DIR": str(work / "store"), "PIXIBUILD_BUILD_DIR": str(work / build)}


def standard(args: argparse.Namespace, work: Path) -> None:
    projects = _prepare(work, args.packages, args.projects, 48.0)
    write_dodo(work)
    env = _env(work, args.build_dir)
    first = run_doit(work, "list", "--all", env=env)
    assert first.returncode == 0, first.output[-2000:]
    n_tasks = len([line for line in first.output.splitlines() if line.strip() and not line.startswith("pixibuild:")])
    print(f"doit list (first: caches cold):  {first.seconds:.2f} s wall, cpu {first.cpu:.2f} s, "
          f"peak RSS {first.rss_mb:.0f} MB, {n_tasks} tasks")
    print(f"doit list (caches warm):         {_summary(_repeat(args.repeats, work, 'list', '--all', env=env))}")
    cold = run_doit(work, "-n", str(args.jobs), "-P", "thread", env=env)
    assert cold.returncode == 0, cold.output[-2000:]
    kinds = collections.Counter(n.split(":")[0] for n in cold.executed)
    store_mb = sum(f.stat().st_size for f in (work / "store").rglob("*") if f.is_file()) / 1e6
    print(f"cold full build:  {cold.seconds:.2f} s, {len(cold.executed)} actions {dict(kinds)}, store {store_mb:.0f} MB")
    noops = _repeat(args.repeats, work, "-n", str(args.jobs), "-P", "thread", env=env)
    assert not any(r.executed for r in noops), [r.executed for r in noops]
    print(f"no-op run:        {_summary(noops)}, 0 actions (goal < 1 s at 6,303 tasks)")
    changes = []
    for i in range(args.repeats):
        project = projects[i % len(projects)]
        bump_package(project, _some_package(project), tag=f"b{int(time.time() * 1000) % 10**9}")
        change = run_doit(work, "-n", str(args.jobs), "-P", "thread", env=env)
        assert change.returncode == 0, change.output[-2000:]
        changes.append(change)
    kinds = collections.Counter(n.split(":")[0] for n in changes[-1].executed)
    print(f"one-package change: {_summary(changes)}, {len(changes[-1].executed)} actions {dict(kinds)}")
    noop = min(r.seconds for r in noops)
    print(f"ratio cold/no-op: {cold.seconds / noop:.1f}x; per task: no-op {noop / n_tasks * 1e6:.0f} us, "
          f"list {min(r.seconds for r in _repeat(1, work, 'list', '--all', env=env)) / n_tasks * 1e6:.0f} us")


def scale(args: argparse.Namespace, work: Path) -> None:
    rows = []
    for packages, projects in SCALES:
        root = work / f"ws-{packages}-{projects}"
        root.mkdir(parents=True, exist_ok=True)
        _prepare(root, packages, projects, 4.0)
        write_dodo(root)
        env = _env(root, args.build_dir)
        listing = run_doit(root, "list", "--all", env=env)
        n_tasks = len([line for line in listing.output.splitlines() if line.strip() and not line.startswith("pixibuild:")])
        cold = run_doit(root, "-n", str(args.jobs), "-P", "thread", env=env)
        assert cold.returncode == 0, cold.output[-2000:]
        lists = _repeat(args.repeats, root, "list", "--all", env=env)
        noops = _repeat(args.repeats, root, "-n", str(args.jobs), "-P", "thread", env=env)
        rows.append((n_tasks, min(r.seconds for r in noops), min(r.cpu for r in noops),
                     min(r.seconds for r in lists), min(r.cpu for r in lists), max(r.rss_mb for r in lists)))
        print(f"{n_tasks:6d} tasks: no-op {_summary(noops)}; list {_summary(lists)}")
    print("\ntasks   no-op s  us/task   list s  us/task   (cpu s: no-op, list)   list RSS")
    for n, noop, noop_cpu, lst, lst_cpu, rss in rows:
        print(f"{n:6d}   {noop:6.2f}   {noop / n * 1e6:6.0f}   {lst:6.2f}   {lst / n * 1e6:6.0f}"
              f"   ({noop_cpu:.2f}, {lst_cpu:.2f})   {rss:.0f} MB")
    for (n1, a1, _, l1, _, _), (n2, a2, _, l2, _, _) in zip(rows, rows[1:]):
        print(f"slope {n1}→{n2} tasks: no-op {(a2 - a1) / (n2 - n1) * 1e6:.0f} us/task, "
              f"list {(l2 - l1) / (n2 - n1) * 1e6:.0f} us/task")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packages", type=int, default=1000)
    ap.add_argument("--projects", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scale", action="store_true", help="per-task cost at ~1k, ~6k and ~20k tasks")
    ap.add_argument("--keep", type=Path, help="work dir to keep, and to reuse when it holds a workspace")
    ap.add_argument("--build-dir", default="build", help="build dir name inside the work dir (compare versions "
                                                          "on one generated workspace and store)")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="pixibuild-bench-graph-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        (scale if args.scale else standard)(args, work)
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
