"""Pack an environment into a pixi-pack compatible, byte-reproducible environment.tar."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pixibuild.commands.args import (add_fetch_arguments, add_target_arguments, make_fetcher, manifest_arg,
                                     net_config, remote_cache)
from pixibuild.errors import BuildError, InputError
from pixibuild.files.progress import Progress

if TYPE_CHECKING:
    from pixibuild.pack.executable import Unpacker
    from pixibuild.store.fetch import Fetcher

# Heavier modules (httpx, the installer, YAML) are imported where they are used, so that
# `pixibuild --help` and every other command start fast.

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser, verb="pack")
    parser.add_argument("-o", "--output-file", default=None,
                        help="output file, '-' for stdout (default: environment.tar, or environment/ "
                             "with --directory-only)")
    parser.add_argument("--directory-only", action="store_true", help="write a directory instead of a tar")
    parser.add_argument("--create-executable", action="store_true",
                        help="write a self-extracting environment.sh (environment.ps1 for win-* platforms) that "
                             "unpacks itself like pixi-unpack. Its unpacker is pixibuild's own, run by the target's "
                             "python3 (>= 3.10, standard library only; .conda packages also need the zstd command) "
                             "with sh, awk, sed, base64, mktemp; use --pixi-unpack-source for a machine without python")
    parser.add_argument("--pixi-unpack-source", default=None, metavar="PATH|URL",
                        help="embed this pixi-unpack executable (a file, or an http(s) URL downloaded with the "
                             "network settings below) instead of the python unpacker, as pixi-pack does; the target "
                             "then needs nothing but the POSIX tools")
    parser.add_argument("--inject", action="append", default=[], metavar="FILE",
                        help="add a .conda/.tar.bz2/.whl to the pack (repeatable)")
    parser.add_argument("--ignore-pypi-non-wheel", "--ignore-pypi-errors", action="store_true",
                        help="skip sdist/git/local-path pypi entries instead of building them into wheels")
    parser.add_argument("--locked", action="store_true", help="fail if the lock does not satisfy the manifest")
    parser.add_argument("--sbom", default=None, choices=("spdx", "cyclonedx"),
                        help="also write an SBOM of the packed packages beside the output "
                             "(environment.spdx.json / environment.cdx.json for environment.tar)")
    parser.add_argument("--provenance", action="store_true",
                        help="also write an in-toto SLSA v1 provenance statement beside the output "
                             "(environment.provenance.json for environment.tar): the lock, every package by URL "
                             "and sha256, and the archive (and SBOM) by digest")
    add_fetch_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from pixibuild.pack.writer import PackContents
    from pixibuild.pack.build import PackOutput, check_packable, select_pypi, write_pack
    from pixibuild.pack.executable import default_name
    from pixibuild.inputs.project import load_project
    from pixibuild.pypi.sources import needs_build

    project = load_project(manifest_arg(args), store_root=args.cache_dir)
    target = project.target(args.environment, args.platform)
    if args.locked:
        from pixibuild.inputs.locked import check_locked
        from pixibuild.inputs.lockfile import read_lock

        from pixibuild.inputs.project import aligned_lock

        check_locked(project.manifest, aligned_lock(read_lock(project.lock_path), project.manifest),
                     args.environment, args.platform)
    if args.create_executable and args.directory_only:
        raise InputError("--create-executable writes one file: it cannot be combined with --directory-only",
                         field="--create-executable")
    if args.pixi_unpack_source and not args.create_executable:
        raise InputError("--pixi-unpack-source is only used with --create-executable", field="--pixi-unpack-source")
    check_packable(target.conda, project.lock_path)
    base = project.lock_path.parent
    sources = [r for r in target.pypi if needs_build(r, base)]
    wheels = select_pypi([r for r in target.pypi if r not in sources] + (sources if args.ignore_pypi_non_wheel else []),
                         ignore_non_wheel=args.ignore_pypi_non_wheel, lock_path=project.lock_path)
    net = net_config(args, project.root)
    remote = remote_cache(args, project.root, net)
    with make_fetcher(args, project.root, net, remote) as fetcher:
        conda = list(zip(target.conda, fetcher.fetch_all(target.conda, base)))
        wheel_pairs = list(zip(wheels, fetcher.fetch_all(wheels, base)))
        if sources and not args.ignore_pypi_non_wheel:
            from pixibuild.pypi.oneshot import build_target_wheels

            wheel_pairs += build_target_wheels(project, target, fetcher=fetcher, net=net,
                                               hint="(pass --ignore-pypi-non-wheel to skip PyPI sources)")
        if args.inject:
            from pixibuild.pack.inject import check_dependencies, inject_files, replace_injected

            extra_conda, extra_wheels = inject_files([Path(p) for p in args.inject], fetcher.store, target.subdir)
            conda = replace_injected(conda, extra_conda)
            wheel_pairs = replace_injected(wheel_pairs, extra_wheels)
            check_dependencies([r for r, _ in conda])
        unpacker = _unpacker(args.pixi_unpack_source, fetcher) if args.create_executable else None
    default = "environment" if args.directory_only else default_name(target.subdir) if unpacker else "environment.tar"
    output = args.output_file or default
    for flag, wanted in (("--sbom", args.sbom), ("--provenance", args.provenance)):
        if wanted and output == "-":
            raise InputError(f"{flag} writes a file beside the pack: give -o FILE, not stdout", field=flag)
    if args.provenance and args.directory_only:
        raise InputError("--provenance describes an archive by its sha256: a --directory-only pack has none",
                         field="--provenance")
    total = sum(path.stat().st_size for _, path in [*conda, *wheel_pairs])
    with Progress("pack", nbytes=total * 4 // 3 if unpacker else total) as progress:  # base64: 4 chars per 3 bytes
        size = write_pack(PackContents(platform=target.subdir, conda=conda, wheels=wheel_pairs),
                          PackOutput(output, directory_only=args.directory_only, executable=unpacker), progress)
    if output != "-":
        log.warning("packed %d conda packages and %d wheels into %s%s", len(conda), len(wheel_pairs), output,
                    f" ({size / 1e6:.1f} MB)" if size else "")
    sbom = _write_pack_sbom(args, project, Path(output), [r for r, _ in conda], [w for w, _ in wheel_pairs]) \
        if args.sbom else None
    if args.provenance:
        _write_pack_provenance(args, project, Path(output), [r for r, _ in conda], [w for w, _ in wheel_pairs], sbom)
    return 0


def _unpacker(source: str | None, fetcher: "Fetcher") -> "Unpacker":
    """The unpacker to embed: pixibuild's python zipapp, or the pixi-unpack executable `source` names."""
    from pixibuild.pack.executable import binary_unpacker, python_unpacker

    if source is None:
        return python_unpacker()
    if not source.startswith(("http://", "https://")):
        return binary_unpacker(Path(source))
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pixibuild-pixi-unpack-") as tmp:
        path = Path(tmp) / "pixi-unpack"
        _download(source, path, fetcher)
        return binary_unpacker(path)


