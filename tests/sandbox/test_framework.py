"""The sandbox framework, proven on its trivial echo emulator over real HTTPS on loopback."""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection, HTTPSConnection
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import requests
from werkzeug.routing import Rule

from contactsync_sandbox import cli
from contactsync_sandbox.client import SandboxControlError
from contactsync_sandbox.echo import EchoEmulator
from contactsync_sandbox.runner import DEFAULT_PORTS, REQUIRED_INFO_KEYS, Sandbox
from contactsync_sandbox.server import (
    NonLoopbackHostError,
    PortInUseError,
    ServerThread,
    require_loopback,
    route_template,
)
from contactsync_sandbox.tls import load_or_create_ca

ITEM = "GET /echo/items/{item_id}"


@pytest.fixture
def sb(sandbox_reset):
    return sandbox_reset


@pytest.fixture
def echo(sb):
    return sb.control("echo")


@pytest.fixture
def http(sb):
    with sb.session() as session:
        yield session


@pytest.fixture
def url(sb):
    return sb.url("echo")


# --------------------------------------------------------------------------- info, TLS, binding


def test_info_has_the_documented_keys(sb):
    info = sb.info
    for key in REQUIRED_INFO_KEYS:
        assert key in info
    # The real emulators arrive with their issues; until then their keys are present but null.
    assert (
        info["pipeliner_url"] == info["urls"]["pipeliner"]
        and info["graph_url"] == info["urls"]["graph"]
    )
    assert info["authority"] == f"{info['urls']['identity']}/{info['identity_tenant_id']}"
    assert Path(info["ca_path"]).is_file()
    assert info["urls"]["echo"].startswith("https://127.0.0.1:")
    assert info["control_urls"]["echo"] == info["urls"]["echo"] + "/_sandbox"


def test_default_ports_are_a_fixed_documented_block():
    assert DEFAULT_PORTS == {"pipeliner": 8701, "graph": 8702, "identity": 8703, "echo": 8709}


def test_tls_verifies_with_the_sandbox_ca_only(sb, http, url, capfd):
    assert http.get(f"{url}/echo/items", timeout=5).status_code == 200

    with requests.Session() as untrusting:
        untrusting.trust_env = False  # REQUESTS_CA_BUNDLE must not sneak a CA in
        with pytest.raises(requests.exceptions.SSLError):
            untrusting.get(f"{url}/echo/items", timeout=5)
    with pytest.raises(urllib.error.URLError) as caught:
        urllib.request.urlopen(f"{url}/echo/items", context=ssl.create_default_context(), timeout=5)
    assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)

    trusting = ssl.create_default_context(cafile=str(sb.ca_path))
    with urllib.request.urlopen(f"{url}/echo/items", context=trusting, timeout=5) as resp:
        assert resp.status == 200
    # A failed handshake costs the server nothing, and prints nothing.
    assert http.get(f"{url}/echo/items", timeout=5).status_code == 200
    assert "Traceback" not in capfd.readouterr().err


# --------------------------------------------------------------------------- persistent connections


