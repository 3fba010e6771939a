"""The shared remote cache on the real Debian docker-registry: "machines" are empty stores and build dirs
on this host sharing one workspace (the demo monorepo, its channel served over HTTP) and one registry.

Machine A builds everything cold into the cache; the others find it there: byte-identical outputs, no
channel request, no layer compressed. Faults in the registry (down, 5xx, 401/403, stalled, poisoned
entries) never fail a build nor change its bytes; read-only mode never writes; two runners filling the
cache at once both succeed; three shards fill it and a fourth runner then builds nothing.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import pytest

from oci_helpers import AuthProxy, LocalRegistry, free_port
from pixibuild.demo.demo import use_channel_url, write_demo
from pixibuild.demo.synthetic import bump_package
from remote_helpers import Machine
from support.http_server import TestServer

TARGETS = ("pack", "image")
"""What the demo's machines build: every pack and image, two platforms (unpack is tried once)."""


class Channel:
    """The demo's conda channel over HTTP; `stopped()` takes it down (same URL when it comes back)."""

    def __init__(self, root: Path):
        self.root = root
        self.server = TestServer(root).start()
        self.port = self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()

    def restart(self) -> None:
        self.server = TestServer(self.root, port=self.port).start()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    reg = LocalRegistry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    """The demo monorepo whose locks name an HTTP channel."""
    root = tmp_path_factory.mktemp("remote") / "ws"
    write_demo(root)
    channel = Channel(root / "channel")
    use_channel_url(root, channel.url)
    yield root, channel
    channel.server.stop()


def _targets(machine: Machine) -> set[tuple[str, str]]:
    """(kind, project:env:platform) of every archive a machine built."""
    out = set()
    for path in machine.outputs():
        *target, name = path.split("/")  # project/env/platform/<file>, or project/env/image.tar (an index)
        out.add(("pack" if name == "environment.tar" else "image", ":".join(target)))
    return out


def cache_url(registry: LocalRegistry, repository: str = "org/cache") -> str:
    return f"oci://{registry.host}/{repository}"


@pytest.fixture(scope="module")
def warm(demo, registry, tmp_path_factory: pytest.TempPathFactory):
    """Machine A after its cold build of every target into the cache (read-write)."""
    root, _channel = demo
    a = Machine(tmp_path_factory.mktemp("machine-a"), root)
    run = a.build("--remote-cache", cache_url(registry))
    assert run.returncode == 0, run.stderr
    return a, run


def test_machine_a_builds_and_fills_the_cache(warm) -> None:
    a, run = warm
    assert run.summary["remote_stats"]["uploads"] > 0 and run.summary["remote_stats"]["uploaded"] > 0
    assert run.summary["layers_compressed"] > 0
    assert run.summary["built_by_kind"]["pack"] == 5 and run.summary["built_by_kind"]["image"] == 6  # 4 + 2 indexes
    assert "remote cache oci://" in run.stderr.splitlines()[-1]  # the one summary line ends the run


def test_machine_b_builds_the_same_bytes_with_the_channel_stopped(demo, warm, registry, tmp_path: Path) -> None:
    """Zero channel requests (the server is down), zero layers compressed, every output the same bytes;
    the packs and images come whole from the cache, so B never needs their packages — only the
    unpacked environments do, and those come from the cache by sha256."""
    root, channel = demo
    a, _ = warm
    b = Machine(tmp_path / "b", root)
    channel.stop()
    try:
        run = b.build("--remote-cache", cache_url(registry))
    finally:
        channel.restart()
    assert run.returncode == 0, run.stderr
    assert run.summary["layers_compressed"] == 0
    # only the unpacked environments are built here (an install into this machine's build dir is not shared)
    assert run.summary["built_by_kind"] == {"unpack": 2}
    assert {n for n, o in run.summary["outcomes"].items() if o == "remote" and not n.startswith("fetch:")} == {
        f"{k}:{t}" for k, t in _targets(a)}
    assert b.outputs() == a.outputs() and len(a.outputs()) == 11  # 5 packs, 4 images, 2 indexes
    assert run.kind("layer") == [] and run.kind("index") == []
    unpack_packages = b.package_blobs()  # only what the two unpacked linux-64 environments install
    assert 0 < len(unpack_packages) < len(a.package_blobs())
    assert (b.build_dir / "webapp" / "prod" / "linux-64" / "env" / "conda-meta").is_dir()
    b.store_is_sound()


