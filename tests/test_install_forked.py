"""Linking independent packages in a forked second process changes speed, never the result.

Each install runs in a fresh interpreter (one thread: the only place pixibuild forks), once with one
worker (one by one, no fork) and once with two (fork); the trees, conda-meta included, must be equal
byte for byte, and the child must really have linked some of the packages."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pixibuild.demo.condapkg import PackageSpec, PkgFile, locked_record, write_package
from pixibuild.install import forked

from conftest import require_corpus

from test_install_jobs import _tree

RUNNER = """
import os, pickle, sys
from pathlib import Path
from pixibuild.install import environment, forked
packages, target, jobs, out = pickle.load(open(sys.argv[1], "rb"))
if os.environ.get("FORK_FAILS"):  # as under RLIMIT_NPROC or a sandbox that forbids it
    def refuse():
        raise BlockingIOError(11, "Resource temporarily unavailable")
    os.fork = refuse
calls = []
real = forked.link_in_two
def spy(units, weights, link_one, after=None):
    calls.append(os.getpid())
    return real(units, weights, link_one, after)
forked.link_in_two = spy
try:
    environment.install_environment(packages, Path(target), target_prefix="/opt/env", platform="linux-64", jobs=jobs)
    result = {"forked": bool(calls), "error": None}
except Exception as exc:
    result = {"forked": bool(calls), "error": f"{type(exc).__name__}: {exc}"}
open(out, "w").write(__import__("json").dumps(result))
"""


def _install(tmp: Path, packages, jobs: int, name: str, **env: str) -> dict:
    """Install in a fresh one-thread interpreter; {"forked": whether two processes linked, "error": …}."""
    args, out = tmp / f"{name}.pickle", tmp / f"{name}.json"
    args.write_bytes(pickle.dumps((packages, str(tmp / name / "env"), jobs, str(out))))
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def _packages(tmp: Path, specs: list[PackageSpec]) -> list:
    out = []
    for i, spec in enumerate(specs):
        path = write_package(spec, tmp / "pkgs", ".conda" if i % 2 else ".tar.bz2")
        out.append((locked_record(spec, path), path))
    return out


def _mixed_specs() -> list[PackageSpec]:
    """Independent packages (enough paths to be worth a fork), clobbers, a file through another
    package's symlinked directory, and a noarch python package with an entry point."""
    specs = [PackageSpec("python", "3.12.1", "0", files=[PkgFile("bin/python3.12", b"#!/bin/sh\n", 0o755),
                                                         PkgFile("bin/python", symlink="python3.12")])]
    for i in range(10):
        files = [PkgFile(f"share/p{i}/data{j}.txt", f"{i}-{j} @PREFIX@\n".encode(), prefix="text") for j in range(80)]
        files.append(PkgFile(f"lib/libp{i}.so", symlink=f"p{i}/real.so"))
        specs.append(PackageSpec(f"p{i}", "1.0", "0", depends=("python",), files=files))
    specs += [
        PackageSpec("c1", "1.0", "0", files=[PkgFile("share/common/clobbered.txt", b"from c1\n")]),
        PackageSpec("c2", "1.0", "0", depends=("c1",), files=[PkgFile("share/common/clobbered.txt", b"from c2\n")]),
        PackageSpec("a", "1.0", "0", files=[PkgFile("lib/liba.so", b"a\n"), PkgFile("lib64", symlink="lib")]),
        PackageSpec("b", "1.0", "0", depends=("a",), files=[PkgFile("lib64/libb.so", b"b\n")]),
        PackageSpec("tool", "1.0", "py_0", subdir="noarch", noarch="python", depends=("python",),
                    entry_points=("tool = tool.cli:main",),
                    files=[PkgFile("site-packages/tool/__init__.py", b""),
                           PkgFile("site-packages/tool/cli.py", b"def main():\n    print('hi')\n")]),
    ]
    return specs


def test_forked_linking_equals_one_by_one(tmp_path: Path) -> None:
    packages = _packages(tmp_path, _mixed_specs())
    one = _install(tmp_path, packages, 1, "one")
    two = _install(tmp_path, packages, 2, "two")
    assert one == {"forked": False, "error": None}
    assert two == {"forked": True, "error": None}  # the second process was used
    a, b = _tree(tmp_path / "one" / "env"), _tree(tmp_path / "two" / "env")
    assert a == b
    assert a["share/common/clobbered.txt"][2] == b"from c2\n" and a["__clobbers__/c1/share/common/clobbered.txt"]
    assert a["lib/libb.so"][2] == b"b\n" and a["lib64"] == ("link", "lib")  # written through the symlink
    assert "bin/tool" in a and "lib/python3.12/site-packages/tool/cli.py" in a
    meta = json.loads((tmp_path / "two" / "env" / "conda-meta" / "c1-1.0-0.json").read_text())
    assert [p["_path"] for p in meta["paths_data"]["paths"]] == ["__clobbers__/c1/share/common/clobbered.txt"]


