"""Issue 13 items 2-4: `unpack` holds every archive to the pack's own repodata.json (and wheels to its
environment.yml), creates an environment other users can run (directories 0777 & ~umask, files their
archive modes), replaces an existing conda environment saying how it changed, refuses to replace any
other directory unless --force, and a failed unpack leaves nothing it created and touches nothing."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import require_tool
from pixibuild.cli import main
from pixibuild.conda.archive import record_from_archive
from pixibuild.conda.platforms import current_subdir
from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.demo.condapkg import PackageSpec, PkgFile, write_package
from pixibuild.pack.repodata import repodata_json
from pixibuild.pack.writer import PackContents, write_directory, write_tar
from support.wheel import write_wheel

PLATFORM = current_subdir()


def _tool(version: str = "1.0", text: bytes = b"#!/bin/sh\necho tool at @PREFIX@\n") -> PackageSpec:
    return PackageSpec("tool", version, "h0_0", subdir=PLATFORM, files=[
        PkgFile("bin/tool", text, 0o755, prefix="text"), PkgFile("share/tool/readme", b"read me\n")])


def _data() -> PackageSpec:
    return PackageSpec("data", "1.0", "0", subdir="noarch", noarch="generic",
                       files=[PkgFile("share/data/table", b"1 2 3\n")])


def _packages(tmp: Path, specs: list[PackageSpec]) -> list[tuple[CondaRecord, Path]]:
    archives = [write_package(s, tmp / "channel" / s.subdir) for s in specs]
    return [(record_from_archive(a), a) for a in archives]


def _write(contents: PackContents, out: Path, as_directory: bool = False) -> Path:
    if as_directory:
        write_directory(contents, out)
    else:
        with open(out, "wb") as f:
            write_tar(contents, f)
    return out


def _swapped(tmp: Path, *, same_size: bool, md5_only: bool = False) -> PackContents:
    """A pack whose tool archive was replaced by another self-consistent one (its own paths.json and
    hashes agree) while channel/<subdir>/repodata.json still describes the original."""
    (original, _), data = _packages(tmp / "orig", [_tool()])[0], _packages(tmp / "orig", [_data()])[0]
    [(_, other)] = _packages(tmp / "evil", [_tool(text=b"#!/bin/sh\necho something else @PREFIX@\n")])
    described = dataclasses.replace(original, size=other.stat().st_size) if same_size else original
    if md5_only:
        described = dataclasses.replace(described, sha256=None)
    index = {PLATFORM: repodata_json(PLATFORM, [described]), "noarch": repodata_json("noarch", [data[0]])}
    return PackContents(platform=PLATFORM, conda=[(described, other), data], index=index)


@pytest.mark.parametrize("as_directory", [False, True], ids=["tar", "directory"])
def test_a_swapped_package_is_refused_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               as_directory: bool) -> None:
    pack = _write(_swapped(tmp_path, same_size=True), tmp_path / "pack", as_directory)
    out = tmp_path / "out"
    assert main(["unpack", str(pack), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    member = f"channel/{PLATFORM}/tool-1.0-h0_0.conda"
    assert f"{member}: sha256 is " in err and f"but channel/{PLATFORM}/repodata.json says " in err, err
    assert "swapped or damaged" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_pack_that_gives_only_md5s_is_checked_by_md5(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pack = _write(_swapped(tmp_path, same_size=True, md5_only=True), tmp_path / "pack.tar")
    assert main(["unpack", str(pack), "-o", str(tmp_path / "out")]) == 2
    assert f"channel/{PLATFORM}/tool-1.0-h0_0.conda: md5 is " in capsys.readouterr().err


def test_a_package_of_another_size_is_refused_before_reading_it(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    pack = _write(_swapped(tmp_path, same_size=False), tmp_path / "pack.tar")
    assert main(["unpack", str(pack), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"channel/{PLATFORM}/tool-1.0-h0_0.conda: " in err and f"bytes but channel/{PLATFORM}/repodata.json says" in err


def test_a_wheel_the_pack_does_not_list_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    python = PackageSpec("python", "3.11.4", "h0_cpython", subdir=PLATFORM,
                         files=[PkgFile("bin/python3.11", b"#!/bin/sh\n", 0o755)])
    wheel = write_wheel(tmp_path / "w", "demo-whl", "2.0", {"demo_whl/__init__.py": b""})
    contents = PackContents(platform=PLATFORM, conda=_packages(tmp_path, [python]),
                            wheels=[(PypiRecord("demo-whl", "1.0", wheel.name), wheel)])  # environment.yml: ==1.0
    pack = _write(contents, tmp_path / "pack.tar")
    assert main(["unpack", str(pack), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"pypi/{wheel.name}: environment.yml lists demo-whl==1.0" in err
    assert not (tmp_path / "out").exists()


def test_an_existing_environment_is_replaced_and_the_changes_are_listed(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    old = _write(PackContents(platform=PLATFORM, conda=_packages(tmp_path / "a", [_tool(), _data()])), tmp_path / "a.tar")
    extra = PackageSpec("extra", "0.1", "0", subdir="noarch", noarch="generic", files=[PkgFile("share/extra", b"x")])
    new = _write(PackContents(platform=PLATFORM, conda=_packages(tmp_path / "b", [_tool("2.0"), extra])),
                 tmp_path / "b.tar")
    out = tmp_path / "out"
    assert main(["unpack", str(old), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["unpack", str(new), "-o", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"Replaced the conda environment at {out / 'env'}: 1 added, 1 removed, 1 changed, 0 unchanged."
    assert err[1:4] == ["  + extra 0.1 0", "  - data 1.0 0", "  ~ tool 1.0 h0_0 → 2.0 h0_0"]
    assert not any("no package installed" in line for line in err)  # every file there was a package's
    assert (out / "env" / "share" / "extra").exists() and not (out / "env" / "share" / "data").exists()
    # a user's own file inside the environment goes with it, and the command says so
    (out / "env" / "etc").mkdir(exist_ok=True)
    (out / "env" / "etc" / "my.conf").write_text("mine")
    (out / "env" / "notes.txt").write_text("mine")
    assert main(["unpack", str(old), "-o", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert "  ! 2 files no package installed went with it: etc/my.conf, notes.txt" in err


def test_a_directory_that_is_not_an_environment_is_refused_unless_forced(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    pack = _write(PackContents(platform=PLATFORM, conda=_packages(tmp_path, [_tool()])), tmp_path / "p.tar")
    out = tmp_path / "out"
    (out / "env").mkdir(parents=True)
    (out / "env" / "notes.txt").write_text("mine")
    assert main(["unpack", str(pack), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"pixibuild: error: {out / 'env'}: exists and is not a conda environment (no conda-meta/): "
                           "refusing to replace it and everything in it (choose another -o/-e, or pass --force)")
    assert (out / "env" / "notes.txt").read_text() == "mine"
    assert main(["unpack", str(pack), "-o", str(out), "--force"]) == 0
    assert not (out / "env" / "notes.txt").exists() and (out / "env" / "bin" / "tool").exists()
    (out / "empty").mkdir()
    assert main(["unpack", str(pack), "-o", str(out), "-e", "empty"]) == 0  # an empty directory is fine


def test_a_failed_unpack_leaves_nothing_it_created_and_an_existing_env_untouched(tmp_path: Path) -> None:
    bad = _write(_swapped(tmp_path / "s", same_size=True), tmp_path / "bad.tar")
    fresh = tmp_path / "a" / "b" / "c"
    assert main(["unpack", str(bad), "-o", str(fresh)]) == 2
    assert not (tmp_path / "a").exists()
    good = _write(PackContents(platform=PLATFORM, conda=_packages(tmp_path / "g", [_tool()])), tmp_path / "good.tar")
    out = tmp_path / "out"
    assert main(["unpack", str(good), "-o", str(out)]) == 0
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    (out / "env" / "marker").write_text("still here")
    assert main(["unpack", str(bad), "-o", str(out)]) == 2
    assert (out / "env" / "marker").read_text() == "still here"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == sorted([*before, "env/marker"])


_MODES = """
import os, sys, stat
from pathlib import Path
from pixibuild.files.atomic import atomic_directory, atomic_write_bytes
from pixibuild.cli import main
os.umask(int(sys.argv[3], 8))
out = Path(sys.argv[2])
assert main(["unpack", sys.argv[1], "-o", str(out)]) == 0
with atomic_directory(out / "index") as tmp:
    atomic_write_bytes(tmp / "linux-64" / "repodata.json", b"{}")
