"""Benchmark: install the same conda packages with pixibuild and with rattler.install (py-rattler).

Each install runs in a fresh subprocess (cold: rattler gets an empty package cache, as pixi-unpack
does), the tools alternating; it reports wall time (install only), CPU time and peak RSS, the
ratios ours/rattler (goals: generated <= 1.0, corpus <= 0.9, by median), and where the time goes
(the bare file-system work and the decompression the install cannot avoid).

    .venv/bin/python bench/unpack.py                 # corpus packages (linux-64 + noarch) + generated
    .venv/bin/python bench/unpack.py --repeat 5 --generated-only --files 4000
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import CORPUS as SHARED_CORPUS, decompression_seconds

CORPUS = SHARED_CORPUS / "pkgs"
GOALS = {"generated": 1.0, "corpus": 0.9}
"""Issue 16: median install time ours/rattler."""


def _corpus_archives() -> list[Path]:
    """Real linux-64/noarch-generic packages from the corpus that install cleanly (one per name)."""

    chosen: dict[str, Path] = {}
    index = CORPUS / "INDEX.tsv"
    if not index.exists():
        return []
    with open(index, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["dup_of"] != "-" or row["subdir"] not in ("linux-64", "noarch") or row["noarch"] == "python":
                continue
            path = CORPUS / row["file"]
            if row["name"] in chosen or row["name"].startswith("clobber") or not path.name.endswith((".conda", ".tar.bz2")):
                continue
            if _installs_cleanly(path):
                chosen[row["name"]] = path
    return sorted(chosen.values())


def _installs_cleanly(path: Path) -> bool:
    """Both installers accept the package on its own (the corpus holds deliberately broken ones)."""
    import rattler

    from pixibuild.install.environment import install_environment
    from pixibuild.conda.archive import record_from_archive

    with tempfile.TemporaryDirectory() as tmp:
        try:
            install_environment([(record_from_archive(path), path)], Path(tmp) / "o", platform="linux-64")

            async def go() -> None:
                record = await rattler.RepoDataRecord.from_package_archive(path)
                await rattler.install([record], Path(tmp) / "r", cache_dir=Path(tmp) / "c", show_progress=False)

            asyncio.run(go())
        except Exception:
            return False
    return True


def _generated(out: Path, n_packages: int, files: int) -> list[Path]:
    from pixibuild.demo.condapkg import PackageSpec, PkgFile, write_package

    rng = __import__("random").Random(42)
    archives = []
    per = max(1, files // n_packages)
    for i in range(n_packages):
        pkg_files = []
        for j in range(per):
            size = int(rng.lognormvariate(8, 2)) % (4 << 20)
            data = bytes(rng.getrandbits(8) for _ in range(min(size, 2048))) * (size // 2048 + 1)
            data = data[:size]
            kind = j % 10
            if kind == 0:
                pkg_files.append(PkgFile(f"lib/p{i}/f{j}.so", b"\x7fELF\0@PREFIX@/lib\0" + data, 0o755, prefix="binary"))
            elif kind == 1:
                pkg_files.append(PkgFile(f"bin/p{i}-{j}", b"#!@PREFIX@/bin/sh\n" + data.hex()[:2000].encode(), 0o755,
                                         prefix="text"))
            elif kind == 2:
                pkg_files.append(PkgFile(f"lib/p{i}/l{j}.so", symlink=f"f{j - 2}.so"))
            else:
                pkg_files.append(PkgFile(f"share/p{i}/d{j}.dat", data))
        fmt = ".conda" if i % 4 else ".tar.bz2"
        archives.append(write_package(PackageSpec(f"gen{i}", files=pkg_files), out, fmt))
    return archives


def _run_one(tool: str, archives: list[Path], work: Path) -> dict:
    """Time the install only: package records are read before the clock starts for both tools
    (an unpack gets them from the pack's repodata.json, not by scanning archives)."""
    if tool == "ours":
        from pixibuild.install.environment import install_environment
        from pixibuild.conda.archive import record_from_archive

        packages = [(record_from_archive(p), p) for p in archives]
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        install_environment(packages, work / "prefix", platform="linux-64")
    else:
        import rattler

        async def records() -> list:
            return [await rattler.RepoDataRecord.from_package_archive(p) for p in archives]

        recs = asyncio.run(records())
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        asyncio.run(rattler.install(recs, work / "prefix", cache_dir=work / "cache", show_progress=False))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "cpu_seconds": _cpu_seconds() - cpu_start, "maxrss_kib": _peak_rss_kib()}


