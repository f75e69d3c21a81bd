"""Saliency benchmarks, dense vs SPADE (arXiv 2310.04519, Sec. 5): the trojan AUC and insertion/deletion.

    python -m spade_engine.bench trojan --model testbed_resnet --samples 30 --n-aug 64 --out t.csv
    python -m spade_engine.bench insertion --model testbed_resnet --samples 30 --out i.csv

`trojan`: trojaned testbed images (`generate(..., trojan_fraction=1.0)`) that the dense model classifies as the
trojan target. Per sample, SPADE prunes a copy of the model once per sparsity (`SpadeEngine`: the Hessians are
computed once per sample) for the dense prediction; every method's map is computed on the dense model and on
each pruned model for that class, and scored against the patch mask (trojan AUC, pointing game, rank accuracy).

`insertion`: clean testbed images; every map (dense or SPADE) is scored by insertion/deletion AUC **on the
dense model**: the question is which map explains the original model's decision better.

Sparsity and calibration crops default to the model card's (`models.spade_defaults`, as the Debugger and the
protocol). They matter for the trojan benchmark: on the v1 testbed the trigger is an 8 px bit pattern, and the
reference's RandomResizedCrop (area 0.2-1) rescales or cuts it, so most views no longer fire the trojan
(measured: 3-36 % of views keep the trojan prediction). SPADE then reconstructs the clean-image computation,
prunes the trojan path and the pruned model changes its prediction (see the `agrees` column); the testbed cards
therefore say crops >= 1.0 and 80% sparsity. `--crop-scale 0.2 1` / `--sparsity 0.9` override them.

Both write one CSV row per sample x method x model (model "dense" or "spade" with its sparsity), print a
summary table, and offer plotly figures for the app (`trojan_figure`, `insertion_figure`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from spade_engine import metrics
from spade_engine.saliency import METHODS, attribute

DEFAULT_METHODS: tuple[str, ...] = tuple(METHODS)
ENGINE_CACHE_BYTES = 256 * 2**20  # each sample is visited once: keep little


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run."""

    model: str = "testbed_resnet"
    samples: int = 30
    sparsities: tuple[float, ...] | None = None  # None: the model card's (`models.spade_defaults`)
    n_aug: int = 64
    methods: tuple[str, ...] = DEFAULT_METHODS
    seed: int = 0
    device: str = "cpu"
    steps: int = 32  # insertion / deletion steps
    only_layers: tuple[str, ...] = ()  # fnmatch patterns of the layers to prune (others stay dense); () = all
    skip_head: bool = False
    sequential: bool = False  # SparseGPT's sequential mode
    solver: str = "sparsegpt"
    crop_scale: tuple[float, float] | None = None  # RandomResizedCrop area range of the views; None = model card's

    def __post_init__(self) -> None:
        if self.sparsities is None:  # one source of truth with the Debugger and the protocol: the model card
            from spade_engine.models import spade_defaults

            object.__setattr__(self, "sparsities", (spade_defaults(self.model)["sparsity"],))

    def augment_config(self):
        """The engine's `AugmentConfig` for the calibration views (the model card's crops unless `crop_scale`)."""
        from spade_engine.augment import AugmentConfig
        from spade_engine.models import spade_augment

        return spade_augment(self.model) if self.crop_scale is None else AugmentConfig(scale=tuple(self.crop_scale))

    def prune_config(self, sparsity: float):
        """The engine's `PruneConfig` for one sparsity of this run."""
        from spade_engine.engine import PruneConfig

        per_layer = tuple((p, sparsity) for p in self.only_layers) + ((("*", 0.0),) if self.only_layers else ())
        return PruneConfig(
            sparsity=sparsity,
            layer_sparsity=per_layer,
            skip_head=self.skip_head,
            sequential=self.sequential,
            solver=self.solver,
        )

    @property
    def prune_label(self) -> str:
        """Short description of the pruning setup, written to the CSV."""
        layers = ",".join(self.only_layers) or "all"
        extra = "".join(
            f" {flag}" for flag, on in (("skip_head", self.skip_head), ("sequential", self.sequential)) if on
        )
        crop = "" if self.crop_scale is None else f" crop={self.crop_scale[0]}-{self.crop_scale[1]}"
        return f"{self.solver} n_aug={self.n_aug} layers={layers}{extra}{crop}"


