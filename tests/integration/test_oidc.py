"""OIDC against a real controller process and a real (tiny, loopback) identity provider: `jmp login`
with the password grant, token exchange, a given token, the browser and the device flows,
`jmp auth status/refresh`, refused tokens with their reasons and the unauthenticated exit code, and
the JWKS fetched once."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import Cli, assert_clean_failure
from tests.integration.test_controller import Controller, controller
from tests.oidc_provider import OidcProvider

UNAUTHENTICATED = 4


@pytest.fixture
def idp(cli: Cli) -> Iterator[OidcProvider]:
    with OidcProvider(cli.tmp) as provider:
        yield provider


def auth_config(cli: Cli, idp: OidcProvider) -> Path:
    path = cli.tmp / "auth.yaml"
    path.write_text(yaml.safe_dump({"authentication": {"jwt": [{
        "issuer": {"url": idp.url, "audiences": ["jumpstarter-cli"], "certificateAuthority": idp.ca_pem},
        "claimMappings": {"username": {"claim": "preferred_username", "prefix": "dex:"}},
    }]}}))
    return path


def login(cli: Cli, running: Controller, *args: str, env: dict[str, str] | None = None,
          ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = cli.jmp("login", "-e", f"127.0.0.1:{running.port}", "--namespace", "default", "--name", "alice",
                     "-k", "--nointeractive", *args, env=env)
    if ok:
        assert result.returncode == 0, result.stderr
        assert "logged in to" in result.stdout
    return result


def browser(cli: Cli, idp: OidcProvider) -> dict[str, str]:
    """An environment whose `BROWSER` does what a user's browser would: load the login page (the
    provider approves at once) and follow the redirect to `jmp login`'s callback."""
    script = cli.tmp / "browse.py"
    script.write_text(f"""#!{sys.executable}
import ssl, sys, urllib.request
context = ssl.create_default_context(cafile={str(idp.ca_file)!r})
with urllib.request.urlopen(sys.argv[1], context=context, timeout=10) as page:
    print(page.url, page.read().decode())
""")
    script.chmod(0o755)
    return {**cli.env, "BROWSER": str(script)}


def client_file(cli: Cli, alias: str) -> Path:
    return cli.config_home / "clients" / f"{alias}.yaml"


def test_password_login_writes_a_working_config_and_keys_are_fetched_once(cli: Cli, idp: OidcProvider) -> None:
    with controller(cli, "127.0.0.1:0", "--auth-config", str(auth_config(cli, idp))) as running:
        created = cli.jmp("admin", "create", "client", "alice", "--oidc-username", "dex:alice")
        assert created.returncode == 0, created.stderr
        login(cli, running, "--issuer", idp.url, "--username", "alice", "--password", "wonderland")
        saved = yaml.safe_load(client_file(cli, "alice").read_text())
        assert saved["metadata"] == {"name": "alice", "namespace": "default"}
        assert saved["tls"]["ca"].startswith("-----BEGIN CERTIFICATE")
        assert saved["token"] and saved["refresh_token"]
        for _ in range(3):
            listed = cli.jmp("get", "exporters", "--client", "alice")
            assert listed.returncode == 0, listed.stderr
        assert idp.requests["/keys"] == 1

        status = cli.jmp("auth", "status", "--client", "alice", "-v")
        assert status.returncode == 0, status.stderr
        assert f"issuer:   {idp.url}" in status.stdout
        assert '"preferred_username": "alice"' in status.stdout
        assert "(expires in 59m" in status.stdout or "(expires in 1h00m" in status.stdout

        renewed = cli.jmp("auth", "refresh", "--client", "alice", "-k")
        assert renewed.returncode == 0, renewed.stderr
        assert yaml.safe_load(client_file(cli, "alice").read_text())["token"] != saved["token"]
        assert cli.jmp("get", "leases", "--client", "alice").returncode == 0
        not_ours = cli.jmp("auth", "rotate", "--client", "alice")  # the issuer's token, not the controller's
        assert_clean_failure(not_ours, "comes from an OIDC issuer", "jmp login")
        assert not_ours.returncode == 2

        refused = cli.jmp("login", "--client", "other", "-e", f"127.0.0.1:{running.port}", "--namespace", "default",
                          "--name", "alice", "--issuer", idp.url, "--username", "alice", "--password", "wrong",
                          "-k", "--nointeractive")
        assert_clean_failure(refused, "invalid username or password")
        assert refused.returncode == UNAUTHENTICATED
        assert not client_file(cli, "other").exists()


