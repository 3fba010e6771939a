"""Pushing to and pulling from the real Debian docker-registry on 127.0.0.1 (through a
request-counting proxy that demands a Bearer token)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest
from oci_helpers import AuthProxy, LocalRegistry, simple_image, skopeo

from pixibuild.errors import InputError
from pixibuild.oci.base import load_base
from pixibuild.oci.layer import LayerCache
from pixibuild.oci.layout import write_image_tar, write_oci_dir
from pixibuild.net.registry import RegistryClient, parse_reference
from pixibuild.oci.push import push_image

FILES = {"zlib": {"lib/libz.so": b"z" * 4000}, "python": {"bin/python": b"#!/bin/sh\necho py\n"}}


@pytest.fixture
def registry(tmp_path: Path):
    reg = LocalRegistry(tmp_path / "registry")
    yield reg
    reg.stop()


@pytest.fixture
def proxy(registry: LocalRegistry):
    p = AuthProxy(registry.host)
    yield p
    p.stop()


def _raw_manifest(host: str, repo: str, tag: str) -> bytes:
    r = httpx.get(f"http://{host}/v2/{repo}/manifests/{tag}",
                  headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                                     "application/vnd.docker.distribution.manifest.v2+json"})
    r.raise_for_status()
    return r.content


def test_our_push_matches_skopeo_copy(tmp_path: Path, registry: LocalRegistry) -> None:
    cache = LayerCache(tmp_path / "oci")
    image = simple_image(cache, FILES)
    tar = write_image_tar(image, tmp_path / "image.tar", tag="demo/app:1")
    skopeo("copy", "--dest-tls-verify=false", f"oci-archive:{tar}", f"docker://{registry.host}/skopeo/app:1")
    digest, stats = push_image(image, f"{registry.host}/ours/app:1")
    assert digest == image.digest
    assert len(stats.uploaded) == len(image.layers) + 1 and not stats.skipped
    by_skopeo = _raw_manifest(registry.host, "skopeo/app", "1")
    assert hashlib.sha256(by_skopeo).hexdigest() == image.digest.split(":")[1]
    assert _raw_manifest(registry.host, "ours/app", "1") == by_skopeo
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/ours/app:1"))
    assert info["Digest"] == image.digest


def test_second_image_uploads_only_new_blobs_with_bearer_auth(tmp_path: Path, proxy: AuthProxy) -> None:
    cache = LayerCache(tmp_path / "oci")
    first = simple_image(cache, FILES)
    second = simple_image(cache, dict(FILES, extra={"share/extra.txt": b"extra"}))
    digest, stats = push_image(first, f"{proxy.host}/team/app:1")
    assert digest == first.digest and proxy.token_requests  # the bearer flow happened
    assert len(proxy.uploads()) == len(first.layers) + 1
    before = len(proxy.uploads())
    digest2, stats2 = push_image(second, f"{proxy.host}/team/app:2")
    assert digest2 == second.digest
    new = {l.digest for l in second.layers} - {l.digest for l in first.layers}
    assert len(new) == 1 and set(stats2.uploaded) == new | {second.config_digest}
    assert len(proxy.uploads()) - before == 2  # the new layer and the new config, nothing else
    # a re-push sends no blob at all
    before = len(proxy.uploads())
    _, stats3 = push_image(second, f"{proxy.host}/team/app:2")
    assert len(proxy.uploads()) == before and not stats3.uploaded
    # a new repository mounts from the old one instead of uploading
    _, stats4 = push_image(second, f"{proxy.host}/team/other:1", mount_from="team/app")
    assert not stats4.uploaded and len(stats4.mounted) == len(second.layers) + 1
    assert any(m == "POST" and "mount=" in p for m, p in proxy.requests)


def test_chunked_upload_and_pull_as_base(tmp_path: Path, proxy: AuthProxy) -> None:
    cache = LayerCache(tmp_path / "oci")
    image = simple_image(cache, FILES)
    with RegistryClient(proxy.host, chunk_size=200_000) as client:
        digest, _ = push_image(image, f"{proxy.host}/chunks/app:1", client=client)
    assert digest == image.digest
    assert any(m == "PATCH" for m, _ in proxy.requests)
    # pull it back as a base image into a fresh cache
    fresh = LayerCache(tmp_path / "fresh")
    base = load_base(f"docker://{proxy.host}/chunks/app:1", "linux-64", fresh)
    assert [l.digest for l in base.layers] == [l.digest for l in image.layers]
    assert all(l.path.read_bytes() == o.path.read_bytes() for l, o in zip(base.layers, image.layers))
    on_top = simple_image(fresh, {"app": {"app.txt": b"hi"}}, base=base)
    assert [l.digest for l in on_top.layers[:3]] == [l.digest for l in image.layers]
    assert json.loads(on_top.config)["rootfs"]["diff_ids"][:3] == json.loads(image.config)["rootfs"]["diff_ids"]


def test_base_from_layout_and_archives(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "oci")
    image = simple_image(cache, FILES)
    layout = write_oci_dir(image, tmp_path / "layout", tag="b:1")
    tar = write_image_tar(image, tmp_path / "image.tar", tag="b:1")
    skopeo("copy", f"oci:{layout}:1", f"docker-archive:{tmp_path / 'docker.tar'}:b:1")
    expected = json.loads(image.config)["rootfs"]["diff_ids"]
    for ref in (f"oci:{layout}:1", str(layout), f"oci-archive:{tar}", str(tar),
                f"docker-archive:{tmp_path / 'docker.tar'}", str(tmp_path / "docker.tar")):
        base = load_base(ref, "linux-64", LayerCache(tmp_path / "c" / str(abs(hash(ref)))))
        assert json.loads(image.config)["rootfs"] == base.config["rootfs"], ref
        assert [l.diff_id for l in base.layers] == expected
        rebuilt = simple_image(LayerCache(tmp_path / "c2"), {"x": {"x": b"x"}}, base=base)
        sub = tmp_path / "u" / str(abs(hash(ref)))
        write_oci_dir(rebuilt, sub, tag="r:1")
        from oci_helpers import umoci_unpack
        assert umoci_unpack(sub, "1", tmp_path / "bundle" / str(abs(hash(ref)))).returncode == 0


def test_bad_references(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "oci")
    with pytest.raises(InputError):
        parse_reference("UPPER/case")
    with pytest.raises(InputError, match="not found"):
        load_base("./missing.tar", "linux-64", cache)
    with pytest.raises(InputError, match="no image tagged"):
        image = simple_image(cache, FILES)
        load_base(f"oci:{write_oci_dir(image, tmp_path / 'l', tag='x:1')}:2", "linux-64", cache)
    assert parse_reference("python:3.12") .repository == "library/python"
    assert parse_reference("127.0.0.1:5000/a/b@sha256:" + "0" * 64).digest == "sha256:" + "0" * 64


def test_pull_docker_v2s2_base_converts_media_types(tmp_path: Path, registry: LocalRegistry) -> None:
    """A base pushed in Docker's manifest format (as Docker Hub serves many) is usable under our OCI manifest."""
    cache = LayerCache(tmp_path / "oci")
    image = simple_image(cache, FILES)
    layout = write_oci_dir(image, tmp_path / "layout", tag="b:1")
    skopeo("copy", "--format", "v2s2", "--dest-tls-verify=false", f"oci:{layout}:1",
           f"docker://{registry.host}/docker/base:1")
    raw = json.loads(_raw_manifest(registry.host, "docker/base", "1"))
    assert raw["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    base = load_base(f"{registry.host}/docker/base:1", "linux-64", LayerCache(tmp_path / "fresh"))
    assert {l.media_type for l in base.layers} == {"application/vnd.oci.image.layer.v1.tar+gzip"}
    on_top = simple_image(LayerCache(tmp_path / "fresh"), {"x": {"x": b"x"}}, base=base)
    out = write_oci_dir(on_top, tmp_path / "on-top", tag="t:1")
    from oci_helpers import umoci_unpack
    assert umoci_unpack(out, "1", tmp_path / "bundle").returncode == 0
