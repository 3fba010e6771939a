"""`pixibuild unpack`: pixi-unpack compatible install of a pack (tar file, stdin, directory), its
activation script, and the shell-hook/entrypoint output the image rule reuses."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from install_oracle import tree, tree_diff
from pixibuild.install.activation import activate_script, activation_env, entrypoint_script
from pixibuild.cli import main
from pixibuild.install.existing import unowned_files
from pixibuild.conda.archive import record_from_archive
from pixibuild.pack.writer import PackContents, write_directory, write_tar
from pixibuild.conda.platforms import current_subdir
from pixibuild.conda.records import PypiRecord
from pixibuild.demo.condapkg import PackageSpec, PkgFile, write_package

PLATFORM = current_subdir()


def _specs() -> list[PackageSpec]:
    return [
        PackageSpec("python", "3.11.4", "h0_cpython", subdir=PLATFORM, files=[
            # a stand-in interpreter: the host's python3, seeing the prefix's site-packages
            PkgFile("bin/python3.11", b'#!/bin/sh\nhere="$(cd "$(dirname "$0")/.." && pwd)"\n'
                    b'PYTHONPATH="$here/lib/python3.11/site-packages" exec python3 "$@"\n', 0o755),
            PkgFile("bin/python", symlink="python3.11")]),
        PackageSpec("tool", "1.0", "h0_0", subdir=PLATFORM, depends=("python",), files=[
            PkgFile("bin/tool", b"#!/bin/sh\necho tool at @PREFIX@\n", 0o755, prefix="text"),
            PkgFile("etc/conda/env_vars.d/tool.json", b'{"TOOL_HOME": "@PREFIX@/share/tool", "B_VAR": "b"}\n', prefix="text"),
            PkgFile("etc/conda/activate.d/10-first.sh", b'export ORDER="${ORDER}first,"\n'),
            PkgFile("etc/conda/activate.d/20-second.sh", b'export ORDER="${ORDER}second"\n'),
            PkgFile("conda-meta/state", b'{"env_vars": {"from_state": "yes"}}\n')]),
        PackageSpec("app", "0.1", "pyh0_0", subdir="noarch", noarch="python", depends=("python",),
                    entry_points=("app-cli = app:main",),
                    files=[PkgFile("site-packages/app/__init__.py", b"def main():\n    print('app ok')\n")]),
    ]


def _wheel(out: Path) -> Path:
    """A minimal valid wheel with a console script."""
    files = {
        "demo_whl/__init__.py": b"def main():\n    print('wheel ok')\n",
        "demo_whl-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: demo-whl\nVersion: 1.0\n",
        "demo_whl-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "demo_whl-1.0.dist-info/entry_points.txt": b"[console_scripts]\ndemo-whl = demo_whl:main\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("demo_whl-1.0.dist-info/RECORD,,")
    files["demo_whl-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    path = out / "demo_whl-1.0-py3-none-any.whl"
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _contents(tmp: Path, platform: str = PLATFORM) -> PackContents:
    archives = [write_package(s, tmp / "channel" / s.subdir) for s in _specs()]
    wheel = _wheel(tmp / "wheels")
    return PackContents(platform=platform, conda=[(record_from_archive(a), a) for a in archives],
                        wheels=[(PypiRecord("demo-whl", "1.0", wheel.name), wheel)])


def _pack(tmp: Path, platform: str = PLATFORM) -> Path:
    out = tmp / "environment.tar"
    with open(out, "wb") as f:
        write_tar(_contents(tmp, platform), f)
    return out


def _check_env(out: Path) -> None:
    env = out / "env"
    assert (env / "bin/tool").read_text() == f"#!/bin/sh\necho tool at {env}\n"
    assert (env / "conda-meta/history").read_bytes() == b"// not relevant for pixi but for `conda run -p`"
    assert (env / "lib/python3.11/site-packages/app/__init__.py").exists()
    assert (env / "bin/app-cli").read_text().startswith(f"#!{env}/bin/python3.11\n")
    dist = env / "lib/python3.11/site-packages/demo_whl-1.0.dist-info"
    assert (dist / "INSTALLER").read_text() == "pixibuild"
    assert "demo_whl/__init__.py" in (dist / "RECORD").read_text()
    assert (env / "bin/demo-whl").read_text().startswith(f"#!{env}/bin/python3.11")
    assert len(list((env / "conda-meta").glob("*.json"))) == 3


def test_unpack_tar_file(tmp_path: Path) -> None:
    pack = _pack(tmp_path)
    out = tmp_path / "out"
    assert main(["unpack", str(pack), "-o", str(out)]) == 0
    _check_env(out)
    script = (out / "activate.sh").read_text()
    assert script.startswith(f'export PATH="{out}/env/bin:${{PATH}}"\nexport CONDA_SHLVL=1\n')
    result = subprocess.run(["bash", "-c", f'. "{out}/activate.sh"; echo "$CONDA_PREFIX|$CONDA_SHLVL|$TOOL_HOME|'
                             '$FROM_STATE|$ORDER"; command -v tool; app-cli; demo-whl'],
                            capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"})
    lines = result.stdout.splitlines()
    assert lines[0] == f"{out}/env|1|{out}/env/share/tool|yes|first,second"
    assert lines[1] == f"{out}/env/bin/tool"
    assert lines[2:] == ["app ok", "wheel ok"]
    # every file is owned by a conda package or a wheel's RECORD (what `unpack` over it would report)
    assert unowned_files(out / "env") == []


def test_unpack_matches_rattler_with_alternative_prefix(tmp_path: Path) -> None:
    """Physical vs logical prefix: rattler installing elsewhere but patching for out/env agrees with us."""
    rattler = pytest.importorskip("rattler")
    contents = _contents(tmp_path)
    pack = tmp_path / "environment.tar"
    with open(pack, "wb") as f:
        write_tar(contents, f)
    out = tmp_path / "out"
    assert main(["unpack", str(pack), "-o", str(out)]) == 0

    async def oracle() -> None:
        records = [await rattler.RepoDataRecord.from_package_archive(p) for _, p in contents.conda]
        await rattler.install(records, tmp_path / "r", cache_dir=tmp_path / "cache", show_progress=False,
                              alternative_target_prefix=str(out / "env"))

    asyncio.run(oracle())
    ours = {k: v for k, v in tree(out / "env").items() if "demo_whl" not in k and k != "bin/demo-whl"}
    assert tree_diff(tree(tmp_path / "r"), ours) == []


def test_unpack_stdin_and_directory(tmp_path: Path) -> None:
    pack = _pack(tmp_path)
    out = tmp_path / "from-stdin"
    subprocess.run([sys.executable, "-m", "pixibuild", "unpack", "-", "-o", str(out)], stdin=open(pack, "rb"),
                   check=True, capture_output=True)
    _check_env(out)
    directory = tmp_path / "pack-dir"
    write_directory(_contents(tmp_path / "again"), directory)
    out2 = tmp_path / "from-dir"
    assert main(["unpack", str(directory), "-o", str(out2), "-e", "env", "-s", "fish"]) == 0
    _check_env(out2)
    assert (out2 / "activate.fish").read_text().startswith(f"set -gx PATH {out2}/env/bin $PATH\n")


def test_unpack_other_platform_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = "linux-aarch64" if PLATFORM != "linux-aarch64" else "linux-64"
    pack = _pack(tmp_path, other)
    assert main(["unpack", str(pack), "-o", str(tmp_path / "out")]) == 2
    assert "The pack was created for a different platform" in capsys.readouterr().err
    assert not (tmp_path / "out" / "env").exists()


def test_unpack_bad_version_and_missing_pack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "pack"
    directory.mkdir()
    (directory / "pixi-pack.json").write_text(json.dumps({"version": "2", "platform": PLATFORM}))
    assert main(["unpack", str(directory), "-o", str(tmp_path / "o")]) == 2
    assert "Unsupported pixi-pack version: 2" in capsys.readouterr().err
    assert main(["unpack", str(tmp_path / "nope.tar")]) == 2


def test_activation_shells_and_entrypoint(tmp_path: Path) -> None:
    contents = _contents(tmp_path)
    from pixibuild.install.environment import install_environment

    prefix = tmp_path / "staging"
    install_environment(contents.conda, prefix, target_prefix="/app/.pixi/envs/prod", platform=PLATFORM)
    env = activation_env(prefix, "/app/.pixi/envs/prod", "linux-64", base_path="/usr/bin:/bin")
    assert env["PATH"] == "/app/.pixi/envs/prod/bin:/usr/bin:/bin"
    assert env["TOOL_HOME"] == "/app/.pixi/envs/prod/share/tool" and env["FROM_STATE"] == "yes"
    assert list(env)[:3] == ["PATH", "CONDA_SHLVL", "CONDA_PREFIX"]
    ps = activate_script(prefix, "/app/.pixi/envs/prod", "powershell")
    assert "$Env:CONDA_PREFIX = '/app/.pixi/envs/prod'" in ps
    cmd = activate_script(prefix, "C:\\envs\\prod", "cmd")
    assert cmd.startswith("@chcp 65001 > nul\r\n@SET \"Path=C:\\envs\\prod;C:\\envs\\prod\\Library\\mingw-w64\\bin;")
    entry = entrypoint_script(prefix, str(prefix))
    assert entry.startswith("#!/bin/sh\n") and entry.endswith('exec "$@"\n')
    script = tmp_path / "entry.sh"
    script.write_text(entry)
    result = subprocess.run(["sh", str(script), "sh", "-c", 'echo "$CONDA_PREFIX $ORDER"'], capture_output=True,
                            text=True, check=True, env={"PATH": "/usr/bin:/bin"})
    assert result.stdout.strip() == f"{prefix} first,second"


def test_shell_hook_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    contents = _contents(tmp_path)
    from pixibuild.install.environment import install_environment

    prefix = tmp_path / "env"
    install_environment(contents.conda, prefix, platform=PLATFORM)
    assert main(["shell-hook", "-p", str(prefix)]) == 0
    assert capsys.readouterr().out == activate_script(prefix, str(prefix), "bash")
    assert main(["shell-hook", "-p", str(prefix), "--entrypoint", "--target-prefix", "/opt/env"]) == 0
    assert capsys.readouterr().out.endswith('exec "$@"\n')
    assert main(["shell-hook", "-p", str(tmp_path / "missing")]) == 2


def test_shell_hook_takes_the_prefix_as_a_positional_argument(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`pixibuild shell-hook PREFIX` (the README's form) prints the same as `-p PREFIX`."""
    contents = _contents(tmp_path)
    from pixibuild.install.environment import install_environment

    prefix = tmp_path / "env"
    install_environment(contents.conda, prefix, platform=PLATFORM)
    assert main(["shell-hook", str(prefix), "-s", "fish"]) == 0
    assert capsys.readouterr().out == activate_script(prefix, str(prefix), "fish")
    assert main(["shell-hook", str(prefix), "-p", str(prefix)]) == 0  # the same prefix twice is fine
    capsys.readouterr()
    assert main(["shell-hook", str(prefix), "-p", str(tmp_path)]) == 2
    assert "either as PREFIX or -p/--prefix" in capsys.readouterr().err
