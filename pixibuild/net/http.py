"""The one HTTP stack every network client uses: the channel fetcher and the registry client.

Both need the same things, so they are decided here once:

- `make_client`: an httpx.Client from a `NetConfig` — TLS verification with the configured CA bundle
  (`--ca-bundle`, pixi's `tls-ca-bundle`, `$PIXIBUILD_CA_BUNDLE`; off only with the explicit
  `--tls-no-verify`), connect/read timeouts, a connection limit, a User-Agent, proxies from pixi's
  `[proxy-config]` or else from the standard environment variables (`HTTPS_PROXY`, `HTTP_PROXY`,
  `ALL_PROXY`, `NO_PROXY`: httpx's `trust_env`), and *no* automatic redirects.
- `send`: redirects followed by hand, so credentials are chosen again for every host (a redirect to a CDN
  or an object store never carries them) and an https → http downgrade is refused.
- `RetryPolicy`: how often and how long to wait on transient failures (connection errors, 5xx, 429):
  `retries` extra attempts, exponential backoff from `backoff` capped at `max_backoff`, ±25 % jitter so
  parallel downloads do not retry in lock-step.
- `connect_problem`: why a connection could not be made, in words a user can act on, and whether waiting
  can help (a host name that does not resolve will not resolve in 8 seconds either).
"""

from __future__ import annotations

import errno
import logging
import random
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, TypeVar
from urllib.parse import urljoin, urlsplit


from pixibuild import __version__
from pixibuild.net.auth import redact_url
from pixibuild.net.config import NetConfig

if TYPE_CHECKING:  # httpx is imported by the first client made: a warm build never needs it
    import httpx

log = logging.getLogger(__name__)
# httpx logs every request URL at INFO; a URL may carry a conda token (`/t/<token>/`) and a redirect target
# a signed query. Our own messages are redacted, theirs are not: keep them quiet.
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)

MAX_REDIRECTS = 10
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
USER_AGENT = f"pixibuild/{__version__}"
T = TypeVar("T")

Authenticate = Callable[[str], "tuple[str, dict[str, str]]"]
"""URL → (the URL to request, headers to add): where credentials are chosen, once per hop."""


def make_client(config: NetConfig, *, connections: int | None = None) -> httpx.Client:
    """The client `config` describes. `connections` bounds the pool (default: the download concurrency).

    `Accept-Encoding: identity`: we hash and store the bytes the server holds, never a re-encoding of them.
    """
    import httpx

    size = max(1, connections or config.downloads)
    verify = config.ssl_verify()
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    mounts = None
    if config.proxies and "*" not in config.non_proxy_hosts:
        # The config's proxies replace the environment's (trust_env off: its NO_PROXY would otherwise
        # outrank them); hosts in non-proxy-hosts get the client's own direct transport (None).
        mounts = {f"{scheme}://": httpx.HTTPTransport(proxy=url, verify=verify, limits=limits)
                  for scheme, url in config.proxies.items()}
        mounts.update({no_proxy_pattern(host): None for host in config.non_proxy_hosts})
    return httpx.Client(
        verify=verify, follow_redirects=False, trust_env=not config.proxies, mounts=mounts,
        timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout), limits=limits,
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})


def no_proxy_pattern(host: str) -> str:
    """An httpx mount pattern for a `non-proxy-hosts` entry, read as `NO_PROXY` is (httpx's rules): an IP
    address or `localhost` exactly, `[v6]`, a `scheme://host` as given, any other name as a suffix
    (`example.com` and `.example.com` cover `api.example.com`)."""
    import ipaddress

    if "://" in host:
        return host
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    if address is not None:
        return f"all://[{address}]" if address.version == 6 else f"all://{address}"
    if host.lower() == "localhost":
        return f"all://{host}"
    return f"all://*{host.removeprefix('*')}"


class RedirectError(Exception):
    """A redirect we will not follow (a downgrade to plain http, or too many hops). Message is redacted."""


def send(client: httpx.Client, method: str, url: str, *, authenticate: Authenticate | None = None,
         headers: dict[str, str] | None = None, content: Callable[[], Any] | None = None,
         stream: bool = False, max_redirects: int = MAX_REDIRECTS) -> httpx.Response:
    """`method url`, following redirects by hand; the final (non-redirect) response.

    `authenticate(url)` is asked again at every hop, so each host gets only its own credentials.
    `content` is a factory, so a 307/308 can resend the body; 303 (and 301/302 after a POST) turn into a
    GET without one, as browsers and httpx do. Transport errors are raised as httpx raises them.
    """
    shown = redact_url(url)
    for _hop in range(max_redirects + 1):
        request_url, auth_headers = authenticate(url) if authenticate else (url, {})
        request = client.build_request(method, request_url, headers={**(headers or {}), **auth_headers},
                                       content=content() if content is not None else None)
        response = client.send(request, stream=stream)
        location = response.headers.get("location")
        if response.status_code not in REDIRECT_STATUSES or not location:
            return response
        response.close()
        target = urljoin(request_url, location)
        if urlsplit(url).scheme == "https" and urlsplit(target).scheme != "https":
            raise RedirectError(f"{shown} redirects from https to {redact_url(target)}; refused")
        log.debug("%s: redirected to %s", shown, redact_url(target))
        if response.status_code == 303 and method != "HEAD" or \
                response.status_code in (301, 302) and method == "POST":
            method, content = "GET", None
        url = target
    raise RedirectError(f"more than {max_redirects} redirects from {shown}")


