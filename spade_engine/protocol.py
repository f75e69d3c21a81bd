"""The benchmark pipeline: the SPADE paper's saliency protocol (arXiv 2310.04519, Tables 1-2) on a testbed model.

    spade protocol --model testbed_resnet --trojan 100 --clean 100 --out results.csv          # on Ray
    python -m spade_engine.protocol --model testbed_resnet --trojan 100 --clean 100 --out results.csv  # serial

This is the project's one benchmark pipeline (`python -m spade_engine.bench` is a thin alias for a Dense vs
SPADE run of it). Rows are saliency methods, columns are the networks the maps are computed on:

- Dense: the trained model.
- SPADE-exact: per-sample SPADE with the exact OBC solver (the paper's "SPADE").
- SPADE-sweep: per-sample SPADE with the SparseGPT column sweep (the paper's "FastSPADE").
- SPADE-tuned: the sweep with per-block sparsities tuned on calibration images (FastSPADE*), from a profile.
- Sparse FC: the dense model with its head replaced by a sparse decision layer (Wong et al. 2021).
- Variants: extra SPADE columns (ablations: another crop, sparsity, solver...).

Trojan AUC (and pointing game, rank accuracy) on trojaned samples the dense model assigns to the trojan target;
insertion / deletion AUC on clean samples, every map scored on the dense model. Sparsity and calibration crops
default to the model card's (`models.spade_defaults`, `models.spade_augment`), as in the Debugger.
`run_protocol` returns one row per sample x method x column (`sample_rows` makes one sample's rows: the unit of
work of a Ray task, see `spade_engine.distributed`); `tables` turns them into the paper-style tables (mean and
95% CI). `run_to_csv` appends each finished sample's rows to `<out>.partial.csv`, so `--resume` loses nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import torch
from torch import nn

from spade_engine import metrics
from spade_engine.engine import PruneConfig, SpadeEngine
from spade_engine.models import ASSETS, spade_augment, spade_defaults
from spade_engine.saliency import METHODS, UnsupportedModelError, attribute
from spade_engine.testbed import data_for as testbed_data_for

ATTRIBUTION = (
    "at the normalised input (zero baseline = the mean colour), maps Σ_c |A_c| except LRP's signed Σ_c A_c "
    "(as the SPADE authors)"
)
RESULTS_DIR = ASSETS / "benchmarks"  # <model>_protocol.csv, shown by the Benchmarks page
COLUMNS = ("Dense", "SPADE-exact", "SPADE-sweep", "SPADE-tuned", "Sparse FC")
Progress = Callable[[str, int, int], None]
# Every row's fields, in the order the stored CSVs have them (a trojan row leaves insertion/deletion empty).
ROW_FIELDS = ("kind", "sample", "method", "column", "agrees", "seconds", "auc", "pointing", "rank_acc",
              "insertion", "deletion")  # fmt: skip
KIND_METRICS = {"trojan": ("auc", "pointing", "rank_acc"), "insertion": ("insertion", "deletion")}
# A map a method refuses on one network (`UnsupportedModelError`) is a row with empty scores and the reason in an
# extra "unsupported" field; the tables leave it out (NaN), so a paired difference uses the samples both have.
ENGINE_CACHE_BYTES = 256 * 2**20  # each sample is visited once: keep little
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


# ------------------------------------------------------------------------------------------ samples


@dataclass(frozen=True)
class Sample:
    """One benchmark image with its ground truth and the dense model's prediction."""

    index: int  # the image's index in the generated batch (also offsets the calibration views' seed)
    image: torch.Tensor  # (3, H, W) in [0, 1]
    target: int  # the class every map explains: the trojan target, or the dense prediction on clean images
    mask: np.ndarray | None  # (H, W) bool trojan patch, None for clean images


def _predict(model: nn.Module, images: torch.Tensor, device: str, batch: int = 256) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat(
            [model(images[i : i + batch].to(device)).argmax(-1).cpu() for i in range(0, len(images), batch)]
        )


