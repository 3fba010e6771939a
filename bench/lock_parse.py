"""Parse time of the largest corpus lock: pixibuild's reader vs py-rattler (best of N runs).

Usage: python bench/lock_parse.py [LOCK] [--runs N]. Prints seconds per parse, packages, ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pixibuild.inputs.lockfile import read_lock  # noqa: E402

CORPUS = Path(os.environ.get("PIXIBUILD_SHARED", REPO.parent / "shared")) / "corpus" / "locks"


def largest_lock() -> Path:
    return max(CORPUS.glob("*/pixi.lock"), key=lambda p: p.stat().st_size)


def best_of(runs: int, fn) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def ours(path: Path) -> int:
    lock = read_lock(path)
    return sum(len(env.conda_packages(p)) + len(env.pypi_packages(p))
               for env in lock.environments.values() for p in env.platforms)


def ours_pyyaml_only(path: Path) -> int:
    """Our reader with the fast YAML path disabled (PyYAML's C base loader for everything)."""
    from pixibuild.inputs import lockfile

    ctx = lockfile._Ctx(path)
    lock = lockfile._from_document(ctx, lockfile._load_yaml(ctx, path.read_text()), path)
    return sum(len(env.conda_packages(p)) for env in lock.environments.values() for p in env.platforms)


def theirs(path: Path) -> int:
    import rattler

    lock = rattler.LockFile.from_path(path)
    return sum(len(env.packages(p) or []) for _, env in lock.environments() for p in env.platforms())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("lock", nargs="?", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    path = args.lock or largest_lock()
    print(f"lock: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    n_ours = ours(path)
    t_ours = best_of(args.runs, lambda: ours(path))
    print(f"pixibuild: {t_ours * 1000:8.1f} ms  ({n_ours} package entries over all environments/platforms)")
    t_slow = best_of(args.runs, lambda: ours_pyyaml_only(path))
    print(f"pixibuild, PyYAML only: {t_slow * 1000:8.1f} ms  (fast YAML path off)")
    try:
        n_theirs = theirs(path)
    except ImportError:
        print("py-rattler not installed: no comparison")
        return
    t_theirs = best_of(args.runs, lambda: theirs(path))
    print(f"rattler:   {t_theirs * 1000:8.1f} ms  ({n_theirs} package entries)")
    print(f"ratio pixibuild/rattler: {t_ours / t_theirs:.2f}x")


if __name__ == "__main__":
    main()
