"""The Salesforce logins: OAuth 2.0 client credentials and JWT bearer, an access token, the retiring SOAP login.

simple-salesforce 1.12.10 does each login itself (login.py); ``responses`` answers the token endpoint
``https://<My Domain>/services/oauth2/token`` in its real shapes (salesforce-shapes.md, "Logging in without
SOAP") and the REST calls after it. Nothing leaves the process.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from typer.testing import CliRunner

from repsend.cli import app
from repsend.errors import EXIT_SERVICE, EXIT_USAGE, ConfigError, SFAError
from repsend.sfa.salesforce import SOAP_RETIRING, Credentials, SalesforceSource
from tests.helpers import write_config
from tests.sf_answers import (
    API,
    API_USER_ID,
    INSTANCE,
    INVALID_CLIENT,
    INVALID_GRANT,
    NO_RUN_AS_USER,
    SESSION_EXPIRED,
    FakeOrg,
    token_ok,
)
from tests.test_salesforce import LOGIN_ENV, TOKEN_ENV, add_rep, make_settings, source_for

CLIENT_ID = "3MVG9fe4g9fhX0E5PublicConsumerKeyOfTheApp"
CLIENT_SECRET = "B7C1D2E3F4A5968778695A4B3C2D1E0F9S3cr3t"
JWT_USER = "integration@acme.example"
TOKEN_URL = f"https://{INSTANCE}/services/oauth2/token"
CC_ENV = {"SF_CLIENT_ID": CLIENT_ID, "SF_CLIENT_SECRET": CLIENT_SECRET, "SF_DOMAIN": "acme"}


@pytest.fixture(scope="module")
def key_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """An RSA key as `openssl genrsa` writes it (PKCS#8 PEM, no passphrase), and its public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("keys") / "server.key"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path, key.public_key()


def jwt_env(key: Path, domain: str = "acme.my.salesforce.com") -> dict[str, str]:
    return {"SF_CLIENT_ID": CLIENT_ID, "SF_USERNAME": JWT_USER, "SF_PRIVATE_KEY_FILE": str(key), "SF_DOMAIN": domain}


def secrets_of(key: Path) -> list[str]:
    """What must never be printed: the client secret, the private key (whole and by line), every token."""
    pem = key.read_text()
    lines = [line for line in pem.splitlines() if len(line) > 20]
    tokens = [token_ok(n)["access_token"] for n in range(1, 5)]
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    return [CLIENT_SECRET, basic, pem.strip(), *lines, *tokens, TOKEN_ENV["SF_ACCESS_TOKEN"]]


def assert_secret_free(text: str, key: Path) -> None:
    for secret in secrets_of(key):
        assert secret not in text


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def org(rsps: responses.RequestsMock) -> FakeOrg:
    fake = FakeOrg()
    fake.install(rsps, login_domain=None, oauth_host=INSTANCE)
    return fake


def form(request: requests.PreparedRequest) -> dict[str, str]:
    body = request.body.decode() if isinstance(request.body, bytes) else request.body or ""
    return {k: v[0] for k, v in parse_qs(body).items()}


# -- OAuth 2.0 client credentials ------------------------------------------------------------------


@pytest.mark.parametrize("domain", ["acme", "acme.my", "acme.my.salesforce.com", "https://ACME.my.salesforce.com/"])
def test_client_credentials_log_in_at_the_my_domain(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg, domain: str
) -> None:
    add_rep(org)
    source = source_for(tmp_path, {**CC_ENV, "SF_DOMAIN": domain})
    assert source.credentials.kind == "client_credentials" and source.notes == []
    assert len(source.reps()) == 2

    token, check, users = (c.request for c in rsps.calls)
    assert (token.method, token.url) == ("POST", TOKEN_URL)
    assert form(token) == {"grant_type": "client_credentials"}
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert token.headers["Authorization"] == f"Basic {basic}"
    # The app runs as its Run As user, whom the token's answer names (its identity URL, "id"): no call to learn it.
    assert f"AssigneeId+%3D+%27{API_USER_ID}%27" in check.url and "FROM+User" in users.url
    bearer = f"Bearer {token_ok(1)['access_token']}"
    assert all(r.headers["Authorization"] == bearer for r in (check, users))
    assert source.api_calls == 3  # as many as the username login's


def test_client_credentials_without_an_identity_in_the_answer_ask_the_rest_root(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg
) -> None:
    answer = {k: v for k, v in token_ok(1).items() if k != "id"}
    rsps.replace(responses.POST, TOKEN_URL, json=answer)
    source = source_for(tmp_path, CC_ENV)
    assert len(source.reps()) == 1
    token, identity, check, users = (c.request for c in rsps.calls)
    assert identity.url == f"https://{INSTANCE}/services/data/v{API}/"
    assert f"AssigneeId+%3D+%27{API_USER_ID}%27" in check.url


@pytest.mark.parametrize(
    ("refusal", "expected"),
    [
        (INVALID_CLIENT, "(invalid_client: invalid client credentials): SF_CLIENT_SECRET is not the consumer secret "
                         "of SF_CLIENT_ID; copy both again from the connected app"),
        (NO_RUN_AS_USER, "(invalid_grant: no client credentials user enabled): the app has no Run As user"),
        ((400, {"error": "invalid_grant", "error_description": "something new"}),
         "(invalid_grant: something new): check SF_CLIENT_ID and SF_CLIENT_SECRET"),
        ((401, {"error": "invalid_client_id", "error_description": "client identifier invalid"}),
         "this org has no app whose consumer key is SF_CLIENT_ID"),
    ],
)  # fmt: skip
def test_a_refused_client_credentials_login_is_exit_3_with_what_to_check(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg, key_pair: Any, refusal: Any, expected: str
) -> None:
    org.failures.append(("oauth2/token", refusal))
    with pytest.raises(SFAError) as caught:
        source_for(tmp_path, CC_ENV).reps()
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_SERVICE
    assert message.startswith(f"Salesforce refused the OAuth client credentials login at {INSTANCE} ")
    assert expected in message
    assert_secret_free(message, key_pair[0])
    assert [c.request.url for c in rsps.calls] == [TOKEN_URL]  # nothing was read


def test_client_credentials_need_a_my_domain(tmp_path: Path) -> None:
    for domain in ("login", "test", "https://login.salesforce.com"):
        with pytest.raises(ConfigError) as caught:
            source_for(tmp_path, {**CC_ENV, "SF_DOMAIN": domain})
        assert str(caught.value).startswith("SF_DOMAIN: the client credentials login needs the org's My Domain")
        assert CLIENT_SECRET not in str(caught.value)


@pytest.mark.parametrize(
    "failure",
    [
        requests.ConnectionError("Failed to resolve 'acmee.my.salesforce.com' (Name or service not known)"),
        requests.exceptions.SSLError("certificate verify failed"),
    ],
)
def test_a_wrong_my_domain_names_sf_domain(
    tmp_path: Path, rsps: responses.RequestsMock, key_pair: Any, failure: Exception
) -> None:
    rsps.add(responses.POST, "https://acmee.my.salesforce.com/services/oauth2/token", body=failure)
    with pytest.raises(SFAError) as caught:
        source_for(tmp_path, {**CC_ENV, "SF_DOMAIN": "acmee"}).reps()
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_SERVICE
    assert message.startswith("cannot reach Salesforce at acmee.my.salesforce.com: the connection failed")
    assert "check the network, HTTPS_PROXY, and SF_DOMAIN, the org's My Domain" in message
    assert_secret_free(message, key_pair[0])


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (404, "<html><body>URL No Longer Exists</body></html>", "answered the login with HTTP 404, not an OAuth"),
        (200, json.dumps({"access_token": "x", "token_type": "Bearer"}), "in a shape repsend cannot read"),
    ],
)
def test_a_login_answer_that_is_not_oauth_is_a_service_error(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg, key_pair: Any, status: int, body: str, expected: str
) -> None:
    rsps.replace(responses.POST, TOKEN_URL, body=body, status=status)
    with pytest.raises(SFAError) as caught:
        source_for(tmp_path, CC_ENV).reps()
    assert expected in str(caught.value) and "SF_DOMAIN" in str(caught.value)
    assert "<html>" not in str(caught.value)
    assert_secret_free(str(caught.value), key_pair[0])