def mode(p): return oct(stat.S_IMODE(os.lstat(p).st_mode))
print(mode(out / "env"), mode(out / "env" / "bin"), mode(out / "env" / "bin" / "tool"), mode(out / "env" / "share" / "tool" / "readme"),
      mode(out / "activate.sh"), mode(out / "index"), mode(out / "index" / "linux-64" / "repodata.json"))
"""


@pytest.mark.parametrize("umask, expected", [
    ("022", "0o755 0o755 0o755 0o644 0o644 0o755 0o644"),
    ("027", "0o750 0o750 0o755 0o644 0o640 0o750 0o640"),
])
def test_unpacked_directories_follow_the_umask_and_files_keep_their_archive_modes(tmp_path: Path, umask: str,
                                                                                  expected: str) -> None:
    pack = _write(PackContents(platform=PLATFORM, conda=_packages(tmp_path, [_tool()])), tmp_path / "p.tar")
    result = subprocess.run([sys.executable, "-c", _MODES, str(pack), str(tmp_path / "out"), umask],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == expected.split()


def test_an_environment_unpacked_by_root_runs_for_another_user(tmp_path: Path) -> None:
    """The demo's relocated `hello` and its activation script, run as `nobody` after root unpacked them."""
    if os.geteuid() != 0:
        pytest.skip("needs root to unpack as one user and run as another")
    setpriv = require_tool("setpriv", "util-linux")
    from pixibuild.demo.demo import write_demo

    webapp = write_demo(tmp_path / "demo")["webapp"]
    pack = tmp_path / "environment.tar"
    env = dict(os.environ, PIXIBUILD_CACHE_DIR=str(tmp_path / "store"))
    subprocess.run([sys.executable, "-m", "pixibuild", "pack", str(webapp), "-e", "prod", "-p", PLATFORM, "-o", str(pack)],
                   check=True, env=env, capture_output=True)
    shared = Path(tempfile.mkdtemp(prefix="pixibuild-nobody-"))  # pytest's tmp dirs are 0700: nobody can't enter
    try:
        os.chmod(shared, 0o755)
        out = shared / "deploy"
        subprocess.run(["sh", "-c", 'umask 022 && exec "$0" -m pixibuild unpack "$1" -o "$2"', sys.executable,
                        str(pack), str(out)], check=True, capture_output=True)
        result = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c",
                                 f'. "{out}/activate.sh" && hello && echo "home=$HELLO_HOME"'],
                                capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, cwd="/")
        assert result.returncode == 0, result.stderr
        assert "Permission denied" not in result.stderr
        assert result.stdout.splitlines() == ["Hello from the pixibuild demo!", f"prefix: {out}/env",
                                              f"home={out}/env/share/hello"]
    finally:
        shutil.rmtree(shared, ignore_errors=True)
