"""Image options from `[tool.pixibuild.image]`, `[tool.pixibuild.image.<env>]` and the CLI, merged
in that order (later wins; lists and tables from the CLI replace, labels/env tables merge)."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from pixibuild.errors import InputError

# manifest key → (option name, expected type)
KEYS: dict[str, tuple[str, type | tuple[type, ...]]] = {
    "base": ("base", str),
    "tag": ("tag", str),
    "output": ("output", str),
    "oci-dir": ("oci_dir", str),
    "push": ("push", str),
    "cmd": ("cmd", (str, list)),
    "entrypoint": ("entrypoint", (str, list)),
    "expose": ("expose", (list, int, str)),
    "labels": ("labels", dict),
    "env": ("env", dict),
    "include": ("include", (list, str)),
    "prefix": ("prefix", str),
    "workdir": ("workdir", str),
    "user": ("user", str),
    "max-layers": ("max_layers", int),
    "platforms": ("platforms", list),
    "compression": ("compression", str),
    "annotations": ("annotations", dict),
    "sbom": ("sbom", str),
    "provenance": ("provenance", bool),
}
SBOM_FORMATS = ("spdx", "cyclonedx")


@dataclass
class ImageOptions:
    base: str = "scratch"
    tag: str | None = None
    output: str | None = None
    oci_dir: str | None = None
    push: str | None = None
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    expose: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    include: list[str] = field(default_factory=list)
    prefix: str | None = None
    workdir: str | None = None
    user: str | None = None
    max_layers: int | None = None
    platforms: list[str] = field(default_factory=list)
    compression: str = "gzip"
    annotations: dict[str, str] = field(default_factory=dict)
    sbom: str | None = None
    """Attach an SBOM of this format (spdx, cyclonedx) to the image as an OCI referrer."""
    provenance: bool = False
    """Attach an in-toto SLSA provenance statement to the image as an OCI referrer."""


def command_words(value: str | list, where: str) -> list[str]:
    """A command as a list: a TOML/JSON array, or a string split like a shell would."""
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise InputError("must be a list of strings", field=where)
        return list(value)
    text = value.strip()
    if text.startswith("["):
        try:
            words = json.loads(text)
        except ValueError as exc:
            raise InputError(f"not a JSON array: {exc}", field=where) from None
        return command_words(words, where)
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise InputError(str(exc), field=where) from None


def _apply_table(options: ImageOptions, table: Mapping[str, Any], where: str) -> None:
    for key, value in table.items():
        if key not in KEYS:
            raise InputError(f"unknown image setting {key!r} (known: {', '.join(sorted(KEYS))})",
                             field=f"{where}.{key}")
        name, kind = KEYS[key]
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise InputError(f"has the wrong type {type(value).__name__}", field=f"{where}.{key}")
        if name in ("cmd", "entrypoint"):
            value = command_words(value, f"{where}.{key}")
        elif name == "expose":
            value = [str(v) for v in (value if isinstance(value, list) else [value])]
        elif name == "include":
            value = [value] if isinstance(value, str) else [str(v) for v in value]
        elif name in ("labels", "env", "annotations"):
            value = {**getattr(options, name), **{str(k): str(v) for k, v in value.items()}}
        elif name == "platforms":
            if not all(isinstance(v, str) for v in value):
                raise InputError("must be a list of platform names", field=f"{where}.{key}")
            value = list(value)
        setattr(options, name, value)
        _check(options, f"{where}.{key}")


def _check(options: ImageOptions, where: str) -> None:
    """The settings with a fixed set of values, checked where they are given."""
    from pixibuild.oci.layer import COMPRESSIONS  # the layer writer owns the list (and zstandard's import)

    if options.compression not in COMPRESSIONS:
        raise InputError(f"unknown compression {options.compression!r} (choose from {', '.join(COMPRESSIONS)})",
                         field=where)
    if options.sbom is not None and options.sbom not in SBOM_FORMATS:
        raise InputError(f"unknown SBOM format {options.sbom!r} (choose from {', '.join(SBOM_FORMATS)})",
                         field=where)


def manifest_image_options(tool: Mapping[str, Any] | None, environment: str, *, where: str = "tool.pixibuild",
                           root: Path | None = None) -> ImageOptions:
    """Options from the manifest's `[tool.pixibuild]` table for `environment`; a local base image
    path in it is relative to the manifest's directory `root`."""
    options = ImageOptions()
    image = (tool or {}).get("image") or {}
    if not isinstance(image, Mapping):
        raise InputError("must be a table", field=f"{where}.image")
    shared = {k: v for k, v in image.items() if k in KEYS}
    per_env = {k: v for k, v in image.items() if k not in KEYS}
    for key, value in per_env.items():
        if not isinstance(value, Mapping):
            raise InputError(f"unknown image setting {key!r} (known: {', '.join(sorted(KEYS))}; "
                             "tables are per-environment settings)", field=f"{where}.image.{key}")
    _apply_table(options, shared, f"{where}.image")
    if environment in per_env:
        _apply_table(options, per_env[environment], f"{where}.image.{environment}")
    if root is not None and options.base:
        from pixibuild.oci.base import relative_to  # base.py loads the registry client: only when needed

        options.base = relative_to(options.base, Path(root))
    return options


def _pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"expected KEY=VALUE, got {item!r}", field=flag)
        out[key] = value
    return out


def apply_cli(options: ImageOptions, args: Any) -> ImageOptions:
    """Overlay the CLI flags that were given (None/empty = not given)."""
    for name in ("base", "tag", "output", "oci_dir", "push", "prefix", "workdir", "user", "max_layers",
                 "compression", "sbom", "provenance"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(options, name, value)
    if getattr(args, "cmd", None) is not None:
        options.cmd = command_words(args.cmd, "--cmd")
    if getattr(args, "entrypoint", None) is not None:
        options.entrypoint = command_words(args.entrypoint, "--entrypoint")
    if getattr(args, "expose", None):
        options.expose = list(args.expose)
    if getattr(args, "include", None):
        options.include = list(args.include)
    options.labels.update(_pairs(getattr(args, "label", None), "--label"))
    options.env.update(_pairs(getattr(args, "env_var", None), "--env"))
    options.annotations.update(_pairs(getattr(args, "annotation", None), "--annotation"))
    _check(options, "--compression/--sbom")
    return options


def image_prefix(options: ImageOptions, env: str) -> str:
    """Where the environment lives in the image: pixi's own layout unless the options say otherwise."""
    return options.prefix or f"/app/.pixi/envs/{env}"