# -- OAuth 2.0 JWT bearer --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "token_host", "audience"),
    [
        ("acme.my.salesforce.com", INSTANCE, "https://login.salesforce.com"),
        ("https://acme--uat.sandbox.my.salesforce.com", "acme--uat.sandbox.my.salesforce.com",
         "https://test.salesforce.com"),
        ("login", "login.salesforce.com", "https://login.salesforce.com"),
    ],
)  # fmt: skip
def test_jwt_bearer_signs_an_assertion_with_the_key_and_logs_in(
    tmp_path: Path, rsps: responses.RequestsMock, key_pair: Any, domain: str, token_host: str, audience: str
) -> None:
    key, public = key_pair
    org = FakeOrg()
    org.install(rsps, login_domain=None, oauth_host=token_host)
    add_rep(org)
    source = source_for(tmp_path, jwt_env(key, domain))
    assert source.credentials.kind == "jwt" and source.notes == []
    assert len(source.reps()) == 2

    token, check, users = (c.request for c in rsps.calls)
    assert token.url == f"https://{token_host}/services/oauth2/token"
    sent = form(token)
    assert sent["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert jwt.get_unverified_header(sent["assertion"])["alg"] == "RS256"
    claims = jwt.decode(sent["assertion"], public, algorithms=["RS256"], audience=audience)  # the signature holds
    assert (claims["iss"], claims["sub"]) == (CLIENT_ID, JWT_USER)
    assert time.time() < int(claims["exp"]) <= time.time() + 181  # simple-salesforce: three minutes
    # The user is named: the check finds it by Username, without the REST root's call.
    assert "Assignee.Username+%3D+%27integration%40acme.example%27" in check.url
    assert users.headers["Authorization"] == f"Bearer {token_ok(1)['access_token']}"
    assert source.api_calls == 3


@pytest.mark.parametrize(
    ("refusal", "expected"),
    [
        (INVALID_GRANT, "SF_USERNAME is not pre-authorized for the app"),
        ((400, {"error": "invalid_grant", "error_description": "invalid assertion"}),
         "SF_PRIVATE_KEY_FILE is not the key of the certificate uploaded to the app"),
        ((400, {"error": "invalid_grant", "error_description": "audience is invalid"}), "check SF_DOMAIN"),
        ((400, {"error": "invalid_client_id", "error_description": "client identifier invalid"}),
         "no app whose consumer key is SF_CLIENT_ID"),
    ],
)  # fmt: skip
def test_a_refused_jwt_login_is_exit_3_with_what_to_check(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg, key_pair: Any, refusal: Any, expected: str
) -> None:
    org.failures.append(("oauth2/token", refusal))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # simple-salesforce's warning about approving the app stays quiet
        with pytest.raises(SFAError) as caught:
            source_for(tmp_path, jwt_env(key_pair[0])).reps()
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_SERVICE
    assert message.startswith(f"Salesforce refused the OAuth JWT bearer login for {JWT_USER} at {INSTANCE} (")
    assert expected in message
    assert_secret_free(message, key_pair[0])


def test_a_key_file_that_will_not_sign_stops_before_any_request(tmp_path: Path, key_pair: Any) -> None:
    locked = tmp_path / "locked.key"
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    locked.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.BestAvailableEncryption(b"passphrase"))
    )  # fmt: skip
    certificate = tmp_path / "server.crt"
    certificate.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    ec_key = tmp_path / "ec.key"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cases = [
        (tmp_path / "missing.key", "cannot read"),
        (locked, "is protected by a passphrase"),
        (certificate, "is not an RSA private key in PEM form"),  # the certificate instead of its key
        (ec_key, "is not an RSA private key in PEM form"),
    ]
    for path, expected in cases:
        with pytest.raises(ConfigError) as caught:
            source_for(tmp_path, jwt_env(path))
        assert caught.value.exit_code == EXIT_USAGE
        assert str(caught.value).startswith(f"SF_PRIVATE_KEY_FILE: {'cannot read ' if 'read' in expected else ''}")
        assert str(path) in str(caught.value) and expected in str(caught.value)


