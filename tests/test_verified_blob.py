"""files/verified.py: a blob's digest is checked from the consumer's own reads (no second pass over
the package), whatever order the consumer reads in, and a damaged store blob fails naming the package,
is evicted, and nothing half-built survives."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import pytest

from pixibuild.conda.archive import read_info, record_from_archive
from pixibuild.demo.condapkg import PackageSpec, PkgFile, write_package
from pixibuild.errors import BuildError, InputError
from pixibuild.files.tar import DeterministicTarWriter
from pixibuild.files.verified import VerifiedBlob, verifying
from pixibuild.install.environment import install_environment, install_package
from pixibuild.store.blobs import Store, blob_source


def _spec(name: str = "pkg", n_files: int = 12) -> PackageSpec:
    rng = __import__("random").Random(name)
    return PackageSpec(name, "1.0", "h0_0", subdir="linux-64", files=[
        PkgFile(f"share/{name}/f{i}", rng.randbytes(40_000 + 997 * i)) for i in range(n_files)])


def _stored(tmp_path: Path, fmt: str, name: str = "pkg") -> tuple[Store, Path, Path]:
    archive = write_package(_spec(name), tmp_path / "channel", fmt)  # type: ignore[arg-type]
    store = Store(tmp_path / "store")
    blob = store.ingest_file(archive)
    return store, archive, blob


def _flip(path: Path, offset: int | None = None) -> None:
    """Damage a file in place (same inode, same size), as a bad disk or a stray writer would."""
    size = path.stat().st_size
    offset = size // 2 if offset is None else offset
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("fmt", [".conda", ".tar.bz2"])
def test_installing_through_a_verified_blob_reads_each_byte_once(tmp_path: Path, fmt: str) -> None:
    """The installer's reads (info first, then the payload; a zip read from its end) are what gets hashed:
    verifying costs at most a small tail (zip central directory, bz2 stream end), never a second pass."""
    store, archive, path = _stored(tmp_path, fmt)
    record = record_from_archive(archive)
    blob = store.verified(path, record.file_name)
    with verifying([blob]):
        install_environment([(record, blob)], tmp_path / "env", platform="linux-64")
    assert blob.actual() == path.name
    size = path.stat().st_size
    assert size > 300_000
    assert blob.extra_read < 70_000, f"verifying read {blob.extra_read} of {size} bytes a second time"
    assert (tmp_path / "env" / "share" / "pkg" / "f3").stat().st_size == 40_000 + 997 * 3


def test_any_read_order_hashes_the_whole_file(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    path = tmp_path / "blob"
    path.write_bytes(data)
    blob = VerifiedBlob(path, "sha256", hashlib.sha256(data).hexdigest(), label="blob")
    with blob() as f:
        f.seek(2 << 20)
        f.read(4096)  # far ahead: left for later
        f.seek(100)
        f.read(10)  # a small gap: filled at once
        f.seek(0)
        assert f.read() == data
    assert blob.extra_read == 100  # only the gap before the read at 100
    blob.finish()
    damaged = VerifiedBlob(path, "sha256", "0" * 64, label="blob")
    with damaged() as f:
        f.read(1000)
    with pytest.raises(ValueError, match="blob: sha256 mismatch: expected 0{64}, got " + hashlib.sha256(data).hexdigest()):
        damaged.finish()
    assert 0 < damaged.extra_read <= len(data) - 1000  # what the consumer did not read, hashed once


def test_a_region_of_a_file_is_checked_on_its_own(tmp_path: Path) -> None:
    """A member of an uncompressed tar (a pack) is read in place."""
    body = os.urandom(70_000)
    out = io.BytesIO()
    writer = DeterministicTarWriter(out, mtime=0)
    writer.add_bytes("a", b"x" * 10)
    writer.add_bytes("member", body)
    writer.close()
    path = tmp_path / "t.tar"
    path.write_bytes(out.getvalue())
    offset = out.getvalue().index(body)
    blob = VerifiedBlob(path, "sha256", hashlib.sha256(body).hexdigest(), label="member", offset=offset,
                        length=len(body))
    copy = io.BytesIO()
    assert blob.copy_into(copy) == len(body) and copy.getvalue() == body
    with blob() as f:
        assert f.seek(0, 2) == len(body)


@pytest.mark.parametrize("fmt", [".conda", ".tar.bz2"])
def test_damaged_store_blob_fails_the_install_names_the_package_and_is_evicted(tmp_path: Path, fmt: str) -> None:
    """Damaged in place after its verify node ran: the layer/unpack install fails with package, expected and
    actual sha256 (even when the damage breaks the archive parser first), and the blob leaves the store."""
    store, archive, path = _stored(tmp_path, fmt)
    record = record_from_archive(archive)
    good = path.name
    for offset in (None, 40):  # mid-payload (content damage), near the start (the parser breaks first)
        store.ingest_file(archive)
        _flip(path, offset)
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        blob = store.verified(path, record.file_name)
        with pytest.raises(BuildError) as info:
            with verifying([blob]):
                install_package(record, blob, tmp_path / f"layer{offset}", python_version=None, platform="linux-64")
        message = str(info.value)
        assert f"package {record.file_name}" in message and f"expected {good}, got {actual}" in message
        assert not path.exists(), "a damaged blob must be evicted so the next run fetches it again"


def test_eviction_spares_a_good_blob_committed_meanwhile(tmp_path: Path) -> None:
    store, archive, path = _stored(tmp_path, ".conda")
    blob = store.verified(path, "pkg")
    with blob() as f:
        f.read(100)
    path.rename(tmp_path / "old")  # (kept, so its inode number cannot be reused)
    store.ingest_file(archive)  # another process fetched it again: a new inode
    assert store.evict(path.name, blob.identity) is False and path.exists()


def test_blob_source_recognises_store_blobs_only(tmp_path: Path) -> None:
    store, archive, path = _stored(tmp_path, ".conda")
    assert isinstance(blob_source(path, "pkg"), VerifiedBlob)
    assert blob_source(archive, "pkg") == archive


def test_a_good_blob_that_breaks_the_consumer_keeps_the_consumers_error(tmp_path: Path) -> None:
    """A package that is bad but is what the lock pinned: the installer's error, the blob stays."""
    zpath = tmp_path / "not-a-package.conda"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("metadata.json", b"{}")
    store = Store(tmp_path / "store")
    path = store.ingest_file(zpath)
    record = record_from_archive(write_package(_spec(), tmp_path / "c"))
    blob = store.verified(path, record.file_name)
    with pytest.raises(InputError, match="expected exactly one"):
        with verifying([blob]):
            read_info(Path(record.file_name), blob, record.file_name)
    assert path.exists()


