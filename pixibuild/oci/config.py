"""Image config and manifest as canonical JSON (sorted keys, compact): same inputs, same digests."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from pixibuild.errors import InputError
from pixibuild.files.digest import sha256_digest
from pixibuild.net.mediatypes import MEDIA_TYPE_CONFIG, MEDIA_TYPE_MANIFEST
from pixibuild.conda.platforms import oci_platform
from pixibuild.oci.layer import Layer


FIXED_CREATED = 0
"""`created` when SOURCE_DATE_EPOCH is unset: the epoch, so builds never embed the clock."""


def created_timestamp(epoch: int | None = None) -> str:
    """RFC 3339 UTC time from `epoch`, else SOURCE_DATE_EPOCH, else FIXED_CREATED."""
    if epoch is None:
        value = os.environ.get("SOURCE_DATE_EPOCH", "")
        if value and not value.isdigit():
            raise InputError(f"SOURCE_DATE_EPOCH must be a number of seconds, got {value!r}")
        epoch = int(value) if value else FIXED_CREATED
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@dataclass
class ImageSettings:
    """What the user says about how the container runs (CLI flags / `[tool.pixibuild.image]`)."""

    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    working_dir: str | None = None
    exposed_ports: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    user: str | None = None


@dataclass(frozen=True)
class HistoryEntry:
    created_by: str
    comment: str = ""
    empty_layer: bool = False


def _port(spec: str) -> str:
    spec = str(spec)
    number, _, proto = spec.partition("/")
    proto = proto or "tcp"
    if not number.isdigit() or not 0 < int(number) < 65536 or proto not in ("tcp", "udp", "sctp"):
        raise InputError(f"invalid port {spec!r} (expected PORT or PORT/tcp|udp|sctp)", field="expose")
    return f"{int(number)}/{proto}"


def _merge_env(base: Sequence[str], ours: dict[str, str]) -> list[str]:
    """Base image Env first (overridden in place by our keys), then our new keys in given order."""
    merged: dict[str, str] = {}
    for item in base:
        key, _, value = item.partition("=")
        merged[key] = value
    merged.update(ours)
    return [f"{k}={v}" for k, v in merged.items()]


def image_config(*, platform: str, layers: Sequence[Layer], history: Sequence[HistoryEntry],
                 settings: ImageSettings, created: str | None = None,
                 base: dict | None = None) -> dict:
    """The OCI image config for `layers` on top of `base` (a base image's config, or None for scratch)."""
    os_name, arch, variant = oci_platform(platform)
    if len(history) != len(layers):
        raise ValueError("one history entry per layer")
    created = created or created_timestamp()
    base = base or {}
    base_cfg = dict(base.get("config") or {})
    cfg: dict[str, Any] = {}
    for key in ("User", "Volumes", "StopSignal", "Entrypoint", "Cmd", "WorkingDir", "Labels", "ExposedPorts"):
        if base_cfg.get(key) is not None:
            cfg[key] = base_cfg[key]
    env = _merge_env(base_cfg.get("Env") or [], settings.env)
    if env:
        cfg["Env"] = env
    if settings.entrypoint is not None:
        cfg["Entrypoint"] = list(settings.entrypoint)
        cfg.pop("Cmd", None)  # a new entrypoint resets the base's Cmd, as Dockerfile ENTRYPOINT does
    if settings.cmd is not None:
        cfg["Cmd"] = list(settings.cmd)
    if settings.working_dir:
        cfg["WorkingDir"] = settings.working_dir
    if settings.user:
        cfg["User"] = settings.user
    if settings.exposed_ports:
        ports = dict(cfg.get("ExposedPorts") or {})
        ports.update({_port(p): {} for p in settings.exposed_ports})
        cfg["ExposedPorts"] = ports
    if settings.labels:
        labels = dict(cfg.get("Labels") or {})
        labels.update(settings.labels)
        cfg["Labels"] = labels
    config: dict[str, Any] = {
        "architecture": arch,
        "os": os_name,
        "created": created,
        "config": cfg,
        "rootfs": {"type": "layers",
                   "diff_ids": list((base.get("rootfs") or {}).get("diff_ids") or []) + [l.diff_id for l in layers]},
        "history": list(base.get("history") or []) + [
            {k: v for k, v in (("created", created), ("created_by", h.created_by), ("comment", h.comment),
                               ("empty_layer", h.empty_layer)) if v}
            for h in history
        ],
    }
    if variant:
        config["variant"] = variant
    return config


def image_manifest(config_bytes: bytes, layers: Sequence[dict], annotations: dict[str, str] | None = None) -> dict:
    """An OCI manifest: the config descriptor and layer descriptors (base first)."""
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": sha256_digest(config_bytes), "size": len(config_bytes)},
        "layers": list(layers),
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    return manifest


OCI_ANNOTATION = "org.opencontainers.image."


def standard_labels(*, title: str | None = None, version: str | None = None, source: str | None = None,
                    revision: str | None = None, created: str | None = None) -> dict[str, str]:
    """`org.opencontainers.image.*` annotations/labels from what the project knows."""
    pairs = {"title": title, "version": version, "source": source, "revision": revision, "created": created}
    return {f"{OCI_ANNOTATION}{k}": v for k, v in pairs.items() if v}


def standard_annotations(*, version: str | None = None, source: str | None = None,
                         revision: str | None = None) -> dict[str, str]:
    """The project's part of the standard annotations (`created` comes from the build, `title` from the name)."""
    return standard_labels(version=version, source=source, revision=revision)
