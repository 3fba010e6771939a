"""Progress of long work on stderr: a redrawn line on a terminal (a real pty here), a plain line every few
seconds in a log, nothing for short work or with -q, and never a byte on stdout (`pack -o - | …`)."""

from __future__ import annotations

import io
import logging
import os
import pty
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pixibuild.conda.platforms import current_subdir
from pixibuild.demo.demo import write_demo
from pixibuild.files.progress import CountingWriter, Progress

FAST = {"PIXIBUILD_PROGRESS_DELAY": "0", "PIXIBUILD_PROGRESS_INTERVAL": "0"}
"""Show progress from the first update, in logs too: the demo's work takes well under the real 2 s."""


class _Log(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_short_work_prints_nothing(monkeypatch) -> None:
    monkeypatch.setenv("PIXIBUILD_PROGRESS_DELAY", "2")
    log = _Log()
    with Progress("pack", nbytes=100, stream=log, enabled=True) as progress:
        progress.update(nbytes=100)
    assert log.getvalue() == ""


def test_in_a_log_a_plain_line_every_interval_then_done(monkeypatch) -> None:
    monkeypatch.setenv("PIXIBUILD_PROGRESS_DELAY", "0")
    monkeypatch.setenv("PIXIBUILD_PROGRESS_INTERVAL", "0.05")
    log = _Log()
    with Progress("fetch", items=3, nbytes=3_000_000, stream=log, enabled=True) as progress:
        for _ in range(3):
            progress.update(items=1, nbytes=1_000_000)
            time.sleep(0.06)
            progress.update()  # updates inside the interval print nothing
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and "\x1b" not in log.getvalue()
    assert lines[0] == "fetch: 1/3 packages, 1.0/3.0 MB, 0s"
    # one line per update once the interval has passed (4 of the 6), and the last one says done
    assert len(lines) == 5 and all(line.startswith("fetch: ") for line in lines)
    assert lines[-1].startswith("fetch: 3/3 packages, 3.0/3.0 MB") and lines[-1].endswith(", done")


def test_on_a_terminal_one_line_is_redrawn_and_ended(monkeypatch) -> None:
    monkeypatch.setenv("PIXIBUILD_PROGRESS_DELAY", "0")
    master, slave = pty.openpty()
    with os.fdopen(slave, "w", closefd=True) as terminal:
        assert terminal.isatty()
        with Progress("unpack", nbytes=2_000_000, stream=terminal, enabled=True) as progress:
            progress.update(nbytes=1_000_000)
            time.sleep(0.12)
            progress.update(nbytes=1_000_000)
    output = _drain(master).decode().replace("\r\n", "\n")  # the terminal's own CR before LF
    frames = output.split("\r")[1:]
    assert len(frames) == 3 and all(f.startswith("unpack: ") for f in frames)
    assert all(f.rstrip("\r\n").endswith("\x1b[K") for f in frames[:-1])  # each redraw clears the old line
    assert output.endswith("\n") and "done" in frames[-1] and output.count("\n") == 1


def _drain(master: int) -> bytes:
    """Everything written to a pty whose other side is closed (then reading fails with EIO)."""
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return out


def test_quiet_means_no_progress(monkeypatch, caplog) -> None:
    monkeypatch.setenv("PIXIBUILD_PROGRESS_DELAY", "0")
    log = _Log()
    caplog.set_level(logging.ERROR, logger="pixibuild")  # what `pixibuild -q` makes of it
    with Progress("pack", stream=log) as progress:
        progress.update(nbytes=10)
    assert log.getvalue() == ""


def test_counting_writer_passes_bytes_through_unchanged() -> None:
    out = io.BytesIO()
    progress = Progress("pack", enabled=False)
    CountingWriter(out, progress).write(b"abc")
    assert out.getvalue() == b"abc" and progress.bytes == 3


# -- the commands ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def webapp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo(tmp_path_factory.mktemp("demo"))["webapp"]


def _pixibuild(*args: str, env: dict[str, str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pixibuild", *args], env={**os.environ, **env}, **kw)


@pytest.mark.parametrize("command", ["fetch", "pack", "unpack", "image"])
def test_every_long_command_reports_progress_in_a_log(webapp: Path, tmp_path: Path, command: str) -> None:
    target = [str(webapp), "-e", "prod", "-p", "linux-64"]
    pack = tmp_path / "env.tar"
    if command == "unpack":
        assert _pixibuild("pack", *target, "-o", str(pack), env={}).returncode == 0
    argv = {"fetch": ["fetch", *target], "pack": ["pack", *target, "-o", str(pack)],
            "unpack": ["unpack", str(pack), "-o", str(tmp_path / "out")],
            "image": ["image", *target, "--oci-dir", str(tmp_path / "layout")]}[command]
    result = _pixibuild(*argv, env=FAST, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"{command}: ")]
    assert lines and lines[-1].endswith(", done"), result.stderr
    assert "\r" not in result.stderr
    if command == "unpack":  # all of the pack's packages, whichever process linked them
        done, total = re.search(r"([0-9.]+)/([0-9.]+) MB", lines[-1]).groups()
        assert done == total, lines[-1]
    quiet = _pixibuild("-q", *argv, env=FAST, capture_output=True, text=True)
    assert quiet.returncode == 0 and not re.search(rf"^{command}: ", quiet.stderr, re.M), quiet.stderr


def test_pack_to_stdout_on_a_terminal_keeps_stdout_clean(webapp: Path, tmp_path: Path) -> None:
    """stderr a real terminal (a pty), stdout a pipe: the progress redraws go to the terminal, and stdout
    carries exactly the archive `-o FILE` writes."""
    target = [str(webapp), "-e", "prod", "-p", "linux-64"]
    assert _pixibuild("pack", *target, "-o", str(tmp_path / "env.tar"), env={}).returncode == 0
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "pixibuild", "pack", *target, "-o", "-"],
                               stdout=subprocess.PIPE, stderr=slave, env={**os.environ, **FAST})
    os.close(slave)
    archive = process.stdout.read()
    process.wait(timeout=120)
    terminal = _drain(master)
    assert process.returncode == 0
    assert archive == (tmp_path / "env.tar").read_bytes()
    assert b"\rpack: " in terminal and terminal.endswith(b", done\x1b[K\r\n")