@dataclass(frozen=True)
class Sample:
    """One benchmark image with its ground truth and the dense model's prediction."""

    index: int
    image: torch.Tensor  # (3, H, W) in [0, 1]
    target: int  # the dense prediction: the class every map explains
    mask: np.ndarray | None  # (H, W) bool trojan patch, None for clean images


# ------------------------------------------------------------------------------------------- samples


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
        model: the dense model; n: samples wanted; seed: generator seed.
        data: the generator module (`testbed.data_for(model_name)`); default v1's.
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
    """`n` clean testbed images, each explained for the dense model's prediction (`data`: as `trojan_samples`)."""
    from spade_engine.testbed import data as v1

    batch = (data or v1).generate(n, seed, trojan_fraction=0.0)
    pred = _predict(model, batch.images, device)
    return [Sample(i, batch.images[i], int(pred[i]), None) for i in range(n)]


# --------------------------------------------------------------------------------------------- runs


def pruned_models(engine, sample: Sample, cfg: BenchConfig) -> dict[float, tuple[nn.Module, bool]]:
    """sparsity -> (SPADE-pruned copy for `sample`, whether it still predicts the dense class); one Hessian pass.

    Args:
        engine: a `SpadeEngine` over the dense model.
    """
    trace = engine.prepare(
        sample.image, n_aug=cfg.n_aug, seed=cfg.seed + sample.index, augment_config=cfg.augment_config()
    )
    out = {}
    for s in cfg.sparsities:
        pruned, result = engine.prune(trace, cfg.prune_config(s))
        out[s] = (pruned.eval(), int(result.pruned_logits.argmax()) == sample.target)
    return out


def _models(model: nn.Module, engine, sample: Sample, cfg: BenchConfig) -> list[tuple[str, float, nn.Module, bool]]:
    spade = pruned_models(engine, sample, cfg)
    return [("dense", float("nan"), model, True)] + [("spade", s, m, agrees) for s, (m, agrees) in spade.items()]


ScoreFn = Callable[[np.ndarray, Sample], dict[str, float]]


def _run(model: nn.Module, samples: Sequence[Sample], cfg: BenchConfig, score: ScoreFn, label: str) -> pd.DataFrame:
    from spade_engine.engine import SpadeEngine

    engine = SpadeEngine(model, cfg.device, max_cache_bytes=ENGINE_CACHE_BYTES)
    rows = []
    for sample in tqdm(samples, desc=label, unit="sample", file=sys.stderr):
        x = sample.image.unsqueeze(0).to(cfg.device)  # (1, 3, H, W)
        for kind, sparsity, net, agrees in _models(model, engine, sample, cfg):
            for method in cfg.methods:
                start = time.perf_counter()
                sal = attribute(method, net, x, sample.target)
                row = {
                    "sample": sample.index,
                    "method": method,
                    "model": kind,
                    "sparsity": sparsity,
                    "target": sample.target,
                    "agrees": agrees,
                    "seconds": time.perf_counter() - start,
                    "prune": cfg.prune_label if kind == "spade" else "",
                }
                rows.append(row | score(sal, sample))
    return pd.DataFrame(rows)


def trojan_scores(sal: np.ndarray, sample: Sample) -> dict[str, float]:
    """Trojan localisation of one map: ROC AUC, pointing game and relevance rank accuracy against the patch."""
    return {
        "auc": metrics.trojan_auc(sal, sample.mask),
        "pointing": float(metrics.pointing_game(sal, sample.mask)),
        "rank_acc": metrics.relevance_rank_accuracy(sal, sample.mask),
    }


def insertion_scores(model: nn.Module, sal: np.ndarray, sample: Sample, steps: int, device: str) -> dict[str, float]:
    """Insertion (from blur) and deletion (to black) AUC of one map, scored on `model` (the dense one)."""
    x = sample.image.unsqueeze(0).to(device)
    return {
        "insertion": metrics.insertion_auc(model, x, sal, sample.target, steps=steps),
        "deletion": metrics.deletion_auc(model, x, sal, sample.target, steps=steps),
    }


