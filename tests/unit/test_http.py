"""contactsync.http against real HTTP servers on 127.0.0.1 (no mocks of requests)."""

from __future__ import annotations

import base64
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from requests.auth import HTTPBasicAuth

from contactsync.http import (
    BudgetExceeded,
    HttpClient,
    HttpError,
    HttpPolicy,
    HttpStatusError,
    OriginRefused,
    RedirectRefused,
    TokenBucket,
    TransportError,
    backoff_delay,
    host_limiter,
    parse_retry_after,
    redact_url,
)

# --------------------------------------------------------------------------- local server


@dataclass
class Reply:
    status: int = 200
    body: bytes = b'{"ok": true}'
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False  # close the socket without answering


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


class LocalServer:
    """Scripted replies per path (the last one repeats); records every request it receives."""

    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.closed_connections = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                pass

            def handle_any(self):
                outer._handle(self)

            def finish(self):
                super().finish()
                with outer.lock:
                    outer.closed_connections += 1

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def origin(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.origin + path

    def on(self, path: str, *replies: Reply) -> None:
        self.routes[path] = list(replies)

    def count(self, path: str | None = None) -> int:
        with self.lock:
            return sum(1 for s in self.seen if path is None or urlsplit(s.path).path == path)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        path = urlsplit(handler.path).path
        with self.lock:
            self.seen.append(Seen(handler.command, handler.path, dict(handler.headers), body))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            queue = self.routes.get(path)
            if not queue:
                reply = Reply(404, b'{"error": "no route"}')
            else:
                reply = queue.pop(0) if len(queue) > 1 else queue[0]
        try:
            if reply.delay:
                time.sleep(reply.delay)
            if reply.drop:
                handler.close_connection = True
                return
            handler.send_response(reply.status)
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(reply.body)))
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(reply.body)
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.fixture
def server() -> Iterator[LocalServer]:
    s = LocalServer()
    yield s
    s.stop()


