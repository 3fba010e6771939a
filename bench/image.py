"""Image build benchmark: cold and warm `build_image` vs `tar | gzip -6` of the same installed
environment, and how many layers a one-package change rebuilds.

Packages: real linux-64 conda packages from ../shared/corpus/pkgs (one build per name, noarch
python excluded since no python is in the set); the changed package is another build of one of
them (e.g. ncurses 6.1 → 6.2). Prints numbers and ratios; no thresholds.

    .venv/bin/python bench/image.py [--max-packages N]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import benchlib

from pixibuild.conda.archive import record_from_archive
from pixibuild.install.environment import install_environment
from pixibuild.oci.build import build_image
from pixibuild.oci.layer import LayerCache
from pixibuild.oci.layout import write_image_tar

CORPUS = benchlib.CORPUS / "pkgs"
PREFIX = "/app/.pixi/envs/bench"


def corpus_record(path: Path):
    """The record a lock would pin for a corpus package (index.json + the file's hashes)."""
    return record_from_archive(path, url=f"https://repo.anaconda.com/pkgs/main/linux-64/{path.name}")


def corpus_packages(limit: int):
    """(by-name choice, alternatives): real linux-64 packages, first build per name."""
    chosen: dict[str, Path] = {}
    alternatives: dict[str, list[Path]] = {}
    with open(CORPUS / "INDEX.tsv") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if (row["subdir"] != "linux-64" or not row["origin"].startswith("real") or row["noarch"] != "-"
                    or row["format"] not in ("conda-v2(zip)", "tar.bz2") or row["dup_of"] != "-"
                    or row["notes"] not in ("-", "bad-metadata.json")):
                continue
            path = CORPUS / row["file"]
            if not path.exists():
                continue
            alternatives.setdefault(row["name"], []).append(path)
            if row["name"] not in chosen and len(chosen) < limit:
                chosen[row["name"]] = path
    return chosen, alternatives


def installable(record, path, scratch: Path) -> bool:
    """Only packages the installer accepts (some corpus packages are deliberately odd)."""
    from pixibuild.errors import PixibuildError
    from pixibuild.install.environment import install_package

    target = scratch / record.name
    try:
        install_package(record, path, target, target_prefix=PREFIX, python_version=None, platform="linux-64")
        return True
    except PixibuildError as exc:
        print(f"excluded: {exc}")
        return False
    finally:
        shutil.rmtree(target, ignore_errors=True)


def records_for(chosen: dict[str, Path], alternatives: dict[str, list[Path]], scratch: Path):
    """Per name, the first build the installer accepts (some corpus copies are truncated test data)."""
    out = []
    for name, first in chosen.items():
        for path in [first] + [p for p in alternatives[name] if p != first]:
            record = corpus_record(path)
            if installable(record, path, scratch):
                out.append((record, path))
                chosen[name] = path
                break
    return out


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-packages", type=int, default=60)
    args = parser.parse_args()
    chosen, alternatives = corpus_packages(args.max_packages)
    with tempfile.TemporaryDirectory(prefix="bench-image-") as tmp:
        tmp = Path(tmp)
        packages = records_for(chosen, alternatives, tmp / "probe")
        cache = LayerCache(tmp / "cache")
        build = lambda pkgs: build_image(pkgs, platform="linux-64", target_prefix=PREFIX, cache=cache)
        t_cold, cold = timed(lambda: build(packages))
        t_tar_out, _ = timed(lambda: write_image_tar(cold.image, tmp / "image.tar"))
        t_warm, warm = timed(lambda: build(packages))
        assert warm.image.digest == cold.image.digest

        env_dir = tmp / "env"
        t_install, _ = timed(lambda: install_environment(packages, env_dir, target_prefix=PREFIX, platform="linux-64"))
        t_gzip, _ = timed(lambda: subprocess.run(f"tar -C {env_dir} -cf - . | gzip -6 > {tmp / 'env.tar.gz'}",
                                                 shell=True, check=True))
        raw_size = sum(p.stat().st_size for p in env_dir.rglob("*") if p.is_file() and not p.is_symlink())

        # one-package change: another build of a package in the set
        swap = next(((name, alt) for name, alts in sorted(alternatives.items()) for alt in alts
                     if name in {r.name for r, _ in packages} and alt != chosen[name]
                     and corpus_record(alt).sha256 != corpus_record(chosen[name]).sha256), None)
        print(f"packages: {len(packages)}, installed size {raw_size / 1e6:.1f} MB, image layers {len(cold.image.layers)}, "
              f"layer blobs {sum(l.size for l in cold.image.layers) / 1e6:.1f} MB gz "
              f"(env tar.gz {(tmp / 'env.tar.gz').stat().st_size / 1e6:.1f} MB)")
        print(f"cold build_image: {t_cold:.2f} s  (+ image tar write {t_tar_out:.2f} s)")
        print(f"warm build_image: {t_warm:.3f} s  ({warm.layers_built} layers built, {warm.layers_reused} reused)")
        print(f"baseline install_environment: {t_install:.2f} s; tar | gzip -6 of it: {t_gzip:.2f} s; "
              f"install + tar|gzip: {t_install + t_gzip:.2f} s")
        print(f"ratio cold / (install + tar|gzip): {t_cold / (t_install + t_gzip):.2f}; "
              f"ratio cold / tar|gzip: {t_cold / t_gzip:.2f}; ratio warm / tar|gzip: {t_warm / t_gzip:.3f}")
        if swap:
            name, alt = swap
            changed = [(r, p) if r.name != name else (corpus_record(alt), alt) for r, p in packages]
            for max_layers in (None, 8):
                kw = {"max_layers": max_layers} if max_layers else {}
                before = build_image(packages, platform="linux-64", target_prefix=PREFIX, cache=cache, **kw)
                t_change, after = timed(lambda: build_image(changed, platform="linux-64", target_prefix=PREFIX,
                                                            cache=cache, **kw))
                differing = sum(a.digest != b.digest for a, b in zip(before.image.layers, after.image.layers))
                print(f"one-package change ({name}: {chosen[name].name} -> {alt.name}), "
                      f"max_layers={max_layers or 'default'}: {t_change:.2f} s, {after.layers_built} layers rebuilt, "
                      f"{differing} of {len(after.image.layers)} layer digests differ")
        else:
            print("one-package change: no alternative build in the corpus")
        shutil.rmtree(tmp / "env", ignore_errors=True)


if __name__ == "__main__":
    main()
