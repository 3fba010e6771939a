"""A real threaded HTTP server on 127.0.0.1 serving a directory, with fault injection and a request log.

Tests and benchmarks use it instead of a network channel: every fault a CDN or proxy can produce is one
`Fault` away (truncated body, 5xx then success, wrong bytes, slow stream, redirect to another host, body
larger than announced, dropped connection), authentication can be required (bearer, basic, conda
token), Range support can be switched off, and `requests`/`count()` tell what the client really asked.
"""

from __future__ import annotations

import base64
import email.utils
import fnmatch
import hashlib
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

FaultKind = Literal["status", "truncate", "corrupt", "slow", "stall", "redirect", "oversize", "drop"]


@dataclass
class Fault:
    """Misbehave on requests whose path matches `path` (fnmatch), for the first `times` (None: always).

    kind: "status" answers `status`; "truncate" announces the full length but sends `at` bytes and closes;
    "corrupt" flips the byte at offset `at`; "slow" streams at `rate` bytes/s; "stall" sends the headers then
    waits `delay` seconds before the body; "redirect" answers 302 to
    `location` + path; "oversize" appends `extra` junk bytes without a Content-Length (close-delimited);
    "drop" closes the connection without answering.
    """

    kind: FaultKind
    path: str = "*"
    times: int | None = None
    status: int = 500
    at: int = 0
    rate: int = 0
    location: str = ""
    extra: int = 0
    delay: float = 0.0
    hits: int = 0


@dataclass
class RequestRecord:
    method: str
    path: str
    """Request path as sent (including a `/t/<token>` prefix if any) — tests may look for secrets here."""
    headers: dict[str, str]
    status: int
    range: str | None
    sent: int
    done: bool = False
    """The body was fully handled (sent, cut by a fault, or the client hung up)."""


