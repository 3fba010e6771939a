"""Fetch benchmark: a generated channel served by the local test HTTP server, fetched into a fresh store.

Prints packages/s and MB/s for a cold run (empty store: download + hash + fsync + rename) and a warm run
(everything already in the store), and the ratio of the cold run to the I/O floor (reading, hashing
sha256 + md5, writing and fsyncing the same bytes with the same number of threads, no HTTP) and to that
floor plus the HTTP floor (plain GETs of the same URLs from the same server, bytes discarded). The server
runs in its own process; on a 2-core machine it competes with the fetcher for CPU.

    .venv/bin/python bench/fetch.py [--packages 400] [--median-kib 48] [--jobs 16] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from benchlib import ChannelServer

from pixibuild.net.auth import AuthStore
from pixibuild.store.fetch import Fetcher
from pixibuild.net.config import NetConfig
from pixibuild.conda.records import CondaRecord
from pixibuild.store.blobs import CHUNK, Hasher, Store
from pixibuild.demo.synthetic import write_workspace


def channel_records(channel: Path, base_url: str) -> list[CondaRecord]:
    """Lock-style records for every package in the channel's repodata, with URLs on `base_url`."""
    out = []
    for repodata in sorted(channel.glob("*/repodata.json")):
        data = json.loads(repodata.read_text())
        subdir = repodata.parent.name
        for fn, r in sorted({**data.get("packages", {}), **data.get("packages.conda", {})}.items()):
            out.append(CondaRecord.from_repodata(r, url=f"{base_url}/{subdir}/{fn}", file_name=fn, subdir=subdir))
    return out


def io_floor(files: list[Path], out_dir: Path, jobs: int) -> float:
    """Seconds to read, sha256+md5, write, fsync and rename every file (the store's own work, no HTTP)."""
    out_dir.mkdir(parents=True, exist_ok=True)

    def one(path: Path) -> None:
        h = Hasher()
        tmp = out_dir / f".{path.name}.tmp"
        with open(path, "rb") as fin, open(tmp, "wb") as fout:
            while chunk := fin.read(CHUNK):
                h.update(chunk)
                fout.write(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(tmp, out_dir / h.sha256.hexdigest())

    t = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, files))
    return time.perf_counter() - t


def http_floor(records: list[CondaRecord], jobs: int) -> float:
    """Seconds for plain parallel GETs of every URL, bytes discarded: what the server and HTTP stack cost."""
    with httpx.Client(limits=httpx.Limits(max_connections=jobs, max_keepalive_connections=jobs)) as client:
        def one(record: CondaRecord) -> None:
            with client.stream("GET", record.url) as response:
                for _ in response.iter_bytes():
                    pass

        t = time.perf_counter()
        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(one, records))
        return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packages", type=int, default=400)
    ap.add_argument("--median-kib", type=float, default=48.0)
    ap.add_argument("--jobs", type=int, default=None, help="parallel downloads (default: the fetcher's)")
    ap.add_argument("--keep", type=Path, help="work dir to keep (default: a temp dir, removed)")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="pixibuild-bench-fetch-"))
    try:
        t = time.perf_counter()
        if not (work / "channel").exists():
            write_workspace(work, n_packages=args.packages, n_projects=1, median_kib=args.median_kib)
        files = sorted((work / "channel").rglob("*.conda"))
        total = sum(f.stat().st_size for f in files)
        mb = total / 1e6
        print(f"channel: {len(files)} packages, {mb:.1f} MB (generated in {time.perf_counter() - t:.1f} s)")
        with ChannelServer(work / "channel") as srv:
            records = channel_records(work / "channel", srv.url)
            shutil.rmtree(work / "store", ignore_errors=True)
            store = Store(work / "store")
            config = NetConfig(concurrency=args.jobs)
            with Fetcher(store, config, progress=False, auth=AuthStore()) as f:
                jobs = f.jobs
                t = time.perf_counter()
                f.fetch_all(records)
                cold = time.perf_counter() - t
                assert f.stats["downloaded"] == len(records), f.stats
            with Fetcher(store, config, progress=False, auth=AuthStore()) as f:
                t = time.perf_counter()
                f.fetch_all(records)
                warm = time.perf_counter() - t
                assert f.stats["cached"] == len(records), f.stats
            store.close()
            http = min(http_floor(records, jobs) for _ in range(2))
        floor = io_floor(files, work / "floor", jobs)
        n = len(records)
        print(f"jobs: {jobs}; server: http.server (HTTP/1.1) in a separate process")
        print(f"cold  : {cold:6.2f} s  {n / cold:8.1f} packages/s  {mb / cold:7.1f} MB/s")
        print(f"warm  : {warm:6.2f} s  {n / warm:8.1f} packages/s  (store lookups only)")
        print(f"floor : {floor:6.2f} s  {n / floor:8.1f} packages/s  {mb / floor:7.1f} MB/s  "
              f"(read + sha256 + md5 + write + fsync, {jobs} threads, no HTTP)")
        print(f"http  : {http:6.2f} s  {n / http:8.1f} packages/s  {mb / http:7.1f} MB/s  "
              f"(plain parallel GETs, bytes discarded: the local server's own limit)")
        print(f"ratio cold/io-floor: {cold / floor:.2f}x; cold/(http + io floor): {cold / (http + floor):.2f}x; "
              f"cold/warm: {cold / warm:.0f}x")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
