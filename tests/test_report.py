"""The table writer held to the per-character definition of a cell: the same bytes for every text.

``width`` and ``fit`` count wide characters in C, cut only what is too wide and ``Table`` keeps fitted
cells; the reference here is the plain loop over ``unicodedata.east_asian_width`` they replaced, and
``ReferenceTable`` the table written with it. Random texts mix ASCII, Japanese (kanji, kana, halfwidth
katakana), fullwidth forms, combining marks, emoji, unassigned code points and odd white space, at every
length around the column widths; whole runs (the demo org, random exports) are compared byte for byte.
"""

from __future__ import annotations

import io
import random
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TextIO

import pytest
from typer.testing import CliRunner

from repsend import report
from repsend.cli import app
from repsend.compose import full_name
from repsend.logview import COLUMNS as LOG_COLUMNS
from repsend.models import Decision
from repsend.report import Table, fit, width
from repsend.selection import Summary, select
from repsend.sfa import open_source
from tests.exports import AS_OF, CARELESS_SEED, SEEDS, config_for, random_export, settings_for
from tests.helpers import REPO, contact, write_config, write_export

DEMO_AS_OF = "2026-11-23"
EXPORT_AS_OF = AS_OF.isoformat()


# ---------------------------------------------------------------------------------------------------
# The reference: the per-character definition, as report.py had it
# ---------------------------------------------------------------------------------------------------


def reference_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def reference_fit(text: str, columns: int) -> str:
    text = " ".join(text.split())
    if reference_width(text) <= columns:
        return text + " " * (columns - reference_width(text))
    out, used = [], 0
    for ch in text:
        w = 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        if used + w > columns - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…" + " " * (columns - 1 - used)


class ReferenceTable(Table):
    """The table written the plain way: every cell fitted by ``reference_fit``, nothing kept (no terminal)."""

    def __init__(self, out: TextIO, outcome_column: bool = False, terminal_width: int | None = None,
                 variants: Sequence[str] = ()) -> None:
        assert terminal_width is None  # the tests' tables go to a pipe
        self.out = out
        self.outcome_column = outcome_column
        self._header_written = False
        self.use_variants(variants)

    def use_variants(self, variants: Sequence[str]) -> None:
        # The variant column: as wide as its title or its longest name, before the subject.
        self.columns = list(self.COLUMNS)
        if variants:
            self.columns.append(("variant", max(len("variant"), *map(reference_width, variants))))
        self.variants = bool(variants)

    def _line(self, cells: list[str], subject: str) -> None:
        fitted = []
        for cell, (name, columns) in zip(cells, self.columns, strict=True):
            whole = name == "address" and reference_width(cell) > columns  # an address is never cut
            fitted.append(cell if whole else reference_fit(cell, columns))
        line = "  ".join(fitted) + "  " + subject
        self.out.write((line if subject else line.rstrip()) + "\n")

    def row(self, decision: Decision, outcome: str = "") -> None:
        if not self._header_written:
            self._header_written = True
            names = [name for name, _ in self.columns]
            if self.outcome_column:
                names[4] = "result"
            self._line(names, "subject")
        d, mail = decision, decision.mail
        c = d.contact
        name = full_name(c.first_name.strip(), c.last_name.strip(), d.language) or c.id
        sender = mail.from_.display_name if mail else (d.rep.name if d.rep else "")
        action = outcome or d.action.value
        subject = mail.subject.rstrip() if mail else ""
        cells = [name, c.account_name, c.email.strip(), sender, action, d.reason.value, d.detail]
        if self.variants:
            cells.append(mail.variant if mail else "")
        self._line(cells, subject)


# ---------------------------------------------------------------------------------------------------
# Random texts
# ---------------------------------------------------------------------------------------------------


def _span(first: int, last: int) -> str:
    return "".join(map(chr, range(first, last + 1)))


POOLS = {
    "ascii": string.ascii_letters + string.digits + string.punctuation + "    ",
    "control": "\x00\x01\x1b\x7f",
    "space": " \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u2003\u2028\u3000",  # every one a str.split() separator
    "kanji": "山田佐藤鈴木花子健株式会社営業部東京都千代田区丸の内" + _span(0x4E00, 0x9FFF),
    "kana": _span(0x3041, 0x3096) + _span(0x30A1, 0x30FA) + "ー・",
    "halfwidth": "ｻﾝﾌﾟﾙｶﾌﾞｼｷｶﾞｲｼｬ" + _span(0xFF61, 0xFF9F),
    "fullwidth": "ＡＢＣ０１２！？（）" + _span(0xFF01, 0xFF60) + _span(0xFFE0, 0xFFE6),
    "combining": _span(0x0300, 0x036F) + "\u3099\u309a\u20dd\u200b\u200d",
    "emoji": "😀👍🏽❤️🇯🇵\ufe0f\u200d" + _span(0x1F300, 0x1F64F) + _span(0x1F900, 0x1F9FF),
    "other": "éüßΩ…①→★※〒ㄅ가한글\ue000\uffff\ufffd\u0378\u0590" + _span(0xAC00, 0xAC40),
    "astral": "𠮷\U00020000\U0002a6df\U00030000\U0001d400\U000e0001\U000e0080\U00050000\U0010fffd",
}
WEIGHTS = {"ascii": 8, "control": 1, "space": 2, "kanji": 5, "kana": 4, "halfwidth": 2, "fullwidth": 2,
           "combining": 2, "emoji": 1, "other": 2, "astral": 1}
