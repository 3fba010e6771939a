"""Fetch every package a lock pins into the store, verified, in parallel, at most once per machine.

Downloads stream to a dot-named partial file beside the final blob while sha256 and md5 are computed;
only bytes whose hash matches the lock are renamed into place. Connection errors, 5xx/429 answers and
truncated bodies are retried with exponential backoff, resuming with an HTTP Range request when the
server allows it (also across runs: the partial file survives a crash). A response larger than the size
the lock declares is cut off there. Mirrors are tried in order; credentials are chosen per request host,
so redirects to another host never carry them; every URL in a log or error is redacted. The HTTP client,
the redirect handling and the retry policy are the shared ones of `pixibuild.net.http`.

With a remote cache (`pixibuild.store.remote`), a package missing from the store is first asked of the
cache by its sha256 (one request, verified while it streams), and only then of the channel (mirrors, then
origin); a package that came from a channel (or a local file) is published to a read-write cache.

A host that cannot be reached is one error line for all its packages, saying why (the name does not
resolve — not retried, waiting cannot fix it —, the connection was refused, it timed out) and what to
do: check the network or configure a mirror in pixi's config (`pixibuild.net.config.mirror_hint`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence, Union
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname


from pixibuild.net.auth import AuthStore, redact_url, storage_key
from pixibuild.errors import BuildError, InputError, PixibuildError
from pixibuild.files.progress import Progress
from pixibuild.net.config import NetConfig, mirror_hint
from pixibuild.net.http import (ConnectProblem, GaveUp, Interrupted, RedirectError, RetryPolicy, Transient,
                               connect_problem, is_transient_status, make_client, send)
from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.store.blobs import Hasher, Store, check_md5, check_sha256, compare
from pixibuild.store.lease import hold

if TYPE_CHECKING:
    import httpx

    from pixibuild.store.remote import RemoteCache

log = logging.getLogger(__name__)

Record = Union[CondaRecord, PypiRecord]


@dataclass(frozen=True)
class Wanted:
    """What one record asks for, independent of its kind."""

    label: str
    location: str
    sha256: str | None
    md5: str | None
    size: int | None
    is_path: bool

    @property
    def key(self) -> str:
        """Identity for de-duplication: the content hash when known, else the credential-free URL."""
        return self.sha256 or storage_key(self.location)


def wanted(record: Record) -> Wanted:
    """Normalize a lock record; malformed hashes are input errors naming the package."""
    if isinstance(record, CondaRecord):
        if record.is_source:
            raise InputError("is a source package (built from a recipe), there is no archive to fetch",
                             field=record.dist_name)
        label, location, size = record.dist_name, record.url, record.size
    else:
        if record.editable:
            raise InputError("is an editable install of a local source tree, there is no file to fetch",
                             field=f"{record.name} {record.version} (pypi)")
        label, location, size = f"{record.name} {record.version} (pypi)", record.location, None
    sha256 = check_sha256(record.sha256, what=f"{label}: sha256") if record.sha256 else None
    md5 = check_md5(record.md5, what=f"{label}: md5") if record.md5 else None
    return Wanted(label, location, sha256, md5, size, record.is_path)


def local_path(location: str, base_dir: Path) -> Path | None:
    """The file a `file://` URL or (lock-relative) path names, or None for a network URL."""
    parts = urlsplit(location)
    if parts.scheme == "file":
        return Path(url2pathname(unquote(parts.path)))
    if parts.scheme in ("http", "https"):
        return None
    if len(parts.scheme) > 1:
        raise InputError(f"unsupported URL scheme {parts.scheme!r}", field=redact_url(location))
    path = Path(location)
    return path if path.is_absolute() else Path(base_dir) / path


class _Retry(Transient):
    """Transient: try the same URL again (after backoff), resuming if possible."""

    def __init__(self, message: str, problem: ConnectProblem | None = None):
        super().__init__(message)
        self.problem = problem


class _Fail(Exception):
    """This URL will not work: try the next mirror, if any."""


class _Unreachable(_Fail):
    """This URL's host could not be connected to (after the retries that can help)."""

    def __init__(self, problem: ConnectProblem, url: str, attempts: int):
        super().__init__(f"{problem}")
        self.problem, self.url, self.attempts = problem, url, attempts


