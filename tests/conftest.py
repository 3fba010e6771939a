"""Shared fixtures: where the real-world corpus lives, tool requirements that skip locally but fail
in CI (where `.ci/run` sets PIXIBUILD_REQUIRE_TOOLS=1 after installing the tools), and the cache
isolation every test gets: no test, and no subprocess a test starts, may touch the user's cache."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Iterator

import pytest

from pixibuild.store.roots import lock_cache_root, store_root

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PIXIBUILD_SHARED", REPO.parent / "shared"))
CORPUS = SHARED / "corpus"

# A shell starts background jobs (`pytest &`, nohup, some CI runners) with SIGINT ignored, and an
# ignored signal stays ignored across exec: the Ctrl-C tests' children would then never see their
# SIGINT. A handler (unlike SIG_IGN) is reset to the default on exec, so the children get Ctrl-C back.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def require_tool(name: str, how: str = "") -> str:
    """Path of executable `name`; skip the test when it is missing (fail in CI). `how` says where to get
    it when that is not the Debian package of the same name."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("PIXIBUILD_REQUIRE_TOOLS"):
            pytest.fail(f"{name} is required in CI (PIXIBUILD_REQUIRE_TOOLS=1) but not on PATH")
        pytest.skip(f"{name} not installed" + (f" ({how})" if how else ""))
    return path


def skip_unless_ci(reason: str) -> None:
    """Skip with `reason` locally; in CI (PIXIBUILD_REQUIRE_TOOLS=1) nothing may skip: fail instead."""
    if os.environ.get("PIXIBUILD_REQUIRE_TOOLS"):
        pytest.fail(f"required in CI (PIXIBUILD_REQUIRE_TOOLS=1): {reason}")
    pytest.skip(reason)


def require_corpus(*parts: str) -> Path:
    """A path inside ../shared/corpus; skip the test when the corpus is absent (fail in CI)."""
    path = CORPUS.joinpath(*parts)
    if not path.exists():
        if os.environ.get("PIXIBUILD_REQUIRE_TOOLS"):
            pytest.fail(f"{path} is required in CI but missing")
        pytest.skip(f"corpus not available: {path}")
    return path


@pytest.fixture
def corpus_locks() -> Path:
    return require_corpus("locks")


@pytest.fixture
def corpus_pkgs() -> Path:
    return require_corpus("pkgs")


@pytest.fixture
def store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private package store per test, so tests never share or pollute the user's cache."""
    path = tmp_path / "store"
    monkeypatch.setenv("PIXIBUILD_CACHE_DIR", str(path))
    return path


# -- cache isolation -----------------------------------------------------------------------------------
CACHE_VARIABLES = ("PIXIBUILD_CACHE_DIR", "XDG_CACHE_HOME", "PIXIBUILD_LOCK_CACHE", "HOME")


def user_cache_roots() -> list[Path]:
    """Every cache root pixibuild would use with this process's environment (`store.roots` decides them)."""
    roots = [store_root()]
    lock_cache = lock_cache_root()
    if lock_cache is not None and not lock_cache.is_relative_to(roots[0]):
        roots.append(lock_cache)
    return roots


def snapshot(root: Path) -> dict[str, tuple[int, int]] | None:
    """relative path → (size, mtime_ns) of everything under `root`; None when it does not exist."""
    if not root.exists():
        return None
    out = {".": (0, root.stat().st_mtime_ns)}
    for path in root.rglob("*"):
        st = path.lstat()
        out[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


_USER_CACHES: dict[Path, dict[str, tuple[int, int]] | None] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    """Remember the user's cache roots as they are before any test runs."""
    for root in user_cache_roots():
        _USER_CACHES[root] = snapshot(root)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any test (or a subprocess it started) created or changed the user's cache.

    Another program writing to the same cache during the run would be reported too: the message names
    the paths, so the two cases can be told apart."""
    changed = []
    for root, before in _USER_CACHES.items():
        after = snapshot(root)
        if after != before:
            paths = sorted(set(before or {}) ^ set(after or {}) | {p for p in set(before or {}) & set(after or {})
                                                                    if before[p] != after[p]})
            changed.append(f"{root}: {', '.join(paths[:10]) or 'created'}")
    if changed:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "the user's cache was modified during the test run: " + "; ".join(changed)
        if reporter is not None:
            reporter.write_line(f"ERROR: {message}", red=True)
        else:  # pragma: no cover
            print(f"ERROR: {message}")


def _isolate(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("PIXIBUILD_CACHE_DIR", str(home / ".cache" / "pixibuild"))
    monkeypatch.delenv("PIXIBUILD_LOCK_CACHE", raising=False)
    # the user's pixi config (mirrors!) and credentials must not steer a test either: HOME-based defaults
    for name in ("XDG_CONFIG_HOME", "PIXI_HOME", "RATTLER_AUTH_FILE", "NETRC", "DOCKER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    # progress lines appear after 2 s of work: a test that checks stderr line by line must not meet one
    # because the machine was slow that minute (the progress tests set their own times)
    monkeypatch.setenv("PIXIBUILD_PROGRESS_DELAY", "3600")


@pytest.fixture(scope="session", autouse=True)
def isolated_session_caches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The same isolation for module- and session-scoped fixtures, which run before a test's own."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        home = tmp_path_factory.mktemp("session-home")
        _isolate(home, monkeypatch)
        yield home


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every cache root (and HOME, which the defaults derive from) points into a fresh temp dir, for the
    test and every subprocess it starts with the inherited environment; so do pixi's config and the
    credential files. Tests that need a particular store still set PIXIBUILD_CACHE_DIR themselves
    (`store_dir`)."""
    home = tmp_path_factory.mktemp("home")
    _isolate(home, monkeypatch)
    return home