def test_graph_nodes_report_progress_in_lines_named_after_the_node(tmp_path: Path) -> None:
    """`doit pack:…` / `unpack:…` / `image:…`: long nodes show plain progress lines named after the node
    (never a redrawn line: doit prints its own task lines and may run nodes side by side); a pack and an
    unpack count the bytes they read or write; layers and images, which cannot count, show the time
    (a heartbeat: the demo's image node is over before its first beat, its layers are not)."""
    from support.doitrun import run_doit, write_dodo

    root = tmp_path / "ws"
    write_demo(root)
    write_dodo(root)
    env = {**FAST, "PIXIBUILD_CACHE_DIR": str(tmp_path / "store"), "PIXIBUILD_BUILD_DIR": str(tmp_path / "build")}
    targets = ["pack:webapp:prod:linux-64", "image:webapp:prod:linux-64"]
    run = run_doit(root, *targets, env=env)
    assert run.returncode == 0, run.output[-3000:]
    err = run.output
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith(f"{targets[0]}: ")]
    assert lines and lines[-1].endswith(", done"), err[-3000:]
    pack_done = [line for line in err.splitlines() if line.startswith("pack:webapp:prod:linux-64: ")][-1]
    done, total = re.search(r"([0-9.]+)/([0-9.]+) MB", pack_done).groups()
    assert float(done) >= float(total) > 0, pack_done
    assert re.search(r"^layer:[0-9a-f]{16}: \d+s, done$", err, re.M), err[-3000:]
    unpack = "unpack:webapp:prod:" + current_subdir()
    loud = run_doit(root, unpack, env=env)
    lines = [line for line in loud.output.splitlines() if line.startswith(f"{unpack}: ")]
    assert lines and lines[-1].endswith(", done"), loud.output[-3000:]
    done, total = re.search(r"([0-9.]+)/([0-9.]+) MB", lines[-1]).groups()
    assert done == total, lines[-1]
    shutil.rmtree(tmp_path / "build" / "webapp" / "prod" / current_subdir() / "env")  # so that it runs again
    quiet = run_doit(root, unpack, env={**env, "PIXIBUILD_PROGRESS_DELAY": "600"})  # short work: no lines
    assert quiet.returncode == 0 and unpack in quiet.executed and not re.search(r"^unpack:", quiet.output, re.M)


def test_a_heartbeat_thread_is_gone_when_its_progress_closes(monkeypatch) -> None:
    """A layer node's heartbeat must not outlive it: the next node may be an unpack that forks its second
    linking process only when it runs alone in its process."""
    import threading

    monkeypatch.setenv("PIXIBUILD_PROGRESS_DELAY", "0")
    monkeypatch.setenv("PIXIBUILD_PROGRESS_INTERVAL", "0.05")
    log = _Log()
    before = threading.active_count()
    with Progress("layer:abc", stream=log, lines=True, heartbeat=True, enabled=True):
        assert threading.active_count() == before + 1
        time.sleep(0.2)
    assert threading.active_count() == before
    lines = log.getvalue().splitlines()
    assert len(lines) >= 2 and all(line.startswith("layer:abc: ") for line in lines) and lines[-1].endswith(", done")