def _exchange(conn: HTTPConnection, method: str, path: str, body: bytes = b"") -> tuple:
    conn.request(method, path, body=body or None, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, response.getheader("Connection"), response.read()


def test_a_connection_is_kept_alive_across_requests_of_every_kind(sb, url):
    """An HTTP/1.1 server keeps connections open (RFC 9112 §9.3), the sandbox's default: one TLS
    handshake serves many requests, whatever their method, body or status."""
    tls = ssl.create_default_context(cafile=str(sb.ca_path))
    conn = HTTPSConnection(url.removeprefix("https://"), context=tls, timeout=5)
    try:
        assert _exchange(conn, "GET", "/echo/items")[:2] == (200, None)
        sock = conn.sock
        assert _exchange(conn, "PUT", "/echo/items/7", b'{"n": 7}')[:2] == (201, None)
        assert _exchange(conn, "PUT", "/echo/items/7", b"{not json")[0] == 400
        assert _exchange(conn, "POST", "/echo/items")[0] == 405
        assert _exchange(conn, "DELETE", "/echo/items/7")[:2] == (204, None)
        assert _exchange(conn, "GET", "/echo/items/7")[0] == 404
        assert _exchange(conn, "GET", "/_sandbox/counters")[0] == 200
        assert conn.sock is sock  # never reconnected
    finally:
        conn.close()


def test_with_keep_alive_off_every_response_closes_its_connection(sb, url):
    """The switch's other way (werkzeug's own): `Connection: close` on every answer, until a
    reset turns keep-alive back on."""
    control = sb.control("echo")
    control.keep_alive(False)
    tls = ssl.create_default_context(cafile=str(sb.ca_path))
    conn = HTTPSConnection(url.removeprefix("https://"), context=tls, timeout=5)
    try:
        assert _exchange(conn, "PUT", "/echo/items/8", b'{"n": 8}')[:2] == (201, "close")
        assert _exchange(conn, "GET", "/echo/items/8")[:2] == (200, "close")
        with pytest.raises(SandboxControlError, match="keep_alive"):
            control._call("PUT", "/connections", json={"keep_alive": "no"})
    finally:
        conn.close()
        control.reset()
    assert control._call("GET", "/connections") == {"keep_alive": True}


def test_requests_sent_back_to_back_are_all_answered():
    """The next request may already wait behind a body on the connection: nothing may read
    past the body it belongs to (werkzeug's drain after a response would swallow it)."""
    with ServerThread(EchoEmulator()) as server, socket.create_connection(server.address) as sock:
        put = b'PUT /echo/items/5 HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n{"n": 5}'
        get = b"GET /echo/items/5 HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(put + get)
        sock.settimeout(5)
        replies = sock.makefile("rb")
        assert _read_reply(replies) == (201, {"id": "5", "n": 5})
        assert _read_reply(replies) == (200, {"id": "5", "n": 5})


def _read_reply(stream: BinaryIO) -> tuple[int, Any]:
    """One response with a Content-Length off a raw stream: (status, JSON body)."""
    status = int(stream.readline().split()[1])
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, json.loads(stream.read(int(headers["content-length"])))


def test_a_client_that_asks_to_close_is_answered_and_closed():
    with ServerThread(EchoEmulator()) as server, socket.create_connection(server.address) as sock:
        sock.sendall(b"GET /echo/items HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        sock.settimeout(5)
        reply = sock.makefile("rb").read()  # to end of stream: the server closed
    assert reply.startswith(b"HTTP/1.1 200") and b"\r\nConnection: close\r\n" in reply


def test_stopping_a_server_ends_its_kept_alive_connections():
    """A stopped sandbox answers nothing, even on a connection a client kept open."""
    server = ServerThread(EchoEmulator()).start()
    conn = HTTPConnection(*server.address, timeout=5)
    try:
        assert _exchange(conn, "GET", "/echo/items")[0] == 200
        server.stop()
        conn.sock.settimeout(5)
        assert conn.sock.recv(1) == b""
    finally:
        conn.close()
        server.stop()


def test_ca_is_created_once_and_reused(tmp_path):
    first = load_or_create_ca(tmp_path)
    ca_pem, key_pem = first.ca_path.read_bytes(), first.key_path.read_bytes()
    assert stat.S_IMODE(os.stat(first.key_path).st_mode) == 0o600
    assert first.ca_path == tmp_path.resolve() / "ca.pem"

    with Sandbox(tmp_path, free_ports=True) as again:
        assert again.info()["ca_path"] == str(first.ca_path)
        with requests.Session() as session:
            session.trust_env = False
            reply = session.get(
                f"{again.url('echo')}/echo/items", verify=str(first.ca_path), timeout=5
            )
            assert reply.status_code == 200
    assert first.ca_path.read_bytes() == ca_pem
    assert first.key_path.read_bytes() == key_pem


def test_default_ports_are_used_without_free_ports(tmp_path):
    port = DEFAULT_PORTS["echo"]
    fixed = Sandbox(tmp_path, emulators=["echo"])
    try:
        fixed.start()
    except PortInUseError:
        pytest.skip(f"default port {port} is taken on this machine (a running sandbox?)")
    try:
        assert fixed.info()["urls"]["echo"] == f"https://127.0.0.1:{port}"
    finally:
        fixed.stop()


def test_servers_listen_on_loopback_only(sb):
    for server in sb.sandbox.servers.values():
        assert server.address[0] == "127.0.0.1"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "::1", "example.com", ""])
