"""Forked planning workers: a few processes that take items from one queue as they become free, send
their results back through a pipe as soon as the queue is empty, and only then do their `after` work
(writing caches the parent does not wait for), while the parent goes on. The parent reaps them before
it exits: nothing is left writing.

Why a queue: items cost what they cost (a project's lock size only roughly predicts its planning
time); with fixed shares one worker finished ~0.1 s after the other on the corpus monorepo. Why not
`concurrent.futures.ProcessPoolExecutor`: a pool's result is the function's return, so cache writes
a worker makes on the way would delay the parent. An item whose worker died without a result
(killed, out of memory) is reported as missing, and the caller does it itself."""

from __future__ import annotations

import atexit
import os
import pickle
import signal
import struct
import threading
from typing import Any, Callable, Sequence

from pixibuild.files.forks import can_fork, die_with_parent

_UNREAPED: set[int] = set()
"""Workers that sent their results and may still be doing their `after` work."""

_ITEM = struct.Struct("<I")
"""One queue entry: an item's index. Reads of 4 bytes from a pipe holding whole entries are whole."""


def fork_each(work: Callable[[Any], Any], items: Sequence[Any], processes: int, *,
              start: Callable[[], None] | None = None, after: Callable[[], None] | None = None
              ) -> dict[int, Any] | None:
    """`{i: work(items[i])}` computed by `processes` forked workers, each taking the next item (in
    the given order: put the costliest first) when it is free. In each worker `start()` runs before
    its first item and `after()` once its results are sent. An item whose worker ended without
    results is missing from the dict; an exception in `work` is sent back and raised here. None when
    no process could be forked."""
    if not can_fork() or not items:
        return None
    try:  # for the children's prctl: imported before the fork, not in each child
        import ctypes  # noqa: F401
    except ImportError:
        pass
    parent = os.getpid()
    queue_read, queue_write = os.pipe()
    pipes: list[int] = []  # each worker's result pipe (read end)
    pids: list[int] = []
    try:
        for _ in range(max(1, min(processes, len(items)))):
            read_end, write_end = os.pipe()
            try:
                pid = os.fork()
            except OSError:
                os.close(read_end)
                os.close(write_end)
                break  # fewer workers: the others take more items
            if pid == 0:  # pragma: no cover - the child (coverage does not follow it)
                os.close(read_end)
                os.close(queue_write)
                for other in pipes:
                    os.close(other)
                _child(work, items, queue_read, start, after, write_end, parent)
            os.close(write_end)
            pipes.append(read_end)
            pids.append(pid)
        os.close(queue_read)
        if not pids:
            os.close(queue_write)
            return None
        results = _collect(pipes, queue_write, b"".join(_ITEM.pack(i) for i in range(len(items))))
    except BaseException:  # Ctrl-C, or our own failure: the workers stop too
        for pid in pids:
            _kill(pid)
        raise
    finally:
        for fd in pipes:
            try:
                os.close(fd)
            except OSError:
                pass
    _UNREAPED.update(pids)
    reap(block=False)
    for index in sorted(results):
        if isinstance(results[index], _Failed):
            raise results[index].error
    return results


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def _collect(pipes: list[int], queue_write: int, queue: bytes) -> dict[int, Any]:
    """Feed the queue, then close it (the workers' EOF), and return every worker's results, unpickled
    as they arrive by one reader thread per worker, started first: a worker blocked on a full result
    pipe stops taking items, and a queue larger than a pipe holds would then never be written."""
    results: dict[int, Any] = {}

    def read(fd: int) -> None:
        with os.fdopen(fd, "rb", closefd=False) as pipe:
            unpickler = pickle.Unpickler(pipe)  # one memo for the worker's whole stream, like its pickler
            try:
                while (entry := unpickler.load()) is not None:
                    index, result = entry
                    results[index] = result
            except Exception:  # noqa: BLE001 - cut short: the worker died; its missing items are redone
                pass

    readers = [threading.Thread(target=read, args=(fd,), name="planning-results") for fd in pipes]
    for reader in readers:
        reader.start()
    try:
        with os.fdopen(queue_write, "wb") as pipe:  # blocks while the workers are behind
            pipe.write(queue)
    finally:
        for reader in readers:
            reader.join()
    return results


def _child(work: Callable[[Any], Any], items: Sequence[Any], queue: int, start: Callable[[], None] | None,
           after: Callable[[], None] | None, write_end: int, parent: int) -> None:  # pragma: no cover
    """Take items until the queue is empty, sending each result as soon as it is ready (pickling and
    unpickling overlap the work), then `after`; leave without the parent's atexit handlers or buffers.
    One pickler for the whole stream: what several results share (a package's nodes) is sent once."""
    code = 1
    try:
        die_with_parent(parent)
        if start is not None:
            start()
        with os.fdopen(write_end, "wb", buffering=1 << 20) as pipe:
            pickler = pickle.Pickler(pipe, protocol=pickle.HIGHEST_PROTOCOL)
            while entry := os.read(queue, _ITEM.size):
                (index,) = _ITEM.unpack(entry)
                try:
                    result: Any = work(items[index])
                except Exception as exc:  # noqa: BLE001 - raised in the parent
                    result = _Failed(exc)
                try:
                    pickler.dump((index, result))
                except Exception as exc:  # noqa: BLE001 - unpicklable: its text gets through
                    pickler.dump((index, _Failed(RuntimeError(f"{type(exc).__name__}: {exc}"))))
                pipe.flush()
                if isinstance(result, _Failed):
                    break
            os.close(queue)
            pickler.dump(None)
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
