"""The project's own PyPI sources as wheel nodes (issue 17): local trees, a sub-package, a git commit
and an sdist built with PEP 517 into the pack, the unpacked env and the image's top layer — all on local
material: a conda `python` that is this machine's interpreter, backends from a local simple index or
from a locked environment, a bare git repository over file://."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import require_tool
from pixibuild.cli import main
from pixibuild.conda.platforms import current_subdir
from pixibuild.conda.records import PypiRecord
from support.doitrun import run_doit, write_dodo
from support.http_server import TestServer
from support.pyproj import (PY, conda_channel, conda_from_wheel, download_backends, pypi_source, write_project_lock,
                            write_simple_index, write_source)

HOST = current_subdir()
DEAD_INDEX = "http://127.0.0.1:9/simple"


@pytest.fixture(scope="session")
def backend_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return download_backends(tmp_path_factory.mktemp("backends"))


@pytest.fixture(scope="session")
def index_server(backend_wheels: Path, tmp_path_factory: pytest.TempPathFactory):
    """A PEP 503 index of the backend wheels on 127.0.0.1 (the isolated build environments' index)."""
    root = write_simple_index(backend_wheels, tmp_path_factory.mktemp("index"))
    with TestServer(root) as server:
        yield server


def _manifest(root: Path, channel: Path, name: str, *, deps: str = "", settings: str = "") -> None:
    with open(root / "pyproject.toml", "a") as f:
        f.write(f'\n[tool.pixi.workspace]\nchannels = ["{channel.resolve().as_uri()}"]\nplatforms = ["{HOST}"]\n'
                f'\n[tool.pixi.dependencies]\npython = "*"\n'
                f'\n[tool.pixi.pypi-dependencies]\n{name} = {{ path = ".", editable = true }}\n{deps}\n{settings}')


def _image_layers(image_tar: Path) -> list[tuple[str, list[str]]]:
    """(digest, member names) of each layer of an OCI image tar, base-most first."""
    with tarfile.open(image_tar) as tar:
        def blob(digest: str) -> bytes:
            return tar.extractfile(f"blobs/sha256/{digest.split(':')[1]}").read()
        index = json.loads(tar.extractfile("index.json").read())
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        out = []
        for layer in manifest["layers"]:
            with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(layer["digest"])))) as lt:
                out.append((layer["digest"], lt.getnames()))
        return out


def _pack(*args: str, capsys) -> tuple[int, str]:
    code = main(["pack", *args])
    err = capsys.readouterr().err.strip()
    print(err)
    return code, err


# -- the pixi-docker example's shape, end to end through doit --------------------------------------------
@pytest.fixture(scope="module")
def docker_shape(backend_wheels: Path, tmp_path_factory: pytest.TempPathFactory):
    """pyproject project locked with `- pypi: ./` in `default` (with a `build` feature: flit-core) and
    `prod`; outputs pack, unpack and image of prod; one cold doit run."""
    root = tmp_path_factory.mktemp("docker")
    flit = next(backend_wheels.glob("flit_core-*.whl"))
    records = conda_channel(root / "channel", extra=[conda_from_wheel(flit, "flit-core")])
    project = write_source(root / "proj", "docker-project")
    _manifest(project, root / "channel", "docker-project",
              settings='[tool.pixi.feature.build.dependencies]\nflit-core = "*"\n\n[tool.pixi.environments]\n'
                       'default = { features = ["build"], solve-group = "default" }\n'
                       'prod = { features = [], solve-group = "default" }\n\n[tool.pixibuild]\n'
                       'outputs = ["pack", "unpack", "image"]\nenvironments = ["prod"]\n')
    (project / ".gitignore").write_text("build/\n*.log\n")
    python, flit_core = records[HOST]["python"], records["noarch"]["flit-core"]
    src = pypi_source("docker-project", "./", editable=True)
    write_project_lock(project, {"default": {HOST: [python, flit_core, src]}, "prod": {HOST: [python, src]}},
                       channel=root / "channel", indexes=[DEAD_INDEX])  # the locked env must do: no index
    write_dodo(project)
    env = {"PIXIBUILD_CACHE_DIR": str(root / "store"), "PIXIBUILD_BUILD_DIR": str(project / "build")}
    cold = run_doit(project, env=env)
    assert cold.returncode == 0, cold.output
    return root, project, env, cold


