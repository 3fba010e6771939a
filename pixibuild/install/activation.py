"""Activation of an installed prefix, as rattler_shell (pixi shell-hook, pixi-unpack) writes it.

Order matters and matches rattler_shell's `Activator::activation`: PATH, CONDA_SHLVL, CONDA_PREFIX,
variables from `etc/conda/env_vars.d/*.json` (sorted) then `conda-meta/state` `env_vars`, then
sourcing each `etc/conda/activate.d/*.<ext>` script in sorted order. The prefix on disk
(`prefix_dir`) is only read; the scripts name the *logical* prefix (`target_prefix`), e.g. the path
inside an image.

`pixi shell-hook` adds the manifest's part (`ManifestActivation`, pixi's `get_activator`): its
metadata variables (PIXI_PROJECT_*, CONDA_DEFAULT_ENV, PIXI_ENVIRONMENT_*) join the packages'
variables before any script, the manifest's `activation.scripts` are sourced after the packages'
activate.d scripts, and `activation.env` is exported last ("post-activation"), so it wins over
both kinds of script — pixi's documented priority `activation.env` > `activation.scripts` >
activation scripts of dependencies.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from pixibuild.errors import InputError
from pixibuild.conda.platforms import current_subdir, is_windows

SHELLS = ("bash", "zsh", "fish", "xonsh", "powershell", "cmd", "nushell")
"""Every shell pixi-unpack writes activation for (rattler_shell's ShellEnum)."""
SHELL_ALIASES = {"sh": "bash", "dash": "bash", "ksh": "bash", "busybox": "bash", "nu": "nushell",
                 "powershell_ise": "powershell"}
"""Other names rattler_shell's ShellEnum::from_str accepts for the same scripts."""
SCRIPT_EXT = {"bash": "sh", "zsh": "sh", "fish": "fish", "xonsh": "xsh", "powershell": "ps1", "cmd": "bat",
              "nushell": "nu"}
"""The activate.<ext> pixi-unpack writes for each shell."""
SOURCED_EXTS = {**{shell: (ext,) for shell, ext in SCRIPT_EXT.items()}, "xonsh": ("xsh", "sh")}
"""The activate.d script kinds each shell runs (xonsh also runs .sh ones, through `source-bash`)."""


def shell_name(text: str) -> str:
    """A shell as `-s` accepts it: one of SHELLS or an alias of one (argparse `type`)."""
    return SHELL_ALIASES.get(text, text)


@dataclass(frozen=True)
class ManifestActivation:
    """What a pixi manifest adds to one environment's activation on one platform (see the module
    docstring for where each part goes)."""

    metadata: tuple[tuple[str, str], ...] = ()
    """PIXI_PROJECT_*, CONDA_DEFAULT_ENV, PIXI_ENVIRONMENT_*, PIXI_PROMPT: set before any script."""
    scripts: tuple[str, ...] = ()
    """`activation.scripts` as paths where they will be sourced (the project dir inside an image)."""
    env: tuple[tuple[str, str], ...] = ()
    """`activation.env` in pixi's merge order: exported after every script."""


def pixi_metadata(*, project_root: str, project_name: str, manifest_path: str, version: str | None,
                  environment: str, platforms: tuple[str, ...] | list[str]) -> tuple[tuple[str, str], ...]:
    """The variables pixi derives from the workspace and environment (pixi_core's `get_metadata_env`
    and `get_static_environment_variables`), in its order. PIXI_EXE is left out: no pixi binary
    is where this activation runs."""
    prompt_name = project_name if environment == "default" else f"{project_name}:{environment}"
    return (("PIXI_PROJECT_ROOT", project_root), ("PIXI_PROJECT_NAME", project_name),
            ("PIXI_PROJECT_MANIFEST", manifest_path), ("PIXI_PROJECT_VERSION", version or "NO_VERSION_SPECIFIED"),
            ("PIXI_IN_SHELL", "1"), ("CONDA_DEFAULT_ENV", prompt_name), ("PIXI_ENVIRONMENT_NAME", environment),
            ("PIXI_ENVIRONMENT_PLATFORMS", ",".join(platforms)), ("PIXI_PROMPT", f"({prompt_name}) "))


def _join(prefix: str, rel: str, windows: bool) -> str:
    sep = "\\" if windows else "/"
    return prefix.rstrip("/\\") + sep + rel.replace("/", sep)


def path_entries(target_prefix: str, platform: str) -> list[str]:
    """Directories an activated prefix puts in front of PATH."""
    if is_windows(platform):
        rels = ["", "Library/mingw-w64/bin", "Library/usr/bin", "Library/bin", "Scripts", "bin"]
        return [target_prefix.rstrip("/\\") if not r else _join(target_prefix, r, True) for r in rels]
    return [_join(target_prefix, "bin", False)]


def environment_variables(prefix_dir: Path) -> dict[str, str]:
    """env_vars.d/*.json (sorted, later files win) then conda-meta/state env_vars (keys uppercased)."""
    out: dict[str, str] = {}
    env_dir = prefix_dir / "etc" / "conda" / "env_vars.d"
    if env_dir.is_dir():
        for path in sorted(env_dir.glob("*.json")):
            data = _read_json(path)
            if not isinstance(data, dict):
                raise InputError(f"{path}: expected a JSON object of variables")
            for key, value in data.items():
                out[str(key)] = str(value)
    state = prefix_dir / "conda-meta" / "state"
    if state.is_file():
        data = _read_json(state)
        env_vars = data.get("env_vars", {}) if isinstance(data, dict) else {}
        if isinstance(env_vars, dict):
            for key, value in env_vars.items():
                out[str(key).upper()] = str(value)
    return out


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read JSON ({exc})") from None


def activation_scripts(prefix_dir: Path, target_prefix: str, shell: str) -> list[str]:
    """activate.d scripts for `shell`, sorted by name (kinds mixed, as rattler does), as paths under
    the logical prefix."""
    folder = prefix_dir / "etc" / "conda" / "activate.d"
    if not folder.is_dir():
        return []
    windows = shell == "cmd"
    return [_join(target_prefix, f"etc/conda/activate.d/{p.name}", windows)
            for p in sorted(folder.iterdir()) if p.is_file() and p.suffix[1:] in SOURCED_EXTS[shell]]


_SIMPLE_REFERENCE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def expand_static(value: str, known: Mapping[str, str]) -> str | None:
    """`value` as `export K="value"` would expand it, for `$NAME`/`${NAME}` references (unset → empty,
    as in a shell); None when it needs a real shell (command substitution, `${X:-y}`, `$1`, quoting)."""
    if "$" not in value:
        return value
    if any(c in value for c in "`\\\"'"):
        return None
    expanded = _SIMPLE_REFERENCE.sub(lambda m: known.get(m.group(1) or m.group(2), ""), value)
    rest = _SIMPLE_REFERENCE.sub("", value)
    return None if "$" in rest else expanded


@dataclass(frozen=True)
class StaticActivation:
    """What activation sets, evaluated without a shell: `env` (in activation order) and the names of
    variables whose value needs a shell (`unresolved`)."""

    env: dict[str, str]
    unresolved: tuple[str, ...]


def static_activation(prefix_dir: Path, target_prefix: str, platform: str, *, base_env: Mapping[str, str],
                      manifest: ManifestActivation | None = None, scripts_run: bool) -> StaticActivation:
    """The variables activation sets, as plain values for an image config's `Env`.

    PATH is the prefix's entries followed by the base's PATH. `$NAME` references are expanded with
    what is known at that point (the base's Env, then each variable in order). When scripts run
    (`scripts_run`), a value exported after them that references a variable cannot be known here:
    it is left to the entrypoint and listed in `unresolved`."""
    sep = ";" if is_windows(platform) else ":"
    base_path = base_env.get("PATH")
    entries = path_entries(target_prefix, platform) + ([base_path] if base_path else [])
    known = dict(base_env)
    env: dict[str, str] = {}
    unresolved: list[str] = []

    def put(key: str, value: str, after_scripts: bool, expands: bool = True) -> None:
        if not expands or "$" not in value:
            plain: str | None = value
        else:
            plain = None if after_scripts and scripts_run else expand_static(value, known)
        if plain is None:
            unresolved.append(key)
            env.pop(key, None)
            known.pop(key, None)
        else:
            env[key] = known[key] = plain

    for key, value in (("PATH", sep.join(entries)), ("CONDA_SHLVL", "1"), ("CONDA_PREFIX", target_prefix)):
        env[key] = known[key] = value
    for key, value in environment_variables(Path(prefix_dir)).items():
        put(key, value, False, expands=False)
    manifest = manifest or ManifestActivation()
    for key, value in manifest.metadata:
        put(key, value, False, expands=False)
    has_scripts = bool(manifest.scripts or activation_scripts(Path(prefix_dir), target_prefix, "bash"))
    for key, value in manifest.env:
        put(key, value, has_scripts)
    return StaticActivation(env, tuple(dict.fromkeys(unresolved)))


def activation_env(prefix_dir: Path, target_prefix: str | None = None, platform: str | None = None,
                   base_path: str | None = None) -> dict[str, str]:
    """The variables activation sets (what an image config's Env needs), in activation order.

    PATH is the prefix's entries followed by `base_path` when given.
    """
    platform = platform or current_subdir()
    target_prefix = target_prefix or str(prefix_dir)
    sep = ";" if is_windows(platform) else ":"
    entries = path_entries(target_prefix, platform) + ([base_path] if base_path else [])
    env = {"PATH": sep.join(entries), "CONDA_SHLVL": "1", "CONDA_PREFIX": target_prefix}
    env.update(environment_variables(Path(prefix_dir)))
    return env


def _q(value: str) -> str:
    return shlex.quote(value)


def _dq(value: str) -> str:
    """A double-quoted string for shells with backslash escapes (xonsh, nushell), as rattler_shell escapes."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _nu_name(name: str) -> str:
    """rattler_shell's quote_if_required: a variable name with other than [A-Za-z0-9_-] is quoted."""
    return name if all(c.isascii() and (c.isalnum() or c in "_-") for c in name) else f'"{name}"'


def _bash_export(key: str, value: str) -> str:
    """rattler_shell's Bash `set_env_var` for the manifest's `activation.env`: a value with `$` goes
    in double quotes so the shell expands the references (only `"` escaped; pixi documents that
    `$VAR` there is expanded); anything else is quoted literally. Package values (env_vars.d) stay
    literal, as conda writes them."""
    if "$" in value:
        return f'export {key}="{value.replace(chr(34), chr(92) + chr(34))}"'
    return f"export {key}={_q(value)}"


def activate_script(prefix_dir: Path, target_prefix: str | None = None, shell: str = "bash",
                    platform: str | None = None, manifest: ManifestActivation | None = None) -> str:
    """The activation script text for `shell` (one of SHELLS), in rattler_shell's syntax for it.
    `manifest` (bash/zsh only: what an image entrypoint needs) adds the pixi manifest's part in
    `pixi shell-hook`'s order."""
    shell = shell_name(shell)
    if shell not in SHELLS:
        raise InputError(f"unknown shell {shell!r} (choose from {', '.join(SHELLS)})")
    if manifest is not None and shell not in ("bash", "zsh"):
        raise InputError(f"manifest activation is written for POSIX shells, not {shell}")
    platform = platform or ("win-64" if shell == "cmd" else current_subdir())
    target_prefix = target_prefix or str(prefix_dir)
    entries = path_entries(target_prefix, platform)
    variables = environment_variables(Path(prefix_dir))
    scripts = activation_scripts(Path(prefix_dir), target_prefix, shell)
    sep = ";" if is_windows(platform) else ":"
    lines: list[str] = []
    if shell in ("bash", "zsh"):
        manifest = manifest or ManifestActivation()
        lines.append(f'export PATH="{sep.join(entries)}:${{PATH}}"')
        lines.append("export CONDA_SHLVL=1")
        lines.append(f"export CONDA_PREFIX={_q(target_prefix)}")
        lines += [f"export {k}={_q(v)}" for k, v in variables.items()]  # package values are data
        lines += [f"export {k}={_q(v)}" for k, v in manifest.metadata]
        lines += [f". {_q(s)}" for s in [*scripts, *manifest.scripts]]
        lines += [_bash_export(k, v) for k, v in manifest.env]
        return "\n".join(lines) + "\n"
    if shell == "fish":
        lines.append(f'set -gx PATH {" ".join(_q(e) for e in entries)} $PATH')
        lines.append('set -gx CONDA_SHLVL "1"')
        lines.append(f"set -gx CONDA_PREFIX {_q(target_prefix)}")
        lines += [f"set -gx {k} {_q(v)}" for k, v in variables.items()]
        lines += [f"source {_q(s)}" for s in scripts]
        return "\n".join(lines) + "\n"
    if shell == "xonsh":
        # rattler_shell writes `$PATH = "<entries>:${PATH}"`, but xonsh does not expand ${PATH} inside a
        # Python-mode string (xonsh 0.13.4 and 0.25.0: PATH became [<entries>, "${PATH}"], the old PATH
        # lost). Prepending to the list keeps it.
        lines.append(f"$PATH = [{', '.join(_dq(e) for e in entries)}] + list($PATH)")
        lines.append('$CONDA_SHLVL = "1"')
        lines.append(f"$CONDA_PREFIX = {_dq(target_prefix)}")
        lines += [f"${k} = {_dq(v)}" for k, v in variables.items()]
        lines += [f"{'source-bash' if s.endswith('.sh') else 'source'} {_dq(s)}" for s in scripts]
        return "\n".join(lines) + "\n"
    if shell == "nushell":
        path_var = "Path" if is_windows(platform) else "PATH"
        lines.append(f"$env.{path_var} = ($env.{path_var} | prepend [{', '.join(_dq(e) for e in entries)}])")
        lines.append('$env.CONDA_SHLVL = "1"')
        lines.append(f"$env.CONDA_PREFIX = {_dq(target_prefix)}")
        lines += [f"$env.{_nu_name(k)} = {_dq(v)}" for k, v in variables.items()]
        lines += [f"source-env {_dq(s)}" for s in scripts]
        return "\n".join(lines) + "\n"
    if shell == "powershell":
        def ps(v: str) -> str:
            return "'" + v.replace("'", "''") + "'"
        lines.append(f'$Env:PATH = {ps(sep.join(entries) + sep)} + $Env:PATH')
        lines.append('$Env:CONDA_SHLVL = "1"')
        lines.append(f"$Env:CONDA_PREFIX = {ps(target_prefix)}")
        lines += [f"${{Env:{k}}} = {ps(v)}" for k, v in variables.items()]
        lines += [f". {ps(s)}" for s in scripts]
        return "\n".join(lines) + "\n"
    # cmd: CRLF, like rattler_shell's activate.bat
    lines.append("@chcp 65001 > nul")
    lines.append(f'@SET "Path={";".join(entries)};%Path%"')
    lines.append('@SET "CONDA_SHLVL=1"')
    lines.append(f'@SET "CONDA_PREFIX={target_prefix}"')
    lines += [f'@SET "{k}={v}"' for k, v in variables.items()]
    lines += [f'@CALL "{s}"' for s in scripts]
    return "\r\n".join(lines) + "\r\n"


def entrypoint_script(prefix_dir: Path, target_prefix: str | None = None,
                      manifest: ManifestActivation | None = None) -> str:
    """An image entrypoint: activate the prefix (POSIX sh), then `exec "$@"`."""
    body = activate_script(prefix_dir, target_prefix, "bash", platform="linux-64", manifest=manifest)
    return "#!/bin/sh\n" + body + 'exec "$@"\n'
