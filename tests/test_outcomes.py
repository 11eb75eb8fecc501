"""Outcomes by group with a planted effect: mailed contacts open deals at 6%, held-out ones at 3%; the
lift's interval excludes 0 and holds the planted 3 points; with nothing planted it holds 0; a window that
has not closed is said to be open, not counted as a failure."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from repsend.outcomes import Exposure, Outcome, outcomes, variant_differences

MAILED_AT = datetime(2026, 9, 1, 1, 0, tzinfo=UTC)
NOW = datetime(2026, 12, 6, tzinfo=UTC)
WINDOW = timedelta(days=60)


def org(rng: random.Random, n: int, mailed_rate: float, held_rate: float, holdout: float = 0.5,
        variants: tuple[str, ...] = ("",), variant_rates: dict[str, float] | None = None, kind: str = "deal",
        ) -> tuple[list[Exposure], list[Outcome]]:
    exposures, events = [], []
    for i in range(n):
        cid = f"0035g{i:010d}AAA"
        held = rng.random() < holdout
        variant = variants[i % len(variants)]
        rate = held_rate if held else (variant_rates or {}).get(variant, mailed_rate)
        exposures.append(Exposure("dormant", cid, "0055g00000AbCdE", "dormant", "ja", held, MAILED_AT, variant))
        if rng.random() < rate:
            events.append(Outcome(kind, cid, MAILED_AT + timedelta(days=rng.randint(1, 59))))  # type: ignore[arg-type]
    return exposures, events


@pytest.mark.parametrize("kind", ["deal", "reply"])
def test_a_planted_lift_is_found_and_contained(kind: str) -> None:
    exposures, events = org(random.Random(1), 12000, 0.06, 0.03, kind=kind)
    (group,) = outcomes(exposures, events, by="campaign", window=WINDOW, now=NOW)
    lift = group.lift[kind]  # type: ignore[index]
    assert lift.excludes_zero and lift.low is not None and lift.high is not None
    assert lift.low < 0.03 < lift.high
    assert group.verdict(kind) == "higher than the holdout"  # type: ignore[arg-type]
    assert group.mailed[kind].n + group.held_out[kind].n == 12000  # type: ignore[index]


@pytest.mark.parametrize("kind", ["deal", "reply"])
def test_no_planted_effect_is_no_difference(kind: str) -> None:
    exposures, events = org(random.Random(2), 12000, 0.04, 0.04, kind=kind)
    (group,) = outcomes(exposures, events, by="campaign", window=WINDOW, now=NOW)
    assert not group.lift[kind].excludes_zero  # type: ignore[index]
    assert group.verdict(kind) == "no difference the data can show"  # type: ignore[arg-type]


def test_two_variants_without_a_difference_show_none() -> None:
    exposures, events = org(random.Random(5), 16000, 0.0, 0.03, holdout=0.2, variants=("a", "b"),
                            variant_rates={"a": 0.04, "b": 0.04})
    groups = outcomes(exposures, events, by="variant", window=WINDOW, now=NOW)
    assert not variant_differences(groups, "deal")[("b", "a")].excludes_zero


def test_two_variants_compared_the_same_way() -> None:
    exposures, events = org(random.Random(3), 16000, 0.0, 0.03, holdout=0.2, variants=("a", "b"),
                            variant_rates={"a": 0.03, "b": 0.06})
    groups = outcomes(exposures, events, by="variant", window=WINDOW, now=NOW)
    difference = variant_differences(groups, "deal")[("b", "a")]
    assert difference.excludes_zero and difference.low is not None and difference.low < 0.03 < (difference.high or 0)


def test_outcomes_outside_the_window_or_before_the_mail_do_not_count() -> None:
    exposure = Exposure("c", "0035g0000000001AAA", "r", "t", "ja", False, MAILED_AT)
    before = Outcome("reply", exposure.contact_id, MAILED_AT - timedelta(hours=1))
    late = Outcome("reply", exposure.contact_id, MAILED_AT + WINDOW + timedelta(days=1))
    (group,) = outcomes([exposure], [before, late], by="campaign", window=WINDOW, now=NOW)
    assert group.mailed["reply"].hits == 0 and group.mailed["reply"].n == 1


def test_a_campaign_mailed_yesterday_says_its_window_is_open() -> None:
    yesterday = NOW - timedelta(days=1)
    exposures = [Exposure("c", f"0035g{i:010d}AAA", "r", "t", "ja", i % 2 == 0, yesterday) for i in range(50)]
    (group,) = outcomes(exposures, [], by="campaign", window=WINDOW, now=NOW)
    assert group.window_open and group.open_mailed == 25 and group.mailed["reply"].n == 0
    assert group.verdict("reply") == "window still open"


def test_a_small_group_is_too_small_to_tell() -> None:
    exposures, events = org(random.Random(4), 40, 0.06, 0.03)
    (group,) = outcomes(exposures, events, by="rep", window=WINDOW, now=NOW)
    assert group.verdict("deal") == "too few contacts to tell"