def test_non_loopback_hosts_are_refused(host):
    with pytest.raises(NonLoopbackHostError):
        require_loopback(host)
    with pytest.raises(NonLoopbackHostError):
        ServerThread(EchoEmulator(), host=host)
    with pytest.raises(NonLoopbackHostError):
        Sandbox("unused", host=host)


def test_cli_refuses_a_non_loopback_host(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", "--host", "0.0.0.0", "--free-ports"])
    assert exited.value.code == 2
    assert "loopback" in capsys.readouterr().err


def test_loopback_aliases_are_accepted():
    assert require_loopback("localhost") == "127.0.0.1"
    assert require_loopback("127.0.0.1") == "127.0.0.1"


def test_a_taken_port_is_a_clear_error():
    with ServerThread(EchoEmulator()) as first, pytest.raises(PortInUseError, match="free-ports"):
        ServerThread(EchoEmulator(), port=first.port).start()


# --------------------------------------------------------------------------- routes and state


def test_echo_routes(http, url):
    assert http.get(f"{url}/echo/items").json() == {"value": [{"id": "1", "name": "first item"}]}
    created = http.put(f"{url}/echo/items/2", json={"name": "second"})
    assert (created.status_code, created.json()) == (201, {"id": "2", "name": "second"})
    assert http.put(f"{url}/echo/items/2", json={"name": "2nd"}).status_code == 200
    assert http.get(f"{url}/echo/items/2").json()["name"] == "2nd"
    assert http.delete(f"{url}/echo/items/2").status_code == 204

    missing = http.get(f"{url}/echo/items/2")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NotFound"
    unknown = http.get(f"{url}/nowhere")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "NotFound"
    wrong = http.post(f"{url}/echo/items")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "MethodNotAllowed"
    assert "GET" in wrong.headers["Allow"]
    bad = http.put(f"{url}/echo/items/3", data=b"{not json", headers={"Content-Type": "x"})
    assert bad.status_code == 400


def test_seed_and_state_round_trip(echo, http, url):
    seed = {"items": {"a": {"id": "a", "n": 1}, "b": {"id": "b", "n": [1, 2]}}}
    assert echo.seed(seed) == seed
    assert echo.state() == seed
    assert [i["id"] for i in http.get(f"{url}/echo/items").json()["value"]] == ["a", "b"]
    http.put(f"{url}/echo/items/c", json={"n": 3})
    assert set(echo.state()["items"]) == {"a", "b", "c"}

    refused = http.post(f"{url}/_sandbox/seed", json={"items": ["not", "a", "dict"]})
    assert refused.status_code == 400 and "items" in refused.json()["error"]["message"]
    assert set(echo.state()["items"]) == {"a", "b", "c"}

    assert echo.reset() == {"items": {"1": {"id": "1", "name": "first item"}}}


def test_subclass_control_route_and_control_errors(echo, http, url):
    assert http.post(f"{url}/_sandbox/echo/clear").json() == {"items": {}}
    index = http.get(f"{url}/_sandbox").json()
    assert index["emulator"] == "echo" and "POST /_sandbox/echo/clear" in index["control_routes"]
    assert http.get(f"{url}/_sandbox/nope").status_code == 404
    assert http.get(f"{url}/_sandbox/seed").status_code == 405


def test_route_templates():
    assert route_template(Rule("/users/<user_id>/contacts/<path:rest>")) == (
        "/users/{user_id}/contacts/{rest}"
    )


# --------------------------------------------------------------------------- counters


def test_counters_per_route_template_and_reset(echo, http, url):
    http.get(f"{url}/echo/items/1")
    http.get(f"{url}/echo/items/404")
    http.get(f"{url}/echo/items")
    http.get(f"{url}/nowhere")
    echo.state()  # control calls are never counted

    counters = echo.counters()
    assert counters["endpoints"][ITEM]["requests"] == 2
    assert counters["endpoints"][ITEM]["statuses"] == {"200": 1, "404": 1}
    assert counters["endpoints"]["GET /echo/items"]["requests"] == 1
    assert counters["endpoints"]["GET (no route)"]["statuses"] == {"404": 1}
    assert counters["total"]["requests"] == 4
    assert counters["total"]["statuses"] == {"200": 2, "404": 2}
    assert counters["total"]["in_flight"] == 0

    log = echo.requests()
    assert [(r["method"], r["path"], r["status"]) for r in log] == [
        ("GET", "/echo/items/1", 200),
        ("GET", "/echo/items/404", 404),
        ("GET", "/echo/items", 200),
        ("GET", "/nowhere", 404),
    ]

    reset = echo.reset_counters()
    assert reset["total"]["requests"] == 0 and reset["endpoints"] == {}
    assert echo.requests() == []
    assert echo.endpoint(ITEM)["requests"] == 0


def test_max_in_flight_is_measured(echo, url, sb):
    echo.latency(0.4, path_prefix="/echo/items/1")

    def call(_):
        with sb.session() as session:
            return session.get(f"{url}/echo/items/1", timeout=10).status_code

    with ThreadPoolExecutor(max_workers=5) as pool:
        assert list(pool.map(call, range(5))) == [200] * 5
    counters = echo.counters()
    assert counters["total"]["max_in_flight"] == 5
    assert counters["endpoints"][ITEM]["max_in_flight"] == 5
    assert counters["total"]["in_flight"] == 0


# --------------------------------------------------------------------------- faults


def test_429_burst_with_fractional_retry_after(echo, http, url):
    fault = echo.burst_429(count=3, retry_after=0.25)
    assert fault["kind"] == "429" and fault["remaining"] == 3
    replies = [http.get(f"{url}/echo/items/1") for _ in range(4)]
    assert [r.status_code for r in replies] == [429, 429, 429, 200]
    assert [r.headers.get("Retry-After") for r in replies[:3]] == ["0.25"] * 3
    assert "Retry-After" not in replies[3].headers
    assert replies[0].json()["error"]["code"] == "TooManyRequests"
    assert echo.endpoint(ITEM)["statuses"] == {"200": 1, "429": 3}
    assert echo.faults() == []


def test_429_whole_seconds_and_without_header(echo, http, url):
    echo.burst_429(count=1, retry_after=2)
    echo.burst_429(count=1, retry_after=None)
    assert http.get(f"{url}/echo/items").headers["Retry-After"] == "2"
    second = http.get(f"{url}/echo/items")
    assert second.status_code == 429 and "Retry-After" not in second.headers


def test_5xx_for_the_next_n_requests(echo, http, url):
    echo.fail_5xx(count=2, status=502)
    echo.fail_5xx(count=1)
    codes = [http.get(f"{url}/echo/items").status_code for _ in range(4)]
    assert codes == [502, 502, 503, 200]
    assert echo.counters()["total"]["statuses"] == {"200": 1, "502": 2, "503": 1}


def test_count_faults_queue_in_order(echo, http, url):
    echo.burst_429(count=1, retry_after=0)
    echo.fail_5xx(count=1, status=500)
    echo.drop(count=1)
    assert http.get(f"{url}/echo/items").status_code == 429
    assert http.get(f"{url}/echo/items").status_code == 500
    with pytest.raises(requests.ConnectionError):
        http.get(f"{url}/echo/items")
    assert http.get(f"{url}/echo/items").status_code == 200


def test_latency_is_applied(echo, http, url):
    echo.latency(0.3)
    started = time.monotonic()
    assert http.get(f"{url}/echo/items").status_code == 200
    assert time.monotonic() - started >= 0.3
    echo.clear_faults()
    started = time.monotonic()
    http.get(f"{url}/echo/items")
    assert time.monotonic() - started < 0.3

    echo.latency(0.2, count=1)
    echo.latency(0.2, count=1)  # latencies add up
    started = time.monotonic()
    http.get(f"{url}/echo/items")
    assert time.monotonic() - started >= 0.4
    assert echo.faults() == []


def test_drop_closes_the_connection_for_exactly_n_requests(echo, http, url, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    echo.drop(count=2)
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            http.get(f"{url}/echo/items/1", timeout=5)
    assert http.get(f"{url}/echo/items/1", timeout=5).status_code == 200
    assert echo.endpoint(ITEM)["statuses"] == {"200": 1, "dropped": 2}
    assert echo.counters()["total"]["in_flight"] == 0
    # The server logged no error or traceback about the connections it cut.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert "Traceback" not in capfd.readouterr().err


def test_drop_also_cuts_requests_with_a_body(echo, http, url):
    echo.drop(count=1, method="PUT")
    with pytest.raises(requests.ConnectionError):
        http.put(f"{url}/echo/items/9", json={"big": "x" * 200_000}, timeout=5)
    assert "9" not in echo.state()["items"]
    assert http.put(f"{url}/echo/items/9", json={"n": 9}).status_code == 201


def test_faults_never_apply_to_the_control_api(echo, http, url):
    echo.burst_429(count=3, retry_after=1)
    echo.drop(count=3)
    echo.latency(5)
    started = time.monotonic()
    assert http.get(f"{url}/_sandbox/state").status_code == 200
    assert http.get(f"{url}/_sandbox/counters").json()["total"]["requests"] == 0
    assert time.monotonic() - started < 1
    assert [f["remaining"] for f in echo.faults()] == [3, 3, None]
    refused = http.post(f"{url}/_sandbox/faults", json={"kind": "5xx", "path_prefix": "/_sandbox"})
    assert refused.status_code == 400


def test_path_prefix_and_method_scope_a_fault(echo, http, url):
    echo.fail_5xx(count=1, path_prefix="/echo/items/1")
    echo.burst_429(count=1, retry_after=1, method="PUT")
    assert http.get(f"{url}/echo/items").status_code == 200
    assert http.put(f"{url}/echo/items/7", json={}).status_code == 429
    assert http.get(f"{url}/echo/items/1").status_code == 503
    assert http.get(f"{url}/echo/items/1").status_code == 200
    assert http.put(f"{url}/echo/items/7", json={}).status_code == 201


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "teapot"},
        {"kind": "429", "count": 0},
        {"kind": "5xx", "status": 404},
        {"kind": "latency"},
        {"kind": "latency", "seconds": -1},
        {"kind": "drop", "count": "2"},
        {"kind": "drop", "path_prefix": "echo"},
        {"kind": "drop", "bogus": 1},
        ["not", "an", "object"],
    ],
)
def test_invalid_fault_specs_are_refused(http, url, spec):
    reply = http.post(f"{url}/_sandbox/faults", json=spec)
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "BadRequest"


