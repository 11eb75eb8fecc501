"""The holdout group and the variants: stable, of the asked share, and independent of each other."""

from __future__ import annotations

from collections import Counter

from repsend.assignment import is_held_out, variant_of

IDS = [f"0035g{n:010d}AAA" for n in range(20000)]


def test_the_share_held_out_is_the_share_asked() -> None:
    held = sum(is_held_out("dormant-2026-12", cid, 0.1) for cid in IDS)
    assert 1800 < held < 2200  # 10% of 20,000; the standard deviation is 42
    assert not any(is_held_out("dormant-2026-12", cid, 0) for cid in IDS)
    assert all(is_held_out("dormant-2026-12", cid, 1) for cid in IDS)


def test_the_same_contact_is_chosen_on_every_run_whatever_form_its_id_takes() -> None:
    # Pinned values: a change of the hash would move contacts between groups in the middle of a campaign.
    chosen = [cid for cid in IDS[:2000] if is_held_out("dormant-2026-12", cid, 0.1)]
    assert chosen == [cid for cid in IDS[:2000] if is_held_out("dormant-2026-12", cid[:15], 0.1)]
    assert [variant_of("dormant-2026-12", cid, ["a", "b"]) for cid in IDS[:8]] == PINNED_VARIANTS
    assert [is_held_out("dormant-2026-12", cid, 0.5) for cid in IDS[:8]] == PINNED_HOLDOUT


def test_another_campaign_chooses_others() -> None:
    first = {cid for cid in IDS if is_held_out("a", cid, 0.1)}
    second = {cid for cid in IDS if is_held_out("b", cid, 0.1)}
    assert len(first & second) < 0.02 * len(IDS)  # independent: about 1%, not 10%


def test_variants_split_evenly_and_apart_from_the_holdout() -> None:
    counts = Counter(variant_of("c", cid, ["a", "b", "c"]) for cid in IDS)
    assert all(6300 < counts[v] < 7000 for v in "abc")
    held = [cid for cid in IDS if is_held_out("c", cid, 0.5)]
    among_held = Counter(variant_of("c", cid, ["a", "b"]) for cid in held)
    assert abs(among_held["a"] - among_held["b"]) < 0.06 * len(held)
    assert variant_of("c", IDS[0], []) == ""


PINNED_VARIANTS = ["a", "a", "a", "a", "a", "a", "b", "a"]
PINNED_HOLDOUT = [True, True, True, False, True, False, False, False]


def test_the_same_choice_in_another_process_whatever_its_hash_seed() -> None:
    """hashlib, not hash(): a rerun, a resumed run or another machine chooses the same contacts."""
    import json
    import os
    import subprocess
    import sys

    code = ("import json, sys; from repsend.assignment import is_held_out, variant_of; "
            "ids = [f'0035g{n:010d}AAA' for n in range(300)]; "
            "print(json.dumps([[is_held_out('c', i, 0.3), variant_of('c', i, ['a', 'b', 'c'])] for i in ids]))")
    here = [[is_held_out("c", i, 0.3), variant_of("c", i, ["a", "b", "c"])] for i in IDS[:300]]
    for seed in ("0", "1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        assert json.loads(out.stdout) == here


def test_the_share_on_10000_contacts_is_within_the_binomial_bounds() -> None:
    # 10% of 10,000: mean 1,000, standard deviation 30; the bounds are 4 of them (a false failure 1 in 15,000).
    held = sum(is_held_out("winter-2026", cid, 0.1) for cid in IDS[:10000])
    assert 880 <= held <= 1120
