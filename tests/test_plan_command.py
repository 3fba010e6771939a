"""`pixibuild plan` / `build --dry-run` / `graph`: what would run and why, and nothing written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_tool
from pixibuild.demo.demo import write_demo
from pixibuild.demo.synthetic import bump_package


def _pixibuild(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pixibuild", *args], capture_output=True, text=True,
                          env=dict(os.environ, **env), timeout=900)


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, dict[str, Path], dict[str, str]]:
    """The demo workspace, fully built (packs, images, unpacks)."""
    root = tmp_path / "ws"
    projects = write_demo(root)
    env = {"PIXIBUILD_CACHE_DIR": str(tmp_path / "store"), "PIXIBUILD_BUILD_DIR": str(tmp_path / "build")}
    run = _pixibuild("build", "-C", str(root), "-n", "2", env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    return root, projects, env


def _plan(root: Path, env: dict[str, str], *args: str) -> dict:
    run = _pixibuild("plan", "-C", str(root), "--json", *args, env=env)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def _reasons(plan: dict) -> dict[str, str]:
    return {step["name"]: "; ".join(step["reasons"]) for step in plan["would_run"]}


def _tree(*roots: Path) -> dict[str, tuple]:
    """Every file and directory under `roots` with its size, mtime and mode."""
    out = {}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            st = path.lstat()
            out[str(path)] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return out


def test_nothing_to_do_after_a_build(built) -> None:
    root, _, env = built
    plan = _plan(root, env)
    assert plan["would_run"] == [] and len(plan["up_to_date"]) == 13  # 5 packs, 2 unpacks, 4 images, 2 indexes
    text = _pixibuild("plan", "-C", str(root), env=env).stdout
    assert text.startswith("nothing to do")


def test_a_bumped_package_is_named_in_every_node_it_reruns(built) -> None:
    root, projects, env = built
    record = bump_package(projects["webapp"], "tzdata-demo")
    plan = _plan(root, env)
    reasons = _reasons(plan)
    where = "webapp/pixi.lock, env default, linux-64"
    change = f"tzdata-demo-2024b-h0_0.tar.bz2 → {record.file_name} (sha256 changed in {where})"
    assert reasons["pack:webapp:default:linux-64"] == f"1 of 8 inputs changed: {change}"
    assert reasons["unpack:webapp:default:linux-64"].endswith(change)
    assert change in reasons["image:webapp:default:linux-64"]
    layers = [s for s in plan["would_run"] if s["kind"] == "layer"]
    assert len(layers) == 1  # the new package's layer: noarch, so one blob for both linux platforms
    assert f"{record.file_name}: new package (sha256 changed in {where})" in [r for s in layers for r in s["reasons"]]
    assert plan["download"] == {"packages": 1, "bytes": record.size, "unknown_size": 0}
    assert reasons[f"fetch:{record.sha256[:16]}"] == f"not in the store: {record.file_name} ({record.size:,} bytes)"
    # the prod environment does not have tzdata-demo: untouched
    assert not any("prod" in name for name in reasons)
    dry = _pixibuild("build", "-C", str(root), "--dry-run", env=env)
    assert dry.returncode == 0 and f"pack:webapp:default:linux-64: 1 of 8 inputs changed: {change}" in dry.stdout


def test_an_edited_tool_pixibuild_table_is_named(built) -> None:
    root, projects, env = built
    manifest = projects["webapp"] / "pixi.toml"
    manifest.write_text(manifest.read_text().replace("expose = [8000]", "expose = [8080]"))
    reasons = _reasons(_plan(root, env))
    images = {n: r for n, r in reasons.items() if n.startswith("image:") and n.count(":") == 3}
    assert len(images) == 4
    assert all(re.fullmatch(r"1 of 1[79] inputs changed: image settings changed \(\[tool.pixibuild\] edited\)", r)
               for r in images.values()), images
    indexes = {n: r for n, r in reasons.items() if n.startswith("image:") and n.count(":") == 2}
    assert sorted(indexes) == ["image:webapp:default", "image:webapp:prod"], indexes
    assert "manifest changed for default, linux-64" in reasons["lock:webapp"]
    assert not any(n.startswith(("pack:", "layer:", "fetch:")) for n in reasons)


def test_a_changed_base_image_is_named(built) -> None:
    from pixibuild.oci.assemble import SCRATCH
    from pixibuild.oci.layer import LayerCache
    from pixibuild.oci.layout import write_image_tar
    from oci_helpers import simple_image

    root, projects, env = built
    cache = LayerCache(Path(env["PIXIBUILD_CACHE_DIR"]) / "test-base")
    base = root.parent / "base.tar"
    write_image_tar(simple_image(cache, {"one": {"etc/base": b"1"}}, base=SCRATCH), base)
    manifest = projects["webapp"] / "pixi.toml"
    manifest.write_text(re.sub(r'(?m)^base = .*$', f'base = "oci-archive:{base}"', manifest.read_text()))
    run = _pixibuild("build", "-C", str(root), "image:webapp:prod:linux-64", env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    write_image_tar(simple_image(cache, {"two": {"etc/base": b"22"}}, base=SCRATCH), base)
    reasons = _reasons(_plan(root, env, "image:webapp:prod:linux-64"))
    assert reasons == {"image:webapp:prod:linux-64": "1 of 17 inputs changed: base image changed"}


def test_a_deleted_output_is_named(built, tmp_path: Path) -> None:
    root, _, env = built
    tar = Path(env["PIXIBUILD_BUILD_DIR"]) / "worker" / "default" / "linux-64" / "environment.tar"
    tar.unlink()
    assert _reasons(_plan(root, env)) == {"pack:worker:default:linux-64": f"output deleted: {tar}"}


def test_plan_and_graph_change_nothing_on_disk(built) -> None:
    """After a bump (so that plan has reasons to look up, locks to parse, projects to plan again)."""
    root, projects, env = built
    bump_package(projects["worker"], "tzdata-demo")
    roots = [root, Path(env["PIXIBUILD_CACHE_DIR"]), Path(env["PIXIBUILD_BUILD_DIR"])]
    before = _tree(*roots)
    assert _plan(root, env)["would_run"]
    assert _pixibuild("plan", "-C", str(root), env=env).returncode == 0
    assert _pixibuild("graph", "-C", str(root), "--format", "json", env=env).returncode == 0
    assert _tree(*roots) == before


def test_unknown_task_is_one_line(built) -> None:
    root, _, env = built
    run = _pixibuild("plan", "-C", str(root), "pack:nope", env=env)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "pack:nope" in run.stderr


def test_bytes_a_push_would_upload(built) -> None:
    """HEAD requests against a real registry: everything is missing before a push, nothing after."""
    from oci_helpers import LocalRegistry

    root, _, env = built
    registry = LocalRegistry(root.parent / "registry")
    try:
        target = f"{registry.host}/demo/webapp"
        plan = _plan(root, env, "--push", target, "image:webapp:prod:linux-64")
        [upload] = plan["upload"]
        assert upload["error"] == "" and upload["blobs"] > 3 and upload["missing"] == upload["blobs"]
        tar = Path(env["PIXIBUILD_BUILD_DIR"]) / "webapp" / "prod" / "linux-64" / "image.tar"
        assert 0 < upload["missing_bytes"] <= tar.stat().st_size
        skopeo = require_tool("skopeo")
        subprocess.run([skopeo, "copy", "--dest-tls-verify=false", f"oci-archive:{tar}", f"docker://{target}:t"],
                       check=True, capture_output=True)
        [after] = _plan(root, env, "--push", target, "image:webapp:prod:linux-64")["upload"]
        assert after["missing"] == 0 and after["missing_bytes"] == 0
    finally:
        registry.stop()


def test_graph_formats_cluster_per_project(built) -> None:
    import networkx as nx

    root, _, env = built
    dot = _pixibuild("graph", "-C", str(root), "pack:worker:default:linux-64", env=env).stdout
    assert dot.startswith("digraph pixibuild {") and 'label="worker"' in dot and 'label="shared"' in dot
    assert '"index:worker:default:linux-64" -> "pack:worker:default:linux-64";' in dot
    assert "webapp" not in dot  # only the task and what it depends on
    mermaid = _pixibuild("graph", "-C", str(root), "--format", "mermaid", env=env).stdout
    assert mermaid.startswith("flowchart LR") and 'subgraph c0["webapp"]' in mermaid
    data = json.loads(_pixibuild("graph", "-C", str(root), "--format", "json", env=env).stdout)
    graph = nx.node_link_graph(data)
    assert nx.is_directed_acyclic_graph(graph)
    assert graph.nodes["pack:webapp:prod:linux-64"]["project"] == "webapp"
    assert all(graph.nodes[n]["project"] == "shared" for n in graph if n.startswith(("fetch:", "verify:", "layer:")))