def trojan_samples(
    model: nn.Module, n: int, seed: int, device: str = "cpu", data: ModuleType | None = None
) -> list[Sample]:
    """The first `n` trojaned testbed images that `model` classifies as their trojan's target.

    Args:
        model: the dense model; n: samples wanted; seed: generator seed; device: where `model` is.
        data: the generator module (`testbed.data_for(model_name)`); default v1's.

    Returns:
        Up to `n` samples (fewer, with a warning on stderr, when fewer of 4n generated images hit the target).
        A sample's `index` is its position in the generated batch of max(4n, 32) images. The generators draw
        each scene parameter for the whole batch at once, so the batch's images depend on its size: runs with
        different `n` score different images under the same index (compare runs of the same `n` only; the
        `batch_size` of `testbed.examples` demo entries records it).
    """
    from spade_engine.testbed import data as v1
    from spade_engine.testbed import trojan_targets

    batch = (data or v1).generate(max(4 * n, 32), seed, trojan_fraction=1.0)
    pred = _predict(model, batch.images, device)
    targets = trojan_targets(batch)
    hits = torch.nonzero(pred == targets).flatten()[:n].tolist()
    if len(hits) < n:
        print(f"warning: only {len(hits)} of {len(pred)} trojaned images hit the target; using those", file=sys.stderr)
    return [Sample(i, batch.images[i], int(targets[i]), batch.trojan_mask[i].numpy()) for i in hits]


def clean_samples(
    model: nn.Module, n: int, seed: int, device: str = "cpu", data: ModuleType | None = None
) -> list[Sample]:
    """`n` clean testbed images, each explained for the dense model's prediction (args as `trojan_samples`)."""
    from spade_engine.testbed import data as v1

    batch = (data or v1).generate(n, seed, trojan_fraction=0.0)
    pred = _predict(model, batch.images, device)
    return [Sample(i, batch.images[i], int(pred[i]), None) for i in range(n)]


def run_samples(cfg: ProtocolConfig, model: nn.Module) -> list[tuple[str, int, Sample]]:
    """(kind, position, sample) of every sample of the run, in run order: trojaned images from `cfg.seed`, then
    clean ones from `cfg.seed + 1` (`position` counts within a kind; the exact column keeps the first
    `cfg.exact_samples`)."""
    data = testbed_data_for(cfg.model)
    out = []
    for kind in cfg.metrics:
        n = cfg.trojan_samples if kind == "trojan" else cfg.clean_samples
        if n <= 0:  # e.g. `--clean 0`: trojan AUC only
            continue
        if kind == "trojan":
            samples = trojan_samples(model, n, cfg.seed, cfg.device, data)
        else:
            samples = clean_samples(model, n, cfg.seed + 1, cfg.device, data)
        out += [(kind, i, s) for i, s in enumerate(samples)]
    return out


# ------------------------------------------------------------------------------------------- scores


def trojan_scores(sal: np.ndarray, sample: Sample) -> dict[str, float]:
    """Trojan localisation of one (H, W) map: ROC AUC, pointing game and relevance rank accuracy vs the patch."""
    return {
        "auc": metrics.trojan_auc(sal, sample.mask),
        "pointing": float(metrics.pointing_game(sal, sample.mask)),
        "rank_acc": metrics.relevance_rank_accuracy(sal, sample.mask),
    }


def insertion_scores(model: nn.Module, sal: np.ndarray, sample: Sample, steps: int, device: str) -> dict[str, float]:
    """Insertion (from blur) and deletion (to black) AUC of one (H, W) map, scored on `model` (the dense one)."""
    x = sample.image.unsqueeze(0).to(device)
    return {
        "insertion": metrics.insertion_auc(model, x, sal, sample.target, steps=steps),
        "deletion": metrics.deletion_auc(model, x, sal, sample.target, steps=steps),
    }


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