def test_docker_shape_cold_build_ships_the_project(docker_shape) -> None:
    root, project, _, cold = docker_shape
    assert [n for n in cold.executed if n.startswith(("wheel:", "buildenv:"))] == [
        n for n in cold.executed if n.startswith("buildenv:")] + [n for n in cold.executed if n.startswith("wheel:")]
    assert len([n for n in cold.executed if n.startswith("wheel:docker-project@")]) == 1
    out = project / "build" / "prod" / HOST
    with tarfile.open(out / "environment.tar") as tar:
        assert "pypi/docker_project-0.1.0-py3-none-any.whl" in tar.getnames()
    site = out / "env" / "lib" / f"python{PY}" / "site-packages"
    assert (site / "docker_project" / "__init__.py").is_file() and (site / "docker_project" / "data.txt").is_file()
    info = site / "docker_project-0.1.0.dist-info"
    assert (info / "RECORD").is_file() and not (info / "direct_url.json").exists()
    assert not list(site.glob("*.pth"))  # non-editable: nothing points back at the source tree
    # the unpacked env's python imports the installed copy, from anywhere
    result = subprocess.run([str(out / "env" / "bin" / "python"), "-c", "import docker_project; print(docker_project.__file__)"],
                            capture_output=True, text=True, cwd="/")
    assert result.stdout.strip() == str(site / "docker_project" / "__init__.py"), result.stderr
    assert subprocess.run([str(out / "env" / "bin" / "docker-project-hello")], capture_output=True,
                          text=True).stdout == "hello from docker-project\n"
    # built with the locked `build` environment: the lock's index is unreachable
    [choice] = (root / "store" / "pypi" / "envs").glob("choice-*.json")
    assert json.loads(choice.read_text())["kind"] == "locked"
    layers = _image_layers(out / "image.tar")
    top = layers[-1][1]
    assert f"app/.pixi/envs/prod/lib/python{PY}/site-packages/docker_project/__init__.py" in top
    assert all("docker_project" not in name for _, names in layers[:-1] for name in names)


def test_docker_shape_noop_then_one_edit(docker_shape) -> None:
    root, project, env, _ = docker_shape
    out = project / "build" / "prod" / HOST
    noop = run_doit(project, env=env)
    assert noop.returncode == 0 and noop.executed == [], noop.output
    before = _image_layers(out / "image.tar")
    init = project / "docker_project" / "__init__.py"
    init.write_text(init.read_text() + "\nANSWER = 42\n")
    (project / "notes.log").write_text("ignored by .gitignore: no rebuild for this\n")
    edit = run_doit(project, env=env)
    assert edit.returncode == 0, edit.output
    kinds = sorted(n.split(":", 1)[0] for n in edit.executed)
    # the platform's image and the environment's image index over it (`image:prod`)
    assert kinds == ["image", "image", "pack", "unpack", "wheel"], edit.executed
    assert {"image:prod", f"image:prod:{HOST}"} <= set(edit.executed)
    after = _image_layers(out / "image.tar")
    assert [d for d, _ in before[:-1]] == [d for d, _ in after[:-1]] and before[-1][0] != after[-1][0]
    site = out / "env" / "lib" / f"python{PY}" / "site-packages"
    assert "ANSWER = 42" in (site / "docker_project" / "__init__.py").read_text()
    assert run_doit(project, env=env).executed == []


def test_docker_shape_one_shot_pack_and_unpack(docker_shape, tmp_path: Path, capsys) -> None:
    root, project, _, _ = docker_shape
    out = tmp_path / "env.tar"
    code, err = _pack(str(project), "-e", "prod", "-o", str(out), "--cache-dir", str(tmp_path / "store"), capsys=capsys)
    assert code == 0, err
    with tarfile.open(out) as tar:
        assert "pypi/docker_project-0.1.0-py3-none-any.whl" in tar.getnames()
    assert main(["unpack", str(out), "-o", str(tmp_path / "un")]) == 0
    site = tmp_path / "un" / "env" / "lib" / f"python{PY}" / "site-packages"
    assert (site / "docker_project" / "__init__.py").is_file()
    assert (site / "docker_project-0.1.0.dist-info" / "INSTALLER").is_file()


