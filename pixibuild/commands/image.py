"""Build a reproducible OCI/Docker image of an environment (no daemon), with per-package layers.

Settings come from `[tool.pixibuild.image]` / `[tool.pixibuild.image.<env>]` in the manifest,
overridden by flags. Outputs: `-o FILE` (one tar that is both an OCI layout and a docker-archive),
`--oci-dir DIR` (OCI layout directory), `--push REF` (registry: `https://HOST/REPO:TAG`, `HOST/REPO:TAG` —
https, or plain http for a loopback host — or `http://HOST/REPO:TAG`). Packages, the base image pull and
the push all use the same network settings (`--ca-bundle`, `-c/--config`, `--auth-file`), and layers are
cached under the package store (`--cache-dir`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pixibuild.commands.args import (add_fetch_arguments, add_target_arguments, layer_cache, make_fetcher,
                                     manifest_arg, net_config, remote_cache)
from pixibuild.errors import InputError
from pixibuild.files.progress import Progress
from pixibuild.conda.platforms import KNOWN_SUBDIRS
from pixibuild.oci.options import ImageOptions, apply_cli, manifest_image_options

if TYPE_CHECKING:
    from pixibuild.oci.remote import RemoteLayerCache
    from pixibuild.store.remote import RemoteCache

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser, verb="build an image of")
    parser.add_argument("--base", default=None, metavar="REF",
                        help="base image: scratch, oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, or a "
                             "registry reference, [https://]HOST/REPO[:TAG] (default: scratch)")
    parser.add_argument("--tag", default=None, metavar="NAME:TAG", help="image name for the tar/layout index")
    parser.add_argument("-o", "--output", default=None, metavar="FILE", help="write an OCI + docker-archive tar")
    parser.add_argument("--oci-dir", default=None, metavar="DIR", help="write an OCI image layout directory")
    parser.add_argument("--push", default=None, metavar="REF",
                        help="push to a registry: [https://|http://]HOST/REPO:TAG (no scheme: https, plain http "
                             "for localhost/127.0.0.1)")
    parser.add_argument("--cmd", default=None, metavar="CMD", help="default command (shell words or JSON array)")
    parser.add_argument("--entrypoint", default=None, metavar="CMD",
                        help="entrypoint (default: /entrypoint.sh, which activates the environment then exec's CMD)")
    parser.add_argument("--expose", action="append", default=None, metavar="PORT", help="PORT[/tcp|udp] (repeat)")
    parser.add_argument("--label", action="append", default=None, metavar="K=V", help="image label (repeat)")
    parser.add_argument("--env", dest="env_var", action="append", default=None, metavar="K=V",
                        help="extra environment variable (repeat)")
    parser.add_argument("--include", action="append", default=None, metavar="GLOB",
                        help="project files to copy into the app layer, relative to the project root (repeat)")
    parser.add_argument("--prefix", default=None, metavar="PATH",
                        help="where the environment lives in the image (default: /app/.pixi/envs/ENV)")
    parser.add_argument("--workdir", default=None, metavar="PATH", help="working directory (default: /app)")
    parser.add_argument("--user", default=None, help="user to run as")
    parser.add_argument("--max-layers", type=int, default=None, metavar="N",
                        help="total layer budget including the base image (default: 100)")
    parser.add_argument("--inject", action="append", default=[], metavar="FILE",
                        help="add a prebuilt .conda/.tar.bz2/.whl (repeatable; wheels go in the top layer "
                             "with the project's own)")
    add_fetch_arguments(parser)


def _subdir(project, env: str, platform: str) -> str:
    """The conda subdir of a (possibly custom-named, lock v7) platform."""
    if platform in KNOWN_SUBDIRS:
        return platform
    from pixibuild.inputs.lockfile import read_lock

    return read_lock(project.lock_path).environment(env).subdir(platform)


def _counting(cache: "RemoteLayerCache", progress: Progress) -> "RemoteLayerCache":
    """The same layer cache (its remote cache too), telling `progress` about every layer it returns
    (built, reused, or from the remote cache)."""
    class CountingLayerCache(type(cache)):  # type: ignore[misc, valid-type]
        def get_or_build(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            layer = super().get_or_build(*args, **kwargs)
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


def run(args: argparse.Namespace) -> int:
    from pixibuild.oci.build import build_configured_image, image_tag
    from pixibuild.oci.layout import write_image_tar, write_oci_dir
    from pixibuild.net.registry import parse_reference
    from pixibuild.oci.push import push_image
    from pixibuild.inputs.project import load_project
    from pixibuild.pack.inject import check_dependencies, inject_files, replace_injected
    from pixibuild.pypi.oneshot import build_target_wheels
    from pixibuild.pypi.sources import needs_build

    project = load_project(manifest_arg(args), store_root=args.cache_dir)
    env_name, platform = args.environment, args.platform
    options: ImageOptions = apply_cli(manifest_image_options(project.settings, env_name,
                                                             where=f"{project.manifest.path}: tool.pixibuild"), args)
    if not (options.output or options.oci_dir or options.push):
        raise InputError("nothing to write: give -o FILE, --oci-dir DIR or --push REF "
                         "(or output/oci-dir/push in [tool.pixibuild.image])")
    if options.push:
        parse_reference(options.push)  # a bad reference fails before any work
    if options.tag:
        parse_reference(options.tag)
    target = project.target(env_name, platform)
    subdir = _subdir(project, env_name, platform)
    net = net_config(args, project.root)  # one network for packages, the base image and the push
    remote = remote_cache(args, project.root, net)
    # pushed to the registry the cache lives in, and written nowhere else: cached layers stay there (mounted)
    lazy = _same_registry(remote, options.push) and not (options.output or options.oci_dir)
    cache = layer_cache(args, remote, lazy=lazy)
    with make_fetcher(args, project.root, net, remote) as fetcher:
        lock_dir = project.lock_path.parent
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
        auth = fetcher.auth
    with Progress("image", unit="layers") as progress:
        cache = _counting(cache, progress)
        result = build_configured_image(options, name=project.name, env=env_name, subdir=subdir,
                                        project_root=project.root, packages=conda, wheels=wheels, cache=cache,
                                        net=net, project_wheels=project_wheels)
    image = result.image
    tag = image_tag(options, project.name, env_name)
    if options.output:
        write_image_tar(image, Path(options.output), tag=tag)
    if options.oci_dir:
        write_oci_dir(image, Path(options.oci_dir), tag=tag)
    if options.push:
        if lazy and remote is not None:
            _mount_remote_layers(cache, remote, options.push)
        push_image(image, options.push, net=net, auth=auth)
    if remote is not None:
        stats = remote.stats.as_dict()
        log.info("remote cache %s: %d layers from it, %d uploads, %.1f MB downloaded, %.1f MB uploaded", remote.name,
                 cache.remote_hits, stats["uploads"], stats["downloaded"] / 1e6, stats["uploaded"] / 1e6)
        remote.close()
    if not getattr(args, "quiet", False):
        from_cache = f", {cache.remote_hits} from the remote cache" if remote is not None else ""
        print(f"{image.digest}  {len(image.layers)} layers ({result.layers_built} built, "
              f"{result.layers_reused} reused{from_cache})")
    return 0
