"""Shared fixtures: where the real-world corpus lives, and tool requirements that skip locally
but fail in CI (where `.ci/run` sets PIXIBUILD_REQUIRE_TOOLS=1 after installing the tools)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PIXIBUILD_SHARED", REPO.parent / "shared"))
CORPUS = SHARED / "corpus"


def require_tool(name: str) -> str:
    """Path of executable `name`; skip the test when it is missing (fail in CI)."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("PIXIBUILD_REQUIRE_TOOLS"):
            pytest.fail(f"{name} is required in CI (PIXIBUILD_REQUIRE_TOOLS=1) but not on PATH")
        pytest.skip(f"{name} not installed")
    return path


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
