"""`pixibuild pack --create-executable`: a self-extracting environment.sh that, run with `env -i` in another
directory, unpacks to exactly the tree `pixibuild unpack` makes (paths, modes, symlinks, bytes); that refuses
a truncated or damaged copy in one line before writing anything; that embeds a given pixi-unpack
(`--pixi-unpack-source` PATH or URL) as pixi-pack does; and a .ps1 for Windows targets with the same payload."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_tool
from pixibuild.demo.condapkg import PackageSpec, PkgFile, locked_record, write_package
from pixibuild.demo.demo import write_demo
from pixibuild.demo.lockwriter import write_lock
from pixibuild.pack.executable import python_unpacker
from support.http_server import TestServer
from support.wheel import write_wheel

CLEAN_PATH = "/usr/bin:/bin"
"""What `env -i` leaves a user: the system's tools and python3, not this test run's venv."""


def _pixibuild(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pixibuild", *args], capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The demo's prod env (a relocated binary, text placeholders, symlinks, noarch python with an entry
    point, activation scripts, .conda and .tar.bz2) plus an injected wheel with a console script."""
    root = tmp_path_factory.mktemp("exe")
    webapp = write_demo(root / "demo")["webapp"]
    wheel = write_wheel(root / "wheels", "demo-whl", "1.0", {"demo_whl/__init__.py": b"def main():\n    print('whl')\n"},
                        console_scripts={"demo-whl": "demo_whl:main"})
    return webapp, ["-e", "prod", "-p", "linux-64", "--inject", str(wheel)]


@pytest.fixture(scope="module")
def built(project, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    webapp, target = project
    out = tmp_path_factory.mktemp("built")
    for name, extra in (("environment.tar", []), ("environment.sh", ["--create-executable"])):
        result = _pixibuild("pack", str(webapp), *target, *extra, "-o", str(out / name))
        assert result.returncode == 0, result.stderr
    return {"tar": out / "environment.tar", "exe": out / "environment.sh"}


def _tree(root: Path, archive: str) -> dict[str, tuple]:
    """Everything under `root`: path → (kind, permission bits, link target or bytes).

    conda-meta's `url` records where the archive was read from, as pixi-unpack's does: the pack file for
    `pixibuild unpack`, the executable's temporary copy for environment.sh (pixi-pack's executable does the
    same). That one value is checked to name `archive` and then set aside; every other byte must match."""
    out: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = path.relative_to(root).as_posix()
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode))
        else:
            data = path.read_bytes()
            if rel.startswith("env/conda-meta/") and rel.endswith(".json"):
                record = json.loads(data)
                assert re.fullmatch(archive + r"/channel/[^/]+/" + re.escape(record["fn"]), record["url"]), record["url"]
                data = json.dumps({**record, "url": "<archive>"}, sort_keys=True).encode()
            out[rel] = ("file", stat.S_IMODE(st.st_mode), data)
    return out


def _run_executable(exe: Path, cwd: Path, *args: str, env: dict[str, str] | None = None,
                    tmpdir: Path | None = None) -> subprocess.CompletedProcess:
    """As a user on another machine would: a clean environment, another directory, `sh environment.sh`."""
    base = {"PATH": CLEAN_PATH, "HOME": str(cwd), "TMPDIR": str(tmpdir or cwd)}
    return subprocess.run(["sh", str(exe), *args], capture_output=True, text=True, cwd=cwd,
                          env={**base, **(env or {})}, timeout=300)


def _unpack_both(built: dict[str, Path], work: Path, *, exe: Path | None = None,
                 env: dict[str, str] | None = None) -> tuple[dict, dict, str]:
    """`pixibuild unpack` and the executable into the same absolute OUTPUT_DIR (so prefixes match)."""
    target = work / "target"
    result = _pixibuild("unpack", str(built["tar"]), "-o", str(target), "-s", "fish")
    assert result.returncode == 0, result.stderr
    expected = _tree(target, re.escape(built["tar"].as_uri()))
    shutil.rmtree(target)
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    result = _run_executable(exe or built["exe"], elsewhere, "-o", str(target), "-s", "fish", env=env)
    assert result.returncode == 0, result.stderr
    temporary_copy = re.escape(elsewhere.as_uri()) + r"/pixibuild-unpack\.\w+/environment\.tar"
    return expected, _tree(target, temporary_copy), result.stderr


