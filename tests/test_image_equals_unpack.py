"""Image ≡ unpack: the environment inside an image is byte for byte what `pixibuild unpack` installs
at the same prefix — paths, kinds, modes, symlink targets and bytes — on every demo target, every
real corpus channel and rattler's clobbering test packages; and `pixibuild image
--check-against-unpack` is the CI guard that says so (or names what differs)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from conftest import require_corpus
from install_oracle import python_stub
from oci_helpers import require_busybox

from pixibuild.cli import main
from pixibuild.conda.archive import record_from_archive
from pixibuild.demo.demo import write_demo
from pixibuild.errors import PixibuildError
from pixibuild.install.environment import install_environment, install_package
from pixibuild.install.conda_meta import HISTORY_PIXI_UNPACK
from pixibuild.oci.build import build_image
from pixibuild.oci.layer import LayerCache
from pixibuild.oci.layout import write_oci_dir
from pixibuild.oci.verify import differences, directory_environment, image_environment

DEMO_TARGETS = [("webapp", "prod", "linux-64"), ("webapp", "prod", "linux-aarch64"),
                ("webapp", "default", "linux-64"), ("webapp", "default", "linux-aarch64"),
                ("worker", "default", "linux-64")]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require_busybox()
    return write_demo(tmp_path_factory.mktemp("demo"))


def _layers_of(layout: Path):
    import json

    from pixibuild.oci.layer import Layer

    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]).read_text())
    return [Layer(l["digest"], "", l["size"], layout / "blobs/sha256" / l["digest"].split(":")[1], l["mediaType"])
            for l in manifest["layers"]]


@pytest.mark.parametrize("project,env,platform", DEMO_TARGETS)
def test_demo_target_image_holds_what_unpack_of_its_pack_installs(demo, tmp_path: Path, store_dir, project: str,
                                                                 env: str, platform: str) -> None:
    """The real route on both sides: `pixibuild pack` then `pixibuild unpack` into DIR/env, and the
    image built with its prefix at that same DIR/env. Every byte is the same except the conda-meta
    records' `url`/`channel` (unpack, like pixi-unpack, names the pack's bundled channel)."""
    pack = tmp_path / "environment.tar"
    assert main(["pack", str(demo[project]), "-e", env, "-p", platform, "-o", str(pack)]) == 0
    from pixibuild.commands.unpack import unpack
    from pixibuild.conda.platforms import current_subdir

    if platform == current_subdir():
        assert main(["unpack", str(pack), "-o", str(tmp_path / "out")]) == 0
    else:  # the command refuses a foreign pack; its function installs one for a named platform
        unpack(pack, tmp_path / "out", platform=platform)
    prefix = tmp_path / "out" / "env"
    layout = tmp_path / "layout"
    assert main(["image", str(demo[project]), "-e", env, "-p", platform, "--prefix", str(prefix), "--oci-dir",
                 str(layout), "--tag", "x:1", "--check-against-unpack"]) == 0
    ours = image_environment(_layers_of(layout), str(prefix), without_origin=True)
    assert differences(ours, directory_environment(prefix, without_origin=True)) == []
    assert "conda-meta/history" in ours and any(p.startswith("bin/") for p in ours)
    exact = differences(image_environment(_layers_of(layout), str(prefix)), directory_environment(prefix))
    assert exact and all(d.startswith("conda-meta/") for d in exact)  # the one by-design difference


def _channel_environments() -> list[tuple[str, list[Path]]]:
    """Per corpus channel (a directory with <subdir>/repodata.json), its linux-64 and noarch packages,
    one build per name (the first the index lists)."""
    pkgs = require_corpus("pkgs")
    with open(pkgs / "INDEX.tsv", newline="") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["dup_of"] == "-"
                and r["file"].endswith((".conda", ".tar.bz2"))]
    with open(pkgs / "CHANNELS.tsv", newline="") as f:
        channels = [r["channel_dir"] for r in csv.DictReader(f, delimiter="\t")]
    out = []
    for channel in channels:
        chosen: dict[str, Path] = {}
        for row in rows:
            if row["file"].startswith(channel + "/") and row["file"][len(channel) + 1:].split("/")[0] in ("linux-64", "noarch"):
                chosen.setdefault(row["name"], pkgs / row["file"])
        if chosen:
            out.append((channel, list(chosen.values())))
    clobber = "conda__rattler/test-data/clobber"
    for group in (["clobber-1", "clobber-2", "clobber-3"], ["clobber-nested-1", "clobber-nested-2", "clobber-nested-3"]):
        out.append((f"rattler {group[0]}…", [pkgs / f"{clobber}/{n}-0.1.0-h4616a5c_0.tar.bz2" for n in group]))
    for group in (["fd-1", "fd-2", "fd-3"], ["fd-rev-1", "fd-rev-2", "fd-rev-3"], ["fd-1", "fd-2-conflicting"]):
        out.append((f"rattler {group[0]}…", [pkgs / f"{clobber}/clobber-{n}-0.1.0-h4616a5c_0.conda" for n in group]))
    return out


def _installable(archives: list[Path], scratch: Path) -> list:
    """Records the installer accepts (the corpus keeps deliberately broken packages too)."""
    out = []
    for path in archives:
        try:
            record = record_from_archive(path)
            install_package(record, path, scratch / record.name, target_prefix="/probe", python_version="3.12",
                            platform="linux-64")
        except PixibuildError:
            continue
        out.append((record, path))
    if any(r.noarch == "python" for r, _ in out) and not any(r.name == "python" for r, _ in out):
        stub = python_stub(scratch / "stub", "linux-64")
        out.append((record_from_archive(stub), stub))
    return out


@pytest.mark.slow
@pytest.mark.corpus
def test_every_corpus_channel_image_equals_unpack(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "cache")
    compared, clobbered = 0, 0
    for i, (channel, archives) in enumerate(_channel_environments()):
        packages = _installable(archives, tmp_path / f"probe{i}")
        if not packages:
            continue
        prefix = tmp_path / f"env{i}"
        result = build_image(packages, platform="linux-64", target_prefix=str(prefix), cache=cache)
        install_environment(packages, prefix, target_prefix=str(prefix), platform="linux-64",
                            history=HISTORY_PIXI_UNPACK)
        ours = image_environment(result.image.layers, str(prefix))
        assert differences(ours, directory_environment(prefix), limit=5) == [], channel
        compared += 1
        clobbered += any(p.startswith("__clobbers__/") for p in ours)
        shutil.rmtree(prefix)
    assert compared >= 25 and clobbered >= 5, (compared, clobbered)


def test_clobbers_are_settled_without_touching_the_shared_package_layers(tmp_path: Path) -> None:
    """Each package layer stays the package alone (shared with images that do not clobber); the
    environment layer carries the winner and the loser's __clobbers__ copy."""
    pkgs = require_corpus("pkgs")
    clobber = "conda__rattler/test-data/clobber"
    archives = [pkgs / f"{clobber}/clobber-{n}-0.1.0-h4616a5c_0.tar.bz2" for n in (1, 2)]
    packages = [(record_from_archive(p), p) for p in archives]
    cache = LayerCache(tmp_path / "cache")
    together = build_image(packages, platform="linux-64", target_prefix="/env", cache=cache)
    alone = build_image(packages[:1], platform="linux-64", target_prefix="/env", cache=cache)
    assert alone.image.layers[0].digest in {l.digest for l in together.image.layers}
    env_layer = together.image.layers[-1]
    ours = image_environment([env_layer], "/env")
    assert any(p.startswith("__clobbers__/clobber-1/") for p in ours) or \
        any(p.startswith("__clobbers__/clobber-2/") for p in ours)


