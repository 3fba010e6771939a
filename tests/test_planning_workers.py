"""graph/workers.py: forked planning workers send their result first and do their `after` work
(cache writes) while the parent goes on; the parent reaps them before it exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pixibuild.graph import workers

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")


@pytest.fixture(autouse=True)
def forking_allowed(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Two CPUs, and fork allowed although earlier tests left idle pool threads in this process (their
    workers only compute and exit); `test_no_fork_while_another_thread_runs` checks the real guard."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    if request.node.name != "test_no_fork_while_another_thread_runs":
        monkeypatch.setattr(workers, "can_fork", lambda: True)


def _square_all(share: list[int]) -> list[int]:
    return [x * x for x in share]


def test_results_come_back_in_share_order() -> None:
    shares = [[1, 2], [3], list(range(2000))]
    assert workers.fork_map(_square_all, shares) == [_square_all(s) for s in shares]


def test_the_result_arrives_before_the_after_work_is_done(tmp_path: Path) -> None:
    marker = tmp_path / "written-after"

    def after() -> None:
        time.sleep(0.5)
        marker.write_text("done")

    assert workers.fork_map(_square_all, [[2]], after=after) == [[4]]
    assert not marker.exists()  # the parent already has the result; the worker is still writing
    workers.reap()
    assert marker.read_text() == "done"


def test_an_error_in_a_worker_is_raised_in_the_parent() -> None:
    def fail(share: list[int]) -> list[int]:
        if share == [7]:
            raise ValueError(f"bad share {share}")
        return share

    with pytest.raises(ValueError, match=r"bad share \[7\]"):
        workers.fork_map(fail, [[1], [7]])


def test_a_worker_that_dies_leaves_its_share_to_the_caller() -> None:
    def die(share: list[int]) -> list[int]:
        if share == [2]:
            os.kill(os.getpid(), signal.SIGKILL)
        return share

    assert workers.fork_map(die, [[1], [2], [3]]) == [[1], None, [3]]


def test_no_fork_while_another_thread_runs() -> None:
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert workers.fork_map(_square_all, [[1]]) is None
        assert workers.fork_call(lambda: None) is False
    finally:
        stop.set()
        thread.join()


def test_the_parent_waits_at_exit_for_a_background_write(tmp_path: Path) -> None:
    """`fork_call` returns at once; the process does not exit before the child's write is complete."""
    out = tmp_path / "plan-cache"
    script = f"""
import os, time
os.sched_getaffinity = lambda pid: {{0, 1}}
from pixibuild.graph import workers
def write():
    time.sleep(0.5)
    open({str(out)!r}, "w").write("complete")
assert workers.fork_call(write)
print("returned", flush=True)
"""
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "returned\n"
    assert out.read_text() == "complete"
    assert time.monotonic() - start >= 0.5
