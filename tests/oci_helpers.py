"""Helpers for the image tests: a tiny busybox base built from Debian's static busybox, a local
docker-registry on a free port, and wrappers around skopeo/umoci."""

from __future__ import annotations

import json
import platform as host_platform
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import require_tool

from pixibuild.oci.assemble import BaseImage, LayerSpec, assemble_image, build_layers
from pixibuild.files.digest import canonical_json
from pixibuild.oci.config import ImageSettings
from pixibuild.oci.layer import LayerCache
from pixibuild.oci.layout import Image

BUSYBOX = Path("/bin/busybox")


def require_busybox() -> Path:
    if not BUSYBOX.exists():
        require_tool("busybox")  # skips locally, fails in CI
    return BUSYBOX


def busybox_base(cache: LayerCache) -> BaseImage:
    """A one-layer base: /bin/busybox plus sh/env/cat/ls symlinks, /tmp, /etc/passwd."""
    busybox = require_busybox()

    def populate(d: Path) -> None:
        (d / "bin").mkdir()
        shutil.copyfile(busybox, d / "bin" / "busybox")
        (d / "bin" / "busybox").chmod(0o755)
        for name in ("sh", "env", "cat", "ls", "echo", "test"):
            (d / "bin" / name).symlink_to("busybox")
        (d / "tmp").mkdir()
        (d / "etc").mkdir()
        (d / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")

    [(layer, hist)] = build_layers([LayerSpec("test-busybox-base", populate, created_by="busybox base")], cache)
    config = {"architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
              "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
              "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
              "history": [{"created": "1970-01-01T00:00:00Z", "created_by": hist.created_by}]}
    return BaseImage("busybox-test", config, (layer,))


def file_layers(cache: LayerCache, files: dict[str, dict[str, bytes]], mount: str = "app/.pixi/envs/prod") -> list:
    """One layer per entry: name → {relative path: content}."""
    def populator(content: dict[str, bytes]):
        def populate(d: Path) -> None:
            for rel, data in content.items():
                (d / rel).parent.mkdir(parents=True, exist_ok=True)
                (d / rel).write_bytes(data)
                if rel.startswith("bin/"):
                    (d / rel).chmod(0o755)
        return populate
    specs = [LayerSpec(f"test:{name}:{canonical_json(sorted((k, v.hex()) for k, v in content.items())).decode()}",
                       populator(content), mount=mount, created_by=f"package {name}")
             for name, content in files.items()]
    return build_layers(specs, cache)


def simple_image(cache: LayerCache, files: dict[str, dict[str, bytes]], base: BaseImage | None = None,
                 **settings) -> Image:
    layers = file_layers(cache, files)
    kwargs = dict(env={"PATH": "/app/.pixi/envs/prod/bin:/bin"}, cmd=["/bin/sh"], working_dir="/app")
    kwargs.update(settings)
    return assemble_image(platform="linux-64", layers=layers, settings=ImageSettings(**kwargs),
                          base=base or busybox_base(cache))


def skopeo(*args: str) -> str:
    exe = require_tool("skopeo")
    out = subprocess.run([exe, "--insecure-policy", *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def umoci_unpack(layout: Path, tag: str, bundle: Path) -> subprocess.CompletedProcess:
    exe = require_tool("umoci")
    return subprocess.run([exe, "unpack", "--image", f"{layout}:{tag}", str(bundle)], capture_output=True, text=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRegistry:
    """The Debian docker-registry on 127.0.0.1:<free port> with a throwaway config and storage.
    With `tls` (a `support.tls.TestCA`), it serves HTTPS with a certificate that CA signed."""

    def __init__(self, root: Path, tls=None):
        self.exe = require_tool("docker-registry")
        self.root = root
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.scheme = "https" if tls is not None else "http"
        self.log_path = root / "registry.log"
        root.mkdir(parents=True, exist_ok=True)
        config = root / "config.yml"
        tls_config = f", tls: {{certificate: {tls.cert}, key: {tls.key}}}" if tls is not None else ""
        config.write_text(
            "version: 0.1\n"
            "log: {level: warn}\n"
            f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: {self.host}{tls_config}}}\n")
        context = ssl.create_default_context(cafile=str(tls.ca)) if tls is not None else None
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([self.exe, "serve", str(config)], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while True:
            try:
                urllib.request.urlopen(f"{self.scheme}://{self.host}/v2/", timeout=1, context=context).read()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"docker-registry did not start: {self.log_path.read_text()[-2000:]}")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class AuthProxy:
    """A tiny HTTP proxy in front of a registry that demands a Bearer token (issued by its own
    /token endpoint) and records every request, so tests can count what a push sent.

    `realm_host` names the token endpoint's host in the challenge (default: the Host the client used);
    `token_credentials` makes the token endpoint demand Basic credentials. `add_fault` injects failures
    (a status, a dropped connection, a truncated body, a redirect) for requests matching a method and path."""

    TOKEN = "test-token-123"

    def __init__(self, upstream: str, *, require_auth: bool = True, realm_host: str | None = None,
                 token_credentials: tuple[str, str] | None = None):
        import base64
        import http.client
        import http.server
        import threading

        self.upstream = upstream
        self.requests: list[tuple[str, str]] = []
        self.authorizations: list[str | None] = []  # the Authorization header of each entry of `requests`
        self.ranges: list[str | None] = []  # the Range header of each entry of `requests`
        self.token_requests: list[str] = []
        self.token_authorizations: list[str | None] = []
        self.faults: list[dict] = []
        self._lock = threading.Lock()
        proxy = self
        expected_basic = ("Basic " + base64.b64encode(":".join(token_credentials).encode()).decode()
                          if token_credentials else None)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                body = self._body()
                head = self.command == "HEAD"
                if self.path.startswith("/token"):
                    proxy.token_requests.append(self.path)
                    proxy.token_authorizations.append(self.headers.get("Authorization"))
                    if expected_basic and self.headers.get("Authorization") != expected_basic:
                        self._reply(401, {"Content-Type": "application/json"}, b'{"errors":[]}')
                        return
                    self._reply(200, {"Content-Type": "application/json"},
                                json.dumps({"token": AuthProxy.TOKEN}).encode())
                    return
                proxy.requests.append((self.command, self.path))
                proxy.authorizations.append(self.headers.get("Authorization"))
                proxy.ranges.append(self.headers.get("Range"))
                if require_auth and self.headers.get("Authorization") != f"Bearer {AuthProxy.TOKEN}":
                    realm = f"http://{realm_host or self.headers['Host']}/token"
                    self._reply(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="test"',
                                      "Content-Type": "application/json"}, b'{"errors":[]}', head=head)
                    return
                fault = proxy._take_fault(self.command, self.path)
                kind = fault["kind"] if fault else None
                if kind == "status":
                    self._reply(fault["status"], {"Content-Type": "application/json"}, b'{"errors":[]}', head=head)
                    return
                if kind == "drop":
                    self.close_connection = True
                    return
                if kind == "redirect":
                    self._reply(307, {"Location": fault["location"] + self.path}, b"", head=head)
                    return
                if kind == "stall":  # a registry that hangs: answer (if still connected) only after `delay` s
                    time.sleep(fault["delay"])
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("authorization", "transfer-encoding", "content-length")}
                headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                out = {k: v.replace(f"http://{proxy.upstream}", f"http://{self.headers['Host']}")
                       for k, v in resp.getheaders()
                       if k.lower() not in ("transfer-encoding", "connection", "content-length")}
                conn.close()
                if kind == "truncate" and len(data) > 1:  # announce it all, send half, hang up
                    self.send_response(resp.status)
                    for k, v in out.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[:len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self._reply(resp.status, out, data, head=head, length=resp.getheader("Content-Length"))

            def _reply(self, status: int, headers: dict, data: bytes, head: bool = False, length=None) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(length if head and length else len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add_fault(self, kind: str, method: str, path_contains: str, *, times: int = 1, status: int = 503,
                  location: str = "", delay: float = 0.0) -> None:
        """`kind`: "status" (answer `status`), "drop" (hang up without answering), "truncate" (send half
        the body), "redirect" (307 to `location` + the path), "stall" (wait `delay` s before answering).
        `times` matching requests are affected."""
        with self._lock:
            self.faults.append({"kind": kind, "method": method, "contains": path_contains, "times": times,
                                "status": status, "location": location, "delay": delay})

    def _take_fault(self, method: str, path: str) -> dict | None:
        with self._lock:
            for fault in self.faults:
                if fault["times"] > 0 and fault["method"] == method and fault["contains"] in path:
                    fault["times"] -= 1
                    return fault
        return None

    def writes(self) -> list[tuple[str, str]]:
        """Every request that could change the registry (PUT, POST, PATCH, DELETE)."""
        return [(m, p) for m, p in self.requests if m in ("PUT", "POST", "PATCH", "DELETE")]

    def uploads(self) -> list[tuple[str, str]]:
        """Requests that carry blob data: PATCH/PUT to an upload session (final PUT counts once)."""
        return [(m, p) for m, p in self.requests if m == "PUT" and "/blobs/uploads/" in p]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def glibc_busybox_base(cache: LayerCache) -> BaseImage:
    """busybox + the host's glibc (a dynamically linked conda binary needs a libc, like any distro base)."""
    busybox = require_busybox()
    if host_platform.machine() != "x86_64":
        pytest.skip("the real corpus packages are linux-64")
    libs = [Path("/lib64/ld-linux-x86-64.so.2")] + [Path("/lib/x86_64-linux-gnu") / n for n in
                                                     ("libc.so.6", "libdl.so.2", "libm.so.6", "libpthread.so.0")]

    def populate(d: Path) -> None:
        (d / "bin").mkdir()
        shutil.copyfile(busybox, d / "bin" / "busybox")
        (d / "bin" / "busybox").chmod(0o755)
        for name in ("sh", "env", "cat", "ls", "echo", "head", "which"):
            (d / "bin" / name).symlink_to("busybox")
        for lib in libs:
            if lib.exists():
                (d / lib.relative_to("/")).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(lib.resolve(), d / lib.relative_to("/"))
                (d / lib.relative_to("/")).chmod(0o755)
        for name in ("tmp", "proc", "dev", "etc"):
            (d / name).mkdir()
        (d / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")

    [(layer, hist)] = build_layers([LayerSpec("test-glibc-busybox-base", populate, created_by="glibc+busybox")], cache)
    config = {"architecture": "amd64", "os": "linux", "config": {"Env": ["PATH=/bin"]},
              "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]}, "history": [{"created_by": hist.created_by}]}
    return BaseImage("glibc-busybox", config, (layer,))


def run_in_rootfs(bundle: Path, command: list[str] | None = None) -> str:
    """Run the image's process (Entrypoint + Cmd, Env, WorkingDir from umoci's runtime config)."""
    runtime = json.loads((bundle / "config.json").read_text())
    args = runtime["process"]["args"] if command is None else runtime["process"]["args"][:1] + command
    env = dict(item.split("=", 1) for item in runtime["process"]["env"])
    rootfs = bundle / "rootfs"
    bwrap = shutil.which("bwrap")
    if bwrap:
        cmd = [bwrap, "--bind", str(rootfs), "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
               "--unshare-all", "--clearenv", "--chdir", runtime["process"]["cwd"]]
        for k, v in env.items():
            cmd += ["--setenv", k, v]
        res = subprocess.run(cmd + args, capture_output=True, text=True)
        if not res.stderr.startswith("bwrap:"):  # bwrap itself could not set up (no user namespaces...)
            assert res.returncode == 0, res.stderr
            return res.stdout
    chroot = require_tool("chroot")
    res = subprocess.run([chroot, str(rootfs), "/bin/sh", "-c", f'cd {runtime["process"]["cwd"]} && exec "$@"',
                          "sh", *args], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    return res.stdout




def unpack_image(layout: Path, tag: str, bundle: Path) -> Path:
    """umoci unpack (as root: owners kept), the bundle opened to other users so a test can run
    the rootfs as a non-root uid."""
    res = umoci_unpack(layout, tag, bundle)
    assert res.returncode == 0, res.stderr
    bundle.chmod(0o755)
    return bundle


def run_as(bundle: Path, uid: int, gid: int, command: list[str] | None = None,
           entrypoint_words: int = 1) -> subprocess.CompletedProcess:
    """Run the image's process (or `command` after its entrypoint's first `entrypoint_words` words)
    under bwrap as `uid:gid` — a real unprivileged user on the host, so file ownership in the rootfs
    is what decides, as in a container."""
    bwrap = require_tool("bwrap")
    runtime = json.loads((bundle / "config.json").read_text())
    args = runtime["process"]["args"]
    if command is not None:
        args = args[:entrypoint_words] + command
    env = dict(item.split("=", 1) for item in runtime["process"]["env"])
    cmd = [bwrap, "--bind", str(bundle / "rootfs"), "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
           "--unshare-all", "--clearenv", "--chdir", runtime["process"]["cwd"]]
    for k, v in env.items():
        cmd += ["--setenv", k, v]
    return subprocess.run(cmd + args, capture_output=True, text=True, user=uid, group=gid, extra_groups=[])
