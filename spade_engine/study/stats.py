"""Results of a study: agreement with the reference answer per condition with Wilson 95% intervals, a test
between two conditions (two-proportion z-test and Fisher's exact test), response times, a per-participant
table and CSV export.

Agreement counts every answer, "undecided" ones included as not agreeing (the paper reports agreement and the
undecided rate side by side: 56.7% -> 69.8% agreement, 22.9% -> 12.6% undecided, dense -> SPADE).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import pandas as pd
from scipy import stats as sps

from spade_engine.metrics import wilson_interval  # the one Wilson interval (scipy), re-exported here
from spade_engine.study.design import UNDECIDED

COLUMNS = [
    "participant", "trial_index", "item_index", "condition", "reference_side", "choice", "correct", "undecided",
    "response_ms", "answered_at",
]  # fmt: skip


@dataclass(frozen=True)
class Comparison:
    """Difference in agreement between two conditions (b minus a)."""

    condition_a: str
    condition_b: str
    correct_a: int
    n_a: int
    correct_b: int
    n_b: int
    difference: float
    z: float
    p_z: float
    odds_ratio: float
    p_fisher: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_fisher < alpha


def answers_frame(answers: Iterable) -> pd.DataFrame:
    """A table of answers (`store.Answer` objects or dicts), one row each, with the `COLUMNS` columns."""
    rows = [a if isinstance(a, dict) else asdict(a) for a in answers]
    df = pd.DataFrame(rows, columns=[*COLUMNS, "duplicate"]).drop(columns="duplicate")
    df["undecided"] = df["choice"] == UNDECIDED
    df["correct"] = df["correct"].astype(bool)
    return df[COLUMNS]


def condition_summary(df: pd.DataFrame, conditions: Iterable[str] | None = None) -> pd.DataFrame:
    """Per condition: answers, agreement with its 95% Wilson interval, undecided rate, left-choice rate among
    decided answers (side preference), median and mean response time in ms."""
    conditions = list(conditions) if conditions is not None else sorted(df["condition"].unique())
    rows = []
    for cond in conditions:
        sub = df[df["condition"] == cond]
        n, k = len(sub), int(sub["correct"].sum())
        lo, hi = wilson_interval(k, n)
        decided = sub[~sub["undecided"]]
        rows.append({
            "condition": cond, "n": n, "correct": k, "agreement": k / n if n else float("nan"), "ci_low": lo,
            "ci_high": hi, "undecided_rate": float(sub["undecided"].mean()) if n else float("nan"),
            "left_rate": float((decided["choice"] == "left").mean()) if len(decided) else float("nan"),
            "median_rt_ms": float(sub["response_ms"].median()) if n else float("nan"),
            "mean_rt_ms": float(sub["response_ms"].mean()) if n else float("nan"),
        })  # fmt: skip
    return pd.DataFrame(rows)


def compare_conditions(df: pd.DataFrame, a: str, b: str) -> Comparison:
    """Two-proportion z-test (pooled) and Fisher's exact test of agreement in condition `b` vs `a`."""
    ka, na = int(df.loc[df["condition"] == a, "correct"].sum()), int((df["condition"] == a).sum())
    kb, nb = int(df.loc[df["condition"] == b, "correct"].sum()), int((df["condition"] == b).sum())
    z, p_z = two_proportion_z(ka, na, kb, nb)
    odds, p_fisher = sps.fisher_exact([[kb, nb - kb], [ka, na - ka]]) if na and nb else (float("nan"), 1.0)
    diff = (kb / nb if nb else float("nan")) - (ka / na if na else float("nan"))
    return Comparison(a, b, ka, na, kb, nb, diff, z, p_z, float(odds), float(p_fisher))


def two_proportion_z(ka: int, na: int, kb: int, nb: int) -> tuple[float, float]:
    """z statistic of p_b - p_a with the pooled standard error, and its two-sided p-value."""
    if na == 0 or nb == 0:
        return float("nan"), 1.0
    pooled = (ka + kb) / (na + nb)
    se = math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    if se == 0:
        return 0.0, 1.0
    z = (kb / nb - ka / na) / se
    return z, float(2 * sps.norm.sf(abs(z)))


def participant_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per participant: answers, agreement overall and per condition, undecided rate, median response time."""
    if df.empty:
        return pd.DataFrame(columns=["participant", "answers", "agreement", "undecided_rate", "median_rt_ms"])
    g = df.groupby("participant", sort=False)
    table = pd.DataFrame({
        "answers": g.size(), "agreement": g["correct"].mean(), "undecided_rate": g["undecided"].mean(),
        "median_rt_ms": g["response_ms"].median(),
    })  # fmt: skip
    per_cond = df.pivot_table(index="participant", columns="condition", values="correct", aggfunc="mean")
    table = table.join(per_cond.add_prefix("agreement_"))
    return table.reset_index()


def to_csv(df: pd.DataFrame) -> str:
    """The answers table as CSV text (one row per answer, `COLUMNS` in order)."""
    return df[COLUMNS].to_csv(index=False)
