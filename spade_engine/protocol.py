"""The SPADE paper's full saliency protocol (arXiv 2310.04519, Tables 1-2) on a shipped testbed model.

Rows are saliency methods, columns are the networks the maps are computed on:

- Dense: the trained model.
- SPADE-exact: per-sample SPADE with the exact OBC solver (the paper's "SPADE").
- SPADE-sweep: per-sample SPADE with the SparseGPT column sweep (the paper's "FastSPADE").
- SPADE-tuned: the sweep with per-block sparsities tuned on calibration images (FastSPADE*), from a profile.
- Sparse FC: the dense model with its head replaced by a sparse decision layer (Wong et al. 2021).

Trojan AUC (and pointing game, rank accuracy) on trojaned samples the dense model assigns to the trojan target;
insertion / deletion AUC on clean samples, every map scored on the dense model. `run_protocol` returns one row
per sample x method x column; `tables` turns them into the paper-style tables (mean and 95% CI).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from spade_engine import metrics
from spade_engine.bench import Sample, clean_samples, insertion_scores, trojan_samples, trojan_scores
from spade_engine.engine import PruneConfig, SpadeEngine
from spade_engine.models import ASSETS, spade_augment, spade_defaults
from spade_engine.saliency import METHODS, attribute
from spade_engine.testbed import data_for as testbed_data_for

ATTRIBUTION = (
    "at the normalised input (zero baseline = the mean colour), maps Σ_c |A_c| except LRP's signed Σ_c A_c "
    "(as the SPADE authors)"
)
RESULTS_DIR = ASSETS / "benchmarks"  # <model>_protocol.csv, shown by the Benchmarks page
COLUMNS = ("Dense", "SPADE-exact", "SPADE-sweep", "SPADE-tuned", "Sparse FC")
Progress = Callable[[str, int, int], None]
LABELS = {
    "auc": "Trojan ROC AUC (%) ↑",
    "insertion": "Insertion AUC (%) ↑",
    "deletion": "Deletion AUC (%) ↓",
    "pointing": "Pointing game (%) ↑",
}


@dataclass(frozen=True)
class ProtocolConfig:
    """One run of the protocol. `exact_samples` caps the samples of the (slow) exact-OBC column."""

    model: str = "testbed_resnet"
    trojan_samples: int = 100
    clean_samples: int = 100
    sparsity: float | None = None  # None: the model card's (`models.spade_defaults`)
    n_aug: int = 64
    crop_min: float | None = None  # smallest calibration crop; None: the model card's
    methods: tuple[str, ...] = tuple(METHODS)
    columns: tuple[str, ...] = COLUMNS
    exact_samples: int | None = None
    tuned_profile: str | None = None  # path of a profile JSON; default: assets/profiles/<model>-tuned.json
    sparse_fc_features: float = 10.0  # features-per-class budget of the sparse decision layer
    seed: int = 1000  # evaluation images are generated from this seed (tuning uses others)
    steps: int = 32
    device: str = "cpu"
    metrics: tuple[str, ...] = ("trojan", "insertion")
    variants: tuple[Variant, ...] = ()  # extra SPADE columns (ablations), after `columns`

    def spade_settings(self) -> tuple[float, float]:
        """(sparsity, crop_min) of this run: the configured ones, else the model card's."""
        card = spade_defaults(self.model)
        return (
            card["sparsity"] if self.sparsity is None else self.sparsity,
            card["crop_min"] if self.crop_min is None else self.crop_min,
        )


@dataclass(frozen=True)
class Variant:
    """An extra SPADE column: its name, how it prunes and the smallest crop of its calibration views."""

    name: str
    prune: PruneConfig
    crop_min: float | None = None  # None: the run's


# ------------------------------------------------------------------------------------------ columns


def tuned_profile_path(cfg: ProtocolConfig) -> Path:
    """The SPADE-tuned column's profile: the configured one, else assets/profiles/<model>-tuned.json."""
    from spade_engine.profiles import PROFILE_DIR

    return Path(cfg.tuned_profile) if cfg.tuned_profile else PROFILE_DIR / f"{cfg.model}-tuned.json"