@pytest.fixture
def other_server() -> Iterator[LocalServer]:
    s = LocalServer()
    yield s
    s.stop()


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class FakeClock:
    """A monotonic clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.delays: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.now += seconds


class FixedRandom(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.fixture
def make_client() -> Iterator[Callable[..., HttpClient]]:
    made: list[HttpClient] = []

    def make(base_url: str, policy: HttpPolicy | None = None, **kwargs) -> HttpClient:
        kwargs.setdefault("sleep", RecordingSleep())
        client = HttpClient(base_url, policy or HttpPolicy(), **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


# --------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("header", "low", "high"),
    [
        (lambda: "2", 2.0, 2.0),
        (lambda: "0.75", 0.75, 0.75),
        # An HTTP date has one-second resolution: 3 s ahead is between 2 and 3 s from now.
        (lambda: formatdate(time.time() + 3, usegmt=True), 1.5, 3.0),
    ],
    ids=["seconds", "fractional", "http-date"],
)
def test_429_waits_for_retry_after_then_succeeds(server, make_client, header, low, high):
    server.on("/items", Reply(429, b"slow down", {"Retry-After": header()}), Reply(200, b"done"))
    sleep = RecordingSleep()
    client = make_client(server.origin, sleep=sleep)

    response = client.get("/items")

    assert response.status_code == 200
    assert response.text == "done"
    assert server.count("/items") == 2
    assert len(sleep.delays) == 1
    assert low <= sleep.delays[0] <= high
    stats = client.stats
    assert (stats.attempts, stats.retries, stats.throttled) == (2, 1, 1)
    assert dict(stats.by_status) == {429: 1, 200: 1}


def test_fractional_retry_after_really_sleeps(server, make_client):
    server.on("/items", Reply(429, headers={"Retry-After": "0.2"}), Reply(200))
    client = make_client(server.origin, sleep=time.sleep)

    start = time.monotonic()
    response = client.get("/items")
    elapsed = time.monotonic() - start

    assert response.status_code == 200
    assert server.count("/items") == 2
    assert 0.2 <= elapsed < 2.0


def test_retry_after_beyond_max_retry_after_gives_up_at_once(server, make_client):
    server.on("/items", Reply(429, b"come back tomorrow", {"Retry-After": "3600"}))
    sleep = RecordingSleep()
    client = make_client(server.origin, HttpPolicy(max_retry_after=120), sleep=sleep)

    with pytest.raises(HttpStatusError) as caught:
        client.get("/items")

    assert caught.value.status == 429
    assert caught.value.retry_after == 3600
    assert "max_retry_after" in str(caught.value)
    assert server.count() == 1
    assert sleep.delays == []


# --------------------------------------------------------------------------- 5xx and backoff


def test_503_is_retried_with_growing_backoff(server, make_client):
    server.on("/items", Reply(503), Reply(503), Reply(503), Reply(200, b"done"))
    sleep = RecordingSleep()
    policy = HttpPolicy(backoff_base=0.1, backoff_max=10)
    client = make_client(server.origin, policy, sleep=sleep, rng=FixedRandom(0.5))

    response = client.get("/items")

    assert response.text == "done"
    assert server.count("/items") == 4
    assert sleep.delays == pytest.approx([0.05, 0.1, 0.2])
    stats = client.stats
    assert (stats.attempts, stats.retries, stats.throttled) == (4, 3, 0)
    assert dict(stats.by_status) == {503: 3, 200: 1}


def test_500_forever_fails_after_max_attempts(server, make_client):
    server.on("/items", Reply(500, b"internal error"))
    client = make_client(server.origin, HttpPolicy(max_attempts=4))

    with pytest.raises(HttpStatusError) as caught:
        client.get("/items", params={"q": "x"})

    error = caught.value
    assert error.status == 500
    assert error.attempts == 4
    assert server.count("/items") == 4
    assert error.url == server.url("/items?q=x")
    assert "4 attempts" in str(error)
    assert "internal error" in error.body_excerpt


def test_non_retryable_4xx_raises_once_unless_expected(server, make_client):
    server.on("/missing", Reply(404, b"x" * 5000))
    client = make_client(server.origin)

    with pytest.raises(HttpStatusError) as caught:
        client.get("/missing")
    assert caught.value.status == 404
    assert len(caught.value.body_excerpt) <= 500
    assert server.count() == 1

    response = client.get("/missing", expected={404})
    assert response.status_code == 404
    assert server.count() == 2


def test_post_is_not_retried_on_503_unless_idempotent(server, make_client):
    server.on("/create", Reply(503), Reply(201, b"created"))
    client = make_client(server.origin)
    with pytest.raises(HttpStatusError) as caught:
        client.post("/create", json={"a": 1})
    assert caught.value.status == 503
    assert server.count("/create") == 1

    server.on("/create", Reply(503), Reply(201, b"created"))
    response = client.post("/create", json={"a": 1}, idempotent=True)
    assert response.status_code == 201
    assert server.count("/create") == 3
    assert [s.body for s in server.seen] == [b'{"a": 1}'] * 3


def test_get_marked_not_idempotent_is_not_retried(server, make_client):
    server.on("/items", Reply(503), Reply(200))
    client = make_client(server.origin)
    with pytest.raises(HttpStatusError):
        client.get("/items", idempotent=False)
    assert server.count() == 1


def test_post_is_retried_on_429(server, make_client):
    server.on("/create", Reply(429, headers={"Retry-After": "1"}), Reply(201))
    sleep = RecordingSleep()
    client = make_client(server.origin, sleep=sleep)

    assert client.post("/create", json={"a": 1}).status_code == 201
    assert server.count("/create") == 2
    assert sleep.delays == [1.0]


# --------------------------------------------------------------------------- transport errors


def test_dropped_connection_is_retried_for_get(server, make_client):
    server.on("/items", Reply(drop=True), Reply(200, b"done"))
    client = make_client(server.origin)

    assert client.get("/items").text == "done"
    assert server.count("/items") == 2
    assert client.stats.transport_errors == 1


def test_dropped_connection_forever_raises_transport_error(server, make_client):
    server.on("/items", Reply(drop=True))
    client = make_client(server.origin, HttpPolicy(max_attempts=3))

    with pytest.raises(TransportError) as caught:
        client.get("/items")

    assert server.count("/items") == 3
    assert "3 attempt" in str(caught.value)


def test_dropped_connection_on_post_is_not_retried(server, make_client):
    server.on("/create", Reply(drop=True), Reply(201))
    client = make_client(server.origin)

    with pytest.raises(TransportError) as caught:
        client.post("/create", json={})

    assert server.count("/create") == 1
    assert "idempotent=True" in str(caught.value)


def _dead_origin() -> str:
    """An origin on which nothing listens (the port was just free)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_connection_refused_raises_transport_error(make_client):
    client = make_client(_dead_origin(), HttpPolicy(max_attempts=2))

    with pytest.raises(TransportError):
        client.get("/items")
    assert client.stats.attempts == 2


