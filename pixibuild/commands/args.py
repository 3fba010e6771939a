"""The arguments the commands share, defined once so that one flag means one thing everywhere.

- target: `MANIFEST_PATH` / `--manifest-file`, `-e/--environment`, `-p/--platform`, spelled as pixi-pack
  spells them, with help texts that show the real defaults;
- store: `--cache-dir DIR` (alias `--use-cache DIR`, pixi-pack's name) is the package store root, and the
  image layer cache always lives under it (`pixibuild.store.roots`); `--verify-cache`;
- network: `-c/--config`, `--auth-file`, `--ca-bundle`, `--tls-no-verify`, `-j/--jobs`, turned into one
  `NetConfig` used for channel downloads, base-image pulls and pushes alike;
- remote cache: `--remote-cache URL` and `--remote-cache-mode read|readwrite` (`pixibuild.store.remote`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pixibuild.conda.platforms import current_subdir
from pixibuild.errors import InputError
from pixibuild.inputs import DEFAULT_ENVIRONMENT
from pixibuild.install.activation import SHELL_ALIASES, SHELLS, shell_name
from pixibuild.store.roots import layer_cache_root

# Every command's parser is built for `pixibuild --help`: what only `run()` needs loads in the builders
# below (measured: the fetcher with httpx ~75 ms, NetConfig with ssl/certifi ~20 ms, Store and
# LayerCache ~8 ms each — together more than half of `pixibuild --help`'s start-up).
if TYPE_CHECKING:
    from pixibuild.net.config import NetConfig
    from pixibuild.oci.remote import RemoteLayerCache
    from pixibuild.store.fetch import Fetcher
    from pixibuild.store.remote import RemoteCache


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


# -- target ------------------------------------------------------------------------------------
def add_manifest_arguments(parser: argparse.ArgumentParser, *, lock_too: bool = False) -> None:
    """`[MANIFEST_PATH]` and its long form `--manifest-file` (alias `--manifest-path`)."""
    what = "pixi.toml, pyproject.toml" + (", pixi.lock" if lock_too else "") + " or a directory holding one"
    parser.add_argument("manifest", nargs="?", metavar="MANIFEST_PATH", default=None,
                        help=f"{what} (default: the current directory)")
    parser.add_argument("--manifest-file", "--manifest-path", dest="manifest_file", metavar="MANIFEST_PATH",
                        default=None, help="the same as MANIFEST_PATH")


def add_environment_argument(parser: argparse.ArgumentParser, *, verb: str = "use") -> None:
    parser.add_argument("-e", "--environment", default=DEFAULT_ENVIRONMENT,
                        help=f"the environment to {verb} (default: %(default)s)")


def add_platform_argument(parser: argparse.ArgumentParser, *, verb: str = "use", repeatable: bool = False) -> None:
    """`-p/--platform`; the default is this machine's platform, shown in the help as it is."""
    here = current_subdir()
    if repeatable:
        parser.add_argument("-p", "--platform", action="append", default=None,
                            help=f"the platform to {verb}, repeatable (default: {here}, this machine's)")
    else:
        parser.add_argument("-p", "--platform", default=here,
                            help=f"the platform to {verb} (default: {here}, this machine's)")


def add_target_arguments(parser: argparse.ArgumentParser, *, verb: str = "use", lock_too: bool = False,
                         repeatable_platform: bool = False) -> None:
    """MANIFEST_PATH / -e / -p exactly as pixi-pack spells them."""
    add_manifest_arguments(parser, lock_too=lock_too)
    add_environment_argument(parser, verb=verb)
    add_platform_argument(parser, verb=verb, repeatable=repeatable_platform)


def add_shell_argument(parser: argparse.ArgumentParser) -> None:
    """`-s/--shell`: every shell pixi-unpack accepts (rattler_shell's names and aliases)."""
    aliases = ", ".join(f"{a}={s}" for a, s in SHELL_ALIASES.items())
    parser.add_argument("-s", "--shell", default="bash", choices=SHELLS, type=shell_name,
                        help=f"the shell the activation script is for; also accepted: {aliases} "
                             "(default: %(default)s)")


def manifest_arg(args: argparse.Namespace) -> str:
    """The manifest path from MANIFEST_PATH or `--manifest-file` (not two different ones), default `.`."""
    positional, flag = args.manifest, args.manifest_file
    if positional is not None and flag is not None and Path(positional) != Path(flag):
        raise InputError("give the manifest either as MANIFEST_PATH or --manifest-file, not both",
                         field="--manifest-file")
    return str(flag if flag is not None else positional if positional is not None else ".")


# -- store ---------------------------------------------------------------------------------------
STORE_HELP = ("the package store; image layers are cached under it, in oci/ (default: $PIXIBUILD_CACHE_DIR, "
              "else $XDG_CACHE_HOME/pixibuild, else ~/.cache/pixibuild)")