def test_the_executable_unpacks_the_same_tree_as_pixibuild_unpack(built, tmp_path: Path) -> None:
    require_tool("zstd")
    expected, actual, _ = _unpack_both(built, tmp_path)
    assert actual.keys() == expected.keys()
    assert [k for k in expected if actual[k] != expected[k]] == []
    assert "env/bin/hello" in actual and "env/bin/demo-whl" in actual and "activate.fish" in actual
    # the system python of a clean machine has no zstandard: the .conda packages went through `zstd`
    probe = subprocess.run(["python3", "-c", "import zstandard"], env={"PATH": CLEAN_PATH}, capture_output=True)
    assert probe.returncode != 0, "this check wants a python3 without zstandard on /usr/bin:/bin"


def test_with_the_zstandard_module_the_result_is_the_same(built, tmp_path: Path) -> None:
    """PIXIBUILD_PYTHON picks the interpreter: this test run's, which has zstandard."""
    expected, actual, _ = _unpack_both(built, tmp_path, env={"PIXIBUILD_PYTHON": sys.executable})
    assert actual == expected


def test_the_executable_is_reproducible_and_says_what_it_needs(project, built, tmp_path: Path) -> None:
    webapp, target = project
    again = tmp_path / "again.sh"
    assert _pixibuild("pack", str(webapp), *target, "--create-executable", "-o", str(again)).returncode == 0
    assert again.read_bytes() == built["exe"].read_bytes()
    assert built["exe"].stat().st_mode & 0o111  # ./environment.sh works too
    usage = _run_executable(built["exe"], tmp_path, "--help")
    assert usage.returncode == 0 and "--output-directory" in usage.stdout
    floor = ".".join(map(str, python_unpacker().min_python))
    assert f"python3 >= {floor}" in usage.stdout and "zstd" in usage.stdout
    help_text = " ".join(_pixibuild("pack", "--help").stdout.split())
    assert f"python3 (>= {floor}, standard library only; .conda packages also need the zstd command)" in help_text
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    assert f"python3 ≥ {floor}" in readme


def _payload(exe: Path) -> tuple[bytes, bytes, list[str]]:
    """The archive and unpacker a (.sh or .ps1) executable carries, decoded as its header does."""
    lines = exe.read_bytes().decode().splitlines()
    windows = exe.suffix == ".ps1"
    header_end = lines.index("__END_HEADER__" if windows else "@@END_HEADER@@")
    archive_end = lines.index("__END_ARCHIVE__" if windows else "@@END_ARCHIVE@@")
    archive = base64.b64decode("".join(lines[header_end + 1:archive_end]))
    unpacker = base64.b64decode("".join(lines[archive_end + 1:-1]))
    return archive, unpacker, lines[-1].split()


def test_the_payload_is_the_pack_tar_byte_for_byte(built) -> None:
    archive, unpacker, trailer = _payload(built["exe"])
    assert archive == built["tar"].read_bytes()
    assert trailer == ["@@END_UNPACKER@@", str(len(archive)), hashlib.sha256(archive).hexdigest(),
                       str(len(unpacker)), hashlib.sha256(unpacker).hexdigest()]


def _line(data: bytes, marker: bytes) -> int:
    """Offset of the line that is exactly `marker` (the header also mentions the markers in its code)."""
    return data.index(b"\n" + marker + b"\n" if not marker.endswith(b"UNPACKER@@") else b"\n" + marker + b" ") + 1