def test_check_against_unpack_names_what_a_base_image_changed_in_the_prefix(demo, tmp_path: Path, capsys,
                                                                           store_dir) -> None:
    """A base that ships a file inside the environment's prefix: the image's environment is no longer
    the pack's, and the check fails with one line naming the path."""
    from oci_helpers import busybox_base
    from pixibuild.oci.assemble import LayerSpec, assemble_image, build_layers
    from pixibuild.oci.config import ImageSettings

    cache = LayerCache(tmp_path / "base-cache")
    base = busybox_base(cache)

    def populate(d: Path) -> None:
        (d / "bin").mkdir(parents=True)
        (d / "bin" / "stowaway").write_text("#!/bin/sh\n")

    [(extra, _)] = build_layers([LayerSpec("stowaway", populate, mount="app/.pixi/envs/prod")], cache)
    image = assemble_image(platform="linux-64", layers=[(extra, _hist())], settings=ImageSettings(), base=base)
    layout = write_oci_dir(image, tmp_path / "base", tag="b:1")
    out = tmp_path / "img.tar"
    code = main(["image", str(demo["webapp"]), "-e", "prod", "-p", "linux-64", "--base", f"oci:{layout}:1",
                 "-o", str(out), "--check-against-unpack"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "bin/stowaway: image file" in err and "unpack missing" in err
    assert not out.exists()


def _hist():
    from pixibuild.oci.config import HistoryEntry

    return HistoryEntry(created_by="a file inside the prefix")