class HostUnreachable(BuildError):
    """A package could not be downloaded because its host (every mirror's) could not be connected to."""

    def __init__(self, label: str, failures: Sequence[_Unreachable]):
        last = failures[-1]
        tries = f", {last.attempts} attempts" if last.attempts > 1 else ""
        where = "; ".join(f"{redact_url(f.url)}: {f.problem.reason}" for f in failures)
        super().__init__(f"{label}: cannot download {where}{tries}; {mirror_hint(failures[0].url)}")
        self.label, self.failures = label, list(failures)

    @property
    def cause(self) -> tuple[str, ...]:
        """What packages failing alike share: the hosts and reasons (so they make one error line)."""
        return tuple(f"{f.problem}" for f in self.failures)


def _summary(errors: Sequence[PixibuildError | str]) -> str:
    """One line for many failed packages: packages whose hosts could not be reached for the same reason
    are counted together; the first (group) leads, the rest is counted."""
    groups: dict[tuple[str, ...], list[HostUnreachable]] = {}
    lines: list[str] = []
    for error in errors:
        if isinstance(error, HostUnreachable):
            if error.cause not in groups:
                lines.append("")  # placeholder: the group's line, in first-seen order
            groups.setdefault(error.cause, []).append(error)
        else:
            lines.append(str(error))
    grouped = iter(groups.values())
    for i, line in enumerate(lines):
        if line == "":
            members = next(grouped)
            first = members[0]
            if len(members) == 1:
                lines[i] = str(first)
            else:
                f = first.failures[-1]
                tries = f", {f.attempts} attempts each" if f.attempts > 1 else ""
                lines[i] = (f"cannot download {len(members)} packages: {'; '.join(first.cause)}{tries} (first: "
                            f"{first.label}, {redact_url(f.url)}); {mirror_hint(first.failures[0].url)}")
    for extra in lines[1:]:
        log.error("%s", extra)
    more = f" (and {len(lines) - 1} more failed)" if len(lines) > 1 else ""
    return lines[0] + more


