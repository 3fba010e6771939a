"""Layer blobs: deterministic bytes, correct digests, hardlinks as files, cache hits skip work."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from pixibuild.errors import BuildError
from pixibuild.oci.layer import LayerCache, write_layer


def _stage(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "bin" / "tool").chmod(0o700)
    (root / "lib").mkdir()
    (root / "lib" / "libx.so.1").write_bytes(os.urandom(3000))
    (root / "lib" / "libx.so").symlink_to("libx.so.1")
    os.link(root / "lib" / "libx.so.1", root / "lib" / "hard.so")
    (root / "share" / "empty").mkdir(parents=True)
    (root / "conda-meta").mkdir()
    (root / "conda-meta" / "x-1-0.json").write_text("{}")
    return root


def test_layer_digests_and_content(tmp_path: Path) -> None:
    staging = _stage(tmp_path / "s")
    layer = write_layer(staging, tmp_path / "blobs", mount="/app/.pixi/envs/prod")
    blob = layer.path.read_bytes()
    assert layer.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert layer.size == len(blob)
    # fixed gzip header: magic, deflate, no flags, mtime 0, XFL 0, OS 255
    assert blob[:10] == bytes.fromhex("1f8b0800000000000" + "0ff")
    raw = gzip.decompress(blob)
    assert layer.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[:4] == ["app", "app/.pixi", "app/.pixi/envs", "app/.pixi/envs/prod"]
    assert "app/.pixi/envs/prod/share/empty" in names
    by = {m.name: m for m in members}
    p = "app/.pixi/envs/prod/"
    assert by[p + "bin/tool"].mode == 0o755 and by[p + "conda-meta/x-1-0.json"].mode == 0o644
    assert by[p + "lib/hard.so"].isreg() and by[p + "lib/hard.so"].size == 3000
    assert by[p + "lib/libx.so"].issym() and by[p + "lib/libx.so"].linkname == "libx.so.1"
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members)
    assert all(by[n].isdir() and by[n].mode == 0o755 for n in names[:4])


def test_layer_bytes_independent_of_umask_mtime_and_creation_order(tmp_path: Path) -> None:
    a = write_layer(_stage(tmp_path / "a"), tmp_path / "ba", mount="x")
    b_root = tmp_path / "b"
    old = os.umask(0o077)
    try:
        _stage(b_root)
    finally:
        os.umask(old)
    for p in b_root.rglob("*"):
        if not p.is_symlink():
            os.utime(p, (12345, 12345))
    # same names, different random content → overwrite with a's bytes to isolate metadata effects
    (b_root / "lib" / "libx.so.1").write_bytes((tmp_path / "a" / "lib" / "libx.so.1").read_bytes())
    b = write_layer(b_root, tmp_path / "bb", mount="x")
    assert (a.digest, a.diff_id) == (b.digest, b.diff_id)


def test_cache_builds_once_and_survives_new_instance(tmp_path: Path) -> None:
    calls = []

    def populate(d: Path) -> None:
        calls.append(d)
        (d / "f").write_text("content")

    cache = LayerCache(tmp_path / "oci")
    first = cache.get_or_build("pkg-sha:abc", populate, mount="app")
    again = LayerCache(tmp_path / "oci").get_or_build("pkg-sha:abc", populate, mount="app")
    assert first == again and len(calls) == 1
    other = cache.get_or_build("pkg-sha:def", populate, mount="app")
    assert len(calls) == 2 and other.digest == first.digest  # same files → same blob
    # a deleted blob is rebuilt, not served from a stale index
    first.path.unlink()
    assert LayerCache(tmp_path / "oci").lookup("pkg-sha:abc") is None


def test_special_file_is_an_error_and_leaves_no_blob(tmp_path: Path) -> None:
    staging = tmp_path / "s"
    staging.mkdir()
    os.mkfifo(staging / "fifo")
    with pytest.raises(BuildError, match="fifo"):
        write_layer(staging, tmp_path / "blobs")
    assert list((tmp_path / "blobs").iterdir()) == []