@dataclass
class _State:
    root: Path
    ranges: bool = True
    auth: tuple[str, ...] | None = None
    faults: list[Fault] = field(default_factory=list)
    requests: list[RequestRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stalls
    server_version = "pixibuild-test"
    state: _State  # set on the subclass per server

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    # -- helpers -------------------------------------------------------------------------------
    def _record(self, status: int, sent: int, done: bool = True) -> RequestRecord:
        """Log the request as soon as its status is known (`sent` is updated when the body is done)."""
        record = RequestRecord(self.command, self.path, dict(self.headers.items()), status,
                               self.headers.get("Range"), sent, done)
        with self.state.lock:
            self.state.requests.append(record)
        return record

    def _simple(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self._record(status, len(body))
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _fault(self, path: str) -> Fault | None:
        with self.state.lock:
            for fault in self.state.faults:
                if fnmatch.fnmatch(path, fault.path) and (fault.times is None or fault.hits < fault.times):
                    fault.hits += 1
                    return fault
        return None

    def _authorized(self, path: str) -> tuple[bool, str]:
        auth = self.state.auth
        if auth is None:
            return True, path
        kind = auth[0]
        if kind == "conda":
            prefix = f"/t/{auth[1]}/"
            return (True, path[len(prefix) - 1:]) if path.startswith(prefix) else (False, path)
        header = self.headers.get("Authorization", "")
        if kind == "bearer":
            return header == f"Bearer {auth[1]}", path
        expected = base64.b64encode(f"{auth[1]}:{auth[2]}".encode()).decode()
        return header == f"Basic {expected}", path

    def _serve(self, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        ok, path = self._authorized(path)
        if not ok:
            self._simple(401, b"unauthorized", {"WWW-Authenticate": 'Basic realm="test"'})
            return
        fault = self._fault(path)
        if fault and fault.kind == "status":
            self._simple(fault.status, f"injected {fault.status}".encode())
            return
        if fault and fault.kind == "redirect":
            self._simple(302, b"", {"Location": fault.location.rstrip("/") + self.path})
            return
        if fault and fault.kind == "drop":
            self.close_connection = True
            self._record(0, 0)
            return
        root = self.state.root.resolve()
        target = (root / path.lstrip("/")).resolve()
        if target.is_dir() and (target / "index.html").is_file():  # a PEP 503 simple index page
            target = target / "index.html"
        if root not in target.parents or not target.is_file():
            self._simple(404, b"not found")
            return
        self._send_file(target, head, fault)

    def _send_file(self, target: Path, head: bool, fault: Fault | None) -> None:
        st = target.stat()
        size = st.st_size
        etag = '"' + hashlib.sha1(f"{size}-{st.st_mtime_ns}".encode()).hexdigest()[:16] + '"'
        start, end, status = 0, size, 200
        range_header = self.headers.get("Range")
        if self.state.ranges and range_header and range_header.startswith("bytes="):
            spec = range_header[6:].split(",")[0].strip()
            first, _, last = spec.partition("-")
            if first.isdigit():
                start = int(first)
                end = min(size, int(last) + 1) if last.isdigit() else size
                if start >= size:
                    self._simple(416, b"", {"Content-Range": f"bytes */{size}"})
                    return
                status = 206
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if target.suffix == ".html" else "application/octet-stream")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))
        if self.state.ranges:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        oversize = fault is not None and fault.kind == "oversize"
        if oversize:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(end - start))
        self.end_headers()
        record = self._record(status, 0, done=head)
        if not head:
            sent = self._stream(target, start, end, fault)
            with self.state.lock:
                record.sent = sent
                record.done = True

    def _stream(self, target: Path, start: int, end: int, fault: Fault | None) -> int:
        kind = fault.kind if fault else None
        chunk_size = 64 * 1024
        if kind == "slow" and fault.rate:
            chunk_size = max(1, min(chunk_size, fault.rate // 20))
        sent = 0
        pos = start
        t0 = time.monotonic()
        if kind == "stall":
            time.sleep(fault.delay)
        try:
            with open(target, "rb") as f:
                f.seek(start)
                while pos < end:
                    data = f.read(min(chunk_size, end - pos))
                    if not data:
                        break
                    if kind == "truncate" and pos + len(data) > fault.at:
                        data = data[: max(0, fault.at - pos)]
                        self.wfile.write(data)
                        sent += len(data)
                        self.close_connection = True
                        return sent
                    if kind == "corrupt" and pos <= fault.at < pos + len(data):
                        i = fault.at - pos
                        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
                    self.wfile.write(data)
                    sent += len(data)
                    pos += len(data)
                    if kind == "slow" and fault.rate:
                        ahead = sent / fault.rate - (time.monotonic() - t0)
                        if ahead > 0:
                            time.sleep(ahead)
            if kind == "oversize":
                junk = b"\0" * fault.extra
                self.wfile.write(junk)
                sent += len(junk)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        return sent


class TestServer:
    """`with TestServer(directory) as srv: srv.url_for("linux-64/x.conda")` — a real HTTP server."""

    __test__ = False  # not a pytest test class

    def __init__(self, root: str | Path, *, ranges: bool = True, host: str = "127.0.0.1",
                 tls: tuple[Path, Path] | None = None, url_host: str | None = None, port: int = 0):
        """`tls=(certfile, keyfile)` serves HTTPS; `url_host` is the host name put in URLs (e.g.
        "localhost" to look like a different host than 127.0.0.1 while listening on the same address);
        `port` reuses a port (a server stopped and started again: the same URLs)."""
        self.state = _State(Path(root), ranges=ranges)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self.scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
            self.scheme = "https"
        self.host = url_host or host
        self.port = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "TestServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name=f"test-http-{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> "TestServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- configuration -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def url_for(self, relpath: str | Path) -> str:
        return f"{self.url}/{str(relpath).lstrip('/')}"

    @property
    def ranges(self) -> bool:
        return self.state.ranges

    @ranges.setter
    def ranges(self, value: bool) -> None:
        self.state.ranges = value

    def add_fault(self, kind: FaultKind, path: str = "*", **kw) -> Fault:
        fault = Fault(kind, path, **kw)
        with self.state.lock:
            self.state.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.state.lock:
            self.state.faults.clear()

    def require_bearer(self, token: str) -> None:
        self.state.auth = ("bearer", token)

    def require_basic(self, username: str, password: str) -> None:
        self.state.auth = ("basic", username, password)

    def require_conda_token(self, token: str) -> None:
        self.state.auth = ("conda", token)

    def no_auth(self) -> None:
        self.state.auth = None

    # -- observation ---------------------------------------------------------------------------
    @property
    def requests(self) -> list[RequestRecord]:
        with self.state.lock:
            return list(self.state.requests)

    def count(self, suffix: str = "", *, method: str = "GET", status: tuple[int, ...] | None = None) -> int:
        """Requests whose path ends with `suffix` (and whose status is in `status`, when given)."""
        return sum(1 for r in self.requests if r.method == method and urlsplit(r.path).path.endswith(suffix)
                   and (status is None or r.status in status))

    def reset_log(self) -> None:
        with self.state.lock:
            self.state.requests.clear()


def self_signed_cert(directory: Path, host: str = "localhost") -> tuple[Path, Path]:
    """A throw-away certificate/key pair for `host` (and 127.0.0.1), made with the openssl CLI."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host},IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key
