"""One HTTP policy for the Pipeliner and Microsoft Graph clients.

Both APIs throttle (429 + ``Retry-After``), fail transiently (5xx, dropped connections) and hand
out absolute continuation URLs. This module is the one place that decides when to retry, how long
to wait, how hard to hit a host, and which hosts may ever see our credentials.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import random
import re
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Self, TypedDict, Unpack
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from urllib3.util.retry import Retry

from contactsync import __version__

log = logging.getLogger("contactsync.http")

#: Methods whose repetition cannot change the outcome (RFC 9110 §9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
#: Server errors that are usually transient; retried only for retryable requests.
RETRY_STATUSES = frozenset({500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
BODY_EXCERPT_CHARS = 500
DEFAULT_USER_AGENT = f"contactsync/{__version__}"
#: Query/fragment parameters whose values are credentials. Paging tokens ($skiptoken,
#: $deltatoken) are deliberately absent: they are long but grant nothing on their own.
SECRET_PARAMS = frozenset(
    {
        "password",
        "secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "client_assertion",
        "code",
        "sig",
        "signature",
        "key",
        "apikey",
        "api_key",
    }
)

_NAMES = "|".join(sorted(SECRET_PARAMS, key=len, reverse=True))
_SECRET_PAIR = re.compile(rf"(?i)(^|[?&;#])({_NAMES})=[^&;#\s'\"]*")
_SECRET_JSON = re.compile(rf"(?i)(\"(?:{_NAMES})\"\s*:\s*)\"[^\"]*\"")
_DELTA_SECONDS = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MASK = "***"


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class HttpPolicy:
    """How patient and how polite a client is; both APIs share it so they fail alike.

    ``max_concurrency``, ``rate_per_second`` and ``burst`` apply per origin and are shared by
    every client in the process with the same limits (Graph counts per app and mailbox, not per
    connection). ``retry_methods`` are retried after connection errors and 5xx; other methods
    only when the caller passes ``idempotent=True``. 429 is always retried: the server did not
    process the request.
    """

    max_attempts: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 120.0
    total_budget: float = 300.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_concurrency: int = 4
    rate_per_second: float | None = None
    burst: int = 1
    retry_methods: frozenset[str] = IDEMPOTENT_METHODS

    def __post_init__(self) -> None:
        for name in ("max_attempts", "max_concurrency", "burst"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"HttpPolicy.{name} must be an integer >= 1, got {value!r}")
        for name in ("backoff_base", "backoff_max", "max_retry_after"):
            _check_seconds(name, getattr(self, name), allow_zero=True)
        for name in ("total_budget", "connect_timeout", "read_timeout"):
            _check_seconds(name, getattr(self, name), allow_zero=False)
        if self.backoff_max < self.backoff_base:
            raise ValueError(
                f"HttpPolicy.backoff_max ({self.backoff_max}) must not be below "
                f"backoff_base ({self.backoff_base})"
            )
        if self.rate_per_second is not None:
            _check_seconds("rate_per_second", self.rate_per_second, allow_zero=False)
        if isinstance(self.retry_methods, str):
            raise ValueError(
                "HttpPolicy.retry_methods must be a collection of method names, not a string"
            )
        object.__setattr__(self, "retry_methods", frozenset(m.upper() for m in self.retry_methods))


def _check_seconds(name: str, value: object, *, allow_zero: bool) -> None:
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value >= 0 if allow_zero else value > 0)
    )
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"HttpPolicy.{name} must be a finite number {bound}, got {value!r}")


DEFAULT_POLICY = HttpPolicy()


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` value asks us to wait; None when absent or unreadable.

    Graph sends (possibly fractional) seconds, RFC 9110 also allows an HTTP date. A negative
    number or a date in the past means "now". Public so that ``$batch`` parts can reuse it.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        return max(0.0, float(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC without a known local offset
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def backoff_delay(attempt: int, policy: HttpPolicy, rng: random.Random) -> float:
    """Delay before retry number ``attempt`` (1-based): exponential, capped, full jitter.

    Full jitter keeps clients that were throttled together from retrying together.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    ceiling = min(policy.backoff_max, policy.backoff_base * 2.0 ** min(attempt - 1, 64))
    return ceiling * rng.random()


# --------------------------------------------------------------------------- redaction


