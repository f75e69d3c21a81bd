"""Deterministic, balanced trial lists: the same (study seed, participant id) always gives the same trials.

Balance per participant:
- conditions: each condition gets `n // C` or `n // C + 1` trials (exactly `n / C` when C divides n);
- sides: the reference answer is on the left in exactly half the trials when n is even (off by one otherwise),
  and within each condition the two sides differ by at most one;
- items: each item is shown once before any item repeats; a repeated item gets another condition when possible,
  so one participant does not see the same item under the same explanation twice.
The condition is never shown to the participant; the order is shuffled.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from spade_engine.study.design import SIDES


@dataclass(frozen=True)
class Trial:
    """One trial of one participant. `reference_side` is where the reference answer is displayed."""

    index: int
    item_index: int
    condition: str
    reference_side: str


def participant_rng(seed: int, participant: str) -> random.Random:
    """A private generator seeded by a stable hash of (study seed, participant id) (not Python's salted hash)."""
    digest = hashlib.sha256(f"{int(seed)}|{participant}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def make_trials(
    n_items: int, conditions: tuple[str, ...] | list[str], n_trials: int, seed: int, participant: str
) -> list[Trial]:
    """The trial list of one participant.

    Args:
        n_items: number of study items (each has a stimulus per condition).
        conditions: condition keys of the study.
        n_trials: trials per participant.
        seed: the study's seed.
        participant: the participant's id (any string).

    Returns:
        `n_trials` trials in presentation order, `Trial.index` = 0 .. n_trials - 1.
    """
    if n_items < 1 or not conditions or n_trials < 1:
        raise ValueError("A trial list needs at least one item, one condition and one trial.")
    rng = participant_rng(seed, participant)
    items = _item_sequence(n_items, n_trials, rng)
    conds = _balanced_conditions(list(conditions), n_trials, rng)
    conds = _spread_repeats(items, conds)
    sides = _balanced_sides(conds, list(conditions), rng)
    order = list(range(n_trials))
    rng.shuffle(order)
    return [Trial(k, items[j], conds[j], sides[j]) for k, j in enumerate(order)]


def _item_sequence(n_items: int, n_trials: int, rng: random.Random) -> list[int]:
    items: list[int] = []
    while len(items) < n_trials:
        perm = list(range(n_items))
        rng.shuffle(perm)
        items += perm
    return items[:n_trials]


def _balanced_conditions(conditions: list[str], n_trials: int, rng: random.Random) -> list[str]:
    extra = conditions[:]
    rng.shuffle(extra)  # which conditions get the leftover trials when C does not divide n
    conds = [conditions[i % len(conditions)] for i in range(n_trials - n_trials % len(conditions))]
    conds += extra[: n_trials % len(conditions)]
    rng.shuffle(conds)
    return conds


def _spread_repeats(items: list[int], conds: list[str]) -> list[str]:
    """Swap conditions between trials so that (item, condition) pairs repeat as little as possible."""
    conds = conds[:]
    for _ in range(len(conds)):
        dup = _first_duplicate(items, conds)
        if dup is None:
            break
        for k in range(len(conds)):
            trial = conds[:]
            trial[dup], trial[k] = trial[k], trial[dup]
            if _n_duplicates(items, trial) < _n_duplicates(items, conds):
                conds = trial
                break
        else:
            break
    return conds


def _first_duplicate(items: list[int], conds: list[str]) -> int | None:
    seen = set()
    for j, pair in enumerate(zip(items, conds, strict=False)):
        if pair in seen:
            return j
        seen.add(pair)
    return None


def _n_duplicates(items: list[int], conds: list[str]) -> int:
    return len(items) - len(set(zip(items, conds, strict=False)))


def _balanced_sides(conds: list[str], conditions: list[str], rng: random.Random) -> list[str]:
    """Alternate sides along the trials grouped by condition, then shuffle the sides within each group."""
    sides = [""] * len(conds)
    start = rng.randrange(2)
    pos = 0
    for cond in conditions:
        members = [j for j, c in enumerate(conds) if c == cond]
        group_sides = [SIDES[(start + pos + i) % 2] for i in range(len(members))]
        rng.shuffle(group_sides)
        for j, side in zip(members, group_sides, strict=False):
            sides[j] = side
        pos += len(members)
    return sides
