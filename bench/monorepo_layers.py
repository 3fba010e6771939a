"""Layers of a monorepo's images: grouped per image vs grouped for the whole workspace.

A generated monorepo of 20 projects whose locks overlap like real ones: a common base (every project
locks it) plus per-project extras drawn from a shared pool (some extras are popular). Each project's
image has more packages than its layer budget (default max-layers 100), so packages must share
layers. Real conda packages (random, incompressible payloads) are installed into real gzip layers.

Prints the total unique layer bytes a registry holds for all images, with per-image grouping
(oci/grouping.group_packages: each image on its own) and with workspace grouping
(oci/grouping.WorkspaceGrouping), and what one package bump (a new build of a base package, then of
an extra, in one project's lock) re-pushes: layers and bytes per affected image, and how many
images changed at all. Goals (issue 16): ≥ 30 % fewer unique bytes; a bump re-pushes ≤ 2 layers
per affected image.

    .venv/bin/python bench/monorepo_layers.py [--projects 20] [--base 120] [--extras 20:60] [--keep DIR]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pixibuild.conda.records import CondaRecord
from pixibuild.demo.condapkg import PackageSpec, PkgFile, locked_record, write_package
from pixibuild.oci.build import build_package_layer
from pixibuild.oci.grouping import DEFAULT_MAX_LAYERS, WorkspaceGrouping
from pixibuild.oci.layer import LayerCache
from pixibuild.oci.layerplan import image_set, package_budget, plan_layers

PREFIX = "/app/.pixi/envs/default"
PLATFORM = "linux-64"


def make_package(channel: Path, rng: random.Random, name: str, deps: list[str], median_kib: float,
                 build: str = "0") -> tuple[CondaRecord, Path]:
    size = int(min(rng.lognormvariate(0, 1.0) * median_kib * 1024, 4 << 20))
    spec = PackageSpec(name, "1.0", build, subdir=PLATFORM, depends=tuple(deps),
                       files=[PkgFile(f"lib/{name}/data.bin", rng.randbytes(size)),
                              PkgFile(f"share/{name}/build.txt", build.encode())])
    path = write_package(spec, channel / PLATFORM, ".conda")
    return locked_record(spec, path), path


def make_monorepo(root: Path, projects: int, n_base: int, extras: tuple[int, int], pool: int,
                  median_kib: float, seed: int) -> tuple[dict[str, tuple[CondaRecord, Path]], list[list[str]]]:
    """(packages by name, each project's package names): a base every project has, extras per project."""
    rng = random.Random(seed)
    channel = root / "channel"
    packages: dict[str, tuple[CondaRecord, Path]] = {}
    base = [f"base{i:03d}" for i in range(n_base)]
    for i, name in enumerate(base):
        deps = sorted({base[int(i * rng.random() ** 2)] for _ in range(rng.randint(0, 4)) if i} - {name})
        packages[name] = make_package(channel, rng, name, deps, median_kib)
    extra = [f"extra{i:03d}" for i in range(pool)]
    for name in extra:
        deps = sorted(set(rng.sample(base, 3)))
        packages[name] = make_package(channel, rng, name, deps, median_kib)
    weights = [1.0 / (1 + i) ** 0.8 for i in range(pool)]  # a few popular extras, a long tail
    names = []
    for _ in range(projects):
        chosen: set[str] = set()
        while len(chosen) < rng.randint(*extras):
            chosen.add(rng.choices(extra, weights)[0])
        names.append(base + sorted(chosen))
    return packages, names


def layers_of(images: list[list[tuple[CondaRecord, Path]]], cache: LayerCache, workspace: bool) -> list[dict[str, int]]:
    """Each image's package layers (digest → size), built into `cache`."""
    budget_args = dict(platform=PLATFORM, target_prefix=PREFIX, max_layers=DEFAULT_MAX_LAYERS, base_layers=0,
                       app_layer=False)
    grouping = WorkspaceGrouping.of(image_set([r for r, _ in packages], **budget_args) for packages in images) \
        if workspace else None
    out = []
    for packages in images:
        plan = plan_layers(packages, **budget_args, grouping=grouping)
        assert len(plan.packages) <= package_budget(DEFAULT_MAX_LAYERS, 0, False), "over budget"
        assert sorted(r.name for layer in plan.packages for r in layer.records) == sorted(r.name for r, _ in packages)
        built = [build_package_layer(layer.spec, cache) for layer in plan.packages]
        out.append({layer.digest: layer.size for layer in built})
    return out


def unique_bytes(images: list[dict[str, int]]) -> int:
    merged: dict[str, int] = {}
    for layers in images:
        merged.update(layers)
    return sum(merged.values())


def repush(before: list[dict[str, int]], after: list[dict[str, int]]) -> tuple[int, int, int, int]:
    """(images changed, most new layers in one image, new layers in all, bytes a registry lacks)."""
    registry = {d for layers in before for d in layers}
    changed = [set(a) - set(b) for a, b in zip(after, before) if set(a) != set(b)]
    new: dict[str, int] = {}
    for layers in after:
        new.update({d: s for d, s in layers.items() if d not in registry})
    return len(changed), max((len(c) for c in changed), default=0), len(new), sum(new.values())


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--projects", type=int, default=20)
    ap.add_argument("--base", type=int, default=120, help="packages every project locks")
    ap.add_argument("--extras", default="20:60", help="per-project extras, MIN:MAX")
    ap.add_argument("--pool", type=int, default=300, help="extras to draw from")
    ap.add_argument("--median-kib", type=float, default=24.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, help="work dir to keep (default: a temp dir, removed)")
    args = ap.parse_args()
    low, high = (int(x) for x in args.extras.split(":"))
    work = args.keep or Path(tempfile.mkdtemp(prefix="pixibuild-bench-layers-"))
    try:
        t = time.perf_counter()
        packages, names = make_monorepo(work, args.projects, args.base, (low, high), args.pool, args.median_kib,
                                        args.seed)
        images = [[packages[n] for n in image] for image in names]
        sizes = [len(i) for i in images]
        print(f"{len(images)} images, {min(sizes)}–{max(sizes)} packages each, package-layer budget "
              f"{package_budget(DEFAULT_MAX_LAYERS, 0, False)}; {len(packages)} packages, "
              f"{mb(sum(p.stat().st_size for _, p in packages.values()))} of archives ({time.perf_counter() - t:.1f} s)")
        results = {}
        for workspace in (False, True):
            cache = LayerCache(work / ("layers-workspace" if workspace else "layers-per-image"))
            t = time.perf_counter()
            before = layers_of(images, cache, workspace)
            total = sum(sum(layers.values()) for layers in before)
            unique = unique_bytes(before)
            label = "workspace grouping" if workspace else "per-image grouping"
            print(f"{label:20s}: unique layer bytes {mb(unique)} in {len({d for l in before for d in l})} layers "
                  f"(images total {mb(total)}; {time.perf_counter() - t:.1f} s)")
            bumps = []
            rng = random.Random(args.seed + 1)
            for kind in ("base", "extra"):
                project = 0
                # the last of its kind: a package that shares a bucket layer rather than having its own
                name = [n for n in names[project] if n.startswith(kind)][-1]
                record, _ = packages[name]
                bumped = make_package(work / "channel-bumped", rng, name, list(record.depends), args.median_kib,
                                      build=f"1_{kind}")
                after_images = [[bumped if (i == project and r.name == name) else (r, p) for r, p in image]
                                for i, image in enumerate(images)]
                after = layers_of(after_images, cache, workspace)
                bumps.append((kind, name, *repush(before, after)))
            results[workspace] = (unique, bumps)
            for kind, name, changed, per_image, layers, nbytes in bumps:
                print(f"    bump {name} ({kind}) in project 0: {changed} image(s) changed, at most {per_image} "
                      f"new layer(s) per image, {layers} new layer(s) in all, {mb(nbytes)} to re-push")
        per_image, workspace = results[False][0], results[True][0]
        print(f"workspace vs per-image: {(1 - workspace / per_image) * 100:.0f} % fewer unique layer bytes "
              f"(goal ≥ 30 %); bump re-push: at most {max(b[3] for b in results[True][1])} layer(s) per affected "
              f"image (goal ≤ 2)")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