def test_environment_proxies_are_ignored(server, make_client, monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, _dead_origin())
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    server.on("/items", Reply(200))
    client = make_client(server.origin, HttpPolicy(max_attempts=1))

    assert client.get("/items").status_code == 200


# --------------------------------------------------------------------------- redirects, origins


def test_same_origin_redirect_is_followed(server, make_client):
    server.on("/old", Reply(302, headers={"Location": "/new"}))
    server.on("/new", Reply(200, b"here"))
    client = make_client(server.origin, headers={"Authorization": "Bearer Tok"})

    response = client.get("/old")

    assert response.text == "here"
    assert response.url == server.url("/new")
    assert [urlsplit(s.path).path for s in server.seen] == ["/old", "/new"]
    assert client.stats.redirects == 1


def test_303_turns_post_into_get_and_307_keeps_it(server, make_client):
    server.on("/see-other", Reply(303, headers={"Location": "/result"}))
    server.on("/temporary", Reply(307, headers={"Location": "/result"}))
    server.on("/result", Reply(200))
    client = make_client(server.origin)

    client.post("/see-other", json={"a": 1})
    client.post("/temporary", json={"a": 1})

    followed = [(s.method, s.body) for s in server.seen if s.path == "/result"]
    assert followed == [("GET", b""), ("POST", b'{"a": 1}')]


def test_redirect_loop_is_cut(server, make_client):
    server.on("/loop", Reply(302, headers={"Location": "/loop"}))
    client = make_client(server.origin, HttpPolicy(total_budget=5))  # no hang if uncut

    with pytest.raises(HttpStatusError, match="redirects"):
        client.get("/loop")
    assert server.count("/loop") == 6


def test_redirect_to_another_origin_is_refused(server, other_server, make_client):
    target = other_server.url("/steal?code=LeakMarker")
    server.on("/go", Reply(302, headers={"Location": target}))
    other_server.on("/steal", Reply(200))
    client = make_client(server.origin, auth=HTTPBasicAuth("user", "pw"))

    with pytest.raises(RedirectRefused) as caught:
        client.get("/go")

    message = str(caught.value)
    assert other_server.origin in message
    assert "refused" in message
    assert "LeakMarker" not in message
    assert caught.value.target == other_server.origin
    assert other_server.count() == 0
    assert server.count("/go") == 1
    assert "Authorization" in server.seen[0].headers  # it did go to the configured origin


def test_absolute_url_on_another_origin_is_refused(server, other_server, make_client):
    other_server.on("/page2", Reply(200))
    client = make_client(server.origin, headers={"Authorization": "Bearer Tok"})

    with pytest.raises(OriginRefused) as caught:
        client.get(other_server.url("/page2"))
    with pytest.raises(OriginRefused):
        client.get("//" + urlsplit(other_server.origin).netloc + "/page2")

    assert other_server.origin in str(caught.value)
    assert server.origin in str(caught.value)
    assert other_server.count() == 0


def test_absolute_url_on_the_same_origin_is_allowed(server, make_client):
    server.on("/v1/page2", Reply(200, b"next"))
    client = make_client(server.url("/v1/"))

    next_link = server.url("/v1/page2?$skiptoken=abc")
    assert client.get(next_link).text == "next"
    assert server.seen[0].path == "/v1/page2?$skiptoken=abc"


def test_relative_paths_join_onto_the_base_path(server, make_client):
    server.on("/api/v1/items", Reply(200))
    client = make_client(server.url("/api/v1"))

    client.get("items", params={"first": 10})
    client.get("/items")

    assert [s.path for s in server.seen] == ["/api/v1/items?first=10", "/api/v1/items"]


# --------------------------------------------------------------------------- budget


def test_total_budget_stops_retrying(server, make_client):
    server.on("/items", Reply(503, headers={"Retry-After": "2"}))
    clock = FakeClock()
    policy = HttpPolicy(max_attempts=10, total_budget=5)
    client = make_client(server.origin, policy, clock=clock, sleep=clock.sleep)

    with pytest.raises(BudgetExceeded) as caught:
        client.get("/items")

    # Attempts at t=0, 2, 4; the next would start at t=6, past the 5 s budget.
    assert server.count("/items") == 3
    assert clock.delays == [2.0, 2.0]
    assert "total_budget" in str(caught.value)
    assert "503" in str(caught.value)