def run_trojan(
    cfg: BenchConfig, model: nn.Module | None = None, samples: Sequence[Sample] | None = None
) -> pd.DataFrame:
    """Trojan AUC / pointing game / rank accuracy of every method, dense vs SPADE (one row per map).

    Args:
        cfg: the run; `cfg.model` is loaded unless `model` is given.
        samples: default `trojan_samples(model, cfg.samples, cfg.seed)`.
    """
    model = model if model is not None else _load(cfg)
    samples = samples if samples is not None else trojan_samples(model, cfg.samples, cfg.seed, cfg.device)
    return _run(model, samples, cfg, trojan_scores, "trojan")


def run_insertion(
    cfg: BenchConfig, model: nn.Module | None = None, samples: Sequence[Sample] | None = None
) -> pd.DataFrame:
    """Insertion (blur) and deletion (black) AUC of every map, all scored on the dense model (args as `run_trojan`)."""
    model = model if model is not None else _load(cfg)
    samples = samples if samples is not None else clean_samples(model, cfg.samples, cfg.seed, cfg.device)

    def score(sal: np.ndarray, sample: Sample) -> dict[str, float]:
        return insertion_scores(model, sal, sample, cfg.steps, cfg.device)

    return _run(model, samples, cfg, score, "insertion")


def _load(cfg: BenchConfig) -> nn.Module:
    from spade_engine.models import load_model

    return load_model(cfg.model, cfg.device).model


# ------------------------------------------------------------------------------------------ summary


def _rows(df_or_rows: pd.DataFrame | Iterable[dict]) -> pd.DataFrame:
    return df_or_rows if isinstance(df_or_rows, pd.DataFrame) else pd.DataFrame(list(df_or_rows))


def summarize(df_or_rows: pd.DataFrame | Iterable[dict], metric: str = "auc") -> pd.DataFrame:
    """Per method and sparsity: dense and SPADE mean with 95% t-intervals, the paired delta, agreement.

    Returns:
        Columns method, sparsity, n, dense, dense_lo, dense_hi, spade, spade_lo, spade_hi, delta, delta_lo,
        delta_hi, agreement (fraction of samples whose pruned model keeps the dense prediction).
    """
    df = _rows(df_or_rows)
    dense = df[df.model == "dense"].set_index(["sample", "method"])[metric]
    out = []
    for (method, sparsity), g in df[df.model == "spade"].groupby(["method", "sparsity"], sort=False):
        paired = g.set_index(["sample", "method"])[metric]
        base = dense.loc[paired.index]
        row = {"method": method, "sparsity": sparsity, "n": len(paired)}
        for name, values in (("dense", base), ("spade", paired), ("delta", paired.values - base.values)):
            row[name], row[f"{name}_lo"], row[f"{name}_hi"] = metrics.mean_ci(np.asarray(values))
        row["agreement"] = float(g.agrees.mean())
        out.append(row)
    return pd.DataFrame(out)


def _fmt(mean: float, lo: float, hi: float, scale: float) -> str:
    return f"{mean * scale:6.1f} [{lo * scale:5.1f}, {hi * scale:5.1f}]"


def format_table(summary: pd.DataFrame, metric: str = "auc", scale: float = 100.0) -> str:
    """Fixed-width text table: method, sparsity, dense mean [CI], SPADE mean [CI], delta [CI], agreement (%)."""
    lines = [f"{'method':<20} {'sparsity':>8}  {'dense ' + metric:<22} {'SPADE ' + metric:<22} {'delta':<22} agree"]
    for r in summary.itertuples():
        lines.append(
            f"{r.method:<20} {r.sparsity:>8.2f}  {_fmt(r.dense, r.dense_lo, r.dense_hi, scale):<22} "
            f"{_fmt(r.spade, r.spade_lo, r.spade_hi, scale):<22} {_fmt(r.delta, r.delta_lo, r.delta_hi, scale):<22} "
            f"{100 * r.agreement:5.1f}"
        )
    return "\n".join(lines)


