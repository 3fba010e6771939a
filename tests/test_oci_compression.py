"""Layer compression: gzip in parallel blocks and zstd, both reproducible whatever the number of
threads, readable by the standard tools, with diff_id = sha256 of the uncompressed tar."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import subprocess
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import zstandard
from conftest import require_tool

from pixibuild.errors import InputError
from pixibuild.net.mediatypes import MEDIA_TYPE_GZIP, MEDIA_TYPE_ZSTD
from pixibuild.oci import layer as layer_module
from pixibuild.oci.layer import GZIP_BLOCK, LayerCache, write_layer


def _stage(root: Path) -> Path:
    """Several blocks' worth of mixed data: compressible text, random bytes, a 0664 file."""
    rng = random.Random(7)
    (root / "share").mkdir(parents=True)
    (root / "share" / "text.txt").write_bytes(b"".join(b"line %d of some text\n" % i for i in range(200_000)))
    (root / "share" / "random.bin").write_bytes(rng.randbytes(3 * GZIP_BLOCK + 12345))
    (root / "share" / "group-writable").write_bytes(b"x\n")
    (root / "share" / "group-writable").chmod(0o664)
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    (root / "bin" / "tool").chmod(0o700)
    return root


def _tar_bytes(layer) -> bytes:
    blob = layer.path.read_bytes()
    if layer.media_type == MEDIA_TYPE_ZSTD:
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob)).read()
    return gzip.decompress(blob)


@pytest.fixture
def pool_of():
    """Swap the process's deflate pool for one with `n` workers (restored afterwards)."""
    saved = layer_module._POOL
    pools = []

    def make(n: int) -> None:
        layer_module._POOL = ThreadPoolExecutor(max_workers=n)
        pools.append(layer_module._POOL)

    yield make
    layer_module._POOL = saved
    for pool in pools:
        pool.shutdown()


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_bytes_do_not_depend_on_thread_count(tmp_path: Path, compression: str, pool_of, monkeypatch) -> None:
    staging = _stage(tmp_path / "s")
    digests = set()
    for n in (1, 2, 5):
        pool_of(n)
        monkeypatch.setattr(layer_module.os, "cpu_count", lambda n=n: n)  # zstd's worker count
        layer = write_layer(staging, tmp_path / f"blobs{n}", mount="app", compression=compression)
        digests.add((layer.digest, layer.diff_id, layer.size))
    assert len(digests) == 1


@pytest.mark.parametrize("compression,media_type,tool", [("gzip", MEDIA_TYPE_GZIP, "gzip"),
                                                         ("zstd", MEDIA_TYPE_ZSTD, "zstd")])
def test_standard_tools_read_the_blob_and_diff_id_is_the_tar(tmp_path: Path, compression: str, media_type: str,
                                                            tool: str) -> None:
    staging = _stage(tmp_path / "s")
    layer = write_layer(staging, tmp_path / "blobs", mount="app", compression=compression)
    assert layer.media_type == media_type
    assert layer.digest == "sha256:" + hashlib.sha256(layer.path.read_bytes()).hexdigest()
    raw = subprocess.run([require_tool(tool), "-dc", str(layer.path)], capture_output=True, check=True).stdout
    assert raw == _tar_bytes(layer)
    assert layer.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        random_member = tar.extractfile("app/share/random.bin").read()  # type: ignore[union-attr]
    assert random_member == (staging / "share" / "random.bin").read_bytes()
    # the same tar whatever the compression: the diff_id is the layer's identity across formats
    other = write_layer(staging, tmp_path / "other", mount="app", compression="zstd" if tool == "gzip" else "gzip")
    assert other.diff_id == layer.diff_id and other.digest != layer.digest


def test_parallel_gzip_stays_close_to_single_stream_size(tmp_path: Path) -> None:
    """Blocks primed with the previous 32 KiB lose almost nothing against one zlib stream."""
    staging = _stage(tmp_path / "s")
    layer = write_layer(staging, tmp_path / "blobs", mount="app")
    single = gzip.compress(_tar_bytes(layer), compresslevel=6)
    assert layer.size <= len(single) * 1.01


def test_modes_kept_or_normalized(tmp_path: Path) -> None:
    staging = _stage(tmp_path / "s")
    modes = {}
    for policy in ("keep", "normalize"):
        layer = write_layer(staging, tmp_path / policy, mount="", modes=policy)
        with tarfile.open(fileobj=io.BytesIO(_tar_bytes(layer))) as tar:
            modes[policy] = {m.name: m.mode for m in tar.getmembers() if m.isfile()}
    assert modes["keep"]["share/group-writable"] == 0o664 and modes["keep"]["bin/tool"] == 0o700
    assert modes["normalize"]["share/group-writable"] == 0o644 and modes["normalize"]["bin/tool"] == 0o755


def test_cache_keeps_gzip_and_zstd_apart(tmp_path: Path) -> None:
    def populate(d: Path) -> None:
        (d / "f").write_bytes(os.urandom(10) * 1000)

    gz = LayerCache(tmp_path / "c").get_or_build("k", populate)
    zs = LayerCache(tmp_path / "c", compression="zstd").get_or_build("k", populate)
    assert gz.media_type == MEDIA_TYPE_GZIP and zs.media_type == MEDIA_TYPE_ZSTD
    assert LayerCache(tmp_path / "c", compression="zstd").lookup("k") == zs
    assert LayerCache(tmp_path / "c").lookup("k") == gz


def test_unknown_compression_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="gzip, zstd"):
        LayerCache(tmp_path / "c", compression="xz")