def test_a_refused_fork_links_one_by_one(tmp_path: Path) -> None:
    """fork failing (EAGAIN: a process limit, a sandbox) is no error: the same install, in one process."""
    packages = _packages(tmp_path, _mixed_specs())
    one = _install(tmp_path, packages, 1, "one")
    refused = _install(tmp_path, packages, 2, "refused", FORK_FAILS="1")
    assert one["error"] is None and refused == {"forked": True, "error": None}  # tried, then went on alone
    assert _tree(tmp_path / "one" / "env") == _tree(tmp_path / "refused" / "env")


def test_forked_linking_of_real_corpus_packages_equals_one_by_one(tmp_path: Path) -> None:
    """Real archives (ncurses' thousands of terminfo entries and hard links, binary placeholders,
    packages that clobber one another): the same tree either way."""
    require_corpus("pkgs", "INDEX.tsv")  # skips locally without ../shared, fails in CI
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import unpack as bench_unpack
    from pixibuild.conda.archive import record_from_archive

    archives = bench_unpack._corpus_archives()
    packages = [(record_from_archive(p), p) for p in archives]
    one = _install(tmp_path, packages, 1, "one")
    two = _install(tmp_path, packages, 2, "two")
    assert one["error"] is None and two == {"forked": True, "error": None}
    assert _tree(tmp_path / "one" / "env") == _tree(tmp_path / "two" / "env")  # conda-meta included


def test_a_bad_package_in_either_process_fails_with_its_own_error(tmp_path: Path) -> None:
    """Two broken archives (truncated), one linked by each process: the error of the first one in
    dependency order is the install's, as one by one."""
    specs = _mixed_specs()
    packages = _packages(tmp_path, specs)
    names = [r.name for r, _ in packages]
    for victim in ("p2", "p7"):
        path = packages[names.index(victim)][1]
        data = path.read_bytes()
        broken = tmp_path / "broken" / path.name
        broken.parent.mkdir(exist_ok=True)
        broken.write_bytes(data[: len(data) // 2])
        packages[names.index(victim)] = (packages[names.index(victim)][0], broken)
    one = _install(tmp_path, packages, 1, "one")
    two = _install(tmp_path, packages, 2, "two")
    assert one["error"] and one["error"].startswith("InputError")
    assert two["error"] == one["error"]


def test_the_child_dies_with_a_killed_parent(tmp_path: Path) -> None:
    """SIGKILL the installing process while its second process links: that one stops too, instead
    of writing on into a staging directory nobody owns."""
    specs = [PackageSpec(f"big{i}", "1.0", "0", files=[PkgFile(f"share/big{i}/f{j}", os.urandom(64) * 64)
                                                       for j in range(1500)]) for i in range(4)]
    packages = _packages(tmp_path, specs)
    args = tmp_path / "kill.pickle"
    args.write_bytes(pickle.dumps((packages, str(tmp_path / "kill" / "env"), 2, str(tmp_path / "kill.json"))))
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(args)])
    children: list[str] = []
    deadline = time.monotonic() + 60
    while not children and proc.poll() is None and time.monotonic() < deadline:
        try:
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        except OSError:
            break
        time.sleep(0.005)
    if not children:
        proc.wait()
        pytest.fail("the install finished before its second process could be seen")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{children[0]}").exists() and time.monotonic() < deadline:
        try:  # a zombie reparented to init counts as gone once it is reaped; it does no more work
            if Path(f"/proc/{children[0]}/stat").read_text().split(")")[1].split()[0] == "Z":
                break
        except OSError:
            break
        time.sleep(0.01)
    alive = Path(f"/proc/{children[0]}").exists() and \
        Path(f"/proc/{children[0]}/stat").read_text().split(")")[1].split()[0] != "Z"
    assert not alive


def test_no_fork_while_another_thread_runs() -> None:
    """A doit run's parallel tasks are threads: forking then could copy a lock another thread holds."""
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert forked.can_fork() is False
    finally:
        stop.set()
        thread.join()


def test_units_keep_packages_that_share_a_path_together() -> None:
    paths = [({"lib64"}, set()),            # 0: a symlink (a file-like entry) …
             ({"lib64/x.so"}, set()),       # 1: … another package writes through
             ({"share/a"}, {"share"}),      # 2: alone
             ({"bin/t"}, set()),            # 3: clobbers 4
             ({"bin/t"}, set()),            # 4
             (set(), {"share", "lib"})]     # 5: directories only: shares nothing
    assert sorted(forked.units(paths)) == [[0, 1], [2], [3, 4], [5]]
