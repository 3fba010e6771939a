"""Manifest activation in images: our entrypoint ends with the environment `pixi shell-hook` gives.

The expected environment is computed here by a second, independent implementation of pixi's
documented order — not by the code under test. Sources (prefix-dev/pixi @ 2b25fc76, read for this):

- docs/reference/pixi_manifest.md, "The activation table": `[activation]` belongs to the default
  feature; `scripts` and `env`, per platform with `[target.<selector>.activation]`, per environment
  with `[feature.<name>.activation]` (and inline `[environments.<name>.activation]`, which "takes
  precedence over the referenced features").
- docs/reference/environment_variables.md, "Environment Variable Priority":
  `task.env` > `activation.env` > `activation.scripts` > activation scripts of dependencies >
  outside environment variables.
- docs/workspace/environment.md: the shell-hook output sets PATH, CONDA_PREFIX, the PIXI_PROJECT_*,
  CONDA_DEFAULT_ENV, PIXI_ENVIRONMENT_* and PIXI_PROMPT variables, then sources the packages'
  activate.d scripts.
- crates/pixi_core/src/activation.rs `get_activator`: manifest scripts are appended after the
  packages' activate.d scripts; metadata variables join the packages' env_vars.d variables before
  the scripts; `activation.env` is a post-activation variable (exported after every script).
- crates/pixi_core/src/workspace/environment.rs: scripts of all features concatenated in the
  environment's feature order; env: first definition wins in that order.
- crates/pixi_manifest/src/feature.rs + target.rs: per feature, targets that match the platform
  with the most specific first (later-declared selectors first, the feature's own table last);
  scripts = the first of those that has any, env = first definition wins.

So the order, written down:
  1. PATH=<prefix>/bin:$PATH, CONDA_SHLVL=1, CONDA_PREFIX
  2. packages' env_vars.d/*.json (by file name), as written (conda and pixibuild's unpack keep them
     literal; only the manifest's activation.env expands `$VAR`)
  3. PIXI_PROJECT_ROOT, _NAME, _MANIFEST, _VERSION, PIXI_IN_SHELL, CONDA_DEFAULT_ENV,
     PIXI_ENVIRONMENT_NAME, _PLATFORMS, PIXI_PROMPT
  4. packages' etc/conda/activate.d/*.sh (by file name)
  5. activation.scripts: features in environment order (inline table, listed features, default last
     unless no-default-feature); per feature its most specific target with `scripts`
  6. activation.env: same feature order, first definition wins; within a feature the most specific
     target first; `$VAR` references expand with the environment at that point.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import tomli

from conftest import CORPUS, require_corpus, require_tool
from pixibuild.graph.images import manifest_activation
from pixibuild.inputs.manifest import read_manifest
from pixibuild.install.activation import entrypoint_script, static_activation

OUTSIDE = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
SHELL_NOISE = {"PWD", "SHLVL", "_", "OLDPWD"}
PACKAGE_SCRIPTS = {"10-first.sh": "pkg-first", "20-second.sh": "pkg-second"}


# -- the oracle ---------------------------------------------------------------------------------
def _pixi_table(doc: dict, path: Path) -> dict:
    return doc["tool"]["pixi"] if path.name == "pyproject.toml" else doc


def _selector_matches(selector: str, platform: str) -> bool:
    family = {"linux": platform.startswith("linux-"), "unix": platform.startswith(("linux-", "osx-")),
              "osx": platform.startswith("osx-"), "macos": platform.startswith("osx-"),
              "win": platform.startswith("win-")}
    return selector == platform or family.get(selector, False)


def _feature_tables(pixi: dict, env: str) -> list[dict]:
    """The environment's features as raw tables, in order: inline table, listed features, default."""
    spec = (pixi.get("environments") or {}).get(env)
    inline, features, no_default = None, [], False
    if isinstance(spec, list):
        features = spec
    elif isinstance(spec, dict):
        features = spec.get("features") or []
        no_default = spec.get("no-default-feature", False)
        inline = {k: v for k, v in spec.items() if k not in ("features", "solve-group", "no-default-feature")}
    tables = ([inline] if inline else []) + [pixi["feature"][f] for f in features]
    return tables + ([] if no_default else [pixi])


