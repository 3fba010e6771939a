"""`pixibuild cache info` and `pixibuild cache prune`: sizes per kind, least recently used first, ages and
sizes as users write them, and safe while builds run (what a running build holds stays; the store is sound
afterwards and the next build fetches again exactly what was removed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pixibuild.demo.demo import use_channel_url, write_demo
from pixibuild.demo.synthetic import bump_package, write_workspace
from pixibuild.store.blobs import Store
from pixibuild.store.gc import parse_age, parse_size
from remote_helpers import Machine
from support.http_server import TestServer


def cache(store: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pixibuild", "cache", *args, "--cache-dir", str(store)],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    """The demo monorepo built once (packs, images, unpacked envs) into a store."""
    root = tmp_path_factory.mktemp("prune")
    write_demo(root / "ws")
    machine = Machine(root / "m", root / "ws")
    run = machine.build()
    assert run.returncode == 0, run.stderr
    return machine


def _copy_store(machine: Machine, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "store"
    shutil.copytree(machine.store, target, symlinks=True)
    return target


def test_info_prints_sizes_per_kind(built: Machine) -> None:
    res = cache(built.store, "info", "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    kinds = info["kinds"]
    assert kinds["package blobs"]["count"] == len(built.package_blobs()) > 0
    assert kinds["layers"]["count"] > 0 and kinds["lock cache"]["count"] == 2
    assert info["total"] >= sum(k["bytes"] for k in kinds.values())
    text = cache(built.store, "info").stdout
    assert text.splitlines()[0].startswith(str(built.store)) and "package blobs" in text and "layers" in text


def test_dry_run_removes_nothing(built: Machine, tmp_path: Path) -> None:
    store = _copy_store(built, tmp_path)
    before = sorted(p.relative_to(store) for p in store.rglob("*") if p.is_file() and "leases" not in p.parts)
    res = cache(store, "prune", "--all", "--dry-run")
    assert res.returncode == 0 and res.stdout.startswith("would remove "), res.stderr
    after = sorted(p.relative_to(store) for p in store.rglob("*") if p.is_file() and "leases" not in p.parts)
    assert before == after


def test_least_recently_used_go_first(built: Machine, tmp_path: Path) -> None:
    """--older-than removes what was last used before then; --max-size removes oldest first until it fits."""
    store = _copy_store(built, tmp_path)
    blobs = sorted(Store(store).iter_blobs())
    now = time.time()
    for i, (_, path) in enumerate(blobs):  # blob i last used i days ago
        os.utime(path, (now - i * 86400 - 60, now - i * 86400 - 60))
    for path in (store / "oci").rglob("*"):
        os.utime(path, (now, now))
    for path in (store / "lock-cache").iterdir():
        os.utime(path, (now, now))
    res = cache(store, "prune", "--older-than", f"{len(blobs) - 2}d")
    assert res.returncode == 0, res.stderr
    kept = {name for name, _ in Store(store).iter_blobs()}
    assert kept == {name for name, _ in blobs[:len(blobs) - 2]}  # the 2 oldest went
    assert "2 package blobs" in res.stdout
    info = json.loads(cache(store, "info", "--json").stdout)
    units = sum(k["bytes"] for k in info["kinds"].values())
    older = sum(os.path.getsize(path) for _, path in blobs[1:len(blobs) - 2])
    res = cache(store, "prune", "--max-size", str(units - older))  # room for all but those: the oldest go
    assert res.returncode == 0, res.stderr
    assert {name for name, _ in Store(store).iter_blobs()} == {blobs[0][0]}
    assert info["kinds"]["layers"]["count"] == json.loads(cache(store, "info", "--json").stdout)["kinds"]["layers"]["count"]


def test_sizes_and_ages_as_users_write_them() -> None:
    assert parse_size("20G") == 20 * 10**9 and parse_size("1.5GiB") == int(1.5 * 2**30)
    assert parse_size("500m") == 500 * 10**6 and parse_size("0") == 0 and parse_size("100kB") == 100_000
    assert parse_age("30d") == 30 * 86400 and parse_age("12h") == 12 * 3600 and parse_age("2w") == 14 * 86400
    for bad in ("20X", "-1G", "G"):
        with pytest.raises(Exception, match="is not a size"):
            parse_size(bad)


def test_bad_arguments_are_one_line(tmp_path: Path) -> None:
    for args in (["prune", "--max-size", "lots"], ["prune", "--older-than", "soon"], ["prune"]):
        res = cache(tmp_path / "store", *args)
        assert res.returncode == 2 and res.stderr.count("\n") == 1, (args, res.stderr)


def test_a_running_processes_lease_is_kept(built: Machine, tmp_path: Path) -> None:
    """A blob another live process holds survives `--all`; once that process is gone, it does not."""
    store = _copy_store(built, tmp_path)
    [(name, _), *_] = sorted(Store(store).iter_blobs())
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom pixibuild.store.lease import hold\n"
                               f"hold({str(store)!r}, ['blob:{name}'])\nprint('held', flush=True)\ntime.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        res = cache(store, "prune", "--all")
        assert res.returncode == 0, res.stderr
        assert "1 running builds hold" in res.stdout
        assert {n for n, _ in Store(store).iter_blobs()} == {name}
    finally:
        holder.kill()
        holder.wait()
    res = cache(store, "prune", "--all")
    assert res.returncode == 0 and {n for n, _ in Store(store).iter_blobs()} == set()
    assert list((store / "leases").glob("*.lease")) == []  # the dead holder's lease was cleaned up


def test_prune_during_a_running_build(built: Machine, tmp_path: Path) -> None:
    """Two workspaces share a store. While one builds (stalled on a download), `prune --all` removes the
    other's packages and layers but nothing the running build holds; it finishes; the store is sound; a
    fresh build of each then fetches again exactly what was pruned."""
    import shutil

    store = _copy_store(built, tmp_path)
    w1 = Machine(tmp_path / "w1", built.workspace)
    w1.store = store
    root2 = tmp_path / "w2src"
    projects = write_workspace(root2, n_packages=30, n_projects=2, median_kib=8)
    with TestServer(root2 / "channel") as server:
        use_channel_url(root2, server.url, channel=root2 / "channel")
        w2 = Machine(tmp_path / "w2", root2)
        w2.store = store
        first = w2.build()
        assert first.returncode == 0, first.stderr
        w2_blobs = w2.package_blobs() - built.package_blobs()
        record = bump_package(projects[0], _root_package(projects[0]), channel=root2 / "channel", tag="new")
        server.add_fault("stall", f"*{record.file_name}", delay=6)
        running = w2.start()
        deadline = time.time() + 30
        while not list((store / "leases").glob("*.lease")) and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1)
        res = cache(store, "prune", "--all")
        assert running.poll() is None, "the build ended before the prune: nothing was tested"
        run = w2.finish(running)
    assert res.returncode == 0, res.stderr
    assert "1 running builds hold" in res.stdout, res.stdout
    assert run.returncode == 0, run.stderr
    assert run.summary["outcomes"][f"fetch:{record.sha256[:16]}"] == "built"
    w2.store_is_sound()
    left = w2.package_blobs()
    assert w2_blobs <= left and not (built.package_blobs() & left)  # w1's went (it was not running), w2's stayed
    # the next builds, in fresh build dirs: w1 fetches all its packages again, w2 nothing
    for machine in (w1, w2):
        shutil.rmtree(machine.build_dir, ignore_errors=True)
    again = w1.build()
    assert again.returncode == 0, again.stderr
    fetched = {n for n, o in again.summary["outcomes"].items() if n.startswith("fetch:") and o == "built"}
    assert {n[6:] for n in fetched} == {sha[:16] for sha in built.package_blobs()}
    w2_again = w2.build()
    assert w2_again.returncode == 0, w2_again.stderr
    assert {o for n, o in w2_again.summary["outcomes"].items() if n.startswith("fetch:")} == {"local"}
    assert Store(store).verify(remove=False) == []


def _root_package(project: Path) -> str:
    for line in (project / "pixi.toml").read_text().splitlines():
        if line.startswith('"pkg'):
            return line.split('"')[1]
    raise AssertionError("no package")