def add_store_argument(parser: argparse.ArgumentParser, *, help: str = STORE_HELP) -> None:
    """`--cache-dir`: the package store root, one option for every command (pixi-pack's `--use-cache`
    is the same option)."""
    parser.add_argument("--cache-dir", "--use-cache", dest="cache_dir", type=Path, default=None, metavar="DIR",
                        help=help)


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """The store for commands that fetch: `--cache-dir` and `--verify-cache`."""
    add_store_argument(parser)
    parser.add_argument("--verify-cache", action="store_true",
                        help="re-hash the store blobs this run uses; fetch any that are corrupt again")


def layer_cache(args: argparse.Namespace, remote: "RemoteCache | None" = None, *, lazy: bool = False,
                compression: str = "gzip") -> "RemoteLayerCache":
    """The image layer cache: always under the package store the flags name; layers it lacks are asked
    of the remote cache (`lazy`: left there, for a push that mounts them)."""
    from pixibuild.oci.remote import layer_cache as make

    return make(layer_cache_root(args.cache_dir), remote, lazy=lazy, compression=compression)


# -- network -------------------------------------------------------------------------------------
def add_network_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, action="append", default=None, metavar="CONFIG",
                        help="pixi config.toml to use instead of pixi's default locations ([mirrors], "
                             "concurrency, TLS), repeatable")
    parser.add_argument("--auth-file", type=Path, default=None, metavar="FILE",
                        help="rattler credentials JSON (default: $RATTLER_AUTH_FILE)")
    parser.add_argument("--ca-bundle", type=Path, default=None, metavar="FILE",
                        help="PEM file of extra CAs to trust (channels, registries and their token servers)")
    parser.add_argument("--tls-no-verify", action="store_true",
                        help="DANGEROUS: do not verify TLS certificates (never implied by a config file)")
    parser.add_argument("-j", "--jobs", type=_positive_int, default=None, metavar="N",
                        help="parallel downloads (default: pixi config concurrency.downloads, else 16)")


REMOTE_HELP = ("shared cache on an OCI registry: oci://HOST/REPOSITORY (https; plain http for localhost), "
               "https://… or http://…; 'none' turns it off (default: $PIXIBUILD_REMOTE_CACHE, else "
               "[tool.pixibuild.cache] remote). Credentials as for --push: docker's config.json, "
               "$PIXIBUILD_REGISTRY_USERNAME/PASSWORD, --auth-file")


def add_remote_arguments(parser: argparse.ArgumentParser) -> None:
    """`--remote-cache URL` and `--remote-cache-mode`."""
    parser.add_argument("--remote-cache", default=None, metavar="URL", help=REMOTE_HELP)
    parser.add_argument("--remote-cache-mode", default=None, choices=("read", "readwrite"),
                        help="read: never write to the cache (untrusted pull-request builds); "
                             "default: $PIXIBUILD_REMOTE_CACHE_MODE, else [tool.pixibuild.cache] mode, else readwrite")


def add_fetch_arguments(parser: argparse.ArgumentParser) -> None:
    """Everything a command that downloads packages needs: the store, the network, the remote cache."""
    add_store_arguments(parser)
    add_network_arguments(parser)
    add_remote_arguments(parser)


def remote_cache(args: argparse.Namespace, project_root: Path, config: "NetConfig") -> "RemoteCache | None":
    """The remote cache the flags, the environment and the project's `[tool.pixibuild.cache]` name (None: none)."""
    from pixibuild.graph.remote import workspace_cache_settings
    from pixibuild.store.remote import RemoteCache
    from pixibuild.store.remote_settings import resolve_settings

    manifest, mode, where = workspace_cache_settings(project_root, {})
    settings = resolve_settings(flag=getattr(args, "remote_cache", None), flag_mode=getattr(args, "remote_cache_mode", None),
                                manifest=manifest, manifest_mode=mode, manifest_where=where)
    return RemoteCache(settings, config, project_root=project_root) if settings is not None else None


def net_config(args: argparse.Namespace, project_root: Path) -> "NetConfig":
    """The network the flags describe (on top of pixi's config files)."""
    from pixibuild.net.config import NetConfig

    return NetConfig.load(args.config, project_root=project_root, ca_bundle=args.ca_bundle,
                          auth_file=args.auth_file, concurrency=args.jobs, allow_tls_no_verify=args.tls_no_verify)


def make_fetcher(args: argparse.Namespace, project_root: Path, config: "NetConfig | None" = None,
                 remote: "RemoteCache | None" = None) -> "Fetcher":
    """The fetcher the flags describe: store, pixi config, credentials, parallelism, remote cache."""
    from pixibuild.store.blobs import Store
    from pixibuild.store.fetch import Fetcher

    config = config if config is not None else net_config(args, project_root)
    return Fetcher(Store(args.cache_dir), config, verify_cache=args.verify_cache, remote=remote)