def test_ingest_never_shares_an_inode_with_the_source(tmp_path: Path) -> None:
    """A file:// channel file overwritten in place (cp over it) must not change the store's blob."""
    store, archive, path = _stored(tmp_path, ".tar.bz2")
    assert os.stat(path).st_ino != os.stat(archive).st_ino and os.stat(path).st_nlink == 1
    before = path.read_bytes()
    archive.write_bytes(b"something else entirely")
    assert path.read_bytes() == before and store.verify_blob(path.name)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644 & ~_umask())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_a_verified_conda_is_read_without_a_zip_crc_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The archive's sha256 is checked as it is read: zipfile's CRC-32 over every member byte (~7 % of
    building a large layer) is skipped for a store blob, and only for one (an archive read from a plain
    path still has its CRCs checked)."""
    store, archive, path = _stored(tmp_path, ".conda")
    record = record_from_archive(archive)

    def no_crc(*args: object) -> int:
        raise AssertionError("zipfile computed a CRC")

    monkeypatch.setattr(zipfile, "crc32", no_crc)
    blob = store.verified(path, record.file_name)
    with verifying([blob]):
        install_environment([(record, blob)], tmp_path / "env", platform="linux-64")
    assert (tmp_path / "env" / "share" / "pkg" / "f3").stat().st_size == 40_000 + 997 * 3
    assert blob.extra_read < 70_000
    with pytest.raises(AssertionError, match="CRC"):
        install_environment([(record, archive)], tmp_path / "env2", platform="linux-64")
