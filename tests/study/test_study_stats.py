"""Results: Wilson intervals, tests between conditions, per-participant table, CSV export of stored answers."""

import io

import pandas as pd
import pytest

from spade_engine.study import StudyStore
from spade_engine.study.stats import (
    COLUMNS,
    answers_frame,
    compare_conditions,
    condition_summary,
    participant_table,
    to_csv,
    wilson_interval,
)
from tests.study.factory import open_study


def frame(counts: dict[str, tuple[int, int]], undecided: int = 0) -> pd.DataFrame:
    """Answers with `correct` of `n` right per condition; the first `undecided` wrong ones are undecided."""
    rows = []
    for cond, (correct, n) in counts.items():
        for i in range(n):
            ok = i < correct
            choice = "left" if ok else ("undecided" if i - correct < undecided else "right")
            rows.append(
                {
                    "participant": f"p{i % 4}",
                    "trial_index": i,
                    "item_index": i % 5,
                    "condition": cond,
                    "reference_side": "left",
                    "choice": choice,
                    "correct": ok,
                    "response_ms": 1000 + 10 * i,
                    "answered_at": None,
                }
            )
    return answers_frame(rows)


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (8, 10), (10, 10), (57, 100), (1, 3)])
def test_wilson_interval_contains_the_proportion_and_is_inside_0_1(k, n):
    lo, hi = wilson_interval(k, n)
    assert 0 <= lo <= k / n <= hi <= 1


def test_wilson_interval_narrows_with_more_answers():
    lo10, hi10 = wilson_interval(6, 10)
    lo100, hi100 = wilson_interval(60, 100)
    assert hi100 - lo100 < (hi10 - lo10) / 2


def test_wilson_interval_matches_known_values():
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_summary_per_condition():
    df = frame({"dense_vis": (6, 10), "spade_vis": (9, 10)}, undecided=2)
    s = condition_summary(df, ["dense_vis", "spade_vis"]).set_index("condition")
    assert s.loc["dense_vis", "agreement"] == pytest.approx(0.6)
    assert s.loc["spade_vis", "agreement"] == pytest.approx(0.9)
    assert s.loc["dense_vis", "ci_low"] < 0.6 < s.loc["dense_vis", "ci_high"]
    assert s.loc["dense_vis", "undecided_rate"] == pytest.approx(0.2)
    assert s.loc["dense_vis", "left_rate"] == pytest.approx(6 / 8)
    assert s.loc["spade_vis", "median_rt_ms"] == pytest.approx(1045)


def test_test_detects_a_big_difference_and_not_a_zero_one():
    big = compare_conditions(frame({"dense_vis": (30, 100), "spade_vis": (80, 100)}), "dense_vis", "spade_vis")
    assert big.difference == pytest.approx(0.5)
    assert big.z > 5 and big.p_z < 1e-6 and big.p_fisher < 1e-6 and big.significant()
    same = compare_conditions(frame({"dense_vis": (40, 80), "spade_vis": (40, 80)}), "dense_vis", "spade_vis")
    assert same.z == pytest.approx(0) and same.p_z == pytest.approx(1) and same.p_fisher == pytest.approx(1)
    assert not same.significant()


def test_participant_table():
    t = participant_table(frame({"dense_vis": (4, 8), "spade_vis": (8, 8)})).set_index("participant")
    assert list(t.index) == ["p0", "p1", "p2", "p3"]
    assert (t["answers"] == 4).all()
    assert (t["agreement_spade_vis"] == 1).all()
    assert t.loc["p0", "agreement_dense_vis"] == pytest.approx(0.5)


def test_csv_export_matches_the_stored_answers(tmp_path):
    store = StudyStore(str(tmp_path / "s.db"))
    study_id = open_study(store, trials=4)
    for code in ("ann", "ben"):
        token = store.add_participant(study_id, code).token
        for t in store.trials(study_id, code)[:3]:
            store.record_answer(study_id, token, t.index, "right", 321 + t.index)
    answers = store.answers(study_id)
    csv = pd.read_csv(io.StringIO(to_csv(answers_frame(answers))))
    store.dispose()
    assert list(csv.columns) == COLUMNS
    assert len(csv) == 6
    assert list(
        zip(csv["participant"], csv["trial_index"], csv["choice"], csv["response_ms"], csv["condition"], strict=False)
    ) == [(a.participant, a.trial_index, a.choice, a.response_ms, a.condition) for a in answers]
    assert list(csv["correct"]) == [a.reference_side == "right" for a in answers]
