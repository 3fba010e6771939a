"""Where package layers are staged: small layers on the fast (RAM) root, the others, and every layer
when the fast root is missing, full or switched off, under the layer cache — same layer bytes."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from test_oci_build import NCURSES, greeting, real_record
from conftest import require_corpus

from pixibuild.oci.build import build_image
from pixibuild.oci.layer import LayerCache
from pixibuild.oci.staging import STAGING_ENV, StagingPolicy


def _populate_into(seen: list[Path]):
    def populate(staging: Path) -> None:
        seen.append(staging)
        (staging / "bin").mkdir()
        (staging / "bin" / "tool").write_bytes(b"#!/bin/sh\necho hi\n")
        (staging / "bin" / "tool").chmod(0o750)
        (staging / "lib").mkdir()
        (staging / "lib" / "libx.so.1").write_bytes(b"\x7fELF" + bytes(5000))
        (staging / "lib" / "libx.so").symlink_to("libx.so.1")
        os.link(staging / "lib" / "libx.so.1", staging / "lib" / "hard.so")
        (staging / "conda-meta").mkdir()
        (staging / "conda-meta" / "x-1-0.json").write_text("{}")
    return populate


def _build(tmp: Path, policy: StagingPolicy, archive_bytes: int | None, name: str = "oci") -> tuple[object, Path]:
    seen: list[Path] = []
    layer = LayerCache(tmp / name, staging=policy).get_or_build(
        "pkg-sha:abc", _populate_into(seen), mount="app/env", modes="keep", archive_bytes=archive_bytes)
    return layer, seen[-1]


def test_small_layer_staged_on_fast_root_with_the_same_bytes(tmp_path: Path) -> None:
    fast = tmp_path / "ram"
    fast.mkdir()
    on_fast, staged = _build(tmp_path, StagingPolicy(fast), archive_bytes=10_000, name="a")
    assert staged.parent == fast and not staged.exists()  # staged there, and cleaned up
    on_disk, staged = _build(tmp_path, StagingPolicy(None), archive_bytes=10_000, name="b")
    assert staged.parent == tmp_path / "b" and not staged.exists()
    assert (on_fast.digest, on_fast.diff_id) == (on_disk.digest, on_disk.diff_id)  # type: ignore[attr-defined]
    assert list(fast.iterdir()) == []


@pytest.mark.parametrize("case", ["too big", "size unknown", "no room", "missing", "not a dir", "off"])
def test_fallback_to_the_layer_cache(tmp_path: Path, case: str) -> None:
    fast = tmp_path / "ram"
    fast.mkdir()
    archive_bytes: int | None = 10_000
    policy = StagingPolicy(fast)
    if case == "too big":
        archive_bytes = policy.max_archive_bytes + 1
    elif case == "size unknown":
        archive_bytes = None
    elif case == "no room":  # a real statvfs of the fast root: no file system has 2**50 × 4 bytes free
        policy = StagingPolicy(fast, max_archive_bytes=1 << 62)
        archive_bytes = 1 << 50
    elif case == "missing":
        policy = StagingPolicy(tmp_path / "absent")
    elif case == "not a dir":
        (tmp_path / "file").write_text("")
        policy = StagingPolicy(tmp_path / "file")
    else:
        policy = StagingPolicy(None)
    _, staged = _build(tmp_path, policy, archive_bytes)
    assert staged.parent == tmp_path / "oci"
    assert list(fast.iterdir()) == []


def test_fast_root_full_while_populating_restages_on_disk(tmp_path: Path) -> None:
    fast = tmp_path / "ram"
    fast.mkdir()
    seen: list[Path] = []
    fill = _populate_into(seen)

    def populate(staging: Path) -> None:
        fill(staging)
        if staging.parent == fast:
            raise OSError(errno.ENOSPC, "No space left on device")

    cache = LayerCache(tmp_path / "oci", staging=StagingPolicy(fast))
    layer = cache.get_or_build("k", populate, archive_bytes=100)
    assert [p.parent for p in seen] == [fast, tmp_path / "oci"]
    assert list(fast.iterdir()) == [] and layer.path.is_file()
    assert cache.staging._reserved == 0
    other = LayerCache(tmp_path / "oci2", staging=StagingPolicy(None)).get_or_build("k", fill)
    assert other.digest == layer.digest


def test_other_errors_on_the_fast_root_are_not_retried(tmp_path: Path) -> None:
    fast = tmp_path / "ram"
    fast.mkdir()
    calls: list[Path] = []

    def populate(staging: Path) -> None:
        calls.append(staging)
        raise OSError(errno.EACCES, "Permission denied")

    with pytest.raises(OSError, match="Permission denied"):
        LayerCache(tmp_path / "oci", staging=StagingPolicy(fast)).get_or_build("k", populate, archive_bytes=100)
    assert len(calls) == 1 and list(fast.iterdir()) == []


def test_environment_variable_chooses_the_fast_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STAGING_ENV, str(tmp_path / "ram"))
    assert LayerCache(tmp_path / "oci").staging.fast_root == tmp_path / "ram"
    for off in ("off", ""):
        monkeypatch.setenv(STAGING_ENV, off)
        assert StagingPolicy.from_environment().fast_root is None
    monkeypatch.delenv(STAGING_ENV)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    default = StagingPolicy.from_environment().fast_root
    assert default in (Path("/dev/shm"), tmp_path)


def test_image_of_real_packages_is_the_same_staged_on_dev_shm_or_disk(tmp_path: Path) -> None:
    """Across file systems (cache on disk, staging on the tmpfs): the installer's hard links and modes
    stay inside the staging dir, so the image digest does not change."""
    if not (os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK)):
        pytest.skip("no writable /dev/shm")
    ncurses = require_corpus("pkgs", NCURSES)
    packages = [(real_record(ncurses), ncurses), greeting(tmp_path / "pkgs")]
    digests = {}
    for name, policy in (("shm", StagingPolicy(Path("/dev/shm"))), ("disk", StagingPolicy(None))):
        cache = LayerCache(tmp_path / name, staging=policy)
        result = build_image(packages, platform="linux-64", target_prefix="/app/.pixi/envs/prod", cache=cache,
                             created="2024-01-01T00:00:00Z")
        digests[name] = result.image.digest
        assert result.layers_built == len(result.image.layers)
        assert not list((tmp_path / name).glob("stage-*"))
    assert digests["shm"] == digests["disk"]


def test_planned_layers_know_their_archive_bytes(tmp_path: Path) -> None:
    """From the lock's sizes, else the archives on disk; unknown (staged on disk) when neither is there."""
    import dataclasses

    from pixibuild.oci.layerplan import plan_layers

    record, path = greeting(tmp_path / "pkgs")

    def planned(record, path):  # type: ignore[no-untyped-def]
        plan = plan_layers([(record, path)], platform="linux-64", target_prefix="/app", max_layers=None,
                           base_layers=0, app_layer=False)
        return plan.packages[0].spec.archive_bytes

    assert planned(record, path) == record.size == path.stat().st_size
    unsized = dataclasses.replace(record, size=None)
    assert planned(unsized, path) == path.stat().st_size
    assert planned(unsized, tmp_path / "not-fetched-yet.conda") is None


def test_staging_dirs_of_dead_processes_are_removed_from_the_fast_root(tmp_path: Path) -> None:
    """A killed build's staged files would stay in RAM until reboot: the next build removes them."""
    import subprocess
    import sys

    fast = tmp_path / "ram"
    fast.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = fast / f"pixibuild-stage-{dead.pid}-abc123"
    (leftover / "lib").mkdir(parents=True)
    (leftover / "lib" / "big.so").write_bytes(bytes(1000))
    running = fast / f"pixibuild-stage-{os.getpid()}-def456"  # a live build's (here: this process's)
    running.mkdir()
    other = fast / "someone-elses"
    other.mkdir()
    _, staged = _build(tmp_path, StagingPolicy(fast), archive_bytes=100)
    assert staged.parent == fast and staged.name.startswith(f"pixibuild-stage-{os.getpid()}-")
    assert sorted(p.name for p in fast.iterdir()) == sorted([running.name, "someone-elses"])
