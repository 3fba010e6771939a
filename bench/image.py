"""Image build benchmark: cold builds (gzip and zstd layers) against compressing the same installed
environment with the standard tools, peak memory of the build, and — on the real corpus — warm
rebuilds and a one-package change.

Two environments:

- generated: `--generated-mb` MB (default 1536) of incompressible data in `--packages` packages of
  several files each (the size a CUDA/PyTorch environment reaches; random bytes so compression
  cannot make the work disappear);
- real: linux-64 packages from ../shared/corpus/pkgs (one build per name, noarch python excluded
  since no python is in the set).

Baselines, on the environment installed at the image prefix: `tar -cf - . | gzip -6` and
`tar -cf - . | zstd -3 -T0` (what `docker build` + push would spend compressing), and the same
after `install_environment` (what a Dockerfile's `pixi install` + compression costs from the
archives). The floor of any build from the archives is printed too: decompressing them once. The cold image
builds (install each package into its layer, tar, compress, hash) run in a child process, so its
peak RSS (VmHWM) is the build's own. Prints numbers and ratios; no thresholds.

    .venv/bin/python bench/image.py [--generated-mb 1536] [--packages 16] [--max-packages 60] [--skip-generated]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import benchlib

from pixibuild.conda.archive import record_from_archive
from pixibuild.demo.condapkg import PackageSpec, PkgFile, locked_record, write_package
from pixibuild.install.environment import install_environment
from pixibuild.oci.build import build_image
from pixibuild.oci.layer import LayerCache

CORPUS = benchlib.CORPUS / "pkgs"
PREFIX = "/app/.pixi/envs/bench"
FILE_MB = 8

_CHILD = textwrap.dedent("""
    import json, pickle, sys, time
    from pathlib import Path
    from pixibuild.oci.build import build_image
    from pixibuild.oci.layer import LayerCache
    packages, cache_dir, compression, prefix = pickle.load(open(sys.argv[1], "rb"))
    def peak_rss_mb():
        # VmHWM: this process image's own peak (ru_maxrss would include the parent's, kept across exec)
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    start = time.perf_counter()
    result = build_image(packages, platform="linux-64", target_prefix=prefix,
                         cache=LayerCache(Path(cache_dir), compression=compression))
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "layers": len(result.image.layers), "built": result.layers_built,
                      "bytes": sum(l.size for l in result.image.layers), "digest": result.image.digest,
                      "rss_mb": peak_rss_mb()}))