def _peak_rss_kib() -> int:
    """The peak RSS of this process, or of a process it forked (pixibuild links independent packages
    in a forked child), whichever is larger. Not our own ru_maxrss: Linux keeps that across exec, so
    a child would report the (larger) parent that started it; VmHWM starts afresh with the new program."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return max(int(line.split()[1]), children)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _cpu_seconds() -> float:
    """User + system CPU of this process, all threads, and of the processes it forked and waited
    for: the work done, whatever the machine's load."""
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def _run_subprocess(tool: str, archives: list[Path], work: Path) -> dict:
    work.mkdir()
    listing = work / "archives.json"
    listing.write_text(json.dumps([str(p) for p in archives]))
    out = subprocess.run([sys.executable, __file__, "--run", tool, "--list", str(listing), "--work", str(work)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{tool} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _measure(archives: list[Path], repeat: int, scratch: Path) -> dict[str, list[dict]]:
    """Install `repeat` times with each tool, alternating (A B B A ...) so drifting machine load
    hits both alike. Returns tool -> one result per run (seconds, cpu_seconds, maxrss_kib).

    Installed trees are only deleted after the last run: ext4 makes every new inode check the
    inodes freed in the last minute or so (`recently_deleted`), so deleting one run's thousands of
    files would slow down the next run's file creation several-fold."""
    results: dict[str, list[dict]] = {"ours": [], "rattler": []}
    for run in range(repeat):
        for tool in ("ours", "rattler") if run % 2 == 0 else ("rattler", "ours"):
            results[tool].append(_run_subprocess(tool, archives, scratch / f"{tool}-{run}"))
    return results


def _floor(installed: Path, scratch: Path) -> tuple[float, int]:
    """Seconds to recreate `installed`'s directories, files (same bytes and modes) and symlinks
    in `scratch` with plain system calls on one thread: what any installer must at least do."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(installed):
        rel = os.path.relpath(dirpath, installed)
        for name in dirnames:
            path = os.path.join(dirpath, name)
            entries.append(("link", os.path.join(rel, name), os.readlink(path)) if os.path.islink(path)
                           else ("dir", os.path.join(rel, name), None))
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                entries.append(("link", os.path.join(rel, name), os.readlink(path)))
            else:
                entries.append(("file", os.path.join(rel, name), (Path(path).read_bytes(), os.lstat(path).st_mode & 0o777)))
    start = time.perf_counter()
    for kind, rel, data in entries:
        target = os.path.join(scratch, rel)
        if kind == "dir":
            os.makedirs(target, exist_ok=True)
        elif kind == "link":
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(data, target)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, data[1])
            os.write(fd, data[0])
            os.close(fd)
    return time.perf_counter() - start, len(entries)


def _summary(runs: list[dict], key: str) -> tuple[float, float]:
    values = [r[key] for r in runs]
    return min(values), statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--generated-only", action="store_true")
    parser.add_argument("--packages", type=int, default=30)
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--scratch", type=Path, default=None,
                        help="where to install (default: the temp dir; e.g. /dev/shm leaves out the disk file system)")
    parser.add_argument("--run", choices=["ours", "rattler"], help=argparse.SUPPRESS)
    parser.add_argument("--list", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        archives = [Path(p) for p in json.loads(Path(args.list).read_text())]
        print(json.dumps(_run_one(args.run, archives, Path(args.work))), flush=True)
        os._exit(0)  # py-rattler's runtime threads can crash interpreter finalization; skip it
    with tempfile.TemporaryDirectory(prefix="bench-unpack-", dir=args.scratch) as tmp:
        sets = {"generated": _generated(Path(tmp) / "gen", args.packages, args.files)}
        if not args.generated_only:
            corpus = _corpus_archives()
            if corpus:
                sets["corpus"] = corpus
        for name, archives in sets.items():
            (Path(tmp) / f"runs-{name}").mkdir()
            size = sum(p.stat().st_size for p in archives)
            results = _measure(archives, args.repeat, Path(tmp) / f"runs-{name}")
            print(f"{name}: {len(archives)} packages, {size / 1e6:.1f} MB archives, {args.repeat} runs each "
                  f"(install only; min / median)")
            for tool, label in (("ours", "pixibuild"), ("rattler", "rattler")):
                (t_min, t_med), (c_min, c_med) = _summary(results[tool], "seconds"), _summary(results[tool], "cpu_seconds")
                rss = max(r["maxrss_kib"] for r in results[tool])
                print(f"  {label:10s}: {t_min:6.3f} s / {t_med:6.3f} s   cpu {c_min:6.3f} s / {c_med:6.3f} s   "
                      f"peak RSS {rss / 1024:6.1f} MiB")
            ours_t, rat_t = _summary(results["ours"], "seconds"), _summary(results["rattler"], "seconds")
            ours_c, rat_c = _summary(results["ours"], "cpu_seconds"), _summary(results["rattler"], "cpu_seconds")
            print(f"  ratio time {ours_t[0] / rat_t[0]:.2f}x / {ours_t[1] / rat_t[1]:.2f}x   "
                  f"ratio cpu {ours_c[0] / rat_c[0]:.2f}x / {ours_c[1] / rat_c[1]:.2f}x   (ours/rattler)", flush=True)
            goal = GOALS[name] if name in GOALS else None
            if goal is not None:
                verdict = "met" if ours_t[1] / rat_t[1] <= goal else "NOT met"
                print(f"  goal: median time ratio <= {goal}: {verdict}")
            floor, n_entries = _floor(Path(tmp) / f"runs-{name}" / "ours-0" / "prefix", Path(tmp) / f"floor-{name}")
            print(f"  where the time goes: recreating the {n_entries} installed entries with bare system calls "
                  f"takes {floor:.3f} s (one thread); decompressing every archive once takes "
                  f"{decompression_seconds(archives):.3f} s of CPU (spread over the workers); the rest of "
                  f"pixibuild's time is tar parsing, hashing, bookkeeping and conda-meta", flush=True)
    os._exit(0)  # see above: py-rattler and interpreter finalization


if __name__ == "__main__":
    main()
