"""Write `pixi.lock` (format version 6) files for generated test material and the embedded demo.

Only what tests need: conda and wheel packages per environment/platform, written in pixi's field
order so both our reader and rattler's read them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import yaml

from pixibuild.conda.records import CondaRecord, PypiRecord

Package = CondaRecord | PypiRecord


def _conda_entry(record: CondaRecord) -> dict:
    entry: dict = {"conda": record.url}
    for key in ("name", "version", "build"):
        entry[key] = getattr(record, key)
    entry["build_number"] = record.build_number
    entry["subdir"] = record.subdir
    if record.sha256:
        entry["sha256"] = record.sha256
    if record.md5:
        entry["md5"] = record.md5
    entry["depends"] = list(record.depends)
    if record.constrains:
        entry["constrains"] = list(record.constrains)
    if record.noarch:
        entry["noarch"] = record.noarch
    if record.license:
        entry["license"] = record.license
    if record.size is not None:
        entry["size"] = record.size
    if record.timestamp is not None:
        entry["timestamp"] = record.timestamp
    return entry


def _pypi_entry(record: PypiRecord) -> dict:
    entry: dict = {"pypi": record.location, "name": record.name, "version": record.version}
    if record.sha256:
        entry["sha256"] = record.sha256
    if record.requires_dist:
        entry["requires_dist"] = list(record.requires_dist)
    if record.requires_python:
        entry["requires_python"] = record.requires_python
    if record.editable:
        entry["editable"] = True
    return entry


def write_lock(path: Path, environments: Mapping[str, Mapping[str, Sequence[Package]]],
               channels: Sequence[str] = ("https://conda.anaconda.org/conda-forge/",),
               indexes: Sequence[str] = ("https://pypi.org/simple",)) -> Path:
    """`environments`: env name → platform → packages (conda and pypi, in install order); `indexes`:
    the PyPI indexes an environment with pypi packages was resolved against."""
    unique: dict[tuple, dict] = {}
    envs: dict = {}
    for env_name, platforms in environments.items():
        listing: dict = {}
        for platform, packages in platforms.items():
            rows = []
            for pkg in packages:
                if isinstance(pkg, CondaRecord):
                    rows.append({"conda": pkg.url})
                    unique.setdefault(("conda", pkg.url), _conda_entry(pkg))
                else:
                    rows.append({"pypi": pkg.location})
                    unique.setdefault(("pypi", pkg.location), _pypi_entry(pkg))
            listing[platform] = rows
        env: dict = {"channels": [{"url": c} for c in channels]}
        if any("pypi" in row for rows in listing.values() for row in rows):
            env["indexes"] = list(indexes)
        env["packages"] = listing
        envs[env_name] = env
    document = {"version": 6, "environments": envs,
                "packages": [unique[k] for k in sorted(unique, key=lambda k: (k[1], k[0]))]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=10_000))
    return path
