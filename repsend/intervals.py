"""Rates with honest 95% intervals, for outcomes: Wilson's score interval for one rate, Newcombe's
hybrid score interval (his method 10) for the difference of two independent rates.

Both stay inside [0, 1] (and [-1, 1]) and behave at rates near 0, where the textbook ``p ± 1.96·se``
gives negative bounds or a zero width for 0 of 40: reply and deal rates of a few percent are exactly that.
Pure functions of counts; ``statistics.NormalDist`` gives the quantile.

References: E. B. Wilson (1927), JASA 22:209; R. G. Newcombe (1998), Statistics in Medicine 17:873.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

Z95 = NormalDist().inv_cdf(0.975)  # 1.959963...


@dataclass(frozen=True)
class Rate:
    """``hits`` of ``n``, with its interval; ``rate`` and the bounds are None when n is 0."""

    hits: int
    n: int
    low: float | None
    high: float | None

    @property
    def rate(self) -> float | None:
        return self.hits / self.n if self.n else None

    @property
    def too_small(self) -> bool:
        """Too few to tell anything: no contacts, or an interval wider than the rate's own size (at a rate
        of 0, wider than 10 points), so that a ranking would rank noise."""
        if self.rate is None or self.low is None or self.high is None:
            return True
        width = self.high - self.low
        return width > max(self.rate, 0.10) if self.rate else width > 0.10


@dataclass(frozen=True)
class Difference:
    """``a`` minus ``b`` (e.g. mailed minus held out), with its interval; None where either side is empty."""

    a: Rate
    b: Rate
    low: float | None
    high: float | None

    @property
    def value(self) -> float | None:
        if self.a.rate is None or self.b.rate is None:
            return None
        return self.a.rate - self.b.rate

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def wilson(hits: int, n: int, z: float = Z95) -> Rate:
    if not 0 <= hits <= n:
        raise ValueError(f"{hits} of {n}: hits must be between 0 and n")
    if n == 0:
        return Rate(hits, n, None, None)
    p = hits / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # At 0 and n the bound is exactly 0 or 1; floating point would leave a hair's breadth.
    low = 0.0 if hits == 0 else max(0.0, centre - half)
    high = 1.0 if hits == n else min(1.0, centre + half)
    return Rate(hits, n, low, high)


def newcombe(a: Rate, b: Rate) -> Difference:
    """Newcombe's method 10: the two Wilson intervals combined; a and b from ``wilson`` at the same z."""
    if a.rate is None or b.rate is None or None in (a.low, a.high, b.low, b.high):
        return Difference(a, b, None, None)
    assert a.low is not None and a.high is not None and b.low is not None and b.high is not None
    d = a.rate - b.rate
    low = d - math.sqrt((a.rate - a.low) ** 2 + (b.high - b.rate) ** 2)
    high = d + math.sqrt((a.high - a.rate) ** 2 + (b.rate - b.low) ** 2)
    return Difference(a, b, max(-1.0, low), min(1.0, high))
