"""Did the notes work: outcome rates by group, mailed against held out, with honest intervals. Pure.

Each contact of a campaign is *exposed* once: mailed (a sent attempt) or held out (the ``holdout`` group,
recorded with the day it would have been mailed). An outcome counts for a contact when it happened after
that moment and within the window; a contact whose window has not closed yet is left out of the rates
and counted as still open, so that a campaign mailed yesterday reads "window still open" rather than a
rate of nearly zero. Rates carry Wilson intervals and the lift over the holdout Newcombe's (see
``intervals``); a group too small to tell anything says so instead of being ranked.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from repsend.intervals import Difference, Rate, newcombe, wilson

Kind = Literal["reply", "deal", "opt_out", "bounce"]
KINDS: tuple[Kind, ...] = ("reply", "deal", "opt_out", "bounce")
GROUPINGS = ("campaign", "rep", "template", "variant", "language")


@dataclass(frozen=True)
class Exposure:
    """One contact in one campaign: mailed, or held out (then ``at`` is when it would have been mailed)."""

    campaign: str
    contact_id: str
    rep: str
    template: str
    language: str
    held_out: bool
    at: datetime
    variant: str = ""


@dataclass(frozen=True)
class Outcome:
    """Something that happened to a contact: a reply, a deal opened, an opt-out, a bounce."""

    kind: Kind
    contact_id: str
    at: datetime


@dataclass
class Group:
    key: str
    mailed: dict[Kind, Rate] = field(default_factory=dict)
    held_out: dict[Kind, Rate] = field(default_factory=dict)
    lift: dict[Kind, Difference] = field(default_factory=dict)
    open_mailed: int = 0  # contacts whose window has not closed: not in the rates yet
    open_held_out: int = 0

    @property
    def window_open(self) -> bool:
        return bool(self.open_mailed or self.open_held_out)

    def verdict(self, kind: Kind) -> str:
        """In words, what the comparison with the holdout can say."""
        mailed, held, lift = self.mailed[kind], self.held_out[kind], self.lift[kind]
        if mailed.n == 0 and self.window_open:
            return "window still open"
        if held.n == 0:
            return "no holdout to compare with"
        if mailed.too_small or held.too_small:
            return "too few contacts to tell"
        if lift.excludes_zero:
            return "higher than the holdout" if (lift.value or 0) > 0 else "lower than the holdout"
        return "no difference the data can show"


def outcomes(exposures: Iterable[Exposure], events: Iterable[Outcome], *, by: str, window: timedelta,
             now: datetime) -> list[Group]:
    """Per group (``by`` one of GROUPINGS), each outcome's rate among the mailed and among the held out,
    and the lift; only contacts whose window has closed count."""
    if by not in GROUPINGS:
        raise ValueError(f"cannot group by {by!r}: use one of {', '.join(GROUPINGS)}")
    happened: dict[str, dict[Kind, list[datetime]]] = defaultdict(lambda: defaultdict(list))
    for event in events:
        happened[event.contact_id][event.kind].append(event.at)
    counts: dict[str, dict[bool, dict[Kind, list[int]]]] = {}
    opened: dict[str, list[int]] = {}
    for exposure in exposures:
        key = getattr(exposure, by) or "(none)"
        side = counts.setdefault(key, {False: {k: [0, 0] for k in KINDS}, True: {k: [0, 0] for k in KINDS}})
        ends = exposure.at + window
        if ends > now:
            opened.setdefault(key, [0, 0])[exposure.held_out] += 1
            continue
        seen = happened.get(exposure.contact_id, {})
        for kind in KINDS:
            tally = side[exposure.held_out][kind]
            tally[1] += 1
            if any(exposure.at < moment <= ends for moment in seen.get(kind, ())):
                tally[0] += 1
    groups = []
    for key in sorted(counts):
        group = Group(key)
        group.open_mailed, group.open_held_out = opened.get(key, [0, 0])
        for kind in KINDS:
            group.mailed[kind] = wilson(*counts[key][False][kind])
            group.held_out[kind] = wilson(*counts[key][True][kind])
            group.lift[kind] = newcombe(group.mailed[kind], group.held_out[kind])
        groups.append(group)
    return groups


def variant_differences(groups: Sequence[Group], kind: Kind) -> Mapping[tuple[str, str], Difference]:
    """For variant groups: each variant against the first (by name), mailed contacts only."""
    if len(groups) < 2:
        return {}
    first = groups[0]
    return {(group.key, first.key): newcombe(group.mailed[kind], first.mailed[kind]) for group in groups[1:]}
