"""The remote cache from the one-shot commands and at the edges: `fetch`/`pack`/`image` with the channel
down, an image pushed to the cache's own registry (its cached layers mounted, never downloaded), TLS with
`--ca-bundle`, a disk that fills up mid-download, and a PyPI source's built wheel shared between machines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import require_tool
from oci_helpers import AuthProxy, LocalRegistry
from pixibuild.demo.demo import use_channel_url, write_demo
from remote_helpers import Machine
from support.http_server import TestServer


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    reg = LocalRegistry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def warm(registry, tmp_path_factory: pytest.TempPathFactory):
    """The demo (channel over HTTP) built by machine A into the cache; the channel server is then stopped:
    everything below works without it."""
    root = tmp_path_factory.mktemp("cli") / "ws"
    write_demo(root)
    server = TestServer(root / "channel").start()
    use_channel_url(root, server.url)
    a = Machine(tmp_path_factory.mktemp("a"), root)
    run = a.build("--remote-cache", f"oci://{registry.host}/org/cache", "pack", "image")
    server.stop()
    assert run.returncode == 0, run.stderr
    return root, a


def pixibuild(machine: Machine, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pixibuild", *args], capture_output=True, text=True,
                          env=machine.env(**env))


def test_fetch_and_pack_take_packages_from_the_cache(warm, registry, tmp_path: Path) -> None:
    root, a = warm
    m = Machine(tmp_path / "m", root)
    url = f"oci://{registry.host}/org/cache"
    res = pixibuild(m, "fetch", str(root / "worker"), "--remote-cache", url)
    assert res.returncode == 0, res.stderr
    assert "0 downloaded, 0 already there, 0 local, 3 from the remote cache" in res.stdout
    out = tmp_path / "env.tar"
    res = pixibuild(m, "pack", str(root / "webapp"), "-e", "prod", "-p", "linux-aarch64", "-o", str(out),
                    PIXIBUILD_REMOTE_CACHE=url)
    assert res.returncode == 0, res.stderr
    assert out.read_bytes() == (a.build_dir / "webapp" / "prod" / "linux-aarch64" / "environment.tar").read_bytes()
    m.store_is_sound()


def test_image_pushed_to_the_caches_registry_mounts_cached_layers(warm, registry, tmp_path: Path) -> None:
    """No layer is compressed, none downloaded, none uploaded: the registry mounts them from the cache
    repository. The pushed image is the one machine A's doit build wrote."""
    root, a = warm
    proxy = AuthProxy(registry.host, require_auth=False)
    m = Machine(tmp_path / "m", root)
    try:
        res = pixibuild(m, "image", str(root / "webapp"), "-e", "prod", "-p", "linux-64", "--push",
                        f"{proxy.host}/org/webapp:prod", "--remote-cache", f"oci://{proxy.host}/org/cache")
    finally:
        proxy.stop()
    assert res.returncode == 0, res.stderr
    digest, rest = res.stdout.split("  ", 1)
    assert "0 built" in rest and "from the remote cache" in rest
    with tarfile.open(a.build_dir / "webapp" / "prod" / "linux-64" / "image.tar") as tar:
        index = json.loads(tar.extractfile("index.json").read())
    assert digest == index["manifests"][0]["digest"]
    # no layer of ours here: only the local base image's (the demo's busybox layout) was copied in
    base_blobs = {p.name for p in (root / "base" / "blobs" / "sha256").iterdir()}
    here = m.store / "oci" / "blobs" / "sha256"
    assert {p.name for p in here.rglob("*") if p.is_file()} <= base_blobs if here.is_dir() else True
    mounts = [p for method, p in proxy.requests if method == "POST" and "mount=" in p]
    assert mounts, proxy.requests
    layer_gets = [p for method, p in proxy.requests if method == "GET" and "/org/cache/blobs/" in p]
    assert all("kept" not in p for p in layer_gets)
    assert len([p for method, p in proxy.uploads()]) <= 2  # the image config, and the local base image's layer (in no repository)
    skopeo = require_tool("skopeo")
    inspected = subprocess.run([skopeo, "inspect", "--tls-verify=false", f"docker://{registry.host}/org/webapp:prod"],
                               capture_output=True, text=True)
    assert inspected.returncode == 0 and json.loads(inspected.stdout)["Digest"] == digest, inspected.stderr


def test_tls_registry_with_the_ca_bundle(warm, tmp_path: Path) -> None:
    """A cache behind TLS: trusted with --ca-bundle; without it, one warning naming the certificate problem
    and the build goes on locally (here it cannot: the channel is down, so the pack fails, in one line)."""
    require_tool("openssl")
    from support.tls import make_ca

    root, a = warm
    ca = make_ca(tmp_path / "ca")
    reg = LocalRegistry(tmp_path / "tls-registry", tls=ca)
    try:
        url = f"https://{reg.host}/org/cache"
        filler = Machine(tmp_path / "filler", root)
        filler.store = a.store  # A's packages are in its store: the channel is not needed to fill this cache
        fill = filler.build("--remote-cache", url, "--ca-bundle", str(ca.ca), "pack:worker:default:linux-64")
        assert fill.returncode == 0 and fill.summary["remote_stats"]["uploads"] > 0, fill.stderr
        m = Machine(tmp_path / "m", root)
        ok = m.build("--remote-cache", url, "--ca-bundle", str(ca.ca), "pack:worker:default:linux-64")
        assert ok.returncode == 0 and ok.summary["remote"] == 1, ok.stderr
        untrusted = Machine(tmp_path / "u", root).build("--remote-cache", url, "pack:worker:default:linux-64")
    finally:
        reg.stop()
    assert untrusted.returncode != 0
    [warning] = untrusted.warnings("building locally without it")
    assert "certificate verification failed" in warning and "--ca-bundle" in warning


