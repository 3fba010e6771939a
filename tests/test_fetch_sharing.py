"""One store for every project and platform: shared blobs fetched once, crash safety, no leaked secrets."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fetchkit import FETCH_SCRIPT, assert_store_sound, blob_files, dump_records, make_channel, records_for, spec
from pixibuild.net.auth import AuthStore
from pixibuild.errors import BuildError
from pixibuild.store.fetch import Fetcher
from pixibuild.net.config import NetConfig
from pixibuild.store.blobs import Store
from support.http_server import TestServer
from pixibuild.demo.lockwriter import write_lock

FAST = NetConfig(retries=3, backoff=0.01, max_backoff=0.05, read_timeout=10, connect_timeout=2)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def two_platforms(tmp_path):
    """A channel with linux-64 and linux-aarch64 packages plus noarch ones both platforms use."""
    root = tmp_path / "channel"
    specs = [spec("app64", "linux-64", 60_000, 1), spec("lib64", "linux-64", 40_000, 2),
             spec("apparm", "linux-aarch64", 60_000, 3), spec("libarm", "linux-aarch64", 40_000, 4),
             spec("pyshared", "noarch", 80_000, 5), spec("data", "noarch", 120_000, 6),
             spec("tzdata", "noarch", 30_000, 7)]
    return root, make_channel(root, specs)


def _locks(two_platforms, url: str, tmp_path: Path):
    root, files = two_platforms
    records = records_for(files, url, root)
    x86 = [r for r in records if r.subdir in ("linux-64", "noarch")]
    arm = [r for r in records if r.subdir in ("linux-aarch64", "noarch")]
    # Real lock files for both projects (what the lock reader will hand the fetcher).
    write_lock(tmp_path / "p64" / "pixi.lock", {"default": {"linux-64": x86}}, channels=[url])
    write_lock(tmp_path / "parm" / "pixi.lock", {"default": {"linux-aarch64": arm}}, channels=[url])
    return x86, arm


def _rattler_records(lock: Path, platform: str):
    """The records as py-rattler (the oracle) reads them back from the written lock."""
    rattler = pytest.importorskip("rattler")
    lf = rattler.LockFile.from_path(lock)
    env = lf.default_environment()
    plat = next(p for p in env.platforms() if str(p) == platform)
    return {(r.url, r.sha256.hex()) for r in env.conda_repodata_records_for_platform(plat)}


def test_two_projects_on_two_platforms_fetch_each_shared_blob_once(two_platforms, tmp_path):
    root = two_platforms[0]
    store = Store(tmp_path / "store")
    with TestServer(root) as srv:
        x86, arm = _locks(two_platforms, srv.url, tmp_path)
        assert _rattler_records(tmp_path / "p64" / "pixi.lock", "linux-64") == {(r.url, r.sha256) for r in x86}
        assert _rattler_records(tmp_path / "parm" / "pixi.lock", "linux-aarch64") == \
            {(r.url, r.sha256) for r in arm}
        # Both projects at the same time, through separate fetchers on one store, on a slowish server so
        # their downloads of the shared noarch packages overlap.
        srv.add_fault("slow", "*.conda", rate=2_000_000)
        errors = []

        def run(records):
            try:
                with Fetcher(store, FAST, jobs=4, progress=False, auth=AuthStore()) as f:
                    f.fetch_all(records)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(recs,)) for recs in (x86, arm)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        shared = {r.file_name for r in x86} & {r.file_name for r in arm}
        assert len(shared) == 3
        for r in {*x86, *arm}:
            assert srv.count("/" + r.file_name) == 1, r.file_name
        assert len(blob_files(store.root)) == len({r.sha256 for r in (*x86, *arm)})
    assert_store_sound(store.root)
    store.close()


def _run_fetch(records_json: Path, store: Path, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", FETCH_SCRIPT, str(records_json), str(store)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_two_processes_on_one_store_download_shared_blobs_once(two_platforms, tmp_path):
    store = tmp_path / "store"
    with TestServer(two_platforms[0]) as srv:
        x86, arm = _locks(two_platforms, srv.url, tmp_path)
        srv.add_fault("slow", "*.conda", rate=1_000_000)
        dump_records(x86, tmp_path / "x86.json")
        dump_records(arm, tmp_path / "arm.json")
        procs = [_run_fetch(tmp_path / "x86.json", store), _run_fetch(tmp_path / "arm.json", store)]
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
        for r in {*x86, *arm}:
            assert srv.count("/" + r.file_name) == 1, r.file_name
    assert_store_sound(store)


def test_sigkill_mid_download_leaves_no_partial_blob_and_the_rerun_resumes(tmp_path):
    root = tmp_path / "channel"
    files = make_channel(root, [spec("huge", "linux-64", 3_000_000, 9), spec("small", "noarch", 10_000, 8)])
    store = tmp_path / "store"
    with TestServer(root) as srv:
        records = records_for(files, srv.url, root)
        huge = next(r for r in records if r.name == "huge")
        dump_records(records, tmp_path / "records.json")
        srv.add_fault("slow", f"*{huge.file_name}", rate=1_000_000)
        proc = _run_fetch(tmp_path / "records.json", store)
        partial = store / "blobs" / "sha256" / huge.sha256[:2] / f".{huge.sha256}.part"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not partial.exists() or partial.stat().st_size < 500_000):
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        have = partial.stat().st_size
        assert 0 < have < huge.size
        assert not (store / "blobs" / "sha256" / huge.sha256[:2] / huge.sha256).exists()
        assert_store_sound(store)  # what is visible is sound: only `small`, maybe
        srv.clear_faults()
        srv.reset_log()
        rerun = _run_fetch(tmp_path / "records.json", store)
        out, err = rerun.communicate(timeout=60)
        assert rerun.returncode == 0, err
        gets = [r for r in srv.requests if r.path.endswith(huge.file_name)]
        assert len(gets) == 1 and gets[0].status == 206 and gets[0].range == f"bytes={have}-"
    assert not partial.exists()
    assert {p.name for p in blob_files(store)} == {r.sha256 for r in records}
    assert_store_sound(store)


@pytest.mark.parametrize("kill_after", [0.05, 0.3, 0.8])
def test_sigkill_at_several_points_then_rerun(tmp_path, kill_after):
    root = tmp_path / "channel"
    specs = [spec(f"p{i}", "linux-64", 200_000 + i * 50_000, i) for i in range(6)]
    files = make_channel(root, specs)
    store = tmp_path / "store"
    with TestServer(root) as srv:
        records = records_for(files, srv.url, root)
        dump_records(records, tmp_path / "records.json")
        srv.add_fault("slow", "*.conda", rate=1_500_000)
        proc = _run_fetch(tmp_path / "records.json", store)
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        assert_store_sound(store)
        srv.clear_faults()
        rerun = _run_fetch(tmp_path / "records.json", store)
        _, err = rerun.communicate(timeout=60)
        assert rerun.returncode == 0, err
    assert {p.name for p in blob_files(store)} == {r.sha256 for r in records}
    assert_store_sound(store)


def test_credentials_never_reach_logs_errors_or_store_metadata(two_platforms, tmp_path, caplog, capsys):
    root = two_platforms[0]
    bearer, password, conda_token, url_password = "BEARER-s3cr3t", "BASIC-s3cr3t", "CONDA-s3cr3t", "URL-s3cr3t"
    secrets = [bearer, password, conda_token, url_password,
               base64.b64encode(f"user:{password}".encode()).decode(),
               base64.b64encode(f"uu:{url_password}".encode()).decode()]
    caplog.set_level(logging.DEBUG)
    messages = []
    stores = []
    with TestServer(root) as a, TestServer(root) as b, TestServer(root, url_host="localhost") as c:
        a.require_bearer(bearer)
        b.require_conda_token(conda_token)
        c.require_basic("uu", url_password)
        auth_file = tmp_path / "auth.json"
        auth_file.write_text(json.dumps({"127.0.0.1": {"BearerToken": bearer},
                                         "*.example.invalid": {"BasicHTTP": {"username": "user",
                                                                             "password": password}}}))
        records = records_for(two_platforms[1], a.url, root)
        # A bearer host with faults (retries, wrong bytes), a conda-token URL from the lock, URL userinfo.
        a.add_fault("status", "*app64*", times=2, status=502)
        a.add_fault("corrupt", "*lib64*", at=10)
        token_records = [dataclasses.replace(r, url=r.url.replace(b.url, f"{b.url}/t/{conda_token}"))
                         for r in records_for(two_platforms[1], b.url, root)[:2]]
        with_userinfo = [dataclasses.replace(r, url=r.url.replace("http://localhost",
                                                                  f"http://uu:{url_password}@localhost"))
                         for r in records_for(two_platforms[1], c.url, root)[2:4]]
        wrong = [dataclasses.replace(r, url=r.url.replace("http://localhost", "http://uu:URL-s3cr3t-wrong@localhost"))
                 for r in records_for(two_platforms[1], c.url, root)[4:5]]
        auth = AuthStore.load(auth_file, use_netrc=False)
        for i, batch in enumerate((records, token_records, with_userinfo, wrong)):
            store = Store(tmp_path / "stores" / str(i))  # fresh store each time: every batch hits the network
            stores.append(store)
            with Fetcher(store, FAST, progress=True, auth=auth) as f:
                try:
                    f.fetch_all(batch)
                except BuildError as exc:
                    messages.append(str(exc))
        assert any("sha256 mismatch" in m for m in messages) and any("HTTP 401" in m for m in messages)
        assert b.count(".conda", status=(200,)) == 2  # the conda token did authenticate
        assert c.count(".conda", status=(200,)) == 2  # so did the URL's userinfo
    secrets.append("URL-s3cr3t-wrong")
    captured = capsys.readouterr()
    assert "packages" in captured.err  # the progress bar did draw
    haystacks = {"log": caplog.text, "errors": "\n".join(messages), "stderr": captured.err,
                 "stdout": captured.out}
    for store in stores:
        # The index is opened lazily: read it first so that a store whose batch failed before its first
        # download (timing) still has an index directory for the scan below.
        keys = [k for k, _ in store.index_items()]
        assert all("@" not in k and "/t/" not in k for k in keys)
        store.close()
        for path in store.root.rglob("*"):
            if path.is_file() and "blobs" not in path.parts:
                haystacks[str(path)] = path.read_bytes().decode("latin-1")
    assert sum("index" in k for k in haystacks) >= 4
    for name, text in haystacks.items():
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked into {name}"


def test_ctrl_c_stops_running_downloads_promptly_and_keeps_them_resumable(tmp_path):
    root = tmp_path / "channel"
    files = make_channel(root, [spec("big", "linux-64", 3_000_000, 11)])
    store = tmp_path / "store"
    with TestServer(root) as srv:
        records = records_for(files, srv.url, root)
        dump_records(records, tmp_path / "records.json")
        srv.add_fault("slow", "*.conda", rate=300_000)  # ~10 s for the whole file
        proc = _run_fetch(tmp_path / "records.json", store)
        partial = store / "blobs" / "sha256" / records[0].sha256[:2] / f".{records[0].sha256}.part"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not partial.exists() or partial.stat().st_size < 100_000):
            time.sleep(0.02)
        t = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
        assert time.monotonic() - t < 4
        assert proc.returncode != 0
        assert partial.exists() and blob_files(store) == []
        srv.clear_faults()
        rerun = _run_fetch(tmp_path / "records.json", store)
        _, err = rerun.communicate(timeout=60)
        assert rerun.returncode == 0, err
        assert srv.requests[-1].status == 206
    assert_store_sound(store)


@pytest.mark.corpus
def test_real_corpus_packages_fetched_over_http_match_their_published_sha256(tmp_path):
    from conftest import require_corpus

    pkgs = require_corpus("pkgs")
    rows = [dict(zip(header, line.split("\t"))) for header in
            [(pkgs / "INDEX.tsv").read_text().splitlines()[0].split("\t")]
            for line in (pkgs / "INDEX.tsv").read_text().splitlines()[1:] if line.strip()]
    rows = [r for r in rows if (pkgs / r["file"]).is_file()]  # INDEX also lists files the snapshot lacks
    assert len(rows) > 200
    from pixibuild.conda.records import CondaRecord

    store = Store(tmp_path / "store")
    with TestServer(pkgs) as srv:
        records = [CondaRecord(url=srv.url_for(r["file"]), file_name=r["file"].rsplit("/", 1)[-1],
                               subdir=r["subdir"], name=r["name"], version=r["version"], build=r["build"],
                               build_number=0, sha256=r["sha256"], size=int(r["size"])) for r in rows]
        with Fetcher(store, FAST, progress=False, auth=AuthStore()) as f:
            paths = f.fetch_all(records)
        unique = {r.sha256 for r in records}
        # Duplicated files (same bytes at several corpus paths) are requested once.
        assert srv.count(".conda") + srv.count(".bz2") == len(unique)
    assert {p.name for p in paths} == unique
    assert_store_sound(store.root)
    store.close()
