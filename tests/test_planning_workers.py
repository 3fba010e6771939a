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


def _square(x: int) -> int:
    return x * x


def test_every_item_comes_back_under_its_index() -> None:
    items = list(range(20_000))  # more queue entries than a pipe holds at once
    assert workers.fork_each(_square, items, 2) == {i: i * i for i in items}


def test_a_long_queue_with_large_results_does_not_deadlock() -> None:
    """More items than the queue pipe holds, each result larger than a result pipe holds: the parent
    must read results while it is still feeding the queue."""
    items = list(range(17_000))
    done = workers.fork_each(lambda i: b"x" * 70_000 if i < 2 else i, items, 2)  # both workers block at once
    assert done is not None and len(done) == len(items) and done[1] == b"x" * 70_000 and done[16_999] == 16_999


def test_a_free_worker_takes_the_next_item() -> None:
    """One slow item does not hold up the others: they go to the worker that is free."""
    def work(x: int) -> int:
        if x == 0:
            time.sleep(1.0)
        return os.getpid()

    done = workers.fork_each(work, list(range(8)), 2)
    assert done is not None and sorted(done) == list(range(8))
    slow = done[0]
    assert all(done[i] != slow for i in range(1, 8))  # the other worker took all the rest


def test_the_results_arrive_before_the_after_work_is_done(tmp_path: Path) -> None:
    marker = tmp_path / "written-after"

    def after() -> None:
        time.sleep(0.5)
        marker.write_text("done")

    assert workers.fork_each(_square, [2], 2, after=after) == {0: 4}
    assert not marker.exists()  # the parent already has the result; the worker is still writing
    workers.reap()
    assert marker.read_text() == "done"


def test_start_runs_in_each_worker_before_its_first_item() -> None:
    state: dict[str, int] = {}

    def start() -> None:
        state["started"] = os.getpid()

    def work(x: int) -> bool:
        return state.get("started") == os.getpid()

    assert workers.fork_each(work, [1, 2, 3], 2, start=start) == {0: True, 1: True, 2: True}
    assert state == {}  # only the workers started


def test_an_error_in_a_worker_is_raised_in_the_parent() -> None:
    def fail(x: int) -> int:
        if x == 7:
            raise ValueError(f"bad item {x}")
        return x

    with pytest.raises(ValueError, match="bad item 7"):
        workers.fork_each(fail, [1, 7, 3], 2)


def test_an_item_whose_worker_dies_is_left_to_the_caller() -> None:
    def die(x: int) -> int:
        if x == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    items = [1, 2, 3, 4, 5, 6]
    done = workers.fork_each(die, items, 2)
    assert done is not None and 1 not in done  # index 1 holds the item 2: its worker's items are missing
    assert done and all(done[i] == items[i] for i in done)  # the other worker's results came through


def test_no_fork_while_another_thread_runs() -> None:
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert workers.fork_each(_square, [1], 2) is None
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