def test_jwt_without_cryptography_says_which_extra_to_install(
    tmp_path: Path, key_pair: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cryptography" else real(name))
    with pytest.raises(ConfigError) as caught:
        source_for(tmp_path, jwt_env(key_pair[0]))
    assert "pip install 'repsend[jwt]'" in str(caught.value)


# -- a session that expires mid-run ----------------------------------------------------------------


@pytest.mark.parametrize("login", ["client_credentials", "jwt"])
def test_an_expired_session_logs_in_again_once_and_the_run_goes_on(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg, key_pair: Any, login: str
) -> None:
    add_rep(org)
    source = source_for(tmp_path, CC_ENV if login == "client_credentials" else jwt_env(key_pair[0]))
    source.check_visibility()
    org.failures.append(("FROM+User", SESSION_EXPIRED))  # hours later, the session is gone

    assert len(source.reps()) == 2

    assert len(org.token_requests) == 2
    refused, again = [c.request for c in rsps.calls if "FROM+User" in c.request.url]
    assert refused.headers["Authorization"] == f"Bearer {token_ok(1)['access_token']}"
    assert again.headers["Authorization"] == f"Bearer {token_ok(2)['access_token']}"
    name = source.credentials.name
    assert source.notes == [f"Salesforce: the session expired during the run; logged in again ({name})"]


def test_a_session_refused_right_after_a_new_login_stops_the_run(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg, key_pair: Any
) -> None:
    source = source_for(tmp_path, CC_ENV)
    source.check_visibility()
    org.failures += [("FROM+User", SESSION_EXPIRED)] * 2
    with pytest.raises(SFAError) as caught:
        source.reps()
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_SERVICE
    assert message.startswith(
        f"Salesforce at {INSTANCE} refused the session (INVALID_SESSION_ID) right after the OAuth client credentials "
        "login logged in again; check the connected app's session policies"
    )
    assert len(org.token_requests) == 2  # once, not simple-salesforce's four
    assert_secret_free(message, key_pair[0])


def test_an_access_token_cannot_log_in_again_and_says_what_would(tmp_path: Path, rsps: responses.RequestsMock) -> None:
    org = FakeOrg()
    org.install(rsps, login_domain=None)
    org.failures.append(("/query/", SESSION_EXPIRED))
    with pytest.raises(SFAError) as caught:
        source_for(tmp_path, TOKEN_ENV).reps()
    assert "set a fresh SF_ACCESS_TOKEN, or use a login that renews itself: the client credentials or JWT" in str(
        caught.value
    )


# -- which login -----------------------------------------------------------------------------------


def test_the_username_login_warns_that_it_is_being_retired(tmp_path: Path) -> None:
    source = source_for(tmp_path, LOGIN_ENV)
    assert source.credentials.kind == "password"
    assert source.notes == [SOAP_RETIRING]
    assert "Summer '27" in SOAP_RETIRING and "client credentials or JWT bearer" in SOAP_RETIRING


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({**CC_ENV, **LOGIN_ENV},
         "both the OAuth client credentials login (SF_CLIENT_ID, SF_CLIENT_SECRET and SF_DOMAIN) and the "
         "username/password (SOAP) login (SF_USERNAME and SF_PASSWORD) are set"),
        ({**LOGIN_ENV, **TOKEN_ENV}, "both the username/password (SOAP) login (SF_USERNAME and SF_PASSWORD) and the "
         "access token (SF_INSTANCE_URL and SF_ACCESS_TOKEN) are set"),
        ({**CC_ENV, "SF_USERNAME": JWT_USER, "SF_PRIVATE_KEY_FILE": "k.pem"},
         "both the OAuth client credentials login (SF_CLIENT_ID, SF_CLIENT_SECRET and SF_DOMAIN) and the OAuth JWT "
         "bearer login"),
        ({**CC_ENV, "SF_SECURITY_TOKEN": "Tok3n"},
         "the OAuth client credentials login is set (SF_CLIENT_ID, SF_CLIENT_SECRET and SF_DOMAIN), and so is "
         "SF_SECURITY_TOKEN, which it does not use"),
        ({**CC_ENV, "SF_USERNAME": JWT_USER}, "and so is SF_USERNAME, which it does not use"),
        ({**TOKEN_ENV, "SF_CLIENT_ID": CLIENT_ID}, "and so is SF_CLIENT_ID, which it does not use"),
        ({"SF_CLIENT_ID": CLIENT_ID},
         "SF_CLIENT_SECRET and SF_DOMAIN are not set, for the OAuth client credentials login (SF_CLIENT_ID, "
         "SF_CLIENT_SECRET and SF_DOMAIN); or SF_USERNAME, SF_PRIVATE_KEY_FILE and SF_DOMAIN are not set, for the "
         "OAuth JWT bearer login"),
        ({"SF_CLIENT_SECRET": CLIENT_SECRET, "SF_DOMAIN": "acme"},
         "SF_CLIENT_ID is not set, for the OAuth client credentials login"),
        ({"SF_CLIENT_ID": CLIENT_ID, "SF_USERNAME": JWT_USER, "SF_DOMAIN": "acme"},
         "SF_PRIVATE_KEY_FILE is not set, for the OAuth JWT bearer login"),
        ({"SF_USERNAME": JWT_USER},
         "SF_CLIENT_ID, SF_PRIVATE_KEY_FILE and SF_DOMAIN are not set, for the OAuth JWT bearer login (SF_CLIENT_ID, "
         "SF_USERNAME, SF_PRIVATE_KEY_FILE and SF_DOMAIN); or SF_PASSWORD is not set, for the username/password"),
        ({"SF_DOMAIN": "acme"}, "Salesforce credentials are not set"),
    ],
)  # fmt: skip
def test_exactly_one_login_may_be_set(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        source_for(tmp_path, env)
    assert caught.value.exit_code == EXIT_USAGE
    assert expected in str(caught.value)
    for value in env.values():
        if value not in (CLIENT_ID, JWT_USER, "acme", "k.pem", f"https://{INSTANCE}"):
            assert value not in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "domain"),
    [
        ("acme", "acme.my"),
        ("ACME.my.salesforce.com", "acme.my"),
        ("https://acme--uat.sandbox.my.salesforce.com/lightning", "acme--uat.sandbox.my"),
        ("acme--uat.sandbox", "acme--uat.sandbox.my"),
        ("acme-dev-ed.develop.my.salesforce.com", "acme-dev-ed.develop.my"),
    ],
)
def test_sf_domain_in_any_form_is_the_my_domain(raw: str, domain: str) -> None:
    credentials, _ = Credentials.from_env({**CC_ENV, "SF_DOMAIN": raw})
    assert credentials.domain == domain and credentials.host == f"{domain}.salesforce.com"


