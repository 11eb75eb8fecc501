"""A Salesforce org over its REST API (simple-salesforce): reps, deals and contacts, streamed.

Every read is SOQL through ``query_all_iter``, which fetches 2,000 records a call and follows
``nextRecordsUrl``: the number of calls grows with pages, never with contacts, and no page is held
longer than it takes to turn its records into ``Contact``s.

Every query runs under the API user's sharing, so before the first read the source checks that the user
sees every record that decides who is mailed (``VISIBILITY_SOQL``), and fails closed when it may not.

A large org (``[sfa] bulk_threshold``) has its contacts pulled through the Bulk API 2.0 instead: one query
job per part of the pull, its results read in CSV sets of up to 50,000 records, each parsed as it comes by
the reader of a CSV export (``csv_reader``) into the Contacts a CSV export's records make (``contact_frames``).

The login is the one whose SF_* variables are set (``Credentials.from_env``): OAuth 2.0 client credentials
or JWT bearer through a connected app (both renew themselves), an access token (it cannot), or the SOAP
username/password login, retiring, always at SOAP_LOGIN_VERSION whatever REST version ``[sfa] api_version``
names. simple-salesforce makes each login; ``_client_class`` only pins the SOAP version and logs in again at
most once per call refused with INVALID_SESSION_ID.

simple-salesforce and requests are imported on first use only: ``--help`` and a CSV run never pay for
them, and this module is imported only when ``[sfa] kind = "salesforce"``. So is polars, for the Bulk
API 2.0 only.
"""

from __future__ import annotations

import base64
import functools
import itertools
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from repsend.errors import ConfigError, InputError, RepsendError, SFAError
from repsend.models import Contact, Rep, id15
from repsend.sfa.base import Activity, Blocks, Deal, DealIndex, OpenedDeal, Scope, address_blocks

if TYPE_CHECKING:
    import requests
    from simple_salesforce import Salesforce

    from repsend.settings import Settings

# (connect, read) seconds. simple-salesforce sets no timeout at all, so without one a dead link would
# hang a nightly run forever; a big SOQL page may take a while to come, hence the long read.
TIMEOUT = (10.0, 300.0)

USER_SOQL = "SELECT Id, Name, FirstName, LastName, Email, IsActive, Title, Phone, Signature FROM User"
BLOCKED_SOQL = (
    "SELECT Id, Email, AccountId, HasOptedOutOfEmail, IsEmailBounced FROM Contact"
    " WHERE Email != null AND (HasOptedOutOfEmail = true OR IsEmailBounced = true)"
)
# Leads that opted out, converted or not: a converted lead is read-only and converting it into an existing
# contact need not carry its opt-out over (Salesforce fills only the contact's empty fields), so its flag
# may be the only record of the opt-out. A person who opted back in on the contact stays blocked: not
# mailing someone is always lawful, mailing someone who opted out is not. One call per 2,000 such leads.
LEAD_OPT_OUT_SOQL = "SELECT Email FROM Lead WHERE HasOptedOutOfEmail = true AND Email != null"
CONTACT_FIELDS = (
    "Id", "FirstName", "LastName", "Email", "HasOptedOutOfEmail", "IsEmailBounced", "LastActivityDate",
    "CreatedDate", "AccountId", "Account.Name", "OwnerId", "Title",
)  # fmt: skip

# The contact pull in parts, open-deal contacts first: in account scope, the contacts of an account with
# an open deal come before any other record, so the audience learns their addresses before it meets
# another record with one (blocked_addresses holds the rest of the open-deal addresses up front).
# SOQL's rules shape it:
# - a semi-join (IN) or anti-join (NOT IN) sub-select cannot be combined with OR ("Semi join sub-selects
#   are not allowed with the 'OR' operator", quoted in Salesforce's own Mobile SDK, forcedotcom/
#   SalesforceMobileSDK-Android, ParentChildrenSyncDownTarget.java), and at most two may stand in one
#   WHERE; so "no account OR account without an open deal" cannot be one query;
# - no Salesforce page we found says whether `AccountId NOT IN (sub-select)` returns a contact whose
#   AccountId is null, nor what a null inside the sub-select does to NOT IN (in SQL it empties the
#   result). So nothing here depends on it: the sub-select drops nulls, the two joins only ever see a
#   non-null AccountId, and the null ones are their own query. IN and NOT IN over one null-free set are
#   complements, and `= null` / `!= null` split the rest: every contact comes out exactly once.
# The three answers cost ceil(b/2000) + ceil(c/2000) + ceil(n/2000) calls, at most N/2000 + 3 whatever
# the share in open deals. Id is never null, so the contact_role split needs two parts only.
# (A contact changed between two parts could show twice or not at all: the audience rules re-check
# every contact and stop a second mail to one address, and the next run sees it.)
_OPEN_ACCOUNTS = "SELECT AccountId FROM Opportunity WHERE IsClosed = false AND AccountId != null"
_OPEN_ROLES = (
    "SELECT ContactId FROM OpportunityContactRole WHERE Opportunity.IsClosed = false AND ContactId != null"
)
CONTACT_PARTS: dict[str, tuple[str, ...]] = {
    "account": (
        f"AccountId != null AND AccountId IN ({_OPEN_ACCOUNTS})",
        f"AccountId != null AND AccountId NOT IN ({_OPEN_ACCOUNTS})",
        "AccountId = null",
    ),
    "contact_role": (f"Id IN ({_OPEN_ROLES})", f"Id NOT IN ({_OPEN_ROLES})"),
}

COUNT_SOQL = "SELECT COUNT() FROM Contact"

# Whether the API user sees every record that decides who is mailed: "View All Data", or "View All" on
# each object, in any permission set assigned to it. The profile's own permission set (IsOwnedByProfile)
# is assigned too, and a permission set group's assignment points at the group's aggregate permission set
# (muting applied), so the assignments cover profile, permission sets and groups alike. A session-based
# permission set (HasActivationRequired) is off in an API session: it grants nothing here.
# One call: each permission set's object permissions come as a child subquery (ObjectPerms, at most one
# row per object), and the assignment's Username with it (Assignments), to name the user in a message.
VISIBILITY_SOQL = (
    "SELECT Id, PermissionsViewAllData, HasActivationRequired,"
    " (SELECT SobjectType, PermissionsViewAllRecords FROM ObjectPerms WHERE SobjectType IN ({objects})),"
    " (SELECT Assignee.Username FROM Assignments WHERE {assignee})"
    " FROM PermissionSet WHERE Id IN (SELECT PermissionSetId FROM PermissionSetAssignment WHERE {assignee})"
)
# The objects whose every record must be seen; OpportunityContactRole has no sharing of its own, it
# follows its Opportunity's. Lead joins them when lead opt-outs are read.
VISIBLE_OBJECTS = ("Contact", "Opportunity")
# What a user may miss without View All on each, in words.
_MAY_MISS = {"Contact": "Contact", "Opportunity": "Opportunity (nor its contact roles)", "Lead": "Lead"}
# Answers that say this user may not run a query (an object or a field it cannot read); any other failure
# (a limit, the session, the network, the server) stays a service error.
_NOT_REFUSALS = frozenset({"REQUEST_LIMIT_EXCEEDED", "API_DISABLED_FOR_ORG", "INVALID_SESSION_ID"})
_USER_ID = re.compile(r"005[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?")
# Bulk API 2.0. Records per results call: simple-salesforce's default, and a CSV set of a few tens of
# megabytes at most, one in memory at a time (as bytes, parsed where they lie).
BULK_PAGE = 50_000
# Seconds simple-salesforce waits before its first look at a job, and about as long between looks
# (bulk2.py, _Bulk2Client.wait_for_job: sleep(wait), then wait + e**n/1000); every look is an API call.
BULK_WAIT = 5.0
# A datetime as the REST answer gives it (always in UTC).
_UTC_DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000")
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*")
_API_VERSION = re.compile(r"\d+\.\d+")
_HOST_LABELS = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_ALLOW = '[sfa] partial_visibility = "allow"'

# The SOAP login() exists in API versions 31.0 to 64.0 only (Salesforce, "Platform SOAP API login()
# Retirement"): the username/password login always takes this one, whatever [sfa] api_version says for REST.
SOAP_LOGIN_VERSION = "64.0"
# The REST API version unless [sfa] api_version says otherwise (settings.py holds the same default).
DEFAULT_API_VERSION = "64.0"
# API versions up to 30.0 are retired: every call to them fails.
OLDEST_API_VERSION = 31