def tuned_config(cfg: ProtocolConfig) -> PruneConfig:
    """The tuned profile's PruneConfig (raises FileNotFoundError with a hint when it has not been tuned yet)."""
    from spade_engine.profiles import load_profile

    path = tuned_profile_path(cfg)
    try:
        return load_profile(path).config
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"No tuned profile at {path}: run `python benchmarks/tune_profile.py --model {cfg.model}` first."
        ) from e


def spade_columns(cfg: ProtocolConfig) -> dict[str, tuple[PruneConfig, float]]:
    """SPADE column -> (how it prunes, smallest crop of its calibration views), for the configured columns."""
    sparsity, crop = cfg.spade_settings()
    out = {}
    for col in cfg.columns:
        if col == "SPADE-exact":
            out[col] = (PruneConfig(sparsity, solver="obc"), crop)
        elif col == "SPADE-sweep":
            out[col] = (PruneConfig(sparsity), crop)
        elif col == "SPADE-tuned":
            out[col] = (tuned_config(cfg), crop)
    for v in cfg.variants:
        out[v.name] = (v.prune, crop if v.crop_min is None else v.crop_min)
    return out


def sparse_fc_model(model: nn.Module, cfg: ProtocolConfig, n_train: int = 4000) -> nn.Module:
    """The dense model with a sparse decision layer fitted on testbed features (cached on disk by key)."""
    from spade_engine import sparse_layer as sl

    key = f"protocol:{cfg.model}:{n_train}:{cfg.sparse_fc_features}"
    path = sl.cache_path(key)
    if path.exists():
        layer, _ = sl.load_layer(path)
    else:
        feats, _ = sl.testbed_features(
            model, n_train, seed=7, trojan_fraction=0.1, device=cfg.device, data=testbed_data_for(cfg.model)
        )
        tr, va = sl.split_train_val(len(feats), 0.2, seed=0)
        layer, glm_path = sl.fit_sparse_layer(feats.subset(tr), feats.subset(va),
                                              max_features_per_class=cfg.sparse_fc_features)
        sl.save_layer(layer, path, glm_path)
    return sl.sparse_head_model(model, layer)


def column_models(
    engine: SpadeEngine,
    sample: Sample,
    cfg: ProtocolConfig,
    columns: Sequence[str],
    fixed: dict[str, nn.Module],
    spade: dict[str, tuple[PruneConfig, float]],
) -> dict[str, tuple[nn.Module, bool]]:
    """column -> (network to explain `sample` on, whether it predicts the dense target)."""
    out: dict[str, tuple[nn.Module, bool]] = {}
    for col in columns:
        if col in fixed:
            net = fixed[col]
            with torch.no_grad():
                pred = int(net(sample.image[None].to(cfg.device)).argmax())
            out[col] = (net, pred == sample.target)
        else:
            prune_cfg, crop = spade[col]
            aug = spade_augment(cfg.model, crop)
            trace = engine.prepare(sample.image, n_aug=cfg.n_aug, seed=cfg.seed + sample.index, augment_config=aug)
            pruned, result = engine.prune(trace, prune_cfg)
            out[col] = (pruned, int(result.pruned_logits.argmax()) == sample.target)
    return out


# ---------------------------------------------------------------------------------------------- run