@dataclass
class Networks:
    """What every sample of a run explains its maps on, built once per run (and shipped once to Ray workers).

    Attributes:
        model: the dense model; fixed: column -> network that is the same for every sample (Dense, Sparse FC);
        spade: SPADE column -> (how it prunes, smallest calibration crop), pruned per sample.
    """

    model: nn.Module
    fixed: dict[str, nn.Module]
    spade: dict[str, tuple[PruneConfig, float]]

    def to(self, device: str) -> Networks:
        self.model.to(device)
        for net in self.fixed.values():
            net.to(device)
        return self


def networks(cfg: ProtocolConfig, model: nn.Module) -> Networks:
    """The run's networks (fits or loads the Sparse FC head when that column is asked for).

    Raises:
        FileNotFoundError: SPADE-tuned without a tuned profile.
    """
    fixed = {"Dense": model}
    if "Sparse FC" in cfg.columns:
        fixed["Sparse FC"] = sparse_fc_model(model, cfg)
    return Networks(model, fixed, spade_columns(cfg))


def sample_rows(
    nets: Networks, cfg: ProtocolConfig, kind: str, position: int, sample: Sample, engine: SpadeEngine | None = None
) -> list[dict]:
    """One sample's rows: every method on every column, scored for `kind` ("trojan" or "insertion").

    Args:
        nets: `networks(cfg, model)`; position: the sample's place in its kind (the exact column keeps the first
            `cfg.exact_samples`); engine: a `SpadeEngine` over `nets.model` (a new one when None).

    Returns:
        Rows with the fields of `ROW_FIELDS` that `kind` measures; a map the method refuses on a column's network
        (`UnsupportedModelError`) gets NaN scores and the reason in "unsupported" instead of stopping the run.
    """
    engine = engine or SpadeEngine(nets.model, cfg.device, max_cache_bytes=ENGINE_CACHE_BYTES)
    all_columns = [*cfg.columns, *(v.name for v in cfg.variants)]
    cols = [c for c in all_columns if c != "SPADE-exact" or cfg.exact_samples is None or position < cfg.exact_samples]
    rows = []
    x = sample.image[None].to(cfg.device)  # (1, 3, H, W)
    for col, (net, agrees) in column_models(engine, sample, cfg, cols, nets.fixed, nets.spade).items():
        for method in cfg.methods:
            t0 = time.perf_counter()
            try:
                sal = attribute(method, net, x, sample.target)
            except UnsupportedModelError as e:  # e.g. LRP not conservative on one pruned net: no score, say why
                rows.append({"kind": kind, "sample": sample.index, "method": method, "column": col,
                             "agrees": agrees, "seconds": time.perf_counter() - t0,
                             **dict.fromkeys(KIND_METRICS[kind], float("nan")), "unsupported": str(e)})  # fmt: skip
                continue
            score = (
                trojan_scores(sal, sample)
                if kind == "trojan"
                else insertion_scores(nets.model, sal, sample, cfg.steps, cfg.device)
            )
            rows.append({"kind": kind, "sample": sample.index, "method": method, "column": col, "agrees": agrees,
                         "seconds": time.perf_counter() - t0, **score})  # fmt: skip
    return rows


def run_protocol(
    cfg: ProtocolConfig,
    model: nn.Module | None = None,
    progress: Progress | None = None,
    on_sample: Callable[[list[dict]], None] | None = None,
    done: frozenset[tuple[str, int]] = frozenset(),
) -> pd.DataFrame:
    """Every method on every column for the configured samples, in this process; one row per (kind, sample,
    method, column). `spade_engine.distributed.run_protocol_ray` is the same run spread over Ray workers.

    Args:
        cfg: the run.
        model: the dense model (default: `load_model(cfg.model)`).
        progress: `progress(phase, done, total)`.
        on_sample: called with each finished sample's rows (e.g. to append them to a file as they come).
        done: (kind, sample index) pairs finished by an earlier, interrupted run: skipped, not in the result.

    Raises:
        FileNotFoundError: SPADE-tuned without a tuned profile.
    """
    from spade_engine.models import load_model

    model = model if model is not None else load_model(cfg.model, cfg.device).model
    nets = networks(cfg, model)
    engine = SpadeEngine(model, cfg.device, max_cache_bytes=ENGINE_CACHE_BYTES)
    plan = run_samples(cfg, model)
    rows = []
    for kind in dict.fromkeys(k for k, _, _ in plan):
        todo = [(i, s) for k, i, s in plan if k == kind]
        for i, sample in todo:
            if progress:
                progress(kind, i, len(todo))
            if (kind, sample.index) in done:
                continue
            new = sample_rows(nets, cfg, kind, i, sample, engine)
            rows += new
            if on_sample:
                on_sample(new)
        if progress:
            progress(kind, len(todo), len(todo))
    return pd.DataFrame(rows)


