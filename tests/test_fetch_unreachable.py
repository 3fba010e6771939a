"""A channel that cannot be reached: one line saying why (the name does not resolve, the connection is
refused) and what to do (check the network, or a `[mirrors]` entry in pixi's config, naming the file);
a name that does not resolve is not retried (waiting cannot make it exist)."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fetchkit import make_channel, records_for, spec
from pixibuild.demo.lockwriter import write_lock
from pixibuild.errors import BuildError
from pixibuild.net.auth import AuthStore
from pixibuild.net.config import NetConfig
from pixibuild.store.blobs import Store
from pixibuild.store.fetch import Fetcher
from support.http_server import TestServer

UNRESOLVABLE = "https://conda.nonexistent.invalid/my-channel"  # RFC 2606: .invalid never resolves
FAST = NetConfig(retries=2, backoff=0.01, max_backoff=0.02, read_timeout=5, connect_timeout=2)


def _resolver_says_no_such_name() -> bool:
    """Whether this machine's resolver answers NXDOMAIN for .invalid (a sandbox without any DNS server
    answers 'temporary failure' instead, which is retried: waiting can help there)."""
    try:
        socket.getaddrinfo("conda.nonexistent.invalid", 443)
    except socket.gaierror as exc:
        return exc.errno != socket.EAI_AGAIN
    return False


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def channel(tmp_path: Path):
    root = tmp_path / "channel"
    return root, make_channel(root, [spec(f"p{i}", "linux-64", 2_000, i) for i in range(5)])


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "store")
    yield s
    s.close()


def test_an_unresolvable_host_fails_at_once_in_one_line_with_what_to_do(channel, store) -> None:
    records = records_for(channel[1], UNRESOLVABLE, channel[0])
    with Fetcher(store, FAST, progress=False, auth=AuthStore()) as fetcher, pytest.raises(BuildError) as error:
        fetcher.fetch_all(records)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("cannot download 5 packages: conda.nonexistent.invalid: the host name ")
    assert "more failed" not in message  # one cause, one line, not five
    assert '[mirrors] "https://conda.nonexistent.invalid/my-channel" = [' in message
    assert "~/.config/pixi/config.toml" in message and "/etc/pixi/config.toml" in message
    assert "~/.pixi/config.toml" in message and "-c" in message
    if _resolver_says_no_such_name():
        assert "cannot be resolved" in message
        assert fetcher.stats["retries"] == 0  # was 4 per package: ~8 s for an answer that cannot change


def test_a_refused_connection_is_retried_then_named(channel, store) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/my-channel"
    records = records_for(channel[1], url, channel[0])[:2]
    with Fetcher(store, FAST, progress=False, auth=AuthStore()) as fetcher, pytest.raises(BuildError) as error:
        fetcher.fetch_all(records)
    message = str(error.value)
    assert "\n" not in message and "more failed" not in message
    assert f"the connection to 127.0.0.1:{url.split(':')[2].split('/')[0]} was refused" in message
    assert f"{FAST.retries + 1} attempts each" in message
    assert f'[mirrors] "{url}" = [' in message
    assert fetcher.stats["retries"] == 2 * FAST.retries  # a server coming back up is worth the wait


def test_the_hint_works_a_mirror_in_the_named_config_file_fetches_the_packages(channel, store, tmp_path) -> None:
    """Follow the advice literally: the [mirrors] entry in ~/.config/pixi/config.toml makes it work."""
    records = records_for(channel[1], UNRESOLVABLE, channel[0])
    config = Path.home() / ".config" / "pixi" / "config.toml"  # HOME is the test's (conftest)
    with TestServer(channel[0]) as server:
        config.parent.mkdir(parents=True)
        config.write_text(f'[mirrors]\n"{UNRESOLVABLE}" = ["{server.url}"]\n')
        net = dataclasses.replace(NetConfig.load(), retries=0)
        with Fetcher(store, net, progress=False, auth=AuthStore()) as fetcher:
            assert [p.name for p in fetcher.fetch_all(records)] == [r.sha256 for r in records]


def test_the_cli_prints_exactly_one_line_for_an_unreachable_channel(channel, tmp_path: Path) -> None:
    project = tmp_path / "project"
    write_lock(project / "pixi.lock", {"default": {"linux-64": records_for(channel[1], UNRESOLVABLE, channel[0])}},
               channels=[UNRESOLVABLE])
    (project / "pixi.toml").write_text(f'[workspace]\nname = "p"\nchannels = ["{UNRESOLVABLE}"]\n'
                                       'platforms = ["linux-64"]\n')
    result = subprocess.run([sys.executable, "-m", "pixibuild", "fetch", str(project), "-p", "linux-64"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pixibuild: error: cannot download 5 packages: conda.nonexistent.invalid: ")
    assert "ConnectError" not in lines[0] and "more failed" not in lines[0]
