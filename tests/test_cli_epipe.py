"""`pixibuild … | head`: when the reader of our stdout goes away, every command that prints exits
quietly with 141 (what a shell reports for coreutils killed by SIGPIPE), never with a traceback.

Real pipes, real processes: the reader closes its end either before the command writes anything (the
first write is sure to fail) or after reading a few lines of an output larger than the pipe buffer
(the `| head -3` case, which used to fail in 2 runs out of 3)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pixibuild.conda.records import CondaRecord
from pixibuild.demo.demo import write_demo
from pixibuild.demo.lockwriter import write_lock

PIXIBUILD = [sys.executable, "-m", "pixibuild"]
EXIT_STDOUT_CLOSED = 141


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def big_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lock whose `lock-info --json` is ~400 KB, far more than a pipe holds (64 KB)."""
    root = tmp_path_factory.mktemp("big")
    records = [CondaRecord(url=f"https://conda.anaconda.org/conda-forge/linux-64/pkg{i:04d}-1.0-h0_0.conda",
                           file_name=f"pkg{i:04d}-1.0-h0_0.conda", subdir="linux-64", name=f"pkg{i:04d}",
                           version="1.0", build="h0_0", build_number=0, sha256=f"{i:064x}", size=1000 + i)
               for i in range(1500)]
    write_lock(root / "pixi.lock", {"default": {"linux-64": records}})
    (root / "pixi.toml").write_text('[workspace]\nname = "big"\nchannels = ["conda-forge"]\nplatforms = ["linux-64"]\n')
    return root


