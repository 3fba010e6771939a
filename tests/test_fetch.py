"""Fetching into the store against a real HTTP server on 127.0.0.1, with injected faults."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import socket
import time

import pytest

from fetchkit import assert_store_sound, blob_files, make_channel, records_for, spec
from pixibuild.net.auth import AuthStore
from pixibuild.errors import BuildError, InputError
from pixibuild.store.fetch import Fetcher, fetch
from pixibuild.net.config import NetConfig
from pixibuild.conda.records import PypiRecord
from pixibuild.store.blobs import Store
from support.http_server import TestServer

FAST = NetConfig(retries=3, backoff=0.01, max_backoff=0.05, read_timeout=5, connect_timeout=2)
BIG = 300_000


@pytest.fixture
def channel(tmp_path):
    root = tmp_path / "channel"
    specs = [spec("alpha", "linux-64", BIG, 1), spec("beta", "linux-64", 20_000, 2),
             spec("gamma", "noarch", 50_000, 3)]
    return root, make_channel(root, specs)


@pytest.fixture
def server(channel):
    with TestServer(channel[0]) as srv:
        yield srv


@pytest.fixture
def records(channel, server):
    return records_for(channel[1], server.url, channel[0])


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store")
    yield s
    s.close()


def fetcher(store, config=FAST, **kw):
    kw.setdefault("auth", AuthStore())
    return Fetcher(store, config, progress=False, **kw)


def alpha(records):
    return next(r for r in records if r.name == "alpha")


def test_fetch_verifies_names_blobs_by_sha256_and_indexes_urls(records, server, store):
    with fetcher(store) as f:
        paths = f.fetch_all(records)
    for record, path in zip(records, paths):
        assert path == store.blob_path(record.sha256)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == record.sha256
        assert store.recall(record.url)["sha256"] == record.sha256
    assert len(blob_files(store.root)) == len(records)
    # Second run: everything comes from the store, nothing is requested.
    server.reset_log()
    with fetcher(store) as f:
        assert f.fetch_all(records) == paths
        assert f.stats["cached"] == len(records)
    assert server.requests == []


def test_truncated_body_is_resumed_with_a_range_request(records, server, store):
    rec = alpha(records)
    server.add_fault("truncate", f"*{rec.file_name}", times=1, at=100_000)
    with fetcher(store) as f:
        path = f.fetch_one(rec)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == rec.sha256
    gets = [r for r in server.requests if r.path.endswith(rec.file_name)]
    assert [g.status for g in gets] == [200, 206]
    assert gets[1].range == "bytes=100000-"
    assert gets[1].sent == rec.size - 100_000


def test_truncated_body_without_range_support_restarts(records, server, store):
    server.ranges = False
    rec = alpha(records)
    server.add_fault("truncate", f"*{rec.file_name}", times=2, at=50_000)
    with fetcher(store) as f:
        path = f.fetch_one(rec)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == rec.sha256
    gets = [r for r in server.requests if r.path.endswith(rec.file_name)]
    assert [g.status for g in gets] == [200, 200, 200]
    assert gets[-1].sent == rec.size


def test_500_then_success_is_retried(records, server, store):
    rec = alpha(records)
    server.add_fault("status", f"*{rec.file_name}", times=2, status=500)
    with fetcher(store) as f:
        f.fetch_one(rec)
        assert f.stats["retries"] == 2
    assert [r.status for r in server.requests] == [500, 500, 200]
    assert_store_sound(store.root)


def test_dropped_connections_are_retried(records, server, store):
    rec = alpha(records)
    server.add_fault("drop", f"*{rec.file_name}", times=1)
    with fetcher(store) as f:
        f.fetch_one(rec)
    assert store.has(rec.sha256, rec.size)


def test_persistent_5xx_fails_clearly_and_stores_nothing(records, server, store):
    rec = alpha(records)
    server.add_fault("status", f"*{rec.file_name}", status=503)
    with fetcher(store) as f, pytest.raises(BuildError) as err:
        f.fetch_one(rec)
    msg = str(err.value)
    assert rec.dist_name in msg and "HTTP 503" in msg and rec.url in msg and "4 attempts" in msg
    assert "\n" not in msg
    assert blob_files(store.root) == []
    assert server.count(rec.file_name) == 1 + FAST.retries


def test_wrong_bytes_are_rejected_naming_package_url_and_both_hashes(records, server, store):
    rec = alpha(records)
    server.add_fault("corrupt", f"*{rec.file_name}", at=12_345)
    with fetcher(store) as f, pytest.raises(BuildError) as err:
        f.fetch_one(rec)
    msg = str(err.value)
    data = bytearray((server.state.root / "linux-64" / rec.file_name).read_bytes())
    data[12_345] ^= 0xFF
    actual = hashlib.sha256(data).hexdigest()
    assert msg == (f"{rec.dist_name}: sha256 mismatch for {rec.url}: expected {rec.sha256}, got {actual}")
    assert blob_files(store.root) == []
    assert not list((store.root / "blobs").rglob("*.part"))


def test_md5_is_used_when_the_lock_has_no_sha256(records, server, store):
    rec = dataclasses.replace(alpha(records), sha256=None)
    with fetcher(store) as f:
        path = f.fetch_one(rec)
    assert hashlib.md5(path.read_bytes()).hexdigest() == rec.md5
    bad = dataclasses.replace(rec, md5="0" * 32, url=rec.url + "?x=1")
    with fetcher(store) as f, pytest.raises(BuildError, match=r"md5 mismatch .* expected 0{32}, got " + rec.md5):
        f.fetch_one(bad)


def test_slow_server_is_waited_for_and_a_stalled_one_times_out(records, server, store):
    rec = alpha(records)
    server.add_fault("slow", f"*{rec.file_name}", times=1, rate=1_000_000)
    with fetcher(store) as f:
        f.fetch_one(rec)
    assert store.has(rec.sha256, rec.size)
    beta = next(r for r in records if r.name == "beta")
    server.add_fault("stall", f"*{beta.file_name}", delay=1.0)
    config = dataclasses.replace(FAST, read_timeout=0.2, retries=1)
    with fetcher(store, config) as f, pytest.raises(BuildError, match=r"beta-1\.0-0: ReadTimeout.*2 attempts"):
        f.fetch_one(beta)
    assert not store.has(beta.sha256)


def test_oversized_response_is_stopped_at_the_declared_size(records, server, store):
    rec = alpha(records)
    server.add_fault("oversize", f"*{rec.file_name}", extra=50_000_000)
    with fetcher(store) as f, pytest.raises(BuildError, match=f"sent more than the {rec.size} bytes"):
        f.fetch_one(rec)
    deadline = time.monotonic() + 10
    while not all(r.done for r in server.requests) and time.monotonic() < deadline:  # the server logs once it notices the hang-up
        time.sleep(0.05)
    (req,) = server.requests
    assert req.sent < rec.size + 20_000_000  # the client hung up long before the 50 MB of junk
    assert blob_files(store.root) == []


def test_announced_length_beyond_the_lock_size_is_refused_before_download(records, server, store):
    rec = dataclasses.replace(alpha(records), size=1000)
    with fetcher(store) as f, pytest.raises(BuildError, match=f"announces {alpha(records).size} bytes but the lock "
                                            f"declares 1000"):
        f.fetch_one(rec)
    assert blob_files(store.root) == []


def _auth_file(tmp_path, entry):
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"127.0.0.1": entry}))
    return path


@pytest.mark.parametrize("kind", ["bearer", "basic", "conda"])
def test_401_without_credentials_then_success_with_the_auth_file(kind, records, server, store, tmp_path):
    entry = {"bearer": {"BearerToken": "tok-SECRET-1"},
             "basic": {"BasicHTTP": {"username": "me", "password": "pw-SECRET-2"}},
             "conda": {"CondaToken": "ct-SECRET-3"}}[kind]
    {"bearer": lambda: server.require_bearer("tok-SECRET-1"),
     "basic": lambda: server.require_basic("me", "pw-SECRET-2"),
     "conda": lambda: server.require_conda_token("ct-SECRET-3")}[kind]()
    rec = alpha(records)
    with fetcher(store) as f, pytest.raises(BuildError) as err:
        f.fetch_one(rec)
    assert str(err.value) == (f"{rec.dist_name}: HTTP 401 from {rec.url}: no credentials for this host "
                              f"(use --auth-file, $RATTLER_AUTH_FILE or ~/.netrc)")
    assert blob_files(store.root) == []
    auth = AuthStore.load(_auth_file(tmp_path, entry), use_netrc=False)
    with fetcher(store, auth=auth) as f:
        f.fetch_one(rec)
    assert store.has(rec.sha256, rec.size)


def test_wrong_credentials_are_reported_as_refused_without_the_secret(records, server, store, tmp_path):
    server.require_bearer("right-token")
    auth = AuthStore.load(_auth_file(tmp_path, {"BearerToken": "wrong-SECRET"}), use_netrc=False)
    with fetcher(store, auth=auth) as f, pytest.raises(BuildError, match="credentials were sent and refused") as err:
        f.fetch_one(alpha(records))
    assert "wrong-SECRET" not in str(err.value)


def test_netrc_credentials_are_used(records, server, store, tmp_path):
    server.require_basic("nu", "netrc-SECRET")
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login nu password netrc-SECRET\n")
    netrc.chmod(0o600)
    with fetcher(store, auth=AuthStore.load(None, use_env=False, netrc_file=netrc)) as f:
        f.fetch_one(alpha(records))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mirrors_are_tried_in_order_when_the_first_is_down(channel, server, store, caplog):
    canonical = "https://conda.example.invalid/my-channel"
    records = records_for(channel[1], canonical, channel[0])
    dead = f"http://127.0.0.1:{_closed_port()}/mirror"
    config = dataclasses.replace(FAST, mirrors={canonical: (dead, server.url)}, retries=1)
    caplog.set_level(logging.WARNING)
    with fetcher(store, config) as f:
        paths = f.fetch_all(records)
    assert [p.name for p in paths] == [r.sha256 for r in records]
    assert server.count(".conda") == len(records)
    assert "trying the next mirror" in caplog.text
    assert store.recall(records[0].url)["sha256"] == records[0].sha256  # indexed under the lock's URL


def test_mirror_serving_wrong_bytes_falls_through_to_the_next(channel, server, store, tmp_path):
    canonical = "https://conda.example.invalid/ch"
    records = records_for(channel[1], canonical, channel[0])
    other = tmp_path / "other"
    for p in channel[0].rglob("*.conda"):
        target = other / p.relative_to(channel[0])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(p.read_bytes()[:-1] + b"X")
    with TestServer(other) as bad:
        config = dataclasses.replace(FAST, mirrors={canonical: (bad.url, server.url)})
        with fetcher(store, config) as f:
            f.fetch_all(records)
    assert_store_sound(store.root)
    assert len(blob_files(store.root)) == len(records)


def test_redirect_to_another_host_does_not_carry_credentials(channel, store, tmp_path):
    root = channel[0]
    with TestServer(root) as origin, TestServer(root, url_host="localhost") as cdn:
        origin.require_bearer("origin-SECRET")
        origin.add_fault("redirect", "*.conda", location=cdn.url)
        records = records_for(channel[1], origin.url, root)
        auth = AuthStore.load(_auth_file(tmp_path, {"BearerToken": "origin-SECRET"}), use_netrc=False)
        with fetcher(store, auth=auth) as f:
            f.fetch_all(records)
        assert all(r.headers.get("Authorization") == "Bearer origin-SECRET" for r in origin.requests)
        assert cdn.count(".conda") == len(records)
        assert not any("Authorization" in r.headers or "SECRET" in r.path for r in cdn.requests)


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory):
    from conftest import require_tool
    from support.http_server import self_signed_cert

    require_tool("openssl")
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


def test_https_is_verified_by_default_and_a_ca_bundle_makes_it_trusted(channel, store, tls_pair):
    cert, key = tls_pair
    with TestServer(channel[0], tls=(cert, key), url_host="localhost") as srv:
        records = records_for(channel[1], srv.url, channel[0])
        with fetcher(store, dataclasses.replace(FAST, retries=0)) as f, \
                pytest.raises(BuildError, match="CERTIFICATE_VERIFY_FAILED"):
            f.fetch_one(records[0])
        config = NetConfig.load([], ca_bundle=cert, retries=0)
        with fetcher(store, config) as f:
            f.fetch_all(records)
    assert len(blob_files(store.root)) == len(records)


def test_local_files_and_lock_relative_paths_are_ingested(channel, store, tmp_path):
    root, files = channel
    recs = records_for(files, root.resolve().as_uri(), root)  # file:// URLs
    rel = [dataclasses.replace(r, url=f"channel/{r.subdir}/{r.file_name}", is_path=True) for r in recs]
    with fetcher(store) as f:
        paths = f.fetch_all(recs)
        assert f.fetch_all(rel, base_dir=tmp_path) == paths
    for r, p in zip(recs, paths):
        src = root / r.subdir / r.file_name
        assert p.read_bytes() == src.read_bytes()
        # a copy of its own, never a hard link: overwriting the channel file must not rewrite the blob
        assert os.stat(p).st_ino != os.stat(src).st_ino and os.stat(p).st_nlink == 1
    bad = dataclasses.replace(rel[0], sha256="1" * 64)
    with fetcher(store) as f, pytest.raises(BuildError, match=f"{bad.dist_name}: sha256 mismatch .* expected 1{{64}}"):
        f.fetch_one(bad, base_dir=tmp_path)
    missing = dataclasses.replace(rel[0], url="nowhere/x.conda", sha256="2" * 64)
    with fetcher(store) as f, pytest.raises(BuildError, match="local package file not found"):
        f.fetch_one(missing, base_dir=tmp_path)
    assert_store_sound(store.root)


def test_corrupt_and_truncated_blobs_are_detected(records, server, store):
    with fetcher(store) as f:
        paths = f.fetch_all(records)
    rec = alpha(records)
    blob = store.blob_path(rec.sha256)
    # Same size, wrong content: only a re-hash (--verify-cache) notices.
    blob.write_bytes(b"\0" * rec.size)
    with fetcher(store) as f:
        f.fetch_one(rec)
        assert f.stats["downloaded"] == 0
    with fetcher(store, verify_cache=True) as f:
        f.fetch_all(records)
        assert f.stats["downloaded"] == 1
    assert_store_sound(store.root)
    # Truncated: the size check catches it without hashing.
    with open(blob, "r+b") as fh:
        fh.truncate(1000)
    with fetcher(store) as f:
        f.fetch_one(rec)
        assert f.stats["downloaded"] == 1
    assert_store_sound(store.root)
    # Store.verify finds and removes a bad blob.
    paths[1].write_bytes(b"garbage")
    assert store.verify() == [paths[1].name]
    assert not paths[1].exists()


def test_pypi_wheels_are_verified_against_the_lock_sha256(tmp_path, store):
    wheel = tmp_path / "pypi" / "demo_pkg-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    wheel.write_bytes(os.urandom(30_000))
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    with TestServer(tmp_path / "pypi") as srv:
        good = PypiRecord("demo-pkg", "1.0", srv.url_for(wheel.name), sha256=sha)
        with fetcher(store) as f:
            assert f.fetch_one(good) == store.blob_path(sha)
        bad = dataclasses.replace(good, sha256="f" * 64, location=srv.url_for(wheel.name) + "#x")
        with fetcher(store) as f, pytest.raises(BuildError, match=r"demo-pkg 1\.0 \(pypi\): sha256 mismatch"):
            f.fetch_one(bad)
    with pytest.raises(InputError, match="editable"):
        fetch([PypiRecord("x", "0", "./src", editable=True, is_path=True)], store)


def test_malformed_hash_in_lock_is_an_input_error(records, store):
    bad = dataclasses.replace(records[0], sha256="../../etc/passwd")
    with pytest.raises(InputError, match=f"{bad.dist_name}: sha256"):
        fetch([bad], store)


def test_all_failures_are_reported_in_one_line(records, server, store):
    for r in records:
        server.add_fault("status", f"*{r.file_name}", status=404)
    with fetcher(store) as f, pytest.raises(BuildError, match=r"HTTP 404 .* \(and 2 more failed\)$"):
        f.fetch_all(records)


def test_https_to_http_redirect_is_refused(channel, store, tls_pair):
    cert, key = tls_pair
    with TestServer(channel[0], tls=(cert, key), url_host="localhost") as secure, TestServer(channel[0]) as plain:
        secure.add_fault("redirect", "*.conda", location=plain.url)
        records = records_for(channel[1], secure.url, channel[0])
        config = NetConfig.load([], ca_bundle=cert, retries=0)
        with fetcher(store, config) as f, pytest.raises(BuildError, match="redirects from https to http://"):
            f.fetch_one(records[0])
        assert plain.requests == []


def test_redirect_loops_end_with_a_clear_error(records, server, store):
    server.add_fault("redirect", "*.conda", location=server.url)
    rec = alpha(records)
    with fetcher(store) as f, pytest.raises(BuildError, match=f"{rec.dist_name}: more than 10 redirects from"):
        f.fetch_one(rec)
    assert server.count(rec.file_name) == 11