def _oracle_activation(pixi: dict, env: str, platform: str) -> tuple[list[str], list[tuple[str, str]]]:
    scripts: list[str] = []
    variables: dict[str, str] = {}
    for table in _feature_tables(pixi, env):
        chain = [table.get("activation")] + [t.get("activation") for s, t in (table.get("target") or {}).items()
                                             if _selector_matches(s, platform)]
        chain = [a for a in reversed(chain) if a]  # most specific first
        with_scripts = [a["scripts"] for a in chain if "scripts" in a]
        scripts += with_scripts[0] if with_scripts else []
        for activation in chain:
            for key, value in (activation.get("env") or {}).items():
                variables.setdefault(key, value)
    return scripts, list(variables.items())


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env.get(m.group(1), ""), value)


def _expected_environment(pixi: dict, manifest: Path, env: str, platform: str, prefix: Path,
                          project: Path, package_env: dict[str, str], package_scripts: bool,
                          run_manifest_scripts: bool = True) -> dict[str, str]:
    scripts, variables = _oracle_activation(pixi, env, platform)
    workspace = pixi.get("workspace") or pixi.get("project") or {}
    name = workspace.get("name") or manifest.parent.name
    prompt = name if env == "default" else f"{name}:{env}"
    all_platforms = workspace.get("platforms") or []
    for table in _feature_tables(pixi, env):
        if table is not pixi and table.get("platforms"):
            all_platforms = [p for p in all_platforms if p in table["platforms"]]
    out = dict(OUTSIDE)
    out["PATH"] = f"{prefix}/bin:{out['PATH']}"
    out.update(CONDA_SHLVL="1", CONDA_PREFIX=str(prefix))
    out.update(package_env)
    out.update(PIXI_PROJECT_ROOT=str(project), PIXI_PROJECT_NAME=name, PIXI_PROJECT_MANIFEST=str(project / manifest.name),
               PIXI_PROJECT_VERSION=workspace.get("version") or "NO_VERSION_SPECIFIED", PIXI_IN_SHELL="1",
               CONDA_DEFAULT_ENV=prompt, PIXI_ENVIRONMENT_NAME=env,
               PIXI_ENVIRONMENT_PLATFORMS=",".join(all_platforms), PIXI_PROMPT=f"({prompt}) ")
    trace = []
    if package_scripts:
        for script, marker in sorted(PACKAGE_SCRIPTS.items()):
            trace.append(marker)
            out.update({k: f"script:{marker}" for k in _all_env_keys(pixi)})
    if run_manifest_scripts:
        for script in scripts:
            trace.append(script)
            out.update({k: f"script:{script}" for k in _all_env_keys(pixi)})
    if trace:
        out["PIXIBUILD_TRACE"] = "|" + "|".join(trace)
    for key, value in variables:
        out[key] = _expand(value, out)
    return out


# -- the fixture: scripts that leave a trace ----------------------------------------------------
def _all_activation_tables(node) -> list[dict]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "activation" and isinstance(value, dict):
                found.append(value)
            else:
                found += _all_activation_tables(value)
    return found


def _all_env_keys(pixi: dict) -> list[str]:
    return sorted({k for a in _all_activation_tables(pixi) for k in (a.get("env") or {})})


def _script_text(marker: str, keys: list[str]) -> str:
    lines = [f'export PIXIBUILD_TRACE="${{PIXIBUILD_TRACE}}|{marker}"']
    lines += [f'export {k}="script:{marker}"' for k in keys]  # activation.env must win over these
    return "\n".join(lines) + "\n"