def _closed_before_writing(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run with stdout a pipe whose read end is closed at once: the command's first write meets EPIPE."""
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    try:
        return subprocess.run(argv, stdout=write_fd, stderr=subprocess.PIPE, cwd=cwd, timeout=300)
    finally:
        os.close(write_fd)


def _assert_quiet(result: subprocess.CompletedProcess) -> None:
    stderr = result.stderr.decode(errors="replace")
    assert "Traceback" not in stderr and "Broken pipe" not in stderr and "BrokenPipe" not in stderr, stderr
    assert "Exception ignored" not in stderr, stderr
    assert result.returncode == EXIT_STDOUT_CLOSED, (result.returncode, stderr)


def test_lock_info_json_into_head_three_is_quiet_every_time(big_project: Path) -> None:
    """The issue's reproduction, repeated: read three lines, close the pipe, as `head -3` does."""
    for _ in range(20):
        process = subprocess.Popen([*PIXIBUILD, "lock-info", "--json", str(big_project), "-p", "linux-64"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines = [process.stdout.readline() for _ in range(3)]
        process.stdout.close()
        stderr = process.stderr.read()
        process.wait(timeout=60)
        assert lines[0] == b"{\n"
        _assert_quiet(subprocess.CompletedProcess(process.args, process.returncode, b"", stderr))


def test_a_shell_pipeline_into_head_is_quiet(big_project: Path) -> None:
    script = (f'{sys.executable} -m pixibuild lock-info {big_project} -p linux-64 | head -3 >/dev/null; '
              'echo "${PIPESTATUS[0]}"')
    for _ in range(5):
        result = subprocess.run(["bash", "-c", script], capture_output=True, timeout=60)
        assert result.stderr == b"", result.stderr.decode()
        assert result.stdout.strip() == str(EXIT_STDOUT_CLOSED).encode()


def _commands(demo: dict[str, Path], tmp: Path) -> dict[str, list[str]]:
    webapp = str(demo["webapp"])
    target = ["-e", "prod", "-p", "linux-64"]
    prefix = tmp / "prefix"
    (prefix / "conda-meta").mkdir(parents=True, exist_ok=True)
    return {
        "lock-info": ["lock-info", webapp, *target],
        "lock-info --json": ["lock-info", webapp, *target, "--json"],
        "fetch": ["fetch", webapp, *target],
        "pack -o -": ["pack", webapp, *target, "-o", "-"],
        "shell-hook": ["shell-hook", "-p", str(prefix)],
        "image": ["image", webapp, *target, "--oci-dir", str(tmp / "layout")],
        "build --list": ["build", "--list", "-C", str(Path(webapp).parent)],
        "build": ["build", "-C", str(Path(webapp).parent), "pack"],
        "plan": ["plan", "-C", str(Path(webapp).parent)],
        "build --dry-run": ["build", "--dry-run", "-C", str(Path(webapp).parent)],
        "graph": ["graph", "-C", str(Path(webapp).parent), "--format", "mermaid"],
    }


@pytest.mark.parametrize("name", ["lock-info", "lock-info --json", "fetch", "pack -o -", "shell-hook", "image",
                                  "build --list", "build", "plan", "build --dry-run", "graph"])
def test_every_printing_command_exits_quietly_on_a_closed_stdout(demo, tmp_path: Path, monkeypatch, name: str) -> None:
    monkeypatch.setenv("PIXIBUILD_BUILD_DIR", str(tmp_path / "build"))
    argv = _commands(demo, tmp_path)[name]
    _assert_quiet(_closed_before_writing([*PIXIBUILD, *argv]))


def test_a_broken_pipe_that_is_not_stdout_is_still_an_error(tmp_path: Path) -> None:
    """Only our stdout's reader leaving is quiet; any other EPIPE stays a failure (in-process check)."""
    from pixibuild.cli import stdout_is_closed

    read_fd, write_fd = os.pipe()
    with os.fdopen(write_fd, "w") as writer:
        assert not stdout_is_closed(writer)
        os.close(read_fd)
        assert stdout_is_closed(writer)
    assert not stdout_is_closed(sys.__stderr__)


@pytest.mark.parametrize("doit_args", [["list", "--all"], ["-n", "2"], ["info", "lock:webapp"]])
def test_plain_doit_on_our_dodo_exits_quietly_on_a_closed_stdout(demo, tmp_path: Path, monkeypatch,
                                                                 doit_args: list[str]) -> None:
    """`doit list | head -1`, `doit | head -1`: doit catches every Exception (it printed a BrokenPipeError
    traceback and exited 3); through our dodo it is quiet with 141 like `pixibuild build`."""
    from support.doitrun import write_dodo

    root = Path(demo["webapp"]).parent
    write_dodo(root)
    monkeypatch.setenv("PIXIBUILD_BUILD_DIR", str(tmp_path / "build"))
    result = _closed_before_writing([sys.executable, "-m", "doit", "-f", str(root / "dodo.py"), "-d", str(root),
                                     *doit_args])
    _assert_quiet(result)
    assert not list((tmp_path / "build").rglob("*.tar"))  # the run stopped at its first line


def test_doit_list_into_head_in_a_shell_is_quiet(demo, tmp_path: Path) -> None:
    from support.doitrun import write_dodo

    root = Path(demo["webapp"]).parent
    write_dodo(root)
    script = (f'PIXIBUILD_BUILD_DIR={tmp_path / "build"} {sys.executable} -m doit -f {root / "dodo.py"} -d {root} '
              'list --all | head -1; echo "exit=${PIPESTATUS[0]}"')
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300)
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
    # 141 when head left before our last write; 0 when the whole listing was written before it left
    assert result.stdout.splitlines()[-1] in (f"exit={EXIT_STDOUT_CLOSED}", "exit=0"), result.stdout
    assert len(result.stdout.splitlines()) == 2


_LATE_THREAD = """
import os
from pixibuild.cli import StdoutClosed, guard_stdout, silence_closed_stdout

read_fd, write_fd = os.pipe()
os.close(read_fd)
out = os.fdopen(write_fd, "w")


class LateWriter:
    '''A second thread's write that met the closed pipe just before the first thread silenced it.'''
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        pass

    def fileno(self):
        return out.fileno()


silence_closed_stdout(out)  # the first thread found the reader gone: the fd is devnull now
try:
    guard_stdout(LateWriter()).write(".  task\\n")
except StdoutClosed:
    print("quiet")
except BrokenPipeError:
    print("traceback")
"""


def test_a_second_thread_meeting_the_closed_pipe_is_quiet_too() -> None:
    """`doit -n 2 | head -1`: two task threads print; the first to meet the closed pipe points stdout at
    devnull, so the second can no longer see the pipe. It must stop quietly as well (CI saw its
    BrokenPipeError traceback once)."""
    result = subprocess.run([sys.executable, "-c", _LATE_THREAD], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "quiet", result.stdout + result.stderr


def test_a_listing_reaches_the_stream_in_a_few_large_writes() -> None:
    """`doit list` of a large monorepo writes ~29,000 lines: under PYTHONUNBUFFERED (CI, Dockerfiles)
    each write to sys.stdout is a system call, so the listing guard gathers them."""
    import io

    from pixibuild.cli import guard_stdout

    class Counting(io.StringIO):
        writes = 0

        def write(self, text: str) -> int:
            Counting.writes += 1
            return super().write(text)

    stream = Counting()
    listing = guard_stdout(stream, flush_each=False)
    lines = [f"pack:project{i}:prod:linux-64   build a pixi-pack environment.tar\n" for i in range(29_000)]
    for line in lines:
        listing.write(line)
    listing.flush()
    assert stream.getvalue() == "".join(lines)
    assert Counting.writes < 50
    guarded = guard_stdout(Counting())  # a run's lines: written and flushed one by one
    guarded.write(".  pack:x\n")
    assert guarded._stream.getvalue() == ".  pack:x\n"  # type: ignore[attr-defined]
