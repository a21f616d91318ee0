"""The client side of OIDC: grants, the browser and device logins against a real loopback identity
provider, unverified claims and how expiry is shown."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jumpstarter.client.oidc import OidcClient, describe_expiry, scopes, span, token_claims
from jumpstarter.client.oidc_flows import browser_login, device_login, pkce_pair
from jumpstarter.errors import ConfigurationError, ConnectionLostError, UnauthenticatedError
from tests.oidc_provider import OidcProvider, s256


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


def _browser(idp: OidcProvider) -> Callable[[str], None]:
    """What a browser does with the login URL: the provider approves, the redirect goes to the callback."""
    context = ssl.create_default_context(cafile=str(idp.ca_file))

    def open_url(url: str) -> None:
        with urllib.request.urlopen(url, context=context, timeout=10) as page:
            assert page.url.startswith("http://localhost:") and b"close this window" in page.read()

    return open_url


def test_pkce_pair_is_s256() -> None:
    verifier, challenge = pkce_pair()
    assert 43 <= len(verifier) <= 128 and challenge == s256(verifier) and challenge != pkce_pair()[1]


def test_browser_login_exchanges_the_code_with_the_verifier(idp: OidcProvider) -> None:
    told: list[str] = []
    client = OidcClient(idp.url, insecure=True)
    granted = browser_login(client, scopes(True), 0, told.append, open_browser=_browser(idp))
    assert token_claims(granted.access_token)["preferred_username"] == "alice" and granted.refresh_token
    assert "code_challenge_method=S256" in told[0] and "redirect_uri=http%3A%2F%2Flocalhost%3A" in told[0]
    assert browser_login(client, scopes(False), 0, told.append, open_browser=_browser(idp)).refresh_token is None
    url = client.authorization_url("http://localhost:9/callback", "s", s256("right"), scopes(False))
    with pytest.raises(urllib.error.URLError):  # nothing listens on port 9: the redirect is not followed
        _browser(idp)(url)
    code = next(iter(idp.codes))
    with pytest.raises(UnauthenticatedError, match="code_verifier does not match"):
        client.authorization_code(code, "http://localhost:9/callback", "wrong")


@pytest.mark.parametrize(("error", "state", "message"), [
    ("access_denied", None, r"refused the login in the browser \(access_denied\)"),
    (None, "forged", "another login's state"),
])
def test_browser_login_refusals(idp: OidcProvider, error: str | None, state: str | None, message: str) -> None:
    idp.authorize_error, idp.authorize_state = error, state
    with pytest.raises(UnauthenticatedError, match=message):
        browser_login(OidcClient(idp.url, insecure=True), scopes(True), 0, print, open_browser=_browser(idp))


def test_browser_login_gives_up_without_a_redirect(idp: OidcProvider) -> None:
    with pytest.raises(UnauthenticatedError, match="no login came back from the browser within 0s"):
        browser_login(OidcClient(idp.url, insecure=True), scopes(True), 0, print, open_browser=print, timeout=0.1)


class _Clock:
    """Time that passes only when the login sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_device_login_polls_until_approved_and_slows_down(idp: OidcProvider) -> None:
    idp.device_answers = ["authorization_pending", "slow_down", "authorization_pending"]
    clock, told = _Clock(), []
    granted = device_login(OidcClient(idp.url, insecure=True), scopes(True), told.append, sleep=clock.sleep,
                           clock=lambda: clock.now)
    assert token_claims(granted.access_token)["preferred_username"] == "alice" and granted.refresh_token
    assert clock.slept == [1, 1, 6, 6]
    assert f"{idp.url}/device?user_code=" in told[0]


@pytest.mark.parametrize(("answers", "interval", "message"), [
    (["authorization_pending", "access_denied"], 1, r"denied at .* \(access_denied\)"),
    (["expired_token"], 1, "device code expired"),
    (["authorization_pending"] * 5, 100, "device code expired"),  # expires_in 300: polls at 100 and 200 only
])
def test_device_login_refusals(idp: OidcProvider, answers: list[str], interval: int, message: str) -> None:
    idp.device_answers, idp.device_interval = answers, interval
    clock = _Clock()
    with pytest.raises(UnauthenticatedError, match=message):
        device_login(OidcClient(idp.url, insecure=True), scopes(True), print, sleep=clock.sleep,
                     clock=lambda: clock.now)
    assert len(clock.slept) <= 2


def test_flows_need_the_issuers_endpoints(idp: OidcProvider) -> None:
    client = OidcClient(idp.url, insecure=True)
    client.discovery().pop("device_authorization_endpoint")
    with pytest.raises(ConfigurationError, match="has no device_authorization_endpoint"):
        device_login(client, scopes(True), print)