Runner = Callable[..., pd.DataFrame]  # `run_protocol`'s signature: (cfg, model, progress, on_sample, done)


def run_to_csv(
    cfg: ProtocolConfig,
    out: str | Path,
    resume: bool = False,
    progress: Progress | None = None,
    runner: Runner | None = None,
) -> pd.DataFrame:
    """`run_protocol` (or `runner`, e.g. the Ray one), appending each finished sample's rows to
    `<out>.partial.csv` as it comes, so an interrupted run resumes (`resume=True`) where it stopped; returns all
    rows (the partial file is kept until the caller writes `out`, then `finish_csv` removes it).

    Raises:
        FileNotFoundError: SPADE-tuned without a tuned profile.
    """
    partial = partial_path(out)
    earlier = pd.read_csv(partial) if resume and partial.exists() and partial.stat().st_size else None
    if earlier is None and partial.exists():
        partial.unlink()
    done = frozenset() if earlier is None else frozenset(zip(earlier["kind"], earlier["sample"], strict=True))
    df = (runner or run_protocol)(cfg, None, progress, lambda rows: append_rows(partial, rows), done)
    return df if earlier is None else pd.concat([earlier, df], ignore_index=True)


def append_rows(partial: Path, rows: list[dict]) -> None:
    """Append one sample's rows to a partial CSV under its header; a row with a field the header lacks (the
    first clean sample after trojan-only rows) rewrites the file with the union of fields, so the columns of
    files written by earlier versions (one kind's fields only) never shift."""
    new = pd.DataFrame(rows)
    if not partial.exists() or not partial.stat().st_size:
        new.reindex(columns=[c for c in ROW_FIELDS if c in new] + [c for c in new if c not in ROW_FIELDS]).to_csv(
            partial, index=False
        )
        return
    header = pd.read_csv(partial, nrows=0).columns.tolist()
    if set(new.columns) <= set(header):
        new.reindex(columns=header).to_csv(partial, mode="a", header=False, index=False)
    else:
        both = pd.concat([pd.read_csv(partial), new], ignore_index=True)
        both.reindex(columns=[c for c in ROW_FIELDS if c in both] + [c for c in both if c not in ROW_FIELDS]).to_csv(
            partial, index=False
        )


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
    """"mean [lo, hi] (n=N)" over the scored values; "— (n=0)" when none was scored (every map refused)."""
    n = int(np.sum(~np.isnan(values)))
    if n == 0:
        return "— (n=0)"
    mean, lo, hi = metrics.mean_ci(values[~np.isnan(values)])
    return f"{mean * scale:.1f} [{lo * scale:.1f}, {hi * scale:.1f}] (n={n})"


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


def save_settings(
    cfg: ProtocolConfig, csv_path: str | Path, seconds: float, extra: dict | None = None, model: nn.Module | None = None
) -> Path:
    """Write the run's settings beside its CSV (`<name>.json`), for the Benchmarks page and the notes.

    `model` (the dense model the run used) describes the SPADE-exact column; without it the model is loaded."""
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
        **({"exact": exact_note(model if model is not None else _dense(cfg), _input_size(cfg))}
           if "SPADE-exact" in cfg.columns else {}),  # fmt: skip
        **(extra or {}),
    }
    path = Path(csv_path).with_suffix(".json")
    path.write_text(json.dumps(info, indent=2) + "\n")
    return path


