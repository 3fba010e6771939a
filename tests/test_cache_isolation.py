"""No test touches the user's cache: conftest points every cache root at a temp dir for every test and
every subprocess it starts, and checks at the end of the session that the user's cache is unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import _USER_CACHES, snapshot, user_cache_roots
from pixibuild.demo.demo import write_demo
from pixibuild.store.roots import layer_cache_root, lock_cache_root, store_root

ROOTS = ("import json; from pixibuild.store.roots import layer_cache_root, lock_cache_root, store_root; "
         "print(json.dumps([str(store_root()), str(lock_cache_root()), str(layer_cache_root())]))")


def _inside(path: Path, root: Path) -> bool:
    return Path(path).resolve().is_relative_to(root.resolve())


def test_every_cache_root_points_into_the_tests_temp_home(tmp_path_factory) -> None:
    home = Path(os.environ["HOME"])
    assert _inside(home, tmp_path_factory.getbasetemp())
    in_process = [store_root(), lock_cache_root(), layer_cache_root()]
    in_subprocess = [Path(p) for p in json.loads(subprocess.run([sys.executable, "-c", ROOTS], check=True,
                                                                capture_output=True, text=True).stdout)]
    for root in in_process + in_subprocess:
        assert _inside(root, home), root
        assert not any(_inside(root, user) for user in _USER_CACHES), (root, list(_USER_CACHES))


def test_the_defaults_without_the_variables_still_land_in_the_temp_home(monkeypatch) -> None:
    """HOME-based defaults (no PIXIBUILD_CACHE_DIR, no XDG_CACHE_HOME) are isolated too."""
    monkeypatch.delenv("PIXIBUILD_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    home = Path(os.environ["HOME"])
    assert user_cache_roots() == [home / ".cache" / "pixibuild"]


def test_a_cli_run_writes_its_lock_cache_into_the_temp_home_not_the_users(tmp_path: Path) -> None:
    """The leak the issue found: `pixibuild pack` (like tests/test_pack_command.py runs it) used to put a
    lock-cache pickle into the real $XDG_CACHE_HOME/pixibuild."""
    before = {root: snapshot(root) for root in _USER_CACHES}
    webapp = write_demo(tmp_path / "demo")["webapp"]
    subprocess.run([sys.executable, "-m", "pixibuild", "-q", "pack", str(webapp), "-e", "prod", "-p", "linux-aarch64",
                    "-o", str(tmp_path / "env.tar")], check=True)
    pickles = list((Path(os.environ["HOME"]) / ".cache" / "pixibuild" / "lock-cache").glob("*.pickle"))
    assert pickles, "the lock cache went somewhere else"
    assert {root: snapshot(root) for root in _USER_CACHES} == before