def run_protocol(
    cfg: ProtocolConfig,
    model: nn.Module | None = None,
    progress: Progress | None = None,
    on_sample: Callable[[list[dict]], None] | None = None,
    done: frozenset[tuple[str, int]] = frozenset(),
) -> pd.DataFrame:
    """Every method on every column for the configured samples; one row per (kind, sample, method, column).

    Args:
        cfg: the run.
        model: the dense model (default: `load_model(cfg.model)`).
        progress: `progress(phase, done, total)`.
        on_sample: called with each finished sample's rows (e.g. to append them to a file as they come).
        done: (kind, sample index) pairs finished by an earlier, interrupted run: skipped, not in the result.
    """
    from spade_engine.models import load_model

    model = model if model is not None else load_model(cfg.model, cfg.device).model
    fixed = {"Dense": model}
    if "Sparse FC" in cfg.columns:
        fixed["Sparse FC"] = sparse_fc_model(model, cfg)
    engine = SpadeEngine(model, cfg.device, max_cache_bytes=256 * 2**20)
    spade = spade_columns(cfg)
    all_columns = [*cfg.columns, *(v.name for v in cfg.variants)]
    rows = []
    for kind in cfg.metrics:
        n = cfg.trojan_samples if kind == "trojan" else cfg.clean_samples
        if n <= 0:  # e.g. `--clean 0`: trojan AUC only
            continue
        data = testbed_data_for(cfg.model)
        samples = (
            trojan_samples(model, n, cfg.seed, cfg.device, data)
            if kind == "trojan"
            else clean_samples(model, n, cfg.seed + 1, cfg.device, data)
        )
        for i, sample in enumerate(samples):
            if progress:
                progress(kind, i, len(samples))
            if (kind, sample.index) in done:
                continue
            first = len(rows)
            cols = [c for c in all_columns if c != "SPADE-exact" or cfg.exact_samples is None or i < cfg.exact_samples]
            for col, (net, agrees) in column_models(engine, sample, cfg, cols, fixed, spade).items():
                for method in cfg.methods:
                    t0 = time.perf_counter()
                    sal = attribute(method, net, sample.image[None].to(cfg.device), sample.target)
                    rows.append(
                        {
                            "kind": kind,
                            "sample": sample.index,
                            "method": method,
                            "column": col,
                            "agrees": agrees,
                            "seconds": time.perf_counter() - t0,
                            **(
                                trojan_scores(sal, sample)
                                if kind == "trojan"
                                else insertion_scores(model, sal, sample, cfg.steps, cfg.device)
                            ),
                        }
                    )
            if on_sample:
                on_sample(rows[first:])
        if progress:
            progress(kind, len(samples), len(samples))
    return pd.DataFrame(rows)


def run_to_csv(
    cfg: ProtocolConfig, out: str | Path, resume: bool = False, progress: Progress | None = None
) -> pd.DataFrame:
    """`run_protocol`, appending each finished sample's rows to `<out>.partial.csv` as it comes, so an
    interrupted run resumes (`resume=True`) where it stopped; returns all rows (the partial file is kept until
    the caller writes `out`, then `finish_csv` removes it).

    Raises:
        FileNotFoundError: SPADE-tuned without a tuned profile.
    """
    partial = partial_path(out)
    earlier = pd.read_csv(partial) if resume and partial.exists() and partial.stat().st_size else None
    if earlier is None and partial.exists():
        partial.unlink()
    done = frozenset() if earlier is None else frozenset(zip(earlier["kind"], earlier["sample"], strict=True))

    def append(rows: list[dict]) -> None:
        pd.DataFrame(rows).to_csv(partial, mode="a", header=not partial.exists(), index=False)

    df = run_protocol(cfg, progress=progress, on_sample=append, done=done)
    return df if earlier is None else pd.concat([earlier, df], ignore_index=True)


def partial_path(out: str | Path) -> Path:
    """Where a running protocol appends its rows: `<out stem>.partial.csv`."""
    out = Path(out)
    return out.with_name(out.stem + ".partial.csv")


def finish_csv(df: pd.DataFrame, out: str | Path) -> None:
    """Write the finished run to `out` and drop its partial file."""
    df.to_csv(out, index=False)
    partial_path(out).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------- tables