def is_transient_status(status: int) -> bool:
    """Server-side trouble worth waiting out: 5xx and 429 (rate limited)."""
    return status >= 500 or status == 429


def certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind a connection error, if that is what it is."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


@dataclass(frozen=True)
class ConnectProblem:
    """A connection that could not be made: to which host, why (a phrase for the user), whether a retry helps."""

    host: str
    reason: str
    retry_helps: bool

    def __str__(self) -> str:
        return f"{self.host}: {self.reason}"


_NO_SUCH_NAME = {getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA", "EAI_FAIL", "EAI_ADDRFAMILY")
                 if hasattr(socket, name)}
"""getaddrinfo answers that stay the same on a retry: the name does not exist (NXDOMAIN) or has no address.
EAI_AGAIN ("temporary failure in name resolution", e.g. no DNS server reachable right now) is retried."""


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def connect_problem(exc: BaseException, url: str) -> ConnectProblem | None:
    """What kept a request to `url` from connecting (None if it did connect, or failed otherwise)."""
    import httpx  # already imported: `exc` came from a request

    parts = urlsplit(url)
    host = parts.hostname or parts.netloc
    where = f"{host}:{parts.port}" if parts.port else host
    for cause in _chain(exc):
        if isinstance(cause, socket.gaierror):
            if cause.errno in _NO_SUCH_NAME:
                return ConnectProblem(host, f"the host name cannot be resolved ({cause.strerror})", False)
            return ConnectProblem(host, f"the host name could not be resolved now ({cause.strerror})", True)
        if isinstance(cause, ConnectionRefusedError) or getattr(cause, "errno", None) == errno.ECONNREFUSED:
            return ConnectProblem(host, f"the connection to {where} was refused (nothing listens there)", True)
        if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return ConnectProblem(host, f"{where} cannot be reached ({cause.strerror})", True)
        if isinstance(cause, httpx.ConnectTimeout):
            return ConnectProblem(host, f"connecting to {where} timed out", True)
    return None


class Transient(Exception):
    """A failure worth another attempt: a connection error, a 5xx/429, a truncated body."""


class GaveUp(Exception):
    """Every attempt failed transiently; `last` is the final failure, `attempts` how many were made."""

    def __init__(self, last: Transient, attempts: int):
        super().__init__(str(last))
        self.last, self.attempts = last, attempts


class Interrupted(Exception):
    """The wait before a retry was cut short (Ctrl-C in another thread, a stop event)."""


_NEVER = threading.Event()


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried: the same for packages, manifests and blobs."""

    retries: int = 4
    backoff: float = 0.5
    max_backoff: float = 8.0
    jitter: float = 0.25

    @classmethod
    def from_config(cls, config: NetConfig) -> "RetryPolicy":
        return cls(retries=config.retries, backoff=config.backoff, max_backoff=config.max_backoff)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        base = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return base * (1 - self.jitter + 2 * self.jitter * random.random())

    def run(self, attempt: Callable[[], T], *, on_retry: Callable[[Transient, int, float], None] | None = None,
            wait: Callable[[float], bool] = _NEVER.wait) -> T:
        """`attempt()` until it returns; each `Transient` it raises costs one retry.

        `on_retry(failure, retry_number, delay)` is told before each wait; `wait(delay)` returning True
        means stop (raises `Interrupted`). Raises `GaveUp` after `retries` extra attempts.
        """
        failures = 0
        while True:
            try:
                return attempt()
            except Transient as exc:
                failures += 1
                self.pause(exc, failures, on_retry=on_retry, wait=wait)

    def pause(self, failure: Transient, failures: int, *,
              on_retry: Callable[[Transient, int, float], None] | None = None,
              wait: Callable[[float], bool] = _NEVER.wait) -> None:
        """After the `failures`-th transient failure: wait before the next attempt, or raise `GaveUp` when
        the retries are spent. For loops `run` cannot express (a generator resuming a stream)."""
        if failures > self.retries:
            raise GaveUp(failure, failures) from None
        delay = self.delay(failures)
        if on_retry is not None:
            on_retry(failure, failures, delay)
        if wait(delay):
            raise Interrupted() from None
