"""`HttpPower`: power switches driven by HTTP requests (PDUs, smart plugs such as Shelly or Tasmota).

Each action (`power_on`, `power_off`, optionally `power_read`) is one request: method, URL,
optional body and headers; credentials (basic or digest) apply to all of them. A status other
than 2xx/3xx is an error. Field names follow upstream's `jumpstarter_driver_http_power`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from jumpstarter.driver import Driver, export
from jumpstarter_driver_power.common import HttpPowerError, PowerReading
from jumpstarter_driver_power.driver import PowerInterface

#: Methods that carry the configured body; upstream ignores `data` on the others.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Bytes of an error response quoted in the error message.
QUOTED_BODY = 200


class HttpEndpointConfig(BaseModel):
    """One HTTP request: where, how, and for `power_read` where the numbers are in the JSON answer."""

    model_config = ConfigDict(extra="forbid")

    url: str
    method: str = "GET"
    data: str | None = None
    headers: dict[str, str] = {}
    #: Dotted path of the voltage in the JSON answer of `power_read` (`emeter.0.voltage`); default `voltage`.
    voltage_path: str | None = None
    #: Dotted path of the current in the JSON answer of `power_read`; default `current`.
    current_path: str | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, got {url!r}")
        return url

    @field_validator("method")
    @classmethod
    def _token(cls, method: str) -> str:
        if not method.isalpha():
            raise ValueError(f"must be an HTTP method such as GET or POST, got {method!r}")
        return method.upper()


class HttpBasicAuth(BaseModel):
    """HTTP basic credentials (sent with every request)."""

    model_config = ConfigDict(extra="forbid")

    user: str
    password: str = ""


class HttpDigestAuth(BaseModel):
    """HTTP digest credentials (answering the device's challenge, as Shelly Gen2 plugs require)."""

    model_config = ConfigDict(extra="forbid")

    user: str
    password: str = ""


class HttpAuthConfig(BaseModel):
    """Credentials: at most one of `basic` and `digest`."""

    model_config = ConfigDict(extra="forbid")

    basic: HttpBasicAuth | None = None
    digest: HttpDigestAuth | None = None


def _validated(model: type[BaseModel], value: Any, field_name: str) -> Any:
    """`value` (a mapping from YAML or a model instance) as `model`; errors name the config field."""
    if value is None or isinstance(value, model):
        return value
    if not isinstance(value, dict):
        raise TypeError(f"HttpPower config {field_name}: expected a mapping, got {value!r}")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join([field_name, *map(str, error['loc'])])}: {error['msg']}" for error in exc.errors()
        )
        raise ValueError(f"HttpPower config {problems}") from None


def _json_path(data: Any, path: str) -> Any:
    """Walk a dotted path (`meters.0.power`) through nested objects and lists."""
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


@dataclass(kw_only=True)
class HttpPower(PowerInterface, Driver):
    """Power switch controlled over HTTP; `read()` needs a `power_read` endpoint answering JSON."""

    name: str = "device"
    power_on: HttpEndpointConfig
    power_off: HttpEndpointConfig
    power_read: HttpEndpointConfig | None = None
    auth: HttpAuthConfig | None = None
    #: Seconds to wait for an answer.
    timeout: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.power_on = _validated(HttpEndpointConfig, self.power_on, "power_on")
        self.power_off = _validated(HttpEndpointConfig, self.power_off, "power_off")
        self.power_read = _validated(HttpEndpointConfig, self.power_read, "power_read")
        self.auth = _validated(HttpAuthConfig, self.auth, "auth")
        if self.power_on is None or self.power_off is None:
            raise ValueError("HttpPower config power_on and power_off: both are required")
        if self.auth is not None and self.auth.basic is not None and self.auth.digest is not None:
            raise ValueError("HttpPower config auth: basic and digest are mutually exclusive, configure one")
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or self.timeout <= 0:
            raise ValueError(f"HttpPower config timeout: expected a positive number of seconds, got {self.timeout!r}")

    @export
    async def on(self) -> None:
        """Switch the power on (the `power_on` request)."""
        self.logger.info("powering on %s", self.name)
        await anyio.to_thread.run_sync(self._request, "power_on", self.power_on)

    @export
    async def off(self) -> None:
        """Switch the power off (the `power_off` request)."""
        self.logger.info("powering off %s", self.name)
        await anyio.to_thread.run_sync(self._request, "power_off", self.power_off)

    @export
    async def read(self) -> AsyncIterator[PowerReading]:
        """One reading from the JSON answer of the `power_read` request."""
        endpoint = self.power_read
        if endpoint is None:
            raise NotImplementedError(f"HttpPower {self.name!r} has no power_read endpoint configured")
        body = await anyio.to_thread.run_sync(self._request, "power_read", endpoint)
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise HttpPowerError(f"power_read: {endpoint.url} did not answer JSON: {exc}") from None
        yield PowerReading(
            voltage=self._number(data, endpoint.voltage_path, "voltage"),
            current=self._number(data, endpoint.current_path, "current"),
        )

    @staticmethod
    def _number(data: Any, path: str | None, default_key: str) -> float:
        """The reading at `path`; a device that does not report the default key reads 0."""
        key = path or default_key
        try:
            value = _json_path(data, key)
        except (KeyError, IndexError, TypeError, ValueError):
            if path is None:
                return 0.0
            raise HttpPowerError(f"power_read: path {key!r} not found in the answer") from None
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise HttpPowerError(f"power_read: value at {key!r} is not a number: {value!r}")
        try:
            return float(value)
        except ValueError:
            raise HttpPowerError(f"power_read: value at {key!r} is not a number: {value!r}") from None

    def _request(self, action: str, endpoint: HttpEndpointConfig) -> bytes:
        """Send one configured request (blocking; run in a worker thread); returns the body."""
        import urllib.error
        import urllib.request

        body = None
        if endpoint.data is not None:
            if endpoint.method in BODY_METHODS:
                body = endpoint.data.encode()
            else:
                self.logger.warning("%s: ignoring data, %s requests carry no body", action, endpoint.method)
        request = urllib.request.Request(endpoint.url, data=body, method=endpoint.method, headers=endpoint.headers)
        handlers: list[urllib.request.BaseHandler] = []
        if self.auth is not None and self.auth.basic is not None:
            import base64

            token = base64.b64encode(f"{self.auth.basic.user}:{self.auth.basic.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        elif self.auth is not None and self.auth.digest is not None:
            passwords = urllib.request.HTTPPasswordMgrWithDefaultRealm()
            passwords.add_password(None, endpoint.url, self.auth.digest.user, self.auth.digest.password)
            handlers.append(urllib.request.HTTPDigestAuthHandler(passwords))
        where = f"{action}: {endpoint.method} {endpoint.url}"
        self.logger.debug("%s", where)
        try:
            with urllib.request.build_opener(*handlers).open(request, timeout=self.timeout) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            quoted = exc.read()[:QUOTED_BODY].decode("utf-8", "replace").strip()
            detail = f": {quoted}" if quoted else ""
            raise HttpPowerError(f"{where} answered {exc.code} {exc.reason}{detail}") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise TimeoutError(f"{where}: no answer within {self.timeout:g} s") from None
            raise HttpPowerError(f"{where} failed: {exc.reason}") from None
        except TimeoutError:
            raise TimeoutError(f"{where}: no answer within {self.timeout:g} s") from None
        except OSError as exc:
            raise HttpPowerError(f"{where} failed: {exc}") from None