def tables(df: pd.DataFrame, scale: float = 100.0) -> dict[str, pd.DataFrame]:
    """Paper-style tables: metric -> rows = methods (+ "average"), columns = networks, cells "mean [lo, hi]".

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
        avg = sub.groupby(["column", "sample"], sort=False)[metric].mean().reset_index()
        cells["average"] = {col: _cell(g[metric].to_numpy(), scale) for col, g in avg.groupby("column", sort=False)}
        out[metric] = pd.DataFrame(cells).T[column_order(sub)]
    if "agrees" in df:
        per_sample = df.groupby(["kind", "column", "sample"])["agrees"].first().reset_index()
        out["agreement"] = per_sample.pivot_table(index="kind", columns="column", values="agrees", aggfunc="mean")
    return out


def paired_stats(df: pd.DataFrame, metric: str, reference: str = "Dense") -> dict[str, dict[str, tuple]]:
    """method (+ "average", the per-sample mean over methods) -> column -> (mean, lo, hi) of the paired
    difference column - `reference` on the same samples (95% CI)."""
    sub = df.dropna(subset=[metric])
    wide = sub.pivot_table(index=["method", "kind", "sample"], columns="column", values=metric, aggfunc="first")
    avg = sub.groupby(["column", "kind", "sample"])[metric].mean().unstack("column")
    avg.index = pd.MultiIndex.from_tuples([("average", *i) for i in avg.index], names=["method", "kind", "sample"])
    wide = pd.concat([wide, avg])
    cols = [c for c in column_order(sub) if c != reference and c in wide]
    out: dict[str, dict[str, tuple]] = {}
    if reference not in wide:
        return out
    for method in [*dict.fromkeys(sub["method"]), "average"]:
        rows = wide.loc[method]
        for col in cols:
            d = (rows[col] - rows[reference]).to_numpy(dtype=float)
            out.setdefault(method, {})[col] = metrics.mean_ci(d[~np.isnan(d)])
    return out


def paired_differences(df: pd.DataFrame, metric: str, reference: str = "Dense", scale: float = 100.0) -> pd.DataFrame:
    """Per method (+ "average"): each column's mean paired difference to `reference` on the same samples, with
    its 95% CI, "+1.2 [0.4, 2.0]". Pairing removes the between-sample spread that makes the tables' CIs
    overlap, so an interval that excludes 0 is a difference the run resolved."""
    stats = paired_stats(df, metric, reference)
    cells = {
        method: {col: f"{m * scale:+.1f} [{lo * scale:+.1f}, {hi * scale:+.1f}]" for col, (m, lo, hi) in row.items()}
        for method, row in stats.items()
    }
    return pd.DataFrame(cells).T


def column_order(df: pd.DataFrame) -> list[str]:
    """The columns present in `df`: the paper's in their order, then ablation variants as they appear."""
    present = list(dict.fromkeys(df["column"]))
    return [c for c in COLUMNS if c in present] + [c for c in present if c not in COLUMNS]


def _cell(values: np.ndarray, scale: float) -> str:
    mean, lo, hi = metrics.mean_ci(values[~np.isnan(values)])
    return f"{mean * scale:.1f} [{lo * scale:.1f}, {hi * scale:.1f}] (n={np.sum(~np.isnan(values))})"


def figure(df: pd.DataFrame, metric: str = "auc"):
    """Grouped bar chart (methods x columns) of one metric's means with 95% CIs, for the Benchmarks page."""
    import plotly.graph_objects as go

    fig = go.Figure()
    sub = df.dropna(subset=[metric]) if metric in df else df.iloc[:0]
    for col in column_order(sub):
        g = sub[sub["column"] == col].groupby("method", sort=False)[metric]
        stats = {m: metrics.mean_ci(v.to_numpy()) for m, v in g}
        names = list(stats)
        means = np.array([stats[m][0] for m in names]) * 100
        fig.add_bar(
            name=col,
            x=names,
            y=means,
            error_y=metrics.error_bars(means, [stats[m][1] * 100 for m in names], [stats[m][2] * 100 for m in names]),
        )
    fig.update_layout(
        barmode="group",
        yaxis_title=LABELS.get(metric, metric),
        legend_title="network",
        margin=dict(t=30, b=10),
        height=420,
    )
    return fig


