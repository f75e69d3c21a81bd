"""Tables and a chart of `benchmarks/compact_levers.py` runs: does SPADE keep the decision, and the reasons, per
lever (how the layers are calibrated and corrected) and sparsity, on real photos.

A run's CSV has one row per (sample, lever, sparsity, method): `method` empty for the decision row (`kept`,
`p_dense`, `held_agree`, `logit_cos`, `seconds`), else a map's `insertion` / `deletion` AUC scored on the dense
model; lever "dense" rows hold the dense maps' scores. Samples named "photo@crop" are crops of one photo: the
photo-resampling intervals treat a photo's crops as one unit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from spade_engine import metrics


def photo_interval(values: np.ndarray, photos: np.ndarray, reps: int = 2000) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean that resamples photos (all crops of a drawn photo).

    Args:
        values: (n,) per-sample values; photos: (n,) the photo each sample was cut from.
    """
    rng = np.random.default_rng(0)
    groups = [values[photos == p] for p in np.unique(photos)]
    means = [np.concatenate([groups[j] for j in rng.integers(0, len(groups), len(groups))]).mean() for _ in range(reps)]
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def decision_table(df: pd.DataFrame, min_p_dense: float = 0.0) -> pd.DataFrame:
    """Per lever and sparsity: samples, share whose dense top-1 the pruned network keeps (Wilson 95% interval),
    median held-out view agreement and logit cosine, median seconds per prune; with runs that record it, the
    agreement on the clear held-out views alone (dense top-1 leading the second by a margin: near-ties excluded)
    pooled over samples.

    Args:
        df: a run's rows; min_p_dense: only samples whose dense top-1 probability is at least this.

    Returns:
        One row per (lever, sparsity): n, kept, kept_lo, kept_hi (fractions), held_agree, logit_cos, seconds;
        held_clear (pooled over the clear views of all samples) and clear_views (median per sample) when the rows
        have `held_clear`.
    """
    dec = df[df["method"].isna() & (df["lever"] != "dense") & (df["p_dense"] >= min_p_dense)]
    rows = []
    for (lever, s), g in dec.groupby(["lever", "sparsity"]):
        k, n = int(g["kept"].sum()), len(g)
        lo, hi = metrics.wilson_interval(k, n)
        row = dict(lever=lever, sparsity=s, n=n, kept=k / n, kept_lo=lo, kept_hi=hi,
                   held_agree=g["held_agree"].median(), logit_cos=g["logit_cos"].median(),
                   seconds=g["seconds"].median())  # fmt: skip
        if "held_clear" in g and g["n_clear"].notna().any():
            clear = g.dropna(subset=["n_clear"])
            views = clear["n_clear"].sum()
            row["held_clear"] = (
                (clear["held_clear"].fillna(0) * clear["n_clear"]).sum() / views if views else float("nan")
            )
            row["clear_views"] = clear["n_clear"].median()  # per sample
        rows.append(row)
    return pd.DataFrame(rows)


def views_table(default: pd.DataFrame, fewer: pd.DataFrame, min_p_dense: float = 0.0, views=(64, 32)) -> pd.DataFrame:
    """Two runs of the same levers that differ in their calibration views, on the samples both have: the
    `decision_table` of each (a `views` column says which), then the paired difference of held-out agreement.

    Args:
        default, fewer: the runs' rows (`benchmarks/compact_levers.py --views`); views: their view counts.

    Returns:
        One row per (lever, sparsity, views) with `decision_table`'s columns, plus `paired_delta` (median over
        shared samples of fewer - default held-out agreement) on the fewer-views rows. Empty if no sample is shared.
    """
    pick = lambda d: d[d["method"].isna() & (d["lever"] != "dense")]  # noqa: E731
    a, b = pick(default), pick(fewer)
    both = a.merge(b, on=["sample", "lever", "sparsity"], suffixes=("", "_fewer"))
    if both.empty:
        return pd.DataFrame()
    shared = set(both["sample"])
    out = []
    for rows, n in ((a, views[0]), (b, views[1])):
        t = decision_table(rows[rows["sample"].isin(shared)], min_p_dense)
        out.append(t.assign(views=n))
    table = pd.concat(out, ignore_index=True)
    delta = both.assign(d=both["held_agree_fewer"] - both["held_agree"]).groupby(["lever", "sparsity"])["d"].median()
    table["paired_delta"] = [
        delta.get((r.lever, r.sparsity)) if r.views == views[1] else float("nan") for r in table.itertuples()
    ]
    return table


