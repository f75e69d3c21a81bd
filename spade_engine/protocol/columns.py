"""The networks a protocol run explains its maps on, one per column: Dense and Sparse FC (the same for every
sample), and the SPADE columns (pruned per sample): how each prunes, and where the exact column is exact."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from spade_engine.engine import PruneConfig, SpadeEngine
from spade_engine.models import spade_augment
from spade_engine.protocol.config import ProtocolConfig
from spade_engine.protocol.samples import Sample
from spade_engine.testbed import data_for as testbed_data_for


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
    from spade_engine.models import spade_bn_correction, spade_calibration

    sparsity, crop = cfg.spade_settings()
    calibration = spade_calibration(cfg.model)  # the card's BatchNorm correction and calibration apply to both
    card = dict(bn_correction=spade_bn_correction(cfg.model), sequential=calibration == "sequential",
                asymmetric=calibration == "asymmetric")  # fmt: skip
    out = {}
    for col in cfg.columns:
        if col == "SPADE-exact":
            out[col] = (PruneConfig(sparsity, solver="obc", **card), crop)
        elif col == "SPADE-sweep":
            out[col] = (PruneConfig(sparsity, **card), crop)
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
        layer, glm_path = sl.fit_sparse_layer(
            feats.subset(tr), feats.subset(va), max_features_per_class=cfg.sparse_fc_features
        )
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
            trace = engine.prepare(sample.image, n_aug=cfg.views, seed=cfg.seed + sample.index, augment_config=aug)
            pruned, result = engine.prune(trace, prune_cfg)
            out[col] = (pruned, int(result.pruned_logits.argmax()) == sample.target)
    return out


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


def exact_coverage(
    model: nn.Module, config: PruneConfig | None = None, input_size: int | None = None
) -> dict[str, list[str]]:
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
