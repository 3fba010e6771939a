"""End to end: real packages → per-package layers via the installer → env layer → image; run a
real packaged binary (ncurses' infocmp) through the entrypoint inside the unpacked rootfs."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
import zstandard
from conftest import require_corpus
from oci_helpers import glibc_busybox_base, run_in_rootfs, umoci_unpack

from pixibuild.oci.build import build_image
from pixibuild.oci.config import ImageSettings
from pixibuild.oci.layer import LayerCache
from pixibuild.oci.layout import write_image_tar, write_oci_dir
from pixibuild.conda.records import CondaRecord
from pixibuild.demo.condapkg import PackageSpec, PkgFile, locked_record, write_package




NCURSES = ("paketo-buildpacks__conda-env-update/@32e39f0def/integration/testdata/vendored_app/vendor/noarch/"
           "ncurses-6.2-he6710b0_1.conda")
PREFIX = "/app/.pixi/envs/prod"


def conda_index_json(path: Path) -> dict:
    """info/index.json of a .conda (zip → info-*.tar.zst) or .tar.bz2 archive."""
    if path.name.endswith(".tar.bz2"):
        with tarfile.open(path, "r:bz2") as tar:
            return json.load(tar.extractfile("info/index.json"))  # type: ignore[arg-type]
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.startswith("info-"))
        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(zf.read(name))).read()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return json.load(tar.extractfile("info/index.json"))  # type: ignore[arg-type]


def real_record(path: Path) -> CondaRecord:
    index = conda_index_json(path)
    data = path.read_bytes()
    return CondaRecord(url=f"https://repo.anaconda.com/pkgs/main/linux-64/{path.name}", file_name=path.name,
                       subdir=index["subdir"], name=index["name"], version=index["version"], build=index["build"],
                       build_number=index["build_number"], depends=tuple(index.get("depends", ())),
                       sha256=hashlib.sha256(data).hexdigest(), md5=hashlib.md5(data).hexdigest(), size=len(data),
                       timestamp=index.get("timestamp"), license=index.get("license"))


def greeting(tmp: Path, version: str = "1.0") -> tuple[CondaRecord, Path]:
    spec = PackageSpec("greeting", version=version, depends=("ncurses",), files=[
        PkgFile("bin/greet", f"#!/bin/sh\necho \"greet {version}: $GREETING $GREETING_SH\"\n".encode(), mode=0o755),
        PkgFile("etc/conda/env_vars.d/greeting.json", b'{"GREETING": "hello-from-env-vars"}'),
        PkgFile("etc/conda/activate.d/greeting.sh", b"export GREETING_SH=from-activate-d\n"),
    ])
    path = write_package(spec, tmp / version)
    return locked_record(spec, path), path


@pytest.fixture
def packages(tmp_path: Path) -> list[tuple[CondaRecord, Path]]:
    ncurses = require_corpus("pkgs", NCURSES)
    return [(real_record(ncurses), ncurses), greeting(tmp_path / "pkgs")]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory):
    """Built once: the base is an input here, not what is being measured cold/warm."""
    return glibc_busybox_base(LayerCache(tmp_path_factory.mktemp("base-cache")))


def _build(packages, cache_dir: Path, base, **kw):
    cache = LayerCache(cache_dir)
    return build_image(packages, platform="linux-64", target_prefix=PREFIX, cache=cache, base=base,
                       settings=ImageSettings(cmd=["sh", "-c", "echo CP=$CONDA_PREFIX; greet; "
                                                   "infocmp -1 xterm | head -n 2; which infocmp"]), **kw)


def test_entrypoint_activates_and_real_binary_runs(tmp_path: Path, packages, base) -> None:
    result = _build(packages, tmp_path / "cache", base)
    layout = write_oci_dir(result.image, tmp_path / "layout", tag="e2e:1")
    bundle = tmp_path / "bundle"
    res = umoci_unpack(layout, "1", bundle)
    assert res.returncode == 0, res.stderr
    rootfs = bundle / "rootfs"
    assert (rootfs / "app/.pixi/envs/prod/conda-meta/history").exists()
    assert sorted(p.name for p in (rootfs / "app/.pixi/envs/prod/conda-meta").glob("*.json")) == \
        ["greeting-1.0-0.json", "ncurses-6.2-he6710b0_1.json"]
    out = run_in_rootfs(bundle)
    assert f"CP={PREFIX}" in out
    assert "greet 1.0: hello-from-env-vars from-activate-d" in out
    assert "xterm" in out.splitlines()[2]  # infocmp found the terminfo db at the relocated prefix
    assert f"{PREFIX}/bin/infocmp" in out
    config = json.loads(result.image.config)
    assert config["config"]["Entrypoint"] == ["/entrypoint.sh"] and config["config"]["WorkingDir"] == "/app"
    env = dict(e.split("=", 1) for e in config["config"]["Env"])
    assert env["PATH"].startswith(f"{PREFIX}/bin:") and env["CONDA_PREFIX"] == PREFIX
    assert env["GREETING"] == "hello-from-env-vars"


def test_cold_warm_same_digest_and_one_package_change(tmp_path: Path, packages, base) -> None:
    cold = _build(packages, tmp_path / "c1", base)
    warm = _build(packages, tmp_path / "c1", base)
    other_cold = _build(packages, tmp_path / "c2", base)
    assert cold.image.digest == warm.image.digest == other_cold.image.digest
    assert warm.layers_built == 0 and cold.layers_built >= 3
    t1, t2 = write_image_tar(cold.image, tmp_path / "1.tar"), write_image_tar(other_cold.image, tmp_path / "2.tar")
    assert t1.read_bytes() == t2.read_bytes()

    changed = [packages[0], greeting(tmp_path / "pkgs2", "1.1")]
    after = _build(changed, tmp_path / "c1", base)
    before_layers = [l.digest for l in cold.image.layers]
    after_layers = [l.digest for l in after.image.layers]
    differing = [i for i, (a, b) in enumerate(zip(before_layers, after_layers)) if a != b]
    greeting_index = 1 + next(i for i, g in enumerate(cold.package_groups) if any("greeting" in n for n in g))
    assert differing == [greeting_index]  # env layer unchanged: same activation, same entrypoint
    assert after.layers_built == 1
    assert after.image.config_digest != cold.image.config_digest