def _bars(summary: pd.DataFrame, title: str, y_title: str, scale: float):
    import plotly.graph_objects as go

    fig = go.Figure()
    first = summary[summary.sparsity == summary.sparsity.iloc[0]]
    fig.add_bar(
        name="dense",
        x=first.method,
        y=first.dense * scale,
        error_y=metrics.error_bars(first.dense * scale, first.dense_lo * scale, first.dense_hi * scale),
    )
    for sparsity, g in summary.groupby("sparsity", sort=False):
        fig.add_bar(
            name=f"SPADE {sparsity:.0%}",
            x=g.method,
            y=g.spade * scale,
            error_y=metrics.error_bars(g.spade * scale, g.spade_lo * scale, g.spade_hi * scale),
        )
    fig.update_layout(
        barmode="group", title=title, yaxis_title=y_title, xaxis_title="saliency method", legend_title="model"
    )
    return fig


def trojan_figure(df_or_rows: pd.DataFrame | Iterable[dict]):
    """Grouped bars of mean trojan AUC (%) per method, dense vs SPADE per sparsity, with 95% CIs."""
    summary = summarize(df_or_rows, "auc")
    fig = _bars(summary, "Trojan AUC: does the map find the patch?", "trojan AUC (%)", 100.0)
    fig.update_yaxes(range=[max(0.0, 100 * float(summary[["dense_lo", "spade_lo"]].min().min()) - 5), 100])
    return fig


def insertion_figure(df_or_rows: pd.DataFrame | Iterable[dict], metric: str = "insertion"):
    """Grouped bars of mean insertion (higher is better) or deletion (lower is better) AUC (%)."""
    better = "higher" if metric == "insertion" else "lower"
    return _bars(
        summarize(df_or_rows, metric), f"{metric.title()} AUC ({better} is better)", f"{metric} AUC (%)", 100.0
    )


# ---------------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m spade_engine.bench", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("trojan", "insertion"):
        s = sub.add_parser(name)
        s.add_argument("--model", default="testbed_resnet")
        s.add_argument("--samples", type=int, default=30)
        s.add_argument("--sparsity", type=float, nargs="+", default=None,
                       help="one or more per-layer sparsities (default: the model card's)")  # fmt: skip
        s.add_argument("--n-aug", type=int, default=64)
        s.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=list(METHODS))
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--device", default="cpu")
        s.add_argument("--steps", type=int, default=32, help="insertion/deletion steps")
        s.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
        s.add_argument(
            "--only-layers", nargs="+", default=[], help="fnmatch patterns of layers to prune, e.g. 'net.layer4*'"
        )
        s.add_argument("--skip-head", action="store_true", help="leave the classifier head dense")
        s.add_argument("--sequential", action="store_true", help="SparseGPT sequential mode")
        s.add_argument("--solver", default="sparsegpt")
        s.add_argument("--crop-scale", type=float, nargs=2, default=None,
                       help="view crop area range, e.g. 0.6 1.0 (default: the model card's)")  # fmt: skip
        s.add_argument("--out", default=f"{name}_results.csv")
    return p


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    return BenchConfig(
        args.model,
        args.samples,
        tuple(args.sparsity) if args.sparsity else None,
        args.n_aug,
        tuple(args.methods),
        args.seed,
        args.device,
        args.steps,
        tuple(args.only_layers),
        args.skip_head,
        args.sequential,
        args.solver,
        tuple(args.crop_scale) if args.crop_scale else None,
    )


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    """Run a benchmark from the command line, write the CSV and print the summary table(s)."""
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config_from_args(args)
    df = run_trojan(cfg) if args.command == "trojan" else run_insertion(cfg)
    df.to_csv(args.out, index=False)
    print(f"{len(df)} rows -> {args.out}  ({cfg.model}, {df['sample'].nunique()} samples, {cfg.prune_label})")
    for metric in ("auc",) if args.command == "trojan" else ("insertion", "deletion"):
        print(f"\n{metric} (%), mean [95% t-interval], delta = SPADE - dense (paired)")
        print(format_table(summarize(df, metric), metric))
    return df


if __name__ == "__main__":
    main()
