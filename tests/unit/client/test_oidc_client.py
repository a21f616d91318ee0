"""The client side of OIDC: grants against a real loopback identity provider, unverified claims and
how expiry is shown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jumpstarter.client.oidc import OidcClient, describe_expiry, scopes, span, token_claims
from jumpstarter.errors import ConfigurationError, ConnectionLostError, UnauthenticatedError
from tests.oidc_provider import OidcProvider


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[OidcProvider]:
    with OidcProvider(tmp_path) as provider:
        yield provider


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (45, "45s"), (61, "1m01s"), (3600, "1h00m"), (3 * 3600 + 12 * 60 + 5, "3h12m"),
    (86400 + 3600, "25h00m"), (2 * 86400 + 5, "2 days"), (-90, "1m30s"),
])
def test_span(seconds: float, text: str) -> None:
    assert span(seconds) == text


def test_describe_expiry() -> None:
    assert describe_expiry(1000 + 3 * 3600 + 12 * 60, 1000) == "expires in 3h12m"
    assert describe_expiry(1000, 1000 + 2 * 86400 + 60) == "EXPIRED 2 days ago"
    assert describe_expiry(None, 1000) == "never expires"


def test_token_claims_are_read_without_verification(idp: OidcProvider) -> None:
    claims = token_claims(idp.mint("alice"))
    assert (claims["iss"], claims["preferred_username"]) == (idp.url, "alice")
    for bad in ("not-a-jwt", "a.!!!.c", "a.bnVsbA.c"):
        with pytest.raises(ConfigurationError, match="not a JWT"):
            token_claims(bad)


def test_grants(idp: OidcProvider) -> None:
    client = OidcClient(idp.url, insecure=True)
    granted = client.password("alice", "wonderland", scopes(offline_access=True))
    assert token_claims(granted.access_token)["preferred_username"] == "alice"
    assert granted.refresh_token is not None
    renewed = client.refresh(granted.refresh_token)
    assert renewed.access_token != granted.access_token
    exchanged = client.exchange("ldap-token-of-alice", "ldap", scopes(offline_access=False))
    assert (token_claims(exchanged.access_token)["preferred_username"], exchanged.refresh_token) == ("alice", None)
    assert idp.requests["/.well-known/openid-configuration"] == 1


def test_refusals_and_failures_say_why(idp: OidcProvider, tmp_path: Path) -> None:
    client = OidcClient(idp.url, insecure=True)
    with pytest.raises(UnauthenticatedError, match=r"refused the password grant \(invalid_grant: invalid username"):
        client.password("alice", "wrong", scopes(True))
    with pytest.raises(UnauthenticatedError, match=r"refused the token-exchange grant"):
        client.exchange("forged", "ldap", scopes(True))
    with pytest.raises(UnauthenticatedError, match="invalid_client"):
        OidcClient(idp.url, client_id="other", insecure=True).password("alice", "wonderland", scopes(True))
    with pytest.raises(ConnectionLostError, match="CERTIFICATE_VERIFY_FAILED"):
        OidcClient(idp.url).discovery()  # its CA is not trusted without -k
    with pytest.raises(ConfigurationError, match="not an http"):
        OidcClient("dex.example.com")
    idp.__exit__()
    with pytest.raises(ConnectionLostError, match="cannot reach"):
        OidcClient(idp.url, insecure=True).discovery()
