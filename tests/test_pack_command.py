"""`pixibuild pack` end to end through the real CLI: archive contents, reproducibility, compatibility
with rattler (solve + install from the archive's own channel), cross-platform packs, --inject,
pypi handling and bad input."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from pixibuild.cli import main
from pixibuild.conda.records import PypiRecord
from pixibuild.demo.condapkg import PackageSpec, PkgFile, locked_record, write_package
from pixibuild.demo.demo import write_demo
from pixibuild.demo.lockwriter import write_lock
from support.wheel import write_wheel

PINNED_DEMO_SHA256 = "4352219659e7f1920f140c6185c3602b6a1c620d89fc3519943f28aa1c93daed"
"""webapp prod linux-aarch64 (no compiled binary, so independent of the host gcc). Re-pin only
when an input or the archive format changes on purpose."""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_demo(tmp_path_factory.mktemp("demo"))


def pack(*args: str, store: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PIXIBUILD_CACHE_DIR=str(store))
    return subprocess.run([sys.executable, "-m", "pixibuild", "pack", *args], capture_output=True, env=env)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pack_is_reproducible_and_pinned(demo, tmp_path: Path) -> None:
    """Cold store vs warm store, -j 1 vs -j 8, file vs stdout: the same bytes; the digest is pinned."""
    webapp = demo["webapp"]
    out1, out2 = tmp_path / "a.tar", tmp_path / "b.tar"
    r1 = pack(str(webapp), "-e", "prod", "-p", "linux-aarch64", "-o", str(out1), "-j", "1", store=tmp_path / "s1")
    assert r1.returncode == 0, r1.stderr
    r2 = pack("--manifest-file", str(webapp / "pixi.toml"), "--environment", "prod", "--platform", "linux-aarch64",
              "-o", str(out2), "-j", "8", store=tmp_path / "s1")
    assert r2.returncode == 0, r2.stderr
    r3 = pack(str(webapp), "-e", "prod", "-p", "linux-aarch64", "-o", "-", store=tmp_path / "s2")
    assert r3.returncode == 0, r3.stderr.decode()
    assert out1.read_bytes() == out2.read_bytes() == r3.stdout
    assert sha256(out1) == PINNED_DEMO_SHA256
    # an input change (SOURCE_DATE_EPOCH) changes the bytes
    env_out = tmp_path / "c.tar"
    env = dict(os.environ, PIXIBUILD_CACHE_DIR=str(tmp_path / "s1"), SOURCE_DATE_EPOCH="1700000000")
    subprocess.run([sys.executable, "-m", "pixibuild", "pack", str(webapp), "-e", "prod", "-p", "linux-aarch64",
                    "-o", str(env_out)], check=True, env=env)
    assert sha256(env_out) != PINNED_DEMO_SHA256


def test_archive_members_follow_pixi_pack_layout(demo, tmp_path: Path) -> None:
    out = tmp_path / "env.tar"
    assert pack(str(demo["webapp"]), "-e", "default", "-p", "linux-64", "-o", str(out), store=tmp_path / "s").returncode == 0
    with tarfile.open(out) as tar:
        names = tar.getnames()
        meta = json.load(tar.extractfile("pixi-pack.json"))
        env_yml = yaml.safe_load(tar.extractfile("environment.yml"))
    assert meta == {"version": "1", "platform": "linux-64", "pixi-pack-version": meta["pixi-pack-version"]}
    assert env_yml["channels"] == ["./channel", "nodefaults"]
    assert "channel/linux-64/repodata.json" in names and "channel/noarch/repodata.json" in names
    assert {n.split("=")[0] for n in env_yml["dependencies"]} == {
        "hello", "libgreet", "python", "greeter", "hello-activation", "tzdata-demo"}


def test_rattler_solves_and_installs_our_archive_like_our_unpack(demo, tmp_path: Path) -> None:
    """Compatibility: environment.yml solves offline against the archive's channel to exactly the
    locked set, and rattler.install of that solution equals `pixibuild unpack`."""
    rattler = pytest.importorskip("rattler")
    from install_oracle import tree as tree_of  # noqa: PLC0415  (tests/ helper)

    out = tmp_path / "env.tar"
    assert pack(str(demo["webapp"]), "-e", "prod", "-p", "linux-64", "-o", str(out), store=tmp_path / "s").returncode == 0
    extracted = tmp_path / "x"
    with tarfile.open(out) as tar:
        tar.extractall(extracted, filter="data")
    env_yml = yaml.safe_load((extracted / "environment.yml").read_text())
    specs = [rattler.MatchSpec(" ".join(d.split("=")[:2]) + " " + d.split("=")[2]) for d in env_yml["dependencies"]]
    channel = rattler.Channel(str(extracted / "channel"))
    glibc = rattler.GenericVirtualPackage(rattler.PackageName("__glibc"), rattler.Version("2.36"), rattler.BuildString("0"))
    solved = asyncio.run(rattler.solve([channel], specs, platforms=["linux-64", "noarch"], virtual_packages=[glibc]))
    assert sorted(f"{r.name.normalized}={r.version}={r.build}" for r in solved) == sorted(env_yml["dependencies"])
    # both at the same prefix (files embed it): rattler first, moved aside, then ours
    ours = tmp_path / "run"
    asyncio.run(rattler.install(solved, ours / "env", cache_dir=tmp_path / "rc", show_progress=False))
    (ours / "env").rename(tmp_path / "rattler-env")
    code = subprocess.run([sys.executable, "-m", "pixibuild", "unpack", str(out), "-o", str(ours)],
                          capture_output=True, text=True)
    assert code.returncode == 0, code.stderr
    a, b = tree_of(tmp_path / "rattler-env"), tree_of(ours / "env")
    for tree in (a, b):
        for key in [k for k in tree if k.startswith("conda-meta/") or k == "CACHEDIR.TAG"]:
            tree.pop(key)
    assert a.keys() == b.keys()
    differing = [k for k in a if a[k] != b[k]]
    assert differing == [], differing


def _cross_project(root: Path, platform: str) -> Path:
    """A project whose lock pins generated packages for `platform` (+ noarch)."""
    channel = root / "channel"
    native = PackageSpec("tool", "1.0", "h0_0", subdir=platform,
                         files=[PkgFile("bin/tool.bat" if platform.startswith("win") else "bin/tool",
                                        b"echo @PREFIX@\n", 0o755, prefix="text")])
    noarch = PackageSpec("data", "2.0", "0", subdir="noarch", noarch="generic",
                         files=[PkgFile("share/data.txt", b"data\n")])
    recs = [locked_record(s, write_package(s, channel / s.subdir, fmt)) for s, fmt in ((native, ".conda"), (noarch, ".tar.bz2"))]
    project = root / "proj"
    project.mkdir()
    (project / "pixi.toml").write_text(f'[workspace]\nname = "x"\nchannels = ["{channel.as_uri()}"]\n'
                                       f'platforms = ["{platform}"]\n[dependencies]\ntool = "*"\ndata = "*"\n')
    write_lock(project / "pixi.lock", {"default": {platform: recs}}, channels=[channel.as_uri()])
    return project


@pytest.mark.parametrize("platform", ["linux-aarch64", "osx-arm64", "win-64"])
def test_cross_platform_packs(tmp_path: Path, platform: str) -> None:
    project = _cross_project(tmp_path, platform)
    out = tmp_path / "env.tar"
    r = pack(str(project), "-p", platform, "-o", str(out), store=tmp_path / "s")
    assert r.returncode == 0, r.stderr
    with tarfile.open(out) as tar:
        names = tar.getnames()
        assert json.load(tar.extractfile("pixi-pack.json"))["platform"] == platform
    assert f"channel/{platform}/tool-1.0-h0_0.conda" in names and "channel/noarch/data-2.0-0.tar.bz2" in names
    # our unpack refuses a pack for another platform, like pixi-unpack
    u = subprocess.run([sys.executable, "-m", "pixibuild", "unpack", str(out), "-o", str(tmp_path / "u")],
                       capture_output=True, text=True)
    assert u.returncode != 0 and "The pack was created for a different platform" in u.stderr


def test_directory_only(demo, tmp_path: Path) -> None:
    out = tmp_path / "dir"
    r = pack(str(demo["worker"]), "-p", "linux-64", "--directory-only", "-o", str(out), store=tmp_path / "s")
    assert r.returncode == 0, r.stderr
    assert (out / "pixi-pack.json").is_file() and (out / "channel" / "linux-64" / "repodata.json").is_file()


def test_inject_conda_tarbz2_and_wheel(demo, tmp_path: Path) -> None:
    extra = PackageSpec("extra-tool", "0.1", "0", subdir="linux-64", depends=("libgreet >=2",),
                        files=[PkgFile("bin/extra", b"#!/bin/sh\necho extra\n", 0o755)])
    legacy = PackageSpec("extra-data", "0.2", "0", subdir="noarch", noarch="generic",
                         files=[PkgFile("share/extra.txt", b"x\n")])
    conda_file = write_package(extra, tmp_path / "inj", ".conda")
    bz2_file = write_package(legacy, tmp_path / "inj", ".tar.bz2")
    wheel = write_wheel(tmp_path / "inj", "tiny-lib", "1.2.3", {"tiny_lib/__init__.py": b"X = 1\n"})
    out = tmp_path / "env.tar"
    r = pack(str(demo["worker"]), "-p", "linux-64", "-o", str(out), "--inject", str(conda_file),
             "--inject", str(bz2_file), "--inject", str(wheel), store=tmp_path / "s")
    assert r.returncode == 0, r.stderr
    with tarfile.open(out) as tar:
        names = tar.getnames()
        repodata = json.load(tar.extractfile("channel/linux-64/repodata.json"))
        env_yml = tar.extractfile("environment.yml").read().decode()
    assert "channel/linux-64/extra-tool-0.1-0.conda" in names
    assert "channel/noarch/extra-data-0.2-0.tar.bz2" in names
    assert "pypi/tiny_lib-1.2.3-py3-none-any.whl" in names
    rec = repodata["packages.conda"]["extra-tool-0.1-0.conda"]
    assert rec["sha256"] == sha256(conda_file) and rec["depends"] == ["libgreet >=2"]
    assert "--find-links ./pypi" in env_yml and "tiny-lib==1.2.3" in env_yml


def test_inject_with_unsatisfied_dependency_fails_naming_it(demo, tmp_path: Path) -> None:
    bad = PackageSpec("needy", "1.0", "0", subdir="linux-64", depends=("libgreet >=9",),
                      files=[PkgFile("share/needy", b"n\n")])
    path = write_package(bad, tmp_path, ".conda")
    out = tmp_path / "env.tar"
    r = pack(str(demo["worker"]), "-p", "linux-64", "-o", str(out), "--inject", str(path), store=tmp_path / "s")
    assert r.returncode == 2
    lines = r.stderr.decode().strip().splitlines()
    assert lines[-1] == ("pixibuild: error: --inject: package needy-1.0-0: dependency 'libgreet >=9' is not "
                         "satisfied (the pack has libgreet 2.1.0 h1a2b3c4_0)")
    assert not out.exists()


def test_pypi_sdist_is_built_unless_ignore_flag(tmp_path: Path) -> None:
    """An sdist is fetched to be built into a wheel (issue 17): an unreachable one fails in one line that
    names it and the flag that skips PyPI sources instead; with the flag the pack has the wheels only."""
    project = _cross_project(tmp_path, "linux-64")
    wheel = write_wheel(tmp_path / "wheels", "good-lib", "1.0", {"good_lib.py": b""})
    lock = yaml.safe_load((project / "pixi.lock").read_text())
    recs = [PypiRecord("good-lib", "1.0", wheel.as_uri(), sha256=sha256(wheel)),
            PypiRecord("sdist-only", "2.0", "https://example.invalid/sdist_only-2.0.tar.gz", sha256="0" * 64)]
    from pixibuild.inputs.lockfile import read_lock  # noqa: PLC0415
    conda = read_lock(project / "pixi.lock").environment("default").conda_packages("linux-64")
    write_lock(project / "pixi.lock", {"default": {"linux-64": [*conda, *recs]}},
               channels=[c["url"] for c in lock["environments"]["default"]["channels"]])
    out = tmp_path / "env.tar"
    r = pack(str(project), "-p", "linux-64", "-o", str(out), store=tmp_path / "s")
    err = r.stderr.decode().strip()
    assert r.returncode == 1 and "sdist-only" in err and "--ignore-pypi-non-wheel" in err and len(err.splitlines()) == 1
    assert not out.exists()
    r = pack(str(project), "-p", "linux-64", "-o", str(out), "--ignore-pypi-non-wheel", store=tmp_path / "s")
    assert r.returncode == 0, r.stderr
    with tarfile.open(out) as tar:
        assert "pypi/good_lib-1.0-py3-none-any.whl" in tar.getnames()


@pytest.mark.parametrize("args, message", [
    (["-e", "nope", "-p", "linux-64"], "environment 'nope' is not in the lock"),
    (["-e", "prod", "-p", "osx-64"], "platform 'osx-64' is not locked for environment 'prod'"),
])
def test_bad_target_is_one_line_exit_2(demo, tmp_path: Path, capsys, args, message) -> None:
    out = tmp_path / "env.tar"
    code = main(["pack", str(demo["webapp"]), *args, "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err and "pixi.lock" in err
    assert not out.exists()
