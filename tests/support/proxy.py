"""A forward HTTP proxy on 127.0.0.1 for tests: it relays absolute-URI GET/HEAD requests (what a client
sends to an `http://` proxy) to their origin and records what it relayed."""

from __future__ import annotations

import http.client
import http.server
import threading
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailers",
              "transfer-encoding", "upgrade", "host"}


class ForwardProxy:
    """`with ForwardProxy() as proxy:` → `proxy.url`, and `proxy.relayed` (the URLs it forwarded)."""

    def __init__(self) -> None:
        self.relayed: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _relay(self, send_body: bool) -> None:
                target = urlsplit(self.path)
                if not target.scheme or not target.hostname:
                    self.send_error(400, "a proxy request names an absolute URL")
                    return
                owner.relayed.append(self.path)
                conn = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                path = target.path + (f"?{target.query}" if target.query else "")
                conn.request(self.command, path or "/", headers=headers)
                response = conn.getresponse()
                body = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send_body:
                    self.wfile.write(body)
                conn.close()

            def do_GET(self) -> None:
                self._relay(True)

            def do_HEAD(self) -> None:
                self._relay(False)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "ForwardProxy":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
