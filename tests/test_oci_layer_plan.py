"""The one layer plan: budget arithmetic, base layer counts read from manifests only, impossible
budgets as one-line input errors (CLI and doit planning), and a base that changes after planning."""

from __future__ import annotations

from pathlib import Path

import pytest
from oci_helpers import file_layers

from pixibuild.cli import main
from pixibuild.errors import BuildError, InputError
from pixibuild.oci.assemble import BaseImage
from pixibuild.oci.base import base_layer_count
from pixibuild.oci.build import build_image
from pixibuild.files.digest import canonical_json
from pixibuild.oci.config import image_manifest
from pixibuild.oci.layer import LayerCache
from pixibuild.oci.layerplan import package_budget, plan_layers
from pixibuild.oci.layout import Image, write_image_tar, write_oci_dir
from pixibuild.demo.condapkg import PackageSpec, PkgFile, locked_record, write_package
from pixibuild.demo.demo import write_demo


def _base(tmp_path: Path, n: int) -> tuple[BaseImage, Image]:
    cache = LayerCache(tmp_path / f"base-cache-{n}")
    layers = [layer for layer, _ in file_layers(cache, {f"l{i}": {f"f{i}": b"x" * i} for i in range(n)}, mount="")]
    config = {"architecture": "amd64", "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": [l.diff_id for l in layers]}}
    config_bytes = canonical_json(config)
    manifest = canonical_json(image_manifest(config_bytes, [l.descriptor() for l in layers]))
    return BaseImage(f"base{n}", config, tuple(layers)), Image(manifest, config_bytes, layers,
                                                              {"os": "linux", "architecture": "amd64"})


def test_budget_is_max_minus_base_env_and_app_layers() -> None:
    assert package_budget(100, 0, False) == 99
    assert package_budget(100, 30, True) == 68
    with pytest.raises(InputError) as info:
        package_budget(5, 30, True)
    message = str(info.value)
    assert "5 layers" in message and "30 layers" in message and "at least 33" in message and "\n" not in message


def test_base_layer_count_reads_manifests_of_every_local_kind(tmp_path: Path) -> None:
    _, image = _base(tmp_path, 30)
    layout = write_oci_dir(image, tmp_path / "layout", tag="b:1")
    tar = write_image_tar(image, tmp_path / "base.tar", tag="b:1")
    assert base_layer_count("scratch", "linux-64") == 0
    assert base_layer_count(None, "linux-64") == 0
    assert base_layer_count(f"oci:{layout}", "linux-64") == 30
    assert base_layer_count(f"oci:{layout}:1", "linux-64") == 30
    assert base_layer_count(str(layout), "linux-64") == 30
    assert base_layer_count(f"oci-archive:{tar}", "linux-64") == 30
    assert base_layer_count(f"docker-archive:{tar}", "linux-64") == 30  # our tar is both
    with pytest.raises(InputError):
        base_layer_count(f"oci:{layout}:nosuchtag", "linux-64")


def test_max_layers_below_the_base_is_one_line_exit_2(tmp_path: Path, capsys, store_dir) -> None:
    demo = write_demo(tmp_path / "demo")
    _, image = _base(tmp_path, 30)
    layout = write_oci_dir(image, tmp_path / "layout")
    out = tmp_path / "img.tar"
    code = main(["image", str(demo["webapp"]), "-e", "prod", "-p", "linux-64", "--base", f"oci:{layout}",
                 "--max-layers", "5", "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "5 layers" in err and "30 layers" in err, err
    assert not out.exists()


def test_doit_planning_refuses_an_impossible_budget_in_one_line(tmp_path: Path, capsys, store_dir,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    demo = write_demo(tmp_path / "demo")
    _, image = _base(tmp_path, 30)
    layout = write_oci_dir(image, tmp_path / "layout")
    manifest = demo["webapp"] / "pixi.toml"
    text = "".join(line for line in manifest.read_text().splitlines(True) if not line.startswith("base = "))
    manifest.write_text(text + f'base = "oci:{layout}"\nmax-layers = 5\n')
    monkeypatch.setenv("PIXIBUILD_BUILD_DIR", str(tmp_path / "build"))
    code = main(["build", "-C", str(demo["webapp"]), "--list"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "max-layers" in err and "30 layers" in err, err


def _two_packages(tmp_path: Path) -> list:
    out = []
    for name in ("alpha", "beta"):
        spec = PackageSpec(name, "1.0", "0", files=[PkgFile(f"share/{name}.txt", name.encode())])
        path = write_package(spec, tmp_path / "pkgs", ".conda")
        out.append((locked_record(spec, path), path))
    return out


def test_a_base_that_changed_since_planning_fails_the_image_clearly(tmp_path: Path) -> None:
    packages = _two_packages(tmp_path)
    three, _ = _base(tmp_path, 3)
    two, _ = _base(tmp_path, 2)
    plan = plan_layers(packages, platform="linux-64", target_prefix="/opt/env", max_layers=100,
                       base_layers=len(three.layers), app_layer=False)
    cache = LayerCache(tmp_path / "cache")
    result = build_image(packages, platform="linux-64", target_prefix="/opt/env", cache=cache, base=three, plan=plan)
    assert len(result.image.layers) == 3 + 2 + 1
    with pytest.raises(BuildError, match="changed since planning"):
        build_image(packages, platform="linux-64", target_prefix="/opt/env", cache=cache, base=two, plan=plan)


def test_plan_squeezes_packages_into_the_budget_left_by_the_base(tmp_path: Path) -> None:
    packages = _two_packages(tmp_path)
    plan = plan_layers(packages, platform="linux-64", target_prefix="/opt/env", max_layers=5, base_layers=3,
                       app_layer=False)
    assert len(plan.packages) == 1 and {r.name for r in plan.packages[0].records} == {"alpha", "beta"}