def _fake_prefix(root: Path, keys: list[str], with_scripts: bool) -> tuple[Path, dict[str, str]]:
    prefix = root / "prefix"
    (prefix / "etc/conda/env_vars.d").mkdir(parents=True)
    package_env = {"PKG_FROM_ENV_VARS_D": "yes", "PKG_LITERAL": "$HOME/kept as written"}  # package values are data
    (prefix / "etc/conda/env_vars.d/pkg.json").write_text(json.dumps(package_env))
    if with_scripts:
        (prefix / "etc/conda/activate.d").mkdir(parents=True)
        for name, marker in PACKAGE_SCRIPTS.items():
            (prefix / "etc/conda/activate.d" / name).write_text(_script_text(marker, keys))
    return prefix, package_env


def _run_entrypoint(script: str, where: Path) -> dict[str, str]:
    sh = require_tool("sh")
    entry = where / "entrypoint.sh"
    entry.write_text(script)
    out = subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in OUTSIDE.items()), sh, str(entry), "env", "-0"],
                         capture_output=True, check=True).stdout.decode()
    env = dict(item.split("=", 1) for item in out.split("\0") if item)
    return {k: v for k, v in env.items() if k not in SHELL_NOISE}


def _corpus_manifests() -> list[Path]:
    locks = require_corpus("locks")
    out = []
    for path in sorted(locks.glob("*/pixi.toml")) + sorted(locks.glob("*/pyproject.toml")):
        doc = tomli.loads(path.read_text())
        if path.name == "pyproject.toml" and "pixi" not in (doc.get("tool") or {}):
            continue
        if _all_activation_tables(_pixi_table(doc, path)):
            out.append(path)
    return out


def _check_manifest(source: Path, tmp: Path) -> int:
    """Every environment × Linux platform of the manifest at `source`; returns how many were compared."""
    project = tmp / "project"
    project.mkdir(parents=True)
    manifest = project / source.name
    shutil.copyfile(source, manifest)
    doc = tomli.loads(manifest.read_text())
    pixi = _pixi_table(doc, manifest)
    keys = _all_env_keys(pixi)
    for table in _all_activation_tables(pixi):
        for rel in table.get("scripts") or []:
            (project / rel).parent.mkdir(parents=True, exist_ok=True)
            (project / rel).write_text(_script_text(rel, keys))
    ours_manifest = read_manifest(manifest)
    compared = 0
    for with_package_scripts in (True, False):
        root = tmp / f"pkg-{with_package_scripts}"
        prefix, package_env = _fake_prefix(root, keys, with_package_scripts)
        for env in ours_manifest.environments:
            for platform in ours_manifest.environment_platforms(env):
                if not platform.startswith("linux-"):
                    continue
                activation, _ = manifest_activation(ours_manifest, env, platform, str(project))
                got = _run_entrypoint(entrypoint_script(prefix, str(prefix), manifest=activation), root)
                expected = _expected_environment(pixi, manifest, env, platform, prefix, project, package_env,
                                                 with_package_scripts)
                assert got == expected, (source, env, platform)
                if not with_package_scripts:
                    # no shell at all (exec form): the config's Env is what activation gives without scripts
                    static = static_activation(prefix, str(prefix), platform, base_env=OUTSIDE, manifest=activation,
                                               scripts_run=False)
                    without = _expected_environment(pixi, manifest, env, platform, prefix, project, package_env,
                                                    False, run_manifest_scripts=False)
                    assert {**OUTSIDE, **static.env} == without and not static.unresolved, (source, env, platform)
                compared += 1
    return compared


@pytest.mark.corpus
def test_entrypoint_environment_equals_pixis_documented_order_on_corpus_manifests(tmp_path: Path) -> None:
    manifests = _corpus_manifests()
    assert len(manifests) >= 8, manifests  # the corpus has these many manifests with activation
    total = 0
    for i, source in enumerate(manifests):
        total += _check_manifest(source, tmp_path / str(i))
    assert total >= 100, total


