"""Build a reproducible OCI/Docker image of an environment (no daemon), with per-package layers.

Settings come from `[tool.pixibuild.image]` / `[tool.pixibuild.image.<env>]` in the manifest,
overridden by flags. Outputs: `-o FILE` (one tar that is both an OCI layout and a docker-archive;
`oci-archive:FILE` / `docker-archive:FILE` for only one of them), `--oci-dir DIR` (OCI layout
directory), `--push REF` (registry: `https://HOST/REPO:TAG`, `HOST/REPO:TAG` — https, or plain http
for a loopback host — or `http://HOST/REPO:TAG`). Several `-p` (or `platforms = [...]`) make one
multi-platform image index. Packages, the base image pull and the push all use the same network
settings (`--ca-bundle`, `-c/--config`, `--auth-file`), and layers are cached under the package
store (`--cache-dir`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pixibuild.commands.args import (add_fetch_arguments, add_target_arguments, layer_cache, make_fetcher,
                                     manifest_arg, net_config, remote_cache)
from pixibuild.conda.platforms import current_subdir
from pixibuild.errors import InputError
from pixibuild.files.progress import Progress
from pixibuild.oci.options import SBOM_FORMATS, ImageOptions, apply_cli, manifest_image_options

if TYPE_CHECKING:
    from pixibuild.oci.remote import RemoteLayerCache
    from pixibuild.store.remote import RemoteCache

log = logging.getLogger(__name__)

ZSTD_RUNTIMES = ("containerd >= 1.5 (and Kubernetes nodes on it), Docker >= 23.0, podman/buildah/CRI-O and skopeo "
                 "(containers/image, zstd since 2021); not Docker 20.10 (Debian 12's docker.io) nor umoci 0.4")
OUTPUT_KINDS = ("oci-archive", "docker-archive")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser, verb="build an image of", repeatable_platform=True)
    for action in parser._actions:  # the shared -p, with this command's real default
        if "--platform" in action.option_strings:
            action.help = (f"the platform to build an image of; several make one multi-platform image index; "
                           f"[tool.pixibuild.image] platforms when none is given "
                           f"(default: {current_subdir()}, this machine's)")
    parser.add_argument("--base", default=None, metavar="REF",
                        help="base image: scratch, oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, or a "
                             "registry reference, [https://]HOST/REPO[:TAG] (default: scratch)")
    parser.add_argument("--tag", default=None, metavar="NAME:TAG", help="image name for the tar/layout index")
    parser.add_argument("-o", "--output", default=None, metavar="[KIND:]FILE",
                        help="write a tar: both an OCI layout and a docker-archive (one platform), or only "
                             "oci-archive:FILE / docker-archive:FILE; several platforms make an OCI archive of "
                             "the image index (docker-archive cannot hold one)")
    parser.add_argument("--oci-dir", default=None, metavar="DIR", help="write an OCI image layout directory")
    parser.add_argument("--push", default=None, metavar="REF",
                        help="push to a registry: [https://|http://]HOST/REPO:TAG (no scheme: https, plain http "
                             "for localhost/127.0.0.1)")
    parser.add_argument("--cmd", default=None, metavar="CMD", help="default command (shell words or JSON array)")
    parser.add_argument("--entrypoint", default=None, metavar="CMD",
                        help="entrypoint (default: /entrypoint.sh, which activates the environment then exec's "
                             "CMD; without any shell in the image, none: CMD runs with the activation's "
                             "variables from the image config)")
    parser.add_argument("--expose", action="append", default=None, metavar="PORT", help="PORT[/tcp|udp] (repeat)")
    parser.add_argument("--label", action="append", default=None, metavar="K=V", help="image label (repeat)")
    parser.add_argument("--annotation", action="append", default=None, metavar="K=V",
                        help="manifest annotation (repeat); org.opencontainers.image.created/version/revision/"
                             "source/title are set from SOURCE_DATE_EPOCH, the manifest and a clean git checkout")
    parser.add_argument("--env", dest="env_var", action="append", default=None, metavar="K=V",
                        help="extra environment variable (repeat)")
    parser.add_argument("--include", action="append", default=None, metavar="GLOB",
                        help="project files to copy into the app layer, relative to the project root (repeat)")
    parser.add_argument("--prefix", default=None, metavar="PATH",
                        help="where the environment lives in the image (default: /app/.pixi/envs/ENV)")
    parser.add_argument("--workdir", default=None, metavar="PATH", help="working directory (default: /app)")
    parser.add_argument("--user", default=None, metavar="UID[:GID]",
                        help="run as this non-root user: the working directory and a HOME become theirs, the "
                             "environment stays read-only, and /etc/passwd gets an entry if the base has one")
    parser.add_argument("--max-layers", type=int, default=None, metavar="N",
                        help="total layer budget including the base image (default: 100)")
    parser.add_argument("--inject", action="append", default=[], metavar="FILE",
                        help="add a prebuilt .conda/.tar.bz2/.whl (repeatable; wheels go in the top layer "
                             "with the project's own)")
    parser.add_argument("--compression", default=None, choices=("gzip", "zstd"),
                        help="layer compression (default: gzip, which every runtime reads). zstd layers are read "
                             f"by {ZSTD_RUNTIMES}")
    parser.add_argument("--sbom", default=None, choices=SBOM_FORMATS,
                        help="attach an SBOM of every package (and the base image) as an OCI referrer")
    parser.add_argument("--provenance", action="store_true", default=None,
                        help="attach an in-toto SLSA v1 provenance statement as an OCI referrer")
    parser.add_argument("--check-against-unpack", action="store_true",
                        help="also install the environment as `pixibuild unpack` does and fail unless the image "
                             "holds byte-for-byte the same tree at its prefix")
    add_fetch_arguments(parser)


def _counting(cache: "RemoteLayerCache", progress: Progress) -> "RemoteLayerCache":
    """The same layer cache (its remote cache too), telling `progress` about every layer it returns
    (built, reused, or from the remote cache)."""
    class CountingLayerCache(type(cache)):  # type: ignore[misc, valid-type]
        def get_or_build(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            layer = super().get_or_build(*args, **kwargs)
            progress.update(items=1)
            return layer

        def get_or_write(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            layer = super().get_or_write(*args, **kwargs)
            progress.update(items=1)
            return layer

    counting = CountingLayerCache.__new__(CountingLayerCache)
    counting.__dict__.update(cache.__dict__)
    return counting


def _same_registry(remote: "RemoteCache | None", push: str | None) -> bool:
    from pixibuild.net.registry import parse_reference

    return remote is not None and push is not None and parse_reference(push).registry == remote.settings.registry


def _mount_remote_layers(cache: "RemoteLayerCache", remote: "RemoteCache", push: str) -> None:
    """Layers the remote cache has and this machine does not: mounted from the cache repository into the
    push target (no download, no upload); downloaded when the registry refuses to mount them."""
    from pixibuild.net.registry import parse_reference

    repository = parse_reference(push).repository
    for layer in cache.remote_only.values():
        if not remote.mount(repository, layer.digest):
            cache.ensure_local(layer)


def split_output(value: str) -> tuple[str | None, str]:
    """`-o` value → (kind or None for both formats, file)."""
    for kind in OUTPUT_KINDS:
        if value.startswith(kind + ":"):
            path = value[len(kind) + 1:]
            if not path:
                raise InputError(f"{kind}: needs a file name", field="--output")
            return kind, path
    return None, value


def run(args: argparse.Namespace) -> int:
    from pixibuild.graph.images import PlatformPackages, build_images
    from pixibuild.inputs.project import load_project
    from pixibuild.pack.inject import check_dependencies, inject_files, replace_injected
    from pixibuild.pypi.oneshot import build_target_wheels
    from pixibuild.pypi.sources import needs_build
    from pixibuild.net.registry import parse_reference
    from pixibuild.oci.build import image_tag
    from pixibuild.oci.layout import Image, write_image_tar, write_oci_dir
    from pixibuild.oci.push import push_image

    project = load_project(manifest_arg(args), store_root=args.cache_dir)
    env_name = args.environment
    options: ImageOptions = apply_cli(manifest_image_options(project.settings, env_name, root=project.root,
                                                             where=f"{project.manifest.path}: tool.pixibuild"), args)
    platforms = list(dict.fromkeys(args.platform or options.platforms or [current_subdir()]))
    if not (options.output or options.oci_dir or options.push):
        raise InputError("nothing to write: give -o FILE, --oci-dir DIR or --push REF "
                         "(or output/oci-dir/push in [tool.pixibuild.image])")
    kind, output = split_output(options.output) if options.output else (None, None)
    if kind == "docker-archive" and len(platforms) > 1:
        raise InputError(f"docker-archive:{output} holds one image, not an index of {len(platforms)} platforms "
                         f"({', '.join(platforms)}): write oci-archive:FILE, --oci-dir or --push, or give one -p",
                         field="--output")
    if options.user:
        from pixibuild.oci.user import parse_user

        parse_user(options.user)  # a bad user fails before any work
    if options.push:
        parse_reference(options.push)  # a bad reference fails before any work
    if options.tag:
        parse_reference(options.tag)
    targets = [(p, project.target(env_name, p)) for p in platforms]  # every platform checked before any work
    net = net_config(args, project.root)  # one network for packages, the base image and the push
    remote = remote_cache(args, project.root, net)
    # pushed to the registry the cache lives in, and written nowhere else: cached layers stay there (mounted)
    lazy = _same_registry(remote, options.push) and not (output or options.oci_dir)
    cache = layer_cache(args, remote, lazy=lazy, compression=options.compression)
    items = []
    with make_fetcher(args, project.root, net, remote) as fetcher:
        lock_dir = project.lock_path.parent
        for platform, target in targets:
            subdir = target.subdir  # a named platform (lock v7) is the subdir its packages are for
            sources = [r for r in target.pypi if needs_build(r, lock_dir)]
            plain = [r for r in target.pypi if r not in sources]
            conda = list(zip(target.conda, fetcher.fetch_all(target.conda, lock_dir)))
            wheels = list(zip(plain, fetcher.fetch_all(plain, lock_dir))) if plain else []
            project_wheels = build_target_wheels(project, target, fetcher=fetcher, net=net) if sources else []
            if args.inject:  # the same checks as `pixibuild pack --inject`
                extra_conda, extra_wheels = inject_files([Path(p) for p in args.inject], fetcher.store, subdir)
                conda = replace_injected(conda, extra_conda)
                wheels = [w for w in wheels if w[0].name not in {r.name for r, _ in extra_wheels}]
                project_wheels = replace_injected(project_wheels, extra_wheels)
                check_dependencies([r for r, _ in conda])
            items.append(PlatformPackages(platform, subdir, conda, wheels, project_wheels=project_wheels))
        auth = fetcher.auth
    tag = image_tag(options, project.name, env_name)
    with Progress("image", unit="layers") as progress:
        counted = _counting(cache, progress)
        built = build_images(project.manifest, options, env_name, items, counted, net=net, tag=tag)
    if args.check_against_unpack:
        from pixibuild.graph.images import check_against_unpack

        for item in items:
            check_against_unpack(built.results[item.platform].image, item, options, env_name)
    target_image = built.target
    if output:
        write_image_tar(target_image, Path(output), tag=tag, referrers=built.referrers,
                        docker=kind != "oci-archive" and isinstance(target_image, Image))
    if options.oci_dir:
        write_oci_dir(target_image, Path(options.oci_dir), tag=tag, referrers=built.referrers)
    if options.push:
        if lazy and remote is not None:
            _mount_remote_layers(counted, remote, options.push)
        push_image(target_image, options.push, referrers=built.referrers, net=net, auth=auth)
    if remote is not None:
        stats = remote.stats.as_dict()
        log.info("remote cache %s: %d layers from it, %d uploads, %.1f MB downloaded, %.1f MB uploaded", remote.name,
                 counted.remote_hits, stats["uploads"], stats["downloaded"] / 1e6, stats["uploaded"] / 1e6)
        remote.close()
    if not getattr(args, "quiet", False):
        results = list(built.results.values())
        layers = len({l.digest for r in results for l in r.image.layers})
        what = f"{len(results)} platforms, " if len(results) > 1 else ""
        from_cache = f", {counted.remote_hits} from the remote cache" if remote is not None else ""
        print(f"{target_image.digest}  {what}{layers} layers ({sum(r.layers_built for r in results)} built, "
              f"{sum(r.layers_reused for r in results)} reused{from_cache})")
    return 0
