"""Forked planning workers: one process per share of the work, each sending its result back through
a pipe as soon as it has it and only then doing its `after` work (writing caches the parent does not
wait for), while the parent goes on. The parent reaps them before it exits: nothing is left writing.

Why not `concurrent.futures.ProcessPoolExecutor`: a pool's result is the function's return, so
cache writes a worker makes on the way would delay the parent; and a pool is set up and torn down
for one map. A worker that dies without a result (killed, out of memory) is reported as `None`,
and the caller does that share itself."""

from __future__ import annotations

import atexit
import os
import pickle
import selectors
import signal
from typing import Any, Callable, Sequence

from pixibuild.files.forks import can_fork, die_with_parent

_UNREAPED: set[int] = set()
"""Workers that sent their result and may still be doing their `after` work."""


def fork_map(work: Callable[[Any], Any], shares: Sequence[Any], *, after: Callable[[], None] | None = None
             ) -> list[Any] | None:
    """`[work(share) for share in shares]`, each in a forked process; in each worker `after()` runs
    once its result is sent. A share whose worker ended without a result is None in the list (an
    exception in `work` is sent back and raised here). None when no process could be forked."""
    if not can_fork():
        return None
    try:  # for the children's prctl: imported before the fork, not in each child
        import ctypes  # noqa: F401
    except ImportError:
        pass
    parent = os.getpid()
    pipes: dict[int, int] = {}  # read end → share index
    pids: list[int] = []
    try:
        for index, share in enumerate(shares):
            read_end, write_end = os.pipe()
            try:
                pid = os.fork()
            except OSError:
                os.close(read_end)
                os.close(write_end)
                break  # what could not be forked is done by the caller
            if pid == 0:  # pragma: no cover - the child (coverage does not follow it)
                os.close(read_end)
                for other in pipes:
                    os.close(other)
                _child(work, share, after, write_end, parent)
            os.close(write_end)
            pipes[read_end] = index
            pids.append(pid)
        if not pids:
            return None
        results = _collect(pipes, len(shares))
    except BaseException:  # Ctrl-C, or our own failure: the workers stop too
        for pid in pids:
            _kill(pid)
        raise
    finally:
        for read_end in pipes:
            try:
                os.close(read_end)
            except OSError:
                pass
    _UNREAPED.update(pids)
    reap(block=False)
    for result in results:
        if isinstance(result, _Failed):
            raise result.error
    return results


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def _collect(pipes: dict[int, int], n: int) -> list[Any]:
    """Every worker's bytes, read as they come (a worker blocked on a full pipe would wait for us)."""
    chunks: dict[int, list[bytes]] = {fd: [] for fd in pipes}
    results: list[Any] = [None] * n
    with selectors.DefaultSelector() as sel:
        for fd in pipes:
            sel.register(fd, selectors.EVENT_READ)
        open_fds = set(pipes)
        while open_fds:
            for key, _ in sel.select():
                data = os.read(key.fd, 1 << 20)
                if data:
                    chunks[key.fd].append(data)
                    continue
                sel.unregister(key.fd)
                open_fds.discard(key.fd)
                try:
                    results[pipes[key.fd]] = pickle.loads(b"".join(chunks[key.fd]))
                except Exception:  # noqa: BLE001 - cut short: the worker died; its share is redone
                    results[pipes[key.fd]] = None
    return results


def _child(work: Callable[[Any], Any], share: Any, after: Callable[[], None] | None, write_end: int,
           parent: int) -> None:  # pragma: no cover - in the child
    """Work, send the result, then `after`; leave without the parent's atexit handlers or buffers."""
    code = 1
    try:
        die_with_parent(parent)
        try:
            result: Any = work(share)
        except Exception as exc:  # noqa: BLE001 - raised in the parent
            result = _Failed(exc)
        try:
            data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - an unpicklable result or error: its text gets through
            data = pickle.dumps(_Failed(RuntimeError(f"{type(exc).__name__}: {exc}")))
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(data)
        if after is not None:
            after()
        code = 0
    finally:
        os._exit(code)


def fork_call(work: Callable[[], None]) -> bool:
    """Run `work` in a forked child and go on without waiting (it is reaped at exit, or by `reap`).
    False, having run nothing, when no process could be forked: the caller runs it itself."""
    if not can_fork():
        return False
    try:
        import ctypes  # noqa: F401 - for the child's prctl
    except ImportError:
        pass
    parent = os.getpid()
    try:
        pid = os.fork()
    except OSError:
        return False
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            die_with_parent(parent)
            work()
            code = 0
        finally:
            os._exit(code)
    _UNREAPED.add(pid)
    return True


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def reap(block: bool = True) -> None:
    """Wait for workers still doing their `after` work (at exit: a cache write must not be cut)."""
    for pid in list(_UNREAPED):
        try:
            done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            done = pid
        except KeyboardInterrupt:
            _kill(pid)
            done = pid
        if done:
            _UNREAPED.discard(pid)


atexit.register(reap)