def redact_url(url: str) -> str:
    """``url`` fit for logs and error messages: credentials in userinfo and query masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{_MASK}@{netloc.rpartition('@')[2]}"
    query = _SECRET_PAIR.sub(rf"\1\2={_MASK}", parts.query)
    fragment = _SECRET_PAIR.sub(rf"\1\2={_MASK}", parts.fragment)
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def redact_text(text: str) -> str:
    """Mask ``name=value`` and JSON ``"name": "value"`` credentials inside free text."""
    text = _SECRET_PAIR.sub(rf"\1\2={_MASK}", text)
    return _SECRET_JSON.sub(rf'\1"{_MASK}"', text)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # out of range or not a number: equal to no real origin
        return f"{scheme}://{host}:{parts.netloc.rpartition(':')[2]} (invalid port)"
    return f"{scheme}://{host}" + (f":{port}" if port else "")


# --------------------------------------------------------------------------- errors


class HttpError(Exception):
    """Base of every failure raised here. Messages carry redacted URLs and never headers."""

    def __init__(self, message: str, *, method: str, url: str) -> None:
        super().__init__(message)
        self.method = method
        self.url = redact_url(url)


class HttpStatusError(HttpError):
    """The server answered with a status the caller did not expect.

    ``response`` lets API clients branch on the error body (e.g. Graph's ``error.code``); do not
    log ``response.request``, it carries the Authorization header.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str,
        url: str,
        response: requests.Response,
        attempts: int,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, method=method, url=url)
        self.response = response
        self.status = response.status_code
        self.body_excerpt = _excerpt(response)
        self.attempts = attempts
        self.retry_after = retry_after


class TransportError(HttpError):
    """No usable answer: connection refused or dropped, timeout, TLS failure."""


class BudgetExceeded(HttpError):
    """The policy's ``total_budget`` ran out before the request could succeed."""


class OriginRefused(HttpError):
    """A URL pointed at another origin, which must never see this client's credentials."""

    def __init__(self, message: str, *, method: str, url: str, target: str) -> None:
        super().__init__(message, method=method, url=url)
        self.target = target


class RedirectRefused(OriginRefused):
    """The server redirected to another origin; the redirect was not followed."""


def _excerpt(response: requests.Response) -> str:
    raw = response.content[: BODY_EXCERPT_CHARS * 4] if response.content else b""
    try:
        text = raw.decode(response.encoding or "utf-8", errors="replace")
    except LookupError:
        text = raw.decode("utf-8", errors="replace")
    text = redact_text(" ".join(text.split()))
    if len(text) > BODY_EXCERPT_CHARS:
        text = text[: BODY_EXCERPT_CHARS - 1] + "…"
    return text


def _describe(exc: BaseException) -> str:
    """An exception as one short line; requests puts the full URL (query included) in it."""
    detail = redact_text(" ".join(str(exc).split()))
    if len(detail) > 200:
        detail = detail[:199] + "…"
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


# --------------------------------------------------------------------------- limits


class TokenBucket:
    """Spaces request starts to ``rate`` per second while allowing bursts of ``burst``.

    A waiter reserves its token before sleeping (the level may go negative), so threads queue
    fairly without holding the lock while they sleep.
    """

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"TokenBucket rate must be a finite number > 0, got {rate!r}")
        if burst < 1:
            raise ValueError(f"TokenBucket burst must be >= 1, got {burst!r}")
        self._rate = float(rate)
        self._burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    def take(self, max_wait: float | None = None) -> bool:
        """Wait for and take one token; False, without waiting, if that would exceed max_wait."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            wait = max(0.0, (1.0 - self._tokens) / self._rate)
            if max_wait is not None and wait > max_wait:
                return False
            self._tokens -= 1.0
        if wait > 0:
            self._sleep(wait)
        return True


class HostLimiter:
    """The concurrency and rate limits of one origin, shared by all clients that talk to it."""

    def __init__(
        self, max_concurrency: int, rate_per_second: float | None = None, burst: int = 1
    ) -> None:
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._bucket = TokenBucket(rate_per_second, burst) if rate_per_second else None

    def acquire(self, timeout: float | None = None) -> bool:
        """Take a slot, then a rate token (spacing sends); False, holding nothing, on timeout."""
        start = time.monotonic()
        if not self._slots.acquire(timeout=None if timeout is None else max(0.0, timeout)):
            return False
        if self._bucket is not None:
            left = None if timeout is None else max(0.0, timeout - (time.monotonic() - start))
            if not self._bucket.take(left):
                self._slots.release()
                return False
        return True

    def release(self) -> None:
        self._slots.release()


_limiters: weakref.WeakValueDictionary[tuple[str, int, float | None, int], HostLimiter] = (
    weakref.WeakValueDictionary()
)
_limiters_lock = threading.Lock()


def host_limiter(origin: str, policy: HttpPolicy) -> HostLimiter:
    """The process-wide limiter for ``origin`` under ``policy``'s limits, alive while in use."""
    key = (origin, policy.max_concurrency, policy.rate_per_second, policy.burst)
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = HostLimiter(policy.max_concurrency, policy.rate_per_second, policy.burst)
            _limiters[key] = limiter
        return limiter