def test_verbose_lists_where_each_node_came_from(demo, warm, registry, tmp_path: Path) -> None:
    import subprocess
    import sys

    root, _ = demo
    res = subprocess.run([sys.executable, "-m", "pixibuild", "-v", "build", "-C", str(root),
                          "--remote-cache", cache_url(registry), "pack:worker:default:linux-64"],
                         capture_output=True, text=True, env=Machine(tmp_path / "d", root).env())
    assert res.returncode == 0, res.stderr
    assert "pixibuild:   pack:worker:default:linux-64: remote" in res.stderr
    assert "pixibuild:   lock:worker: checked" in res.stderr


def test_one_bumped_package_rebuilds_only_its_nodes(demo, warm, registry, tmp_path: Path) -> None:
    """A package bumped in one lock: machine A (its store warm) builds exactly that package's nodes and
    the index/pack/image/layers that hold it, and uploads them; machine B then downloads exactly those."""
    root, channel = demo
    a, _ = warm
    ws = tmp_path / "ws"
    shutil.copytree(root, ws, symlinks=True, ignore=shutil.ignore_patterns("channel"))
    a2 = Machine(tmp_path / "a2", ws)
    a2.store = a.store  # the same machine: its store, another checkout (build dir) of the workspace
    b2 = Machine(tmp_path / "b2", ws)
    url = cache_url(registry)
    for machine in (a2, b2):
        first = machine.build("--remote-cache", url, *TARGETS)
        assert first.returncode == 0 and first.summary["built"] == 0, first.stderr

    record = bump_package(ws / "webapp", "greeter", channel=root / "channel", tag="bump")
    rid = record.sha256[:16]
    run = a2.build("--remote-cache", url, *TARGETS)
    assert run.returncode == 0, run.stderr
    built = {n for n, o in run.summary["outcomes"].items() if o == "built"}
    targets = [f"webapp:{env}:{platform}" for env in ("default", "prod") for platform in ("linux-64", "linux-aarch64")]
    indexes = {"image:webapp:default", "image:webapp:prod"}  # the multi-platform images over them
    expected = {f"fetch:{rid}", *(f"{k}:{t}" for k in ("index", "pack", "image") for t in targets), *indexes}
    layers = {n for n in built if n.startswith("layer:")}
    assert built - layers == expected
    # the layer holding greeter, per environment prefix (a noarch package's layer is one blob for both platforms)
    assert len(layers) == 2
    assert run.summary["layers_compressed"] == 2
    assert run.summary["remote_stats"]["uploads"] == len(built)  # every result, and the new package's blob
    # the other packages' fetch nodes (the images read them) only found them in the store
    assert {o for n, o in run.summary["outcomes"].items() if n.startswith("fetch:") and n != f"fetch:{rid}"} == {"local"}

    after = b2.build("--remote-cache", url, *TARGETS)
    assert after.returncode == 0, after.stderr
    assert {n for n, o in after.summary["outcomes"].items() if o == "remote"} == {
        *(f"{k}:{t}" for k in ("pack", "image") for t in targets), *indexes}
    assert after.summary["built"] == 0 and after.summary["layers_compressed"] == 0
    assert after.kind("fetch") == []
    assert b2.outputs() == a2.outputs()


def test_read_only_never_writes(demo, registry, tmp_path: Path) -> None:
    """A pull-request build (`read`) looks things up but sends no PUT, POST or PATCH, and builds locally."""
    root, _ = demo
    proxy = AuthProxy(registry.host, require_auth=False)
    try:
        m = Machine(tmp_path / "ro", root)
        run = m.build("--remote-cache", f"oci://{proxy.host}/org/readonly", "--remote-cache-mode", "read",
                      "pack:worker:default:linux-64", "image:webapp:prod:linux-64")
    finally:
        proxy.stop()
    assert run.returncode == 0, run.stderr
    assert proxy.writes() == []
    assert any(m == "GET" and "/manifests/" in p for m, p in proxy.requests)  # it did look
    assert run.summary["built_by_kind"]["pack"] == 1 and run.summary["remote"] == 0
    assert "(read)" in run.stderr


def _tags(registry: LocalRegistry, repository: str) -> list[str]:
    with urllib.request.urlopen(f"http://{registry.host}/v2/{repository}/tags/list") as r:
        return json.loads(r.read())["tags"] or []