def map_differences(df: pd.DataFrame) -> pd.DataFrame:
    """Paired difference of each lever's maps to the dense maps of the same samples, in AUC points (x100).

    Returns:
        One row per (lever, sparsity, method, metric): n, dense (mean dense AUC), delta, lo, hi (95% t interval),
        photo_lo, photo_hi (95% interval resampling photos). Deletion: lower is better.
    """
    maps = df[df["method"].notna()]
    dense = maps[maps["lever"] == "dense"].set_index(["sample", "method"])[["insertion", "deletion"]]
    dense = dense.rename(columns=lambda c: f"{c}_dense")
    rows = []
    for (lever, s, method), g in maps[maps["lever"] != "dense"].groupby(["lever", "sparsity", "method"]):
        g = g.set_index(["sample", "method"]).join(dense).dropna(subset=["insertion", "insertion_dense"])
        if g.empty:
            continue
        photos = np.array([i[0].split("@")[0] for i in g.index])
        for metric in ("insertion", "deletion"):
            d = 100 * (g[metric] - g[f"{metric}_dense"]).to_numpy()
            m, lo, hi = metrics.mean_ci(d)
            plo, phi = photo_interval(d, photos)
            rows.append(dict(lever=lever, sparsity=s, method=method, metric=metric, n=len(d),
                             dense=100 * g[f"{metric}_dense"].mean(), delta=m, lo=lo, hi=hi, photo_lo=plo,
                             photo_hi=phi))  # fmt: skip
    return pd.DataFrame(rows)


def views_map_table(default: pd.DataFrame, fewer: pd.DataFrame, views=(64, 32)) -> pd.DataFrame:
    """The maps of two runs that differ in their calibration views, on the (lever, sparsity, method) and samples
    both have: each run's `map_differences` to its dense maps (a `views` column says which), and on the
    fewer-views rows the paired difference of the pruned maps themselves (fewer - default, AUC points x100,
    `pair`, `pair_lo`, `pair_hi`: 95% t interval). Empty if the runs share no map."""
    maps = lambda d: d[d["method"].notna()]  # noqa: E731
    a, b = maps(default), maps(fewer)
    keys = ["sample", "lever", "sparsity", "method"]
    pruned = a[a["lever"] != "dense"].merge(b[b["lever"] != "dense"], on=keys, suffixes=("", "_fewer"))
    if pruned.empty:
        return pd.DataFrame()
    shared = set(pruned["sample"])
    settings = set(zip(pruned["lever"], pruned["sparsity"], strict=True)) | {("dense", 0.0)}

    def part(d: pd.DataFrame) -> pd.DataFrame:
        keep = [(lv, sp) in settings or lv == "dense" for lv, sp in zip(d["lever"], d["sparsity"], strict=True)]
        return d[d["sample"].isin(shared) & np.array(keep, dtype=bool)]

    table = pd.concat([map_differences(part(a)).assign(views=views[0]), map_differences(part(b)).assign(views=views[1])],
                      ignore_index=True)  # fmt: skip
    pair = {}
    for (lever, s, method), g in pruned.groupby(["lever", "sparsity", "method"]):
        for metric in ("insertion", "deletion"):
            pair[(lever, s, method, metric)] = metrics.mean_ci(100 * (g[f"{metric}_fewer"] - g[metric]).to_numpy())
    nan3 = (float("nan"),) * 3
    got = [pair.get((r.lever, r.sparsity, r.method, r.metric), nan3) if r.views == views[1] else nan3
           for r in table.itertuples()]  # fmt: skip
    table[["pair", "pair_lo", "pair_hi"]] = pd.DataFrame(got, index=table.index)
    return table


def levers_figure(table: pd.DataFrame):
    """Plotly figure of a `decision_table`: decision kept (with its interval), held-out agreement and logit cosine
    against sparsity, one line per lever."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(1, 3, subplot_titles=("Decision kept (share of samples)", "Held-out views agreeing (median)",
                                              "Held-out logit cosine (median)"))  # fmt: skip
    for i, (lever, g) in enumerate(table.groupby("lever")):
        g = g.sort_values("sparsity")
        colour = f"hsl({(i * 97) % 360}, 60%, 45%)"
        err = dict(type="data", symmetric=False, array=g["kept_hi"] - g["kept"], arrayminus=g["kept"] - g["kept_lo"])
        for col, (y, extra) in enumerate([("kept", dict(error_y=err)), ("held_agree", {}), ("logit_cos", {})], 1):
            fig.add_trace(go.Scatter(x=100 * g["sparsity"], y=g[y], name=lever, legendgroup=lever, showlegend=col == 1,
                                     mode="lines+markers", line=dict(color=colour), **extra), 1, col)  # fmt: skip
    fig.update_xaxes(title_text="sparsity per layer (%)")
    fig.update_yaxes(range=[0, 1.05])
    fig.update_layout(height=360, margin=dict(t=40, b=10), legend_title_text="lever")
    return fig
