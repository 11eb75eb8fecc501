"""``repsend outcomes`` as a person or a script reads it: a table, CSV (``--excel``: with the BOM Japanese
Excel needs), JSON Lines, and a chart of the rates with their intervals (matplotlib, SVG or PNG)."""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from repsend.errors import ConfigError
from repsend.intervals import Difference, Rate
from repsend.logview import excel_safe
from repsend.outcomes import KINDS, Group, variant_differences

FORMATS = ("table", "csv", "json")
_WORDS = {
    "en": {"reply": "replies", "deal": "deals opened", "opt_out": "opt-outs", "bounce": "bounces",
           "mailed": "mailed", "held_out": "held out", "rate": "rate (95% interval)"},
    "ja": {"reply": "返信", "deal": "商談化", "opt_out": "配信停止", "bounce": "不達",
           "mailed": "送信", "held_out": "ホールドアウト", "rate": "率（95%信頼区間）"},
}


def _rate(rate: Rate) -> dict[str, Any]:
    return {"n": rate.n, "hits": rate.hits, "rate": rate.rate, "low": rate.low, "high": rate.high}


def _difference(diff: Difference) -> dict[str, Any]:
    return {"value": diff.value, "low": diff.low, "high": diff.high}


def rows(groups: Sequence[Group], by: str, window_days: int) -> list[dict[str, Any]]:
    """One record per group and outcome: the JSON fields (a contract, see the README)."""
    found = []
    for group in groups:
        for kind in KINDS:
            found.append({"type": "outcome", "by": by, "group": group.key, "outcome": kind, "window_days": window_days,
                          "mailed": _rate(group.mailed[kind]), "held_out": _rate(group.held_out[kind]),
                          "lift": _difference(group.lift[kind]), "verdict": group.verdict(kind),
                          "window_open": group.window_open, "open_mailed": group.open_mailed,
                          "open_held_out": group.open_held_out})
    if by == "variant":
        for kind in KINDS:
            for (a, b), diff in variant_differences(groups, kind).items():
                found.append({"type": "variant_difference", "outcome": kind, "variant": a, "against": b,
                              "difference": _difference(diff), "excludes_zero": diff.excludes_zero})
    return found


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _cell(rate: Rate) -> str:
    if rate.n == 0:
        return "-"
    return f"{rate.hits}/{rate.n} {_pct(rate.rate)} [{_pct(rate.low)}, {_pct(rate.high)}]"


def _points(diff: Difference) -> str:
    if diff.value is None or diff.low is None or diff.high is None:
        return "-"
    return f"{diff.value * 100:+.1f} pts [{diff.low * 100:+.1f}, {diff.high * 100:+.1f}]"


def write(groups: Sequence[Group], by: str, window_days: int, out: TextIO, form: str, excel: bool = False) -> None:
    records = rows(groups, by, window_days)
    if form == "json":
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    if form == "csv":
        if excel:
            out.write("\ufeff")
        writer = csv.writer(out, lineterminator="\r\n" if excel else "\n")
        writer.writerow(["by", "group", "outcome", "mailed", "mailed_hits", "mailed_rate", "mailed_low", "mailed_high",
                         "held_out", "held_out_hits", "held_out_rate", "lift", "lift_low", "lift_high", "verdict"])
        for r in records:
            if r["type"] != "outcome":
                continue
            m, h, lift = r["mailed"], r["held_out"], r["lift"]
            writer.writerow([excel_safe(v) for v in (
                by, r["group"], r["outcome"], m["n"], m["hits"], m["rate"], m["low"], m["high"], h["n"], h["hits"],
                h["rate"], lift["value"], lift["low"], lift["high"], r["verdict"])])
        return
    out.write(f"outcomes by {by}, within {window_days} days of the mail\n")
    width = max([len(g.key) for g in groups] + [5])
    out.write(f"{by:<{width}}  {'outcome':<8}  {'mailed':<28}  {'held out':<28}  {'lift (95%)':<26}  verdict\n")
    for group in groups:
        for kind in KINDS:
            out.write(f"{group.key:<{width}}  {kind:<8}  {_cell(group.mailed[kind]):<28}  "
                      f"{_cell(group.held_out[kind]):<28}  {_points(group.lift[kind]):<26}  {group.verdict(kind)}\n")
        if group.window_open:
            out.write(f"{'':<{width}}  window still open for {group.open_mailed} mailed and {group.open_held_out} "
                      "held-out contacts: not counted yet\n")
    if by == "variant":
        for kind in KINDS:
            for (a, b), diff in variant_differences(groups, kind).items():
                words = "differs" if diff.excludes_zero else "no difference the data can show"
                out.write(f"variant {a} - {b}, {kind}: {_points(diff)}: {words}\n")
    if not groups:
        out.write("nothing mailed or held out yet\n")


_JAPANESE_FONTS = ("Noto Sans CJK JP", "IPAexGothic", "IPAGothic", "Hiragino Sans", "Yu Gothic", "Meiryo")


def _has_font(font_manager: Any, name: str) -> bool:
    try:
        font_manager.findfont(name, fallback_to_default=False)
    except ValueError:
        return False
    return True


def chart(groups: Sequence[Group], path: Path, language: str, by: str) -> None:
    """The rates of each outcome by group, mailed and held out, with their 95% intervals as error bars."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--chart needs matplotlib: pip install 'repsend[chart]'") from None
    if path.suffix.lower() not in (".svg", ".png"):
        raise ConfigError(f"{path}: --chart writes .svg or .png")
    from matplotlib import font_manager

    japanese = [name for name in _JAPANESE_FONTS if _has_font(font_manager, name)]
    if language == "ja" and path.suffix.lower() == ".png" and not japanese:
        language = "en"  # a PNG is drawn here: without a Japanese font its labels would be empty boxes
    words = _WORDS.get(language, _WORDS["en"])
    plt.rcParams["svg.fonttype"] = "none"  # text stays text: the viewer's fonts show the Japanese labels
    plt.rcParams["font.family"] = [*japanese, "DejaVu Sans"]
    with warnings.catch_warnings():  # an SVG keeps its text; missing glyphs only matter to a PNG
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        _draw(plt, groups, path, words, by)


def _draw(plt: Any, groups: Sequence[Group], path: Path, words: dict[str, str], by: str) -> None:
    figure, axes = plt.subplots(1, len(KINDS), figsize=(3.2 * len(KINDS), 3.2), sharey=False)
    keys = [g.key for g in groups]
    for axis, kind in zip(axes, KINDS, strict=True):
        for offset, side, colour in ((-0.18, "mailed", "#2b6cb0"), (0.18, "held_out", "#a0aec0")):
            rates = [getattr(g, side)[kind] for g in groups]
            xs = [i + offset for i in range(len(groups))]
            ys = [(r.rate or 0) * 100 for r in rates]
            low = [((r.rate or 0) - (r.low or 0)) * 100 for r in rates]
            high = [((r.high or 0) - (r.rate or 0)) * 100 for r in rates]
            axis.bar(xs, ys, width=0.36, color=colour, label=words[side], yerr=[low, high], capsize=3)
        axis.set_title(words[kind])
        axis.set_xticks(range(len(groups)), keys, rotation=30, ha="right")
        axis.set_ylabel("%")
    axes[0].legend(frameon=False)
    figure.suptitle(f"{words['rate']} / {by}")
    figure.tight_layout()
    try:
        figure.savefig(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the chart: {exc.strerror}") from None
    finally:
        plt.close(figure)