def _manifest(registry: LocalRegistry, repository: str, tag: str) -> bytes:
    request = urllib.request.Request(f"http://{registry.host}/v2/{repository}/manifests/{tag}",
                                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(request) as r:
        return r.read()


def test_a_poisoned_entry_is_detected_reported_and_not_used(demo, warm, registry, tmp_path: Path) -> None:
    """The registry's copy of a pack changed under it (its storage tampered with), and another entry moved
    under an index's tag: both are reported naming the registry and the entry, ignored, and built locally —
    the output is still A's bytes."""
    root, _ = demo
    a, _ = warm
    url = cache_url(registry, "org/poison")
    target = ("pack:worker:default:linux-64",)
    filler = Machine(tmp_path / "filler", root)
    filled = filler.build("--remote-cache", url, *target)
    assert filled.returncode == 0, filled.stderr
    tags = _tags(registry, "org/poison")
    [pack_tag] = [t for t in tags if t.startswith("pack-")]
    [index_tag] = [t for t in tags if t.startswith("index-")]
    [layer] = json.loads(_manifest(registry, "org/poison", pack_tag))["layers"]
    data = registry.root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" / layer["digest"][7:9] / \
        layer["digest"][7:] / "data"
    original = data.read_bytes()
    other = _manifest(registry, "org/poison", pack_tag)  # the pack's entry, put under the index's tag
    request = urllib.request.Request(f"http://{registry.host}/v2/org/poison/manifests/{index_tag}", data=other,
                                     method="PUT", headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    urllib.request.urlopen(request).close()
    m = Machine(tmp_path / "victim", root)
    # the registry keeps one copy of a blob for all its repositories: put the bytes back for the other tests
    data.write_bytes(bytes(b ^ 0x55 for b in original[:4096]) + original[4096:])  # same size, other bytes
    try:
        run = m.build("--remote-cache", url, "--remote-cache-mode", "read", *target)
    finally:
        data.write_bytes(original)
    assert run.returncode == 0, run.stderr
    poisoned = run.warnings("ignored, building it locally")
    assert len(poisoned) == 2, run.stderr
    assert any(pack_tag in w and "other bytes" in w and registry.host in w for w in poisoned)
    assert any(index_tag in w and "points at the entry of pack-" in w for w in poisoned)
    assert run.summary["remote_stats"]["poisoned"] == 2
    assert run.summary["built_by_kind"]["pack"] == 1
    assert m.outputs()["worker/default/linux-64/environment.tar"] == a.outputs()["worker/default/linux-64/environment.tar"]
    m.store_is_sound()
    assert not list((m.build_dir / "worker").rglob("*.remote.*"))  # no partial download left beside the output


FAULT_TARGETS = ("pack:worker:default:linux-64", "image:webapp:prod:linux-64")


@pytest.mark.parametrize("fault", ["down", "503", "401", "403", "stalled"])
def test_registry_faults_never_fail_the_build(fault: str, demo, warm, registry, tmp_path: Path) -> None:
    """Registry down, 5xx after the retries, 401 (no credentials the token server accepts), 403, a read
    that stalls: one warning naming the registry and the error, the build continues locally and gives
    A's bytes, and the store holds no partial blob."""
    root, _ = demo
    a, _ = warm
    proxy = None
    env = {"PIXIBUILD_REMOTE_CACHE_TIMEOUT": "1"}
    if fault == "down":
        host = f"127.0.0.1:{free_port()}"
    else:
        if fault == "401":
            proxy = AuthProxy(registry.host, require_auth=True, token_credentials=("ci", "secret"))
        else:
            proxy = AuthProxy(registry.host, require_auth=False)
            if fault == "stalled":
                proxy.server.block_on_close = False
                proxy.add_fault("stall", "GET", "/manifests/", times=100, delay=4)
            else:
                proxy.add_fault("status", "GET", "/manifests/", times=100, status=int(fault))
        host = proxy.host
    m = Machine(tmp_path / "m", root)
    try:
        run = m.build("--remote-cache", f"oci://{host}/org/cache", *FAULT_TARGETS, **env)
    finally:
        if proxy is not None:
            proxy.stop()
    assert run.returncode == 0, run.stderr
    warnings = run.warnings("building locally without it")
    assert len(warnings) == 1, run.stderr
    assert host in warnings[0]
    expected = {"down": "refused", "503": "503", "401": "401", "403": "403", "stalled": "Timeout"}[fault]
    assert expected in warnings[0], warnings[0]
    assert run.summary["remote"] == 0 and run.summary["built_by_kind"]["pack"] == 1
    outputs = m.outputs()
    assert outputs == {k: v for k, v in a.outputs().items() if k in outputs} and len(outputs) == 2
    m.store_is_sound()


def test_credentials_from_the_environment_open_a_protected_cache(demo, warm, registry, tmp_path: Path) -> None:
    root, _ = demo
    proxy = AuthProxy(registry.host, require_auth=True, token_credentials=("ci", "secret"))
    try:
        m = Machine(tmp_path / "m", root)
        run = m.build("--remote-cache", f"oci://{proxy.host}/org/cache", "pack:worker:default:linux-64",
                      PIXIBUILD_REGISTRY_USERNAME="ci", PIXIBUILD_REGISTRY_PASSWORD="secret")
    finally:
        proxy.stop()
    assert run.returncode == 0, run.stderr
    assert run.summary["remote"] == 1 and run.summary["built"] == 0
    assert "secret" not in run.stderr + run.stdout


def test_two_runners_fill_the_same_cache_at_once(demo, registry, tmp_path: Path) -> None:
    """Two cold builds against one empty repository at the same time: both succeed with the same bytes;
    a third runner then builds nothing."""
    root, _ = demo
    url = cache_url(registry, "org/race")
    one, two = Machine(tmp_path / "one", root), Machine(tmp_path / "two", root)
    procs = [m.start("--remote-cache", url, *TARGETS) for m in (one, two)]
    runs = [m.finish(p) for m, p in zip((one, two), procs)]
    for run in runs:
        assert run.returncode == 0, run.stderr
        assert not [w for w in run.warnings("remote cache") if "cannot" in w or "without it" in w or "ignored" in w], \
            run.stderr
    assert one.outputs() == two.outputs()
    third = Machine(tmp_path / "three", root)
    run = third.build("--remote-cache", url, *TARGETS)
    assert run.returncode == 0 and run.summary["built"] == 0 and run.summary["layers_compressed"] == 0, run.stderr
    assert third.outputs() == one.outputs()


def test_three_shards_then_a_fourth_runner_builds_nothing(demo, warm, registry, tmp_path: Path) -> None:
    """`--shard K/3` on three empty stores: each target is built by exactly one shard, their union is one
    full build byte for byte; an unsharded run on a fourth store then only downloads results."""
    root, _ = demo
    a, _ = warm
    url = cache_url(registry, "org/shards")
    shards = [Machine(tmp_path / f"shard{k}", root) for k in (1, 2, 3)]
    union: dict[str, bytes] = {}
    for k, machine in enumerate(shards, 1):
        run = machine.build("--remote-cache", url, "--shard", f"{k}/3")
        assert run.returncode == 0, run.stderr
        outputs = machine.outputs()
        assert outputs, f"shard {k}/3 built nothing"
        assert not set(outputs) & set(union), "a target was built by two shards"
        union.update(outputs)
    assert union == a.outputs()
    fourth = Machine(tmp_path / "fourth", root)
    run = fourth.build("--remote-cache", url, *TARGETS)
    assert run.returncode == 0, run.stderr
    assert run.summary["built"] == 0 and run.summary["layers_compressed"] == 0
    assert run.summary["remote"] == 11  # 5 packs, 4 images, 2 indexes
    assert fourth.outputs() == a.outputs()


def test_doit_and_the_manifest_name_the_cache(demo, warm, registry, tmp_path: Path) -> None:
    """`[tool.pixibuild.cache]` in the workspace root's pixi.toml (a monorepo root need not be a project),
    and doit's own command line (`doit remote_cache=none`, `doit remote_cache_mode=readwrite`) work as the
    flags do: doit's variables win over the manifest."""
    import subprocess
    import sys

    root, _ = demo
    ws = tmp_path / "ws"
    shutil.copytree(root, ws, symlinks=True, ignore=shutil.ignore_patterns("channel"))
    (ws / "pixi.toml").write_text(f'[tool.pixibuild.cache]\nremote = "{cache_url(registry)}"\nmode = "read"\n')
    (ws / "dodo.py").write_text("from pixibuild.rules import workspace_tasks\nglobals().update(workspace_tasks(__file__))\n")
    m = Machine(tmp_path / "m", ws)
    res = subprocess.run([sys.executable, "-m", "doit", "-f", str(ws / "dodo.py"), "-d", str(ws),
                          "pack:worker:default:linux-64"], capture_output=True, text=True, env=m.env())
    assert res.returncode == 0, res.stderr
    assert f"remote cache {cache_url(registry)} (read)" in res.stderr
    assert "1 remote hits" in res.stderr
    (m.build_dir / "worker").rename(tmp_path / "old")
    res = subprocess.run([sys.executable, "-m", "doit", "-f", str(ws / "dodo.py"), "-d", str(ws),
                          "pack:worker:default:linux-64", "remote_cache=none"], capture_output=True, text=True, env=m.env())
    assert res.returncode == 0, res.stderr
    assert "no remote cache" in res.stderr
    (m.build_dir / "worker").rename(tmp_path / "older")
    res = subprocess.run([sys.executable, "-m", "doit", "-f", str(ws / "dodo.py"), "-d", str(ws),
                          "pack:worker:default:linux-64", "remote_cache_mode=readwrite"], capture_output=True, text=True,
                         env=m.env())
    assert res.returncode == 0, res.stderr
    assert f"remote cache {cache_url(registry)} (readwrite)" in res.stderr


def test_conflicting_caches_in_one_workspace_are_refused(demo, tmp_path: Path) -> None:
    import subprocess
    import sys

    root, _ = demo
    ws = tmp_path / "ws"
    shutil.copytree(root, ws, symlinks=True, ignore=shutil.ignore_patterns("channel"))
    for project, repo in (("webapp", "one"), ("worker", "two")):
        manifest = ws / project / ("pixi.toml" if project == "webapp" else "pyproject.toml")
        manifest.write_text(manifest.read_text() + f'\n[tool.pixibuild.cache]\nremote = "oci://localhost:5000/{repo}"\n')
    res = subprocess.run([sys.executable, "-m", "pixibuild", "build", "-C", str(ws), "--list"], capture_output=True,
                         text=True, env=Machine(tmp_path / "m", ws).env())
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "one remote cache per workspace" in res.stderr
    shutil.rmtree(ws)
    shutil.copytree(root, ws, symlinks=True, ignore=shutil.ignore_patterns("channel"))
    res = subprocess.run([sys.executable, "-m", "pixibuild", "build", "-C", str(ws), "--list", "--remote-cache",
                          "ftp://host/x"], capture_output=True, text=True, env=Machine(tmp_path / "m", ws).env())
    assert res.returncode == 2 and "--remote-cache" in res.stderr and res.stderr.count("\n") == 1


def test_plan_says_what_the_remote_cache_would_serve(demo, warm, registry, tmp_path: Path) -> None:
    """`pixibuild plan --remote-cache` on a fresh runner: every pack, image, index and layer the cache holds
    is named as pulled rather than built, with the bytes, and the packages by HEAD request; nothing is
    written (no store, no build dir, no upload: the registry's request log shows no write)."""
    import subprocess
    import sys

    root, _ = demo
    a, _ = warm
    b = Machine(tmp_path / "b", root)
    proxy = AuthProxy(registry.host, require_auth=False)  # counts what the plan asks of the registry
    try:
        res = subprocess.run([sys.executable, "-m", "pixibuild", "plan", "-C", str(root), "--json",
                              "--remote-cache", f"oci://{proxy.host}/org/cache"], capture_output=True, text=True,
                             env=b.env())
    finally:
        proxy.stop()
    assert res.returncode == 0, res.stderr
    assert proxy.writes() == [] and any(m == "HEAD" and "/blobs/" in p for m, p in proxy.requests)
    plan = json.loads(res.stdout)
    hits = plan["remote_cache"]["nodes"]
    would_run = {s["name"]: s["kind"] for s in plan["would_run"]}
    outputs = {f"{k}:{t}" for k, t in _targets(a)}
    assert outputs <= set(hits), outputs - set(hits)  # every pack and image A built is there
    assert all(hits[name] > 0 for name in outputs)
    assert any(would_run[n] == "fetch" for n in hits) and any(would_run[n] == "layer" for n in hits)
    assert not any(would_run[n] == "unpack" for n in hits)  # an installed environment is never shared
    assert not b.store.exists() and not b.build_dir.exists()
    lines = subprocess.run([sys.executable, "-m", "pixibuild", "build", "--dry-run", "-C", str(root),
                            "--remote-cache", cache_url(registry)], capture_output=True, text=True, env=b.env())
    assert lines.returncode == 0, lines.stderr
    assert any(line.startswith("pack:webapp:prod:linux-64: ") and "in the remote cache" in line
               for line in lines.stdout.splitlines()), lines.stdout
    assert f"remote cache {cache_url(registry)}: holds {len(hits)} of the" in lines.stdout
    plain = subprocess.run([sys.executable, "-m", "pixibuild", "plan", "-C", str(root), "--json"],
                           capture_output=True, text=True, env=b.env())
    assert json.loads(plain.stdout)["remote_cache"] is None