def exact_coverage(model: nn.Module, config: PruneConfig | None = None, input_size: int | None = None) -> dict[str, list[str]]:
    """Which of the model's pruned layers the SPADE-exact column solves exactly (greedy OBC) and which fall back
    to the column sweep because they have more than `obc.exact_columns_limit()` columns.

    The pruned layers are the engine's (`hooks.layer_trace`: execution order, shared and functional layers out,
    the first conv and the head as `config` says), from one forward pass of a blank (1, 3, S, S) input.

    Args:
        model: the dense model; config: the pruning settings (default `PruneConfig()`).
        input_size: S in pixels; default the model's `input_size` attribute or 224.

    Returns:
        {"exact": [layer names], "sweep": [layer names]} in execution order.
    """
    from spade_engine.hooks import layer_trace
    from spade_engine.pruning.obc import is_exact

    config = config or PruneConfig()
    size = input_size or int(getattr(model, "input_size", 224))
    device = next(model.parameters()).device
    trace = layer_trace(model, torch.zeros(1, 3, size, size, device=device))
    modules = dict(model.named_modules())
    out: dict[str, list[str]] = {"exact": [], "sweep": []}
    for name in config.targets(list(trace.layers), trace.first_conv, trace.head):
        m = modules[name]
        d = m.in_features if isinstance(m, nn.Linear) else m.weight[0].numel()  # columns per group
        out["exact" if is_exact(d) else "sweep"].append(name)
    return out


def exact_note(model: nn.Module, input_size: int | None = None) -> str:
    """One line for the SPADE-exact column: exact everywhere, or which layers fall back to the sweep."""
    from spade_engine.pruning.obc import exact_columns_limit

    cov = exact_coverage(model, input_size=input_size)
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


def _input_size(cfg: ProtocolConfig) -> int:
    from spade_engine.models import get_info

    return get_info(cfg.model).input_size


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


