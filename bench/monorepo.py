"""Real-corpus monorepo benchmark: every corpus project that has a manifest, as one workspace.

The workspace is made at bench time in a temp dir: one directory per corpus project holding
symlinks to its manifest(s) and pixi.lock (nothing from the corpus is copied into the repository).
Prints `doit list --all` with cold caches (a fresh store and build dir: every lock parsed, every
project planned) and warm (lock and plan caches filled), wall / CPU seconds and peak RSS, the task
count and the projects that are broken (listed as BROKEN; the others must still list).

Goals (issue 16): cold < 2 s, warm < 0.7 s, peak RSS < 150 MB.

    .venv/bin/python bench/monorepo.py [--repeats 3] [--keep DIR] [--drop-broken]

`--drop-broken` leaves out the projects that cannot be planned on their own, for measuring a
version of pixibuild that stops at the first broken project.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import CORPUS, DoitRun, compiled_env, run_doit, write_dodo

MANIFESTS = ("pixi.toml", "pyproject.toml")


def corpus_projects() -> list[Path]:
    locks = CORPUS / "locks"
    if not locks.is_dir():
        raise SystemExit(f"no corpus at {locks} (set PIXIBUILD_SHARED)")
    return sorted(d for d in locks.iterdir()
                  if (d / "pixi.lock").is_file() and any((d / m).is_file() for m in MANIFESTS))


def make_workspace(root: Path, projects: list[Path]) -> None:
    """One directory per project with symlinks to its manifest(s) and lock."""
    for source in projects:
        target = root / source.name
        target.mkdir(parents=True)
        for name in (*MANIFESTS, "pixi.lock"):
            if (source / name).is_file():
                (target / name).symlink_to(source / name)
    write_dodo(root)


def plans_alone(project: Path, work: Path) -> bool:
    """Whether the code under test lists a workspace of this one project."""
    probe = work / "probe" / project.name
    shutil.rmtree(work / "probe", ignore_errors=True)
    make_workspace(probe.parent, [project])
    env = compiled_env(work / ".bench", PIXIBUILD_CACHE_DIR=str(work / "store"),
                       PIXIBUILD_BUILD_DIR=str(work / "probe-build"))
    # run from the probe dir: python puts the working directory first on sys.path
    proc = subprocess.run([sys.executable, "-m", "doit", "-f", str(probe.parent / "dodo.py"), "list", "--all"],
                          capture_output=True, text=True, env=env, cwd=probe.parent)
    return proc.returncode == 0 and "BROKEN" not in proc.stdout


def _line(label: str, runs: list[DoitRun]) -> str:
    walls = [r.seconds for r in runs]
    return (f"{label}: {min(walls):.2f} / {statistics.median(walls):.2f} s wall (min / median of {len(runs)}), "
            f"cpu {min(r.cpu for r in runs):.2f} s, peak RSS {max(r.rss_mb for r in runs):.0f} MB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="work dir to keep (default: a temp dir, removed)")
    ap.add_argument("--drop-broken", action="store_true", help="leave out projects that cannot be planned alone")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="pixibuild-bench-monorepo-"))
    try:
        projects = corpus_projects()
        if args.drop_broken:
            kept = [p for p in projects if plans_alone(p, work)]
            print(f"dropped {len(projects) - len(kept)} projects that cannot be planned alone: "
                  f"{', '.join(p.name for p in projects if p not in kept)}")
            projects = kept
        root = work / "ws"
        shutil.rmtree(root, ignore_errors=True)
        make_workspace(root, projects)
        colds = []
        for i in range(args.repeats):
            env = {"PIXIBUILD_CACHE_DIR": str(work / f"store-cold-{i}"), "PIXIBUILD_BUILD_DIR": str(work / f"build-cold-{i}")}
            for directory in env.values():
                shutil.rmtree(directory, ignore_errors=True)
            colds.append(run_doit(root, "list", "--all", env=env))
        first = colds[0]
        if first.returncode != 0:
            print(f"doit list --all FAILED (exit {first.returncode}): {first.output.strip().splitlines()[-1]}")
            return 1
        lines = [line for line in first.output.splitlines() if line.strip() and not line.startswith("pixibuild:")]
        broken = sorted({line.split()[0] for line in lines if "BROKEN:" in line and line.startswith("lock:")})
        packages = len([line for line in lines if line.startswith("fetch:")])
        print(f"workspace: {len(projects)} corpus projects with a manifest, {len(lines)} tasks, "
              f"{packages} distinct packages, {len(broken)} broken: {', '.join(broken) or '-'}")
        print(_line("doit list --all, cold (fresh store and build dir)", colds))
        env = {"PIXIBUILD_CACHE_DIR": str(work / "store-cold-0"), "PIXIBUILD_BUILD_DIR": str(work / "build-cold-0")}
        warm = [run_doit(root, "list", "--all", env=env) for _ in range(args.repeats)]
        assert all(r.returncode == 0 for r in warm), warm[-1].output[-2000:]
        print(_line("doit list --all, warm (lock and plan caches)", warm))
        print(f"goals: cold < 2 s, warm < 0.7 s, peak RSS < 150 MB; per task: cold "
              f"{min(r.seconds for r in colds) / len(lines) * 1e6:.0f} us, warm {min(r.seconds for r in warm) / len(lines) * 1e6:.0f} us")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