# --------------------------------------------------------------------------- observers


@dataclass(frozen=True)
class RequestEvent:
    """One attempt, as the plugins report it (the SDK's ``http_request_*`` metrics)."""

    method: str
    endpoint: str  # the path with ids as ``{id}``: no id, query or personal data in it
    status: int | None  # None when no answer came (a dropped connection, a timeout)
    seconds: float


RequestObserver = Callable[[RequestEvent], None]
_observers: list[RequestObserver] = []
_observers_lock = threading.Lock()
_ID_SEGMENT = re.compile(r"^(?:[0-9a-fA-F-]{32,36}|.*@.*|[A-Za-z0-9_=+-]{20,}|(?=.*\d)[^/]{8,})$")


def observe_requests(observer: RequestObserver) -> Callable[[], None]:
    """Call ``observer`` after every attempt of every client of this process; returns the
    function that stops it. Observers must be quick and must not raise."""
    with _observers_lock:
        _observers.append(observer)

    def stop() -> None:
        with _observers_lock:
            if observer in _observers:
                _observers.remove(observer)

    return stop


def endpoint_of(url: str) -> str:
    """The path of ``url`` with its id segments as ``{id}`` (a metric tag of few values)."""
    path = urlsplit(url).path or "/"
    segments = []
    for segment in path.split("/"):
        head, paren, _ = segment.partition("(")  # Graph's contacts('id') form
        if paren:
            segment = f"{head}({{id}})"
        segments.append("{id}" if _ID_SEGMENT.match(segment) else segment)
    return "/".join(segments)


def _notify(event: RequestEvent) -> None:
    with _observers_lock:
        observers = list(_observers)
    for observer in observers:
        try:
            observer(event)
        except Exception as exc:  # a metric must never fail a request
            log.debug("request observer failed: %s", exc)


# --------------------------------------------------------------------------- client


@dataclass(frozen=True)
class HttpStats:
    """Counters of one client, for benchmarks and run summaries."""

    attempts: int = 0
    retries: int = 0
    throttled: int = 0
    redirects: int = 0
    transport_errors: int = 0
    by_status: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))


class RequestOptions(TypedDict, total=False):
    """Keyword arguments of :meth:`HttpClient.request`, for the shorthands."""

    params: Mapping[str, Any] | None
    json: Any
    data: bytes | str | Mapping[str, Any] | None
    headers: Mapping[str, str] | None
    idempotent: bool | None
    expected: Collection[int]


_TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


@dataclass
class _Call:
    """The moving parts of one logical request: redirects change the target, retries count."""

    method: str
    url: str
    json: Any
    data: bytes | str | Mapping[str, Any] | None
    headers: dict[str, str]
    retryable: bool
    started: float
    deadline: float
    attempt: int = 0
    hops: int = 0
    last: str = "nothing sent yet"

    def describe(self) -> str:
        return f"{self.method} {redact_url(self.url)}"


