"""Pack benchmark: `pixibuild pack` of a generated environment, cold (empty store: the local file://
channel is copied and hashed into the store, then archived) and warm (store full), against the I/O
floor: reading, hashing (sha256) and writing the same package bytes into one file, fsynced, with no
tar and no store. Every run checks each blob's sha256 while it streams it (files/verified.py).

Runs are interleaved (floor, cold, warm, floor, ...) so machine noise hits all three alike; min and
median are printed. Where the command cannot reach the floor, the same work is timed in-process,
phase by phase, to show where the time goes (interpreter start-up and imports are per process).

The child processes get compiled bytecode (a private PYTHONPYCACHEPREFIX), as an installed pixibuild
has: under PYTHONDONTWRITEBYTECODE every run would compile its modules from source.

    .venv/bin/python bench/pack.py [--packages 300] [--median-kib 256] [--runs 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import compiled_env, min_median

# Nothing of pixibuild is imported at the top: the `--phases` child times its own imports.


def io_floor(files: list[Path], out: Path) -> float:
    start = time.perf_counter()
    with open(out, "wb") as dst:
        for path in files:
            h = hashlib.sha256()
            with open(path, "rb") as src:
                while chunk := src.read(1 << 20):
                    h.update(chunk)
                    dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    return time.perf_counter() - start


def child_env(work: Path, store: Path) -> dict[str, str]:
    return compiled_env(work, PIXIBUILD_CACHE_DIR=str(store))


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def pack(project: Path, out: Path, store: Path, work: Path) -> float:
    return timed([sys.executable, "-m", "pixibuild", "-q", "pack", str(project), "-p", "linux-64", "-o", str(out)],
                 child_env(work, store))


def phases(project: Path, out: Path, store: Path) -> dict[str, float]:
    """The pack command's work, phase by phase, in a fresh process (what `commands/pack.py` does)."""
    t = time.perf_counter()
    from pixibuild.cli import build_parser
    from pixibuild.inputs.project import load_project
    from pixibuild.pack.build import PackOutput, write_pack
    from pixibuild.pack.writer import PackContents
    from pixibuild.store.blobs import Store
    from pixibuild.store.fetch import Fetcher

    build_parser()
    times = {"imports + CLI parser (every command's module)": time.perf_counter() - t}
    t = time.perf_counter()
    project_ = load_project(project, store_root=store)
    target = project_.target("default", "linux-64")
    times["planning (manifest, lock cache, target)"] = time.perf_counter() - t
    t = time.perf_counter()
    with Fetcher(Store(store), progress=False) as fetcher:
        paths = fetcher.fetch_all(target.conda, project_.lock_path.parent)
    times["fetch (warm: store lookups; cold: copy+sha256 into the store)"] = time.perf_counter() - t
    t = time.perf_counter()
    write_pack(PackContents(platform="linux-64", conda=list(zip(target.conda, paths))), PackOutput(str(out)))
    times["archive (read+sha256+write+fsync, repodata)"] = time.perf_counter() - t
    return times


def phases_in_child(project: Path, out: Path, store: Path, work: Path) -> dict[str, float]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, __file__, "--phases", str(project), str(out), str(store)], check=True,
                            env=child_env(work, store), capture_output=True, text=True)
    total = time.perf_counter() - start
    times = json.loads(result.stdout)
    return {"interpreter start and exit, argparse, json": total - sum(times.values()), **times}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--packages", type=int, default=300)
    ap.add_argument("--median-kib", type=float, default=256)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", type=Path)
    ap.add_argument("--phases", nargs=3, type=Path, metavar=("PROJECT", "OUT", "STORE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phases:
        print(json.dumps(phases(*args.phases)))
        return 0
    from pixibuild.demo.synthetic import write_workspace
    from pixibuild.inputs.lockfile import read_lock

    work = args.keep or Path(tempfile.mkdtemp(prefix="pixibuild-bench-pack-"))
    try:
        # one project holding every package: the lock's closure of all roots
        projects = write_workspace(work, n_packages=args.packages, n_projects=1, median_kib=args.median_kib)
        project = projects[0]
        records = read_lock(project / "pixi.lock").environment("default").conda_packages("linux-64")
        files = [Path(r.url.removeprefix("file://")) for r in records]
        total = sum(f.stat().st_size for f in files)
        print(f"environment: {len(records)} packages, {total / 1e6:.1f} MB; {args.runs} interleaved runs, min / median")
        timed([sys.executable, "-m", "pixibuild", "--version"], child_env(work, work / "s"))  # compile bytecode once
        floor, cold, warm = [], [], []
        for i in range(args.runs):
            floor.append(io_floor(files, work / "floor.bin"))
            shutil.rmtree(work / "store", ignore_errors=True)
            cold.append(pack(project, work / "cold.tar", work / "store", work))
            warm.append(pack(project, work / "warm.tar", work / "store", work))
        same = (work / "cold.tar").read_bytes() == (work / "warm.tar").read_bytes()
        f_min, f_med = min(floor), statistics.median(floor)
        print(f"I/O floor (read+sha256+write+fsync): {min_median(floor)} ({total / 1e6 / f_min:.0f} MB/s)")
        for name, values in (("cold", cold), ("warm", warm)):
            print(f"{name} pack: {min_median(values)} = {min(values) / f_min:.2f}x / "
                  f"{statistics.median(values) / f_med:.2f}x the floor")
        print(f"cold and warm archives identical: {same}")

        # where the time goes: the same work timed phase by phase in fresh processes
        warm_phases, cold_phases = [], []
        for _ in range(args.runs):
            shutil.rmtree(work / "store2", ignore_errors=True)
            cold_phases.append(phases_in_child(project, work / "p.tar", work / "store2", work))
            warm_phases.append(phases_in_child(project, work / "p.tar", work / "store2", work))
        for label, runs, whole in (("warm", warm_phases, warm), ("cold", cold_phases, cold)):
            print(f"where the {label} pack's time goes (median of {args.runs} fresh processes; floor median {f_med:.3f} s):")
            for phase in runs[0]:
                value = statistics.median(r[phase] for r in runs)
                print(f"  {phase:<64s} {value:.3f} s  {value / f_med:5.2f}x the floor")
        archive = statistics.median(r["archive (read+sha256+write+fsync, repodata)"] for r in warm_phases)
        print(f"the archive itself: {archive / f_med:.2f}x the floor; the rest of the warm pack is per-process start-up")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
