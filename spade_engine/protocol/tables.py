"""Paper-style tables of protocol rows: per method and column the mean score with its 95% interval, paired
differences to a reference column, and markdown for notes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from spade_engine import metrics
from spade_engine.protocol.config import COLUMNS

LABELS = {
    "auc": "Trojan ROC AUC (%) ↑",
    "insertion": "Insertion AUC (%) ↑",
    "deletion": "Deletion AUC (%) ↓",
    "pointing": "Pointing game (%) ↑",
}


def tables(df: pd.DataFrame, scale: float = 100.0) -> dict[str, pd.DataFrame]:
    """Paper-style tables: metric -> rows = methods (+ "average"), columns = networks, cells "mean [lo, hi]".

    "average" is the per-sample mean over methods, leaving out a method on a sample where some column refused
    its map (so every column averages the same methods).

    Also an "agreement" table: the share of samples on which each column predicts the dense class.
    """
    out = {}
    metric_kinds = {"auc": "trojan", "pointing": "trojan", "insertion": "insertion", "deletion": "insertion"}
    for metric, kind in metric_kinds.items():
        sub = df[df["kind"] == kind] if "kind" in df else df
        if sub.empty or metric not in sub:
            continue
        cells = {}
        for (method, col), g in sub.groupby(["method", "column"], sort=False):
            cells.setdefault(method, {})[col] = _cell(g[metric].to_numpy(), scale)
        avg = _scored_on_every_column(sub, metric).groupby(["column", "sample"], sort=False)[metric].mean()
        avg = avg.reset_index()
        cells["average"] = {col: _cell(g[metric].to_numpy(), scale) for col, g in avg.groupby("column", sort=False)}
        out[metric] = pd.DataFrame(cells).T[column_order(sub)]
    if "agrees" in df:
        per_sample = df.groupby(["kind", "column", "sample"])["agrees"].first().reset_index()
        out["agreement"] = per_sample.pivot_table(index="kind", columns="column", values="agrees", aggfunc="mean")
    return out


def paired_stats(df: pd.DataFrame, metric: str, reference: str = "Dense") -> dict[str, dict[str, tuple]]:
    """method (+ "average") -> column -> (mean, lo, hi) of the paired difference column - `reference` on the same
    samples (95% CI). "average" is, per sample, the mean over methods of the per-method differences, so a map
    missing on one side (a method that refused that network: NaN) leaves out only that method's pair."""
    sub = df.dropna(subset=[metric])
    wide = sub.pivot_table(index=["method", "kind", "sample"], columns="column", values=metric, aggfunc="first")
    cols = [c for c in column_order(sub) if c != reference and c in wide]
    out: dict[str, dict[str, tuple]] = {}
    if reference not in wide:
        return out
    for method in [*dict.fromkeys(sub["method"]), "average"]:
        for col in cols:
            diff = wide[col] - wide[reference]  # (method, kind, sample)
            if method == "average":
                diff = diff.groupby(level=["kind", "sample"]).mean()  # NaN pairs skipped
            else:
                diff = diff.loc[method]
            d = diff.to_numpy(dtype=float)
            out.setdefault(method, {})[col] = metrics.mean_ci(d[~np.isnan(d)])
    return out


def paired_differences(df: pd.DataFrame, metric: str, reference: str = "Dense", scale: float = 100.0) -> pd.DataFrame:
    """Per method (+ "average"): each column's mean paired difference to `reference` on the same samples, with
    its 95% CI, "+1.2 [0.4, 2.0]" ("—" where no pair was scored). Pairing removes the between-sample spread that makes the tables' CIs
    overlap, so an interval that excludes 0 is a difference the run resolved."""
    stats = paired_stats(df, metric, reference)
    cells = {
        method: {
            col: "—" if np.isnan(m) else f"{m * scale:+.1f} [{lo * scale:+.1f}, {hi * scale:+.1f}]"
            for col, (m, lo, hi) in row.items()
        }
        for method, row in stats.items()
    }
    return pd.DataFrame(cells).T


def column_order(df: pd.DataFrame) -> list[str]:
    """The columns present in `df`: the paper's in their order, then ablation variants as they appear."""
    present = list(dict.fromkeys(df["column"]))
    return [c for c in COLUMNS if c in present] + [c for c in present if c not in COLUMNS]


def _scored_on_every_column(sub: pd.DataFrame, metric: str) -> pd.DataFrame:
    """`sub` without the (sample, method) pairs that some column left unscored (a refused map, NaN), so that a
    per-sample average over methods covers the same methods on every column."""
    missing = sub[metric].isna()
    if not missing.any():
        return sub
    refused = pd.MultiIndex.from_frame(sub.loc[missing, ["sample", "method"]])
    return sub[~pd.MultiIndex.from_frame(sub[["sample", "method"]]).isin(refused)]


def _cell(values: np.ndarray, scale: float) -> str:
    """ "mean [lo, hi] (n=N)" over the scored values; "— (n=0)" when none was scored (every map refused)."""
    n = int(np.sum(~np.isnan(values)))
    if n == 0:
        return "— (n=0)"
    mean, lo, hi = metrics.mean_ci(values[~np.isnan(values)], bounded=True)  # scores in [0, 1]: lo >= 0, hi <= 1
    return f"{mean * scale:.1f} [{lo * scale:.1f}, {hi * scale:.1f}] (n={n})"


def markdown(table: pd.DataFrame) -> str:
    """A table as GitHub markdown (index as the first column), for notes and reports."""
    head = ["", *map(str, table.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for idx, row in table.iterrows():
        lines.append("| " + " | ".join([str(idx), *(str(v) for v in row)]) + " |")
    return "\n".join(lines)