""")


def child_build(packages, cache_dir: Path, compression: str, scratch: Path) -> dict:
    """A cold build in a fresh interpreter: wall time (interpreter start included), its result, and
    its own peak RSS in MB (VmHWM, measured by the child)."""
    import json
    import pickle

    args = scratch / "args.pickle"
    args.write_bytes(pickle.dumps((packages, str(cache_dir), compression, PREFIX)))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(args)], stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"build child failed ({proc.returncode})")
    result = json.loads(proc.stdout)
    result["wall"] = wall
    return result


def shell_seconds(command: str) -> float:
    start = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True)
    return time.perf_counter() - start


def drop_file(path: Path) -> int:
    size = path.stat().st_size
    path.unlink()
    return size


def generated_packages(root: Path, total_mb: int, count: int) -> list:
    """`count` linux-64 packages of random files adding up to `total_mb` MB (sizes vary 0.5x–1.5x)."""
    per = total_mb / count
    out = []
    for i in range(count):
        size_mb = max(1, round(per * (0.5 + i / max(1, count - 1))))
        files, left = [], size_mb
        while left > 0:
            chunk = min(FILE_MB, left)
            files.append(PkgFile(f"lib/data{i:02d}/part{len(files):03d}.bin", os.urandom(chunk << 20)))
            left -= chunk
        spec = PackageSpec(f"blob{i:02d}", "1.0", "h0_0", subdir="linux-64", files=files)
        path = write_package(spec, root)
        out.append((locked_record(spec, path), path))
    return out


def corpus_packages(limit: int) -> list:
    """Real linux-64 packages the installer accepts, first build per name."""
    from pixibuild.errors import PixibuildError
    from pixibuild.install.environment import install_package

    chosen: dict[str, Path] = {}
    with open(CORPUS / "INDEX.tsv") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if (row["subdir"] != "linux-64" or not row["origin"].startswith("real") or row["noarch"] != "-"
                    or row["format"] not in ("conda-v2(zip)", "tar.bz2") or row["dup_of"] != "-"
                    or row["notes"] not in ("-", "bad-metadata.json") or row["name"] in chosen):
                continue
            if (CORPUS / row["file"]).exists() and len(chosen) < limit:
                chosen[row["name"]] = CORPUS / row["file"]
    out = []
    with tempfile.TemporaryDirectory() as probe:
        for name, path in chosen.items():
            record = record_from_archive(path, url=f"https://repo.anaconda.com/pkgs/main/linux-64/{path.name}")
            try:
                install_package(record, path, Path(probe) / name, target_prefix=PREFIX, python_version=None,
                                platform="linux-64")
            except PixibuildError:
                continue
            out.append((record, path))
    return out


def compare(label: str, packages: list, tmp: Path) -> None:
    env_dir = tmp / "env"
    t_install = time.perf_counter()
    install_environment(packages, env_dir, target_prefix=PREFIX, platform="linux-64")
    t_install = time.perf_counter() - t_install
    installed = sum(p.stat().st_size for p in env_dir.rglob("*") if p.is_file() and not p.is_symlink())
    t_gzip = shell_seconds(f"tar -C {env_dir} -cf - . | gzip -6 > {tmp / 'env.tar.gz'}")
    gz_size = drop_file(tmp / "env.tar.gz")
    t_zstd = shell_seconds(f"tar -C {env_dir} -cf - . | zstd -q -3 -T0 > {tmp / 'env.tar.zst'}")
    zst_size = drop_file(tmp / "env.tar.zst")
    shutil.rmtree(env_dir)
    print(f"[{label}] {len(packages)} packages, {installed / 1e6:.0f} MB installed; install_environment {t_install:.1f} s")
    print(f"[{label}] baseline tar | gzip -6: {t_gzip:.1f} s ({gz_size / 1e6:.0f} MB); "
          f"tar | zstd -3 -T0: {t_zstd:.1f} s ({zst_size / 1e6:.0f} MB)")
    # The baselines start from an installed tree; a cold image build starts from the archives.
    t_decompress = benchlib.decompression_seconds([path for _, path in packages])
    print(f"[{label}] floor of any build from the archives: decompressing them once takes {t_decompress:.2f} s of CPU "
          f"({t_decompress / t_gzip:.2f}x the gzip baseline, {t_decompress / t_zstd:.2f}x the zstd baseline); "
          f"what `pixi install` + compressing the layer costs: {t_install + t_gzip:.1f} s (gzip), "
          f"{t_install + t_zstd:.1f} s (zstd)")
    for compression, baseline, tool in (("gzip", t_gzip, "tar|gzip -6"), ("zstd", t_zstd, "tar|zstd -3 -T0")):
        cache = tmp / f"cache-{compression}"
        cold = child_build(packages, cache, compression, tmp)
        print(f"[{label}] cold {compression} build: {cold['wall']:.1f} s wall ({cold['seconds']:.1f} s in build_image), "
              f"{cold['layers']} layers, {cold['bytes'] / 1e6:.0f} MB; ratio to {tool}: {cold['wall'] / baseline:.2f} "
              f"(build_image alone {cold['seconds'] / baseline:.2f}); ratio to install + {tool}: "
              f"{cold['wall'] / (t_install + baseline):.2f}; peak RSS {cold['rss_mb']:.0f} MB")
        shutil.rmtree(cache)


def warm_and_change(packages: list, tmp: Path) -> None:
    """On the real set: warm rebuild and a one-package change, in process."""
    cache = LayerCache(tmp / "warm")
    build = lambda pkgs: build_image(pkgs, platform="linux-64", target_prefix=PREFIX, cache=cache)
    first = build(packages)
    start = time.perf_counter()
    warm = build(packages)
    t_warm = time.perf_counter() - start
    assert warm.image.digest == first.image.digest
    print(f"[real] warm build_image: {t_warm:.3f} s ({warm.layers_built} layers built, {warm.layers_reused} reused)")
    victim = packages[len(packages) // 2]
    spec = PackageSpec(victim[0].name, victim[0].version + ".post1", "h9_9", subdir="linux-64",
                       files=[PkgFile("share/changed.txt", b"a changed package\n")])
    changed_path = write_package(spec, tmp / "changed")
    changed = [p if p is not victim else (locked_record(spec, changed_path), changed_path) for p in packages]
    start = time.perf_counter()
    after = build(changed)
    t_change = time.perf_counter() - start
    differing = sum(a.digest != b.digest for a, b in zip(first.image.layers, after.image.layers))
    print(f"[real] one package changed ({victim[0].name}): {t_change:.2f} s, {after.layers_built} layers built, "
          f"{differing} of {len(after.image.layers)} layer digests differ")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--generated-mb", type=int, default=1536, help="size of the generated environment")
    parser.add_argument("--packages", type=int, default=16, help="packages in the generated environment")
    parser.add_argument("--max-packages", type=int, default=60, help="real corpus packages to use")
    parser.add_argument("--skip-generated", action="store_true")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="bench-image-") as tmp_name:
        tmp = Path(tmp_name)
        if benchlib.CORPUS.exists():
            real = corpus_packages(args.max_packages)
            compare("real", real, tmp)
            warm_and_change(real, tmp)
        else:
            print("[real] corpus not found: skipped")
        if not args.skip_generated:
            start = time.perf_counter()
            generated = generated_packages(tmp / "generated", args.generated_mb, args.packages)
            print(f"[generated] wrote {args.packages} packages, {args.generated_mb} MB of random data, in "
                  f"{time.perf_counter() - start:.0f} s")
            compare("generated", generated, tmp)


if __name__ == "__main__":
    main()
