"""Parse time of the largest corpus lock: pixibuild's reader vs py-rattler (goal: <= 1.5x).

Usage: python bench/lock_parse.py [LOCK] [--runs N]. Both readers run alternately in the same
process, N times each, so machine load hits both alike; prints min and median per reader, their
ratios, where our time goes (YAML text -> document, document -> records), and the PyYAML
fallback's time (the path for YAML the fast reader declines).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from benchlib import CORPUS as SHARED_CORPUS
from pixibuild.inputs import lockfile, simpleyaml
from pixibuild.inputs.lockfile import read_lock

CORPUS = SHARED_CORPUS / "locks"
GOAL = 1.5


def largest_lock() -> Path:
    return max(CORPUS.glob("*/pixi.lock"), key=lambda p: p.stat().st_size)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ours(path: Path) -> int:
    lock = read_lock(path)
    return sum(len(env.conda_packages(p)) + len(env.pypi_packages(p))
               for env in lock.environments.values() for p in env.platforms)


def ours_pyyaml_only(path: Path) -> int:
    """Our reader with the fast YAML path disabled (PyYAML's C base loader for everything)."""
    ctx = lockfile._Ctx(path)
    lock = lockfile._from_document(ctx, lockfile._load_yaml(ctx, path.read_text()), path)
    return sum(len(env.conda_packages(p)) + len(env.pypi_packages(p))
               for env in lock.environments.values() for p in env.platforms)


def theirs(path: Path) -> int:
    import rattler

    lock = rattler.LockFile.from_path(path)
    return sum(len(env.packages(p) or []) for _, env in lock.environments() for p in env.platforms())


def stages(path: Path) -> tuple[float, float]:
    """(read + YAML, document -> records) of one parse through the fast path."""
    start = time.perf_counter()
    doc = simpleyaml.load(path.read_text(encoding="utf-8"))
    middle = time.perf_counter()
    lockfile._from_document(lockfile._Ctx(path), doc, path)
    return middle - start, time.perf_counter() - middle


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", nargs="?", type=Path)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    path = args.lock or largest_lock()
    print(f"lock: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    n_ours = ours(path)
    assert ours_pyyaml_only(path) == n_ours, "the PyYAML fallback reads a different lock"
    try:
        n_theirs = theirs(path)
    except ImportError:
        n_theirs = None
        print("py-rattler not installed: no comparison")

    t_ours, t_theirs, t_yaml, t_records = [], [], [], []
    for run in range(args.runs):
        pair = [("ours", lambda: ours(path))]
        if n_theirs is not None:
            pair.append(("theirs", lambda: theirs(path)))
        for name, fn in pair if run % 2 else pair[::-1]:  # alternate who goes first
            (t_ours if name == "ours" else t_theirs).append(timed(fn))
        yaml_s, records_s = stages(path)
        t_yaml.append(yaml_s)
        t_records.append(records_s)
    t_pyyaml = [timed(lambda: ours_pyyaml_only(path)) for _ in range(max(1, args.runs // 3))]

    print(f"{'':24s} {'min':>10s} {'median':>10s}")
    print(f"{'pixibuild':24s} {ms(min(t_ours))} {ms(statistics.median(t_ours))}  ({n_ours} package entries)")
    print(f"{'  read + YAML':24s} {ms(min(t_yaml))} {ms(statistics.median(t_yaml))}")
    print(f"{'  document -> records':24s} {ms(min(t_records))} {ms(statistics.median(t_records))}")
    print(f"{'pixibuild, PyYAML only':24s} {ms(min(t_pyyaml))} {ms(statistics.median(t_pyyaml))}  (fast YAML path off)")
    if n_theirs is None:
        return
    print(f"{'rattler':24s} {ms(min(t_theirs))} {ms(statistics.median(t_theirs))}  ({n_theirs} package entries)")
    ratio_min = min(t_ours) / min(t_theirs)
    ratio_median = statistics.median(t_ours) / statistics.median(t_theirs)
    verdict = "met" if ratio_median <= GOAL else "NOT met"
    print(f"ratio pixibuild/rattler: {ratio_min:.2f}x (min)  {ratio_median:.2f}x (median)   "
          f"goal <= {GOAL}x: {verdict}")


if __name__ == "__main__":
    main()