def summary_figure(
    df: pd.DataFrame, reference: str = "Dense", metrics_: Sequence[str] = ("auc", "insertion", "deletion")
):
    """One panel per metric: each column's paired difference to `reference` (points; average over methods, 95%
    CI). Green where the column does better than the reference (higher AUC / insertion, lower deletion)."""
    from plotly.subplots import make_subplots

    present = [m for m in metrics_ if m in df and not df[m].isna().all()]
    fig = make_subplots(rows=1, cols=max(len(present), 1), subplot_titles=[LABELS[m] for m in present])
    for i, metric in enumerate(present, start=1):
        stats = paired_stats(df, metric, reference).get("average", {})
        cols = list(stats)
        means = np.array([stats[c][0] for c in cols]) * 100
        better = -means if metric == "deletion" else means
        fig.add_bar(
            x=cols, y=means, row=1, col=i, showlegend=False,
            marker_color=["#2ca02c" if b > 0 else "#d62728" for b in better],
            error_y=metrics.error_bars(means, [stats[c][1] * 100 for c in cols], [stats[c][2] * 100 for c in cols]),
        )  # fmt: skip
        fig.update_yaxes(title_text=f"Δ vs {reference} (points)" if i == 1 else None, zeroline=True, row=1, col=i)
    fig.update_layout(margin=dict(t=40, b=10), height=440)
    return fig