def test_reset_clears_faults_and_counters(echo, http, url):
    echo.fail_5xx(count=5)
    http.get(f"{url}/echo/items")
    echo.reset()
    assert echo.faults() == [] and echo.counters()["total"]["requests"] == 0
    assert http.get(f"{url}/echo/items").status_code == 200


# --------------------------------------------------------------------------- the CLI


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("contactsync-sandbox")
    return [str(script)] if script.exists() else [sys.executable, "-m", "contactsync_sandbox.cli"]


def _read_line(stream, timeout: float) -> str:
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    try:
        if not selector.select(timeout):
            raise AssertionError(f"no output within {timeout}s")
        return stream.readline()
    finally:
        selector.close()


def test_cli_serve_prints_info_serves_and_stops_on_sigterm(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTSYNC_")}
    process = subprocess.Popen(
        [*_console_script(), "serve", "--free-ports", "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    try:
        line = _read_line(process.stdout, timeout=15)
        info = json.loads(line)
        assert set(REQUIRED_INFO_KEYS) <= set(info)
        assert info["ca_path"] == str((tmp_path / "state" / "ca.pem").resolve())
        with requests.Session() as session:
            session.trust_env = False
            reply = session.get(
                f"{info['urls']['echo']}/echo/items", verify=info["ca_path"], timeout=5
            )
        assert reply.status_code == 200
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert out == ""  # exactly one line on stdout: the info
    assert "Traceback" not in err
