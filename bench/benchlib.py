"""What the benchmarks share: a plain HTTP server for a channel, the two-line dodo.py and a doit
runner that counts executed tasks, and the corpus location. Benchmarks run as scripts
(`python bench/x.py`), so `import benchlib` finds this file beside them; nothing here comes from
tests/ (benchmarks must not depend on test code)."""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PIXIBUILD_SHARED", REPO.parent / "shared"))
CORPUS = SHARED / "corpus"
TWO_LINE_DODO = "from pixibuild.rules import workspace_tasks\nglobals().update(workspace_tasks(__file__))\n"


_SERVER = """
import functools, http.server, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as channel CDNs do
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=sys.argv[1]))
print(f"port {server.server_address[1]}", flush=True)
server.serve_forever()
"""


class ChannelServer:
    """The standard library's HTTP/1.1 file server on 127.0.0.1, in its own process (its Python time
    must not share the measured process's GIL); `url` is its base URL."""

    def __init__(self, root: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(root)], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        match = re.search(r"port (\d+)", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"channel server did not start: {line!r}")
        self.url = f"http://127.0.0.1:{match.group(1)}"

    def __enter__(self) -> "ChannelServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@dataclass
class DoitRun:
    returncode: int
    executed: list[str]
    seconds: float
    output: str
    cpu: float = 0.0
    """User + system CPU seconds of the doit process."""
    rss_mb: float = 0.0
    """Its peak resident memory (MB)."""


def write_dodo(root: Path) -> Path:
    path = root / "dodo.py"
    path.write_text(TWO_LINE_DODO)
    return path


_DOIT_MAIN = """
import atexit, os, resource, runpy, sys
def _report():
    # peak RSS: this process's VmHWM (ru_maxrss survives exec: it would report the benchmark that
    # started us when that was larger) or a forked planning worker's, whichever is larger
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open("/proc/self/status") as status:
        peak = max([peak] + [int(line.split()[1]) for line in status if line.startswith("VmHWM:")])
    with open(os.environ["PIXIBUILD_BENCH_STATS"], "w") as fh:
        fh.write(f"{peak} {usage.ru_utime + usage.ru_stime}")
atexit.register(_report)
sys.argv = ["doit", *sys.argv[1:]]
runpy.run_module("doit", run_name="__main__", alter_sys=True)
"""


def run_doit(root: Path, *args: str, env: dict[str, str] | None = None) -> DoitRun:
    """`python -m doit -f root/dodo.py ARGS`, timed (wall, and the child's own CPU time and peak RSS,
    which other load on the machine disturbs less), with compiled bytecode as an installed pixibuild
    has it (`compiled_env`); executed = the tasks doit prints as `.  name`."""
    stats = root / ".bench-doit-stats"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _DOIT_MAIN, "-f", str(root / "dodo.py"), "-d", str(root), *args],
                          capture_output=True, text=True,
                          env=compiled_env(root / ".bench", **(env or {}), PIXIBUILD_BENCH_STATS=str(stats)))
    seconds = time.perf_counter() - start
    executed = [line[3:].strip() for line in proc.stdout.splitlines() if line.startswith(".  ")]
    try:
        rss_kb, cpu = stats.read_text().split()
        stats.unlink()
    except (OSError, ValueError):
        rss_kb, cpu = "0", "0"
    return DoitRun(proc.returncode, executed, seconds, proc.stdout + proc.stderr, float(cpu), int(rss_kb) / 1024)


def compiled_env(work: Path, **extra: str) -> dict[str, str]:
    """The environment for a timed child python: bytecode cached in a private PYTHONPYCACHEPREFIX, as
    an installed pixibuild has it (under PYTHONDONTWRITEBYTECODE every run compiles its modules from
    source: ~0.1 s of every command's start-up on the CI machine)."""
    env = dict(os.environ, PYTHONPYCACHEPREFIX=str(work / "pycache"), **extra)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def min_median(values: list[float]) -> str:
    """`min / median s` of repeated timings (min: the machine's best; median: what to expect)."""
    return f"{min(values):.3f} / {statistics.median(values):.3f} s"


class Registry:
    """The Debian `docker-registry` (distribution) on 127.0.0.1 with throwaway storage: a real OCI registry
    for the remote cache benchmark. `host` is `127.0.0.1:<port>`."""

    def __init__(self, root: Path):
        import socket
        import urllib.request

        exe = shutil.which("docker-registry")
        if exe is None:
            raise SystemExit("docker-registry is not installed (Debian: apt-get install docker-registry)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.host = f"127.0.0.1:{port}"
        root.mkdir(parents=True, exist_ok=True)
        (root / "config.yml").write_text(
            "version: 0.1\nlog: {level: error}\n"
            f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}\nhttp: {{addr: {self.host}}}\n")
        self.proc = subprocess.Popen([exe, "serve", str(root / "config.yml")], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.time() + 15
        while True:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1).read()
                return
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("docker-registry did not start")
                time.sleep(0.1)

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def decompression_seconds(archives: list[Path]) -> float:
    """CPU seconds to decompress every archive once (one core): what any install or image build from
    these archives spends at least, before it writes a byte."""
    import bz2
    import zipfile

    import zstandard

    start = time.process_time()
    for path in archives:
        if path.name.endswith(".tar.bz2"):
            with bz2.open(path) as stream:
                while stream.read(1 << 20):
                    pass
            continue
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if name.endswith(".tar.zst"):
                    with zf.open(name) as raw, zstandard.ZstdDecompressor().stream_reader(raw) as stream:
                        while stream.read(1 << 20):
                            pass
    return time.process_time() - start