TRICKY = """\
[workspace]
name = "tricky"
version = "1.2.3"
channels = []
platforms = ["linux-64", "linux-aarch64", "osx-arm64", "win-64"]

[activation]
scripts = ["default.sh"]
env = { SHARED = "from-default", ONLY_DEFAULT = "d", REF = "$PIXI_PROJECT_ROOT/x:${CONDA_PREFIX}" }

[target.unix.activation]
scripts = ["unix.sh"]
env = { SHARED = "from-default-unix" }

[target.linux-64.activation]
env = { SHARED = "from-default-linux-64", LINUX64 = "1" }

[target.win-64.activation]
scripts = ["win.bat"]

[feature.a.activation]
scripts = ["a.sh"]
env = { SHARED = "from-a", A = "a" }

[feature.a.target.linux.activation]
scripts = ["a-linux.sh", "a-linux-2.sh"]

[feature.b.activation]
env = { B = "b", A = "from-b" }

[feature.b.target.linux-aarch64.activation]
scripts = []

[feature.b.target.unix.activation]
scripts = ["b-unix.sh"]

[feature.lonely.activation]
env = { LONELY = "1" }

[environments]
ab = ["a", "b"]
ba = ["b", "a"]
lonely = { features = ["lonely"], no-default-feature = true }
inline = { features = ["a"], activation = { env = { SHARED = "from-inline" }, scripts = ["inline.sh"] } }
"""


def test_merge_rules_on_a_manifest_that_exercises_them(tmp_path: Path) -> None:
    source = tmp_path / "src" / "pixi.toml"
    source.parent.mkdir()
    source.write_text(TRICKY)
    assert _check_manifest(source, tmp_path / "run") == 2 * 5 * 2
    m = read_manifest(source)
    # the same rules, spelled out for two cases
    assert m.activation("ab", "linux-64").scripts == ("a-linux.sh", "a-linux-2.sh", "b-unix.sh", "unix.sh")
    # "most specific first" is pixi's declaration order reversed (target.rs resolve_for_platform), not
    # selector specificity: feature b declares [target.unix] after [target.linux-aarch64], so unix wins
    assert m.activation("ab", "linux-aarch64").scripts == ("a-linux.sh", "a-linux-2.sh", "b-unix.sh", "unix.sh")
    assert dict(m.activation("ba", "linux-64").env)["A"] == "from-b"
    assert dict(m.activation("inline", "linux-64").env)["SHARED"] == "from-inline"
    assert m.activation("inline", "linux-64").scripts[0] == "inline.sh"
    assert m.activation("lonely", "linux-64").scripts == ()
    assert m.activation("default", "win-64").scripts == ("win.bat",)


@pytest.mark.parametrize("bad,message", [
    ('[activation]\nscripts = "one.sh"\n', "activation.scripts"),
    ('[activation]\nenv = { X = 1 }\n', "activation.env.X"),
    ('[feature.f.target.linux-64.activation]\nscripts = [3]\n', "feature.f.target.linux-64.activation.scripts"),
    ('[activation]\nscripts = ["../outside.sh"]\n', "inside the project"),
    ('[activation]\nscripts = ["missing.sh"]\n', "missing.sh not found"),
])
def test_bad_activation_is_a_one_line_input_error(tmp_path: Path, bad: str, message: str) -> None:
    from pixibuild.errors import InputError

    (tmp_path / "pixi.toml").write_text('[workspace]\nname = "x"\nchannels = []\nplatforms = ["linux-64"]\n'
                                        '[environments]\nf = ["f"]\n[feature.f]\n' + bad)
    m = read_manifest(tmp_path / "pixi.toml")
    env = "f" if "feature.f" in bad else "default"
    with pytest.raises(InputError, match=re.escape(message)) as info:
        manifest_activation(m, env, "linux-64", "/app")
    assert "\n" not in str(info.value) and "pixi.toml" in str(info.value)


def test_corpus_location_is_known() -> None:
    """The differential test above runs only with the corpus (CI has it)."""
    assert CORPUS.name == "corpus"
