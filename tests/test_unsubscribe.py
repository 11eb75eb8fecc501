"""One-click unsubscribe (RFC 8058): the token names the address and campaign and cannot be forged or
altered; the endpoint, served by waitress on loopback, records a valid POST and nothing else."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import waitress

from repsend.errors import ConfigError
from repsend.unsubscribe import Unsubscribe, endpoint, make_token, read_token, secret_of, unsubscribe_url

SECRET = b"0123456789abcdef-test-secret"


def test_a_token_says_who_and_which_campaign() -> None:
    token = make_token(SECRET, " Hanako.Yamada@Example.JP ", "dormant-2026-12")
    assert read_token(SECRET, token) == Unsubscribe("hanako.yamada@example.jp", "dormant-2026-12")
    japanese = make_token(SECRET, "山田@例え.jp", "キャンペーン")
    assert read_token(SECRET, japanese) == Unsubscribe("山田@例え.jp", "キャンペーン")


def test_a_forged_altered_or_cut_token_says_nothing() -> None:
    token = make_token(SECRET, "hanako@example.jp", "c")
    version, payload, signature = token.split(".")
    other = make_token(SECRET, "ichiro@example.jp", "c").split(".")[1]
    assert read_token(b"another-secret-of-16+", token) is None  # signed under another secret
    assert read_token(SECRET, f"{version}.{other}.{signature}") is None  # another address, the old signature
    assert read_token(SECRET, f"{version}.{payload}.{signature[:-2]}") is None  # cut
    assert read_token(SECRET, f"2.{payload}.{signature}") is None
    assert read_token(SECRET, "garbage") is None and read_token(SECRET, "1.%%%.***") is None


def test_the_url_keeps_the_base_and_adds_the_token() -> None:
    assert unsubscribe_url("https://acme.example/u", "1.a.b") == "https://acme.example/u?t=1.a.b"
    assert unsubscribe_url("https://acme.example/u?src=mail", "1.a.b") == "https://acme.example/u?src=mail&t=1.a.b"


def test_the_secret_comes_from_the_environment_and_is_never_shown() -> None:
    assert secret_of({"REPSEND_UNSUBSCRIBE_SECRET": "x" * 32}) == b"x" * 32
    with pytest.raises(ConfigError, match="REPSEND_UNSUBSCRIBE_SECRET is not set"):
        secret_of({})
    with pytest.raises(ConfigError, match="shorter than 16") as caught:
        secret_of({"REPSEND_UNSUBSCRIBE_SECRET": "short-secret"})
    assert "short-secret" not in str(caught.value)


@pytest.fixture
def served() -> Iterator[tuple[str, list[Unsubscribe]]]:
    recorded: list[Unsubscribe] = []
    server = waitress.create_server(endpoint(SECRET, recorded.append), host="127.0.0.1", port=0, threads=1)
    stopping = threading.Event()

    def run() -> None:
        try:
            server.run()
        except OSError:  # the loop's select() on the socket close() just closed: how waitress stops here
            if not stopping.is_set():
                raise

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}/unsubscribe", recorded
    finally:
        stopping.set()
        server.close()
        thread.join(5)


def request(url: str, method: str, body: bytes | None = None) -> tuple[int, str]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as answer:
            return answer.status, answer.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8")


def test_a_one_click_post_records_the_opt_out(served: tuple[str, list[Unsubscribe]]) -> None:
    base, recorded = served
    url = unsubscribe_url(base, make_token(SECRET, "hanako@example.jp", "dormant"))
    assert urlsplit(url).hostname == "127.0.0.1"

    status, text = request(url, "POST", b"List-Unsubscribe=One-Click")

    assert status == 200 and "配信を停止しました" in text
    assert recorded == [Unsubscribe("hanako@example.jp", "dormant")]


def test_a_get_only_asks_so_that_link_scanners_stop_nobody(served: tuple[str, list[Unsubscribe]]) -> None:
    base, recorded = served
    status, text = request(unsubscribe_url(base, make_token(SECRET, "hanako@example.jp", "dormant")), "GET")
    assert status == 200 and '<form method="post">' in text and "hanako@example.jp" in text
    assert recorded == []


def test_a_forged_token_changes_nothing(served: tuple[str, list[Unsubscribe]]) -> None:
    base, recorded = served
    forged = make_token(b"not-the-secret-at-all", "hanako@example.jp", "dormant")
    for url in (unsubscribe_url(base, forged), base):
        status, _ = request(url, "POST", b"List-Unsubscribe=One-Click")
        assert status == 400
    assert recorded == []