def test_backoff_beyond_the_budget_gives_up_without_sleeping(server, make_client):
    server.on("/items", Reply(503))
    clock = FakeClock()
    client = make_client(
        server.origin,
        HttpPolicy(total_budget=1, backoff_base=5, backoff_max=5),
        clock=clock,
        sleep=clock.sleep,
        rng=FixedRandom(0.5),
    )
    with pytest.raises(BudgetExceeded) as caught:
        client.get("/items")
    assert isinstance(caught.value, HttpError)
    assert "2.50 s" in str(caught.value)
    assert server.count() == 1
    assert clock.delays == []


# --------------------------------------------------------------------------- limits


def test_concurrency_is_limited_per_host_across_clients(server, make_client):
    server.on("/slow", Reply(200, delay=0.2))
    policy = HttpPolicy(max_concurrency=4)
    clients = [make_client(server.origin, policy), make_client(server.origin, policy)]
    assert host_limiter(server.origin, policy) is host_limiter(server.origin, policy)
    errors: list[BaseException] = []

    def work(client: HttpClient) -> None:
        try:
            client.get("/slow")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(clients[i % 2],)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert errors == []
    assert server.count("/slow") == 10
    # At most 4 at once, and not one at a time (a busy machine may not line up all 4).
    assert 2 <= server.max_in_flight <= 4


def test_token_bucket_spaces_takes_after_the_burst():
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=2, clock=clock, sleep=clock.sleep)

    for _ in range(5):
        assert bucket.take()

    assert clock.delays == pytest.approx([0.1, 0.1, 0.1])
    assert bucket.take(max_wait=0.05) is False
    assert clock.delays == pytest.approx([0.1, 0.1, 0.1])  # refused without waiting
    clock.now += 1.0  # refills, but never above the burst
    assert bucket.take() and bucket.take()
    assert len(clock.delays) == 3
    assert bucket.take()
    assert clock.delays[-1] == pytest.approx(0.1)


def test_rate_limit_applies_to_real_requests(server, make_client):
    server.on("/items", Reply(200))
    client = make_client(server.origin, HttpPolicy(rate_per_second=20, burst=1))

    start = time.monotonic()
    for _ in range(10):
        client.get("/items")
    elapsed = time.monotonic() - start

    assert elapsed >= 0.4  # 9 waits of 50 ms after the first token
    assert server.count() == 10


# --------------------------------------------------------------------------- secrets


def test_no_secret_reaches_logs_or_errors(server, make_client, caplog):
    server.on("/fail", Reply(503), Reply(401, b'{"error": "denied"}'))
    server.on("/drop", Reply(drop=True))
    markers = ["S3cretMarker", "TokMarker", "QueryMarker"]
    basic = base64.b64encode(b"user:S3cretMarker").decode()
    caplog.set_level(logging.DEBUG)
    errors: list[HttpError] = []

    basic_client = make_client(server.origin, auth=HTTPBasicAuth("user", "S3cretMarker"))
    bearer_client = make_client(server.origin, headers={"Authorization": "Bearer TokMarker"})
    for client in (basic_client, bearer_client):
        for path in ("/fail?access_token=QueryMarker&x=1", "/drop?access_token=QueryMarker"):
            with pytest.raises(HttpError) as caught:
                client.get(path, params={"password": "S3cretMarker"}, idempotent=False)
            errors.append(caught.value)
    server.on("/fail", Reply(503), Reply(401, b'{"error": "denied"}'))
    with pytest.raises(HttpError) as caught:
        basic_client.get("/fail?access_token=QueryMarker")  # retried: logs a warning
    errors.append(caught.value)
    # urllib3 puts the full path and query into a refused connection's message.
    dead_client = make_client(_dead_origin(), HttpPolicy(max_attempts=2))
    with pytest.raises(TransportError) as caught:
        dead_client.get("/x?access_token=QueryMarker")
    errors.append(caught.value)
    assert "Max retries exceeded" in str(caught.value)

    # The credentials did reach the configured server, so the test is not vacuous.
    sent = [s.headers.get("Authorization", "") for s in server.seen]
    assert f"Basic {basic}" in sent
    assert "Bearer TokMarker" in sent
    assert any("access_token=QueryMarker" in s.path for s in server.seen)
    records = [r for r in caplog.records if r.name == "contactsync.http"]
    assert any(r.levelno == logging.DEBUG for r in records)
    assert any(r.levelno == logging.WARNING for r in records)
    texts = [r.getMessage() for r in records] + [str(e) for e in errors]
    texts += [repr(e.args) for e in errors] + [e.url for e in errors]
    assert any("access_token=***" in t for t in texts)
    for text in texts:
        for secret in [*markers, basic]:
            assert secret not in text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h/x?access_token=abc&a=1", "https://h/x?access_token=***&a=1"),
        ("https://h/x?a=1&Client_Secret=s&code=c", "https://h/x?a=1&Client_Secret=***&code=***"),
        ("https://h/x?$skiptoken=abc&$deltatoken=d", "https://h/x?$skiptoken=abc&$deltatoken=d"),
        ("https://u:p@h:8443/x?sig=zz", "https://***@h:8443/x?sig=***"),
        ("https://h/cb#access_token=t&state=s", "https://h/cb#access_token=***&state=s"),
        ("https://h/x?monkey=1&key=2", "https://h/x?monkey=1&key=***"),
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected


