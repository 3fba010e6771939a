"""Secrets: build everything from a channel that needs credentials (a bearer token from the auth
file, and user:password written into the lock's URLs) and scan every output — pack tar, unpacked
prefix, image tar and layer blobs, the store and its metadata, the build dir, all logs — for them."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

from pixibuild.demo.condapkg import PackageSpec, PkgFile, locked_record, write_channel
from support.http_server import TestServer
from pixibuild.demo.lockwriter import write_lock

TOKEN = "tok-3f9a-SECRET-bearer"
PASSWORD = "pw-77c1-SECRET-basic"


def _files(root: Path):
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            yield path


def test_no_output_or_log_contains_a_credential(tmp_path: Path) -> None:
    specs = [PackageSpec("tool", "1.0", "0", subdir="linux-64",
                         files=[PkgFile("bin/tool", b"#!/bin/sh\necho @PREFIX@\n", 0o755, prefix="text")]),
             PackageSpec("data", "1.0", "0", subdir="noarch", noarch="generic", files=[PkgFile("share/d", b"d\n")])]
    write_channel([(s, ".conda") for s in specs], tmp_path / "channel")
    logs = []
    with TestServer(tmp_path / "channel") as server, TestServer(tmp_path / "channel") as basic_server:
        server.require_bearer(TOKEN)
        basic_server.require_basic("user", PASSWORD)
        base = server.url.rstrip("/")
        host = basic_server.url.rstrip("/").split("//", 1)[1]
        records = [locked_record(specs[0], tmp_path / "channel/linux-64/tool-1.0-0.conda",
                                 url=f"{base}/linux-64/tool-1.0-0.conda"),
                   # credentials in the URL itself (some users' locks carry them), for a second server
                   locked_record(specs[1], tmp_path / "channel/noarch/data-1.0-0.conda",
                                 url=f"http://user:{PASSWORD}@{host}/noarch/data-1.0-0.conda")]
        project = tmp_path / "proj"
        project.mkdir()
        (project / "pixi.toml").write_text(f'[workspace]\nname = "sec"\nchannels = ["{base}"]\n'
                                           'platforms = ["linux-64"]\n[dependencies]\ntool = "*"\ndata = "*"\n')
        write_lock(project / "pixi.lock", {"default": {"linux-64": records}}, channels=[base])
        auth = tmp_path / "auth.json"
        auth.write_text(json.dumps({"127.0.0.1": {"BearerToken": TOKEN}}))
        env = dict(os.environ, PIXIBUILD_CACHE_DIR=str(tmp_path / "store"), RATTLER_AUTH_FILE=str(auth))
        out = tmp_path / "out"
        commands = [
            ["-v", "pack", str(project), "-p", "linux-64", "-o", str(out / "env.tar")],
            ["unpack", str(out / "env.tar"), "-o", str(out / "unpacked")],
            ["-vv", "image", str(project), "-p", "linux-64", "-o", str(out / "image.tar"), "--oci-dir", str(out / "oci")],
            ["lock-info", str(project), "-p", "linux-64"],
        ]
        for args in commands:
            proc = subprocess.run([sys.executable, "-m", "pixibuild", *args], capture_output=True, text=True, env=env)
            assert proc.returncode == 0, proc.stderr
            logs.append(proc.stdout + proc.stderr)
        # a failing run (wrong token) must not echo the secret either
        auth.write_text(json.dumps({"127.0.0.1": {"BearerToken": TOKEN + "-wrong"}}))
        fail = subprocess.run([sys.executable, "-m", "pixibuild", "pack", str(project), "-p", "linux-64", "-o",
                               str(out / "x.tar"), "--use-cache", str(tmp_path / "other-store")],
                              capture_output=True, text=True, env=env)
        assert fail.returncode != 0
        logs.append(fail.stdout + fail.stderr)
    for secret in (TOKEN, PASSWORD):
        for text in logs:
            assert secret not in text
        for root in (out, tmp_path / "store", tmp_path / "other-store"):
            for path in _files(root):
                data = path.read_bytes()
                if data[:2] == b"\x1f\x8b":  # image layers are gzipped: scan what they hold
                    data += gzip.decompress(data)
                assert secret.encode() not in data, f"{secret} leaked into {path}"
    assert any(p.read_bytes()[:2] == b"\x1f\x8b" for p in _files(out / "oci")), "no layer blob was scanned"
