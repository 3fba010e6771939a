"""The archive node on generated packages: pixi-pack layout, determinism, and rattler as oracle."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from pathlib import Path

import pytest

from pixibuild.pack.writer import PIXI_PACK_MTIME, PackContents, write_directory, write_tar
from pixibuild.demo.condapkg import PackageSpec, PkgFile, locked_record, write_package

rattler = pytest.importorskip("rattler")


def _channel(tmp: Path, platform: str) -> list:
    specs = [
        (PackageSpec("libzz", "1.3.1", "h1_0", subdir=platform, files=[PkgFile("lib/libzz.so", b"\x7fELF zz")]), ".conda"),
        (PackageSpec("tool", "2.0", "h2_1", build_number=1, subdir=platform, depends=("libzz >=1.3,<2", "__glibc >=2.17"),
                     files=[PkgFile("bin/tool", b"#!/bin/sh\necho @PREFIX@\n", 0o755, prefix="text")]), ".tar.bz2"),
        (PackageSpec("data", "2024.1", "pyh0_0", subdir="noarch", noarch="generic", depends=("tool",),
                     files=[PkgFile("share/data.txt", b"data")]), ".conda"),
    ]
    out = []
    for spec, fmt in specs:
        path = write_package(spec, tmp / "src" / spec.subdir, fmt)
        out.append((locked_record(spec, path), path))
    return out


def _read(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


@pytest.mark.parametrize("platform", ["linux-64", "linux-aarch64", "osx-arm64", "win-64"])
def test_layout_and_determinism(tmp_path: Path, platform: str) -> None:
    contents = PackContents(platform, _channel(tmp_path, platform))
    first, second = io.BytesIO(), io.BytesIO()
    size = write_tar(contents, first)
    write_tar(contents, second)
    assert first.getvalue() == second.getvalue() and size == len(first.getvalue())
    assert first.getvalue().endswith(b"\0" * 1024) and size % 512 == 0
    members = _read(first.getvalue())
    platform_dir = [f"channel/{platform}", f"channel/{platform}/libzz-1.3.1-h1_0.conda",
                    f"channel/{platform}/repodata.json", f"channel/{platform}/tool-2.0-h2_1.tar.bz2"]
    noarch_dir = ["channel/noarch", "channel/noarch/data-2024.1-pyh0_0.conda", "channel/noarch/repodata.json"]
    subdirs = [platform_dir, noarch_dir] if platform < "noarch" else [noarch_dir, platform_dir]
    assert [m.name for m in members] == ["channel", *subdirs[0], *subdirs[1], "environment.yml", "pixi-pack.json"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(PIXI_PACK_MTIME, 0, 0, "", "")}
    assert {m.mode for m in members if m.isdir()} == {0o755}
    with tarfile.open(fileobj=io.BytesIO(first.getvalue())) as tar:
        meta = json.loads(tar.extractfile("pixi-pack.json").read())
        repodata = json.loads(tar.extractfile(f"channel/{platform}/repodata.json").read())
        env_yml = tar.extractfile("environment.yml").read().decode()
    assert meta["version"] == "1" and meta["platform"] == platform
    assert repodata["info"] == {"subdir": platform} and repodata["packages"] == {}
    assert repodata["repodata_version"] == 2
    assert sorted(repodata["packages.conda"]) == ["libzz-1.3.1-h1_0.conda", "tool-2.0-h2_1.tar.bz2"]
    tool = repodata["packages.conda"]["tool-2.0-h2_1.tar.bz2"]
    assert list(tool) == sorted(tool) and tool["depends"] == ["libzz >=1.3,<2", "__glibc >=2.17"]
    assert env_yml.splitlines()[:4] == ["channels:", "  - ./channel", "  - nodefaults", "dependencies:"]
    assert "  - tool=2.0=h2_1" in env_yml.splitlines()


def test_source_date_epoch_sets_mtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234567890")
    out = io.BytesIO()
    write_tar(PackContents("linux-64", _channel(tmp_path, "linux-64")), out)
    assert {m.mtime for m in _read(out.getvalue())} == {1234567890}


def test_directory_output_matches_tar(tmp_path: Path) -> None:
    contents = PackContents("linux-64", _channel(tmp_path, "linux-64"))
    out = io.BytesIO()
    write_tar(contents, out)
    write_directory(contents, tmp_path / "dir")
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        for member in tar.getmembers():
            on_disk = tmp_path / "dir" / member.name
            if member.isdir():
                assert on_disk.is_dir()
            else:
                assert on_disk.read_bytes() == tar.extractfile(member).read(), member.name


@pytest.mark.parametrize("platform", ["linux-64", "win-64"])
def test_environment_yml_solves_to_locked_set_with_rattler(tmp_path: Path, platform: str) -> None:
    """Compatibility mode: a conda client given environment.yml + ./channel gets exactly the lock."""
    packed = _channel(tmp_path, platform)
    out = io.BytesIO()
    write_tar(PackContents(platform, packed), out)
    extracted = tmp_path / "extracted"
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        tar.extractall(extracted, filter="data")
    lines = (extracted / "environment.yml").read_text().splitlines()
    specs = [rattler.MatchSpec(line[4:]) for line in lines if line.startswith("  - ") and "=" in line]
    channel = rattler.Channel(str((extracted / "channel").resolve()))
    solved = asyncio.run(rattler.solve([channel], specs, platforms=[platform, "noarch"],
                                       virtual_packages=[rattler.GenericVirtualPackage(
                                           rattler.PackageName("__glibc"), rattler.Version("2.36"), rattler.BuildString("0"))]))
    got = sorted((r.name.normalized, str(r.version), str(r.build), r.sha256.hex()) for r in solved)
    want = sorted((r.name, r.version, r.build, r.sha256) for r, _ in packed)
    assert got == want
