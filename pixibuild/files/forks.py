"""Forked helper processes (a second linker, planning workers): when forking is safe, and how a child
dies with its parent. Why fork at all: the work is Python, which threads cannot run in parallel."""

from __future__ import annotations

import os
import signal
import threading


def can_fork() -> bool:
    """fork exists, there is a second CPU, and this is the only thread (a fork copies only the
    calling thread: another one could hold a lock the child would then wait on forever)."""
    if not hasattr(os, "fork") or threading.active_count() != 1:
        return False
    try:
        return len(os.sched_getaffinity(0)) > 1
    except (AttributeError, OSError):
        return (os.cpu_count() or 1) > 1


def die_with_parent(parent: int) -> None:  # pragma: no cover - in the child
    """SIGKILL this child when the process that forked it dies (Linux): a killed parent must not
    leave a process writing into its staging directory or caches."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (ImportError, OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)