def _download(url: str, path: Path, fetcher: "Fetcher") -> None:
    """GET `url` into `path` with the fetcher's client: the same TLS, proxy and credential settings as
    packages (credentials chosen per host, redirects followed by hand)."""
    import httpx

    from pixibuild.net.auth import redact_url
    from pixibuild.net.http import send

    shown = redact_url(url)
    try:
        response = send(fetcher.client, "GET", url, authenticate=fetcher.auth.authenticate, stream=True)
        try:
            if response.status_code != 200:
                raise BuildError(f"cannot download the pixi-unpack executable from {shown}: HTTP {response.status_code}")
            with open(path, "wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        finally:
            response.close()
    except httpx.HTTPError as exc:
        raise BuildError(f"cannot download the pixi-unpack executable from {shown}: {type(exc).__name__}: "
                         f"{fetcher.auth.redact(str(exc))}") from None


def _write_pack_sbom(args: argparse.Namespace, project, output: Path, conda: list, wheels: list) -> Path:
    """`<pack name>.spdx.json` (or `.cdx.json`) beside the pack, describing the archive by its sha256."""
    from pixibuild.attest.sbom import FILE_SUFFIX, SbomInput, Subject, sbom_json
    from pixibuild.files.atomic import atomic_write_bytes
    from pixibuild.files.digest import hash_file
    from pixibuild.oci.config import created_timestamp

    sha256 = hash_file(output).sha256.hexdigest() if output.is_file() else None
    target = _beside(output, FILE_SUFFIX[args.sbom])
    data = SbomInput(project=project.name, environment=args.environment, platform=args.platform,
                     subject=Subject(output.name, "archive", version=project.manifest.version, sha256=sha256),
                     conda=conda, pypi=wheels, created=created_timestamp(), lock_sha256=project.lock_sha256)
    atomic_write_bytes(target, sbom_json(data, args.sbom) + b"\n")
    return target


def _write_pack_provenance(args: argparse.Namespace, project, output: Path, conda: list, wheels: list,
                           sbom: Path | None) -> Path:
    """`<pack name>.provenance.json` beside the pack: an in-toto statement whose subject is the archive."""
    from pixibuild.attest.provenance import Byproduct, ProvenanceInput, provenance_statement
    from pixibuild.files.atomic import atomic_write_bytes
    from pixibuild.files.digest import sha256_file

    byproducts = [Byproduct(sbom.name, f"sha256:{sha256_file(sbom)[0]}")] if sbom is not None else []
    statement = provenance_statement(ProvenanceInput(
        kind="archive", subject_name=output.name, subject_digest=f"sha256:{sha256_file(output)[0]}",
        manifest=project.manifest.path.name, environment=args.environment, platform=args.platform,
        lock_name=project.lock_path.name, lock_sha256=project.lock_sha256, conda=conda, pypi=wheels,
        byproducts=byproducts))
    target = _beside(output, ".provenance.json")
    atomic_write_bytes(target, statement + b"\n")
    return target


def _beside(output: Path, suffix: str) -> Path:
    """`environment.spdx.json` for `environment.tar` (or `.sh`, `.ps1`): a document about the pack, beside it."""
    stem = next((output.name[:-len(s)] for s in (".tar", ".sh", ".ps1") if output.name.endswith(s)), output.name)
    return output.with_name(stem + suffix)