DISK_FULL = """
import resource, signal, sys
from pathlib import Path
from pixibuild.store.blobs import Store
from pixibuild.store.remote import RemoteCache
from pixibuild.store.remote_settings import parse_remote
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # files stop growing at 1 MiB: a full disk
cache = RemoteCache(parse_remote(sys.argv[1]))
store = Store(sys.argv[2])
print("pulled" if cache.pull_blob(store, sys.argv[3], size=int(sys.argv[4])) else "missed")
print("second", cache.pull_blob(store, sys.argv[3]))
"""


def test_a_full_disk_mid_download_leaves_no_partial_blob(registry, tmp_path: Path) -> None:
    """Pulling a 3 MB blob onto a disk that fills up after 1 MB: one warning naming the registry and the
    error, the cache is off for the rest of the run, and the store holds no partial file."""
    import hashlib

    from pixibuild.store.remote import RemoteCache
    from pixibuild.store.remote_settings import parse_remote

    data = os.urandom(3 << 20)
    sha256 = hashlib.sha256(data).hexdigest()
    blob = tmp_path / "big"
    blob.write_bytes(data)
    url = f"oci://{registry.host}/org/diskfull"
    RemoteCache(parse_remote(url)).push_blob(blob, sha256, label="big")
    store = tmp_path / "store"
    res = subprocess.run([sys.executable, "-c", DISK_FULL, url, str(store), sha256, str(len(data))],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["missed", "second", "None"]
    warnings = [line for line in res.stderr.splitlines() if "remote cache" in line]
    assert len(warnings) == 1 and registry.host in warnings[0] and "cannot write" in warnings[0], res.stderr
    assert [p for p in store.rglob("*") if p.is_file() and "locks" not in p.parts] == []


def test_a_built_wheel_comes_from_the_cache(registry, tmp_path: Path) -> None:
    """A project whose lock has `- pypi: ./`: machine A builds its wheel (PEP 517, flit-core from the
    locked `build` environment) and shares it; machine B installs the same wheel without preparing a
    build environment or running a build."""
    from pixibuild.conda.platforms import current_subdir
    from support.pyproj import conda_channel, conda_from_wheel, download_backends, pypi_source, write_project_lock, \
        write_source

    host = current_subdir()
    backends = download_backends(tmp_path / "backends")
    flit = next(backends.glob("flit_core-*.whl"))
    records = conda_channel(tmp_path / "channel", extra=[conda_from_wheel(flit, "flit-core")])
    project = write_source(tmp_path / "proj", "shared-project")
    with open(project / "pyproject.toml", "a") as f:
        f.write(f'\n[tool.pixi.workspace]\nchannels = ["{(tmp_path / "channel").resolve().as_uri()}"]\n'
                f'platforms = ["{host}"]\n\n[tool.pixi.dependencies]\npython = "*"\n\n[tool.pixi.pypi-dependencies]\n'
                'shared-project = { path = ".", editable = true }\n\n[tool.pixi.feature.build.dependencies]\n'
                'flit-core = "*"\n\n[tool.pixi.environments]\ndefault = { features = ["build"], solve-group = "d" }\n'
                'prod = { features = [], solve-group = "d" }\n\n[tool.pixibuild]\noutputs = ["pack", "unpack"]\n'
                'environments = ["prod"]\n')
    python, flit_core = records[host]["python"], records["noarch"]["flit-core"]
    src = pypi_source("shared-project", "./", editable=True)
    write_project_lock(project, {"default": {host: [python, flit_core, src]}, "prod": {host: [python, src]}},
                       channel=tmp_path / "channel", indexes=["http://127.0.0.1:9/simple"])
    url = f"oci://{registry.host}/org/wheels"
    a, b = Machine(tmp_path / "a", project), Machine(tmp_path / "b", project)
    cold = a.build("--remote-cache", url)
    assert cold.returncode == 0, cold.stderr
    assert cold.summary["built_by_kind"].get("wheel") == 1 and cold.summary["built_by_kind"].get("buildenv") == 1
    warm = b.build("--remote-cache", url)
    assert warm.returncode == 0, warm.stderr
    assert warm.kind("buildenv") == [] and warm.kind("wheel") == [], warm.stdout
    assert [o for n, o in warm.summary["outcomes"].items() if n.startswith("wheel:")] == ["remote"]
    assert b.outputs() == a.outputs()
    site = b.build_dir / "prod" / host / "env" / "lib"
    assert list(site.glob("python*/site-packages/shared_project/__init__.py"))
