"""The intervals outcomes print: Wilson for a rate, Newcombe's method 10 for a difference; checked against
the published worked examples and against planted effects in generated groups."""

from __future__ import annotations

import random

import pytest

from repsend.intervals import newcombe, wilson


@pytest.mark.parametrize(
    ("hits", "n", "low", "high"),
    [  # Newcombe (1998), Statistics in Medicine 17:857, Table II, method 3 (score, no continuity correction)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_matches_the_published_examples(hits: int, n: int, low: float, high: float) -> None:
    rate = wilson(hits, n)
    assert rate.low == pytest.approx(low, abs=5e-5) and rate.high == pytest.approx(high, abs=5e-5)


@pytest.mark.parametrize(
    ("a", "b", "low", "high"),
    [  # Newcombe (1998), Statistics in Medicine 17:873, Table II, method 10
        ((56, 70), (48, 80), 0.0524, 0.3339),
        ((9, 10), (3, 10), 0.1705, 0.8090),
        ((5, 56), (0, 29), -0.0381, 0.1926),
        ((0, 10), (0, 20), -0.1611, 0.2775),
    ],
)
def test_newcombe_matches_the_published_examples(a: tuple[int, int], b: tuple[int, int], low: float,
                                                 high: float) -> None:
    difference = newcombe(wilson(*a), wilson(*b))
    assert difference.low == pytest.approx(low, abs=5e-5) and difference.high == pytest.approx(high, abs=5e-5)


def group(rng: random.Random, n: int, rate: float) -> tuple[int, int]:
    return sum(rng.random() < rate for _ in range(n)), n


def test_a_planted_lift_of_three_points_is_found_and_contained() -> None:
    rng = random.Random(20261206)
    mailed, held = group(rng, 6000, 0.06), group(rng, 6000, 0.03)

    lift = newcombe(wilson(*mailed), wilson(*held))

    assert lift.excludes_zero
    assert lift.low is not None and lift.high is not None and lift.low < 0.03 < lift.high


def test_no_planted_effect_gives_an_interval_around_zero() -> None:
    rng = random.Random(7)
    lift = newcombe(wilson(*group(rng, 6000, 0.04)), wilson(*group(rng, 6000, 0.04)))
    assert not lift.excludes_zero


def test_a_small_group_is_too_small_to_tell() -> None:
    assert wilson(1, 12).too_small  # 8%, but anywhere from 1% to 35%
    assert wilson(0, 15).too_small
    assert not wilson(300, 5000).too_small
    assert wilson(0, 0).too_small and wilson(0, 0).rate is None
    assert newcombe(wilson(3, 10), wilson(0, 0)).value is None


def test_bounds_stay_inside_zero_and_one() -> None:
    assert (wilson(0, 3).low, wilson(3, 3).high) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson(5, 4)