# --------------------------------------------------------------------------- pure functions


NOW = datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0.75", 0.75),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("-5", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:28:00 -0000", 30.0),
        ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("1e3", None),
        ("nan", None),
        ("12 s", None),
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_date_defaults_to_now():
    assert 5 < parse_retry_after(formatdate(time.time() + 10, usegmt=True)) <= 10


def test_backoff_delay_is_capped_full_jitter():
    policy = HttpPolicy(backoff_base=0.5, backoff_max=4)
    top = FixedRandom(0.999999)
    assert [round(backoff_delay(n, policy, top), 3) for n in range(1, 7)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        4.0,
        4.0,
    ]
    assert backoff_delay(1000, policy, top) == pytest.approx(4.0, abs=1e-3)
    assert backoff_delay(3, policy, FixedRandom(0.0)) == 0.0
    rng = random.Random(7)
    samples = [backoff_delay(3, policy, rng) for _ in range(500)]
    assert all(0 <= s < 2.0 for s in samples)
    assert max(samples) - min(samples) > 1.0  # jittered, not constant
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(0, policy, rng)


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"backoff_base": -1}, "backoff_base"),
        ({"backoff_base": 5, "backoff_max": 1}, "backoff_max"),
        ({"max_retry_after": float("nan")}, "max_retry_after"),
        ({"total_budget": 0}, "total_budget"),
        ({"connect_timeout": -1}, "connect_timeout"),
        ({"read_timeout": float("inf")}, "read_timeout"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"rate_per_second": 0}, "rate_per_second"),
        ({"burst": 0}, "burst"),
        ({"retry_methods": "GET"}, "retry_methods"),
    ],
)
def test_policy_validation_names_the_setting(kwargs, setting):
    with pytest.raises(ValueError, match=f"HttpPolicy.{setting}"):
        HttpPolicy(**kwargs)


def test_policy_normalises_retry_methods():
    assert HttpPolicy(retry_methods={"get", "Put"}).retry_methods == frozenset({"GET", "PUT"})


@pytest.mark.parametrize("base_url", ["/relative", "ftp://h/x", "http://h:99999/x", "http:/x"])
def test_client_rejects_an_unusable_base_url(base_url):
    with pytest.raises(ValueError, match="base_url"):
        HttpClient(base_url)


def test_redirect_to_an_invalid_port_is_refused(server, make_client):
    server.on("/go", Reply(302, headers={"Location": "http://127.0.0.1:99999/x"}))
    client = make_client(server.origin)

    with pytest.raises(RedirectRefused, match="invalid port"):
        client.get("/go")


def test_leaving_the_context_closes_kept_alive_connections(server):
    server.on("/items", Reply(200))
    with HttpClient(server.origin) as client:
        assert client.get("/items").status_code == 200
        time.sleep(0.05)
        assert server.closed_connections == 0  # kept alive while the client is open

    deadline = time.monotonic() + 2
    while server.closed_connections == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.closed_connections == 1
