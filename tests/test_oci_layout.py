"""Outputs accepted by the real tools: skopeo (oci:, oci-archive:, docker-archive:), umoci
(checks diff_ids), oci-image-tool validate; and same inputs → same bytes."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from conftest import require_tool
from oci_helpers import simple_image, skopeo, umoci_unpack

from pixibuild.oci.layer import LayerCache
from pixibuild.oci.layout import write_image_tar, write_oci_dir

FILES = {"hello": {"bin/hello": b"#!/bin/sh\necho hello from layer\n"},
         "data": {"share/data/x.txt": b"x" * 5000, "conda-meta/data-1-0.json": b"{}"}}


def test_layout_dir_and_tar_accepted_by_skopeo_umoci_oci_image_tool(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "oci")
    image = simple_image(cache, FILES, labels={"org.opencontainers.image.title": "demo"},
                         exposed_ports=["8080"], entrypoint=["/bin/sh", "-c"], cmd=["echo hi"])
    layout = write_oci_dir(image, tmp_path / "layout", tag="demo/app:1.0")
    tar = write_image_tar(image, tmp_path / "image.tar", tag="demo/app:1.0")

    out = subprocess.run([require_tool("oci-image-tool"), "validate", "--type", "image", "--ref", "name=1.0",
                          str(layout)], capture_output=True, text=True)
    assert out.returncode == 0 and "Validation succeeded" in out.stdout + out.stderr, out.stdout + out.stderr

    for ref in (f"oci:{layout}:1.0", f"oci-archive:{tar}", f"docker-archive:{tar}"):
        info = json.loads(skopeo("inspect", ref))
        assert info["Architecture"] == "amd64" and info["Os"] == "linux"
        assert len(info["Layers"]) == 3
    raw = skopeo("inspect", "--raw", f"oci:{layout}:1.0").encode()
    assert hashlib.sha256(raw).hexdigest() == image.digest.split(":")[1]
    config = json.loads(skopeo("inspect", "--config", f"oci-archive:{tar}"))
    assert config["config"]["ExposedPorts"] == {"8080/tcp": {}}
    assert config["config"]["Labels"]["org.opencontainers.image.title"] == "demo"
    assert config["config"]["Entrypoint"] == ["/bin/sh", "-c"] and config["config"]["Cmd"] == ["echo hi"]
    assert len(config["history"]) == len(config["rootfs"]["diff_ids"]) == 3

    bundle = tmp_path / "bundle"
    res = umoci_unpack(layout, "1.0", bundle)
    assert res.returncode == 0, res.stderr
    rootfs = bundle / "rootfs"
    assert (rootfs / "app/.pixi/envs/prod/bin/hello").read_bytes() == FILES["hello"]["bin/hello"]
    assert (rootfs / "bin/busybox").exists()
    runtime = json.loads((bundle / "config.json").read_text())
    assert runtime["process"]["args"] == ["/bin/sh", "-c", "echo hi"]
    assert runtime["process"]["cwd"] == "/app"
    assert "PATH=/app/.pixi/envs/prod/bin:/bin" in runtime["process"]["env"]


def test_umoci_rejects_a_wrong_diff_id(tmp_path: Path) -> None:
    """The check above is meaningful: umoci fails when a diff_id does not match the layer."""
    cache = LayerCache(tmp_path / "oci")
    image = simple_image(cache, FILES)
    config = json.loads(image.config)
    config["rootfs"]["diff_ids"][-1] = "sha256:" + "0" * 64
    from pixibuild.files.digest import canonical_json
    from pixibuild.oci.config import image_manifest
    from pixibuild.oci.layout import Image
    cfg = canonical_json(config)
    bad = Image(canonical_json(image_manifest(cfg, [l.descriptor() for l in image.layers])), cfg, image.layers,
                image.platform)
    layout = write_oci_dir(bad, tmp_path / "layout", tag="x:1")
    assert umoci_unpack(layout, "1", tmp_path / "bundle").returncode != 0


def test_same_inputs_same_bytes_cold_and_warm(tmp_path: Path) -> None:
    cold = LayerCache(tmp_path / "c1")
    a = simple_image(cold, FILES)
    warm = simple_image(cold, FILES)  # all layers from cache
    other = simple_image(LayerCache(tmp_path / "c2"), FILES)  # a second cold cache
    assert cold.hits >= 3
    assert a.manifest == warm.manifest == other.manifest
    t1 = write_image_tar(a, tmp_path / "1.tar", tag="x:1")
    t2 = write_image_tar(other, tmp_path / "2.tar", tag="x:1")
    assert t1.read_bytes() == t2.read_bytes()


def test_changing_one_package_changes_only_its_layer(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "oci")
    a = simple_image(cache, FILES)
    changed = dict(FILES, hello={"bin/hello": b"#!/bin/sh\necho v2\n"})
    b = simple_image(cache, changed)
    la, lb = [l.digest for l in a.layers], [l.digest for l in b.layers]
    assert [x == y for x, y in zip(la, lb)] == [True, False, True]
    assert a.config_digest != b.config_digest and a.digest != b.digest


def test_an_oci_dir_shares_no_inode_with_the_layer_cache(tmp_path: Path) -> None:
    """The layout is the user's: a tool that rewrites one of its blobs in place (or a user's edit) must
    not change the layer cache, whose next image would otherwise carry the wrong bytes."""
    cache = LayerCache(tmp_path / "cache")
    image = simple_image(cache, FILES)
    out = write_oci_dir(image, tmp_path / "layout", tag="x:1")
    layers = [out / "blobs" / "sha256" / layer.digest.split(":", 1)[1] for layer in image.layers]
    assert layers
    for layer, path in zip(image.layers, layers):
        assert path.read_bytes() == layer.path.read_bytes()
        assert not path.samefile(layer.path)
        path.chmod(0o644)
        path.write_bytes(b"rewritten in place")
    again = simple_image(cache, FILES)
    assert again.manifest == image.manifest
    assert all(hashlib.sha256(layer.path.read_bytes()).hexdigest() == layer.digest.split(":", 1)[1]
               for layer in again.layers)
