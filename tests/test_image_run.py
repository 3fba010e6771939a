"""Images that start: the demo's (busybox base), a scratch base without any shell (the command runs
directly with the activation baked into the config), a shell from the environment, the manifest's
activation inside a real image, and a non-root user."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import require_tool, skip_unless_ci
from oci_helpers import require_busybox, run_as, skopeo, unpack_image

from pixibuild.cli import main
from pixibuild.demo.condapkg import PackageSpec, PkgFile, locked_record, write_package
from pixibuild.demo.demo import compile_hello, write_demo
from pixibuild.inputs.lockfile import read_lock
from pixibuild.oci.build import build_image
from pixibuild.oci.layer import LayerCache
from pixibuild.oci.layout import write_oci_dir
from pixibuild.oci.rootfs import merged_tree

PREFIX = "/app/.pixi/envs/prod"


@pytest.fixture
def shared_tmp():
    """A directory other uids can traverse (pytest's tmp_path is 0700 root): bundles run as uid 1000."""
    path = Path(tempfile.mkdtemp(prefix="pixibuild-run-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def demo(tmp_path: Path) -> dict[str, Path]:
    require_busybox()
    return write_demo(tmp_path / "demo")


def _build(demo_project: Path, out_dir: Path, *flags: str, env: str = "prod", tag: str = "t:1") -> Path:
    layout = out_dir / f"layout-{env}"
    assert main(["image", str(demo_project), "-e", env, "-p", "linux-64", "--oci-dir", str(layout), "--tag", tag,
                 "--cache-dir", str(out_dir / "cache"), *flags]) == 0
    return layout


def _config(layout: Path, tag: str = "1") -> dict:
    return json.loads(skopeo("inspect", "--config", f"oci:{layout}:{tag}"))


def test_demo_image_runs_with_the_readme_commands(demo, shared_tmp: Path, store_dir) -> None:
    """Issue: the Quick start's images could not start (scratch, no /bin/sh). The demo's base now has
    busybox; the README's `umoci unpack` + `bwrap` lines run it."""
    layout = _build(demo["webapp"], shared_tmp)
    assert _config(layout)["config"]["Entrypoint"] == ["/entrypoint.sh"]
    bundle = unpack_image(layout, "1", shared_tmp / "bundle")
    res = subprocess.run([require_tool("bwrap"), "--bind", str(bundle / "rootfs"), "/", "--proc", "/proc", "--dev",
                          "/dev", "--tmpfs", "/tmp", "--unshare-all", "--chdir", "/app", "/entrypoint.sh", "hello"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("Hello from the pixibuild demo!")
    # the package's activate.d script ran
    res = run_as(bundle, 0, 0, ["sh", "-c", 'echo "$HELLO_HOME"'])
    assert res.returncode == 0 and res.stdout.strip() == f"{PREFIX}/share/hello", res.stderr


def test_scratch_image_without_a_shell_runs_its_command_with_the_activation_in_its_config(
        demo, shared_tmp: Path, store_dir, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """No /bin/sh anywhere: no entrypoint that can never run; Cmd runs directly; the activation's
    variables are in Env; one warning for two images with the same unrunnable script."""
    if compile_hello() is None:
        skip_unless_ci("gcc with static libc not available: the demo's hello is then a shell script")
    from pixibuild.oci import build as build_module

    monkeypatch.setattr(build_module, "_WARNED", set())  # once per process: earlier tests said it already
    caplog.set_level(logging.WARNING)
    layouts = [_build(demo["webapp"], shared_tmp, "--base", "scratch", env=env) for env in ("prod", "default")]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "etc/conda/activate.d/hello.sh" in warnings[0], warnings
    config = _config(layouts[0])["config"]
    assert "Entrypoint" not in config and config["Cmd"] == ["hello"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["PATH"].startswith(f"{PREFIX}/bin:") and env["CONDA_PREFIX"] == PREFIX
    assert env["HELLO_GREETING"] == "hi" and env["PIXI_ENVIRONMENT_NAME"] == "prod"
    bundle = unpack_image(layouts[0], "1", shared_tmp / "bundle")
    assert not (bundle / "rootfs" / "entrypoint.sh").exists() and not (bundle / "rootfs" / "bin").exists()
    res = run_as(bundle, 0, 0)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"Hello from the pixibuild demo!\nprefix: {PREFIX}\n"


def test_no_warning_when_nothing_needs_a_shell(demo, shared_tmp: Path, store_dir,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """The worker environment has no activation scripts: a shell-less image loses nothing."""
    caplog.set_level(logging.WARNING)
    assert main(["image", str(demo["worker"]), "-p", "linux-64", "--base", "scratch", "--oci-dir",
                 str(shared_tmp / "w"), "--cache-dir", str(shared_tmp / "c")]) == 0
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_quickstart_build_warns_once(tmp_path: Path) -> None:
    """The Quick start's doit run: four images; the aarch64 ones have no shell (busybox is for this
    host's arch) and one warning says so, instead of four."""
    from support.doitrun import run_doit, write_dodo

    require_busybox()
    root = tmp_path / "ws"
    write_demo(root)
    write_dodo(root)
    run = run_doit(root, "-n", "2", env={"PIXIBUILD_CACHE_DIR": str(root / "store"),
                                         "PIXIBUILD_BUILD_DIR": str(root / "build")})
    assert run.returncode == 0, run.output
    assert run.output.count("no /bin/sh") == 1, run.output
    # a line of its own, in the form of planning's warnings, naming the images it is about
    assert "\npixibuild: warning: linux-aarch64 image: no /bin/sh in the base image" in run.output, run.output


def _shell_package(tmp: Path):
    busybox = require_busybox()
    spec = PackageSpec("busybox-shell", "1.0", "0", subdir="linux-64",
                       files=[PkgFile("bin/busybox", busybox.read_bytes(), 0o755), PkgFile("bin/sh", symlink="busybox")])
    path = write_package(spec, tmp)
    return locked_record(spec, path), path


def test_a_shell_from_the_environment_runs_the_entrypoint(demo, shared_tmp: Path) -> None:
    env = read_lock(demo["webapp"] / "pixi.lock").environment("prod")
    from urllib.parse import unquote, urlparse

    packages = [(r, Path(unquote(urlparse(r.url).path))) for r in env.conda_packages("linux-64")]
    packages.append(_shell_package(shared_tmp / "pkgs"))
    result = build_image(packages, platform="linux-64", target_prefix=PREFIX, cache=LayerCache(shared_tmp / "c"))
    config = json.loads(result.image.config)["config"]
    assert config["Entrypoint"] == [f"{PREFIX}/bin/sh", "/entrypoint.sh"]
    layout = write_oci_dir(result.image, shared_tmp / "layout", tag="x:1")
    bundle = unpack_image(layout, "1", shared_tmp / "bundle")
    res = run_as(bundle, 0, 0, ["sh", "-c", 'echo "$HELLO_HOME"'], entrypoint_words=2)
    assert res.returncode == 0 and res.stdout.strip() == f"{PREFIX}/share/hello", res.stderr


def test_manifest_activation_runs_inside_the_image(demo, shared_tmp: Path, store_dir) -> None:
    webapp = demo["webapp"]
    (webapp / "scripts").mkdir()
    (webapp / "scripts" / "setup.sh").write_text('export FROM_SCRIPT="ran in $PIXI_PROJECT_ROOT"\n'
                                                 'export OVERRIDDEN=by-script\n')
    manifest = webapp / "pixi.toml"
    text = manifest.read_text().replace("[tool.pixibuild]", '[activation]\nscripts = ["scripts/setup.sh"]\n'
                                        'env = { OVERRIDDEN = "by-activation-env", HELLO_GREETING = "manifest" }\n\n'
                                        '[target.linux-64.activation.env]\nWHERE = "$CONDA_PREFIX/x"\n\n'
                                        "[tool.pixibuild]")
    manifest.write_text(text)
    layout = _build(webapp, shared_tmp)
    bundle = unpack_image(layout, "1", shared_tmp / "bundle")
    assert (bundle / "rootfs/app/scripts/setup.sh").is_file()
    res = run_as(bundle, 0, 0, ["sh", "-c", 'echo "$FROM_SCRIPT|$OVERRIDDEN|$HELLO_GREETING|$WHERE|$PIXI_PROJECT_NAME"'])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"ran in /app|by-activation-env|manifest|{PREFIX}/x|webapp"
    env = dict(e.split("=", 1) for e in _config(layout)["config"]["Env"])
    # plain values are in the config; one that references a variable a script might change is not
    assert env["HELLO_GREETING"] == "manifest" and env["OVERRIDDEN"] == "by-activation-env" and "WHERE" not in env


def test_non_root_user_writes_app_and_home_but_not_the_environment(demo, shared_tmp: Path, store_dir) -> None:
    layout = _build(demo["webapp"], shared_tmp, "--user", "1000:1000")
    config = _config(layout)["config"]
    assert config["User"] == "1000:1000"
    bundle = unpack_image(layout, "1", shared_tmp / "bundle")
    rootfs = bundle / "rootfs"
    assert rootfs.joinpath("etc/passwd").read_text().splitlines()[-1] == "app:x:1000:1000:app:/home/app:/bin/sh"
    assert rootfs.joinpath("etc/group").read_text().splitlines()[-1] == "app:x:1000:"
    script = ('id -u; id -g; echo ok > /app/written && cat /app/written; echo $HOME; touch "$HOME/h" && echo home; '
              f'touch {PREFIX}/bin/intruder 2>/dev/null || echo env-read-only; hello | head -n 1')
    res = run_as(bundle, 1000, 1000, ["sh", "-c", script])
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[:7] == ["1000", "1000", "ok", "/home/app", "home", "env-read-only",
                                          "Hello from the pixibuild demo!"]
    assert (rootfs / "app" / "written").stat().st_uid == 1000
    assert not (rootfs / PREFIX.lstrip("/") / "bin" / "intruder").exists()


def test_user_on_a_scratch_base_gets_owned_dirs_and_home_without_passwd(demo, shared_tmp: Path, store_dir) -> None:
    layout = _build(demo["worker"], shared_tmp, "--base", "scratch", "--user", "4242", env="default")
    from pixibuild.oci.layer import Layer

    manifest = json.loads(skopeo("inspect", "--raw", f"oci:{layout}:1"))
    layers = [Layer(d["digest"], "", d["size"], layout / "blobs" / "sha256" / d["digest"].split(":")[1], d["mediaType"])
              for d in manifest["layers"]]
    tree = merged_tree(layers)
    assert (tree["app"].uid, tree["app"].gid) == (4242, 4242) and (tree["home/app"].uid, tree["home/app"].gid) == (4242, 4242)
    assert tree["app/.pixi"].uid == 0 and "etc/passwd" not in tree
    config = _config(layout)["config"]
    assert config["User"] == "4242:4242" and "HOME=/home/app" in config["Env"]


@pytest.mark.parametrize("user", ["root", "0", "1000:x", "-1"])
def test_bad_user_is_one_line_exit_2(demo, tmp_path: Path, capsys, store_dir, user: str) -> None:
    out = tmp_path / "x.tar"
    assert main(["image", str(demo["webapp"]), "-e", "prod", "-p", "linux-64", "--user", user, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "user" in err, err
    assert not out.exists()


def test_a_zstd_image_is_read_by_containers_image_and_runs(demo, shared_tmp: Path, store_dir, capsys) -> None:
    """`--compression zstd` end to end: every layer we build is tar+zstd; containers/image (skopeo: the
    library of podman and CRI-O) reads them, computing the same diff_ids our config claims, and the image
    it writes back with gzip layers (umoci 0.4 reads no zstd) starts and runs the demo's program.
    `--help` says which runtimes read zstd."""
    layout = _build(demo["webapp"], shared_tmp, "--compression", "zstd")
    manifest = json.loads(skopeo("inspect", "--raw", f"oci:{layout}:1"))
    ours = [layer["mediaType"] for layer in manifest["layers"]]
    config = _config(layout)
    assert ours.count("application/vnd.oci.image.layer.v1.tar+zstd") >= len(ours) - 1, ours  # the base's stays gzip
    gzip_layout = shared_tmp / "gzip-layout"
    skopeo("copy", "--dest-compress-format", "gzip", "--dest-compress", f"oci:{layout}:1", f"oci:{gzip_layout}:1")
    assert _config(gzip_layout)["rootfs"]["diff_ids"] == config["rootfs"]["diff_ids"]
    bundle = unpack_image(gzip_layout, "1", shared_tmp / "bundle")
    res = run_as(bundle, 0, 0, ["hello"])
    assert res.returncode == 0 and res.stdout.startswith("Hello from the pixibuild demo!"), res.stderr
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["image", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "zstd layers are read by" in help_text and "containerd >= 1.5" in help_text and "podman" in help_text
