"""pixi's `[proxy-config]`: downloads go through the configured proxy (a real forward proxy on 127.0.0.1),
hosts in `non-proxy-hosts` are reached directly, and the config's proxy replaces the environment's."""

from __future__ import annotations

import pytest

from fetchkit import make_channel, records_for, spec
from pixibuild.errors import InputError
from pixibuild.net.config import NetConfig
from pixibuild.store.blobs import Store
from pixibuild.store.fetch import Fetcher
from support.http_server import TestServer
from support.proxy import ForwardProxy


@pytest.fixture
def channel(tmp_path):
    root = tmp_path / "channel"
    return root, make_channel(root, [spec("one", "noarch", 30_000, 1), spec("two", "linux-64", 50_000, 2)])


def _fetch(tmp_path, channel, config_text: str, name: str) -> tuple[list, TestServer]:
    root, files = channel
    config = tmp_path / f"{name}.toml"
    config.write_text(config_text)
    with TestServer(root) as server:
        records = records_for(files, server.url, root)
        store = Store(tmp_path / "stores" / name)
        with Fetcher(store, NetConfig.load([config])) as fetcher:
            paths = fetcher.fetch_all(records)
        assert server.count(".conda", status=(200,)) == len(records)
    return [p.name for p in paths], records


def test_downloads_go_through_the_configured_proxy(tmp_path, channel, monkeypatch):
    # the environment names a proxy that does not exist and tells clients to skip it for 127.0.0.1:
    # the config's proxy replaces both
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with ForwardProxy() as proxy:
        names, records = _fetch(tmp_path, channel, f'[proxy-config]\nhttp = "{proxy.url}"\n', "proxied")
        assert sorted(proxy.relayed) == sorted(r.url for r in records)
    assert sorted(names) == sorted(r.sha256 for r in records)


@pytest.mark.parametrize("hosts", ['["127.0.0.1"]', '["*"]'])  # the channel's host; "*": no proxy at all
def test_non_proxy_hosts_are_reached_directly(tmp_path, channel, monkeypatch, hosts):
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    with ForwardProxy() as proxy:
        names, records = _fetch(tmp_path, channel, f'[proxy-config]\nhttp = "{proxy.url}"\n'
                                                   f'non-proxy-hosts = {hosts}\n', "direct")
        assert proxy.relayed == []
    assert sorted(names) == sorted(r.sha256 for r in records)


@pytest.mark.parametrize("text, field", [
    ('proxy-config = "http://p:1"\n', "proxy-config"),
    ('[proxy-config]\nhttps = "proxy.example:3128"\n', "proxy-config.https"),
    ('[proxy-config]\nhttp = 3128\n', "proxy-config.http"),
    ('[proxy-config]\nnon-proxy-hosts = "localhost"\n', "proxy-config.non-proxy-hosts"),
])
def test_bad_proxy_settings_are_one_line_errors_naming_the_file_and_key(tmp_path, text, field):
    config = tmp_path / "config.toml"
    config.write_text(text)
    with pytest.raises(InputError) as info:
        NetConfig.load([config])
    message = str(info.value)
    assert str(config) in message and field in message and "\n" not in message


@pytest.mark.parametrize("host, url, direct", [
    ("127.0.0.1", "http://127.0.0.1:8000/x", True),
    ("[::1]", "http://[::1]:8000/x", True),
    ("localhost", "http://localhost/x", True),
    ("example.com", "https://api.example.com/x", True),
    (".example.com", "https://api.example.com/x", True),
    ("*.example.com", "https://example.org/x", False),
    ("10.0.0.1", "http://10.0.0.2/x", False),
])
def test_non_proxy_hosts_read_as_no_proxy_is(host, url, direct):
    """The same reading as the NO_PROXY variable (httpx's): exact addresses, name suffixes. Checked with
    the pattern class httpx routes mounts by."""
    import httpx
    from httpx._utils import URLPattern

    from pixibuild.net.http import no_proxy_pattern

    assert URLPattern(no_proxy_pattern(host)).matches(httpx.URL(url)) is direct
