"""Trial lists: deterministic per (seed, participant), balanced in sides and conditions, items spread."""

from collections import Counter

import pytest

from spade_engine.study.trials import make_trials

CASES = [  # (items, conditions, trials)
    (12, ("dense_vis", "spade_vis"), 10),
    (12, ("dense_vis", "spade_vis"), 12),
    (5, ("dense_vis", "spade_vis", "none"), 12),
    (8, ("dense_saliency", "spade_saliency"), 9),
    (3, ("dense_vis", "spade_vis"), 7),
    (20, ("a", "b", "c", "d"), 16),
]


def test_same_seed_and_participant_give_the_same_trials():
    assert make_trials(10, ("a", "b"), 8, 3, "p1") == make_trials(10, ("a", "b"), 8, 3, "p1")


def test_participants_and_seeds_get_different_orders():
    base = make_trials(10, ("a", "b"), 8, 3, "p1")
    assert any(make_trials(10, ("a", "b"), 8, 3, f"p{k}") != base for k in range(2, 6))
    assert any(make_trials(10, ("a", "b"), 8, s, "p1") != base for s in range(4, 8))


@pytest.mark.parametrize("n_items, conditions, n", CASES)
@pytest.mark.parametrize("participant", ["p1", "alice", "P-0042"])
def test_sides_and_conditions_are_balanced(n_items, conditions, n, participant):
    trials = make_trials(n_items, conditions, n, 11, participant)
    assert [t.index for t in trials] == list(range(n))
    sides = Counter(t.reference_side for t in trials)
    if n % 2 == 0:
        assert sides["left"] == sides["right"] == n // 2
    else:
        assert abs(sides["left"] - sides["right"]) == 1
    per_condition = Counter(t.condition for t in trials)
    assert set(per_condition) <= set(conditions)
    assert max(per_condition[c] for c in conditions) - min(per_condition[c] for c in conditions) <= 1
    if n % len(conditions) == 0:
        assert all(per_condition[c] == n // len(conditions) for c in conditions)
    for c in conditions:
        by_side = Counter(t.reference_side for t in trials if t.condition == c)
        assert abs(by_side["left"] - by_side["right"]) <= 1, c


@pytest.mark.parametrize("n_items, conditions, n", CASES)
def test_items_do_not_repeat_before_all_are_shown(n_items, conditions, n):
    trials = make_trials(n_items, conditions, n, 5, "p9")
    items = Counter(t.item_index for t in trials)
    assert max(items.values()) - min(items.values()) <= 1
    assert len(items) == min(n, n_items)
    if n <= n_items * len(conditions):  # a repeated item comes with another explanation
        assert len({(t.item_index, t.condition) for t in trials}) == n


def test_order_is_shuffled_not_grouped_by_condition():
    trials = make_trials(40, ("a", "b"), 40, 1, "p1")
    first_half = [t.condition for t in trials[:20]]
    assert 3 <= first_half.count("a") <= 17
    assert [t.item_index for t in trials] != sorted(t.item_index for t in trials)


def test_conditions_rotate_over_items_across_participants():
    seen = Counter((t.item_index, t.condition) for p in range(40) for t in make_trials(6, ("a", "b"), 6, 2, f"p{p}"))
    assert len(seen) == 12 and min(seen.values()) >= 8  # every item is shown in every condition to someone


def test_invalid_arguments_raise():
    with pytest.raises(ValueError):
        make_trials(0, ("a",), 3, 0, "p")
