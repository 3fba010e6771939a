"""The doit rule set on the embedded demo monorepo: counts of executed actions, not times."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pixibuild.demo.demo import write_demo
from support.doitrun import run_doit, write_dodo
from pixibuild.demo.synthetic import bump_package


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    """The demo workspace after one cold `doit` run (shared by the tests of this module, in order)."""
    root = tmp_path_factory.mktemp("ws")
    projects = write_demo(root)
    write_dodo(root)
    env = {"PIXIBUILD_CACHE_DIR": str(root / "store"), "PIXIBUILD_BUILD_DIR": str(root / "build")}
    cold = run_doit(root, "-n", "2", env=env)
    assert cold.returncode == 0, cold.output
    return root, projects, env, cold


def _kind(names: list[str], kind: str) -> list[str]:
    return [n for n in names if n.startswith(kind + ":")]


def test_task_names_and_list(built) -> None:
    root, _, env, _ = built
    listing = run_doit(root, "list", env=env)
    assert listing.returncode == 0, listing.output
    for name in ("pack", "fetch", "verify", "index", "lock"):
        assert any(line.split()[0] == name for line in listing.output.splitlines()), listing.output
    full = run_doit(root, "list", "--all", env=env).output.split()
    assert "pack:webapp:prod:linux-64" in full and "pack:worker:default:linux-64" in full
    assert "pack:webapp:default:linux-aarch64" in full


def test_cold_run_fetches_each_shared_package_once(built) -> None:
    root, _, _, cold = built
    fetches = _kind(cold.executed, "fetch")
    assert len(fetches) == len(set(fetches))
    blobs = list((root / "store" / "blobs" / "sha256").glob("*/*"))
    # one fetch per distinct package, however many projects/platforms/envs use it
    assert len(fetches) == len(blobs)
    assert sorted(_kind(cold.executed, "pack")) == [
        "pack:webapp:default:linux-64", "pack:webapp:default:linux-aarch64",
        "pack:webapp:prod:linux-64", "pack:webapp:prod:linux-aarch64", "pack:worker:default:linux-64"]
    for label, env, platform in [("webapp", "prod", "linux-64"), ("worker", "default", "linux-64")]:
        assert (root / "build" / label / env / platform / "environment.tar").stat().st_size > 10_000


def test_noop_runs_no_action(built) -> None:
    root, _, env, _ = built
    noop = run_doit(root, "-n", "2", env=env)
    assert noop.returncode == 0, noop.output
    assert noop.executed == []
    # only the outputs are looked at: an up-to-date node is handed to doit without its inputs
    outputs = [n for n in built[3].executed if n.split(":")[0] in ("pack", "image", "unpack")]
    assert len(outputs) == 13 and sorted(noop.up_to_date) == sorted(outputs)  # 5 packs, 2 unpacks, 4 images, 2 indexes


def test_unrelated_manifest_edit_reruns_nothing(built) -> None:
    root, projects, env, _ = built
    manifest = projects["webapp"] / "pixi.toml"
    manifest.write_text(manifest.read_text() + '\n[tasks]\nserve = "hello"\n')
    run = run_doit(root, env=env)
    assert run.returncode == 0, run.output
    assert run.executed == []


def test_lost_doit_database_reruns_nothing(built) -> None:
    """Our content-key stamps decide; doit's database is only a cache (crash-safe)."""
    root, _, env, _ = built
    for db in (root / "build").glob(".doit.db*"):
        db.unlink()
    run = run_doit(root, env=env)
    assert run.returncode == 0, run.output
    assert run.executed == []
    (root / "build" / ".doit.db").write_bytes(b"garbage, as if a crash tore the file")
    run = run_doit(root, env=env)
    assert run.returncode == 0, run.output
    assert run.executed == []


def test_one_changed_package_reruns_exactly_its_nodes(built) -> None:
    root, projects, env, _ = built
    tar = root / "build" / "webapp" / "prod" / "linux-64" / "environment.tar"
    before = tar.read_bytes()
    record = bump_package(projects["worker"], "tzdata-demo")
    run = run_doit(root, "-n", "2", env=env)
    assert run.returncode == 0, run.output
    rid = record.sha256[:16]
    assert sorted(run.executed) == sorted([
        f"fetch:{rid}", f"verify:{rid}", "lock:worker",
        "index:worker:default:linux-64", "pack:worker:default:linux-64"])
    assert tar.read_bytes() == before


