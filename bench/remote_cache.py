"""Remote cache benchmark: two "machines" (empty stores and build dirs) sharing one real registry.

For the demo monorepo and a generated N-project workspace (packs and images): machine A's cold build
into the cache (channel served over HTTP), machine B's cold build with the cache warm and the channel
server stopped, then B's no-op run. Prints times, the ratio B/A (goal ≤ 0.3), the bytes moved (channel,
cache down and up), layers compressed and nodes built, from each run's summary.

    .venv/bin/python bench/remote_cache.py [--projects 20] [--packages 300] [--median-kib 48] [--jobs 2]
                                           [--kinds pack,image] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import ChannelServer, Registry, compiled_env

from pixibuild.demo.demo import use_channel_url, write_demo
from pixibuild.demo.synthetic import write_workspace


def build(work: Path, machine: str, workspace: Path, url: str, jobs: int, tasks: list[str]) -> tuple[float, dict]:
    """`pixibuild build` on `machine`'s store and build dir; (seconds, the run's summary)."""
    summary = work / f"{machine}.json"
    env = compiled_env(work, PIXIBUILD_CACHE_DIR=str(work / machine / "store"),
                       PIXIBUILD_BUILD_DIR=str(work / machine / "build"), PIXIBUILD_SUMMARY_JSON=str(summary),
                       HOME=str(work / machine / "home"), XDG_CACHE_HOME=str(work / machine / "home" / ".cache"))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pixibuild", "build", "-C", str(workspace), "-n", str(jobs),
                           "--remote-cache", url, *tasks], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{machine}: build failed:\n{proc.stderr[-3000:]}")
    return seconds, json.loads(summary.read_text())


def outputs(build_dir: Path) -> dict[str, bytes]:
    return {p.relative_to(build_dir).as_posix(): p.read_bytes() for p in sorted(build_dir.rglob("*.tar"))}


def store_bytes(store: Path) -> int:
    return sum(p.stat().st_size for p in (store / "blobs").rglob("*") if p.is_file()) if (store / "blobs").exists() else 0


def scenario(name: str, work: Path, workspace: Path, channel: Path, registry: Registry, jobs: int,
             tasks: list[str]) -> float:
    url = f"oci://{registry.host}/bench/{name}"
    server = ChannelServer(channel)
    use_channel_url(workspace, server.url, channel=channel)
    with server:
        # python's bytecode for the children, compiled once outside the timings
        subprocess.run([sys.executable, "-m", "pixibuild", "--help"], capture_output=True, env=compiled_env(work))
        a_time, a = build(work, f"{name}-a", workspace, url, jobs, tasks)
    channel_mb = store_bytes(work / f"{name}-a" / "store") / 1e6  # the channel is down from here on
    b_time, b = build(work, f"{name}-b", workspace, url, jobs, tasks)
    noop_time, noop = build(work, f"{name}-b", workspace, url, jobs, tasks)
    same = outputs(work / f"{name}-a" / "build") == outputs(work / f"{name}-b" / "build")
    ra, rb = a["remote_stats"], b["remote_stats"]
    print(f"\n== {name}: {len(outputs(work / f'{name}-a' / 'build'))} outputs ({', '.join(tasks)}), {jobs} jobs")
    print(f"A cold, cache empty:       {a_time:6.2f} s  {a['built']} nodes built, {a['layers_compressed']} layers "
          f"compressed; {channel_mb:.1f} MB from the channel, {ra['uploaded'] / 1e6:.1f} MB uploaded "
          f"({ra['uploads']} uploads)")
    print(f"B cold, cache warm:        {b_time:6.2f} s  {b['built']} nodes built, {b['layers_compressed']} layers "
          f"compressed, {b['remote']} remote hits; channel stopped; {rb['downloaded'] / 1e6:.1f} MB downloaded "
          f"from the cache; outputs identical to A's: {same}")
    print(f"B no-op:                   {noop_time:6.2f} s  {noop['local']} local hits, {noop['built']} built")
    ratio = b_time / a_time
    print(f"ratio B/A: {ratio:.2f} (goal <= 0.3)   B/no-op: {b_time / noop_time:.1f}x   "
          f"cache bytes per byte of packages: {ra['uploaded'] / max(1, channel_mb * 1e6):.1f}")
    if not same:
        raise SystemExit("B's outputs differ from A's")
    return ratio


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--projects", type=int, default=20)
    ap.add_argument("--packages", type=int, default=300)
    ap.add_argument("--median-kib", type=float, default=48.0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--kinds", default="pack,image", help="outputs of the generated workspace's projects")
    ap.add_argument("--keep", type=Path, help="work dir to keep (default: a temp dir, removed)")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="pixibuild-bench-remote-"))
    try:
        with Registry(work / "registry") as registry:
            demo = work / "demo"
            write_demo(demo)
            scenario("demo", work, demo, demo / "channel", registry, args.jobs, ["pack", "image"])
            gen = work / "generated"
            t = time.perf_counter()
            projects = write_workspace(gen, n_packages=args.packages, n_projects=args.projects,
                                       median_kib=args.median_kib)
            kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
            for project in projects:
                with open(project / "pixi.toml", "a") as f:
                    f.write(f"\n[tool.pixibuild]\noutputs = {json.dumps(kinds)}\n")
            print(f"\n(generated {len(projects)} projects over {args.packages} packages in "
                  f"{time.perf_counter() - t:.1f} s)")
            scenario("generated", work, gen, gen / "channel", registry, args.jobs, kinds)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
