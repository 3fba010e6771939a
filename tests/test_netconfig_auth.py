"""pixi configuration (mirrors, concurrency, TLS) and rattler-format credentials, with redaction."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from pixibuild.net.auth import REDACTED, AuthStore, read_auth_file, redact_text, redact_url, storage_key
from pixibuild.errors import InputError
from pixibuild.net.config import DEFAULT_CONCURRENCY, NetConfig, default_config_files


def _toml(tmp_path, name, text):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_mirrors_rewrite_the_longest_prefix_in_order_and_later_files_override(tmp_path):
    global_cfg = _toml(tmp_path, "global.toml", """
[mirrors]
"https://conda.anaconda.org/conda-forge" = ["https://m1.example/cf", "https://m2.example/cf/"]
"https://conda.anaconda.org" = ["https://all.example"]
[concurrency]
downloads = 3
""")
    project_cfg = _toml(tmp_path, "proj/.pixi/config.toml", """
[concurrency]
downloads = 7
""")
    cfg = NetConfig.load([global_cfg, project_cfg])
    assert cfg.downloads == 7
    assert cfg.sources == (global_cfg, project_cfg)
    url = "https://conda.anaconda.org/conda-forge/noarch/x-1-0.conda"
    assert cfg.mirror_urls(url) == ["https://m1.example/cf/noarch/x-1-0.conda",
                                    "https://m2.example/cf/noarch/x-1-0.conda"]
    assert cfg.mirror_urls("https://conda.anaconda.org/bioconda/noarch/y.conda") == \
        ["https://all.example/bioconda/noarch/y.conda"]
    # A prefix matches whole path segments only, and unrelated URLs are left alone.
    assert cfg.mirror_urls("https://conda.anaconda.org/conda-forge-extra/a.conda") == \
        ["https://all.example/conda-forge-extra/a.conda"]
    assert cfg.mirror_urls("https://repo.prefix.dev/x/a.conda") == ["https://repo.prefix.dev/x/a.conda"]
    assert NetConfig().downloads == DEFAULT_CONCURRENCY


def test_default_config_locations_follow_pixi(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("PIXI_HOME", str(tmp_path / "pixihome"))
    files = default_config_files(tmp_path / "proj")
    assert files == [Path("/etc/pixi/config.toml"),
                     tmp_path / "xdg" / "pixi" / "config.toml", tmp_path / "pixihome" / "config.toml",
                     tmp_path / "proj" / ".pixi" / "config.toml"]
    _toml(tmp_path, "proj/.pixi/config.toml", "[concurrency]\ndownloads = 2\n")
    assert NetConfig.load(project_root=tmp_path / "proj").downloads == 2


def test_tls_no_verify_in_a_config_file_is_refused_unless_explicit(tmp_path, caplog):
    cfg = _toml(tmp_path, "c.toml", "tls-no-verify = true\n")
    with pytest.raises(InputError, match=r"c\.toml: tls-no-verify: .*explicit --tls-no-verify"):
        NetConfig.load([cfg])
    explicit = NetConfig.load([cfg], allow_tls_no_verify=True)
    assert explicit.ssl_verify() is False
    assert "TLS certificate verification is DISABLED" in caplog.text
    assert NetConfig.load([]).ssl_verify() is True


def test_bad_config_values_are_input_errors_naming_the_file_and_key(tmp_path):
    bad_mirror = _toml(tmp_path, "m.toml", '[mirrors]\n"https://a" = "https://b"\n')
    with pytest.raises(InputError, match=r"m\.toml: mirrors\.https://a: must be a list"):
        NetConfig.load([bad_mirror])
    bad_conc = _toml(tmp_path, "n.toml", "[concurrency]\ndownloads = 0\n")
    with pytest.raises(InputError, match="concurrency.downloads"):
        NetConfig.load([bad_conc])
    with pytest.raises(InputError, match="cannot parse pixi config"):
        NetConfig.load([_toml(tmp_path, "x.toml", "[[[")])
    with pytest.raises(InputError, match="CA bundle not found"):
        NetConfig.load([], ca_bundle=tmp_path / "missing.pem")
    garbage = _toml(tmp_path, "bundle.pem", "not a certificate")
    with pytest.raises(InputError, match="cannot load CA bundle"):
        NetConfig.load([], ca_bundle=garbage).ssl_verify()


def test_auth_file_in_rattler_format(tmp_path):
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({
        "repo.example.com": {"BearerToken": "tok"},
        "*.corp.example": {"BasicHTTP": {"username": "u", "password": "p"}},
        "conda.example.org": {"CondaToken": "ct"},
    }))
    store = AuthStore.load(path, use_netrc=False)
    assert store.authenticate("https://repo.example.com/ch/noarch/a.conda") == \
        ("https://repo.example.com/ch/noarch/a.conda", {"Authorization": "Bearer tok"})
    assert store.authenticate("https://pkgs.mirror.corp.example/x.conda")[1] == \
        {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
    assert store.authenticate("https://conda.example.org/ch/linux-64/b.conda") == \
        ("https://conda.example.org/t/ct/ch/linux-64/b.conda", {})
    # Like rattler: `*.corp.example` also covers corp.example itself; unrelated hosts get nothing.
    assert store.lookup("corp.example").username == "u"
    assert store.lookup("evil.example.com") is None and store.lookup("corp.example.net") is None
    assert store.authenticate("https://other.example/x.conda") == ("https://other.example/x.conda", {})
    assert set(store.secrets()) >= {"tok", "p", "ct"}
    assert "tok" not in repr(read_auth_file(path))


def test_auth_file_errors_never_echo_the_secret(tmp_path, monkeypatch):
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"h.example": {"Bearer": "SECRET-VALUE"}}))
    with pytest.raises(InputError) as err:
        AuthStore.load(path, use_netrc=False)
    assert "h.example" in str(err.value) and "SECRET-VALUE" not in str(err.value)
    path.write_text("{not json SECRET-VALUE")
    with pytest.raises(InputError, match="not valid JSON") as err:
        AuthStore.load(path)
    assert "SECRET-VALUE" not in str(err.value)
    # $RATTLER_AUTH_FILE is read when no --auth-file is given.
    path.write_text(json.dumps({"env.example": {"BearerToken": "from-env"}}))
    monkeypatch.setenv("RATTLER_AUTH_FILE", str(path))
    assert AuthStore.load(use_netrc=False).lookup("env.example").token == "from-env"


def test_netrc_is_a_fallback_and_a_broken_one_is_ignored_quietly(tmp_path, caplog):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine files.example login me password NETRC-PW\n")
    store = AuthStore.load(None, use_env=False, netrc_file=netrc)
    assert store.lookup("files.example").password == "NETRC-PW"
    netrc.write_text("machine x login me password NETRC-PW badtoken\n")
    AuthStore.load(None, use_env=False, netrc_file=netrc)
    assert "NETRC-PW" not in caplog.text


def test_redaction_of_urls_and_text():
    assert redact_url("https://user:pw@host.example/t/abc123/ch/x.conda?token=zzz&v=1") == \
        f"https://{REDACTED}@host.example/t/{REDACTED}/ch/x.conda?token={REDACTED}&v=1"
    assert storage_key("https://user:pw@Host.Example/t/abc123/ch/x.conda?sig=zzz#frag") == \
        "https://host.example/ch/x.conda"
    assert storage_key("file:///tmp/x.conda") == "file:///tmp/x.conda"
    text = "GET https://u:pw@h/t/tok/x failed; header Bearer SEKRIT"
    out = redact_text(text, ["SEKRIT"])
    assert "pw" not in out and "tok" not in out and "SEKRIT" not in out


@pytest.mark.parametrize("url, key", [
    ("https://conda.anaconda.org/conda-forge/linux-64/zlib-1.3-h0_0.conda",
     "https://conda.anaconda.org/conda-forge/linux-64/zlib-1.3-h0_0.conda"),  # plain: itself
    ("https://Conda.Anaconda.org/c/x.conda", "https://conda.anaconda.org/c/x.conda"),  # host lower-cased
    ("HTTPS://h/c/x.conda", "https://h/c/x.conda"),
    ("https://h/t/tk-123/c/x.conda", "https://h/c/x.conda"),  # conda token dropped
    ("https://h/c/x.conda?sig=1", "https://h/c/x.conda"),
    ("https://h/c/x.conda#frag", "https://h/c/x.conda"),
    ("https://u:p@h/c/x.conda", "https://h/c/x.conda"),
    ("https://h", "https://h/"),
    ("https://[::1]:8443/c/x.conda", "https://[::1]:8443/c/x.conda"),
])
def test_storage_key_of_plain_and_other_urls(url, key):
    """The plain-URL shortcut gives what the full split/strip/join gives."""
    assert storage_key(url) == key
