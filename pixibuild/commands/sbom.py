"""Write an SBOM (SPDX 2.3 or CycloneDX 1.6 JSON) of an environment, from its lock alone.

Every conda and PyPI package of the environment on the platform, with version, purl, sha256,
license and download location, and what depends on what. No package is downloaded. Images built
with `pixibuild image --sbom FORMAT` carry the same document (plus the image and its base image by
digest) as an OCI referrer; `pixibuild pack --sbom FORMAT` writes one beside the pack.
"""

from __future__ import annotations

import argparse
import sys

from pixibuild.commands.args import add_store_argument, add_target_arguments, manifest_arg

FORMAT_CHOICES = ("spdx", "cyclonedx")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser, verb="describe")
    parser.add_argument("--format", default="spdx", choices=FORMAT_CHOICES,
                        help="spdx (SPDX 2.3 JSON) or cyclonedx (CycloneDX 1.6 JSON) (default: %(default)s)")
    parser.add_argument("-o", "--output", default="-", metavar="FILE",
                        help="where to write it, '-' for stdout (default: %(default)s)")
    add_store_argument(parser, help="the package store (only its lock cache is used)")


def run(args: argparse.Namespace) -> int:
    from pixibuild.attest.sbom import SbomInput, Subject, sbom_json
    from pixibuild.files.atomic import atomic_write_bytes
    from pixibuild.inputs.project import load_project
    from pixibuild.oci.config import created_timestamp

    project = load_project(manifest_arg(args), store_root=args.cache_dir)
    target = project.target(args.environment, args.platform)
    name = f"{project.name}-{args.environment}-{args.platform}"
    data = SbomInput(project=project.name, environment=args.environment, platform=args.platform,
                     subject=Subject(name, "environment", version=project.manifest.version),
                     conda=list(target.conda), pypi=list(target.pypi), created=created_timestamp(),
                     lock_sha256=project.lock_sha256)
    document = sbom_json(data, args.format)
    if args.output == "-":
        sys.stdout.buffer.write(document + b"\n")
        sys.stdout.flush()
    else:
        atomic_write_bytes(args.output, document + b"\n")
    return 0