class Fetcher:
    """Thread-safe: records in, verified store paths out. Use as a context manager or call `close()`."""

    def __init__(self, store: Store | None = None, config: NetConfig | None = None, jobs: int | None = None,
                 progress: bool | None = None, *, auth: AuthStore | None = None, verify_cache: bool = False,
                 remote: "RemoteCache | None" = None):
        self.store = store if store is not None else Store()
        self.config = config or NetConfig()
        self.auth = auth if auth is not None else AuthStore.load(self.config.auth_file)
        self.jobs = max(1, jobs or self.config.downloads)
        self.progress = progress
        """None: shown as `files.progress` decides (after 2 s, unless -q); False: never; True: always, at once."""
        self.verify_cache = verify_cache
        self.remote = remote
        """The shared remote cache, asked between the store and the channels (None: no cache)."""
        self.retry = RetryPolicy.from_config(self.config)
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()
        self._verified: set[str] = set()
        self._bar: Progress | None = None
        self._stop = threading.Event()
        self.stats = {"downloaded": 0, "cached": 0, "local": 0, "remote": 0, "bytes": 0, "retries": 0}
        self._stats_lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> "Fetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    @property
    def client(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                self._client = make_client(self.config, connections=self.jobs)
            return self._client

    def _count(self, name: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[name] += n

    # -- public API ----------------------------------------------------------------------------
    def fetch_all(self, records: Iterable[Record], base_dir: str | Path = ".") -> list[Path]:
        """Store paths for `records`, in order. Duplicates are fetched once; all failures are reported."""
        records = list(records)
        wants = [wanted(r) for r in records]
        # leased before the store is looked at: `pixibuild cache prune` now keeps them until this process ends
        hold(self.store.root, (f"blob:{w.sha256}" for w in wants if w.sha256))
        unique: dict[str, int] = {}
        for i, w in enumerate(wants):
            unique.setdefault(w.key, i)
        t0 = time.monotonic()
        before = dict(self.stats)
        own_bar = bool(self.progress is not False and unique and self._bar is None)  # concurrent calls share it
        if own_bar:
            self._bar = Progress("fetch", items=len(unique), nbytes=sum(wants[i].size or 0 for i in unique.values()),
                                 enabled=self.progress, delay=0 if self.progress else None)
        results: dict[str, Path] = {}
        errors: list[PixibuildError | str] = []
        pool = ThreadPoolExecutor(max_workers=min(self.jobs, max(1, len(unique))), thread_name_prefix="fetch")
        try:
            futures = {key: pool.submit(self._fetch_path, wants[i], Path(base_dir)) for key, i in unique.items()}
            try:
                for key, future in futures.items():
                    try:
                        results[key] = future.result()
                    except PixibuildError as exc:
                        errors.append(exc)
                    except Exception as exc:  # a bug or an OS error: still one line, still redacted
                        errors.append(self.auth.redact(f"{wants[unique[key]].label}: {type(exc).__name__}: {exc}"))
            except BaseException:
                # Ctrl-C: stop queued work and make running downloads bail out at their next chunk (their
                # partial files stay, so the next run resumes them).
                self._stop.set()
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        finally:
            if own_bar and self._bar is not None:
                self._bar.close(done=not errors)
                self._bar = None
        if errors:
            raise BuildError(_summary(errors))
        s = {k: v - before[k] for k, v in self.stats.items()}
        log.info("fetched %d packages: %d downloaded (%.1f MB), %d from the remote cache, %d from store, %d local, "
                 "in %.2fs", len(unique), s["downloaded"], s["bytes"] / 1e6, s["remote"], s["cached"], s["local"],
                 time.monotonic() - t0)
        return [results[w.key] for w in wants]

    def fetch_one(self, record: Record, base_dir: str | Path = ".") -> Path:
        """The verified store path of one record (downloading or ingesting it if needed)."""
        return self._fetch_wanted(wanted(record), Path(base_dir))[0]

    def fetch_one_origin(self, record: Record, base_dir: str | Path = ".") -> tuple[Path, str]:
        """`fetch_one`, and where the blob came from: "store", "remote" (the remote cache), "local" (a
        file) or "channel"."""
        return self._fetch_wanted(wanted(record), Path(base_dir))

    # -- one package ---------------------------------------------------------------------------
    def _fetch_wanted(self, w: Wanted, base_dir: Path) -> tuple[Path, str]:
        path = self._from_store(w)
        origin = "store"
        if path is None and self.remote is not None and w.sha256:
            path = self.remote.pull_blob(self.store, w.sha256, size=w.size, label=w.label)
            origin = "remote"
        if path is None:
            local = local_path(w.location, base_dir)
            if local is not None:
                if local.is_dir():
                    raise InputError(f"{local} is a source directory, not a package file to fetch",
                                     field=w.label)
                if not local.is_file():
                    raise BuildError(f"{w.label}: local package file not found: {local}")
                path = self.store.ingest_file(local, w.sha256, w.md5, label=w.label)
                origin = "local"
            else:
                path = self._download(w)
                origin = "channel"
            if self.remote is not None and w.sha256:
                self.remote.push_blob(path, w.sha256, label=w.label)
        self._count({"store": "cached", "channel": "downloaded"}.get(origin, origin))
        if self._bar is not None:
            self._bar.update(items=1)
        return path, origin

    def _fetch_path(self, w: Wanted, base_dir: Path) -> Path:
        return self._fetch_wanted(w, base_dir)[0]

    def _from_store(self, w: Wanted) -> Path | None:
        sha256, size = w.sha256, w.size
        if sha256 is None:
            known = self.store.recall(w.location)
            if not known or (w.md5 and known.get("md5") != w.md5):
                return None
            sha256, size = known["sha256"], known.get("size")
        if not self.store.has(sha256, size):
            return None
        if self.verify_cache and sha256 not in self._verified:
            with self.store.lock(sha256):
                if not self.store.verify_blob(sha256):
                    log.warning("%s: store blob %s is corrupt; fetching it again", w.label, sha256)
                    self.store.remove(sha256)
                    return None
            self._verified.add(sha256)
        return self.store.blob_path(sha256)

    def _download(self, w: Wanted) -> Path:
        candidates = self.config.mirror_urls(w.location)
        failures: list[_Fail] = []
        for n, url in enumerate(candidates):
            try:
                return self._download_from(w, url)
            except _Fail as exc:
                failures.append(exc)
                if n + 1 < len(candidates):
                    log.warning("%s: %s; trying the next mirror", w.label, exc) if isinstance(exc, _Unreachable) \
                        else log.warning("%s; trying the next mirror", exc)
        if all(isinstance(f, _Unreachable) for f in failures):
            raise HostUnreachable(w.label, failures)  # type: ignore[arg-type]
        texts = [f"{w.label}: {f}" if isinstance(f, _Unreachable) else str(f) for f in failures]
        if len(texts) == 1:
            raise BuildError(texts[0])
        raise BuildError(f"{w.label}: every mirror failed: " + "; ".join(texts))

    def _download_from(self, w: Wanted, url: str) -> Path:
        shown = redact_url(url)
        lock_key = w.sha256 or "url-" + hashlib.sha256(storage_key(url).encode()).hexdigest()
        with self.store.lock(lock_key):
            if w.sha256 and self.store.has(w.sha256, w.size):
                return self.store.blob_path(w.sha256)  # another process or thread got it meanwhile
            partial = self.store.partial_path(w.sha256) if w.sha256 else self.store.new_temp()
            partial.parent.mkdir(parents=True, exist_ok=True)
            try:
                return self._download_locked(w, url, shown, partial)
            except BaseException:
                if not w.sha256:  # anonymous temp files cannot be resumed: never leave them behind
                    partial.unlink(missing_ok=True)
                raise

    def _download_locked(self, w: Wanted, url: str, shown: str, partial: Path) -> Path:
        def attempt() -> tuple[Hasher, str | None]:
            h, etag, resumed = self._stream(w, url, shown, partial)
            bad = compare(h, w.sha256, w.md5, w.size)
            if bad is None:
                return h, etag
            partial.unlink(missing_ok=True)
            if resumed:  # a stale partial from another source: start over once
                raise _Retry(f"{bad.algorithm} mismatch after resuming")
            raise _Fail(f"{w.label}: {bad.algorithm} mismatch for {shown}: expected {bad.expected}, "
                        f"got {bad.actual}")

        def on_retry(exc: Transient, n: int, delay: float) -> None:
            log.info("%s: %s (%s); retry %d/%d in %.2fs", w.label, self.auth.redact(str(exc)), shown,
                     n, self.retry.retries, delay)
            self._count("retries")

        try:
            h, etag = self.retry.run(attempt, on_retry=on_retry, wait=self._stop.wait)
        except GaveUp as exc:
            problem = getattr(exc.last, "problem", None)
            if problem is not None:
                raise _Unreachable(problem, url, exc.attempts) from None
            raise _Fail(f"{w.label}: {self.auth.redact(str(exc.last))} ({shown}, gave up after "
                        f"{exc.attempts} attempts)") from None
        except Interrupted:
            raise _Fail(f"{w.label}: interrupted") from None
        sha = h.sha256.hexdigest()
        if w.size is not None and h.size != w.size:
            log.warning("%s: lock says %d bytes but the verified file has %d", w.label, w.size, h.size)
        if w.sha256:
            blob = self.store.commit(partial, sha)
        else:
            with self.store.lock(sha):
                if self.store.has(sha, h.size):
                    partial.unlink(missing_ok=True)
                    blob = self.store.blob_path(sha)
                else:
                    blob = self.store.commit(partial, sha)
        self.store.remember(w.location, sha, h.size, md5=h.md5.hexdigest(), etag=etag)
        self._count("bytes", h.size)
        return blob

    def _stream(self, w: Wanted, url: str, shown: str, partial: Path) -> tuple[Hasher, str | None, bool]:
        """One GET into `partial` (appending after what is there, with Range): (hasher, ETag, resumed)."""
        import httpx  # imported with the client (see net/http.py)

        h = Hasher()
        have = partial.stat().st_size if partial.exists() else 0
        if have and w.size is not None and have >= w.size:
            partial.unlink()
            have = 0
        if have:
            with open(partial, "rb") as f:
                h.update_from_file(f)
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            response = self._open(url, headers, w, shown)
        except httpx.TransportError as exc:
            problem = connect_problem(exc, url)
            if problem is not None and not problem.retry_helps:
                raise _Unreachable(problem, url, 1) from None
            raise _Retry(f"{type(exc).__name__}: {exc}", problem) from None
        resumed = False
        try:
            status = response.status_code
            if status == 206 and have:
                start = _content_range_start(response.headers.get("content-range"))
                if start != have:
                    partial.unlink(missing_ok=True)
                    raise _Retry(f"server resumed at byte {start}, expected {have}")
                resumed = True
            elif status == 200:
                if have:
                    log.debug("%s: server ignored the Range request; downloading from the start", w.label)
                    h, have = Hasher(), 0
                    partial.unlink(missing_ok=True)
            elif status == 416:
                partial.unlink(missing_ok=True)
                raise _Retry("HTTP 416 (range not satisfiable)")
            elif is_transient_status(status):
                raise _Retry(f"HTTP {status}")
            elif status in (401, 403):
                hint = "credentials were sent and refused" if _had_auth(response) else \
                    "no credentials for this host (use --auth-file, $RATTLER_AUTH_FILE or ~/.netrc)"
                raise _Fail(f"{w.label}: HTTP {status} from {shown}: {hint}")
            else:
                raise _Fail(f"{w.label}: HTTP {status} from {shown}")
            declared = response.headers.get("content-length")
            expected_total = have + int(declared) if declared and declared.isdigit() else None
            if w.size is not None and expected_total is not None and expected_total > w.size:
                partial.unlink(missing_ok=True)
                raise _Fail(f"{w.label}: {shown} announces {expected_total} bytes but the lock declares "
                            f"{w.size}; refusing to download it")
            try:
                with open(partial, "ab") as out:
                    for chunk in response.iter_bytes():  # as received: a cut keeps what arrived
                        if self._stop.is_set():
                            raise _Fail(f"{w.label}: interrupted")
                        if w.size is not None and h.size + len(chunk) > w.size:
                            out.close()
                            partial.unlink(missing_ok=True)
                            raise _Fail(f"{w.label}: {shown} sent more than the {w.size} bytes the lock "
                                        f"declares; stopped there")
                        out.write(chunk)
                        h.update(chunk)
                        if self._bar is not None:
                            self._bar.update(nbytes=len(chunk))
            except httpx.TransportError as exc:
                raise _Retry(f"{type(exc).__name__} after {h.size} bytes: {exc}") from None
            if expected_total is not None and h.size < expected_total:
                raise _Retry(f"truncated: {h.size} of {expected_total} bytes")
            if w.size is not None and h.size < w.size:
                raise _Retry(f"truncated: {h.size} of {w.size} bytes")
            return h, response.headers.get("etag"), resumed
        finally:
            response.close()

    def _open(self, url: str, headers: dict[str, str], w: Wanted, shown: str) -> httpx.Response:
        """GET with redirects followed by hand, so credentials are re-chosen for each host."""
        try:
            return send(self.client, "GET", url, authenticate=self.auth.authenticate, headers=headers,
                        stream=True)
        except RedirectError as exc:
            raise _Fail(f"{w.label}: {exc}") from None


def _had_auth(response: httpx.Response) -> bool:
    req = response.request
    return "authorization" in req.headers or "/t/" in req.url.path


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-199/200"
    if not value or not value.startswith("bytes "):
        return None
    first = value[6:].split("-", 1)[0]
    return int(first) if first.isdigit() else None


def fetch(records: Sequence[Record], store: Store | None = None, *, base_dir: str | Path = ".",
          **kw) -> list[Path]:
    """Fetch `records` into `store` with a one-off Fetcher (see `Fetcher` for keyword arguments)."""
    with Fetcher(store, **kw) as fetcher:
        return fetcher.fetch_all(records, base_dir)
