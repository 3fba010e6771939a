"""The test-package writer must produce archives real tools read the same way we meant them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

rattler = pytest.importorskip("rattler")

from pixibuild.demo.condapkg import PLACEHOLDER, PackageSpec, PkgFile, write_channel, write_package

SPEC = PackageSpec(
    "demo", "1.2", "h0_0", depends=("libfoo >=1",),
    files=[
        PkgFile("bin/tool", b"#!/bin/sh\necho @PREFIX@\n", 0o755, prefix="text"),
        PkgFile("lib/blob.bin", b"abc\0@PREFIX@/share\0tail", prefix="binary"),
        PkgFile("lib/link.so", symlink="blob.bin"),
    ],
)


@pytest.mark.parametrize("fmt", [".conda", ".tar.bz2"])
def test_same_spec_same_bytes_and_rattler_reads_it(tmp_path: Path, fmt: str) -> None:
    first = write_package(SPEC, tmp_path / "a", fmt)
    second = write_package(SPEC, tmp_path / "b", fmt)
    assert first.read_bytes() == second.read_bytes()
    index = rattler.IndexJson.from_package_archive(first)
    assert (index.name.normalized, str(index.version), str(index.build)) == ("demo", "1.2", "h0_0")
    assert list(index.depends) == ["libfoo >=1"]
    paths = {str(e.relative_path): e for e in rattler.PathsJson.from_package_archive(first).paths}
    assert set(paths) == {"bin/tool", "lib/blob.bin", "lib/link.so"}
    assert paths["lib/blob.bin"].prefix_placeholder.placeholder == PLACEHOLDER
    assert str(paths["lib/blob.bin"].prefix_placeholder.file_mode) == 'FileMode("binary")'


def test_rattler_installs_generated_package(tmp_path: Path) -> None:
    pkg = write_package(SPEC, tmp_path, ".conda")
    record = asyncio.run(rattler.RepoDataRecord.from_package_archive(pkg))
    prefix = tmp_path / "env"
    asyncio.run(rattler.install([record], prefix, cache_dir=tmp_path / "cache", show_progress=False))
    assert (prefix / "bin/tool").read_text() == f"#!/bin/sh\necho {prefix}\n"
    blob = (prefix / "lib/blob.bin").read_bytes()
    assert blob.startswith(b"abc\0" + str(prefix).encode() + b"/share\0")
    assert len(blob) == len(b"abc\0" + PLACEHOLDER.encode() + b"/share\0tail")
    assert (prefix / "lib/link.so").readlink() == Path("blob.bin")


def test_write_channel_has_repodata_per_subdir(tmp_path: Path) -> None:
    noarch = PackageSpec("pure", subdir="noarch", noarch="generic", files=[PkgFile("share/x", b"x")])
    write_channel([(SPEC, ".conda"), (noarch, ".tar.bz2")], tmp_path)
    linux = rattler.RepoData.from_path(tmp_path / "linux-64/repodata.json")
    assert [str(r.file_name) for r in linux.into_repo_data(rattler.Channel("local"))] == ["demo-1.2-h0_0.conda"]
    data = json.loads((tmp_path / "noarch/repodata.json").read_text())
    assert list(data["packages"]) == ["pure-1.0-0.tar.bz2"]
    assert data["packages"]["pure-1.0-0.tar.bz2"]["noarch"] == "generic"