# Every width a cell is fitted to, and the edges below them.
WIDTHS = sorted({0, 1, 2, 3, 4} | {w for _, w in Table.COLUMNS} | {w for _, w in LOG_COLUMNS})


def random_text(rng: random.Random, length: int) -> str:
    """``length`` characters from a few of the pools (mostly one or two, as real names are)."""
    names = rng.sample(sorted(POOLS), rng.choice([1, 1, 2, 2, 3, len(POOLS)]))
    weights = [WEIGHTS[n] for n in names]
    return "".join(rng.choice(POOLS[rng.choices(names, weights)[0]]) for _ in range(length))


def random_texts(seed: int, count: int) -> list[str]:
    """Texts of every length up to twice the widest column, most of them near a column's width."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        if rng.random() < 0.3:
            length = rng.randrange(0, 2 * max(WIDTHS) + 3)
        else:
            w = rng.choice(WIDTHS)
            length = max(0, rng.choice([w // 2 - 1, w // 2, w // 2 + 1, w - 2, w - 1, w, w + 1, w + 2]))
        texts.append(random_text(rng, length))
    return texts


def texts_of_width(seed: int, columns: int) -> list[str]:
    """Texts exactly 2 cells under to 2 over ``columns`` (by the reference), ending wide or narrow."""
    rng = random.Random(seed * 1000 + columns)
    texts = []
    for target in range(max(0, columns - 2), columns + 3):
        for _ in range(12):
            text = ""
            while reference_width(text) < target:
                text += random_text(rng, 1)
            texts.append(text)
            if reference_width(text) > target and target:  # a wide character overshot: end narrow instead
                texts.append(text[:-1] + "a")
    return texts


# ---------------------------------------------------------------------------------------------------
# width and fit
# ---------------------------------------------------------------------------------------------------


def test_the_pools_hold_what_they_are_for() -> None:
    """The random texts do mix narrow, wide and astral characters (else the tests below prove little)."""
    wide = {ch for pool in POOLS.values() for ch in pool if unicodedata.east_asian_width(ch) in "WF"}
    assert not any(ch.isascii() for ch in wide)
    assert {"山", "ア", "Ａ", "😀", "\U00020000", "\u0378"} <= wide
    assert {"ｻ", "é", "\u0301", "…", "\ue000"}.isdisjoint(wide)
    assert any(ord(ch) > 0xFFFF for ch in wide) and any(ord(ch) > 0xFFFF and ch not in wide for ch in POOLS["astral"])


def test_width_of_every_code_point() -> None:
    """Each code point alone, and every BMP one next to one beyond it (text counted one by one)."""
    alone = list(map(chr, range(0x110000)))
    ours, theirs = list(map(width, alone)), list(map(reference_width, alone))
    assert [hex(cp) for cp in range(0x110000) if ours[cp] != theirs[cp]] == []
    paired = [ch + "\U0001f600" for ch in alone[:0x10000]]
    ours, theirs = list(map(width, paired)), list(map(reference_width, paired))
    assert [hex(cp) for cp in range(0x10000) if ours[cp] != theirs[cp]] == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_width_of_random_texts(seed: int) -> None:
    texts = random_texts(seed, 4000)
    assert [t for t in texts if width(t) != reference_width(t)] == []


@pytest.mark.parametrize("seed", [1, 2])
def test_fit_of_random_texts_at_every_width(seed: int) -> None:
    texts = random_texts(seed + 10, 2500)
    wrong = [(t, w) for t in texts for w in WIDTHS if fit(t, w) != reference_fit(t, w)]
    assert wrong == []
    cut = [t for t in texts if fit(t, 20).endswith("…") and not t.isascii()]
    assert len(cut) > 100  # the cut of a wide text was tried, not only padding


@pytest.mark.parametrize("columns", WIDTHS)
def test_fit_at_the_edge_of_the_column(columns: int) -> None:
    texts = texts_of_width(7, columns)
    assert [t for t in texts if fit(t, columns) != reference_fit(t, columns)] == []
    assert [t for t in texts if columns and width(fit(t, columns)) != columns] == []


def test_fit_of_what_the_cut_must_get_right() -> None:
    cases = ["株式会社サンプル123456", "ａｂｃ", "ｻﾝﾌﾟﾙｶﾌﾞｼｷｶﾞｲｼｬ ﾃｽﾄ", "e\u0301" * 20, "😀" * 12, "a😀" * 9,
             "山" * 8 + "a", "a" + "山" * 8, "  株式会社\u3000アクメ\t\n ", "\u3000" * 5, "", " ", "x" * 40,
             "\U00020000" * 11, "𠮷野家株式会社サンプル", "Andrew Brown 株式会社サンプル", "\u0378" * 9,
             "ア" * 15 + "x"]
    wrong = [(t, w) for t in cases for w in [*WIDTHS, -1, -5, 100] if fit(t, w) != reference_fit(t, w)]
    assert wrong == []


# ---------------------------------------------------------------------------------------------------
# Whole tables
# ---------------------------------------------------------------------------------------------------


def _dry_run_table(config: Path, as_of: str, monkeypatch: pytest.MonkeyPatch, reference: bool,
                   *args: str) -> bytes:
    with monkeypatch.context() as patch:
        if reference:
            patch.setattr(report, "Table", ReferenceTable)
        result = CliRunner().invoke(app, ["dormant", "--dry-run", "--as-of", as_of, "--config", str(config), *args])
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def _assert_same_table(config: Path, as_of: str, monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    ours = _dry_run_table(config, as_of, monkeypatch, False, *args)
    theirs = _dry_run_table(config, as_of, monkeypatch, True, *args)
    assert ours.splitlines() == theirs.splitlines()  # a differing line shown, should one differ
    assert ours == theirs
    return ours.decode()


def test_demo_org_table_is_the_reference_table(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _assert_same_table(REPO / "config" / "repsend.toml", DEMO_AS_OF, monkeypatch)
    assert "佐藤 健" in text and "…" in text and text.count("\n") > 60


def test_a_table_with_variants_is_the_reference_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """A template with variants: a variant column before the subject, each send's variant in it."""
    text = _assert_same_table(REPO / "config" / "repsend.toml", DEMO_AS_OF, monkeypatch, "--template", "dormant_ab")
    header, *rows = text.splitlines()
    assert header.endswith("  variant  subject")
    assert any("  a        ご無沙汰しております" in row for row in rows)
    assert any("  b        その後いかがでしょうか" in row for row in rows)



