"""Large synthetic workspaces for benchmarks: many projects sharing thousands of real packages.

Package sizes follow a log-normal distribution (most packages small, a few large, like conda-forge);
dependencies form a DAG in which low-numbered packages are the popular "base" libraries; each project
locks the closure of a few random roots. Everything is seeded, so a benchmark is repeatable.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import yaml

from pixibuild.conda.records import CondaRecord
from pixibuild.demo.condapkg import PackageSpec, PkgFile, locked_record, write_channel, write_package
from pixibuild.demo.lockwriter import _conda_entry, write_lock


def _spec(rng: random.Random, index: int, subdir: str, median_kib: float) -> PackageSpec:
    size = int(min(rng.lognormvariate(0, 1.3) * median_kib * 1024, 8 * 1024 * 1024))
    n_files = max(1, min(40, size // 16384))
    files = []
    for f in range(n_files):
        chunk = size // n_files
        files.append(PkgFile(f"lib/pkg{index:04d}/data{f:02d}.bin", rng.randbytes(chunk)))
    files.append(PkgFile(f"bin/tool{index:04d}", f"#!/bin/sh\necho tool{index} @PREFIX@\n".encode(), 0o755,
                         prefix="text"))
    n_deps = 0 if index < 10 else rng.randint(1, 5)
    # Popular base packages: dependencies skew towards low indices.
    deps = sorted({int(index * rng.random() ** 2) for _ in range(n_deps)} - {index})
    return PackageSpec(f"pkg{index:04d}", f"1.{index % 7}.0", f"h{index:08x}_0", subdir=subdir,
                       depends=tuple(f"pkg{d:04d}" for d in deps), files=files)


def write_workspace(root: Path, *, n_packages: int = 1000, n_projects: int = 20, seed: int = 0,
                    median_kib: float = 48.0, platform: str = "linux-64") -> list[Path]:
    """Write `root/channel` and `root/projects/pNN/{pixi.toml,pixi.lock}`; returns project dirs."""
    rng = random.Random(seed)
    specs = [_spec(rng, i, platform, median_kib) for i in range(n_packages)]
    files = write_channel([(s, ".conda") for s in specs], root / "channel")
    records: list[CondaRecord] = [locked_record(s, files[f"{s.dist_name}.conda"]) for s in specs]
    deps = {i: [int(d[3:]) for d in s.depends] for i, s in enumerate(specs)}
    channel_url = (root / "channel").resolve().as_uri()
    projects = []
    for p in range(n_projects):
        roots = rng.sample(range(n_packages), k=min(n_packages, rng.randint(5, 25)))
        closure: set[int] = set()
        stack = list(roots)
        while stack:
            i = stack.pop()
            if i not in closure:
                closure.add(i)
                stack.extend(deps[i])
        project = root / "projects" / f"p{p:02d}"
        project.mkdir(parents=True, exist_ok=True)
        names = ", ".join(f'"pkg{i:04d}" = "*"' for i in sorted(roots))
        (project / "pixi.toml").write_text(
            f'[workspace]\nname = "p{p:02d}"\nchannels = ["{channel_url}"]\nplatforms = ["{platform}"]\n\n'
            f"[dependencies]\n{names.replace(', ', chr(10))}\n")
        write_lock(project / "pixi.lock", {"default": {platform: [records[i] for i in sorted(closure)]}},
                   channels=[channel_url])
        projects.append(project)
    return projects


def bump_package(project_dir: Path, name: str, *, tag: str = "1", channel: Path | None = None) -> CondaRecord:
    """Rebuild package `name` with new content (build number +1, build string suffixed `tag`)
    into the channel it came from, and point `project_dir`'s lock at it — "one package changed in
    one lock", as in a real dependency bump. Other projects' locks are untouched. `channel` is the
    channel's directory when the lock reaches it by http (the new package's URL then has the lock's
    URL prefix)."""
    lock_path = project_dir / "pixi.lock"
    doc = yaml.safe_load(lock_path.read_text())
    entry = next(p for p in doc["packages"] if "conda" in p and p.get("name", _name_from_url(p["conda"])) == name)
    old_url = entry["conda"]
    if channel is not None:
        channel_subdir = channel / old_url.rsplit("/", 2)[1]
    else:
        channel_subdir = Path(old_url.removeprefix("file://")).parent
    spec = PackageSpec(name, str(entry["version"]), f"{entry['build']}_{tag}", build_number=int(entry.get("build_number", 0)) + 1,
                       subdir=entry.get("subdir", channel_subdir.name), depends=tuple(entry.get("depends", ())),
                       files=[PkgFile(f"lib/{name}/bumped-{tag}.txt", f"{name} rebuilt ({tag})\n".encode())])
    path = write_package(spec, channel_subdir, ".conda")
    record = locked_record(spec, path)
    if channel is not None:  # the same server, the new file
        record = dataclasses.replace(record, url=f"{old_url.rsplit('/', 1)[0]}/{path.name}")
    new_entry = _conda_entry(record)
    doc["packages"][doc["packages"].index(entry)] = new_entry
    for env in doc["environments"].values():
        for rows in env["packages"].values():
            for row in rows:
                if row.get("conda") == old_url:
                    row["conda"] = record.url
    lock_path.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=10_000))
    return record


def _name_from_url(url: str) -> str:
    return url.rsplit("/", 1)[-1].rsplit("-", 2)[0]