Login = Literal["client_credentials", "jwt", "token", "password"]
# Each login: the variables it needs, those it may take besides, and its name in messages. In this order
# in messages, the lasting ones first.
LOGINS: dict[Login, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "client_credentials": (
        ("SF_CLIENT_ID", "SF_CLIENT_SECRET", "SF_DOMAIN"), (), "the OAuth client credentials login"
    ),
    "jwt": (("SF_CLIENT_ID", "SF_USERNAME", "SF_PRIVATE_KEY_FILE", "SF_DOMAIN"), (), "the OAuth JWT bearer login"),
    "password": (
        ("SF_USERNAME", "SF_PASSWORD"), ("SF_SECURITY_TOKEN", "SF_DOMAIN"), "the username/password (SOAP) login"
    ),
    "token": (("SF_INSTANCE_URL", "SF_ACCESS_TOKEN"), (), "the access token"),
}
LOGIN_VARIABLES = tuple(dict.fromkeys(v for need, may, _ in LOGINS.values() for v in (*need, *may)))
# Values kept as typed: a password or a secret may start or end with a space.
_RAW = frozenset({"SF_PASSWORD", "SF_CLIENT_SECRET"})
SOAP_RETIRING = (
    "Salesforce: the username/password login uses SOAP login(), which Salesforce retires in Summer '27 (it is "
    "off by default in orgs created from Winter '26, and gone from API 65.0 on): switch to the client "
    "credentials or JWT bearer login (README, \"Logging in to Salesforce\")"
)

# What to check when the token endpoint refuses a login: (error, words in error_description, the logins it
# comes from) -> advice. Words as Salesforce's OAuth 2.0 token endpoint writes them.
_CC: tuple[Login, ...] = ("client_credentials",)
_JWT: tuple[Login, ...] = ("jwt",)
_APP = "the connected app (Setup > App Manager, or External Client App Manager)"
_OAUTH_ADVICE: dict[tuple[str, str, tuple[Login, ...]], str] = {
    ("invalid_client", "invalid client credentials", _CC): (
        f"SF_CLIENT_SECRET is not the consumer secret of SF_CLIENT_ID; copy both again from {_APP}"
    ),
    ("invalid_client_id", "", (*_CC, *_JWT)): (
        f"this org has no app whose consumer key is SF_CLIENT_ID; copy it again from {_APP}, and check that "
        "SF_DOMAIN is the org the app is in"
    ),
    ("invalid_client", "client identifier invalid", (*_CC, *_JWT)): (
        f"this org has no app whose consumer key is SF_CLIENT_ID; copy it again from {_APP}, and check that "
        "SF_DOMAIN is the org the app is in"
    ),
    ("invalid_grant", "no client credentials user enabled", _CC): (
        "the app has no Run As user: in its OAuth policies, enable the Client Credentials Flow and choose the "
        "integration user it runs as"
    ),
    ("unsupported_grant_type", "", _CC): "enable the Client Credentials Flow in the app's OAuth settings",
    ("unsupported_grant_type", "", _JWT): (
        "enable the JWT Bearer Flow (\"Use digital signatures\", with the certificate of SF_PRIVATE_KEY_FILE) in "
        "the app's OAuth settings"
    ),
    ("invalid_grant", "approve", _JWT): (
        "SF_USERNAME is not pre-authorized for the app: set its Permitted Users to \"Admin approved users are "
        "pre-authorized\" and add the user's profile or a permission set of it to the app's policies"
    ),
    ("invalid_grant", "audience", _JWT): (
        "check SF_DOMAIN: a sandbox's My Domain has .sandbox. in it (acme--uat.sandbox.my.salesforce.com)"
    ),
    ("invalid_grant", "expired", _JWT): "the assertion arrived expired: check this machine's clock",
    ("invalid_grant", "invalid assertion", _JWT): (
        "SF_PRIVATE_KEY_FILE is not the key of the certificate uploaded to the app (\"Use digital signatures\")"
    ),
    ("invalid_grant", "user", _JWT): "check SF_USERNAME: the username of an active user of this org",
    ("inactive_user", "", (*_CC, *_JWT)): "the API user is inactive or locked out: ask the admin",
    ("inactive_org", "", (*_CC, *_JWT)): "the org is locked or closed: ask the admin",
    ("rate_limit_exceeded", "", (*_CC, *_JWT)): "too many logins in a short time: run again later",
}
_OAUTH_FALLBACK: dict[Login, str] = {
    "client_credentials": (
        "check SF_CLIENT_ID and SF_CLIENT_SECRET (the app's consumer key and secret), SF_DOMAIN (the org's My "
        "Domain), and that the app has the Client Credentials Flow enabled with a Run As user"
    ),
    "jwt": (
        "check SF_CLIENT_ID (the app's consumer key), SF_USERNAME, SF_PRIVATE_KEY_FILE (the key of the app's "
        "certificate), SF_DOMAIN, and that the user is pre-authorized for the app"
    ),
    "token": "set a fresh SF_ACCESS_TOKEN",
    "password": "check SF_USERNAME, SF_PASSWORD, SF_SECURITY_TOKEN and SF_DOMAIN",
}


# Records a composite/sobjects call takes at most, and Ids or addresses a query lists at most (Salesforce's
# sObject Collections limit); a list of addresses is also cut to stay well within the URL a GET may have.
WRITE_BATCH = 200
_IN_LIST_CHARS = 4000


@dataclass(slots=True)
class OptedOut:
    """What an opt-out did in Salesforce for one address: the records set, those already set, the refusals."""

    set: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _in_lists(values: Sequence[str], most: int = WRITE_BATCH, chars: int = _IN_LIST_CHARS) -> Iterator[list[str]]:
    """``values`` in chunks for ``IN (...)`` lists: at most ``most`` values, and about ``chars`` characters."""
    chunk: list[str] = []
    size = 0
    for value in values:
        if chunk and (len(chunk) >= most or size + len(value) + 4 > chars):
            yield chunk
            chunk, size = [], 0
        chunk.append(value)
        size += len(value) + 4
    if chunk:
        yield chunk


