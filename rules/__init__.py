"""pixibuild's doit rule set: one rule per node kind (lock, fetch, verify, index, pack, unpack,
layer, image), each a thin declaration over library functions in `pixibuild/`.

A monorepo's whole `dodo.py`:

    from pixibuild.rules import workspace_tasks
    globals().update(workspace_tasks(__file__))

Run options that also work as doit variables (`doit shard=2/3 remote_cache=oci://host/org/cache`) and
environment variables: the remote cache (`remote_cache`, `remote_cache_mode`; `$PIXIBUILD_REMOTE_CACHE`,
`$PIXIBUILD_REMOTE_CACHE_MODE`; `[tool.pixibuild.cache]`) and the shard (`shard`; `$PIXIBUILD_SHARD`).

Installed from a wheel this package is importable as `pixibuild.rules` (it lives in the repository's
top-level `rules/` folder; pyproject maps it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence


def _doit_var(name: str) -> str | None:
    """A `doit name=value` command-line variable (None outside a doit run)."""
    try:
        from doit import get_var
    except ImportError:  # pragma: no cover - doit is a dependency
        return None
    value = get_var(name, None)
    return str(value) if value is not None else None


def workspace_tasks(root: str | Path = ".", *, kinds: Sequence[str] | None = None,
                    store_root: str | Path | None = None, build_dir: str | Path | None = None,
                    remote_cache: str | None = None, remote_cache_mode: str | None = None,
                    shard: str | None = None, net_options: dict | None = None) -> dict[str, Any]:
    """A dodo namespace (DOIT_CONFIG + task creators) for the workspace at `root` (a directory,
    or a dodo.py path whose directory is used). Unchanged projects are planned from the build dir's
    plan cache; a project that cannot be planned is reported on stderr and gets broken tasks.
    `remote_cache`/`remote_cache_mode`/`shard` are what `pixibuild build --remote-cache/--remote-cache-mode/
    --shard` give; `net_options` its network flags.

    Ctrl-C (while planning or while tasks run) ends a `doit` run with one line and exit 130: doit
    lets the KeyboardInterrupt escape with a traceback of wherever the main thread was waiting. A
    `doit … | head` whose reader leaves ends quietly with 141, as `pixibuild build` and coreutils do."""
    _quiet_keyboard_interrupt()
    _log_warnings_to_stderr()
    namespace = _namespace(root, kinds, store_root, build_dir, remote_cache, remote_cache_mode, shard, net_options)
    _guard_doit_output(namespace)
    return namespace


def _log_warnings_to_stderr() -> None:
    """Under plain `doit` nobody configured logging: the library's warnings would reach stderr through
    Python's last-resort handler as bare text, unlike the `pixibuild: warning: …` lines of planning.
    Give them that form (`pixibuild build` configures logging itself: then this does nothing)."""
    import logging

    logger = logging.getLogger("pixibuild")
    if logging.getLogger().handlers or logger.handlers:
        return

    class _Prefixed(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return f"pixibuild: {record.levelname.lower()}: {record.getMessage()}"

    handler = logging.StreamHandler()  # sys.stderr as it is when a record is written
    handler.setFormatter(_Prefixed())
    handler.setLevel(logging.WARNING)
    logger.addHandler(handler)


def _guard_doit_output(namespace: dict[str, Any]) -> None:
    """When a `doit` command is loading this dodo, route its output through pixibuild's stdout guard.

    doit catches every Exception, so a closed stdout (`doit list | head -1`) would end in a traceback
    and exit 3. Through the guard it raises `StdoutClosed` (a KeyboardInterrupt, which doit lets
    through) and the excepthook exits quietly with 141. `doit list` and the like print to the stream
    the command took from sys.stdout when it was made, before this dodo was imported: the command is
    found on the call stack (it is loading us). `doit run` prints to DOIT_CONFIG's `outfile`.
    `pixibuild build` guards its own doit run: no doit command is on the stack then."""
    import atexit

    from doit.cmd_base import DoitCmdBase

    from pixibuild.cli import guard_stdout

    frame = sys._getframe(1)
    while frame is not None and not isinstance(frame.f_locals.get("self"), DoitCmdBase):
        frame = frame.f_back
    if frame is None:
        return
    command = frame.f_locals["self"]
    if sys.stdout is None or command.outstream is not sys.stdout:
        return  # no stdout at all (`>&-`), or a caller's own stream (doit's API, tests): not ours to wrap
    # a listing (29,000 lines in a big monorepo) is buffered: flushed once at exit, where a reader
    # that left makes the same quiet 141; a run's task lines are flushed one by one, so it stops at once
    listing = guard_stdout(sys.stdout, flush_each=False)
    command.outstream = listing
    atexit.register(_flush_listing, listing)
    namespace["DOIT_CONFIG"].setdefault("outfile", guard_stdout(sys.stdout))


def _flush_listing(listing: Any) -> None:
    import os

    from pixibuild.cli import EXIT_STDOUT_CLOSED, StdoutClosed

    try:
        listing.flush()
    except StdoutClosed:
        os._exit(EXIT_STDOUT_CLOSED)
    except (ValueError, OSError):  # a stream its owner already closed (doit used as a library)
        pass


def _quiet_keyboard_interrupt() -> None:
    """An excepthook for the uncaught KeyboardInterrupt only: one line, exit handlers (the store lease),
    exit 130 as a shell reports Ctrl-C. Every output is written under a temp name and renamed, and a
    node's stamp is recorded after its action: an interrupted run leaves nothing half-written."""
    previous = sys.excepthook
    if getattr(previous, "__name__", "") == "_on_uncaught":
        return

    def _on_uncaught(kind, value, traceback) -> None:  # type: ignore[no-untyped-def]
        if not issubclass(kind, KeyboardInterrupt):
            previous(kind, value, traceback)
            return
        import atexit
        import os

        from pixibuild.cli import EXIT_STDOUT_CLOSED, StdoutClosed

        if issubclass(kind, StdoutClosed):  # the reader of our output left: stdout already points at devnull
            atexit._run_exitfuncs()
            os._exit(EXIT_STDOUT_CLOSED)
        print("pixibuild: interrupted; what was built is kept, run again to continue", file=sys.stderr)
        sys.stderr.flush()
        atexit._run_exitfuncs()
        os._exit(130)

    sys.excepthook = _on_uncaught


