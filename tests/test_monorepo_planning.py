"""Planning a monorepo: the plan cache, the stamp log, doit's tasks, and broken projects.

Counts and contents, never times (bench/graph.py and bench/monorepo.py time them)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from pixibuild.demo.demo import write_demo
from pixibuild.demo.synthetic import bump_package
from pixibuild.graph.plan import Node, load_workspace, run_node
from pixibuild.graph.stamps import StampLog, Stamps, read_inputs
from support.doitrun import run_doit, write_dodo


def _plan(root: Path, build: Path, monkeypatch: pytest.MonkeyPatch, declared: list[str] | None = None):
    """(workspace, graph) planned with the plan cache, recording which projects were declared."""
    from pixibuild.rules import graph as rules_graph
    from pixibuild.rules import workspace_tasks

    original = rules_graph.Planner.declare

    def declare(self, label, shared):
        declared is not None and declared.append(label)
        return original(self, label, shared)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rules_graph.Planner, "declare", declare)
        namespace = workspace_tasks(root, build_dir=build)
    return namespace["PIXIBUILD_WORKSPACE"], namespace["PIXIBUILD_GRAPH"]


def _summary(graph) -> dict:
    return {n.name: (n.kind, n.key, n.deps, n.build_deps, n.holds, n.remote is not None, tuple(map(str, n.outputs)),
                     n.doc, n.broken) for n in graph.nodes()}


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, Path], Path]:
    monkeypatch.setenv("PIXIBUILD_CACHE_DIR", str(tmp_path / "store"))
    projects = write_demo(tmp_path / "ws")
    old = time.time() - 60  # files older than the plan cache's racy window
    for path in (tmp_path / "ws").rglob("*"):
        os.utime(path, (old, old), follow_symlinks=False)
    return tmp_path / "ws", projects, tmp_path / "build"


def test_unchanged_projects_are_planned_from_the_cache(demo, monkeypatch: pytest.MonkeyPatch) -> None:
    root, projects, build = demo
    declared: list[str] = []
    _, first = _plan(root, build, monkeypatch, declared)
    assert sorted(declared) == ["webapp", "worker"]
    declared.clear()
    _, second = _plan(root, build, monkeypatch, declared)
    assert declared == []  # no lock read, no key derived
    assert _summary(second) == _summary(first)
    assert all(n.load is not None and n.action is None for n in second.nodes())

    bump_package(projects["worker"], "tzdata-demo")
    old = time.time() - 60
    os.utime(projects["worker"] / "pixi.lock", (old, old))
    _, third = _plan(root, build, monkeypatch, declared)
    assert declared == ["worker"]
    changed = {n for n, v in _summary(third).items() if _summary(first).get(n) != v}
    assert {n.split(":")[0] for n in changed} == {"lock", "fetch", "verify", "index", "pack"}


def test_cached_plan_equals_a_fresh_plan_and_nodes_declare_their_project_again(demo, monkeypatch) -> None:
    """The full nodes a cached node gives back (its action, its inputs) are the fresh plan's."""
    from pixibuild.rules.graph import build_graph

    root, _, build = demo
    _plan(root, build, monkeypatch)
    _, cached = _plan(root, build, monkeypatch)
    fresh = build_graph(load_workspace(root, build_dir=build))
    assert _summary(cached) == _summary(fresh)
    node = cached.node("pack:webapp:prod:linux-64")
    full = node.full()
    assert full.action is not None and full.key == node.key
    assert full.input_values() == fresh.node("pack:webapp:prod:linux-64").input_values()


def test_an_edited_app_file_or_manifest_replans_its_project(demo, monkeypatch) -> None:
    root, projects, build = demo
    _, first = _plan(root, build, monkeypatch)
    declared: list[str] = []
    (projects["webapp"] / "app" / "main.sh").write_text("#!/bin/sh\nexec hello --loud\n")  # an image `include`
    _, second = _plan(root, build, monkeypatch, declared)
    assert declared == ["webapp"]
    assert second.node("image:webapp:prod:linux-64").key != first.node("image:webapp:prod:linux-64").key
    assert second.node("pack:webapp:prod:linux-64").key == first.node("pack:webapp:prod:linux-64").key

    declared.clear()
    manifest = projects["worker"] / "pixi.toml" if (projects["worker"] / "pixi.toml").exists() \
        else projects["worker"] / "pyproject.toml"
    manifest.write_text(manifest.read_text() + "\n[tool.pixi.tasks]\nserve = 'hello'\n")
    _, third = _plan(root, build, monkeypatch, declared)
    assert declared == ["worker"]  # the file changed: planned again (an unrelated table: same keys)
    assert _summary(third)["pack:worker:default:linux-64"] == _summary(first)["pack:worker:default:linux-64"]