@dataclass(frozen=True, slots=True)
class Credentials:
    """How to log in: OAuth client credentials or JWT bearer through a connected app, an access token for
    an instance, or a username and password (SOAP login). Which one: the fields set (``kind``)."""

    username: str = ""
    password: str = field(default="", repr=False)
    security_token: str = field(default="", repr=False)
    # login, test, or a My Domain such as acme.my (the host before .salesforce.com)
    domain: str = "login"
    instance_url: str = ""
    access_token: str = field(default="", repr=False)
    client_id: str = ""  # the connected app's consumer key: not a secret, but never printed either
    client_secret: str = field(default="", repr=False)
    private_key_file: str = ""
    private_key: str = field(default="", repr=False)  # the PEM text of private_key_file

    @property
    def kind(self) -> Login:
        if self.client_secret:
            return "client_credentials"
        if self.private_key:
            return "jwt"
        if self.access_token:
            return "token"
        return "password"

    @property
    def name(self) -> str:
        return LOGINS[self.kind][2]

    @property
    def by_token(self) -> bool:
        return self.kind == "token"

    @property
    def renews(self) -> bool:
        """Whether it can log in again when a session expires (all but an access token)."""
        return self.kind != "token"

    @property
    def host(self) -> str:
        """Where the first request goes: the login host, or the instance for an access token."""
        if self.by_token:
            return urlparse(self.instance_url).hostname or self.instance_url
        return f"{self.domain}.salesforce.com"

    @property
    def audience(self) -> str:
        """The JWT bearer login's ``aud``: login.salesforce.com, or test.salesforce.com for a sandbox (or a
        scratch org), whichever host the token is asked from (Salesforce takes no My Domain there)."""
        sandbox = self.domain == "test" or self.domain.endswith((".sandbox.my", ".scratch.my"))
        return "test" if sandbox else "login"

    @property
    def secrets(self) -> tuple[str, ...]:
        together = self.password + self.security_token  # the SOAP login sends them glued
        basic = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()  # client credentials
        key_lines = [line.strip() for line in self.private_key.splitlines() if len(line.strip()) >= 16]
        found = (together, self.password, self.security_token, self.access_token, self.client_secret,
                 basic if self.client_secret else "", self.private_key.strip(), *key_lines)  # fmt: skip
        return tuple(s for s in found if s)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> tuple[Credentials, list[str]]:
        """The credentials in the environment (with .env), and notes; ConfigError says what is missing.

        The login is the one whose variables are set; exactly one may be: two complete sets, or a variable
        of another login beside a complete set, stop the run (exit 2) naming them, rather than guess."""

        def get(name: str) -> str:
            value = env.get(name) or ""
            return value if name in _RAW else value.strip()

        present = [name for name in LOGIN_VARIABLES if get(name)]
        complete = [kind for kind, (need, _, _) in LOGINS.items() if all(get(v) for v in need)]
        if len(complete) > 1:
            sets = [f"{LOGINS[k][2]} ({_and(LOGINS[k][0])})" for k in complete]
            both = f"both {sets[0]} and {sets[1]} are" if len(sets) == 2 else f"{_and(sets)} are all"
            raise ConfigError(
                f"Salesforce credentials: {both} set; unset the variables of the login not to use (SF_DOMAIN aside)"
            )
        if complete:
            kind = complete[0]
            need, may, name = LOGINS[kind]
            # SF_DOMAIN is left over harmlessly beside an access token.
            extra = [v for v in present if v not in need and v not in may and v != "SF_DOMAIN"]
            if extra:
                raise ConfigError(
                    f"Salesforce credentials: {name} is set ({_and(need)}), and so {_is(extra)} {_and(extra)}, "
                    f"which it does not use; unset {_and(extra)}, or complete the login {_it(extra)} belong{_s(extra)} "
                    "to and unset the other"
                )
            return cls._of(kind, get), [SOAP_RETIRING] if kind == "password" else []
        # Nothing complete: the logins most of whose variables are set (SF_DOMAIN is everyone's), and what
        # each lacks.
        started = {k: len([v for v in need if get(v) and v != "SF_DOMAIN"]) for k, (need, _, _) in LOGINS.items()}
        most = max(started.values())
        if most == 0:
            raise ConfigError(
                "Salesforce credentials are not set: set, in the environment or in .env, "
                + "; or ".join(f"{_and(need)} for {name}" for need, _, name in LOGINS.values())
                + " (see README, \"Logging in to Salesforce\")"
            )
        lacking = []
        for k, count in started.items():
            if count == most:
                need, _, name = LOGINS[k]
                missing = [v for v in need if not get(v)]
                lacking.append(f"{_and(missing)} {_is(missing)} not set, for {name} ({_and(need)})")
        raise ConfigError("Salesforce credentials: " + "; or ".join(lacking))

    @classmethod
    def _of(cls, kind: Login, get: Callable[[str], str]) -> Credentials:
        """The credentials of one complete login, its values checked."""
        if kind == "token":
            return cls(instance_url=_instance_url(get("SF_INSTANCE_URL")), access_token=get("SF_ACCESS_TOKEN"))
        if kind == "password":
            return cls(
                username=get("SF_USERNAME"),
                password=get("SF_PASSWORD"),
                security_token=get("SF_SECURITY_TOKEN"),  # empty is fine from the org's trusted IP ranges
                domain=_login_domain(get("SF_DOMAIN")),
            )
        domain = _login_domain(get("SF_DOMAIN"))
        if kind == "client_credentials":
            if domain in ("login", "test"):
                raise ConfigError(
                    f"SF_DOMAIN: the client credentials login needs the org's My Domain (Setup > My Domain, such "
                    f"as acme.my.salesforce.com), not {domain}.salesforce.com, which refuses this login"
                )
            return cls(client_id=get("SF_CLIENT_ID"), client_secret=get("SF_CLIENT_SECRET"), domain=domain)
        path = get("SF_PRIVATE_KEY_FILE")
        return cls(
            client_id=get("SF_CLIENT_ID"),
            username=get("SF_USERNAME"),
            private_key_file=path,
            private_key=_private_key(path),
            domain=domain,
        )


def _is(names: Sequence[str]) -> str:
    return "is" if len(names) == 1 else "are"


def _it(names: Sequence[str]) -> str:
    return "it" if len(names) == 1 else "they"


def _s(names: Sequence[str]) -> str:
    return "s" if len(names) == 1 else ""


def _private_key(path: str) -> str:
    """The PEM text of SF_PRIVATE_KEY_FILE, checked now (an RSA private key without a passphrase) so that a
    wrong file stops the run before any request; the JWT bearer login signs with it (RS256)."""
    import importlib.util

    if importlib.util.find_spec("cryptography") is None:
        raise ConfigError(
            "SF_PRIVATE_KEY_FILE: the JWT bearer login signs with the cryptography package, which is not "
            "installed; install repsend with its jwt extra: pip install 'repsend[jwt]'"
        )
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    file = Path(path).expanduser()
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"SF_PRIVATE_KEY_FILE: cannot read {file}: {exc.strerror or exc}") from None
    try:
        key = load_pem_private_key(data, password=None)
    except TypeError:  # the key is encrypted
        raise ConfigError(
            f"SF_PRIVATE_KEY_FILE: {file} is protected by a passphrase; repsend needs it without one (openssl "
            "rsa -in key.pem -out server.key), readable by the nightly job's user only"
        ) from None
    except (ValueError, UnicodeError):
        key = None
    if not isinstance(key, RSAPrivateKey):
        raise ConfigError(
            f"SF_PRIVATE_KEY_FILE: {file} is not an RSA private key in PEM form (-----BEGIN PRIVATE KEY-----), "
            "the key of the certificate uploaded to the connected app"
        )
    return data.decode("ascii", "replace")


def _login_domain(raw: str) -> str:
    """SF_DOMAIN as simple-salesforce wants it: "login", "test" or "acme.my", whatever form it came in
    (a bare My Domain name such as "acme" too)."""
    domain = re.sub(r"^https?://", "", raw.strip().lower()).split("/")[0]
    domain = domain.removesuffix(".salesforce.com")
    if not domain:
        return "login"
    if domain.endswith(("force.com", "site.com")) or not _HOST_LABELS.fullmatch(domain):
        raise ConfigError(
            f"SF_DOMAIN: {raw!r} is not a Salesforce login domain; use the org's My Domain (such as "
            "acme.my.salesforce.com, or acme), or login or test (a sandbox)"
        )
    if "." not in domain and domain not in ("login", "test"):
        return f"{domain}.my"
    if domain.endswith((".sandbox", ".develop", ".scratch")):  # a My Domain's kind without its .my
        return f"{domain}.my"
    return domain


def _instance_url(raw: str) -> str:
    url = raw if "://" in raw else f"https://{raw}"
    if not urlparse(url).hostname:
        raise ConfigError(f"SF_INSTANCE_URL: {raw!r} is not a URL like https://acme.my.salesforce.com")
    return url


def _dedupe(names: Sequence[str]) -> list[str]:
    """Field names once each: SOQL names are case-insensitive and a field selected twice is an error."""
    seen: set[str] = set()
    out = []
    for name in names:
        if name and name.lower() not in seen:
            seen.add(name.lower())
            out.append(name)
    return out


def _lookup(record: Mapping[str, Any], path: str) -> Any:
    """A (dotted) field of a record; the API spells names its own way, so fall back to any case."""
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None  # an empty lookup comes back as null, not as a dict of nulls
        if part in value:
            value = value[part]
        else:
            lowered = part.lower()
            value = next((v for k, v in value.items() if k.lower() == lowered), None)
    return value


def _text(value: Any) -> str:
    """A field value for a template, written as a CSV export writes it."""
    if value is None or isinstance(value, Mapping):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and _UTC_DATETIME.fullmatch(value):
        return value[:-5] + "Z"  # a datetime as an export (and the Bulk API) writes it: 2025-03-14T09:30:00.000Z
    return str(value)


def _date(value: Any) -> date | None:
    """The date of "2025-03-14" or of "2025-03-14T09:30:00.000+0000" (as in UTC)."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _first_error(content: Any) -> tuple[str, str]:
    """(errorCode, message) of an error answer: a JSON list of {"message", "errorCode"}."""
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        return str(content[0].get("errorCode") or ""), str(content[0].get("message") or "").strip()
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    return "", str(content or "").strip()[:300]


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _moment(value: Any) -> datetime | None:
    """The aware datetime of "2025-03-14T09:30:00.000+0000"."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError:
        return None