def merge_columns(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """`old` rows with `new`'s columns replaced by `new`'s rows (a re-run of some columns on the same samples)."""
    keys = ["kind", "sample"]
    if set(map(tuple, old[keys].drop_duplicates().to_numpy())) != set(
        map(tuple, new[keys].drop_duplicates().to_numpy())
    ):
        raise ValueError("The re-run covers other samples than the stored run: run the same --trojan/--clean counts.")
    return pd.concat([old[~old["column"].isin(set(new["column"]))], new], ignore_index=True)


def markdown(table: pd.DataFrame) -> str:
    """A table as GitHub markdown (index as the first column), for notes and reports."""
    head = ["", *map(str, table.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for idx, row in table.iterrows():
        lines.append("| " + " | ".join([str(idx), *(str(v) for v in row)]) + " |")
    return "\n".join(lines)


def save_settings(cfg: ProtocolConfig, csv_path: str | Path, seconds: float, extra: dict | None = None) -> Path:
    """Write the run's settings beside its CSV (`<name>.json`), for the Benchmarks page and the notes."""
    sparsity, crop = cfg.spade_settings()
    info = {
        "model": cfg.model,
        "sparsity": sparsity,
        "crop_min": crop,
        "n_aug": cfg.n_aug,
        "seed": cfg.seed,
        "tuned_profile": _project_relative(tuned_profile_path(cfg)),
        "sparse_fc_features_per_class": cfg.sparse_fc_features,
        "exact_samples": cfg.exact_samples,
        "insertion_steps": cfg.steps,
        "seconds": round(seconds, 1),
        "date": time.strftime("%Y-%m-%d"),
        "threads": torch.get_num_threads(),
        "attribution": ATTRIBUTION,
        "sweep_granularity": _granularity(PruneConfig()),
        **({"exact": exact_note(_dense(cfg))} if "SPADE-exact" in cfg.columns else {}),
        **(extra or {}),
    }
    path = Path(csv_path).with_suffix(".json")
    path.write_text(json.dumps(info, indent=2) + "\n")
    return path


def exact_coverage(model: nn.Module, config: PruneConfig | None = None) -> dict[str, list[str]]:
    """Which of the model's pruned layers the SPADE-exact column solves exactly (greedy OBC) and which fall back
    to the column sweep because they have more than `obc.exact_columns_limit()` columns.

    Returns:
        {"exact": [layer names], "sweep": [layer names]} in module order (the first conv excluded as the engine).
    """
    from spade_engine.pruning.obc import is_exact

    config = config or PruneConfig()
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    convs = [n for n, m in layers.items() if isinstance(m, nn.Conv2d)]
    heads = [n for n, m in layers.items() if isinstance(m, nn.Linear)]
    targets = config.targets(list(layers), convs[0] if convs else None, heads[-1] if heads else None)
    out: dict[str, list[str]] = {"exact": [], "sweep": []}
    for name in targets:
        m = layers[name]
        d = m.in_features if isinstance(m, nn.Linear) else m.weight[0].numel()  # columns per group
        out["exact" if is_exact(d) else "sweep"].append(name)
    return out


def exact_note(model: nn.Module) -> str:
    """One line for the SPADE-exact column: exact everywhere, or which layers fall back to the sweep."""
    from spade_engine.pruning.obc import exact_columns_limit

    cov = exact_coverage(model)
    head = "greedy OBC (unstructured, per weight)"
    if not cov["sweep"]:
        return f"{head}, exact on all {len(cov['exact'])} pruned layers"
    return (
        f"{head} on {len(cov['exact'])} layers; {len(cov['sweep'])} layers wider than {exact_columns_limit()} "
        f"columns use the column sweep ({', '.join(cov['sweep'])})"
    )


def _granularity(cfg: PruneConfig) -> str:
    block = "kh·kw columns per conv input channel, 1 per Linear column" if cfg.blocksize == "kernel" else cfg.blocksize
    count = "int(n·s)+1 per block (the authors')" if cfg.mask_count == "reference" else "the exact running target"
    return f"mask per block of {block}, {count}"


def _dense(cfg: ProtocolConfig) -> nn.Module:
    from spade_engine.models import load_model

    return load_model(cfg.model).model


def _project_relative(path: Path) -> str:
    root = ASSETS.parent
    full = path.resolve()
    return str(full.relative_to(root)) if full.is_relative_to(root) else str(path)


def load_settings(csv_path: str | Path) -> dict:
    """The settings stored beside a protocol CSV ({} for runs stored without them)."""
    path = Path(csv_path).with_suffix(".json")
    return json.loads(path.read_text()) if path.exists() else {}


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: `python -m spade_engine.protocol --model testbed_resnet --trojan 100 --clean 100 --out results.csv`."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="testbed_resnet")
    ap.add_argument("--trojan", type=int, default=100)
    ap.add_argument("--clean", type=int, default=100)
    ap.add_argument("--sparsity", type=float, default=None, help="default: the model card's")
    ap.add_argument("--n-aug", type=int, default=64)
    ap.add_argument("--crop-min", type=float, default=None, help="smallest calibration crop; default: the card's")
    ap.add_argument("--exact-samples", type=int, default=None)
    ap.add_argument("--methods", nargs="*", default=list(METHODS))
    ap.add_argument("--columns", nargs="*", default=list(COLUMNS))
    ap.add_argument("--out", default=None)
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run from <out>.partial.csv")
    ap.add_argument("--merge", action="store_true",
                    help="re-run only --columns and replace their rows in an existing --out (same samples)")  # fmt: skip
    args = ap.parse_args(argv)
    cfg = ProtocolConfig(
        args.model,
        args.trojan,
        args.clean,
        args.sparsity,
        args.n_aug,
        args.crop_min,
        tuple(args.methods),
        tuple(args.columns),
        args.exact_samples,
    )
    sparsity, crop = cfg.spade_settings()

    def show(phase: str, done: int, total: int) -> None:
        print(f"\r{phase}: {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    try:
        df = run_to_csv(cfg, args.out, args.resume, show) if args.out else run_protocol(cfg, progress=show)
    except FileNotFoundError as e:  # SPADE-tuned before its profile was tuned
        raise SystemExit(str(e)) from None
    if args.out:
        seconds = time.perf_counter() - t0
        if args.merge and Path(args.out).exists():
            try:
                df = merge_columns(pd.read_csv(args.out), df)
            except ValueError as e:
                raise SystemExit(str(e)) from None
            rerun = {
                "columns": sorted(set(cfg.columns)),
                "date": time.strftime("%Y-%m-%d"),
                "seconds": round(seconds, 1),
            }
            save_settings(cfg, args.out, load_settings(args.out).get("seconds", 0.0), {"rerun": rerun})
        else:
            save_settings(cfg, args.out, seconds)
        finish_csv(df, args.out)
    for name, table in tables(df).items():
        print(f"\n== {name} ({cfg.model}, sparsity {sparsity:.0%}, crop >= {crop:g}, n_aug {cfg.n_aug})")
        print(table.to_string())


if __name__ == "__main__":
    main()
