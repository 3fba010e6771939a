"""Inspect and prune the local cache: `pixibuild cache info`, `pixibuild cache prune`.

`info` prints the store's size per kind (package blobs, image layers, parsed locks, built wheels, build
environments, git checkouts, logs, pip's cache) and how many builds are running on it. `prune` removes the
least recently used units until the store fits `--max-size`, and those unused for `--older-than`, or
everything with `--all` (like `pixi clean cache`); `--dry-run` only says what it would remove. It is safe
while builds run: what a running build holds is kept (`pixibuild.store.lease`), and a download in progress
is never cut.
"""

from __future__ import annotations

import argparse
import json
import time

from pixibuild.commands.args import add_store_argument
from pixibuild.errors import InputError

COMMAND_NAME = "cache"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("info", "prune"),
                        help="info: sizes per kind; prune: remove least recently used entries")
    parser.add_argument("--max-size", default=None, metavar="SIZE",
                        help="prune: remove least recently used entries until the store is at most SIZE "
                             "(20G, 500M, 1.5GiB)")
    parser.add_argument("--older-than", default=None, metavar="AGE",
                        help="prune: remove entries unused for AGE (30d, 12h, 2w)")
    parser.add_argument("--all", dest="everything", action="store_true",
                        help="prune: remove everything no running build holds (as pixi clean cache)")
    parser.add_argument("--dry-run", action="store_true", help="prune: only say what would be removed")
    parser.add_argument("--json", action="store_true", help="info: print JSON")
    add_store_argument(parser)


def run(args: argparse.Namespace) -> int:
    from pixibuild.store.gc import KINDS, human, parse_age, parse_size, prune, summarize, usage
    from pixibuild.store.roots import store_root

    root = store_root(args.cache_dir)
    if args.action == "info":
        given = [f for f, v in (("--max-size", args.max_size), ("--older-than", args.older_than),
                                ("--all", args.everything), ("--dry-run", args.dry_run)) if v]
        if given:
            raise InputError(f"{', '.join(given)}: only for `pixibuild cache prune`", field="cache info")
        found = usage(root)
        if args.json:
            print(json.dumps({"store": str(root), "total": found.total, "live_builds": found.live_builds,
                              "kinds": {k: {"count": n, "bytes": b} for k, (n, b) in found.by_kind.items()},
                              "other": found.other}, indent=1))
            return 0
        print(f"{root}: {human(found.total)}" + (f", {found.live_builds} builds running" if found.live_builds else ""))
        for kind in KINDS:
            count, size = found.by_kind[kind]
            print(f"  {kind:<16} {count:>7}  {human(size):>10}")
        for kind, size in found.other.items():
            print(f"  {kind:<16} {'':>7}  {human(size):>10}")
        return 0
    max_size = parse_size(args.max_size) if args.max_size is not None else None
    older = parse_age(args.older_than) if args.older_than is not None else None
    t0 = time.monotonic()
    report = prune(root, max_size=max_size, older_than=older, everything=args.everything, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    kept = f"; kept {report.kept_in_use} entries {report.live_builds} running builds hold" if report.live_builds else ""
    print(f"{verb} {summarize(report.removed)}; {human(report.before)} → {human(report.after)}{kept} "
          f"({time.monotonic() - t0:.1f} s)")
    return 0