def test_refused_tokens_say_why_and_internal_tokens_still_work(cli: Cli, idp: OidcProvider) -> None:
    with controller(cli, "127.0.0.1:0", "--auth-config", str(auth_config(cli, idp))) as running:
        created = cli.jmp("admin", "create", "client", "alice", "--oidc-username", "dex:alice", "--save")
        assert created.returncode == 0, created.stderr
        assert cli.jmp("get", "leases", "--client", "alice").returncode == 0  # its internal token

        login(cli, running, "--client", "given", "--token", idp.mint("alice"), "-a", "jumpstarter_driver_*")
        assert cli.jmp("get", "leases", "--client", "given").returncode == 0
        assert yaml.safe_load(client_file(cli, "given").read_text())["drivers"] == {"allow": ["jumpstarter_driver_*"]}
        listed = cli.jmp("admin", "get", "clients", "-o", "yaml")
        assert yaml.safe_load(listed.stdout)[0]["username"] == "dex:alice", listed.stderr
        login(cli, running, "--client", "exchanged", "--token", "ldap-token-of-alice", "--connector-id", "ldap",
              "--issuer", idp.url)
        assert cli.jmp("get", "leases", "--client", "exchanged").returncode == 0

        config = yaml.safe_load(client_file(cli, "given").read_text())
        stranger_kid = "never-published"
        for token, reason in [
            (idp.mint(aud="someone-else"), "token audience 'someone-else' not accepted"),
            (idp.mint(lifetime=-3600), "token expired"),
            (idp.mint("bob"), "no client for user dex:bob"),
        ]:
            client_file(cli, "given").write_text(yaml.safe_dump({**config, "token": token}))
            refused = cli.jmp("get", "leases", "--client", "given")
            assert_clean_failure(refused, "unauthenticated", reason)
            assert refused.returncode == UNAUTHENTICATED
        stale = cli.tmp / "stale.yaml"
        stale.write_text(yaml.safe_dump({**config, "token": _signed_with(idp, stranger_kid)}))
        refused = cli.jmp("get", "leases", "--client-config", str(stale))
        assert_clean_failure(refused, f"unknown key '{stranger_kid}'")
        assert refused.returncode == UNAUTHENTICATED
        assert idp.requests["/keys"] <= 2  # an unknown kid may cause one refetch, not one per call

        client_file(cli, "given").write_text(yaml.safe_dump({**config, "token": idp.mint(lifetime=-2 * 86400 - 60)}))
        expired = cli.jmp("auth", "status", "--client", "given")
        assert "EXPIRED 2 days ago" in expired.stdout
        assert_clean_failure(expired, "expired 2 days ago", "jmp login")
        assert expired.returncode == UNAUTHENTICATED


def test_browser_and_device_logins_write_working_configs(cli: Cli, idp: OidcProvider) -> None:
    with controller(cli, "127.0.0.1:0", "--auth-config", str(auth_config(cli, idp))) as running:
        created = cli.jmp("admin", "create", "client", "alice", "--oidc-username", "dex:alice")
        assert created.returncode == 0, created.stderr
        env = browser(cli, idp)
        done = login(cli, running, "--issuer", idp.url, "--callback-port", "0", env=env)
        assert f"{idp.url}/auth?response_type=code" in done.stderr  # also shown, for a headless user
        saved = yaml.safe_load(client_file(cli, "alice").read_text())
        assert saved["token"] and saved["refresh_token"]
        listed = cli.jmp("get", "exporters", "--client", "alice")
        assert listed.returncode == 0, listed.stderr

        idp.device_answers = ["authorization_pending"]
        done = login(cli, running, "--client", "device", "--issuer", idp.url, "--device-flow", "--no-offline-access")
        assert f"{idp.url}/device?user_code=" in done.stderr
        saved = yaml.safe_load(client_file(cli, "device").read_text())
        assert saved["token"] and saved.get("refresh_token") is None
        assert cli.jmp("get", "leases", "--client", "device").returncode == 0

        for setup, args, reason in [
            ({"authorize_error": "access_denied"}, ["--callback-port", "0"], "refused the login in the browser"),
            ({"authorize_state": "forged"}, [], "another login's state"),
            ({"device_answers": ["authorization_pending", "access_denied"]}, ["--device-flow"], "denied at"),
            ({"device_answers": ["expired_token"]}, ["--device-flow"], "device code expired"),
        ]:
            for key, value in setup.items():
                setattr(idp, key, value)
            refused = login(cli, running, "--client", "refused", "--issuer", idp.url, *args, ok=False,
                            env={**env, "JMP_OIDC_CALLBACK_PORT": "0"})
            assert_clean_failure(refused, "unauthenticated", reason)
            assert refused.returncode == UNAUTHENTICATED
            assert not client_file(cli, "refused").exists()
            idp.authorize_error = idp.authorize_state = None


def _signed_with(idp: OidcProvider, kid: str) -> str:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    claims = jwt.decode(idp.mint(), options={"verify_signature": False})
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def test_bad_auth_config_stops_the_controller_with_file_and_line(cli: Cli) -> None:
    path = cli.tmp / "auth.yaml"
    path.write_text("authentication:\n  jwt:\n  - issuer:\n      url: http://idp.example\n      audiences: [a]\n")
    result = cli.jmp("controller", "run", "--address", "127.0.0.1:0", "--data-dir", str(cli.tmp / "data"),
                     "--auth-config", str(path))
    assert_clean_failure(result, f"{path}:4: authentication.jwt.0.issuer.url: must be an https:// URL")
    assert result.returncode == 2


def test_login_without_values_and_without_prompts_is_a_usage_error(cli: Cli) -> None:
    result = cli.jmp("login", "--nointeractive", "--name", "alice", "--token", "x.y.z")
    assert_clean_failure(result, "missing --endpoint")
    assert result.returncode == 2
    result = cli.jmp("login", "--nointeractive", "-e", "127.0.0.1:1", "--name", "alice", "--username", "alice")
    assert_clean_failure(result, "missing --issuer")
    result = cli.jmp("login", "--nointeractive", "--connector-id", "ldap")
    assert_clean_failure(result, "--connector-id needs --token")
    result = cli.jmp("login", "--nointeractive", "-e", "127.0.0.1:1", "--name", "alice", "--issuer", "https://x")
    assert_clean_failure(result, "give --username/--password, --token, --device-flow or --callback-port")
    assert result.returncode == 2