@pytest.mark.parametrize(("seed", "careless"), [(SEEDS[0], False), (CARELESS_SEED, True)])
def test_random_export_table_is_the_reference_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int,
                                                    careless: bool) -> None:
    export = random_export(tmp_path / "export", seed, contacts=800, weird=careless)
    text = _assert_same_table(config_for(tmp_path, export, "account", seed), EXPORT_AS_OF, monkeypatch)
    assert text.count("\n") > 800 and "…" in text


def test_export_of_random_texts_table_is_the_reference_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Names, companies and addresses of random texts, each value a few times (what the table keeps)."""
    rng = random.Random(20260601)
    texts = random_texts(99, 200)
    rows = [contact(n, FirstName=rng.choice(texts)[:12], LastName=rng.choice(texts)[:12],
                    **{"Account.Name": rng.choice(texts), "Email": rng.choice([rng.choice(texts), f"c{n}@example.jp"])})
            for n in range(600)]
    export = write_export(tmp_path / "export", rows)
    text = _assert_same_table(write_config(tmp_path, export), EXPORT_AS_OF, monkeypatch)
    assert text.count("\n") > 600


def _decisions(tmp_path: Path) -> list[Decision]:
    """A random export's decisions, some skips' details (the subject column) ending in white space."""
    export = random_export(tmp_path / "export", SEEDS[1], contacts=1200)
    settings, options, history = settings_for(tmp_path, export, "rep_cap", SEEDS[1])
    source = open_source(settings)
    try:
        decisions = list(select(settings, source, options, history, summary=Summary()))
    finally:
        source.close()
    return [replace(d, detail=d.detail + " \t ") if d.mail is None and n % 3 == 0 else d
            for n, d in enumerate(decisions)]


def test_a_full_cache_starts_over_and_the_table_stays_the_same(tmp_path: Path) -> None:
    decisions = _decisions(tmp_path)
    outcomes = ["", "sent", "failed", "deferred", "", "not_sent"]  # a real run's result column
    for size in (1, 7, Table.CACHE_SIZE):
        ours, theirs = io.StringIO(), io.StringIO()
        table, reference = Table(ours, outcome_column=True), ReferenceTable(theirs, outcome_column=True)
        table.CACHE_SIZE = size
        for n, decision in enumerate(decisions):
            table.row(decision, outcomes[n % len(outcomes)])
            reference.row(decision, outcomes[n % len(outcomes)])
        table.summary(Summary(), dry_run=False)
        reference.summary(Summary(), dry_run=False)
        assert ours.getvalue() == theirs.getvalue()
        kept = [value for value in vars(table).values() if isinstance(value, dict)]
        assert kept and all(len(cache) <= size for cache in kept)
        assert size < Table.CACHE_SIZE or max(map(len, kept)) > 7  # the caches were used, not left empty
