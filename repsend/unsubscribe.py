"""One-click unsubscribe that knows who clicked (RFC 8058): a signed token per mail, and its endpoint.

Each mail's ``List-Unsubscribe`` URL carries a token naming the address and the campaign, signed with
HMAC-SHA256 under ``REPSEND_UNSUBSCRIBE_SECRET``: whoever holds the URL can stop that one address, and
nobody can make a URL for another address or alter one. The endpoint is a small WSGI app; a GET only
shows a button (mail scanners follow links; RFC 8058 section 3.3 says a GET must not unsubscribe), the
POST that mail clients send (``List-Unsubscribe=One-Click``) or the button records the opt-out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

from repsend.errors import ConfigError

SECRET_VARIABLE = "REPSEND_UNSUBSCRIBE_SECRET"
_VERSION = "1"
_MAC_BYTES = 16  # 128 bits: beyond guessing, and a URL short enough for any client
_MIN_SECRET = 16
_BODY_LIMIT = 4096


@dataclass(frozen=True)
class Unsubscribe:
    """What a valid token says: this address asked to stop; the campaign it came from."""

    address: str
    campaign: str


def secret_of(env: Mapping[str, str]) -> bytes:
    """The signing secret from the environment (or .env); a ConfigError that names the variable, never the value."""
    secret = env.get(SECRET_VARIABLE, "")
    if len(secret) < _MIN_SECRET:
        state = "is not set" if not secret else f"is shorter than {_MIN_SECRET} characters"
        raise ConfigError(
            f"{SECRET_VARIABLE} {state}: set it in the environment or .env to a long random value "
            "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))'); it signs each mail's "
            "unsubscribe link"
        )
    return secret.encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: str) -> bytes:
    return hmac.new(secret, f"{_VERSION}.{payload}".encode("ascii"), hashlib.sha256).digest()[:_MAC_BYTES]


def make_token(secret: bytes, address: str, campaign: str) -> str:
    """``1.<address and campaign>.<signature>``, URL-safe; the address as the send log keeps it."""
    payload = _b64(f"{address.strip().lower()}\x00{campaign}".encode())
    return f"{_VERSION}.{payload}.{_b64(_mac(secret, payload))}"


def read_token(secret: bytes, token: str) -> Unsubscribe | None:
    """What a token says, or None for anything not signed with this secret (forged, altered, cut)."""
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != _VERSION:
        return None
    _, payload, signature = parts
    try:
        given = _unb64(signature)
        address, sep, campaign = _unb64(payload).decode("utf-8").partition("\x00")
    except (ValueError, UnicodeDecodeError):
        return None
    if not hmac.compare_digest(given, _mac(secret, payload)) or not sep or "@" not in address:
        return None
    return Unsubscribe(address, campaign)


def unsubscribe_url(base: str, token: str) -> str:
    """The base URL ([mail] unsubscribe_url) with the token as its ``t`` parameter."""
    parts = urlsplit(base)
    query = f"{parts.query}&t={quote(token)}" if parts.query else f"t={quote(token)}"
    return urlunsplit(parts._replace(query=query))


# -- the endpoint ------------------------------------------------------------------------------------

Record = Callable[[Unsubscribe], None]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]

_PAGE = """<!doctype html>
<html lang="ja"><head><meta charset="utf-8"><title>{title}</title></head>
<body><p>{text}</p>{form}</body></html>
"""
_FORM = ('<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
         '<button type="submit">配信を停止する / Unsubscribe</button></form>')


def endpoint(secret: bytes, record: Record) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The WSGI app: POST with a valid ``t`` records the opt-out (``record``) and answers 200; anything
    forged or altered answers 400 and records nothing; GET shows the button."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        token = (parse_qs(environ.get("QUERY_STRING", "")).get("t") or [""])[0]
        if method == "POST":
            form = _form(environ)
            token = token or (form.get("t") or [""])[0]
        said = read_token(secret, token) if token else None
        if said is None:
            return _answer(start_response, "400 Bad Request", "リンクが無効です / This link is not valid.")
        if method == "GET" or method == "HEAD":
            return _answer(start_response, "200 OK", f"{html.escape(said.address)} への配信を停止しますか？ / "
                                                       "Stop mail to this address?", form=_FORM)
        if method != "POST":
            return _answer(start_response, "405 Method Not Allowed", "POST only", extra=[("Allow", "GET, POST")])
        record(said)
        return _answer(start_response, "200 OK", "配信を停止しました / You are unsubscribed.")

    return app


def _form(environ: dict[str, Any]) -> dict[str, list[str]]:
    try:
        length = min(int(environ.get("CONTENT_LENGTH") or 0), _BODY_LIMIT)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    return parse_qs(body.decode("utf-8", "replace"))


def _answer(start_response: StartResponse, status: str, text: str, form: str = "",
            extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    body = _PAGE.format(title="repsend", text=text, form=form).encode("utf-8")
    start_response(status, [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store"), *(extra or [])])
    return [body]


def serve(app: Callable[..., Iterable[bytes]], host: str, port: int) -> None:
    """Serve until stopped, with waitress (threads, HTTP parsing hardened for the open internet)."""
    import waitress

    waitress.serve(app, host=host, port=port, ident="repsend")