@pytest.mark.parametrize("where", ["first-line", "comment", "header", "archive", "archive-marker", "unpacker",
                                   "last-line"])
def test_a_truncated_executable_fails_in_one_line_and_writes_nothing(built, tmp_path: Path, where: str) -> None:
    data = built["exe"].read_bytes()
    header, archive, unpacker = (_line(data, m) for m in (b"@@END_HEADER@@", b"@@END_ARCHIVE@@", b"@@END_UNPACKER@@"))
    cut = {"first-line": 13, "comment": 300, "header": header // 2, "archive": (header + archive) // 2,
           "archive-marker": archive + 5,
           "unpacker": (archive + unpacker) // 2, "last-line": len(data) - 20}[where]
    truncated = tmp_path / "environment.sh"
    truncated.write_bytes(data[:cut])
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = _run_executable(truncated, tmp_path, "-o", str(tmp_path / "out"), tmpdir=scratch)
    assert result.returncode != 0
    assert len(result.stderr.splitlines()) == 1, result.stderr
    if where in ("first-line", "comment", "header"):  # the header is one function the shell parses whole
        assert re.search(r"[Ss]yntax error|end of file|not found|environment\.sh: error: .*get it again",
                         result.stderr), result.stderr
    else:
        assert result.stderr.startswith("environment.sh: error: ") and "get it again" in result.stderr
    assert not (tmp_path / "out").exists() and list(scratch.iterdir()) == []


@pytest.mark.parametrize("where", ["archive", "unpacker"])
def test_a_damaged_executable_fails_in_one_line_and_writes_nothing(built, tmp_path: Path, where: str) -> None:
    data = bytearray(built["exe"].read_bytes())
    start = _line(data, b"@@END_HEADER@@" if where == "archive" else b"@@END_ARCHIVE@@")
    position = data.index(b"\n", start + 20) + 10  # a base64 character in the middle of the second line
    data[position] = ord("A") if data[position] != ord("A") else ord("B")
    damaged = tmp_path / "environment.sh"
    damaged.write_bytes(bytes(data))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = _run_executable(damaged, tmp_path, "-o", str(tmp_path / "out"), tmpdir=scratch)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert f"sha256 of its {where}" in result.stderr
    assert not (tmp_path / "out").exists() and list(scratch.iterdir()) == []


def test_without_python_the_executable_says_so_in_one_line(built, tmp_path: Path) -> None:
    """A machine with the POSIX tools and nothing else: the python unpacker cannot run, and says why."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("sh", "awk", "sed", "tail", "wc", "tr", "mktemp", "base64", "basename", "rm", "cat", "chmod",
                 "sha256sum"):
        os.symlink(shutil.which(tool), tools / tool)
    result = subprocess.run(["sh", str(built["exe"]), "-o", str(tmp_path / "out")], capture_output=True, text=True,
                            cwd=tmp_path, env={"PATH": str(tools), "TMPDIR": str(tmp_path)})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"environment.sh: error: needs python3 >= {'.'.join(map(str, python_unpacker().min_python))} on PATH to run "
        "its unpacker (set PIXIBUILD_PYTHON to use another interpreter), or a copy made with --pixi-unpack-source"]
    assert not (tmp_path / "out").exists()


def _stand_in_pixi_unpack(directory: Path) -> Path:
    """An executable with pixi-unpack's command line (here: pixibuild's unpack, by absolute path, so it
    runs in a clean environment) — what --pixi-unpack-source embeds and runs."""
    path = directory / "pixi-unpack-x86_64-unknown-linux-musl"
    path.write_text(f"#!/bin/sh\nexec {sys.executable} -m pixibuild unpack \"$@\"\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("source", ["path", "url"])
def test_pixi_unpack_source_is_embedded_and_run_like_pixi_pack(project, built, tmp_path: Path, source: str) -> None:
    webapp, target = project
    unpacker = _stand_in_pixi_unpack(tmp_path)
    exe = tmp_path / "with-binary.sh"
    with TestServer(tmp_path) as server:
        given = str(unpacker) if source == "path" else server.url_for(unpacker.name)
        result = _pixibuild("pack", str(webapp), *target, "--create-executable", "--pixi-unpack-source", given,
                            "-o", str(exe))
    assert result.returncode == 0, result.stderr
    archive, embedded, _ = _payload(exe)
    assert embedded == unpacker.read_bytes() and archive == built["tar"].read_bytes()
    assert b"unpacker_kind=binary" in exe.read_bytes()[:4000]
    expected, actual, _ = _unpack_both(built, tmp_path, exe=exe)
    assert actual == expected


def test_bad_combinations_and_sources_are_input_errors(project, tmp_path: Path) -> None:
    webapp, target = project
    for extra, message in ((["--create-executable", "--directory-only"], "cannot be combined with --directory-only"),
                           (["--pixi-unpack-source", "x"], "only used with --create-executable"),
                           (["--create-executable", "--pixi-unpack-source", str(tmp_path / "missing")],
                            "cannot read the pixi-unpack executable")):
        result = _pixibuild("pack", str(webapp), *target, *extra, "-o", str(tmp_path / "x.sh"))
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "x.sh").exists()


def test_windows_targets_get_an_environment_ps1_with_the_same_payload(tmp_path: Path) -> None:
    """No PowerShell here to run it: its structure is checked (CRLF lines, pixi-pack's markers, the pack
    tar byte for byte, the unpacker, the check line) by decoding it the way its header does."""
    channel = tmp_path / "channel"
    spec = PackageSpec("tool", "1.0", "0", subdir="win-64", files=[PkgFile("Library/bin/tool.txt", b"tool\n")])
    record = locked_record(spec, write_package(spec, channel / "win-64", ".conda"))
    project = tmp_path / "project"
    write_lock(project / "pixi.lock", {"default": {"win-64": [record]}}, channels=[channel.as_uri()])
    (project / "pixi.toml").write_text(f'[workspace]\nname = "w"\nchannels = ["{channel.as_uri()}"]\n'
                                       'platforms = ["win-64"]\n')
    assert _pixibuild("pack", str(project), "-p", "win-64", "-o", str(tmp_path / "env.tar")).returncode == 0
    result = _pixibuild("pack", str(project), "-p", "win-64", "--create-executable", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    exe = tmp_path / "environment.ps1"
    raw = exe.read_bytes()
    assert b"\r\n" in raw and raw.count(b"\n") == raw.count(b"\r\n")
    assert b'$UnpackerKind = "python"' in raw
    archive, unpacker, trailer = _payload(exe)
    assert archive == (tmp_path / "env.tar").read_bytes()
    assert unpacker == python_unpacker().data
    assert trailer[0] == "__END_UNPACKER__" and trailer[2] == hashlib.sha256(archive).hexdigest()


def test_the_zstd_command_stands_in_for_the_zstandard_module(tmp_path: Path, monkeypatch) -> None:
    """What the embedded unpacker reads .conda packages with on a python without zstandard."""
    import io

    import zstandard

    from pixibuild.conda import zstd_cli

    require_tool("zstd")
    payload = os.urandom(300_000) + b"x" * 300_000
    frames = zstandard.ZstdCompressor().compress(payload[:1000]) + zstandard.ZstdCompressor().compress(payload[1000:])
    with zstd_cli.ZstdDecompressor().stream_reader(io.BytesIO(frames), read_across_frames=True) as reader:
        assert b"".join(iter(lambda: reader.read(65536), b"")) == payload
    with pytest.raises(zstd_cli.ZstdError, match="zstd: "):
        with zstd_cli.ZstdDecompressor().stream_reader(io.BytesIO(frames[:-7] + b"garbage")) as reader:
            while reader.read(65536):
                pass
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(zstd_cli.ZstdError, match="install the zstd command"):
        zstd_cli.ZstdDecompressor().stream_reader(io.BytesIO(frames))
