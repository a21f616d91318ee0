"""`jumpstarter_driver_http_power.driver.HttpPower`, as upstream exporter configs name it."""

from jumpstarter_driver_power.http import (
    HttpAuthConfig,
    HttpBasicAuth,
    HttpDigestAuth,
    HttpEndpointConfig,
    HttpPower,
)

__all__ = ["HttpAuthConfig", "HttpBasicAuth", "HttpDigestAuth", "HttpEndpointConfig", "HttpPower"]
