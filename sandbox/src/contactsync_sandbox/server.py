"""The emulator base class and the thread that serves one emulator over HTTPS on loopback.

Every emulator is a WSGI app made of the routes of the service it imitates plus the same
control API under `/_sandbox/` (seed, state, reset, counters, request log, faults). The base
class owns everything that is the same for all of them, in this order for each request:
control API → (count the request) → faults → route. Subclasses only declare routes and own
their state.
"""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from typing import Any, ClassVar, NoReturn
from wsgiref.types import StartResponse, WSGIEnvironment

from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler, connection_dropped_errors
from werkzeug.wrappers import Request, Response

from .counters import DROPPED, UNMATCHED, RequestCounters
from .faults import (
    CONTROL_PREFIX,
    Fault,
    FaultInjector,
    FaultKind,
    FaultSpecError,
    format_retry_after,
)

log = logging.getLogger("contactsync_sandbox")

LOOPBACK = "127.0.0.1"
MAX_BODY_BYTES = 32 * 1024 * 1024
#: A route handler: `handler(request, **url_values) -> Response`.
Handler = Callable[..., Response]


class ApiError(Exception):
    """Raised by handlers; answered through `Emulator.error_response` (the service's format)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})


class DroppedConnection(ConnectionAbortedError):
    """The sandbox cut a connection on purpose (a `drop` fault); werkzeug treats it as quiet."""


class NonLoopbackHostError(ValueError):
    """The sandbox only ever listens on loopback."""


class PortInUseError(OSError):
    """The port is taken; the message says by what means to get around it."""


def require_loopback(host: str) -> str:
    """Return the IPv4 loopback address to bind for `host`, or refuse it."""
    if host == "localhost":
        return LOOPBACK
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or address.version != 4 or not address.is_loopback:
        raise NonLoopbackHostError(
            f"refusing to listen on {host!r}: the sandbox binds IPv4 loopback "
            f"(127.x.y.z) only, e.g. {LOOPBACK}"
        )
    return str(address)


def route_template(rule: Rule) -> str:
    """`/users/<user_id>/contacts/<path:rest>` → `/users/{user_id}/contacts/{rest}`."""
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule)


class Emulator:
    """Base of every sandbox emulator: a WSGI app with routes, state and the control API.

    Subclasses set `name`, return their routes from `rules()` (endpoints are handlers
    `handler(request, **values) -> Response`), and implement `default_seed`, `seed` (replace
    the whole state) and `snapshot` (the state as JSON). Handlers run one at a time under
    `self.lock` unless `serialize_handlers` is False, so a simple emulator needs no locking;
    latency faults are applied before the lock, so concurrency stays observable.
    """

    name: ClassVar[str] = "emulator"
    serialize_handlers: ClassVar[bool] = True

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.faults = FaultInjector()
        self.counters = RequestCounters()
        #: Whether connections stay open between requests (see `_RequestHandler`). No vendor
        #: page says so for Graph or Pipeliner, so it is a switch (`/_sandbox/connections`) and
        #: the product is tested both ways; on by default, as HTTP/1.1 servers do.
        self.keep_alive = True
        self._api = Map(list(self.rules()), strict_slashes=False, merge_slashes=False)
        own = list(self.control_rules())
        for rule in own:
            if not rule.rule.startswith(CONTROL_PREFIX + "/"):
                raise ValueError(f"control route {rule.rule!r} must live under {CONTROL_PREFIX}/")
        self._control = Map(
            [*self._base_control_rules(), *own], strict_slashes=False, merge_slashes=False
        )
        #: What `reset()` returns to: None for `default_seed()`, else a seed given at start-up.
        self.base_seed: Any = None
        with self.lock:
            self.seed(self.default_seed())

    # ----------------------------------------------------------------- subclass hooks

    def rules(self) -> Iterable[Rule]:
        """The routes of the emulated service."""
        return ()

    def control_rules(self) -> Iterable[Rule]:
        """Extra control routes, e.g. `Rule("/_sandbox/expire-tokens", ...)`."""
        return ()

    def default_seed(self) -> Any:
        """The state the emulator starts with and returns to on `/_sandbox/reset`."""
        return {}

    def seed(self, data: Any) -> None:
        """Replace the whole state with `data` (raise ValueError on a malformed seed)."""
        raise NotImplementedError

    def snapshot(self) -> Any:
        """The whole state as JSON-serialisable data."""
        raise NotImplementedError

    def info(self, base_url: str) -> dict[str, Any]:
        """Keys this emulator contributes to `Sandbox.info()` (e.g. `graph_url`)."""
        return {}

    def error_response(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """An error in the emulated service's own format; the default is Graph-like."""
        return self.json_response({"error": {"code": code, "message": message}}, status, headers)

    def fault_response(self, fault: Fault) -> Response:
        """The answer to a 429 or 5xx fault, in the service's error format."""
        if fault.kind is FaultKind.TOO_MANY_REQUESTS:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = format_retry_after(fault.retry_after)
            return self.error_response(
                429, "TooManyRequests", "Too many requests (sandbox fault).", headers
            )
        status = fault.status or 503
        return self.error_response(
            status,
            "ServiceUnavailable" if status == 503 else "InternalServerError",
            f"HTTP {status} (sandbox fault).",
        )

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def json_response(
        data: Any,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        mimetype: str = "application/json",
    ) -> Response:
        body = json.dumps(data, ensure_ascii=False, default=str)
        return Response(body, status=status, headers=dict(headers or {}), mimetype=mimetype)

    @staticmethod
    def read_json(request: Request) -> Any:
        """The request body as JSON, or an `ApiError` 400."""
        raw = request.get_data(cache=True)
        try:
            return json.loads(raw) if raw else None
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"the body is not valid JSON: {exc}") from None

    def use_seed(self, data: Any) -> None:
        """Start from `data` instead of the default seed, also after every `reset()`."""
        with self.lock:
            self.seed(data)
            self.base_seed = data

    def reset(self) -> None:
        """Back to the start (the default seed, or the one given to `use_seed`), no faults,
        zero counters."""
        with self.lock:
            self.seed(self.default_seed() if self.base_seed is None else self.base_seed)
        self.faults.clear()
        self.counters.reset()
        self.keep_alive = True

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = MAX_BODY_BYTES
        path = request.path
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            response = self._serve_control(request)
        else:
            response = self._serve_api(request)
        return response(environ, start_response)

    def _serve_api(self, request: Request) -> Response:
        adapter = self._api.bind_to_environ(request.environ)
        handler: Handler | None = None
        values: dict[str, Any] = {}
        routing_error: HTTPException | None = None
        try:
            rule, values = adapter.match(return_rule=True)
            handler = rule.endpoint
            endpoint = f"{request.method} {route_template(rule)}"
        except HTTPException as exc:  # NotFound, MethodNotAllowed (no redirects: see Map)
            routing_error = exc
            endpoint = f"{request.method} {UNMATCHED}"
            if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
                # Count a 405 under the route the path matched, with the method that was used.
                rule, _ = adapter.match(method=exc.valid_methods[0], return_rule=True)
                endpoint = f"{request.method} {route_template(rule)}"
        started = self.counters.started(endpoint)
        status: int | str = DROPPED
        try:
            response = self._answer(request, handler, values, routing_error)
            status = response.status_code
            return response
        finally:
            self.counters.finished(
                endpoint,
                status,
                started,
                method=request.method,
                path=request.path,
                query=request.query_string.decode("latin-1"),
            )

    def _answer(
        self,
        request: Request,
        handler: Handler | None,
        values: dict[str, Any],
        routing_error: HTTPException | None,
    ) -> Response:
        verdict = self.faults.next_for(request.method, request.path)
        if verdict.delay:
            time.sleep(verdict.delay)
        if verdict.fault is not None:
            if verdict.fault.kind is FaultKind.DROP:
                self._drop(request)
            return self.fault_response(verdict.fault)
        if isinstance(routing_error, MethodNotAllowed):
            allowed = ", ".join(sorted(routing_error.valid_methods or ()))
            return self.error_response(
                405,
                "MethodNotAllowed",
                f"{request.method} is not allowed on {request.path}",
                {"Allow": allowed},
            )
        if routing_error is not None or handler is None:
            return self.error_response(404, "NotFound", f"no route for {request.path}")
        try:
            if self.serialize_handlers:
                with self.lock:
                    return handler(request, **values)
            return handler(request, **values)
        except ApiError as exc:
            return self.error_response(exc.status, exc.code, exc.message, exc.headers)
        except HTTPException as exc:  # e.g. RequestEntityTooLarge from werkzeug
            return self.error_response(exc.code or 500, type(exc).__name__, exc.description or "")
        except Exception:
            log.exception("%s: handler failed on %s %s", self.name, request.method, request.path)
            return self.error_response(500, "InternalServerError", "sandbox emulator bug")

    def _drop(self, request: Request) -> NoReturn:
        """Cut the TCP connection without sending a byte of response."""
        log.info("%s %s %s dropped (sandbox fault)", self.name, request.method, request.path)
        sock = request.environ.get("werkzeug.socket")
        if sock is not None:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        raise DroppedConnection("connection dropped by a sandbox fault")

    # ------------------------------------------------------------------ control API

    def _base_control_rules(self) -> list[Rule]:
        p = CONTROL_PREFIX
        return [
            Rule(p, endpoint=self._c_index, methods=["GET"]),
            Rule(f"{p}/state", endpoint=self._c_state, methods=["GET"]),
            Rule(f"{p}/info", endpoint=self._c_info, methods=["GET"]),
            Rule(f"{p}/seed", endpoint=self._c_seed, methods=["POST"]),
            Rule(f"{p}/reset", endpoint=self._c_reset, methods=["POST"]),
            Rule(f"{p}/counters", endpoint=self._c_counters, methods=["GET"]),
            Rule(f"{p}/counters/reset", endpoint=self._c_counters_reset, methods=["POST"]),
            Rule(f"{p}/requests", endpoint=self._c_requests, methods=["GET"]),
            Rule(f"{p}/faults", endpoint=self._c_faults, methods=["GET"]),
            Rule(f"{p}/faults", endpoint=self._c_add_fault, methods=["POST"]),
            Rule(f"{p}/faults", endpoint=self._c_clear_faults, methods=["DELETE"]),
            Rule(f"{p}/connections", endpoint=self._c_connections, methods=["GET", "PUT"]),
        ]

    def _serve_control(self, request: Request) -> Response:
        adapter = self._control.bind_to_environ(request.environ)
        try:
            handler, values = adapter.match()
            return handler(request, **values)
        except NotFound:
            return self._control_error(404, "NotFound", f"no control route {request.path}")
        except MethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.valid_methods or ()))
            return self._control_error(
                405, "MethodNotAllowed", f"{request.method} not allowed", {"Allow": allowed}
            )
        except (ApiError, FaultSpecError, ValueError) as exc:
            if isinstance(exc, ApiError):
                return self._control_error(exc.status, exc.code, exc.message)
            return self._control_error(400, "BadRequest", str(exc))
        except HTTPException as exc:
            return self._control_error(exc.code or 500, type(exc).__name__, exc.description or "")

    def _control_error(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        return self.json_response({"error": {"code": code, "message": message}}, status, headers)

    def _c_index(self, request: Request) -> Response:
        routes = sorted(
            f"{method} {rule.rule}"
            for rule in self._control.iter_rules()
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        )
        return self.json_response({"emulator": self.name, "control_routes": routes})

    def _c_state(self, request: Request) -> Response:
        with self.lock:
            return self.json_response(self.snapshot())

    def _c_info(self, request: Request) -> Response:
        """This emulator's keys of the JSON line, for the data it holds now (a new seed may
        change the space, the keys or the tenant)."""
        with self.lock:
            return self.json_response(self.info(request.host_url.rstrip("/")))

    def _c_seed(self, request: Request) -> Response:
        data = self.read_json(request)
        if data is None:
            raise ValueError("POST /_sandbox/seed needs a JSON body")
        with self.lock:
            self.seed(data)
            return self.json_response(self.snapshot())

    def _c_reset(self, request: Request) -> Response:
        self.reset()
        with self.lock:
            return self.json_response(self.snapshot())

    def _c_counters(self, request: Request) -> Response:
        return self.json_response(self.counters.snapshot())

    def _c_counters_reset(self, request: Request) -> Response:
        self.counters.reset()
        return self.json_response(self.counters.snapshot())

    def _c_requests(self, request: Request) -> Response:
        return self.json_response({"requests": self.counters.requests()})

    def _c_faults(self, request: Request) -> Response:
        return self.json_response({"faults": self.faults.active()})

    def _c_add_fault(self, request: Request) -> Response:
        fault = self.faults.add(self.read_json(request))
        return self.json_response(fault.to_json(), 201)

    def _c_connections(self, request: Request) -> Response:
        """`{"keep_alive": bool}`: keep connections open between requests, or close each after
        its response (werkzeug's own behaviour)."""
        if request.method == "PUT":
            body = self.read_json(request)
            if not (
                isinstance(body, dict)
                and set(body) == {"keep_alive"}
                and isinstance(body["keep_alive"], bool)
            ):
                raise ValueError('expected {"keep_alive": true|false}')
            self.keep_alive = body["keep_alive"]
        return self.json_response({"keep_alive": self.keep_alive})

    def _c_clear_faults(self, request: Request) -> Response:
        self.faults.clear()
        return self.json_response({"faults": []})


# ---------------------------------------------------------------------- serving


class _RequestHandler(WSGIRequestHandler):
    """Werkzeug's handler, with HTTP/1.1 persistent connections, the TLS handshake off the
    accept loop, and quiet logging.

    An HTTP/1.1 server keeps a client's connection open between requests unless either side
    says otherwise (RFC 9112 §9.3), so a client pays one TLS handshake per connection, not per
    request. Neither Microsoft's nor Pipeliner's pages say how their servers behave, so each
    emulator has a switch (`keep_alive`, control route `/_sandbox/connections`; off is
    werkzeug's close-after-every-response) and tests/reliability/test_vendor_facts.py syncs
    under both. Werkzeug's `run_wsgi` closes
    every connection instead (it cannot tell where an unread request body ends, so after each
    response it drains the socket, which would swallow the next request of a kept-alive
    connection). `run_wsgi` here reads a request body of known length whole before the app
    runs, so the stream is at the next request line when the response is sent; requests it
    cannot frame that way (chunked, `Expect: 100-continue`, over `MAX_BODY_BYTES`) go to
    werkzeug's own `run_wsgi` and end their connection as before.
    """

    protocol_version = "HTTP/1.1"
    #: The status line and headers go out in one write and the body in another; with Nagle's
    #: algorithm the second waits for the client's delayed ACK (~40 ms) on a kept-alive
    #: connection.
    disable_nagle_algorithm = True
    #: Seconds a client may stay silent (handshake, request line, between requests of a
    #: kept-alive connection) before the sandbox closes its connection.
    timeout = 60
    _handshake_failed = False
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (OSError, ValueError) as exc:  # a client that does not trust our CA, a scan
                self._handshake_failed = True
                log.debug("TLS handshake failed from %s: %s", self.client_address, exc)

    def handle(self) -> None:
        if not self._handshake_failed:
            super().handle()

    def finish(self) -> None:
        self.server.untrack(self.connection)
        super().finish()

    def _framed_body(self) -> bytes | None:
        """The request body read whole, or None for a request werkzeug must handle (and close)."""
        if self.headers.get("Transfer-Encoding") or self.headers.get("Expect"):
            return None
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            return b""  # no Content-Length, no Transfer-Encoding: no body (RFC 9112 §6.3)
        if len(set(lengths)) != 1 or not lengths[0].strip().isdigit():
            return None
        length = int(lengths[0])
        if length > MAX_BODY_BYTES:
            return None  # werkzeug answers 413 and drains what it can
        body = self.rfile.read(length)
        if len(body) != length:
            raise ConnectionResetError("the client closed the connection inside a request body")
        return body

    def run_wsgi(self) -> None:
        if not getattr(self.server.app, "keep_alive", True):
            super().run_wsgi()  # werkzeug's own: `Connection: close` after every response
            self.close_connection = True
            return
        try:
            body = self._framed_body()
        except connection_dropped_errors as exc:
            self.connection_dropped(exc)
            return
        if body is None:
            super().run_wsgi()
            self.close_connection = True  # werkzeug sent `Connection: close`; say so here too
            return
        self.environ = environ = self.make_environ()
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        sent = False
        chunked = False
        status_set: str | None = None
        headers_set: list[tuple[str, str]] = []

        def write(data: bytes) -> None:
            nonlocal sent, chunked
            if status_set is None:
                raise AssertionError("write() before start_response")
            if not sent:
                sent = True
                code_text, _, reason = status_set.partition(" ")
                code = int(code_text)
                self.send_response(code, reason)
                keys = set()
                for key, value in headers_set:
                    self.send_header(key, value)
                    keys.add(key.lower())
                if not (
                    "content-length" in keys
                    or environ["REQUEST_METHOD"] == "HEAD"
                    or 100 <= code < 200
                    or code in (204, 304)
                ):
                    chunked = True
                    self.send_header("Transfer-Encoding", "chunked")
                if self.close_connection:  # the client asked for it, or spoke HTTP/1.0
                    self.send_header("Connection", "close")
                self.end_headers()
            if data:
                if chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                else:
                    self.wfile.write(data)
            self.wfile.flush()

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            nonlocal status_set, headers_set
            if exc_info and sent:
                raise exc_info[1].with_traceback(exc_info[2])
            status_set, headers_set = status, headers
            return write

        try:
            chunks = self.server.app(environ, start_response)
            try:
                for data in chunks:
                    write(data)
                if not sent:
                    write(b"")
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
            finally:
                if hasattr(chunks, "close"):
                    chunks.close()
        except connection_dropped_errors as exc:
            self.connection_dropped(exc, environ)
        except Exception as exc:
            self.close_connection = True  # a response cut short cannot be framed any more
            log.error(
                "%s: error on %s %s",
                getattr(self.server.app, "name", "?"),
                self.command,
                self.path,
                exc_info=exc,
            )
            if not sent:
                with suppress(Exception):
                    status_set, headers_set = None, []
                    error = InternalServerError()
                    for data in error(environ, start_response):
                        write(data)

    def connection_dropped(
        self,
        error: BaseException,
        environ: WSGIEnvironment | None = None,
    ) -> None:
        self.close_connection = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Sparingly: failures (incl. injected faults) at INFO, the rest only with --verbose.
        level = logging.INFO if str(code)[:1] in ("4", "5") else logging.DEBUG
        log.log(
            level,
            "%s %s %s %s",
            getattr(self.server.app, "name", "?"),
            self.command,
            self.path,
            code,
        )

    def log(self, type: str, message: str, *args: Any) -> None:
        level = logging.WARNING if type in ("error", "warning") else logging.DEBUG
        log.log(level, message, *args)


class _Server(ThreadedWSGIServer):
    """Werkzeug's threaded server, logging through our logger instead of printing, that knows
    its open connections so that stopping it also ends the kept-alive ones (a stopped sandbox
    answers nothing, as a stopped service would)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def track(self, connection: socket.socket) -> None:
        with self._open_lock:
            self._open.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(connection)

    def close_connections(self) -> None:
        """End every open connection; their threads see end-of-stream and finish."""
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def log(self, type: str, message: str, *args: Any) -> None:
        log.log(logging.ERROR if type == "error" else logging.DEBUG, message, *args)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class ServerThread:
    """Serve one WSGI app on 127.0.0.1 in a background thread (port 0 = a free port).

    Binding happens in `start()` in the caller's thread, so a taken port is an exception the
    caller sees (werkzeug itself would `sys.exit`).
    """

    def __init__(
        self,
        app: Callable[..., Any],
        *,
        port: int = 0,
        host: str = LOOPBACK,
        ssl_context: ssl.SSLContext | None = None,
        name: str | None = None,
    ) -> None:
        self.app = app
        self.host = require_loopback(host)
        self.requested_port = port
        self.ssl_context = ssl_context
        self.name = name or getattr(app, "name", "server")
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{self.name} is not started")
        return int(self._server.server_address[1])

    @property
    def address(self) -> tuple[str, int]:
        """The address the listening socket is bound to."""
        if self._server is None:
            raise RuntimeError(f"{self.name} is not started")
        host, port = self._server.socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def start(self) -> ServerThread:
        if self._server is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind((self.host, self.requested_port))
            except OSError as exc:
                error = PortInUseError(
                    f"{self.name}: cannot listen on {self.host}:{self.requested_port} "
                    f"({exc.strerror}); stop whatever holds it, or use free ports "
                    "(contactsync-sandbox serve --free-ports)"
                )
                error.errno = exc.errno
                raise error from exc
            listener.listen(128)
            server = _Server(
                self.host,
                self.requested_port,
                self.app,
                handler=_RequestHandler,
                ssl_context=self.ssl_context,
                fd=listener.fileno(),
            )
        finally:
            listener.close()  # werkzeug dup()ed the descriptor
        if self.ssl_context is not None:
            # Handshake in the request thread (see _RequestHandler.setup), not in accept().
            server.socket.do_handshake_on_connect = False  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"sandbox-{self.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        if thread is not None:
            thread.join(timeout)
        server.close_connections()
        server.server_close()
        self._server = self._thread = None

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