def test_an_expired_session_mid_pagination_goes_on_from_the_same_page(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg
) -> None:
    for n in range(4500):
        org.add("Contact", LastName=f"山田{n}", Email=f"c{n}@example.co.jp", HasOptedOutOfEmail=False,
                IsEmailBounced=False, CreatedDate="2022-04-08T01:15:00.000+0000")  # fmt: skip
    org.failures.append(("-2000", SESSION_EXPIRED))  # the second page of the contacts without an account
    source = source_for(tmp_path, CC_ENV)
    contacts = [c.id for c in source.contacts()]
    assert len(contacts) == len(set(contacts)) == 4500
    assert len(org.token_requests) == 2


def test_credentials_never_show_their_secrets(key_pair: Any) -> None:
    credentials, _ = Credentials.from_env(jwt_env(key_pair[0]))
    assert_secret_free(repr(credentials), key_pair[0])
    credentials, _ = Credentials.from_env(CC_ENV)
    assert_secret_free(repr(credentials), key_pair[0])
    assert credentials.domain == "acme.my" and credentials.host == INSTANCE


# -- what a person sees ----------------------------------------------------------------------------


def test_a_dry_run_logged_in_by_client_credentials(tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg,
                                                   key_pair: Any) -> None:  # fmt: skip
    rep = add_rep(org)
    org.add("Contact", FirstName="花子", LastName="山田", Email="h.yamada@example.co.jp", OwnerId=rep["Id"],
            HasOptedOutOfEmail=False, IsEmailBounced=False, LastActivityDate="2020-01-01",
            CreatedDate="2019-04-08T01:15:00.000+0000", MailingCountry="Japan")  # fmt: skip
    config = write_config(tmp_path, sfa={"kind": "salesforce"})
    result = CliRunner().invoke(
        app, ["dormant", "--dry-run", "--json", "--as-of", "2026-06-01", "--config", str(config)],
        env={**CC_ENV, "REPSEND_CONFIG": ""},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (decision,) = [json.loads(line) for line in result.stdout.splitlines() if '"reason"' in line]
    assert decision["reason"] == "dormant"
    assert "retired" not in result.stderr  # no SOAP, no warning
    assert_secret_free(result.stdout + result.stderr, key_pair[0])


# A run in a process of its own, with the HTTP answered by responses inside it: what stdout and stderr
# really hold, a traceback included.
_RUN = """
import json, sys, responses
from tests.sf_answers import FakeOrg, INSTANCE
answer = json.loads(sys.argv[1])
with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
    org = FakeOrg()
    org.install(rsps, login_domain=None, oauth_host=INSTANCE)
    if answer.get("token") is not None:
        rsps.replace(responses.POST, f"https://{INSTANCE}/services/oauth2/token", json=answer["token"][1],
                     status=answer["token"][0])
    if answer.get("users") is not None:  # a page whose records are not records: nothing reads that
        org.failures.append(("FROM+User", (200, answer["users"])))
    from repsend.cli import main
    sys.argv = ["repsend", "dormant", "--dry-run", "--as-of", "2026-06-01", "--config", sys.argv[2]]
    main()
"""


@pytest.mark.parametrize(
    ("login", "answer", "code", "traceback"),
    [
        ("client_credentials", {"token": INVALID_CLIENT}, EXIT_SERVICE, False),
        ("jwt", {"token": INVALID_GRANT}, EXIT_SERVICE, False),
        ("client_credentials", {"token": (200, {"token_type": "Bearer"})}, EXIT_SERVICE, False),
        ("jwt", {"users": {"totalSize": 1, "done": True, "records": ["not a record"]}}, 1, True),
        ("token", {"users": {"totalSize": 1, "done": True, "records": ["not a record"]}}, 1, True),
    ],
)
def test_no_secret_reaches_stdout_or_stderr_even_with_a_traceback(
    tmp_path: Path, key_pair: Any, login: str, answer: dict[str, Any], code: int, traceback: bool
) -> None:
    env = {"SF_CLIENT_ID": "", "SF_CLIENT_SECRET": "", "SF_USERNAME": "", "SF_PASSWORD": "", "SF_PRIVATE_KEY_FILE": "",
           "SF_INSTANCE_URL": "", "SF_ACCESS_TOKEN": "", "SF_SECURITY_TOKEN": "", "SF_DOMAIN": ""}  # fmt: skip
    env.update({"client_credentials": CC_ENV, "jwt": jwt_env(key_pair[0]), "token": TOKEN_ENV}[login])
    config = write_config(tmp_path, sfa={"kind": "salesforce"})
    run = subprocess.run(
        [sys.executable, "-c", _RUN, json.dumps(answer), str(config)],
        capture_output=True, text=True, cwd=Path(__file__).parent.parent, timeout=120,
        env={**os.environ, **env, "REPSEND_CONFIG": "", "PYTHONPATH": str(Path(__file__).parent.parent)},
    )  # fmt: skip
    assert run.returncode == code, run.stderr
    assert ("Traceback (most recent call last)" in run.stderr) == traceback
    if not traceback:
        assert run.stderr.startswith("repsend: Salesforce")
    assert_secret_free(run.stdout + run.stderr, key_pair[0])


def test_settings_carry_the_login_variables_from_dotenv(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, CC_ENV)
    assert SalesforceSource.from_settings(settings).credentials.kind == "client_credentials"
