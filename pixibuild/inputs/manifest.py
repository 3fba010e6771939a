"""Read a pixi manifest (`pixi.toml`, or `[tool.pixi]` in `pyproject.toml`): workspace name,
channels, platforms, features, environments and, per environment and platform, the conda and
PyPI dependencies it asks for — what `--locked` checks a lock against and what content keys hash —
and the `[activation]` an environment gets on a platform, merged as pixi merges it.

Only what pixi itself would resolve from the file is modelled; tasks and system requirements are
kept raw in `Manifest.data`.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pixibuild.errors import InputError
from pixibuild.files.digest import json_digest
from pixibuild.inputs import DEFAULT_ENVIRONMENT
from pixibuild.inputs.discover import MANIFEST_NAMES
from pixibuild.inputs.platform_names import ManifestPlatform, manifest_platform

# tomli, not the stdlib tomllib: pixi manifests use TOML 1.1 (inline tables over several lines),
# which tomli (>= 2.3) reads and Python 3.11's tomllib rejects.
import tomli as tomllib

DEFAULT_FEATURE = "default"
_ENVIRONMENT_KEYS = frozenset({"features", "solve-group", "no-default-feature"})
_CONDA_DEP_TABLES = ("dependencies", "host-dependencies", "build-dependencies")
# Target selectors naming a platform family (pixi's `[target.unix]`, `[target.osx]`...).
_FAMILIES = {
    "unix": lambda s: not s.startswith("win-") and s != "noarch",
    "linux": lambda s: s.startswith("linux-"),
    "osx": lambda s: s.startswith("osx-"),
    "win": lambda s: s.startswith("win-"),
    "macos": lambda s: s.startswith("osx-"),
    "emscripten": lambda s: s.startswith("emscripten-"),
    "wasi": lambda s: s.startswith("wasi-"),
}


@dataclass(frozen=True)
class Activation:
    """`[activation]` of one environment on one platform: scripts (relative to the project root, in
    the order pixi sources them) and variables (in the order pixi exports them)."""

    scripts: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Feature:
    """A named set of channels, platforms and dependencies (the manifest's top level is `default`)."""

    name: str
    channels: tuple[str, ...] | None
    platforms: tuple[str, ...] | None
    tables: dict[str, Any]  # the raw table: dependencies, pypi-dependencies, target, ...


@dataclass(frozen=True)
class Environment:
    """An environment: features in priority order (its own first, `default` last unless excluded)."""

    name: str
    features: tuple[str, ...]
    solve_group: str | None = None


@dataclass
class Manifest:
    path: Path
    root: Path
    name: str
    channels: list[str]
    platforms: list[str]
    platform_subdirs: dict[str, str]
    features: dict[str, Feature]
    environments: dict[str, Environment]
    tool: dict[str, Any]
    data: dict[str, Any] = field(repr=False)
    version: str | None = None
    """`workspace.version` (or a pyproject's `[project].version`)."""
    field_prefix: str = ""
    """"tool.pixi." in a pyproject.toml: how error messages name manifest fields."""
    platform_entries: list[ManifestPlatform] = field(default_factory=list, repr=False)
    """The workspace platforms with their subdirs and declared virtual packages (named platforms)."""

    @property
    def lock_path(self) -> Path:
        return self.root / "pixi.lock"

    def environment(self, name: str) -> Environment:
        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(sorted(self.environments))
            raise InputError(f"no environment {name!r} in manifest (manifest has: {known})",
                             path=self.path, field="environments") from None

    def environment_platforms(self, env: str) -> list[str]:
        """Platforms of an environment: the workspace's, narrowed by any feature that lists its own."""
        platforms = list(self.platforms)
        for feature in self._features(env):
            if feature.platforms is not None:  # a reference names a platform, or any platform of a subdir (pixi)
                platforms = [p for p in platforms if p in feature.platforms
                             or self.platform_subdirs.get(p, p) in feature.platforms]
        return platforms

    def environment_channels(self, env: str) -> list[str]:
        """Channels of an environment: each feature's channels, its own features' before default's."""
        channels: list[str] = []
        for feature in self._features(env):
            for channel in feature.channels or ():
                if channel not in channels:
                    channels.append(channel)
        return channels

    def dependencies(self, env: str, platform: str) -> dict[str, Any]:
        """Conda dependencies (run, host and build) asked for by `env` on `platform`: name → spec
        string or table (`{version=..., build=...}`, `{path=...}` for source packages)."""
        return self._collect(env, platform, _CONDA_DEP_TABLES)

    def pypi_dependencies(self, env: str, platform: str) -> dict[str, Any]:
        """PyPI dependencies asked for by `env` on `platform`: name → specifier string or table."""
        return self._collect(env, platform, ("pypi-dependencies",))

    def activation(self, env: str, platform: str) -> Activation:
        """The activation `env` gets on `platform`, merged as pixi merges it (pixi_core
        `Environment::activation_scripts/activation_env`, pixi_manifest `Feature::activation_*`):

        - features in the environment's order (its inline table, its features as listed, `default` last);
        - within a feature, its targets that select the platform, the last declared first and the
          feature's own `[activation]` last (pixi's "most specific first" is declaration order
          reversed, whatever the selectors);
        - scripts: per feature the first of those that has `scripts` (not a union), concatenated
          over the features;
        - env: first definition wins, in that same order (feature order, then target order).
        """
        self._check_platform(env, platform)
        subdir = self.platform_subdirs.get(platform, platform)
        scripts: list[str] = []
        variables: dict[str, str] = {}
        for feature in self._features(env):
            own = feature.tables.get("activation")
            where = f"{self.field_prefix}{_feature_field(feature.name)}"
            candidates = [(f"{where}activation", own)]
            for selector, target in (_table(self, feature.tables.get("target"), f"{where}target") or {}).items():
                if _selects(selector, platform, subdir):
                    candidates.append((f"{where}target.{selector}.activation", (target or {}).get("activation")))
            candidates.reverse()
            chosen: list[str] | None = None
            for field_name, table in candidates:
                table = _table(self, table, field_name)
                if "scripts" in table and chosen is None:
                    chosen = list(_string_list(table["scripts"], self.path, f"{field_name}.scripts") or ())
                for key, value in _table(self, table.get("env"), f"{field_name}.env").items():
                    if not isinstance(value, str):
                        raise InputError(f"{key} must be a string, got {type(value).__name__}", path=self.path,
                                         field=f"{field_name}.env.{key}")
                    variables.setdefault(str(key), value)
            scripts += chosen or []
        return Activation(tuple(scripts), tuple(variables.items()))

    def section_hash(self, env: str | None = None, platform: str | None = None) -> str:
        """sha256 of what the manifest says about `env`/`platform` (all of it when None): the part
        of a content key that must change when the user edits dependencies, channels or tool config."""
        if env is None:
            payload: Any = {k: v for k, v in self.data.items()}
        else:
            platforms = [platform] if platform else self.environment_platforms(env)
            payload = {
                "channels": self.environment_channels(env),
                "platforms": platforms,
                "dependencies": {p: self.dependencies(env, p) for p in platforms},
                "pypi-dependencies": {p: self.pypi_dependencies(env, p) for p in platforms},
                "tool": self.tool,
            }
        return json_digest(payload)

    # ----------------------------------------------------------------------------------------

    def _features(self, env: str) -> list[Feature]:
        return [self.features[name] for name in self.environment(env).features if name in self.features]

    def _check_platform(self, env: str, platform: str) -> None:
        if platform not in self.environment_platforms(env):
            known = ", ".join(self.environment_platforms(env)) or "none"
            raise InputError(f"environment {env!r} has no platform {platform!r} (manifest has: {known})",
                             path=self.path, field="platforms")

    def _collect(self, env: str, platform: str, tables: tuple[str, ...]) -> dict[str, Any]:
        self._check_platform(env, platform)
        subdir = self.platform_subdirs.get(platform, platform)
        merged: dict[str, Any] = {}
        # lowest priority first so that higher-priority features (and targets) override
        for feature in reversed(self._features(env)):
            for table in tables:
                merged.update(_table(self, feature.tables.get(table), f"{feature.name}.{table}"))
            targets = feature.tables.get("target") or {}
            for selector, target in targets.items():
                if _selects(selector, platform, subdir):
                    for table in tables:
                        merged.update(_table(self, (target or {}).get(table),
                                             f"{feature.name}.target.{selector}.{table}"))
        return merged


def _selects(selector: str, platform: str, subdir: str) -> bool:
    if selector in (platform, subdir):
        return True
    if any(c in selector for c in "*?["):  # pixi's platform globs, e.g. [target."linux-*"]
        return fnmatch.fnmatchcase(platform, selector)
    family = _FAMILIES.get(selector)
    return bool(family and family(subdir))


def _feature_field(name: str) -> str:
    """How a feature's tables are named in the file: top level, `feature.X.` or `environments.X.`."""
    if name == DEFAULT_FEATURE:
        return ""
    return f"{name}." if name.startswith("environments.") else f"feature.{name}."


def _table(manifest: "Manifest | None", value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError("expected a table", path=manifest.path if manifest else None, field=where)
    return value


def find_manifest(path: str | Path | None = None) -> Path:
    """The manifest file for `path`: the file itself, or `pixi.toml` / a `pyproject.toml` with a
    `[tool.pixi]` table in the directory (pixi's own preference order)."""
    path = Path(path) if path is not None else Path.cwd()
    if path.is_file():
        return path
    if not path.exists():
        raise InputError("no such file or directory", path=path, field="manifest")
    for name in MANIFEST_NAMES:
        candidate = path / name
        if candidate.is_file():
            if name == "pyproject.toml" and not isinstance(
                    (_load_toml(candidate).get("tool") or {}).get("pixi"), dict):
                continue
            return candidate
    raise InputError("no pixi.toml, or pyproject.toml with [tool.pixi], in this directory",
                     path=path, field="manifest")


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"invalid TOML: {exc}", path=path, field="toml") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read manifest: {exc}", path=path, field="manifest") from None


def _channel_name(entry: Any, path: Path, where: str) -> str:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict) and isinstance(entry.get("channel"), str):
        return entry["channel"]
    raise InputError(f"invalid channel entry {entry!r}", path=path, field=where)


