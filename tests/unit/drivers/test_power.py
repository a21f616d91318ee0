"""Power drivers through a real session: the mock supplies, `HttpPower` against a local HTTP
server, `PowerClient` and `j power ...`."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from jumpstarter.common.utils import serve
from jumpstarter.errors import ConfigurationError
from jumpstarter_driver_composite.driver import Composite
from jumpstarter_driver_power.client import PowerClient
from jumpstarter_driver_power.common import HttpPowerError, PowerReading
from jumpstarter_driver_power.driver import MockPower, SyncMockPower
from jumpstarter_driver_power.http import HttpPower
from tests.unit.drivers.conftest import drivers_from_yaml, run_j

UPSTREAM_READINGS = [PowerReading(voltage=0.0, current=0.0), PowerReading(voltage=5.0, current=2.0)]


# ---- mock supplies ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [MockPower, SyncMockPower])
def test_mock_supply_switches_and_reads_like_upstream(cls: type[MockPower]) -> None:
    driver = cls()
    with serve(driver) as power:
        assert isinstance(power, PowerClient)
        assert driver.state is None
        power.on()
        assert driver.state is True
        power.off()
        assert driver.state is False
        assert list(power.read()) == UPSTREAM_READINGS


@pytest.mark.parametrize("cls", [MockPower, SyncMockPower])
def test_endless_reading_stream_stops_when_the_client_stops(cls: type[MockPower]) -> None:
    with serve(cls(samples=0, voltage=12, current=0.5)) as power:
        readings = power.read()
        taken = list(itertools.islice(readings, 500))
        readings.close()
        assert taken[0] == PowerReading(voltage=0, current=0)
        assert all(reading == PowerReading(voltage=12.0, current=0.5) for reading in taken[1:])
        power.on()  # the session is still fine afterwards


def test_reading_apparent_power() -> None:
    assert PowerReading(voltage=230, current=0.5).apparent_power == 115


def test_cycle_ends_with_the_power_on() -> None:
    driver = MockPower()
    with serve(driver) as power:
        power.cycle(wait=0)
    assert driver.state is True


@pytest.mark.parametrize(
    ("config", "error", "field_name"),
    [
        ({"samples": -1}, ValueError, "samples"),
        ({"voltage": "high"}, TypeError, "voltage"),
        ({"interval": -0.5}, ValueError, "interval"),
    ],
)
def test_mock_supply_config_errors_name_the_field(config: dict[str, Any], error: type[Exception],
                                                  field_name: str) -> None:
    with pytest.raises(error, match=field_name):
        MockPower(**config)


def test_upstream_type_strings_load_from_an_exporter_config() -> None:
    root = drivers_from_yaml(
        "  power:\n    type: jumpstarter_driver_power.driver.MockPower\n"
        "  sync:\n    type: SyncMockPower\n    config: {voltage: 3.3, current: 0.1}\n"
    )
    with serve(root) as client:
        client.power.on()
        assert list(client.sync.read())[1] == PowerReading(voltage=3.3, current=0.1)


def test_j_power_commands(capsys: pytest.CaptureFixture[str]) -> None:
    driver = MockPower()
    with serve(Composite(children={"power": driver})) as root:
        assert run_j(root, "power", "on") == 0
        assert driver.state is True
        assert run_j(root, "power", "off") == 0
        assert driver.state is False
        assert run_j(root, "power", "cycle", "--wait", "0") == 0
        assert driver.state is True
        capsys.readouterr()
        assert run_j(root, "power", "read") == 0
        assert capsys.readouterr().out.splitlines() == ["0.000 V  0.000 A  0.000 VA", "5.000 V  2.000 A  10.000 VA"]
        assert run_j(root, "power", "read", "--count", "1") == 0
        assert capsys.readouterr().out.splitlines() == ["0.000 V  0.000 A  0.000 VA"]
        assert run_j(root, "power", "read", "--count", "0") == 2
        assert run_j(root, "power", "--help") == 0
        assert "cycle" in capsys.readouterr().out


# ---- HttpPower against a local HTTP server ---------------------------------------------------


@dataclass
class Plug:
    """A local HTTP server standing in for a smart plug: records requests, answers per path."""

    server: ThreadingHTTPServer
    requests: list[dict[str, Any]] = field(default_factory=list)
    answers: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    digest: tuple[str, str] | None = None  # (user, password) the plug demands via digest auth
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"


def _digest_ok(header: str, method: str, user: str, password: str) -> bool:
    if not header.startswith("Digest "):
        return False
    parts = dict(item.strip().split("=", 1) for item in header[len("Digest "):].split(","))
    values = {k: v.strip('"') for k, v in parts.items()}
    ha1 = hashlib.md5(f"{user}:{values['realm']}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{values['uri']}".encode()).hexdigest()
    expected = hashlib.md5(
        f"{ha1}:{values['nonce']}:{values['nc']}:{values['cnonce']}:{values['qop']}:{ha2}".encode()
    ).hexdigest()
    return values.get("username") == user and values.get("response") == expected


@pytest.fixture
def plug() -> Iterator[Plug]:
    state: dict[str, Plug] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            current = state["plug"]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if current.digest is not None and not _digest_ok(self.headers.get("Authorization", ""),
                                                            self.command, *current.digest):
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Digest realm="plug", nonce="n0nce", qop="auth", algorithm=MD5')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            current.requests.append({"method": self.command, "path": self.path, "body": body,
                                     "headers": dict(self.headers)})
            if self.path == "/hang":
                current.release.wait(10)
            status, answer = current.answers.get(self.path, (200, b"ok"))
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_GET = do_POST = do_PUT = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state["plug"] = Plug(server)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state["plug"]
    finally:
        state["plug"].release.set()
        server.shutdown()
        server.server_close()


def test_http_power_sends_the_configured_requests_in_order(plug: Plug) -> None:
    driver = HttpPower(
        power_on={"url": f"{plug.url}/relay/0?turn=on", "method": "post", "data": '{"on": true}',
                  "headers": {"Content-Type": "application/json"}},
        power_off={"url": f"{plug.url}/relay/0?turn=off"},
        auth={"basic": {"user": "admin", "password": "s3cret"}},
    )
    with serve(driver) as power:
        power.on()
        power.cycle(wait=0)
    assert [(r["method"], r["path"]) for r in plug.requests] == [
        ("POST", "/relay/0?turn=on"), ("GET", "/relay/0?turn=off"), ("POST", "/relay/0?turn=on"),
    ]
    first = plug.requests[0]
    assert first["body"] == b'{"on": true}'
    assert first["headers"]["Content-Type"] == "application/json"
    expected = "Basic " + base64.b64encode(b"admin:s3cret").decode()
    assert all(r["headers"]["Authorization"] == expected for r in plug.requests)


def test_http_power_digest_auth(plug: Plug) -> None:
    plug.digest = ("admin", "pw")
    driver = HttpPower(
        power_on={"url": f"{plug.url}/rpc/Switch.Set?on=true"},
        power_off={"url": f"{plug.url}/rpc/Switch.Set?on=false", "method": "POST", "data": "x"},
        auth={"digest": {"user": "admin", "password": "pw"}},
    )
    with serve(driver) as power:
        power.on()
        power.off()
    assert [r["path"] for r in plug.requests] == ["/rpc/Switch.Set?on=true", "/rpc/Switch.Set?on=false"]
    assert plug.requests[1]["body"] == b"x"


def test_http_power_error_status_is_reported(plug: Plug) -> None:
    plug.answers["/off"] = (503, b"relay is locked")
    driver = HttpPower(power_on={"url": f"{plug.url}/on"}, power_off={"url": f"{plug.url}/off"})
    with serve(driver) as power:
        with pytest.raises(HttpPowerError, match=r"power_off: GET http://.*/off answered 503 .*relay is locked"):
            power.off()


def test_http_power_wrong_credentials_are_reported(plug: Plug) -> None:
    plug.digest = ("admin", "pw")
    driver = HttpPower(power_on={"url": f"{plug.url}/on"}, power_off={"url": f"{plug.url}/off"},
                       auth={"digest": {"user": "admin", "password": "wrong"}})
    with serve(driver) as power, pytest.raises(HttpPowerError, match="answered 401"):
        power.on()


def test_http_power_unreachable_device() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    driver = HttpPower(power_on={"url": f"{base}/on"}, power_off={"url": f"{base}/off"})
    with serve(driver) as power, pytest.raises(HttpPowerError, match=re.escape(f"power_on: GET {base}/on failed")):
        power.on()


def test_http_power_timeout(plug: Plug) -> None:
    driver = HttpPower(power_on={"url": f"{plug.url}/hang"}, power_off={"url": f"{plug.url}/off"}, timeout=0.2)
    with serve(driver) as power, pytest.raises(TimeoutError, match=r"no answer within 0\.2 s"):
        power.on()


def test_http_power_read_parses_json(plug: Plug) -> None:
    plug.answers["/status"] = (200, json.dumps({"meters": [{"voltage": 229.5, "current": "0.25"}]}).encode())
    plug.answers["/flat"] = (200, b'{"voltage": 12, "power": 3}')
    nested = HttpPower(power_on={"url": f"{plug.url}/on"}, power_off={"url": f"{plug.url}/off"},
                       power_read={"url": f"{plug.url}/status", "voltage_path": "meters.0.voltage",
                                   "current_path": "meters.0.current"})
    flat = HttpPower(power_on={"url": f"{plug.url}/on"}, power_off={"url": f"{plug.url}/off"},
                     power_read={"url": f"{plug.url}/flat"})
    with serve(Composite(children={"nested": nested, "flat": flat})) as root:
        assert list(root.nested.read()) == [PowerReading(voltage=229.5, current=0.25)]
        assert list(root.flat.read()) == [PowerReading(voltage=12, current=0)]  # no current reported: 0


def test_http_power_read_problems(plug: Plug) -> None:
    plug.answers["/html"] = (200, b"<html>")
    driver = HttpPower(power_on={"url": f"{plug.url}/on"}, power_off={"url": f"{plug.url}/off"},
                       power_read={"url": f"{plug.url}/html"})
    unmetered = HttpPower(power_on={"url": f"{plug.url}/on"}, power_off={"url": f"{plug.url}/off"})
    with serve(Composite(children={"metered": driver, "unmetered": unmetered})) as root:
        with pytest.raises(HttpPowerError, match="did not answer JSON"):
            list(root.metered.read())
        with pytest.raises(NotImplementedError, match="no power_read endpoint"):
            list(root.unmetered.read())


@pytest.mark.parametrize(
    ("config", "error", "needle"),
    [
        ({"power_on": {"method": "GET"}}, ValueError, "power_on.url: Field required"),
        ({"power_on": {"url": "ftp://plug/on"}}, ValueError, "power_on.url"),
        ({"power_on": {"url": "http://plug/on", "method": "GET /x"}}, ValueError, "power_on.method"),
        ({"power_on": {"url": "http://plug/on", "verb": "GET"}}, ValueError, "power_on.verb"),
        ({"power_on": "http://plug/on"}, TypeError, "power_on: expected a mapping"),
        ({"auth": {"basic": {"user": "a"}, "digest": {"user": "b"}}}, ValueError, "auth: basic and digest"),
        ({"timeout": 0}, ValueError, "timeout"),
    ],
)
def test_http_power_config_errors_name_the_field(config: dict[str, Any], error: type[Exception],
                                                 needle: str) -> None:
    arguments: dict[str, Any] = {"power_on": {"url": "http://plug/on"}, "power_off": {"url": "http://plug/off"}}
    arguments.update(config)
    with pytest.raises(error, match=needle.replace(".", r"\.")):
        HttpPower(**arguments)


def test_http_power_upstream_config_loads_and_j_works(plug: Plug, capsys: pytest.CaptureFixture[str]) -> None:
    """Upstream's package path and field names, from an exporter config, driven by `j`."""
    root = drivers_from_yaml(
        "  power:\n"
        "    type: jumpstarter_driver_http_power.driver.HttpPower\n"
        "    config:\n"
        "      name: bench-plug\n"
        f"      power_on: {{url: '{plug.url}/on', method: PUT, data: 'on'}}\n"
        f"      power_off: {{url: '{plug.url}/off'}}\n"
        f"      power_read: {{url: '{plug.url}/meter'}}\n"
    )
    plug.answers["/meter"] = (200, b'{"voltage": 5, "current": 1.5}')
    with serve(root) as client:
        assert run_j(client, "power", "on") == 0
        assert run_j(client, "power", "read") == 0
        assert capsys.readouterr().out == "5.000 V  1.500 A  7.500 VA\n"
        plug.answers["/off"] = (500, b"")
        assert run_j(client, "power", "off") == 1
        assert "answered 500" in capsys.readouterr().err
    assert [(r["method"], r["path"], r["body"]) for r in plug.requests] == [
        ("PUT", "/on", b"on"), ("GET", "/meter", b""), ("GET", "/off", b"")]


def test_bad_http_power_config_in_an_exporter_config_names_the_entry() -> None:
    with pytest.raises(ConfigurationError, match=r"export\.power.*power_off\.url: Field required"):
        drivers_from_yaml(
            "  power:\n    type: HttpPower\n    config:\n"
            "      power_on: {url: 'http://plug/on'}\n      power_off: {method: GET}\n"
        )