def _namespace(root: str | Path, kinds: Sequence[str] | None, store_root: str | Path | None,
               build_dir: str | Path | None, remote_cache: str | None, remote_cache_mode: str | None,
               shard: str | None, net_options: dict | None) -> dict[str, Any]:
    import dataclasses
    import gc

    from pixibuild.graph.plan import load_workspace
    from pixibuild.graph.remote import workspace_cache_settings
    from pixibuild.graph.shard import shard_from_environment
    from pixibuild.store.remote import RemoteCache
    from pixibuild.store.remote_settings import resolve_settings

    from .doit_tasks import default_tasks, doit_config, task_creators
    from .graph import build_graph

    root = Path(root)
    if root.is_file():
        root = root.parent
    enabled = gc.isenabled()
    gc.disable()  # planning makes many long-lived objects: the collector would rescan them over and over
    try:
        ws = load_workspace(root, store_root=store_root, build_dir=build_dir, use_plan_cache=True)
        manifest_remote, manifest_mode, where = workspace_cache_settings(ws.root, ws.project_dirs)
        settings = resolve_settings(flag=remote_cache if remote_cache is not None else _doit_var("remote_cache"),
                                    flag_mode=remote_cache_mode or _doit_var("remote_cache_mode"),
                                    manifest=manifest_remote, manifest_mode=manifest_mode, manifest_where=where)
        net_options = dict(net_options or {})
        remote = None
        if settings is not None:
            def net():  # the registry is reached with the workspace's pixi config and the command's flags
                from pixibuild.net.config import NetConfig

                return NetConfig.load(project_root=ws.root, **net_options)
            remote = RemoteCache(settings, net, project_root=ws.root)
        ws = dataclasses.replace(ws, remote=remote, net_options=net_options)
        graph = build_graph(ws, kinds, shard=shard_from_environment(shard, _doit_var("shard")))
    finally:
        # the graph lives as long as the process: the collector's next full pass would rescan it (0.05 s)
        gc.freeze()
        if enabled:
            gc.enable()
    # every store item the run's nodes use is leased before the first of them is looked at
    ws.lease_on_first_use(lambda: (item for node in graph.nodes() for item in node.holds))
    for node in graph.nodes("lock"):
        if node.broken:
            print(f"pixibuild: warning: {node.name}: {node.broken} (this project's tasks fail when asked for; "
                  "the other projects build)", file=sys.stderr)
    namespace: dict[str, Any] = dict(task_creators(ws, graph))
    namespace["DOIT_CONFIG"] = doit_config(ws, default_tasks(graph))
    namespace["PIXIBUILD_WORKSPACE"] = ws
    namespace["PIXIBUILD_GRAPH"] = graph
    return namespace


__all__ = ["workspace_tasks"]