# -- reproducible wheels ---------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["flit", "hatchling", "setuptools"])
def test_same_tree_same_wheel_bytes(backend: str, index_server, tmp_path: Path, capsys, monkeypatch) -> None:
    """Two builds of one tree, from two checkouts (other paths, mtimes, stores): identical bytes,
    every zip timestamp SOURCE_DATE_EPOCH. Backends come from the local index (isolated builds)."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    records = conda_channel(tmp_path / "channel")
    wheels = []
    for n in (1, 2):
        project = write_source(tmp_path / f"checkout{n}" / "proj", "repro-proj", backend=backend,
                               extra_files={"repro_proj/sub/mod.py": "X = 1\n", "README.md": "readme\n"})
        _manifest(project, tmp_path / "channel", "repro-proj")
        write_project_lock(project, {"default": {HOST: [records[HOST]["python"], pypi_source("repro-proj", ".")]}},
                           channel=tmp_path / "channel", indexes=[f"{index_server.url}/simple"])
        out = tmp_path / f"env{n}.tar"
        code, err = _pack(str(project), "-o", str(out), "--cache-dir", str(tmp_path / f"store{n}"), capsys=capsys)
        assert code == 0, err
        with tarfile.open(out) as tar:
            [member] = [m for m in tar.getnames() if m.startswith("pypi/") and m.endswith(".whl")]
            wheels.append(tar.extractfile(member).read())
        [choice] = (tmp_path / f"store{n}" / "pypi" / "envs").glob("choice-*.json")
        assert json.loads(choice.read_text())["kind"] == "isolated"
    assert member == "pypi/repro_proj-0.1.0-py3-none-any.whl"
    assert wheels[0] == wheels[1]
    with zipfile.ZipFile(io.BytesIO(wheels[0])) as zf:
        names = zf.namelist()
        assert "repro_proj/sub/mod.py" in names and names[-1].endswith(".dist-info/RECORD")
        assert {i.date_time for i in zf.infolist()} == {(2023, 11, 14, 22, 13, 20)}
        assert zf.testzip() is None


# -- a sub-package, a git commit and an sdist ------------------------------------------------------------
def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin", "HOME": str(cwd)}).stdout.strip()


def _bare_repo(tmp_path: Path) -> tuple[Path, str, str]:
    """A bare repository with a setuptools project in `pkg/`; returns (bare dir, first commit, second)."""
    require_tool("git")
    work = write_source(tmp_path / "gitwork" / "pkg", "gitdep", backend="setuptools")
    repo = work.parent
    _git("init", "-q", "-b", "main", cwd=repo)
    _git("add", "-A", cwd=repo)
    _git("commit", "-q", "-m", "one", cwd=repo)
    first = _git("rev-parse", "HEAD", cwd=repo)
    (work / "gitdep" / "__init__.py").write_text('def main():\n    print("second")\n')
    _git("commit", "-q", "-am", "two", cwd=repo)
    second = _git("rev-parse", "HEAD", cwd=repo)
    bare = tmp_path / "gitdep.git"
    _git("clone", "-q", "--bare", str(repo), str(bare), cwd=tmp_path)
    return bare, first, second


def _sdist(tmp_path: Path, index_root: Path) -> tuple[str, str]:
    """An sdist (hatchling) served by the index server; returns (file name, sha256)."""
    import hashlib

    src = write_source(tmp_path / "sdistsrc" / "sdist_dep-1.0", "sdist-dep", backend="hatchling", version="1.0")
    name = "sdist_dep-1.0.tar.gz"
    target = index_root / "files" / name
    with tarfile.open(target, "w:gz") as tar:
        tar.add(src, arcname="sdist_dep-1.0")
    return name, hashlib.sha256(target.read_bytes()).hexdigest()


def test_subpackage_git_and_sdist_are_packed_and_imaged(index_server, tmp_path: Path) -> None:
    bare, first, _second = _bare_repo(tmp_path)
    sdist_name, sdist_sha = _sdist(tmp_path, index_server.state.root)
    records = conda_channel(tmp_path / "channel")
    project = write_source(tmp_path / "app", "app-main", backend="flit")
    write_source(project / "libs" / "common", "common-lib", backend="hatchling")
    _manifest(project, tmp_path / "channel", "app-main",
              deps='common-lib = { path = "./libs/common" }\n',
              settings='[tool.pixibuild]\noutputs = ["pack", "image"]\n')
    git_url = f"git+{bare.as_uri()}?subdirectory=pkg#{first}"
    pypi = [pypi_source("app-main", "./"), pypi_source("common-lib", "./libs/common"),
            PypiRecord("gitdep", "0.1.0", git_url),
            PypiRecord("sdist-dep", "1.0", f"{index_server.url}/files/{sdist_name}", sha256=sdist_sha)]
    write_project_lock(project, {"default": {HOST: [records[HOST]["python"], *pypi]}}, channel=tmp_path / "channel",
                       indexes=[f"{index_server.url}/simple"])
    write_dodo(project)
    env = {"PIXIBUILD_CACHE_DIR": str(tmp_path / "store"), "PIXIBUILD_BUILD_DIR": str(tmp_path / "build")}
    run = run_doit(project, "-n", "2", env=env)
    assert run.returncode == 0, run.output
    assert sorted(n.split("@")[0] for n in run.executed if n.startswith("wheel:")) == [
        "wheel:app-main", "wheel:common-lib", "wheel:gitdep", "wheel:sdist-dep"]
    assert [n for n in run.executed if n.startswith("git:")] == [f"git:{first[:12]}"]
    out = tmp_path / "build" / "default" / HOST
    with tarfile.open(out / "environment.tar") as tar:
        pypi_files = sorted(m for m in tar.getnames() if m.startswith("pypi/") and m.endswith(".whl"))
    assert pypi_files == ["pypi/app_main-0.1.0-py3-none-any.whl", "pypi/common_lib-0.1.0-py3-none-any.whl",
                          "pypi/gitdep-0.1.0-py3-none-any.whl", "pypi/sdist_dep-1.0-py3-none-any.whl"]
    top = _image_layers(out / "image.tar")[-1][1]
    site = f"app/.pixi/envs/default/lib/python{PY}/site-packages"
    for module in ("app_main", "common_lib", "gitdep", "sdist_dep"):
        assert f"{site}/{module}/__init__.py" in top
    # the wheel is the locked commit's code, not the branch head's
    with tarfile.open(out / "environment.tar") as tar:
        wheel = zipfile.ZipFile(io.BytesIO(tar.extractfile("pypi/gitdep-0.1.0-py3-none-any.whl").read()))
        assert "hello from gitdep" in wheel.read("gitdep/__init__.py").decode()
    assert run_doit(project, env=env).executed == []


# -- errors: one line each, nothing half-written ------------------------------------------------------------
def _error_project(tmp_path: Path, *, backend: str = "flit", indexes: list[str], platform: str = HOST,
                   setup_py: str | None = None, location: str = "./", name: str = "bad-proj") -> Path:
    records = conda_channel(tmp_path / "channel", subdirs=[platform])
    project = write_source(tmp_path / "proj", name, backend=backend,
                           extra_files={"setup.py": setup_py} if setup_py else None)
    _manifest(project, tmp_path / "channel", name)
    pypi = [pypi_source(name, location) if "://" not in location else PypiRecord(name, "0.1.0", location)]
    write_project_lock(project, {"default": {platform: [records[platform]["python"], *pypi]}},
                       channel=tmp_path / "channel", indexes=indexes)
    return project


def _assert_one_line_failure(tmp_path: Path, project: Path, capsys, *extra: str) -> str:
    out = tmp_path / "env.tar"
    code, err = _pack(str(project), "-o", str(out), "--cache-dir", str(tmp_path / "store"), *extra, capsys=capsys)
    assert code != 0 and len(err.splitlines()) == 1, err
    assert not out.exists()
    assert not list((tmp_path / "store" / "pypi" / "wheels").glob("*")) if (tmp_path / "store" / "pypi").exists() else True
    assert not list((tmp_path / "store" / "pypi" / "envs").glob("*.part")) if (tmp_path / "store" / "pypi").exists() else True
    return err


def test_error_backend_missing_offline(tmp_path: Path, capsys) -> None:
    project = _error_project(tmp_path, indexes=[DEAD_INDEX])
    err = _assert_one_line_failure(tmp_path, project, capsys)
    assert "bad-proj" in err and "flit_core" in err and f"no locked environment for {HOST}" in err
    assert "127.0.0.1:9" in err and "--ignore-pypi-non-wheel" in err


def test_error_failing_build_quotes_its_log(index_server, tmp_path: Path, capsys) -> None:
    # fails in the wheel build itself (not while asking for requirements)
    setup_py = ("import sys\nfrom setuptools import setup\n"
                "if 'bdist_wheel' in sys.argv:\n    raise RuntimeError('deliberate failure 4711')\nsetup()\n")
    project = _error_project(tmp_path, backend="setuptools", indexes=[f"{index_server.url}/simple"], setup_py=setup_py)
    err = _assert_one_line_failure(tmp_path, project, capsys)
    assert "bad-proj" in err and "wheel build failed" in err and "RuntimeError: deliberate failure 4711" in err


def test_error_git_commit_does_not_match(tmp_path: Path, capsys) -> None:
    bare, first, second = _bare_repo(tmp_path)
    wrong = "0" * 39 + "1"
    project = _error_project(tmp_path, indexes=[DEAD_INDEX], location=f"git+{bare.as_uri()}?rev=main&subdirectory=pkg#{wrong}",
                             name="gitdep")
    err = _assert_one_line_failure(tmp_path, project, capsys)
    assert f"rev 'main' is at commit {second}, but the lock pins {wrong}" in err
    assert not (tmp_path / "store" / "pypi" / "git" / wrong).exists()


def test_error_binary_wheel_for_a_foreign_platform(index_server, tmp_path: Path, capsys) -> None:
    foreign = "linux-aarch64" if HOST != "linux-aarch64" else "linux-64"
    setup_py = ("from setuptools import setup\nfrom setuptools.dist import Distribution\n"
                "class Binary(Distribution):\n    def has_ext_modules(self):\n        return True\n"
                "setup(distclass=Binary)\n")
    project = _error_project(tmp_path, backend="setuptools", indexes=[f"{index_server.url}/simple"],
                             setup_py=setup_py, platform=foreign)
    out = tmp_path / "env.tar"
    code, err = _pack(str(project), "-p", foreign, "-o", str(out), "--cache-dir", str(tmp_path / "store"),
                      capsys=capsys)
    assert code != 0 and len(err.splitlines()) == 1, err
    assert "not pure Python" in err and foreign in err and not out.exists()
    assert not list((tmp_path / "store" / "pypi" / "wheels").glob("*"))


def test_ignore_flag_skips_sources(tmp_path: Path, capsys) -> None:
    project = _error_project(tmp_path, indexes=[DEAD_INDEX])
    out = tmp_path / "env.tar"
    code, err = _pack(str(project), "-o", str(out), "--cache-dir", str(tmp_path / "store"), "--ignore-pypi-non-wheel",
                      capsys=capsys)
    assert code == 0, err
    with tarfile.open(out) as tar:
        assert not [m for m in tar.getnames() if m.startswith("pypi/") and m.endswith(".whl")]


# -- image --inject ------------------------------------------------------------------------------------------
def test_image_inject_wheel_goes_to_the_top_layer(tmp_path: Path, capsys) -> None:
    from support.wheel import write_wheel

    records = conda_channel(tmp_path / "channel")
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pixi.toml").write_text(f'[workspace]\nname = "inj"\nchannels = ["{(tmp_path / "channel").as_uri()}"]\n'
                                       f'platforms = ["{HOST}"]\n\n[dependencies]\npython = "*"\n')
    write_project_lock(project, {"default": {HOST: [records[HOST]["python"]]}}, channel=tmp_path / "channel",
                       indexes=[DEAD_INDEX])
    wheel = write_wheel(tmp_path / "w", "prebuilt-tool", "2.0", {"prebuilt_tool/__init__.py": b"X = 2\n"})
    out = tmp_path / "image.tar"
    code = main(["image", str(project), "-o", str(out), "--inject", str(wheel), "--cache-dir", str(tmp_path / "s")])
    assert code == 0, capsys.readouterr().err
    top = _image_layers(out)[-1][1]
    assert f"app/.pixi/envs/default/lib/python{PY}/site-packages/prebuilt_tool/__init__.py" in top


def test_image_inject_checks_dependencies_like_pack(tmp_path: Path, capsys) -> None:
    from pixibuild.demo.condapkg import PackageSpec, write_package

    records = conda_channel(tmp_path / "channel")
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pixi.toml").write_text(f'[workspace]\nname = "inj"\nchannels = ["{(tmp_path / "channel").as_uri()}"]\n'
                                       f'platforms = ["{HOST}"]\n\n[dependencies]\npython = "*"\n')
    write_project_lock(project, {"default": {HOST: [records[HOST]["python"]]}}, channel=tmp_path / "channel",
                       indexes=[DEAD_INDEX])
    needy = write_package(PackageSpec(name="needy", subdir="noarch", depends=["libmissing >=9"]), tmp_path, ".conda")
    out = tmp_path / "image.tar"
    code = main(["image", str(project), "-o", str(out), "--inject", str(needy), "--cache-dir", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and not out.exists()
    assert "package needy-1.0-0: dependency 'libmissing >=9' is not satisfied (the pack has nothing)" in err


def test_isolated_builds_use_pixis_pypi_config_when_the_lock_names_no_index(index_server, tmp_path: Path,
                                                                             capsys) -> None:
    """A lock that names no index (`indexes: []`): the isolated build environment's backends come from
    pixi's `[pypi-config] index-url` (the project's .pixi/config.toml here), not PyPI."""
    project = _error_project(tmp_path, indexes=[])
    assert "indexes: []" in (project / "pixi.lock").read_text()
    (project / ".pixi").mkdir()
    (project / ".pixi" / "config.toml").write_text(f'[pypi-config]\nindex-url = "{index_server.url}/simple"\n')
    out = tmp_path / "env.tar"
    code, err = _pack(str(project), "-o", str(out), "--cache-dir", str(tmp_path / "store"), capsys=capsys)
    assert code == 0, err
    with tarfile.open(out) as tar:
        assert "pypi/bad_proj-0.1.0-py3-none-any.whl" in tar.getnames()
    # without the config the same lock has nowhere to get flit_core from (PyPI is unreachable here)
    (project / ".pixi" / "config.toml").write_text(f'[pypi-config]\nindex-url = "{DEAD_INDEX}"\n')
    code, err = _pack(str(project), "-o", str(tmp_path / "env2.tar"), "--cache-dir", str(tmp_path / "store2"),
                      capsys=capsys)
    assert code != 0 and "127.0.0.1:9" in err, err


def test_an_sdist_whose_bytes_do_not_match_the_lock_fails_in_one_line(index_server, tmp_path: Path, capsys) -> None:
    """An sdist is a fetched blob like a conda package: its sha256 is checked before anything builds from it."""
    sdist_name, sdist_sha = _sdist(tmp_path, index_server.state.root)
    wrong = "0" * 64
    records = conda_channel(tmp_path / "channel", subdirs=[HOST])
    project = tmp_path / "proj"
    project.mkdir()
    _manifest(project, tmp_path / "channel", "sdist-user")
    sdist = PypiRecord("sdist-dep", "1.0", f"{index_server.url}/files/{sdist_name}", sha256=wrong)
    write_project_lock(project, {"default": {HOST: [records[HOST]["python"], sdist]}},
                       channel=tmp_path / "channel", indexes=[f"{index_server.url}/simple"])
    err = _assert_one_line_failure(tmp_path, project, capsys)
    assert "sdist_dep-1.0.tar.gz" in err and "sha256" in err and wrong in err and sdist_sha in err, err
