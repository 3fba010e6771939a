"""`unpack -s SHELL` / `shell-hook -s SHELL` for every shell pixi-unpack accepts (rattler_shell's list:
bash, zsh, fish, xonsh, powershell, cmd, nushell), and each POSIX-runnable script really activates in
its own shell: the prefix's bin first on PATH (the old PATH kept), CONDA_PREFIX, env_vars.d values
read back byte for byte, the activate.d scripts that shell runs, and the relocated `hello` binary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_tool
from pixibuild.demo.demo import write_demo
from pixibuild.install.activation import SCRIPT_EXT, SHELLS

TRICKY = 'a "quoted" \\back\\slash $HOME ${PATH} \'single\' ümlaut'
PATH = "/usr/local/bin:/usr/bin:/bin"

# shell → (interpreter argv before the script text, the script run in it: {activate} is the file)
RUNNERS = {
    "bash": (["bash", "--norc", "--noprofile", "-c"],
             '. {activate} && printf "%s\\n" "$CONDA_PREFIX" "$TRICKY" "${{HELLO_HOME:-unset}}" "$PATH" && hello'),
    "zsh": (["zsh", "-f", "-c"],
            '. {activate} && printf "%s\\n" "$CONDA_PREFIX" "$TRICKY" "${{HELLO_HOME:-unset}}" "$PATH" && hello'),
    "fish": (["fish", "--no-config", "-c"],
             'source {activate}; and printf "%s\\n" "$CONDA_PREFIX" "$TRICKY" (set -q HELLO_HOME; and echo $HELLO_HOME; '
             'or echo unset) (string join : $PATH); and hello'),
    "xonsh": (["xonsh", "--no-rc", "-c"],
              'source {activate}\nprint($CONDA_PREFIX)\nprint($TRICKY)\nprint(${{...}}.get("HELLO_HOME", "unset"))\n'
              'print(":".join($PATH), flush=True)\nhello'),
    "nushell": (["nu", "--no-config-file", "-c"],
                'source-env {activate}; print $env.CONDA_PREFIX; print $env.TRICKY; '
                'print ($env.HELLO_HOME? | default "unset"); print ($env.PATH | str join ":"); ^hello'),
}
NU_HOW = "not in Debian: .ci/run installs the official binary from npm, @nushell/linux-x64, and puts it on PATH"
TOOL = {"bash": "bash", "zsh": "zsh", "fish": "fish", "xonsh": "xonsh", "nushell": "nu"}
RUNS_SH_SCRIPTS = {"bash", "zsh", "xonsh"}  # fish and nushell run only .fish / .nu activate.d scripts


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's prod linux-64 environment unpacked, plus an env_vars.d value no quoting may change."""
    root = tmp_path_factory.mktemp("shells")
    webapp = write_demo(root / "demo")["webapp"]
    pack = root / "environment.tar"
    env = dict(os.environ, PIXIBUILD_CACHE_DIR=str(root / "store"))
    subprocess.run([sys.executable, "-m", "pixibuild", "pack", str(webapp), "-e", "prod", "-p", "linux-64",
                    "-o", str(pack)], check=True, env=env, capture_output=True)
    out = root / "out"
    subprocess.run([sys.executable, "-m", "pixibuild", "unpack", str(pack), "-o", str(out)], check=True,
                   capture_output=True)
    (out / "env" / "etc" / "conda" / "env_vars.d" / "zz-tricky.json").write_text(json.dumps({"TRICKY": TRICKY}))
    return out


@pytest.mark.parametrize("shell", SHELLS)
def test_unpack_writes_the_activation_script_of_every_pixi_unpack_shell(tmp_path: Path, shell: str) -> None:
    from pixibuild.cli import main

    webapp = write_demo(tmp_path / "demo")["webapp"]
    assert main(["pack", str(webapp), "-e", "prod", "-p", "linux-64", "-o", str(tmp_path / "e.tar")]) == 0
    assert main(["unpack", str(tmp_path / "e.tar"), "-o", str(tmp_path / "out"), "-s", shell]) == 0
    script = tmp_path / "out" / f"activate.{SCRIPT_EXT[shell]}"
    assert str(tmp_path / "out" / "env") in script.read_text(encoding="utf-8")
    assert {"xonsh": "xsh", "nushell": "nu"}.get(shell, SCRIPT_EXT[shell]) == script.suffix[1:]


def test_the_aliases_rattler_accepts_name_the_same_shells(unpacked: Path, capsys) -> None:
    from pixibuild.cli import main

    for alias, shell in (("nu", "nushell"), ("sh", "bash"), ("dash", "bash"), ("powershell_ise", "powershell")):
        assert main(["shell-hook", str(unpacked / "env"), "-s", alias]) == 0
        by_alias = capsys.readouterr().out
        assert main(["shell-hook", str(unpacked / "env"), "-s", shell]) == 0
        assert capsys.readouterr().out == by_alias


@pytest.mark.parametrize("shell", list(RUNNERS))
def test_the_activation_script_activates_in_its_shell(unpacked: Path, tmp_path: Path, shell: str) -> None:
    interpreter = require_tool(TOOL[shell], NU_HOW if shell == "nushell" else "")
    script = subprocess.run([sys.executable, "-m", "pixibuild", "shell-hook", str(unpacked / "env"), "-s", shell],
                            check=True, capture_output=True, text=True).stdout
    activate = tmp_path / f"activate.{SCRIPT_EXT[shell]}"
    activate.write_text(script, encoding="utf-8")
    argv, body = RUNNERS[shell]
    env = {"PATH": PATH, "HOME": str(tmp_path), "LANG": "C.UTF-8", "XONSH_SHOW_TRACEBACK": "1"}
    result = subprocess.run([interpreter, *argv[1:], body.format(activate=activate)], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, (script, result.stdout, result.stderr)
    prefix, tricky, hello_home, path, *hello = result.stdout.splitlines()
    env_dir = unpacked / "env"
    assert prefix == str(env_dir)
    assert tricky == TRICKY
    assert hello_home == (f"{env_dir}/share/hello" if shell in RUNS_SH_SCRIPTS else "unset")
    assert path.split(":")[0] == f"{env_dir}/bin" and path.endswith(PATH)  # prepended, the old PATH kept
    assert any(str(env_dir) in line for line in hello), hello  # the relocated binary ran from PATH
