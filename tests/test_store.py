"""The content-addressed store on its own: naming, ingest, locks, verification, stale temp files."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest

from pixibuild.errors import BuildError, InputError
from pixibuild.store.blobs import Store
from pixibuild.store.roots import store_root as default_store_root


def test_default_root_follows_env_then_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXIBUILD_CACHE_DIR", str(tmp_path / "a"))
    assert Store().root == tmp_path / "a"
    monkeypatch.delenv("PIXIBUILD_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_store_root() == tmp_path / "xdg" / "pixibuild"


def test_blob_names_are_validated_so_a_lock_cannot_name_a_path(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(InputError, match="not a sha256"):
        store.blob_path("../../etc/passwd")
    sha = "ab" * 32
    assert store.blob_path(sha.upper()) == tmp_path / "blobs" / "sha256" / "ab" / sha


def test_ingest_copies_when_it_cannot_link_and_verifies(tmp_path, monkeypatch):
    src = tmp_path / "pkg.conda"
    src.write_bytes(os.urandom(5000))
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    store = Store(tmp_path / "store")

    def no_link(*a):
        raise OSError(18, "Invalid cross-device link")  # EXDEV: another filesystem

    monkeypatch.setattr(os, "link", no_link)
    path = store.ingest_file(src, md5=md5)  # md5 only: the blob is named by the computed sha256
    assert path == store.blob_path(sha) and path.read_bytes() == src.read_bytes()
    assert os.stat(path).st_ino != os.stat(src).st_ino
    with pytest.raises(BuildError, match=f"mypkg: md5 mismatch for {src}: expected {'0' * 32}, got {md5}"):
        store.ingest_file(src, md5="0" * 32, label="mypkg")
    assert [p.name for p in (tmp_path / "store" / "blobs").rglob("*") if p.is_file()] == [sha]


def test_lock_excludes_threads_and_is_released_by_exit(tmp_path):
    store = Store(tmp_path)
    inside, overlaps = [], []

    def worker():
        with store.lock("k"):
            inside.append(1)
            if len(inside) > 1:
                overlaps.append(1)
            time.sleep(0.02)
            inside.pop()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []


def test_verify_removes_bad_blobs_and_stale_temp_files(tmp_path):
    store = Store(tmp_path)
    good = tmp_path / "good"
    good.write_bytes(b"good bytes")
    path = store.ingest_file(good)
    wrong = store.blob_path("cd" * 32)
    wrong.parent.mkdir(parents=True)
    wrong.write_bytes(b"not what the name says")
    stale = store.new_temp("cd" * 32)
    old = time.time() - 3 * 24 * 3600
    os.utime(stale, (old, old))
    fresh = store.new_temp("cd" * 32)
    partial = store.partial_path("cd" * 32)
    partial.write_bytes(b"resumable")
    os.utime(partial, (old, old))
    assert store.verify() == ["cd" * 32]
    assert path.exists() and not wrong.exists()
    assert not stale.exists() and fresh.exists() and partial.exists()


def test_index_keys_carry_no_credentials(tmp_path):
    store = Store(tmp_path)
    store.remember("https://me:pw@h.example/t/tok/ch/a.conda?sig=x", "ab" * 32, 3, etag='"e"')
    assert store.recall("https://h.example/ch/a.conda") == {"sha256": "ab" * 32, "size": 3, "md5": None,
                                                            "etag": '"e"'}
    assert [k for k, _ in store.index_items()] == ["https://h.example/ch/a.conda"]
    store.close()