def test_a_lock_edited_within_the_same_timestamp_is_noticed(demo, monkeypatch) -> None:
    """Size, mtime and inode unchanged (a same-length edit, mtime put back): while the file is young
    its bytes are hashed too, so the cached plan is not used."""
    root, projects, build = demo
    lock = projects["worker"] / "pixi.lock"
    _plan(root, build, monkeypatch)
    text = lock.read_text()
    st = lock.stat()
    swapped = text.replace("tzdata-demo", "tzdata-dem0", 1)
    assert len(swapped) == len(text)
    with open(lock, "r+") as fh:  # same inode, same size
        fh.write(swapped)
    os.utime(lock, ns=(st.st_atime_ns, int(time.time() * 1e9)))
    declared: list[str] = []
    _plan(root, build, monkeypatch, declared)
    assert "worker" in declared


def test_parallel_planning_gives_the_sequential_plan(demo, monkeypatch) -> None:
    """Stale projects planned in forked workers (a cold monorepo) give the same graph."""
    import multiprocessing

    from pixibuild.rules import graph as rules_graph

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform: planning stays sequential")
    root, _, build = demo
    _, sequential = _plan(root, build, monkeypatch)
    (build / ".plan-cache").unlink()
    monkeypatch.setattr(rules_graph, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(rules_graph, "_cpus", lambda: 2)
    from pixibuild.graph import workers

    # earlier tests may have left idle pool threads in this process: fork anyway (the workers only plan)
    monkeypatch.setattr(workers, "can_fork", lambda: True)
    forked: list[list[str]] = []
    results: list = []
    monkeypatch.setattr(rules_graph, "fork_each", lambda *a, **k: results.append(workers.fork_each(*a, **k)) or results[-1])
    original = rules_graph._plan_in_workers
    monkeypatch.setattr(rules_graph, "_plan_in_workers",
                        lambda planner, stale: forked.append(stale) or original(planner, stale))
    shutil.rmtree(Path(os.environ["PIXIBUILD_CACHE_DIR"]) / "lock-cache")
    _, parallel = _plan(root, build, monkeypatch)
    assert forked == [["webapp", "worker"]]
    assert _summary(parallel) == _summary(sequential)
    # the workers write the lock cache after sending their plans, and the plan cache is written by a
    # child of its own: both are complete once the workers are reaped (at exit, or here)
    assert len(results) == 1 and sorted(results[0]) == [0, 1]  # both projects planned by the workers
    workers.reap()
    assert len(list((Path(os.environ["PIXIBUILD_CACHE_DIR"]) / "lock-cache").glob("*.pickle"))) == 2
    declared: list[str] = []
    _, cached = _plan(root, build, monkeypatch, declared)
    assert declared == [] and _summary(cached) == _summary(sequential)


# -- stamps -----------------------------------------------------------------------------------------


def test_stamp_log_last_line_wins_and_a_torn_line_is_ignored(tmp_path: Path) -> None:
    log = StampLog(tmp_path, "pack")
    log.record("pack:a", "k1")
    log.record("pack:b", "k2")
    log.invalidate("pack:a")
    with open(log.path, "ab") as fh:
        fh.write(b"pack:b\tk3")  # a crash in the middle of an append: no newline
    again = StampLog(tmp_path, "pack")
    assert again.key("pack:a") is None and again.key("pack:b") == "k2"


def test_stamp_log_compacts_and_readers_follow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pixibuild.graph import stamps

    monkeypatch.setattr(stamps, "COMPACT_MIN", 10)
    reader = StampLog(tmp_path, "verify")
    writer = StampLog(tmp_path, "verify")
    for i in range(50):
        writer.record("verify:x", f"k{i}")
    assert writer.path.read_text().count("\n") < 50  # compacted along the way
    reader.refresh()
    assert reader.key("verify:x") == "k49"


def test_a_key_seen_before_never_vouches_for_outputs_a_later_action_replaced(tmp_path: Path) -> None:
    """Built with key A, then a run for key B dies after replacing the outputs, then the inputs go
    back to A: the node must run again (the stamp was invalidated before B's action started)."""
    from pixibuild.graph.plan import Projects, Workspace

    out = tmp_path / "out.txt"
    ws = Workspace(root=tmp_path, store_root=tmp_path / "store", build_dir=tmp_path / "build",
                   projects=Projects({}, tmp_path / "store"), single=True)

    def write(text: str, fail: bool = False):
        def action() -> None:
            out.write_text(text)
            if fail:
                raise RuntimeError("killed")
        return action

    run_node(ws, Node("pack:x", "pack", "A", write("A"), outputs=(out,), inputs={"v": "A"}))
    with pytest.raises(RuntimeError):
        run_node(ws, Node("pack:x", "pack", "B", write("B", fail=True), outputs=(out,)))
    fresh = Workspace(root=tmp_path, store_root=tmp_path / "store", build_dir=tmp_path / "build",
                      projects=Projects({}, tmp_path / "store"), single=True)
    ran: list[str] = []
    run_node(fresh, Node("pack:x", "pack", "A", lambda: ran.append("A") or out.write_text("A"), outputs=(out,)))
    assert ran == ["A"] and out.read_text() == "A"
    assert read_inputs(tmp_path / "build", "pack", "pack:x")["inputs"] == {"v": "A"}


def test_stamps_of_two_processes_meet_in_one_log(tmp_path: Path) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    procs = [ctx.Process(target=_record_many, args=(str(tmp_path), i)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    stamps = Stamps(tmp_path)
    assert all(stamps.recorded("fetch", f"fetch:{i}:{j}") == f"k{j}" for i in range(2) for j in range(200))


def _record_many(build: str, which: int) -> None:
    log = StampLog(Path(build), "fetch")
    for j in range(200):
        log.record(f"fetch:{which}:{j}", f"k{j}")


# -- doit tasks ------------------------------------------------------------------------------------


def test_planned_task_has_the_attributes_doit_gives_a_task(tmp_path: Path) -> None:
    """PlannedTask skips Task.__init__: its attributes must be what doit's constructor sets (a doit
    upgrade that adds one fails here, not in a build)."""
    from doit.task import Task

    from pixibuild.rules.doit_tasks import PlannedTask

    def action() -> None:
        pass

    for uptodate in (True, False, lambda: True):
        planned = PlannedTask("pack:x:y", action, "a doc", ["/out"], ["index:x"], uptodate, "pack")
        real = Task("pack:x:y", [action], doc="a doc", targets=["/out"], task_dep=["index:x"], uptodate=[uptodate],
                    verbosity=1, subtask_of="pack")
        theirs = vars(real)
        # the rest are class attributes shared by every task, or set on first use (`_later`)
        assert set(vars(planned)) - {"_later"} <= set(theirs)
        for key in theirs:
            mine = getattr(planned, key)
            if key == "io":
                assert mine.capture == theirs[key].capture
            elif key in ("clean_actions", "teardown", "wild_dep", "getargs"):  # empty, and only ever read
                assert not mine and not theirs[key], key
            else:
                assert mine == theirs[key], key
        assert planned.actions[0].py_callable is action
        assert planned.pickle_safe_dict().keys() == real.pickle_safe_dict().keys()
        fresh = PlannedTask("pack:x:y", action, "a doc", ["/out"], ["index:x"], uptodate, "pack")
        assert fresh.pickle_safe_dict().keys() == real.pickle_safe_dict().keys()  # before any attribute is read
        assert set(vars(planned)) <= set(theirs)
        with pytest.raises(AttributeError):
            planned.no_such_attribute  # noqa: B018
    lazy = PlannedTask("pack:x:y", (print, "x"), "a doc", ("/out",), [], (bool, 1), "pack")
    assert lazy.actions[0].py_callable.args == ("x",) and lazy.uptodate[0][0]() is True
    assert lazy.targets == ["/out"]


# -- broken projects -------------------------------------------------------------------------------


@pytest.fixture
def with_broken(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The demo plus `drift` (its lock has a platform its manifest no longer lists: the issue's
    `has no platform` error) and `notoml` (a manifest that is not TOML)."""
    root = tmp_path / "ws"
    projects = write_demo(root)
    drift = root / "drift"
    shutil.copytree(projects["webapp"], drift)
    text = (drift / "pixi.toml").read_text().replace('name = "webapp"', 'name = "drift"')
    (drift / "pixi.toml").write_text(text.replace('platforms = ["linux-64", "linux-aarch64"]', 'platforms = ["linux-64"]')
                                     .replace('outputs = ["pack", "image", "unpack"]', 'outputs = ["pack"]'))
    notoml = root / "notoml"
    notoml.mkdir()
    (notoml / "pixi.toml").write_text("[workspace\nname = 'x'\n")
    shutil.copy(projects["worker"] / "pixi.lock", notoml / "pixi.lock")
    write_dodo(root)
    return root, {"PIXIBUILD_CACHE_DIR": str(tmp_path / "store"), "PIXIBUILD_BUILD_DIR": str(tmp_path / "build")}


def test_a_broken_project_is_listed_and_does_not_stop_the_others(with_broken) -> None:
    root, env = with_broken
    listing = run_doit(root, "list", "--all", env=env)
    assert listing.returncode == 0, listing.output
    lines = {line.split()[0]: line for line in listing.output.splitlines() if line and not line.startswith("pixibuild")}
    assert "BROKEN" in lines["lock:drift"] and "no platform 'linux-aarch64'" in lines["lock:drift"]
    assert "BROKEN" in lines["lock:notoml"] and "invalid TOML" in lines["lock:notoml"]
    # the broken project keeps its targets (from its lock), each failing with the error
    assert "BROKEN" in lines["pack:drift:prod:linux-aarch64"]
    assert not any("BROKEN" in line for name, line in lines.items() if ":webapp" in name or ":worker" in name)
    assert "pixibuild: warning: lock:drift:" in listing.output

    run = run_doit(root, "-n", "2", env=env)
    assert run.returncode == 0, run.output  # the default run builds every healthy target
    assert "pack:worker:default:linux-64" in run.executed and "image:webapp:prod:linux-64" in run.executed
    assert not any("drift" in name or "notoml" in name for name in run.executed)

    asked = run_doit(root, "pack:drift:prod:linux-aarch64", env=env)
    assert asked.returncode != 0
    errors = [line for line in asked.output.splitlines() if "no platform 'linux-aarch64'" in line]
    assert errors and "Traceback" not in asked.output


def test_a_broken_project_reruns_its_check_once_fixed(with_broken) -> None:
    root, env = with_broken
    assert run_doit(root, "list", "--all", env=env).returncode == 0
    shutil.rmtree(root / "notoml")
    manifest = root / "drift" / "pixi.toml"
    manifest.write_text(manifest.read_text().replace('platforms = ["linux-64"]', 'platforms = ["linux-64", "linux-aarch64"]'))
    run = run_doit(root, "pack:drift:prod:linux-aarch64", env=env)
    assert run.returncode == 0, run.output
    assert "pack:drift:prod:linux-aarch64" in run.executed and "lock:drift" in run.executed


# -- named platforms (pixi.lock v7) ----------------------------------------------------------------

NAMED_MANIFEST = """\
[workspace]
name = "named"
channels = ["https://conda.anaconda.org/conda-forge"]
platforms = [
  { name = "gpu", platform = "linux-64", cuda = "12" },
  "linux-64",
  { platform = "osx-arm64", macos = "13.5" },
]

[dependencies]
python = "*"
"""

NAMED_LOCK = """\
version: 7
platforms:
- name: linux-64
  virtual-packages:
  - __unix=0=0
  - __linux=4.18
  - __glibc=2.28
  - __archspec=0=x86_64
- name: p1
  subdir: linux-64
  virtual-packages:
  - __cuda=12
  - __unix=0=0
  - __linux=4.18
  - __glibc=2.28
  - __archspec=0=x86_64
- name: p2
  subdir: osx-arm64
  virtual-packages:
  - __osx=13.5
  - __unix=0=0
  - __archspec=0=m1
environments:
  default:
    channels:
    - url: https://conda.anaconda.org/conda-forge/
    packages:
      linux-64:
      - conda: https://conda.anaconda.org/conda-forge/linux-64/python-3.12.0-h0_0.conda
      p1:
      - conda: https://conda.anaconda.org/conda-forge/linux-64/python-3.12.0-h0_0.conda
      p2:
      - conda: https://conda.anaconda.org/conda-forge/osx-arm64/python-3.12.0-h1_0.conda
packages:
- conda: https://conda.anaconda.org/conda-forge/linux-64/python-3.12.0-h0_0.conda
  name: python
  version: 3.12.0
  build: h0_0
  subdir: linux-64
  sha256: 0000000000000000000000000000000000000000000000000000000000000001
  md5: 00000000000000000000000000000001
- conda: https://conda.anaconda.org/conda-forge/osx-arm64/python-3.12.0-h1_0.conda
  name: python
  version: 3.12.0
  build: h1_0
  subdir: osx-arm64
  sha256: 0000000000000000000000000000000000000000000000000000000000000002
  md5: 00000000000000000000000000000002
"""


def test_named_platforms_of_a_v7_lock_map_to_the_manifest_as_pixi_maps_them(tmp_path: Path) -> None:
    """pixi writes rich platforms as p1, p2… and maps them back by subdir + customised virtual
    packages; an unnamed table gets pixi's derived name (`osx-arm64-macos-13-5`)."""
    from pixibuild.inputs.locked import check_locked
    from pixibuild.inputs.lockfile import read_lock
    from pixibuild.inputs.project import aligned_lock, load_project

    (tmp_path / "pixi.toml").write_text(NAMED_MANIFEST)
    (tmp_path / "pixi.lock").write_text(NAMED_LOCK)
    project = load_project(tmp_path, store_root=tmp_path / "store")
    assert project.manifest.platforms == ["gpu", "linux-64", "osx-arm64-macos-13-5"]
    assert {p: (t.subdir, t.conda[0].build) for (_, p), t in project.resolved.items()} == {
        "linux-64": ("linux-64", "h0_0"), "gpu": ("linux-64", "h0_0"), "osx-arm64-macos-13-5": ("osx-arm64", "h1_0")}
    lock = aligned_lock(read_lock(tmp_path / "pixi.lock"), project.manifest)
    for env, platform in project.targets():
        check_locked(project.manifest, lock, env, platform)


def test_named_platforms_plan_and_pack_for_their_subdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pixibuild.rules import workspace_tasks

    (tmp_path / "pixi.toml").write_text(NAMED_MANIFEST.replace('[dependencies]', '[tool.pixibuild]\noutputs = ["pack", "image"]\n\n[dependencies]'))
    (tmp_path / "pixi.lock").write_text(NAMED_LOCK)
    monkeypatch.setenv("PIXIBUILD_CACHE_DIR", str(tmp_path / "store"))
    graph = workspace_tasks(tmp_path, build_dir=tmp_path / "build")["PIXIBUILD_GRAPH"]
    names = sorted(n.name for n in graph.nodes() if n.kind in ("pack", "image"))
    assert names == ["image:default:gpu", "image:default:linux-64", "pack:default:gpu", "pack:default:linux-64",
                     "pack:default:osx-arm64-macos-13-5"]  # images only for linux subdirs
    assert not any(n.broken for n in graph.nodes())
    assert graph.node("pack:default:gpu").full().input_values()["platform"] == "linux-64"


def test_corpus_multi_machine_lock_is_not_broken(tmp_path: Path) -> None:
    """The issue's broken project: its v7 lock's p1/p2/p3 are the manifest's named platforms."""
    from conftest import require_corpus

    from pixibuild.inputs.locked import check_locked
    from pixibuild.inputs.lockfile import read_lock
    from pixibuild.inputs.project import aligned_lock, load_project

    source = require_corpus("locks", "prefix-dev__pixi__examples__multi-machine__pixi.lock")
    project = load_project(source, store_root=tmp_path)
    assert sorted(p for _, p in project.targets()) == ["cuda-linux-64", "cuda-win-64", "linux-64",
                                                        "osx-arm64-macos-13-5", "win-64"]
    lock = aligned_lock(read_lock(source / "pixi.lock"), project.manifest)
    for env, platform in project.targets():
        check_locked(project.manifest, lock, env, platform)


# -- layers grouped for the whole workspace --------------------------------------------------------


def test_image_layers_are_grouped_for_the_workspace_and_stay_put_on_a_bump(tmp_path: Path, monkeypatch) -> None:
    """Four projects over their layer budget: their images share layer nodes, each stays within its
    budget, and a package bump in one lock changes one layer of that project's image only (the other
    projects' plans are not even declared again)."""
    from pixibuild.demo.synthetic import write_workspace

    monkeypatch.setenv("PIXIBUILD_CACHE_DIR", str(tmp_path / "store"))
    projects = write_workspace(tmp_path / "ws", n_packages=120, n_projects=4, seed=3, median_kib=1)
    for project in projects:
        manifest = project / "pixi.toml"
        manifest.write_text(manifest.read_text() + '\n[tool.pixibuild]\noutputs = ["image"]\n\n'
                            '[tool.pixibuild.image]\nmax-layers = 12\n')
    old = time.time() - 60
    for path in (tmp_path / "ws").rglob("*"):
        os.utime(path, (old, old))
    _, graph = _plan(tmp_path / "ws", tmp_path / "build", monkeypatch)
    per_platform = lambda g: [n for n in g.nodes("image") if n.name.count(":") == 3]  # noqa: E731 (not the indexes)
    images = {n.name: [d for d in n.all_deps if d.startswith("layer:")] for n in per_platform(graph)}
    assert len(images) == 4
    sizes = {name: len(graph.node(name).full().input_values()) for name in images}
    assert all(len(layers) <= 12 - 1 for layers in images.values())  # 1 environment layer
    assert any(sum(1 for k in graph.node(n).full().input_values() if k.startswith("conda:")) > 11 for n in images), sizes
    counts: dict[str, int] = {}
    for layers in images.values():
        for layer in layers:
            counts[layer] = counts.get(layer, 0) + 1
    assert max(counts.values()) == 4  # layers every image has: one node, one blob

    victim = projects[1]
    name = next(line.split('"')[1] for line in (victim / "pixi.toml").read_text().splitlines() if line.startswith('"pkg'))
    bump_package(victim, name)
    os.utime(victim / "pixi.lock", (old, old))
    declared: list[str] = []
    _, after = _plan(tmp_path / "ws", tmp_path / "build", monkeypatch, declared)
    assert declared == ["p01"]
    new_images = {n.name: [d for d in n.all_deps if d.startswith("layer:")] for n in per_platform(after)}
    for image, layers in images.items():
        if ":p01:" in image:
            assert len(set(new_images[image]) - set(layers)) == 1 and len(set(layers) - set(new_images[image])) == 1
        else:
            assert new_images[image] == layers
            assert after.node(image).key == graph.node(image).key


def test_a_toml_1_1_manifest_plans_with_its_cache_settings(demo, monkeypatch: pytest.MonkeyPatch) -> None:
    """pixi manifests may use TOML 1.1 (an inline table over several lines). Every reader of a manifest
    uses tomli, which reads it: the workspace's remote-cache settings used to be read with Python's
    tomllib, which refuses it, so such a project at the workspace root stopped every run."""
    from pixibuild.graph.remote import workspace_cache_settings
    from pixibuild.rules import workspace_tasks

    _, projects, build = demo
    manifest = projects["webapp"] / "pixi.toml"
    text = manifest.read_text()
    assert 'labels = { "org.opencontainers.image.title" = "webapp" }' in text
    manifest.write_text(text.replace('labels = { "org.opencontainers.image.title" = "webapp" }',
                                     'labels = {\n  "org.opencontainers.image.title" = "webapp",\n}') +
                        '\n[tool.pixibuild.cache]\nremote = "oci://127.0.0.1:1/cache"\nmode = "read"\n')
    assert workspace_cache_settings(projects["webapp"], {"webapp": projects["webapp"]})[:2] == \
        ("oci://127.0.0.1:1/cache", "read")
    namespace = workspace_tasks(projects["webapp"], build_dir=build)
    assert namespace["PIXIBUILD_GRAPH"].has("pack:prod:linux-64")
