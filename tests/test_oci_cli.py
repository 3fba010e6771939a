"""`pixibuild image` on the demo project: manifest settings + flags → tar and layout that run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import require_tool
from oci_helpers import glibc_busybox_base, run_in_rootfs, skopeo, umoci_unpack

from pixibuild.cli import main
from pixibuild.oci.layer import LayerCache
from pixibuild.oci.layout import Image, write_oci_dir
from pixibuild.demo.demo import write_demo






@pytest.fixture
def demo(tmp_path: Path) -> dict[str, Path]:
    return write_demo(tmp_path / "demo")


@pytest.fixture
def base_layout(tmp_path: Path) -> Path:
    cache = LayerCache(tmp_path / "base-cache")
    base = glibc_busybox_base(cache)
    config = json.dumps(base.config, sort_keys=True, separators=(",", ":")).encode()
    from pixibuild.oci.config import image_manifest
    manifest = json.dumps(image_manifest(config, [l.descriptor() for l in base.layers]), sort_keys=True,
                          separators=(",", ":")).encode()
    image = Image(manifest, config, base.layers, {"os": "linux", "architecture": "amd64"})
    return write_oci_dir(image, tmp_path / "base", tag="base:1")


def test_image_command_builds_runs_and_is_reproducible(tmp_path: Path, demo, base_layout: Path, store_dir,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    webapp = demo["webapp"]
    out, layout = tmp_path / "webapp.tar", tmp_path / "layout"
    args = ["image", str(webapp), "-e", "prod", "-p", "linux-64", "--base", f"oci:{base_layout}:1",
            "--tag", "webapp:1", "-o", str(out), "--oci-dir", str(layout), "--include", "app",
            "--label", "extra=yes", "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    config = json.loads(skopeo("inspect", "--config", f"oci-archive:{out}"))
    assert config["created"] == "2023-11-14T22:13:20Z"
    assert config["config"]["Cmd"] == ["hello"]  # from [tool.pixibuild.image]
    assert config["config"]["ExposedPorts"] == {"8000/tcp": {}}
    assert config["config"]["Labels"]["org.opencontainers.image.title"] == "webapp"
    assert config["config"]["Labels"]["extra"] == "yes"
    validate = subprocess.run([require_tool("oci-image-tool"), "validate", "--type", "image", str(layout)],
                              capture_output=True, text=True)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    bundle = tmp_path / "bundle"
    res = umoci_unpack(layout, "1", bundle)
    assert res.returncode == 0, res.stderr
    assert (bundle / "rootfs/app/app/main.sh").exists()
    out_text = run_in_rootfs(bundle)
    assert "prefix: /app/.pixi/envs/prod" in out_text

    # same inputs, fresh layer cache → the same tar bytes
    again = tmp_path / "again.tar"
    args2 = [a if a != str(out) else str(again) for a in args]
    args2[args2.index(str(tmp_path / "cache"))] = str(tmp_path / "cache2")
    args2[args2.index(str(layout))] = str(tmp_path / "layout2")
    assert main(args2) == 0
    assert again.read_bytes() == out.read_bytes()


def test_image_command_errors_are_one_line(tmp_path: Path, demo, capsys, store_dir) -> None:
    assert main(["image", str(demo["webapp"]), "-e", "prod", "-p", "linux-64"]) == 2
    assert "nothing to write" in capsys.readouterr().err
    assert main(["image", str(demo["webapp"]), "-e", "nope", "-o", str(tmp_path / "x.tar")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.tar").exists()
    for flags, message in ((["--push", "BAD REF"], "invalid image reference"),
                           (["--base", str(tmp_path / "missing.tar"), "-o", str(tmp_path / "x.tar")], "not found"),
                           (["--label", "novalue", "-o", str(tmp_path / "x.tar")], "--label"),
                           (["--include", "../x", "-o", str(tmp_path / "x.tar")], "relative")):
        assert main(["image", str(demo["webapp"]), "-e", "prod", "-p", "linux-64", *flags]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.tar").exists()


def test_push_second_environment_uploads_only_its_new_package(tmp_path: Path, demo, store_dir) -> None:
    """prod and default share every package but tzdata-demo: the second push sends that layer, the
    environment layer (its entrypoint names the environment: PIXI_ENVIRONMENT_NAME, as `pixi
    shell-hook` writes it) and the config, nothing else (counted by a proxy in front of the real registry)."""
    from oci_helpers import AuthProxy, LocalRegistry

    registry = LocalRegistry(tmp_path / "registry")
    proxy = AuthProxy(registry.host, require_auth=False)
    try:
        common = [str(demo["webapp"]), "-p", "linux-64", "--prefix", "/opt/env", "--cache-dir", str(tmp_path / "c")]
        assert main(["image", *common, "-e", "prod", "--push", f"{proxy.host}/demo/webapp:prod"]) == 0
        first = len(proxy.uploads())
        assert main(["image", *common, "-e", "default", "--push", f"{proxy.host}/demo/webapp:default"]) == 0
        assert len(proxy.uploads()) - first == 3
        prod = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/demo/webapp:prod"))
        default = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/demo/webapp:default"))
        assert len(set(default["Layers"]) - set(prod["Layers"])) == 2
    finally:
        proxy.stop()
        registry.stop()


def test_cross_platform_image_for_aarch64(tmp_path: Path, demo, store_dir) -> None:
    """Nothing runs at build time, so an arm64 image builds on any host (scratch base)."""
    layout = tmp_path / "arm"
    assert main(["image", str(demo["webapp"]), "-e", "prod", "-p", "linux-aarch64", "--oci-dir", str(layout),
                 "--tag", "webapp:arm", "--cache-dir", str(tmp_path / "c")]) == 0
    info = json.loads(skopeo("inspect", f"oci:{layout}:arm"))
    assert (info["Architecture"], info["Os"]) == ("arm64", "linux")
    config = json.loads(skopeo("inspect", "--config", f"oci:{layout}:arm"))
    assert config["variant"] == "v8"
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["platform"] == {"architecture": "arm64", "os": "linux", "variant": "v8"}
