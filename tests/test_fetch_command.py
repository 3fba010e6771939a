"""`pixibuild fetch` end to end: a project with a v6 lock whose URLs point at a local server."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from fetchkit import assert_store_sound, blob_files, make_channel, records_for, spec
from pixibuild.cli import main
from pixibuild.conda.records import PypiRecord
from support.http_server import TestServer
from pixibuild.demo.lockwriter import write_lock


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "channel"
    files = make_channel(root, [spec("app", "linux-64", 40_000, 1), spec("armapp", "linux-aarch64", 40_000, 2),
                                spec("shared", "noarch", 30_000, 3)])
    wheels = tmp_path / "pypi"
    wheels.mkdir()
    wheel = wheels / "demo_pkg-1.0-py3-none-any.whl"
    wheel.write_bytes(os.urandom(10_000))
    with TestServer(root) as srv, TestServer(wheels) as pypi:
        records = records_for(files, srv.url, root)
        wheel_rec = PypiRecord("demo-pkg", "1.0", pypi.url_for(wheel.name),
                               sha256=hashlib.sha256(wheel.read_bytes()).hexdigest())
        proj = tmp_path / "proj"
        x86 = [r for r in records if r.subdir != "linux-aarch64"] + [wheel_rec]
        arm = [r for r in records if r.subdir != "linux-64"] + [wheel_rec]
        write_lock(proj / "pixi.lock", {"default": {"linux-64": x86, "linux-aarch64": arm}}, channels=[srv.url])
        (proj / "pixi.toml").write_text(f'[workspace]\nname = "p"\nchannels = ["{srv.url}"]\n'
                                        'platforms = ["linux-64", "linux-aarch64"]\n')
        yield proj, srv, pypi, records, wheel_rec


def test_fetch_command_fetches_both_platforms_once_into_the_store(project, tmp_path, capsys):
    proj, srv, pypi, records, wheel = project
    store = tmp_path / "store"
    code = main(["fetch", str(proj / "pixi.toml"), "--all-platforms", "--cache-dir", str(store), "--config",
                 str(_empty_config(tmp_path))])
    out = capsys.readouterr().out
    assert code == 0
    assert "4 packages" in out and "4 downloaded" in out
    assert {p.name for p in blob_files(store)} == {r.sha256 for r in records} | {wheel.sha256}
    assert srv.count("shared-1.0-0.conda") == 1 and pypi.count(".whl") == 1
    assert_store_sound(store)
    # Again, for one platform: all from the store.
    code = main(["fetch", str(proj), "-p", "linux-aarch64", "--cache-dir", str(store), "--verify-cache",
                 "--config", str(_empty_config(tmp_path))])
    assert code == 0 and "0 downloaded, 3 already there" in capsys.readouterr().out


def _empty_config(tmp_path):
    path = tmp_path / "pixi-config.toml"
    path.write_text("")
    return path


def test_fetch_command_errors_are_one_line_with_exit_codes(project, tmp_path, capsys):
    proj, srv, _pypi, records, _wheel = project
    store = tmp_path / "store"
    cfg = _empty_config(tmp_path)
    assert main(["fetch", str(proj), "-e", "nope", "--cache-dir", str(store), "--config", str(cfg)]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["fetch", str(tmp_path / "missing"), "--config", str(cfg)]) == 2
    srv.add_fault("corrupt", "*app-1.0-0.conda", at=5)
    assert main(["fetch", str(proj), "-p", "linux-64", "--cache-dir", str(store), "--config", str(cfg)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    app = next(r for r in records if r.name == "app")
    assert err[-1].startswith(f"pixibuild: error: {app.dist_name}: sha256 mismatch for {app.url}: expected "
                              f"{app.sha256}, got ")
    assert not (store / "blobs" / "sha256" / app.sha256[:2] / app.sha256).exists()


def test_fetch_command_uses_the_auth_file_and_never_prints_it(project, tmp_path, capsys, caplog):
    proj, srv, _pypi, _records, _wheel = project
    srv.require_bearer("CMD-s3cret")
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"127.0.0.1": {"BearerToken": "CMD-s3cret"}}))
    args = ["-v", "-v", "fetch", str(proj), "-p", "linux-64", "--no-pypi", "--cache-dir", str(tmp_path / "s"),
            "--config", str(_empty_config(tmp_path))]
    assert main(args) == 1
    assert "HTTP 401" in capsys.readouterr().err
    assert main([*args, "--auth-file", str(auth)]) == 0
    captured = capsys.readouterr()
    assert "CMD-s3cret" not in captured.out + captured.err + caplog.text


def test_tls_no_verify_from_a_config_file_is_refused(project, tmp_path, capsys):
    proj = project[0]
    cfg = tmp_path / "insecure.toml"
    cfg.write_text("tls-no-verify = true\n")
    assert main(["fetch", str(proj), "--cache-dir", str(tmp_path / "s"), "--config", str(cfg)]) == 2
    assert "--tls-no-verify" in capsys.readouterr().err