class HttpClient:
    """A ``requests`` session bound to one origin that applies an :class:`HttpPolicy`.

    ``request`` returns the response for 2xx and for statuses listed in ``expected`` (those are
    returned as they are: neither retried nor followed); everything else ends in an
    :class:`HttpError`. Only same-origin redirects are followed, so credentials stay on
    ``base_url``'s origin. Thread-safe: share one client between worker threads.
    """

    def __init__(
        self,
        base_url: str,
        policy: HttpPolicy = DEFAULT_POLICY,
        *,
        verify: bool | str = True,
        auth: AuthBase | None = None,
        headers: Mapping[str, str] | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        origin = _origin(base_url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or "invalid" in origin:
            raise ValueError(
                f"base_url must be an absolute http(s) URL, got {redact_url(base_url)!r}"
            )
        self.base_url = base_url.rstrip("/")
        self.origin = origin
        self.policy = policy
        self._verify = verify
        self._auth = auth
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._limiter = host_limiter(self.origin, policy)
        self._session = requests.Session()
        # Without this, REQUESTS_CA_BUNDLE, proxy variables and ~/.netrc would silently
        # override `verify` and `auth`.
        self._session.trust_env = False
        adapter = HTTPAdapter(
            pool_connections=1,
            pool_maxsize=policy.max_concurrency,
            max_retries=Retry(total=0, read=False, redirect=False),  # retries are ours
        )
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["User-Agent"] = user_agent
        self._session.headers.update(headers or {})
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._statuses: Counter[int] = Counter()

    @property
    def stats(self) -> HttpStats:
        with self._lock:
            return HttpStats(
                attempts=self._counts["attempts"],
                retries=self._counts["retries"],
                throttled=self._statuses[429],
                redirects=self._counts["redirects"],
                transport_errors=self._counts["transport_errors"],
                by_status=MappingProxyType(dict(self._statuses)),
            )

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: bytes | str | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        expected: Collection[int] = (),
    ) -> requests.Response:
        """Send one logical request, retrying and following same-origin redirects per policy.

        ``path_or_url`` is joined onto ``base_url`` unless it is an absolute URL, which must be
        on the same origin (e.g. ``@odata.nextLink``). ``idempotent`` overrides whether the
        method is safe to repeat after a connection error or 5xx (pass True for a POST that
        is). Raises :class:`HttpStatusError`, :class:`TransportError`,
        :class:`BudgetExceeded` or :class:`OriginRefused`.
        """
        method = method.upper()
        started = self._clock()
        call = _Call(
            method=method,
            url=self._resolve(method, path_or_url, params),
            json=json,
            data=data,
            headers=dict(headers or {}),
            retryable=method in self.policy.retry_methods if idempotent is None else idempotent,
            started=started,
            deadline=started + self.policy.total_budget,
        )
        while True:
            call.attempt += 1
            try:
                response = self._send(call)
            except requests.exceptions.SSLError as exc:
                raise TransportError(
                    f"{call.describe()}: TLS failed ({_describe(exc)}). Check the server "
                    "certificate and the client's verify= setting (CA bundle path).",
                    method=call.method,
                    url=call.url,
                ) from exc
            except _TRANSIENT as exc:
                call.last = _describe(exc)
                if not call.retryable or call.attempt >= self.policy.max_attempts:
                    raise self._transport_error(call) from exc
                self._pause(call, backoff_delay(call.attempt, self.policy, self._rng))
                continue
            if response is None:
                raise self._budget_error(call, 0.0, attempts=call.attempt - 1)
            status = response.status_code
            if status < 300 or status in expected:
                return response
            if status in REDIRECT_STATUSES and response.headers.get("Location"):
                self._redirect(call, response)
                continue
            call.last = f"{status} {response.reason or ''}".strip()
            if status == 429 or (status in RETRY_STATUSES and call.retryable):
                self._pause(call, self._retry_delay(call, response))
                continue
            raise _status_error(call, response, _hint(status))

    def get(self, path_or_url: str, **options: Unpack[RequestOptions]) -> requests.Response:
        return self.request("GET", path_or_url, **options)

    def post(self, path_or_url: str, **options: Unpack[RequestOptions]) -> requests.Response:
        return self.request("POST", path_or_url, **options)

    def patch(self, path_or_url: str, **options: Unpack[RequestOptions]) -> requests.Response:
        return self.request("PATCH", path_or_url, **options)

    def delete(self, path_or_url: str, **options: Unpack[RequestOptions]) -> requests.Response:
        return self.request("DELETE", path_or_url, **options)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- internals

    def _resolve(self, method: str, path_or_url: str, params: Mapping[str, Any] | None) -> str:
        parts = urlsplit(path_or_url)
        if parts.netloc or parts.scheme in _DEFAULT_PORTS:
            url = path_or_url if parts.scheme else f"{urlsplit(self.base_url).scheme}:{path_or_url}"
            target = _origin(url)
            if target != self.origin:
                raise OriginRefused(
                    f"{method} {redact_url(url)} refused: {target} is not this client's origin "
                    f"{self.origin}, and its credentials must not be sent there. Use a client "
                    "configured for that host if it is trusted.",
                    method=method,
                    url=url,
                    target=target,
                )
        else:
            url = f"{self.base_url}/{path_or_url.lstrip('/')}" if path_or_url else self.base_url
        if params:
            prepared = requests.PreparedRequest()
            prepared.prepare_url(url, params)
            url = prepared.url or url
        return url

    def _send(self, call: _Call) -> requests.Response | None:
        """One attempt inside a host slot; None if no slot was free before the deadline.

        The slot is released before any retry sleep, so a waiting request never blocks others.
        """
        remaining = call.deadline - self._clock()
        if remaining <= 0 or not self._limiter.acquire(timeout=remaining):
            return None
        self._count("attempts")
        start = self._clock()
        outcome = "interrupted"
        timeout = (
            min(self.policy.connect_timeout, remaining),
            min(self.policy.read_timeout, remaining),
        )
        try:
            response = self._session.request(
                call.method,
                call.url,
                json=call.json,
                data=call.data,
                headers=call.headers,
                auth=self._auth,
                verify=self._verify,
                timeout=timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            self._count("transport_errors")
            outcome = type(exc).__name__
            raise
        else:
            with self._lock:
                self._statuses[response.status_code] += 1
            outcome = str(response.status_code)
            return response
        finally:
            self._limiter.release()
            elapsed = self._clock() - start
            log.debug("%s -> %s in %.3f s", call.describe(), outcome, elapsed)
            if _observers:
                status = int(outcome) if outcome.isdigit() else None
                _notify(RequestEvent(call.method, endpoint_of(call.url), status, elapsed))

    def _redirect(self, call: _Call, response: requests.Response) -> None:
        """Point ``call`` at a same-origin Location, as browsers and RFC 9110 do."""
        target = urljoin(call.url, response.headers["Location"])
        status = response.status_code
        origin = _origin(target)
        if origin != self.origin:
            raise RedirectRefused(
                f"{call.describe()} answered {status} redirecting to {redact_url(target)}; "
                f"refused to follow it to {origin}, another origin than {self.origin}, so "
                "that credentials stay on the configured host. If that host is the right one, "
                "configure it as the base URL.",
                method=call.method,
                url=call.url,
                target=origin,
            )
        call.hops += 1
        if call.hops > MAX_REDIRECTS:
            raise _status_error(call, response, f"more than {MAX_REDIRECTS} redirects in a row")
        self._count("redirects")
        to_get = status == 303 or (status in (301, 302) and call.method == "POST")
        if to_get and call.method != "HEAD":
            call.method, call.json, call.data = "GET", None, None
            call.headers = {k: v for k, v in call.headers.items() if k.lower() != "content-type"}
        call.url, call.attempt = target, 0

    def _retry_delay(self, call: _Call, response: requests.Response) -> float:
        """How long to wait before retrying a retryable status, or the error that ends it."""
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if call.attempt >= self.policy.max_attempts:
            raise _status_error(
                call,
                response,
                f"still failing after {call.attempt} attempts (HttpPolicy.max_attempts); the "
                "service is throttling or unavailable, try again later",
                retry_after,
            )
        if retry_after is None:
            return backoff_delay(call.attempt, self.policy, self._rng)
        if retry_after > self.policy.max_retry_after:
            raise _status_error(
                call,
                response,
                f"the server asked to wait {retry_after:.0f} s (Retry-After), more than "
                f"HttpPolicy.max_retry_after={self.policy.max_retry_after:g} s; try again later",
                retry_after,
            )
        return retry_after

    def _pause(self, call: _Call, delay: float) -> None:
        if self._clock() + delay > call.deadline:
            raise self._budget_error(call, delay, attempts=call.attempt)
        self._count("retries")
        retries = self.policy.max_attempts - 1
        log.warning(
            "%s: %s; retry %d of %d in %.2f s",
            call.describe(),
            call.last,
            call.attempt,
            retries,
            delay,
        )
        self._sleep(delay)

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _budget_error(self, call: _Call, delay: float, *, attempts: int) -> BudgetExceeded:
        spent = self._clock() - call.started
        wait = f", and the next try would have to wait {delay:.2f} s more" if delay else ""
        return BudgetExceeded(
            f"{call.describe()}: gave up after {spent:.2f} s and {attempts} attempt(s) (last: "
            f"{call.last}){wait}; HttpPolicy.total_budget is {self.policy.total_budget:g} s. "
            "Try again later or raise total_budget.",
            method=call.method,
            url=call.url,
        )

    def _transport_error(self, call: _Call) -> TransportError:
        why = (
            f"after {call.attempt} attempt(s)"
            if call.retryable
            else f"and {call.method} is not retried (pass idempotent=True if repeating is safe)"
        )
        return TransportError(
            f"{call.describe()} got no answer {why}: {call.last}. Check that the service is "
            "reachable from here.",
            method=call.method,
            url=call.url,
        )


def _status_error(
    call: _Call, response: requests.Response, advice: str, retry_after: float | None = None
) -> HttpStatusError:
    status = f"{response.status_code} {response.reason or ''}".strip()
    body = _excerpt(response)
    shown = f" Response: {body}" if body else ""
    return HttpStatusError(
        f"{call.describe()} failed with {status}: {advice}.{shown}",
        method=call.method,
        url=call.url,
        response=response,
        attempts=call.attempt,
        retry_after=retry_after,
    )


def _hint(status: int) -> str:
    if status == 401:
        return "the credentials were rejected; check them or sign in again"
    if status == 403:
        return "the credentials lack permission for this resource"
    if status == 404:
        return "the resource does not exist or is not visible to these credentials"
    if 300 <= status < 400:
        return "a redirect without a usable Location"
    if status < 500:
        return "the server rejected the request; see the response"
    return "the server failed (retried only for 500/502/503/504 on retryable requests)"


# --------------------------------------------------------------------------- service URLs

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def ca_bundle_setting(value: object, error: type[Exception]) -> str | None:
    """A client's ``ca_bundle`` setting: empty means the system store, else a readable PEM file
    (checked when the client is configured, not at the first TLS handshake)."""
    if value is None:
        return None
    bundle = str(value).strip()
    if not bundle:
        return None
    if not Path(bundle).is_file():
        raise error(
            f"ca_bundle {bundle!r} is not a readable file; point it at a PEM file of "
            "the CA certificates to trust, or leave it empty for the system store"
        )
    return bundle


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: the only hosts plain http is allowed to."""
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def service_base_url(
    url: str,
    *,
    setting: str,
    example: str,
    carries: str,
    api_suffix: re.Pattern[str],
    error: type[Exception],
    credentials_go: str = "the sign-in settings",
) -> str:
    """A service's base URL as ``scheme://host[:port][/prefix]``, checked the same way for both
    APIs: absolute, no credentials, https (http only for loopback, since it would send
    ``carries`` in the clear), no query; a pasted API URL (``api_suffix``) is cut back.

    Errors are ``error`` instances naming ``setting``, never showing a secret of the URL.
    """
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise error(
            f"{setting} {redact_url(text)!r} is not a valid URL ({exc}); use {example}"
        ) from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in ("https", "http") or not host:
        raise error(f"{setting} {redact_url(text)!r} must be an absolute https:// URL ({example})")
    if parts.username is not None or parts.password is not None:
        raise error(
            f"{setting} {redact_url(text)!r} must not contain credentials; they belong in "
            f"{credentials_go}"
        )
    if scheme == "http" and not is_loopback(host):
        raise error(
            f"{setting} {redact_url(text)!r} uses plain http, which would send {carries} "
            "unencrypted; use https:// (plain http is accepted only for loopback hosts such as "
            "127.0.0.1 or localhost)"
        )
    pasted_api_url = bool(api_suffix.search(parts.path))
    if (parts.query or parts.fragment) and not pasted_api_url:
        raise error(
            f"{setting} {redact_url(text)!r} must not have a query or fragment; give the host "
            f"only ({example})"
        )
    path = api_suffix.sub("", parts.path).rstrip("/")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, path, "", ""))