def test_deleted_output_is_rebuilt_alone(built) -> None:
    root, _, env, _ = built
    tar = root / "build" / "webapp" / "prod" / "linux-aarch64" / "environment.tar"
    data = tar.read_bytes()
    tar.unlink()
    run = run_doit(root, "pack:webapp:prod:linux-aarch64", env=env)
    assert run.executed == ["pack:webapp:prod:linux-aarch64"]
    assert tar.read_bytes() == data


def test_images_and_unpack_targets_are_built(built) -> None:
    root, _, _, cold = built
    assert sorted(_kind(cold.executed, "image")) == [
        "image:webapp:default", "image:webapp:default:linux-64", "image:webapp:default:linux-aarch64",
        "image:webapp:prod", "image:webapp:prod:linux-64", "image:webapp:prod:linux-aarch64"]
    assert sorted(_kind(cold.executed, "unpack")) == ["unpack:webapp:default:linux-64", "unpack:webapp:prod:linux-64"]
    layers = _kind(cold.executed, "layer")
    assert len(layers) == len(set(layers)) > 0
    import json
    import tarfile

    with tarfile.open(root / "build" / "webapp" / "prod" / "image.tar") as index_tar:  # image:webapp:prod
        index = json.load(index_tar.extractfile("index.json"))  # type: ignore[arg-type]
        nested = json.load(index_tar.extractfile("blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]))  # type: ignore[arg-type]
    assert [m["platform"]["architecture"] for m in nested["manifests"]] == ["amd64", "arm64"]
    out = root / "build" / "webapp" / "prod" / "linux-64"
    import subprocess

    run = subprocess.run(["bash", "-c", f". {out}/activate.sh && hello"], capture_output=True, text=True)
    assert run.returncode == 0 and f"prefix: {out}/env" in run.stdout, run.stderr


def test_one_changed_package_in_an_imaged_project(built) -> None:
    """tzdata-demo (noarch) bumped in webapp: its fetch/verify, webapp's lock check, the default
    env's index/pack/image on both platforms and its multi-platform index, one layer (a noarch
    package's layer is the same blob on both platforms), and the host unpack."""
    root, projects, env, _ = built
    prod_image = root / "build" / "webapp" / "prod" / "linux-64" / "image.tar"
    before = prod_image.read_bytes()
    record = bump_package(projects["webapp"], "tzdata-demo", tag="2")
    run = run_doit(root, "-n", "2", env=env)
    assert run.returncode == 0, run.output
    rid = record.sha256[:16]
    non_layer = sorted(n for n in run.executed if not n.startswith("layer:"))
    assert non_layer == sorted([
        f"fetch:{rid}", f"verify:{rid}", "lock:webapp",
        "index:webapp:default:linux-64", "index:webapp:default:linux-aarch64",
        "pack:webapp:default:linux-64", "pack:webapp:default:linux-aarch64",
        "image:webapp:default:linux-64", "image:webapp:default:linux-aarch64", "image:webapp:default",
        "unpack:webapp:default:linux-64"])
    assert len(_kind(run.executed, "layer")) == 1
    assert prod_image.read_bytes() == before


def test_pixibuild_build_runs_the_graph_without_a_dodo(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    projects = write_demo(tmp_path / "ws")
    env = dict(os.environ, PIXIBUILD_CACHE_DIR=str(tmp_path / "store"), PIXIBUILD_BUILD_DIR=str(tmp_path / "build"))
    listing = subprocess.run([sys.executable, "-m", "pixibuild", "build", "-C", str(projects["worker"]), "--list"],
                             capture_output=True, text=True, env=env)
    assert listing.returncode == 0, listing.stderr
    assert "pack:default:linux-64" in listing.stdout.split()  # single project: no project label
    run = subprocess.run([sys.executable, "-m", "pixibuild", "build", "-C", str(projects["worker"]),
                          "pack:default:linux-64"], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "build" / "default" / "linux-64" / "environment.tar").is_file()
    again = subprocess.run([sys.executable, "-m", "pixibuild", "build", "-C", str(projects["worker"])],
                           capture_output=True, text=True, env=env)
    assert again.returncode == 0 and not [l for l in again.stdout.splitlines() if l.startswith(".  ")]


def test_manifest_narrows_targets_and_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pixibuild.rules import workspace_tasks

    projects = write_demo(tmp_path / "ws")
    manifest = projects["webapp"] / "pixi.toml"
    text = manifest.read_text().replace('outputs = ["pack", "image", "unpack"]',
                                        'outputs = ["pack"]\nenvironments = ["prod"]\nplatforms = ["linux-aarch64"]')
    manifest.write_text(text)
    monkeypatch.setenv("PIXIBUILD_CACHE_DIR", str(tmp_path / "store"))
    graph = workspace_tasks(tmp_path / "ws", build_dir=tmp_path / "build")["PIXIBUILD_GRAPH"]
    targets = sorted(n.name for n in graph.nodes() if n.kind in ("pack", "image", "unpack"))
    assert targets == ["pack:webapp:prod:linux-aarch64", "pack:worker:default:linux-64"]


def test_two_images_with_the_same_packages_share_layer_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A monorepo with two services locked to the same prod packages: one layer task per package,
    depended on by both image tasks (built once, shared by both images)."""
    from pixibuild.rules import workspace_tasks

    projects = write_demo(tmp_path / "ws")
    twin = tmp_path / "ws" / "webapp-twin"
    shutil.copytree(projects["webapp"], twin)
    (twin / "pixi.toml").write_text((twin / "pixi.toml").read_text().replace('name = "webapp"', 'name = "twin"'))
    monkeypatch.setenv("PIXIBUILD_CACHE_DIR", str(tmp_path / "store"))
    graph = workspace_tasks(tmp_path / "ws", build_dir=tmp_path / "build")["PIXIBUILD_GRAPH"]
    one = [d for d in graph.node("image:webapp:prod:linux-64").build_deps if d.startswith("layer:")]
    two = [d for d in graph.node("image:twin:prod:linux-64").build_deps if d.startswith("layer:")]
    assert one and one == two
    # the twin adds no layer: per env prefix, each of the 3 arch packages once per platform and each
    # noarch package once for both (prod: greeter, hello-activation; default: + tzdata-demo)
    assert len(one) == 5
    assert len(graph.nodes("layer")) == (3 * 2 + 2) + (3 * 2 + 3)


def test_doit_process_mode_builds_and_its_summary_counts_the_workers_nodes(tmp_path: Path) -> None:
    """`doit -n 2 -P process` runs the actions in worker processes: the tasks must pickle (it used to end
    in `TypeError: cannot pickle 'mappingproxy' object`), and the summary, printed by the parent, must
    count what the workers did (their outcomes and compressed layers travel back with each task)."""
    import json

    root = tmp_path / "ws"
    write_demo(root)
    write_dodo(root)
    summary = tmp_path / "summary.json"
    env = {"PIXIBUILD_CACHE_DIR": str(root / "store"), "PIXIBUILD_BUILD_DIR": str(root / "build"),
           "PIXIBUILD_SUMMARY_JSON": str(summary)}
    run = run_doit(root, "-n", "2", "-P", "process", env=env)
    assert run.returncode == 0, run.output
    assert "Traceback" not in run.output, run.output
    assert (root / "build" / "webapp" / "prod" / "linux-64" / "image.tar").is_file()
    stats = json.loads(summary.read_text())
    nodes = [n for n in run.executed if ":" in n and not n.startswith("pull:")]
    assert sorted(stats["outcomes"]) == sorted(nodes)
    assert set(stats["outcomes"].values()) <= {"built", "checked"}
    assert stats["built"] + stats["checked"] == len(nodes) > 20
    # the same numbers as the same cold build with doit's threads (one process: nothing to carry back)
    threads_env = {"PIXIBUILD_CACHE_DIR": str(root / "store-t"), "PIXIBUILD_BUILD_DIR": str(root / "build-t"),
                   "PIXIBUILD_SUMMARY_JSON": str(tmp_path / "threads.json")}
    threads = run_doit(root, "-n", "2", "-P", "thread", env=threads_env)
    assert threads.returncode == 0, threads.output
    expected = json.loads((tmp_path / "threads.json").read_text())
    for key in ("nodes", "built", "checked", "built_by_kind", "outcomes", "layers_compressed"):
        assert stats[key] == expected[key], key
    assert stats["layers_compressed"] > len(_kind(run.executed, "layer")) > 0  # package layers + each image's own
    again = run_doit(root, "-n", "2", "-P", "process", env=env)
    assert again.returncode == 0 and again.executed == [], again.output