def _soql_string(text: str) -> str:
    """A SOQL string literal: backslashes and quotes escaped."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _children(record: Mapping[str, Any], relationship: str) -> list[Mapping[str, Any]]:
    """The records of a child subquery: a {totalSize, done, records} answer, or null for none."""
    value = _lookup(record, relationship)
    records = value.get("records") if isinstance(value, Mapping) else None
    return [r for r in records or () if isinstance(r, Mapping)]


def _unseen(permission_sets: Iterable[Mapping[str, Any]], objects: Sequence[str]) -> list[str]:
    """The objects of which these permission sets may let the user miss records: none with View All Data,
    else those without View All."""
    viewable: set[str] = set()
    for ps in permission_sets:
        if ps.get("HasActivationRequired") is True:
            continue
        if ps.get("PermissionsViewAllData") is True:
            return []
        for perm in _children(ps, "ObjectPerms"):
            if perm.get("PermissionsViewAllRecords") is True:
                viewable.add(str(perm.get("SobjectType") or "").lower())
    return [name for name in objects if name.lower() not in viewable]


class _Unchecked(ConfigError):
    """What the API user sees could not be checked (a setup object it may not read, no identity)."""


def _counting_session(timeout: tuple[float, float]) -> requests.Session:
    import requests

    class CountingSession(requests.Session):
        """Counts every HTTP request sent (login, queries, retries) and sets a default timeout; keeps the
        identity URL of the last OAuth login (its answer's ``id``, which simple-salesforce drops), so that
        the client credentials login's user costs no call of its own."""

        calls = 0
        identity = ""

        def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", timeout)
            return super().request(method, url, *args, **kwargs)

        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
            self.calls += 1
            response = super().send(request, **kwargs)
            if response.status_code == 200 and urlparse(request.url or "").path == "/services/oauth2/token":
                try:
                    answer = response.json()
                except ValueError:
                    answer = None
                if isinstance(answer, Mapping) and isinstance(answer.get("id"), str):
                    self.identity = answer["id"]
            return response

    return CountingSession()


class _RefusedAfterLogin(Exception):
    """A call refused the session (401 INVALID_SESSION_ID) again right after a new login."""


class _UnreadableLogin(Exception):
    """The login answered in a shape simple-salesforce could not read (a proxy's page, a changed API)."""


@functools.cache
def _client_class() -> type[Salesforce]:
    """simple-salesforce's client, its login changed in two ways: the SOAP login always at
    SOAP_LOGIN_VERSION (the REST calls at [sfa] api_version), and at most one new login per refused call.

    simple-salesforce (api.py, ``Salesforce._call_salesforce``) answers a 401 INVALID_SESSION_ID by logging in
    again (``_refresh_session``, with the login it was made with) and repeating the call, up to four logins a
    call. A session refused right after a fresh login will be refused again: once is enough, then stop.
    """
    from simple_salesforce import Salesforce, SalesforceAuthenticationFailed

    class Client(Salesforce):
        logins = 0
        # Called after each login but the first (a session that expired mid-run).
        on_relogin: Callable[[], None] | None = None
        _retrying = False  # the call under way is the repeat after a new login

        def _call_salesforce(self, method: str, url: str, name: str = "", retries: int = 0, **kwargs: Any) -> Any:
            outer, self._retrying = self._retrying, retries > 0
            try:
                return super()._call_salesforce(method, url, name, retries=retries, **kwargs)
            finally:
                self._retrying = outer

        def _refresh_session(self) -> None:
            import requests

            login = self._salesforce_login_partial
            if login is None:  # an access token: simple-salesforce never asks, it cannot log in again
                super()._refresh_session()
                return
            if self._retrying:
                raise _RefusedAfterLogin()
            try:
                # simple-salesforce warns (on stderr, with the consumer key) of an app to approve: the
                # refusal's message says it
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if self.auth_type == "password":  # the SOAP login; simple-salesforce would use the REST version
                        self.session_id, self.sf_instance = login(sf_version=SOAP_LOGIN_VERSION)
                    else:
                        self.session_id, self.sf_instance = login()
            except (SalesforceAuthenticationFailed, requests.RequestException):
                raise
            except Exception as exc:  # e.g. a 200 without instance_url: AttributeError deep in the library
                raise _UnreadableLogin(type(exc).__name__) from None
            self._generate_headers()
            self.logins += 1
            if self.logins > 1 and self.on_relogin is not None:
                self.on_relogin()

    return Client


class SalesforceSource:
    """Reps, deals and contacts from a Salesforce org; see ``base.Source``."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        api_version: str = DEFAULT_API_VERSION,
        contact_fields: Sequence[str] = (),
        language_field: str = "",
        scope: Scope = "account",
        config_path: Path | None = None,
        notes: Sequence[str] = (),
        timeout: tuple[float, float] = TIMEOUT,
        bulk_threshold: int = 0,
        bulk_page: int = BULK_PAGE,
        bulk_wait: float = BULK_WAIT,
        partial_visibility: Literal["fail", "allow"] = "fail",
        lead_opt_outs: bool = True,
    ) -> None:
        self.credentials = credentials
        self.api_version = api_version
        self.extra_fields = list(contact_fields)
        self.language_field = language_field
        # contacts() takes no scope: the one deals() was last asked for orders the pull.
        self.scope: Scope = scope
        self.config_path = config_path
        self.notes: list[str] = list(notes)
        self.timeout = timeout
        # From this many contacts on, contacts come through the Bulk API 2.0; 0: never.
        self.bulk_threshold = bulk_threshold
        self.bulk_page = bulk_page
        self.bulk_wait = bulk_wait
        # "fail": stop before the first read unless the API user sees every record that decides who is
        # mailed; "allow": go on with what it sees, saying once what it may miss.
        self.partial_visibility = partial_visibility
        self.lead_opt_outs = lead_opt_outs
        # Who the API user is, in messages: the username; for an access token what the check learns (its
        # Id, then its Username), "" before.
        self.api_user = credentials.username
        self._visibility_checked = False
        #: What the last contacts() pull used, and the org's contacts as COUNT() gave them (None: not asked).
        self.contact_api: str = ""
        self.contact_count: int | None = None
        self.select = _dedupe([*CONTACT_FIELDS, language_field, *self.extra_fields])
        # id15 -> Email of each contact the deals read by deals() name (primary contact or contact role).
        self._named_addresses: dict[str, str] = {}
        self._session: requests.Session | None = None
        self._sf: Salesforce | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SalesforceSource:
        """Check the config and the credentials now; log in only when the first query needs it."""
        config = settings.config_path
        version = settings.sfa.api_version
        if not _API_VERSION.fullmatch(version):
            raise ConfigError(
                f"{config}: [sfa] api_version: expected a version like '{DEFAULT_API_VERSION}', got {version!r}"
            )
        if int(version.split(".")[0]) < OLDEST_API_VERSION:
            raise ConfigError(
                f"{config}: [sfa] api_version: {version} is retired (Salesforce answers nothing below "
                f"{OLDEST_API_VERSION}.0); use {DEFAULT_API_VERSION} or later"
            )
        checks = [("[sfa] contact_fields", name) for name in settings.sfa.contact_fields]
        checks.append(("[template] language_field", settings.template.language_field))
        for key, name in checks:
            if name and not _FIELD_NAME.fullmatch(name):
                raise ConfigError(
                    f"{config}: {key}: {name!r} is not a Salesforce field API name "
                    "(such as Department, Region__c or Account.Industry)"
                )
        credentials, notes = Credentials.from_env(settings.env)
        return cls(
            credentials,
            api_version=settings.sfa.api_version,
            contact_fields=settings.sfa.contact_fields,
            language_field=settings.template.language_field,
            scope=settings.audience.active_deal_scope,
            config_path=config,
            notes=notes,
            bulk_threshold=settings.sfa.bulk_threshold,
            partial_visibility=settings.sfa.partial_visibility,
            lead_opt_outs=settings.sfa.lead_opt_outs,
        )

    # -- what the run asks -------------------------------------------------------------------------

    def reps(self) -> dict[str, Rep]:
        self.check_visibility()
        reps: dict[str, Rep] = {}
        for r in self._query(USER_SOQL, "User"):
            rep = Rep(
                id=r.get("Id") or "",
                name=r.get("Name") or "",
                email=r.get("Email") or "",
                is_active=r.get("IsActive") is True,
                first_name=r.get("FirstName") or "",
                last_name=r.get("LastName") or "",
                title=r.get("Title") or "",
                phone=r.get("Phone") or "",
                # as a CSV export reads it: one line break form (a text area typed in a browser holds CRLF)
                signature=(r.get("Signature") or "").replace("\r\n", "\n").strip(),
            )
            reps[id15(rep.id)] = rep
        return reps

    def deals(self, recent_since: date, scope: Scope) -> DealIndex:
        """The deals that count, open or changed since ``recent_since``, and their contact roles.

        Both queries also read the Email of the contact each deal or role names (``Contact.Email``, null
        for none): ``blocked_addresses`` needs the addresses of the people in an open deal, and this way
        they cost no call of their own."""
        self.check_visibility()
        self.scope = scope
        since = recent_since.isoformat()

        def recent(via: str) -> str:
            return f"{via}LastModifiedDate >= {since}T00:00:00Z OR {via}CloseDate >= {since}"

        opps = self._query(
            "SELECT Id, AccountId, ContactId, Contact.Email, IsClosed, CloseDate, LastModifiedDate FROM Opportunity"
            f" WHERE IsClosed = false OR {recent('')}",
            "Opportunity",
        )
        # The contact roles of the same deals: the same filter, through the role's Opportunity.
        roles = self._query(
            "SELECT OpportunityId, ContactId, Contact.Email FROM OpportunityContactRole"
            f" WHERE Opportunity.IsClosed = false OR {recent('Opportunity.')}",
            "OpportunityContactRole",
        )
        named = self._named_addresses = {}

        def name(r: Mapping[str, Any]) -> str:
            """The record's ContactId, its contact's address remembered."""
            contact = r.get("ContactId") or ""
            email = _lookup(r, "Contact.Email")
            if contact and email:
                named[id15(contact)] = email
            return contact

        def deal_records() -> Iterator[Deal]:
            for r in opps:
                name(r)
                yield self._deal(r)

        pairs = ((r.get("OpportunityId") or "", name(r)) for r in roles)
        return DealIndex.build(deal_records(), pairs, recent_since)

    def blocked_addresses(self, deals: DealIndex, scope: Scope) -> Blocks:
        """Opt-outs and bounces (one query), the addresses of leads that opted out (one query, unless
        ``[sfa] lead_opt_outs = false``), and the addresses of the contacts an open deal names as its
        primary contact or in a contact role (read by ``deals``, which must come first).

        In account scope the contacts of an account with an open deal are not read here: that would cost a
        call per 2,000 of them. ``contacts`` yields them before any other record instead, so the audience
        learns their addresses (as ACTIVE_DEAL) before it meets another record with one of them."""
        self.check_visibility()
        self.scope = scope
        flags = (
            (
                r.get("Email") or "",
                r.get("Id") or "",
                r.get("AccountId") or "",
                r.get("HasOptedOutOfEmail") is True,
                r.get("IsEmailBounced") is True,
            )
            for r in self._query(BLOCKED_SOQL, "Contact")
        )
        # No account: an open deal must name the contact itself (address_blocks asks the index which do).
        named = ((email, contact, "", False, False) for contact, email in self._named_addresses.items())
        leads = self._lead_opt_outs() if self.lead_opt_outs else ()
        return address_blocks(itertools.chain(flags, named), deals, scope, leads)

    def contacts(self) -> Iterator[Contact]:
        """Every contact once, open-deal ones first; through the Bulk API 2.0 for an org past the threshold.

        Either way the same parts in the same order, and the same ``Contact`` for the same record.
        """
        self.check_visibility()
        select = ", ".join(self.select)
        bulk = self._use_bulk()
        self.contact_api = "bulk2" if bulk else "rest"
        for where in CONTACT_PARTS[self.scope]:
            soql = f"SELECT {select} FROM Contact WHERE {where}"
            if bulk:
                yield from self._bulk_contacts(soql)
            else:
                for record in self._query(soql, "Contact"):
                    yield self._contact(record)

    def opened_deals(self, since: date) -> Iterator[OpenedDeal]:
        """Opportunities created on or after ``since`` with their contact roles, in one query's pages (a
        child subquery, never a query per deal)."""
        self.check_visibility()
        soql = ("SELECT Id, AccountId, ContactId, CreatedDate, (SELECT ContactId FROM OpportunityContactRoles) "
                f"FROM Opportunity WHERE CreatedDate >= {since.isoformat()}T00:00:00Z")
        for r in self._query(soql, "Opportunity"):
            created = _date(r.get("CreatedDate"))
            if created is None:
                continue
            named = [r.get("ContactId") or ""] + [c.get("ContactId") or "" for c in
                                                   _children(r, "OpportunityContactRoles")]
            yield OpenedDeal(id15(r.get("Id")), id15(r.get("AccountId")),
                             tuple(dict.fromkeys(id15(c) for c in named if c)), created)

    def account_ids(self, contact_ids: Iterable[str]) -> dict[str, str]:
        """Their accounts, 300 contacts a query (a SOQL statement stays far below its length limit)."""
        self.check_visibility()
        wanted = sorted({c.strip() for c in contact_ids if c.strip()})  # as the org gave them (18 characters)
        found: dict[str, str] = {}
        for start in range(0, len(wanted), 300):
            ids = ", ".join(_soql_string(c) for c in wanted[start:start + 300])
            for r in self._query(f"SELECT Id, AccountId FROM Contact WHERE Id IN ({ids})", "Contact"):
                if r.get("AccountId"):
                    found[id15(r.get("Id"))] = id15(r.get("AccountId"))
        return found

    def activities(self, contact_ids: Iterable[str], since: date) -> Iterator[Activity]:
        """Tasks on these contacts created since ``since``, and their LastActivityDate: two queries per 300."""
        self.check_visibility()
        wanted = sorted({c.strip() for c in contact_ids if c.strip()})
        for start in range(0, len(wanted), 300):
            ids = ", ".join(_soql_string(c) for c in wanted[start:start + 300])
            soql = (f"SELECT Id, WhoId, CreatedDate FROM Task WHERE WhoId IN ({ids})"
                    f" AND CreatedDate >= {since}T00:00:00Z")
            for r in self._query(soql, "Task"):
                at = _moment(r.get("CreatedDate"))
                if at is not None and r.get("WhoId"):
                    yield Activity(id15(r.get("WhoId")), at, id15(r.get("Id")))
            for r in self._query(f"SELECT Id, LastActivityDate FROM Contact WHERE Id IN ({ids})", "Contact"):
                last = _date(r.get("LastActivityDate"))
                if last is not None and last >= since:
                    yield Activity(id15(r.get("Id")), datetime.combine(last, time(0, 0), tzinfo=UTC))

    def check_fields(self) -> None:
        """Every Contact field the run reads is readable by the API user: one query of one record."""
        self.check_visibility()
        for _ in self._query(f"SELECT {', '.join(self.select)} FROM Contact LIMIT 1", "Contact"):
            pass

    def api_limits(self) -> tuple[int, int] | None:
        """(remaining, max) of today's API requests from the ``limits`` resource; None if it says nothing."""
        with self._errors("limits"):
            daily = self._client().limits().get("DailyApiRequests") or {}
        if "Remaining" not in daily or "Max" not in daily:
            return None
        return int(daily["Remaining"]), int(daily["Max"])

    # -- writing back (repsend sync) --------------------------------------------------------------

    def write_tasks(self, records: Sequence[Mapping[str, Any]]) -> list[tuple[str | None, str | None]]:
        """Create these Tasks with one composite/sobjects call (at most WRITE_BATCH, allOrNone false): for each
        record, in order, its new Id or Salesforce's refusal in words."""
        if len(records) > WRITE_BATCH:
            raise ValueError(f"at most {WRITE_BATCH} records a call, not {len(records)}")
        body = {"allOrNone": False, "records": [{"attributes": {"type": "Task"}, **record} for record in records]}
        with self._errors("Task", doing="creating"):
            answer = self._client().restful("composite/sobjects", method="POST", json=body)
        return self._results(answer, len(records), "Task")

    def find_tasks(self, who_ids: Sequence[str], day: date) -> list[tuple[str, str, str]]:
        """(Id, WhoId, Subject) of the email Tasks on these contacts (at most WRITE_BATCH) that day: one query."""
        listed = ", ".join(_soql_string(who) for who in who_ids)
        soql = (f"SELECT Id, WhoId, Subject FROM Task WHERE WhoId IN ({listed}) AND TaskSubtype = 'Email'"
                f" AND ActivityDate = {day.isoformat()}")
        return [(r.get("Id") or "", r.get("WhoId") or "", r.get("Subject") or "") for r in self._query(soql, "Task")]

    def opt_out(self, addresses: Sequence[str]) -> dict[str, OptedOut]:
        """Set HasOptedOutOfEmail on every Contact and (with lead_opt_outs) Lead with these addresses.

        The records come from ``Email IN (...)`` queries, a page of addresses each, never one per address (a
        converted lead is left out: Salesforce refuses to change one); those not set yet are updated through
        composite/sobjects PATCH, WRITE_BATCH a call. Per normalized address: what was set, what already was,
        and the refusals."""
        from repsend.models import normalize_email

        wanted = list(dict.fromkeys(normalize_email(a) for a in addresses if normalize_email(a)))
        done = {address: OptedOut() for address in wanted}
        todo: list[tuple[str, str, str]] = []  # (sobject, Id, address)
        objects = [("Contact", ""), *([("Lead", " AND IsConverted = false")] if self.lead_opt_outs else [])]
        for sobject, more in objects:
            for chunk in _in_lists(wanted):
                listed = ", ".join(_soql_string(address) for address in chunk)
                soql = f"SELECT Id, Email, HasOptedOutOfEmail FROM {sobject} WHERE Email IN ({listed}){more}"
                for r in self._query(soql, sobject):
                    address = normalize_email(r.get("Email"))
                    if address not in done:
                        continue
                    if r.get("HasOptedOutOfEmail") is True:
                        done[address].already.append(r.get("Id") or "")
                    else:
                        todo.append((sobject, r.get("Id") or "", address))
        for start in range(0, len(todo), WRITE_BATCH):
            batch = todo[start:start + WRITE_BATCH]
            records = [{"attributes": {"type": kind}, "id": sid, "HasOptedOutOfEmail": True} for kind, sid, _ in batch]
            with self._errors("Contact and Lead", doing="updating"):
                answer = self._client().restful("composite/sobjects", method="PATCH",
                                                json={"allOrNone": False, "records": records})
            results = self._results(answer, len(batch), "Contact and Lead")
            for (kind, sid, address), (_, error) in zip(batch, results, strict=True):
                if error is None:
                    done[address].set.append(sid)
                else:
                    done[address].errors.append(f"{kind} {sid}: {error}")
        return done

    def _results(self, answer: Any, count: int, sobject: str) -> list[tuple[str | None, str | None]]:
        """A composite/sobjects answer: one {id, success, errors} per record, in order."""
        host = self._sf.sf_instance if self._sf is not None else self.credentials.host
        if not isinstance(answer, list) or len(answer) != count or not all(isinstance(a, Mapping) for a in answer):
            raise SFAError(
                f"Salesforce at {host} answered composite/sobjects for {count} {sobject} record(s) in an unexpected "
                "shape (not one result per record): nothing is marked written; `repsend sync` looks them up"
            )
        results: list[tuple[str | None, str | None]] = []
        for entry in answer:
            if entry.get("success") is True:
                results.append((str(entry.get("id") or ""), None))
                continue
            words = []
            for error in entry.get("errors") or [{}]:
                error = error if isinstance(error, Mapping) else {}
                fields = ", ".join(str(f) for f in error.get("fields") or [])
                text = f"{error.get('statusCode') or 'ERROR'}: {error.get('message') or 'refused'}"
                words.append(f"{text} ({fields})" if fields else text)
            results.append((None, self._scrub("; ".join(words))[:1000]))
        return results

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    def check_visibility(self) -> None:
        """Stop (ConfigError, exit 2) unless the API user sees every Contact, Opportunity (with its contact
        roles) and, when lead opt-outs are read, Lead; with [sfa] partial_visibility = "allow", say once what
        it may miss instead. Made once, by the first of reps, deals, blocked_addresses and contacts, so that
        nothing is read from an org the run cannot trust; one call (two with an access token)."""
        if self._visibility_checked:
            return
        objects = [*VISIBLE_OBJECTS, *(["Lead"] if self.lead_opt_outs else [])]
        allow = self.partial_visibility == "allow"
        try:
            unseen = self._read_visibility(objects)
        except _Unchecked as why:
            if not allow:
                raise ConfigError(f"Salesforce: {why}; or set {_ALLOW} to run on what it sees") from None
            self.notes.append(
                f"Salesforce: {why}; it may not see every {_and([_MAY_MISS[o] for o in objects])}, and what it "
                f"cannot see stops no mail ({_ALLOW})"
            )
        else:
            if unseen:
                may_miss = _and([_MAY_MISS[o] for o in unseen])
                granted = [o for o in objects if o not in unseen]
                if not allow:
                    has = f"it has View All on {_and(granted)} only" if granted else "it has neither"
                    raise ConfigError(
                        f"Salesforce: {self._who} may not see every {may_miss}, and what it cannot see would stop "
                        f"no mail: grant View All Data, or View All on {_and(objects)}, to "
                        f"{self.api_user or 'that user'} through its profile or a permission set ({has}); or set "
                        f"{_ALLOW} to run on what it sees"
                    )
                self.notes.append(
                    f"Salesforce: {self._who} has neither View All Data nor View All on {_and(unseen)}: it may not "
                    f"see every {may_miss}, and what it cannot see stops no mail ({_ALLOW})"
                )
        self._visibility_checked = True

    @property
    def _who(self) -> str:
        if self.api_user:
            return f"the API user {self.api_user}"
        if self.credentials.kind == "client_credentials":
            return "the API user (the Run As user of the app of SF_CLIENT_ID)"
        return "the API user of SF_ACCESS_TOKEN"

    @property
    def api_calls(self) -> int:
        """HTTP requests sent so far, the login included (Salesforce counts the queries against its limit)."""
        return getattr(self._session, "calls", 0)

    # -- records -----------------------------------------------------------------------------------

    @staticmethod
    def _deal(r: Mapping[str, Any]) -> Deal:
        closed = r.get("IsClosed") is True
        changed = _date(r.get("LastModifiedDate"))
        close_date = _date(r.get("CloseDate"))
        if closed and close_date is not None and (changed is None or close_date > changed):
            changed = close_date
        return Deal(
            id=r.get("Id") or "",
            account_id=r.get("AccountId") or "",
            contact_id=r.get("ContactId") or "",
            is_closed=closed,
            changed=changed,
        )

    def _contact(self, r: Mapping[str, Any]) -> Contact:
        sfid = r.get("Id") or ""
        return Contact(
            id=sfid,
            email=r.get("Email") or "",
            owner_id=r.get("OwnerId") or "",
            first_name=r.get("FirstName") or "",
            last_name=r.get("LastName") or "",
            account_id=r.get("AccountId") or "",
            account_name=_text(_lookup(r, "Account.Name")),
            title=r.get("Title") or "",
            opted_out=r.get("HasOptedOutOfEmail") is True,
            bounced=r.get("IsEmailBounced") is True,
            last_activity=_date(r.get("LastActivityDate")),
            created=_date(r.get("CreatedDate")),
            language_value=_text(_lookup(r, self.language_field)) if self.language_field else "",
            extra={name: _text(_lookup(r, name)) for name in self.extra_fields},
            origin=f"Salesforce Contact {sfid}",
        )

    # -- the wire ----------------------------------------------------------------------------------

    def _read_visibility(self, objects: Sequence[str]) -> list[str]:
        """The objects the API user may not see every record of, from its permission sets (one query; for an
        access token the user's Id first, from the REST API's root). _Unchecked if that cannot be read."""
        c = self.credentials

        def refused(said: str) -> RepsendError:
            # An object the user may not query is "not supported" (INVALID_TYPE) or refused outright.
            setup = said.startswith(("INVALID_TYPE", "INSUFFICIENT_ACCESS"))
            advice = (
                '; give it "View Setup and Configuration" so that repsend can check (reading '
                'PermissionSetAssignment needs it, or "Assign Permission Sets" or "Manage Users")'
                if setup
                else ""
            )
            return _Unchecked(
                f"cannot check what {self._who} sees: Salesforce refused to read its permission sets ({said}){advice}"
            )

        with self._errors("PermissionSet", refused=refused):
            if not c.username:  # an access token, or the client credentials login's Run As user
                user_id = self.api_user = self._token_user_id()
                assignee = f"AssigneeId = '{user_id}'"
            else:
                assignee = f"Assignee.Username = {_soql_string(c.username)}"
            listed = ", ".join(f"'{name}'" for name in objects)
            soql = VISIBILITY_SOQL.format(objects=listed, assignee=assignee)
            permission_sets = list(self._client().query_all_iter(soql))
        username = next(
            (name for ps in permission_sets for a in _children(ps, "Assignments")
             if (name := _lookup(a, "Assignee.Username"))),
            None,
        )  # fmt: skip
        if username:
            self.api_user = str(username)
        return _unseen(permission_sets, objects)

    def _token_user_id(self) -> str:
        """The session's user (of an access token, or the Run As user of a client credentials login): the end
        of its identity URL, which the OAuth login answered, or else the REST API's root lists (GET
        /services/data/vXX.X/, one call). A login by username is found by its Username instead, for free."""
        client = self._client()
        identity = getattr(self._session, "identity", "")  # what an OAuth login answered
        if not identity:
            resources = client.restful("")
            identity = resources.get("identity") if isinstance(resources, Mapping) else None
        user_id = urlparse(str(identity or "")).path.rstrip("/").rpartition("/")[2]
        if not _USER_ID.fullmatch(user_id):
            raise _Unchecked(
                f"cannot check what {self._who} sees: Salesforce at {client.sf_instance} did not name it (no "
                f"identity URL in /services/data/v{self.api_version}/); check "
                f"{'SF_INSTANCE_URL' if self.credentials.by_token else 'SF_DOMAIN'}"
            )
        return user_id

    def _lead_opt_outs(self) -> Iterator[str]:
        """The addresses of the leads that opted out (LEAD_OPT_OUT_SOQL), page after page."""

        def refused(said: str) -> RepsendError:
            return ConfigError(
                f"Salesforce: {self._who} cannot read the opt-outs of leads ({said}): give it Read on Lead and on "
                "its Email and Email Opt Out fields, or set [sfa] lead_opt_outs = false to not read them"
            )

        for r in self._query(LEAD_OPT_OUT_SOQL, "Lead", refused=refused):
            yield r.get("Email") or ""

    def _use_bulk(self) -> bool:
        """Whether the org is past [sfa] bulk_threshold: one COUNT() call, made only when a threshold is set."""
        if self.bulk_threshold <= 0:
            return False
        with self._errors("Contact"):
            self.contact_count = int(self._client().query(COUNT_SOQL)["totalSize"])
        return self.contact_count >= self.bulk_threshold

    def _bulk_contacts(self, soql: str) -> Iterator[Contact]:
        """The contacts of one SOQL query through a Bulk API 2.0 job, one results set at a time.

        simple-salesforce (bulk2.py, ``SFBulk2Type.query``) creates the job (POST jobs/query), polls it
        (GET jobs/query/{id}) until JobComplete, then yields the CSV text of each results set (GET
        .../results?maxRecords=&locator=, following Sforce-Locator). Each set is read as it comes, by the
        reader of a CSV export, and dropped before the next one is asked for.
        """
        from repsend.sfa.contact_frames import contact_columns

        wanted = contact_columns(self.language_field, self.extra_fields)
        with self._errors("Contact", bulk=True):
            sets = self._client().bulk2.Contact.query(soql, max_records=self.bulk_page, wait=self.bulk_wait)
            for number, text in enumerate(sets, start=1):
                data = text.encode("utf-8")
                del text
                yield from self._bulk_set(data, f"Bulk API 2.0 results set {number}", wanted)

    def _bulk_set(self, data: bytes, name: str, wanted: Mapping[str, Any]) -> Iterator[Contact]:
        """The records of one results set (CSV as an export writes it: a header row of the fields as the query
        named them, every value quoted, empty for null, true/false, ISO dates), read as Contact.csv is."""
        from repsend.sfa.contact_frames import contacts_of, with_origin
        from repsend.sfa.csv_reader import CsvFile

        if b"\x00" in data:  # a NUL in a text field: simple-salesforce drops it too (filter_null_bytes)
            data = data.replace(b"\x00", b"")
        if not data or data.isspace():
            return  # no records, and not even a header
        # Every field the query selected must be in the header: a missing one would read as empty.
        results = CsvFile(Path(name), "utf-8", required=self.select, data=data)
        for frame in results.frames(wanted, then=lambda frame: with_origin(frame, "Salesforce Contact {}", "Id")):
            yield from contacts_of(frame, self.language_field, self.extra_fields)

    @contextmanager
    def _errors(
        self, sobject: str, bulk: bool = False, refused: Callable[[str], RepsendError] | None = None,
        doing: str = "reading",
    ) -> Iterator[None]:
        """Library errors (at login too) become repsend errors; anything else goes on as it is. ``refused``
        words the error of a query this user may not make (see ``_refusal``), where that means more;
        ``doing`` what the call did to ``sobject``, in a refusal's words."""
        try:
            yield
        except Exception as exc:
            said = self._refusal(exc) if refused is not None else None
            error = (refused(said) if refused is not None and said is not None
                     else self._explain(exc, sobject, bulk, doing))
            if error is None:
                raise
            raise error from None  # the library's text holds URLs and bodies, never anything we need

    def _refusal(self, exc: Exception) -> str | None:
        """What Salesforce said when it refused a query as one this user may not make (an object or field it
        cannot read: INVALID_TYPE, INVALID_FIELD, INSUFFICIENT_ACCESS...); None for any other failure."""
        from simple_salesforce.exceptions import SalesforceError

        if not isinstance(exc, SalesforceError) or exc.status not in (400, 403, 404):
            return None
        code, message = _first_error(exc.content)
        if code in _NOT_REFUSALS:
            return None
        # Salesforce echoes the SOQL with a caret first, and ends with advice about custom objects.
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        text = (lines[-1] if lines else "").split(" If you are attempting", 1)[0]
        return self._scrub(f"{code}: {text}" if code else text)[:300]

    def _client(self) -> Salesforce:
        """The client, logged in on first use (lazily: a run that fails before its first read logs in never)."""
        if self._sf is None:
            if self._session is None:
                self._session = _counting_session(self.timeout)
            c = self.credentials
            how: dict[str, Any]
            if c.kind == "client_credentials":
                how = {"consumer_key": c.client_id, "consumer_secret": c.client_secret, "domain": c.domain}
            elif c.kind == "jwt":
                # aud is login or test (simple-salesforce's domain); the token is asked from the My Domain
                # (its instance_url), unless SF_DOMAIN is login or test itself.
                how = {"username": c.username, "consumer_key": c.client_id, "privatekey": c.private_key,
                       "domain": c.audience, "instance_url": None if c.domain == c.audience else c.domain}  # fmt: skip
            elif c.kind == "token":
                how = {"instance_url": c.instance_url, "session_id": c.access_token}
            else:
                how = {"username": c.username, "password": c.password, "security_token": c.security_token,
                       "domain": c.domain}  # fmt: skip
            client = _client_class()(**how, version=self.api_version, session=self._session)
            client.on_relogin = self._relogged_in
            self._sf = client
        return self._sf

    def _relogged_in(self) -> None:
        note = f"Salesforce: the session expired during the run; logged in again ({self.credentials.name})"
        if note not in self.notes:
            self.notes.append(note)

    def _query(
        self, soql: str, sobject: str, refused: Callable[[str], RepsendError] | None = None
    ) -> Iterator[dict[str, Any]]:
        """The records of one SOQL query, page after page; errors (at login too) become repsend errors.

        They may come at any page, so the iteration is wrapped, not only the first call.
        """
        with self._errors(sobject, refused=refused):
            yield from self._client().query_all_iter(soql)

    def _explain(self, exc: Exception, sobject: str, bulk: bool = False, doing: str = "reading") -> RepsendError | None:
        """The repsend error for a library error, in words a person can act on; None if not ours."""
        import requests
        from simple_salesforce.exceptions import (
            SalesforceAuthenticationFailed,
            SalesforceError,
            SalesforceOperationError,
        )

        c = self.credentials
        # Name the host that failed: a library error carries its URL, a requests error its request.
        url = getattr(exc, "url", None) or getattr(getattr(exc, "request", None), "url", None) or ""
        host = urlparse(str(url)).hostname or (self._sf.sf_instance if self._sf is not None else c.host)
        if isinstance(exc, SalesforceAuthenticationFailed):
            return self._login_refused(exc.code, exc.auth_message or "")
        if isinstance(exc, _UnreadableLogin):
            return SFAError(
                f"Salesforce at {c.host} answered the login in a shape repsend cannot read ({exc}): check "
                f"{'SF_INSTANCE_URL' if c.by_token else 'SF_DOMAIN'} (a proxy in the way?)"
            )
        if isinstance(exc, _RefusedAfterLogin):
            return SFAError(
                f"Salesforce at {host} refused the session (INVALID_SESSION_ID) right after {c.name} logged in "
                "again; check the connected app's session policies (timeout, IP relaxation) and the user's login "
                "IP ranges, then run again"
            )
        if isinstance(exc, SalesforceError):
            code, message = _first_error(exc.content)
            return self._explain_answer(exc.status, code, message, host, sobject, bulk, doing)
        if isinstance(exc, SalesforceOperationError):
            return self._bulk_failed(str(exc), host, sobject)
        if isinstance(exc, requests.Timeout):
            return SFAError(f"Salesforce at {host} did not answer within {self.timeout[1]:g} seconds")
        if isinstance(exc, requests.ConnectionError):
            if c.by_token:
                check = "SF_INSTANCE_URL"
            elif host == c.host and c.kind != "password":  # the token endpoint: the My Domain must exist
                check = "SF_DOMAIN, the org's My Domain as Setup > My Domain shows it"
            else:
                check = "SF_DOMAIN"
            return SFAError(
                f"cannot reach Salesforce at {host}: the connection failed (check the network, HTTPS_PROXY, "
                f"and {check})"
            )
        if isinstance(exc, requests.exceptions.JSONDecodeError):
            return SFAError(f"Salesforce at {host} answered with something that is not JSON (a proxy?)")
        if isinstance(exc, requests.RequestException):
            return SFAError(self._scrub(f"cannot talk to Salesforce at {host}: {type(exc).__name__}"))
        if bulk and isinstance(exc, KeyError | ValueError | InputError):
            # a job answer without its id or a results set without Sforce-NumberOfRecords, or a results
            # set the CSV reader refuses (where and why in its words): a proxy, or a changed API
            what = str(exc)[:300] if isinstance(exc, InputError) else f"{type(exc).__name__}: {str(exc)[:100]}"
            return SFAError(
                f"Salesforce at {host} answered the Bulk API 2.0 in an unexpected shape while reading {sobject} "
                f"({self._scrub(what)}); set [sfa] bulk_threshold = 0 to read contacts through the REST API instead"
            )
        return None

    def _explain_answer(
        self, status: int, code: str, message: str, host: str, sobject: str, bulk: bool = False,
        doing: str = "reading",
    ) -> RepsendError:
        c = self.credentials
        said = self._scrub(f"{code}: {message}" if code else message)
        if status == 401:
            if bulk and c.renews:  # simple-salesforce logs in again for REST calls, not for bulk2 ones
                return SFAError(
                    f"Salesforce at {host} refused the session during the Bulk API 2.0 pull of {sobject} ({said}); "
                    "run again"
                )
            if c.by_token:
                return SFAError(
                    f"Salesforce at {host}: the session expired or the access token is no longer valid "
                    f"({said}); set a fresh SF_ACCESS_TOKEN, or use a login that renews itself: the client credentials "
                    "or JWT bearer login (README, \"Logging in to Salesforce\")"
                )
            return SFAError(
                f"Salesforce at {host} refused the session even after {c.name} logged in again ({said})"
            )
        if code == "REQUEST_LIMIT_EXCEEDED":
            if "concurrent" in message.lower():
                return SFAError(
                    f"Salesforce at {host}: too many long requests at once in the org ({said}); try again "
                    "in a few minutes"
                )
            return SFAError(
                f"Salesforce at {host}: the org's daily API request limit is used up ({said}); try again "
                "after it resets (it counts the last 24 hours), or ask the admin about the limit"
            )
        if code.lower() == "exceededquota":
            return SFAError(
                f"Salesforce at {host}: the org's Bulk API 2.0 allowance for the last 24 hours is used up "
                f"({said}); try again later, or set [sfa] bulk_threshold = 0 to read contacts through the REST API"
            )
        if code == "INVALID_FIELD":
            return self._invalid_field(message, sobject)
        if code == "API_DISABLED_FOR_ORG":
            return SFAError(
                f"Salesforce at {host}: this org or user has no API access ({said}); export the objects "
                'as CSV and set [sfa] kind = "csv", or ask the admin for the "API Enabled" permission'
            )
        return SFAError(f"Salesforce at {host} answered {status} while {doing} {sobject}: {said}")

    def _login_refused(self, code: str | int | None, message: str) -> SFAError:
        """A login Salesforce refused, with what to check; for OAuth, by its ``error`` and ``error_description``."""
        c = self.credentials
        if c.kind == "password":
            why = f"{code}: {message}" if code else message
            return SFAError(
                self._scrub(
                    f"Salesforce login failed for {c.username} at {c.host}: {why} (check SF_USERNAME, SF_PASSWORD, "
                    "SF_SECURITY_TOKEN and SF_DOMAIN; an org created from Winter '26 has the SOAP login() off: use "
                    "the client credentials or JWT bearer login)"
                )
            )
        if not isinstance(code, str):  # not an OAuth answer (not JSON): simple-salesforce passes the status
            return SFAError(
                f"Salesforce at {c.host} answered the login with HTTP {code}, not an OAuth answer: check SF_DOMAIN "
                "is the org's My Domain (Setup > My Domain)"
            )
        said = self._scrub(f"{code}: {message}" if message else code)[:300]
        lowered = message.lower()
        advice = next(
            (text for (error, words, kinds), text in _OAUTH_ADVICE.items()
             if error == code and words in lowered and c.kind in kinds),
            _OAUTH_FALLBACK[c.kind],
        )  # fmt: skip
        who = f" for {c.username}" if c.username else ""
        return SFAError(f"Salesforce refused {c.name}{who} at {c.host} ({said}): {advice}")

    def _bulk_failed(self, text: str, host: str, sobject: str) -> SFAError:
        """A Bulk API 2.0 job that ended Failed or Aborted, or never ended (simple-salesforce's words)."""
        state = re.search(r"'state'(?:, |: )'(\w+)'|Job status: (\w+)", text)
        state_name = next((g for g in state.groups() if g), "") if state else ""
        detail = text.removeprefix("Job failure. Response content: ")
        if detail.startswith(("OrderedDict(", "{")):  # no errorMessage: the library quotes the job info
            detail = ""
        if text.startswith("Job timeout"):
            what = f"did not finish within a day (state {state_name or '?'})"
        elif state_name == "Aborted":
            what = "was aborted (in Setup, Bulk Data Load Jobs?)"
        else:
            what = "failed"
        said = f": {self._scrub(detail)[:300]}" if detail else ""
        return SFAError(
            f"Salesforce at {host}: the Bulk API 2.0 job reading {sobject} {what}{said}; run again, or set "
            "[sfa] bulk_threshold = 0 to read contacts through the REST API"
        )

    def _invalid_field(self, message: str, sobject: str) -> ConfigError:
        """INVALID_FIELD names a field the config asked for (or one the API user may not see)."""
        found = re.search(r"No such column '([^']+)' on entity '([^']+)'", message)
        if found:
            name, entity = found.groups()
        else:
            found = re.search(r"Didn't understand relationship '([^']+)'", message)
            name, entity = (found.group(1) if found else "?"), sobject
        lowered = name.lower()
        keys = [
            key
            for key, fields in (
                ("[sfa] contact_fields", self.extra_fields),
                ("[template] language_field", [self.language_field]),
            )
            if any(lowered in f.lower().split(".") for f in fields if f)
        ]
        where = f"{self.config_path}: " if self.config_path else ""
        if keys:
            return ConfigError(
                f"{where}{' / '.join(keys)}: Salesforce has no field {name!r} on {entity} that this user can "
                "read (INVALID_FIELD); fix the field's API name (custom ones end in __c), or ask the admin "
                "for read access to it"
            )
        return ConfigError(
            f"{where}Salesforce has no field {name!r} on {entity} that this user can read (INVALID_FIELD); "
            "check [sfa] contact_fields and [template] language_field, and the API user's field access"
        )

    def _scrub(self, text: str) -> str:
        """Whatever a message quotes, it never carries a password, a security token or an access token."""
        session = getattr(self._sf, "session_id", "") or ""  # a login's session is a token too
        for secret in (*self.credentials.secrets, *([session] if session else [])):
            text = text.replace(secret, "***")
        return text
