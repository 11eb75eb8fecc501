"""Stable random assignment of contacts: the holdout group and A/B variants of a campaign.

A contact's place is a SHA-256 hash of (campaign, what it is for, the 15-character Contact Id): the same
on a rerun, a resumed run, another machine and any version of any library, unlike ``random`` or
``hash()``; and independent between the holdout and the variants, so that the variants split the
mailed contacts evenly whoever is held out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from repsend.models import id15

_SCALE = float(1 << 64)


def _uniform(campaign: str, purpose: str, contact_id: str) -> float:
    """A number in [0, 1), uniform over contacts, fixed for the campaign."""
    digest = hashlib.sha256(f"repsend\x00{purpose}\x00{campaign}\x00{id15(contact_id)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def is_held_out(campaign: str, contact_id: str, share: float) -> bool:
    """Whether the contact is in the campaign's holdout group of ``share`` (0 to 1) of the contacts."""
    return share > 0 and _uniform(campaign, "holdout", contact_id) < share


def variant_of(campaign: str, contact_id: str, variants: Sequence[str]) -> str:
    """The contact's variant, one of ``variants`` (in a fixed order) with equal chances; "" without variants."""
    if not variants:
        return ""
    return variants[int(_uniform(campaign, "variant", contact_id) * len(variants))]