def _string_list(value: Any, path: Path, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError("expected a list of strings", path=path, field=where)
    return tuple(value)


def read_manifest(path: str | Path | None = None) -> Manifest:
    """Parse the manifest at (or in) `path`; every problem is an InputError naming file and field."""
    path = find_manifest(path)
    data = _load_toml(path)
    is_pyproject = path.name == "pyproject.toml"
    if is_pyproject:
        tool = data.get("tool") or {}
        pixi = tool.get("pixi")
        if not isinstance(pixi, dict):
            raise InputError("no [tool.pixi] table", path=path, field="tool.pixi")
        pixibuild_tool = tool.get("pixibuild") or {}
    else:
        pixi = data
        pixibuild_tool = (data.get("tool") or {}).get("pixibuild") or {}
    prefix = "tool.pixi." if is_pyproject else ""
    workspace = pixi.get("workspace") or pixi.get("project")
    if not isinstance(workspace, dict):
        raise InputError("missing [workspace] (or [project]) table", path=path, field=f"{prefix}workspace")
    python_project = data.get("project") if is_pyproject and isinstance(data.get("project"), dict) else {}
    name = workspace.get("name") or python_project.get("name") or path.parent.name
    if not isinstance(name, str):
        raise InputError("expected a string", path=path, field=f"{prefix}workspace.name")

    channels = [_channel_name(c, path, f"{prefix}workspace.channels") for c in workspace.get("channels") or []]
    platforms: list[str] = []
    platform_subdirs: dict[str, str] = {}
    platform_entries: list[ManifestPlatform] = []
    for entry in workspace.get("platforms") or []:
        parsed = manifest_platform(entry)
        if parsed is None:
            raise InputError(f"invalid platform entry {entry!r}", path=path, field=f"{prefix}workspace.platforms")
        platforms.append(parsed.name)
        platform_subdirs[parsed.name] = parsed.subdir
        platform_entries.append(parsed)

    default_tables = {k: v for k, v in pixi.items() if k not in ("feature", "environments", "workspace", "project")}
    if is_pyproject:
        default_tables = _add_python_project(default_tables, python_project, path)
    features: dict[str, Feature] = {DEFAULT_FEATURE: Feature(DEFAULT_FEATURE, tuple(channels), None, default_tables)}
    for fname, table in (pixi.get("feature") or {}).items():
        where = f"{prefix}feature.{fname}"
        if not isinstance(table, dict):
            raise InputError("expected a table", path=path, field=where)
        fchannels = table.get("channels")
        features[fname] = Feature(
            fname,
            tuple(_channel_name(c, path, f"{where}.channels") for c in fchannels) if fchannels is not None else None,
            _string_list(table.get("platforms"), path, f"{where}.platforms"),
            table,
        )
    if is_pyproject:
        # pixi turns each extra and each PEP 735 dependency group into a feature of that name
        groups = dict(python_project.get("optional-dependencies") or {})
        for group, deps in (data.get("dependency-groups") or {}).items():
            groups.setdefault(group, [d for d in deps if isinstance(d, str)])  # (include-group: not followed)
        for group, deps in groups.items():
            if group not in features:
                features[group] = Feature(group, None, None, {"pypi-dependencies": _pep508_table(deps, path)})

    environments: dict[str, Environment] = {}
    for ename, spec in (pixi.get("environments") or {}).items():
        where = f"{prefix}environments.{ename}"
        if isinstance(spec, list):
            own, group, no_default = spec, None, False
        elif isinstance(spec, dict):
            own = list(spec.get("features") or [])
            group = spec.get("solve-group")
            no_default = bool(spec.get("no-default-feature", False))
            inline = {k: v for k, v in spec.items() if k not in _ENVIRONMENT_KEYS}
            if inline:  # channels/platforms/dependencies written on the environment itself
                fname = f"environments.{ename}"
                fchannels = inline.get("channels")
                features[fname] = Feature(
                    fname,
                    tuple(_channel_name(c, path, f"{where}.channels") for c in fchannels)
                    if fchannels is not None else None,
                    _string_list(inline.get("platforms"), path, f"{where}.platforms"),
                    inline,
                )
                own.insert(0, fname)
        else:
            raise InputError("expected a list of features or a table", path=path, field=where)
        for fname in own:
            if fname not in features:
                raise InputError(f"unknown feature {fname!r}", path=path, field=where)
        names = tuple(own) + (() if no_default else (DEFAULT_FEATURE,))
        environments[ename] = Environment(ename, names, group)
    environments.setdefault(DEFAULT_ENVIRONMENT, Environment(DEFAULT_ENVIRONMENT, (DEFAULT_FEATURE,)))

    version = workspace.get("version") or python_project.get("version")
    if version is not None and not isinstance(version, str):
        raise InputError("expected a string", path=path, field=f"{prefix}workspace.version")
    return Manifest(path=path, root=path.parent, name=name, channels=channels, platforms=platforms,
                    platform_subdirs=platform_subdirs, features=features, environments=environments,
                    tool=dict(pixibuild_tool), data=data, version=version, field_prefix=prefix,
                    platform_entries=platform_entries)


def _add_python_project(tables: dict[str, Any], project: dict[str, Any], path: Path) -> dict[str, Any]:
    """pyproject `[project].dependencies` are PyPI dependencies of the default feature (pixi's rule)."""
    deps = project.get("dependencies")
    if not deps:
        return tables
    merged = dict(tables)
    pypi = _pep508_table(deps, path)
    pypi.update(merged.get("pypi-dependencies") or {})
    merged["pypi-dependencies"] = pypi
    return merged


def _pep508_table(requirements: Any, path: Path) -> dict[str, Any]:
    # 30 ms to import (python -X importtime): only manifests with PEP 508 requirements pay it
    from packaging.requirements import InvalidRequirement, Requirement

    table: dict[str, Any] = {}
    for text in requirements or []:
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise InputError(f"invalid requirement {text!r}: {exc}", path=path, field="project.dependencies") from None
        if req.marker is not None:
            table[req.name] = {"version": str(req.specifier) or "*", "marker": str(req.marker)}
        elif req.url:
            table[req.name] = {"url": req.url}
        else:
            table[req.name] = str(req.specifier) or "*"
    return table
