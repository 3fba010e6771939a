"""Pack an environment into a pixi-pack compatible, byte-reproducible environment.tar."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pixibuild.commands.args import add_fetch_arguments, add_target_arguments, make_fetcher, manifest_arg, net_config

# Heavier modules (httpx, the installer, YAML) are imported where they are used, so that
# `pixibuild --help` and every other command start fast.

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser, verb="pack")
    parser.add_argument("-o", "--output-file", default=None,
                        help="output file, '-' for stdout (default: environment.tar, or environment/ "
                             "with --directory-only)")
    parser.add_argument("--directory-only", action="store_true", help="write a directory instead of a tar")
    parser.add_argument("--inject", action="append", default=[], metavar="FILE",
                        help="add a .conda/.tar.bz2/.whl to the pack (repeatable)")
    parser.add_argument("--ignore-pypi-non-wheel", "--ignore-pypi-errors", action="store_true",
                        help="skip sdist/git/local-path pypi entries instead of building them into wheels")
    parser.add_argument("--locked", action="store_true", help="fail if the lock does not satisfy the manifest")
    add_fetch_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from pixibuild.pack.writer import PackContents
    from pixibuild.pack.build import PackOutput, check_packable, select_pypi, write_pack
    from pixibuild.inputs.project import load_project
    from pixibuild.pypi.sources import needs_build

    project = load_project(manifest_arg(args), store_root=args.cache_dir)
    target = project.target(args.environment, args.platform)
    if args.locked:
        from pixibuild.inputs.locked import check_locked
        from pixibuild.inputs.lockfile import read_lock

        check_locked(project.manifest, read_lock(project.lock_path), args.environment, args.platform)
    check_packable(target.conda, project.lock_path)
    base = project.lock_path.parent
    sources = [r for r in target.pypi if needs_build(r, base)]
    wheels = select_pypi([r for r in target.pypi if r not in sources] + (sources if args.ignore_pypi_non_wheel else []),
                         ignore_non_wheel=args.ignore_pypi_non_wheel, lock_path=project.lock_path)
    net = net_config(args, project.root)
    with make_fetcher(args, project.root, net) as fetcher:
        conda = list(zip(target.conda, fetcher.fetch_all(target.conda, base)))
        wheel_pairs = list(zip(wheels, fetcher.fetch_all(wheels, base)))
        if sources and not args.ignore_pypi_non_wheel:
            from pixibuild.pypi.oneshot import build_target_wheels

            wheel_pairs += build_target_wheels(project, target, fetcher=fetcher, net=net,
                                               hint="(pass --ignore-pypi-non-wheel to skip PyPI sources)")
        if args.inject:
            from pixibuild.pack.inject import check_dependencies, inject_files, replace_injected

            extra_conda, extra_wheels = inject_files([Path(p) for p in args.inject], fetcher.store, args.platform)
            conda = replace_injected(conda, extra_conda)
            wheel_pairs = replace_injected(wheel_pairs, extra_wheels)
            check_dependencies([r for r, _ in conda])
    output = args.output_file or ("environment" if args.directory_only else "environment.tar")
    size = write_pack(PackContents(platform=args.platform, conda=conda, wheels=wheel_pairs),
                      PackOutput(output, directory_only=args.directory_only))
    if output != "-":
        log.warning("packed %d conda packages and %d wheels into %s%s", len(conda), len(wheel_pairs), output,
                    f" ({size / 1e6:.1f} MB)" if size else "")
    return 0

