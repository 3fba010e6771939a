"""The registry client on the shared network stack, against the real Debian docker-registry: TLS with a CA
made here (`--ca-bundle`), transient failures retried (a proxy injects them), redirects and token realms
that must not receive credentials, and where registry credentials come from."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from conftest import require_tool
from oci_helpers import AuthProxy, LocalRegistry, simple_image, skopeo

from pixibuild.cli import main
from pixibuild.demo.demo import write_demo
from pixibuild.errors import BuildError, InputError
from pixibuild.net.auth import AuthStore, registry_credential
from pixibuild.net.config import NetConfig
from pixibuild.net.registry import RegistryClient, parse_reference
from pixibuild.oci.push import push_image
from pixibuild.oci.base import load_base
from pixibuild.oci.layer import LayerCache
from support.tls import make_ca

FILES = {"zlib": {"lib/libz.so": b"z" * 4000}, "python": {"bin/python": b"#!/bin/sh\necho py\n"}}
FAST = NetConfig(retries=3, backoff=0.01, max_backoff=0.05, read_timeout=10, connect_timeout=5)


@pytest.fixture
def no_registry_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials from the user's environment, docker config or netrc leak into a test."""
    for name in ("PIXIBUILD_REGISTRY_USERNAME", "PIXIBUILD_REGISTRY_PASSWORD", "RATTLER_AUTH_FILE",
                 "PIXIBUILD_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    require_tool("openssl")
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def tls_registry(tmp_path: Path, ca):
    reg = LocalRegistry(tmp_path / "tls-registry", tls=ca)
    yield reg
    reg.stop()


@pytest.fixture
def registry(tmp_path: Path):
    reg = LocalRegistry(tmp_path / "registry")
    yield reg
    reg.stop()


def _cert_dir(tmp_path: Path, ca) -> Path:
    """skopeo's --cert-dir: a directory of CA certificates named *.crt."""
    certs = tmp_path / "certs"
    certs.mkdir(exist_ok=True)
    shutil.copyfile(ca.ca, certs / "ca.crt")
    return certs


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


# -- TLS ---------------------------------------------------------------------------------------
def test_image_push_over_tls_needs_the_ca_bundle(tmp_path: Path, tls_registry: LocalRegistry, ca, capsys,
                                                 store_dir, no_registry_credentials) -> None:
    demo = write_demo(tmp_path / "demo")
    args = ["image", str(demo["webapp"]), "-e", "prod", "-p", "linux-64", "--cache-dir", str(tmp_path / "c")]
    target = f"https://{tls_registry.host}/demo/webapp:tls"
    assert main([*args, "--push", target]) == 1
    err = _one_line_error(capsys)
    assert tls_registry.host in err and "certificate verification failed" in err and "--ca-bundle" in err
    # without a scheme, a loopback registry is spoken to in plain http: the error says to write https://
    assert main([*args, "--push", f"{tls_registry.host}/demo/webapp:tls", "--ca-bundle", str(ca.ca)]) == 1
    err = _one_line_error(capsys)
    assert tls_registry.host in err and f"write https://{tls_registry.host}/" in err

    assert main([*args, "--push", target, "--ca-bundle", str(ca.ca)]) == 0
    digest = capsys.readouterr().out.split()[0]
    info = json.loads(skopeo("inspect", "--cert-dir", str(_cert_dir(tmp_path, ca)),
                             f"docker://{tls_registry.host}/demo/webapp:tls"))
    assert info["Digest"] == digest
    # the CA can come from the pixi config instead of the flag
    config = tmp_path / "pixi-config.toml"
    config.write_text(f'tls-ca-bundle = "{ca.ca}"\n')
    assert main([*args, "--push", f"https://{tls_registry.host}/demo/webapp:again", "-c", str(config)]) == 0


def test_base_image_pulled_from_a_tls_registry(tmp_path: Path, tls_registry: LocalRegistry, ca, capsys,
                                               store_dir, no_registry_credentials) -> None:
    base = simple_image(LayerCache(tmp_path / "base-cache"), FILES)
    push_image(base, f"https://{tls_registry.host}/base/app:1", net=NetConfig(ca_bundle=ca.ca))
    demo = write_demo(tmp_path / "demo")
    store = tmp_path / "store-x"
    out = tmp_path / "image.tar"
    args = ["image", str(demo["webapp"]), "-e", "prod", "-p", "linux-64", "--base",
            f"https://{tls_registry.host}/base/app:1", "--use-cache", str(store), "--oci-dir", str(tmp_path / "l"),
            "--tag", "on-base:1"]
    assert main([*args, "-o", str(out)]) == 1
    err = _one_line_error(capsys)
    assert tls_registry.host in err and "certificate verification failed" in err and "--ca-bundle" in err
    assert not out.exists()
    assert main([*args, "-o", str(out), "--ca-bundle", str(ca.ca)]) == 0
    config = json.loads(skopeo("inspect", "--config", f"oci:{tmp_path / 'l'}:1"))
    assert config["rootfs"]["diff_ids"][:len(base.layers)] == [l.diff_id for l in base.layers]
    # the base's layers are cached under the store the flag names, beside the packages
    for layer in base.layers:
        assert any(p.name == layer.digest.split(":")[1] for p in (store / "oci").rglob("*"))
    assert (store / "blobs").is_dir()


def test_library_pull_without_scheme_from_tls_loopback_names_the_fix(tmp_path: Path, tls_registry, ca,
                                                                    no_registry_credentials) -> None:
    base = simple_image(LayerCache(tmp_path / "c"), FILES)
    push_image(base, f"https://{tls_registry.host}/b/a:1", net=NetConfig(ca_bundle=ca.ca))
    with pytest.raises(BuildError, match=f"write https://{tls_registry.host}/"):
        load_base(f"docker://{tls_registry.host}/b/a:1", "linux-64", LayerCache(tmp_path / "f"), net=FAST)
    pulled = load_base(f"https://{tls_registry.host}/b/a:1", "linux-64", LayerCache(tmp_path / "f"),
                       net=NetConfig(ca_bundle=ca.ca))
    assert [l.digest for l in pulled.layers] == [l.digest for l in base.layers]


# -- transient failures ----------------------------------------------------------------------------
def test_transient_registry_errors_are_retried_and_uploads_restart(tmp_path: Path, registry: LocalRegistry,
                                                                   no_registry_credentials) -> None:
    proxy = AuthProxy(registry.host)
    try:
        image = simple_image(LayerCache(tmp_path / "oci"), FILES)
        layer = image.layers[0].digest
        proxy.add_fault("status", "HEAD", f"/blobs/{layer}", status=503, times=2)
        proxy.add_fault("status", "HEAD", f"/blobs/{image.config_digest}", status=429)
        proxy.add_fault("drop", "PUT", "/blobs/uploads/", times=1)  # one upload's final PUT is lost
        proxy.add_fault("status", "PUT", "/manifests/", status=502)
        digest, stats = push_image(image, f"{proxy.host}/retry/app:1", net=FAST, jobs=1)
        assert digest == image.digest and len(stats.uploaded) == len(image.layers) + 1
        heads = [p for m, p in proxy.requests if m == "HEAD" and layer in p]
        assert len(heads) >= 3  # 503, 503, then the answer (after a 401 for the token, first)
        starts = [p for m, p in proxy.requests if m == "POST" and p.endswith("/blobs/uploads/")]
        assert len(starts) == len(image.layers) + 2  # the dropped upload started again from a new session
        assert sum(1 for m, p in proxy.requests if m == "PUT" and "/manifests/" in p) >= 2
        info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/retry/app:1"))
        assert info["Digest"] == image.digest

        # a blob whose download is cut halfway is resumed (Range) and still verified
        proxy.add_fault("truncate", "GET", f"/blobs/{layer}")
        pulled = load_base(f"{proxy.host}/retry/app:1", "linux-64", LayerCache(tmp_path / "fresh"), net=FAST)
        assert pulled.layers[0].path.read_bytes() == image.layers[0].path.read_bytes()
        resumed = [r for (m, p), r in zip(proxy.requests, proxy.ranges) if m == "GET" and layer in p and r]
        assert resumed and int(resumed[0].removeprefix("bytes=").rstrip("-")) > 0  # went on where it was cut

        # an upload that keeps failing: its own error is reported (not its siblings' being stopped)
        other = simple_image(LayerCache(tmp_path / "oci"), dict(FILES, more={"share/m": b"m" * 3000}))
        new_layer = next(l.digest for l in other.layers if l.digest not in {x.digest for x in image.layers})
        proxy.add_fault("status", "PUT", new_layer.split(":")[1], status=500, times=100)
        with pytest.raises(BuildError) as err:
            push_image(other, f"{proxy.host}/retry/app:2", net=FAST)
        assert f"upload {new_layer}" in str(err.value) and "HTTP 500" in str(err.value)
        assert "gave up after 4 attempts" in str(err.value) and "interrupted" not in str(err.value)

        # persistent trouble: one line naming the registry, the request and the attempts
        proxy.add_fault("status", "GET", "/manifests/", status=503, times=100)
        with pytest.raises(BuildError) as err:
            load_base(f"{proxy.host}/retry/app:1", "linux-64", LayerCache(tmp_path / "fresh2"), net=FAST)
        message = str(err.value)
        assert proxy.host in message and "HTTP 503" in message and "gave up after 4 attempts" in message
        assert "\n" not in message
    finally:
        proxy.stop()


# -- credentials -----------------------------------------------------------------------------------
def test_blob_redirected_to_another_host_gets_no_registry_token(tmp_path: Path, registry: LocalRegistry,
                                                               no_registry_credentials) -> None:
    front = AuthProxy(registry.host)
    cdn = AuthProxy(registry.host, require_auth=False)  # stands in for an object store
    try:
        image = simple_image(LayerCache(tmp_path / "oci"), FILES)
        push_image(image, f"{front.host}/r/app:1", net=FAST)
        front.add_fault("redirect", "GET", "/blobs/", times=100, location=f"http://localhost:{cdn.port}")
        pulled = load_base(f"{front.host}/r/app:1", "linux-64", LayerCache(tmp_path / "fresh"), net=FAST)
        assert [l.digest for l in pulled.layers] == [l.digest for l in image.layers]
        assert any(p for m, p in cdn.requests if m == "GET" and "/blobs/" in p)
        assert all(a is None for a in cdn.authorizations)  # the CDN never saw the registry's token
        assert f"Bearer {AuthProxy.TOKEN}" in front.authorizations
    finally:
        front.stop()
        cdn.stop()


def test_credentials_go_to_a_token_realm_only_over_https_or_on_the_registry_host(
        tmp_path: Path, registry: LocalRegistry, no_registry_credentials, monkeypatch, caplog) -> None:
    monkeypatch.setenv("PIXIBUILD_REGISTRY_USERNAME", "robot")
    monkeypatch.setenv("PIXIBUILD_REGISTRY_PASSWORD", "pw-SECRET-1")
    image = simple_image(LayerCache(tmp_path / "oci"), FILES)
    basic = "Basic " + base64.b64encode(b"robot:pw-SECRET-1").decode()
    same = AuthProxy(registry.host, token_credentials=("robot", "pw-SECRET-1"))
    try:  # realm on the registry's own host: the credentials are sent and a token issued
        push_image(image, f"{same.host}/c/app:1", net=FAST)
        assert same.token_authorizations and set(same.token_authorizations) == {basic}
    finally:
        same.stop()
    # realm on another host over plain http: an anonymous token is asked for instead
    probe = AuthProxy(registry.host)
    elsewhere = AuthProxy(registry.host, realm_host=f"localhost:{probe.port}")
    try:
        push_image(image, f"{elsewhere.host}/c/app:2", net=FAST)
        assert probe.token_requests and set(probe.token_authorizations) == {None}
        assert "anonymous token" in caplog.text and "pw-SECRET-1" not in caplog.text
    finally:
        probe.stop()
        elsewhere.stop()
    # refused credentials: one line, no secret
    wrong = AuthProxy(registry.host, token_credentials=("robot", "other"))
    try:
        with pytest.raises(BuildError) as err:
            push_image(image, f"{wrong.host}/c/app:3", net=FAST)
        assert "credentials were refused" in str(err.value) and "pw-SECRET-1" not in str(err.value)
        assert base64.b64encode(b"robot:pw-SECRET-1").decode() not in str(err.value)
    finally:
        wrong.stop()


def test_registry_credentials_come_from_the_first_source_that_has_them(tmp_path: Path, monkeypatch,
                                                                       no_registry_credentials) -> None:
    host = "registry.example:5000"
    docker = tmp_path / "docker"
    docker.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps({"registry.example": {"BasicHTTP": {"username": "rattler", "password": "r"}},
                                     "tokens.example": {"BearerToken": "tok"},
                                     "conda.example": {"CondaToken": "c"}}))
    netrc = tmp_path / "netrc"
    netrc.write_text("machine netrc.example login n password np\n")
    auth = AuthStore.load(auth_file, netrc_file=netrc)

    def who(registry: str = host, **kw):
        cred = registry_credential(registry, auth=auth, **kw)
        return None if cred is None else (cred.kind, cred.username or cred.token)

    assert who() == ("basic", "rattler")  # the auth file's entry for the host (without the port)
    assert who("tokens.example") == ("bearer", "tok")
    assert who("conda.example") is None  # a conda token means nothing to a registry
    assert who("netrc.example") == ("basic", "n")
    (docker / "config.json").write_text(json.dumps({"auths": {
        f"https://{host}": {"auth": base64.b64encode(b"dock:er").decode()}}}))
    assert who() == ("basic", "dock")
    monkeypatch.setenv("PIXIBUILD_REGISTRY_USERNAME", "envuser")
    monkeypatch.setenv("PIXIBUILD_REGISTRY_PASSWORD", "envpw")
    assert who() == ("basic", "envuser")
    assert who(username="explicit", password="x") == ("basic", "explicit")
    monkeypatch.delenv("PIXIBUILD_REGISTRY_USERNAME")
    (docker / "config.json").write_text(json.dumps({"auths": {host: {"auth": "not base64 SECRETVALUE"}}}))
    with pytest.raises(InputError) as err:
        who()
    assert f"auths.{host}" in str(err.value) and "config.json" in str(err.value)
    assert "SECRETVALUE" not in str(err.value)


def test_references_may_name_the_scheme(no_registry_credentials) -> None:
    ref = parse_reference("https://127.0.0.1:5000/team/app:1")
    assert (ref.scheme, ref.registry, ref.repository, ref.tag) == ("https", "127.0.0.1:5000", "team/app", "1")
    assert str(ref) == "127.0.0.1:5000/team/app:1"  # the scheme is transport, not the image's name
    assert parse_reference("http://myhost/app").registry == "myhost"
    assert parse_reference("docker://127.0.0.1:5000/a:1").scheme is None
    with pytest.raises(InputError):
        parse_reference("https://just-a-host")
    assert RegistryClient("127.0.0.1:5000", FAST, auth=AuthStore()).base == "http://127.0.0.1:5000"
    assert RegistryClient("localhost:5000", FAST, auth=AuthStore()).base == "http://localhost:5000"
    assert RegistryClient("ghcr.io", FAST, auth=AuthStore()).base == "https://ghcr.io"
    assert RegistryClient("127.0.0.1:5000", FAST, auth=AuthStore(), scheme="https").base == "https://127.0.0.1:5000"
