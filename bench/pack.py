"""Pack benchmark: `pixibuild pack` of a generated environment, cold (empty store: local channel
copied/hashed into the store, then archived) and warm (store full), against the I/O floor: reading,
hashing (sha256) and writing the same package bytes into one file, with no tar and no store.

    .venv/bin/python bench/pack.py [--packages 300] [--median-kib 256] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pixibuild.inputs.lockfile import read_lock
from pixibuild.demo.synthetic import write_workspace


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


def pack(project: Path, out: Path, store: Path) -> float:
    env = dict(os.environ, PIXIBUILD_CACHE_DIR=str(store))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pixibuild", "-q", "pack", str(project), "-p", "linux-64", "-o", str(out)],
                   check=True, env=env)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--packages", type=int, default=300)
    ap.add_argument("--median-kib", type=float, default=256)
    ap.add_argument("--keep", type=Path)
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="pixibuild-bench-pack-"))
    try:
        # one project holding every package: the lock's closure of all roots
        projects = write_workspace(work, n_packages=args.packages, n_projects=1, median_kib=args.median_kib)
        project = projects[0]
        records = read_lock(project / "pixi.lock").environment("default").conda_packages("linux-64")
        files = [Path(r.url.removeprefix("file://")) for r in records]
        total = sum(f.stat().st_size for f in files)
        print(f"environment: {len(records)} packages, {total / 1e6:.1f} MB")
        floor = min(io_floor(files, work / "floor.bin") for _ in range(2))
        cold = pack(project, work / "cold.tar", work / "store")
        warm = min(pack(project, work / f"warm{i}.tar", work / "store") for i in range(2))
        same = (work / "cold.tar").read_bytes() == (work / "warm0.tar").read_bytes()
        print(f"I/O floor (read+sha256+write+fsync): {floor:.2f} s ({total / 1e6 / floor:.0f} MB/s)")
        print(f"cold pack: {cold:.2f} s ({total / 1e6 / cold:.0f} MB/s), {cold / floor:.1f}x the floor")
        print(f"warm pack: {warm:.2f} s ({total / 1e6 / warm:.0f} MB/s), {warm / floor:.1f}x the floor")
        print(f"cold and warm archives identical: {same}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