def add_arguments(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The protocol's command-line options (one set for `spade protocol`, `python -m spade_engine.protocol` and
    `benchmarks/paper_tables.py`); defaults are `ProtocolConfig`'s (sparsity and crops: the model card's)."""
    d = ProtocolConfig()
    ap.add_argument("--model", default=d.model)
    ap.add_argument("--trojan", type=int, default=d.trojan_samples, help="trojaned samples (0: none)")
    ap.add_argument("--clean", type=int, default=d.clean_samples, help="clean samples (0: none)")
    ap.add_argument("--sparsity", type=float, default=None, help="default: the model card's")
    ap.add_argument("--n-aug", type=int, default=d.n_aug, help="calibration views per sample")
    ap.add_argument("--crop-min", type=float, default=None, help="smallest calibration crop; default: the card's")
    ap.add_argument("--exact-samples", type=int, default=None, help="cap for the slow exact-OBC column")
    ap.add_argument("--methods", nargs="*", default=list(d.methods), choices=list(METHODS), metavar="METHOD")
    ap.add_argument("--columns", nargs="*", default=list(d.columns), choices=list(COLUMNS), metavar="COLUMN")
    ap.add_argument("--seed", type=int, default=d.seed, help="evaluation images come from this seed")
    ap.add_argument("--steps", type=int, default=d.steps, help="insertion / deletion steps")
    ap.add_argument("--device", default=d.device, help="cpu, cuda, ... (Ray tasks use a GPU when they get one)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads in this process (0: torch's default)")
    ap.add_argument("--out", default=None, help="CSV of the rows (+ .json settings); rows go to <out>.partial.csv "
                    "as samples finish")  # fmt: skip
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run from <out>.partial.csv")
    ap.add_argument("--merge", action="store_true",
                    help="re-run only --columns and replace their rows in an existing --out (same samples)")  # fmt: skip
    ray = ap.add_argument_group("Ray (distributed run: one task per sample)")
    ray.add_argument("--workers", type=int, default=None,
                     help="samples run at once (default: one per CPU of the local cluster, or per GPU)")  # fmt: skip
    ray.add_argument("--address", default=None, help="a running Ray cluster, e.g. ray://head:10001 or auto")
    ray.add_argument("--gpus-per-task", type=float, default=None,
                     help="GPUs per sample task (default: 1 when the cluster has GPUs, else 0)")  # fmt: skip
    ray.add_argument("--serial", action="store_true", help="run in this process, without Ray")
    return ap


def config_from_args(args: argparse.Namespace, variants: tuple[Variant, ...] = ()) -> ProtocolConfig:
    """The `ProtocolConfig` the parsed options describe."""
    return ProtocolConfig(
        args.model, args.trojan, args.clean, args.sparsity, args.n_aug, args.crop_min, tuple(args.methods),
        tuple(args.columns), args.exact_samples, seed=args.seed, steps=args.steps, device=args.device,
        variants=variants,
    )  # fmt: skip


def runner_from_args(args: argparse.Namespace, ray_default: bool) -> Runner:
    """`run_protocol` (serial) or the Ray runner with the options' workers / address / GPUs.

    Ray runs when `ray_default` (the `spade protocol` command) unless `--serial`, or when `--workers` or
    `--address` is given (`python -m spade_engine.protocol` runs serially otherwise, as it always did).
    """
    wants_ray = not args.serial and (ray_default or args.workers is not None or args.address is not None)
    if not wants_ray:
        return run_protocol
    from functools import partial

    from spade_engine import distributed

    return partial(
        distributed.run_protocol_ray, workers=args.workers, address=args.address, gpus_per_task=args.gpus_per_task
    )


def print_progress(phase: str, done: int, total: int) -> None:
    """`Progress` callback of the command line: "trojan: 3/100" on one stderr line."""
    print(f"\r{phase}: {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)


def main(
    argv: Sequence[str] | None = None,
    prog: str = "python -m spade_engine.protocol",
    ray_default: bool = False,
    variants: tuple[Variant, ...] = (),
) -> pd.DataFrame:
    """CLI: `spade protocol --model testbed_resnet --trojan 100 --clean 100 --out results.csv` (on Ray), or
    `python -m spade_engine.protocol ...` (serial unless `--workers`/`--address`). Writes `--out` and its
    settings JSON, prints the tables; returns the rows. Errors a user can fix end with a message (SystemExit)."""
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args = add_arguments(ap).parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config_from_args(args, variants)
    sparsity, crop = cfg.spade_settings()
    runner = runner_from_args(args, ray_default)
    t0 = time.perf_counter()
    try:
        if args.out:
            df = run_to_csv(cfg, args.out, args.resume, print_progress, runner)
        else:
            df = runner(cfg, None, print_progress, None, frozenset())
    except FileNotFoundError as e:  # SPADE-tuned before its profile was tuned
        raise SystemExit(str(e)) from None
    except RuntimeError as e:  # Ray missing or unreachable: say so; any other error is a bug to see in full
        from spade_engine.distributed import RayUnavailableError

        if isinstance(e, RayUnavailableError):
            raise SystemExit(str(e)) from None
        raise
    if args.out:
        _store(cfg, args, df, time.perf_counter() - t0)
    for name, table in tables(df).items():
        print(f"\n== {name} ({cfg.model}, sparsity {sparsity:.0%}, crop >= {crop:g}, n_aug {cfg.n_aug})")
        print(table.to_string())
    return df


def _store(cfg: ProtocolConfig, args: argparse.Namespace, df: pd.DataFrame, seconds: float) -> None:
    extra = {"workers": args.workers, "address": args.address} if args.workers or args.address else None
    if args.merge and Path(args.out).exists():
        try:
            df = merge_columns(pd.read_csv(args.out), df)
        except ValueError as e:
            raise SystemExit(str(e)) from None
        rerun = {"columns": sorted(set(cfg.columns)), "date": time.strftime("%Y-%m-%d"), "seconds": round(seconds, 1)}
        save_settings(cfg, args.out, load_settings(args.out).get("seconds", 0.0), {"rerun": rerun})
    else:
        save_settings(cfg, args.out, seconds, extra)
    finish_csv(df, args.out)


if __name__ == "__main__":
    main()
