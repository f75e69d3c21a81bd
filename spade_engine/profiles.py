"""Sparsity profiles: named per-block sparsity settings stored as JSON, and a small search that tunes one.

A profile is a `PruneConfig` with a name: uniform, per block (later blocks pruned harder, like the SPADE paper's
tuned ResNet-50 profile), late layers only (the paper's feature-visualisation setting) or tuned: per-block
sparsities chosen on calibration images to maximise insertion AUC (the paper's FastSPADE*).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spade_engine.augment import AugmentConfig
from spade_engine.engine import PruneConfig, SpadeEngine

PROFILE_DIR = Path(__file__).resolve().parent.parent / "assets" / "profiles"


@dataclass(frozen=True)
class SparsityProfile:
    """A named `PruneConfig`, as stored in `assets/profiles/<name>.json`."""

    name: str
    description: str
    config: PruneConfig
    model: str = ""  # the model it was made for ("" = any)
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> str:
        cfg = asdict(self.config)
        cfg["layer_sparsity"] = [list(p) for p in self.config.layer_sparsity]
        cfg["skip"] = list(self.config.skip)
        return json.dumps(
            {"name": self.name, "description": self.description, "model": self.model, "config": cfg, "meta": self.meta},
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> SparsityProfile:
        d = json.loads(text)
        cfg = dict(d["config"])
        cfg["layer_sparsity"] = tuple((str(p), float(s)) for p, s in cfg.get("layer_sparsity", ()))
        cfg["skip"] = tuple(cfg.get("skip", ()))
        return cls(d["name"], d.get("description", ""), PruneConfig(**cfg), d.get("model", ""), d.get("meta", {}))

    def save(self, directory: Path | None = None) -> Path:
        directory = directory or PROFILE_DIR
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.name}.json"
        path.write_text(self.to_json() + "\n")
        return path


def load_profile(path: str | Path) -> SparsityProfile:
    """Read one profile JSON file."""
    return SparsityProfile.from_json(Path(path).read_text())


_READ: dict[Path, tuple[tuple, list[SparsityProfile]]] = {}  # directory -> (files' stamp, profiles)
_READ_LOCK = threading.Lock()


def list_profiles(model: str | None = None, directory: Path | None = None) -> list[SparsityProfile]:
    """Profiles in `directory` (default `PROFILE_DIR`) usable for `model` (its own and generic ones), by name.

    The files are read once and again only when one is added, removed or changed (name, size, mtime), so the
    Debugger's widgets and `SpadeSettings.prune_config` share one read.
    """
    directory = Path(directory or PROFILE_DIR)
    files = sorted(directory.glob("*.json"))
    stamp = tuple((f.name, s.st_size, s.st_mtime_ns) for f in files for s in [f.stat()])
    with _READ_LOCK:
        cached = _READ.get(directory)
        if cached is None or cached[0] != stamp:
            cached = _READ[directory] = (stamp, [load_profile(f) for f in files])
    return [p for p in cached[1] if model is None or p.model in ("", model)]


# -------------------------------------------------------------------------------------------- blocks


def layer_blocks(layers: Sequence[str], n_blocks: int = 4) -> dict[str, list[str]]:
    """Group prunable layers (execution order) into blocks for per-block sparsities.

    Layers are grouped by the module they sit in one level below the network (e.g. `net.layer3`), the head on
    its own; a group holding more than a third of all layers (a VGG's `features`) is cut into contiguous
    chunks so that there are about `n_blocks` blocks.
    """
    groups: dict[str, list[str]] = {}
    for name in layers:
        parts = name.split(".")
        key = ".".join(parts[:2]) if len(parts) > 2 else name
        groups.setdefault(key, []).append(name)
    out: dict[str, list[str]] = {}
    for key, names in groups.items():
        if len(names) > max(2, len(layers) // 3):
            size = int(np.ceil(len(names) / n_blocks))
            for i in range(0, len(names), size):
                out[f"{key}[{i // size}]"] = names[i : i + size]
        else:
            out[key] = names
    return out


def block_config(blocks: dict[str, list[str]], sparsities: dict[str, float], base: PruneConfig) -> PruneConfig:
    """A `PruneConfig` giving each block's layers their block's sparsity (exact layer names as patterns)."""
    pairs = tuple((name, float(sparsities[b])) for b, names in blocks.items() for name in names)
    return PruneConfig(**{**asdict(base), "layer_sparsity": pairs, "skip": tuple(base.skip)})


# -------------------------------------------------------------------------------------------- tuning

Objective = Callable[[nn.Module, torch.Tensor, int], float]


@dataclass(frozen=True)
class TuneResult:
    """What the search found: the profile, its calibration score and the search history."""

    profile: SparsityProfile
    score: float
    uniform_score: float
    history: list[tuple[str, float, float, float]]  # (block, sparsity tried, mean objective, agreement)
    agreement: float = 1.0  # share of calibration samples on which the tuned pruned model keeps the target


def score_config(
    engine: SpadeEngine,
    traces: Sequence,
    samples: Sequence[tuple[torch.Tensor, int]],
    config: PruneConfig,
    objective: Objective,
) -> tuple[np.ndarray, float]:
    """Prune each sample's trace with `config`: (per-sample objective, share of samples whose decision is kept).

    Args:
        traces: `engine.prepare` traces of `samples`, in the same order.
        samples: (image (3, H, W), target class) pairs.
    """
    scores, keeps = [], []
    for t, (x, y) in zip(traces, samples, strict=True):
        pruned, result = engine.prune(t, config)
        scores.append(objective(pruned, x, y))
        keeps.append(int(result.pruned_logits.argmax()) == y)
    return np.asarray(scores, dtype=np.float64), float(np.mean(keeps))


def tune_profile(
    engine: SpadeEngine,
    samples: Sequence[tuple[torch.Tensor, int]],
    objective: Objective,
    candidates: Sequence[float] = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99),
    start: float = 0.9,
    base: PruneConfig | None = None,
    n_aug: int = 32,
    seed: int = 0,
    augment_config: AugmentConfig | None = None,
    min_agreement: float | None = None,
    min_z: float = 1.0,
    rounds: int = 1,
    name: str = "tuned",
    model_name: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> TuneResult:
    """Coordinate search over per-block sparsities maximising the mean `objective` on calibration samples.

    Each sample's trace (views + Hessians) is prepared once and reused for every configuration tried, so each
    candidate costs only the warm re-prunes and the objective.

    Args:
        engine: the engine over the dense model.
        samples: calibration (image (3, H, W), target class) pairs.
        objective: `objective(pruned_model, image (3, H, W), target) -> float`, higher is better
            (e.g. insertion AUC of a saliency map computed on the pruned model, scored on the dense one).
        candidates: sparsities tried per block.
        start: uniform sparsity the search starts from.
        augment_config: the calibration views' augmentations (default: the engine's).
        min_agreement: a configuration is accepted only if the pruned model still predicts the target on at
            least this share of the calibration samples (default: the uniform start's share). Without it the
            search can "improve" the objective with a network that no longer makes the sample's decision (a
            map of a broken network can still score well), which is not what SPADE explains.
        min_z: a configuration replaces the current one only if its mean paired gain over the calibration
            samples exceeds `min_z` standard errors of that gain (0: any gain, the plain greedy search). With few
            samples and a near-ceiling objective, most "gains" are noise that does not hold on held-out images.
        rounds: passes over the blocks.
    """
    base = base or PruneConfig(sparsity=start)
    traces = [engine.prepare(x, n_aug, seed + i, augment_config) for i, (x, _) in enumerate(samples)]
    blocks = layer_blocks(list(base.targets(list(traces[0].layers), traces[0].first_conv, traces[0].head)))
    current = {b: start for b in blocks}
    history: list[tuple[str, float, float, float]] = []
    total = rounds * len(blocks) * len(candidates)

    def evaluate(sparsities: dict[str, float]) -> tuple[np.ndarray, float]:
        return score_config(engine, traces, samples, block_config(blocks, sparsities, base), objective)

    def resolved_gain(new: np.ndarray, old: np.ndarray) -> bool:
        gain = new - old
        se = gain.std(ddof=1) / np.sqrt(gain.size) if gain.size > 1 else 0.0
        return gain.mean() > 0 and gain.mean() > min_z * se

    best_scores, agreement = uniform_scores, uniform_agreement = evaluate(current)
    floor = uniform_agreement if min_agreement is None else min_agreement
    done = 0
    for _ in range(rounds):
        for block in blocks:
            for s in candidates:
                done += 1
                if progress:
                    progress(done, total)
                if s == current[block]:
                    continue
                scores, keeps = evaluate({**current, block: s})
                history.append((block, s, float(scores.mean()), keeps))
                if keeps >= floor and resolved_gain(scores, best_scores):
                    best_scores, agreement, current = scores, keeps, {**current, block: s}
    best, uniform = float(best_scores.mean()), float(uniform_scores.mean())
    profile = SparsityProfile(
        name,
        "Per-block sparsities tuned on calibration images to maximise insertion AUC (FastSPADE*).",
        block_config(blocks, current, base),
        model_name,
        {
            "blocks": current,
            "start": start,
            "calibration_score": best,
            "uniform_score": uniform,
            "calibration_agreement": agreement,
            "uniform_agreement": uniform_agreement,
            "min_z": min_z,
            "n_calibration": len(samples),
            "crop_min": (augment_config or AugmentConfig()).scale[0],
        },  # fmt: skip
    )
    return TuneResult(profile, best, uniform, history, agreement)


def standard_profiles(engine: SpadeEngine, x: torch.Tensor, model_name: str) -> list[SparsityProfile]:
    """The three fixed profiles for a model: uniform 90%, per-block ramp, late layers only.

    Args:
        engine: engine over the model (used to find its prunable layers, in execution order).
        x: any (3, H, W) input of the model's size.
    """
    trace = engine.prepare(x, n_aug=2, seed=0)
    layers = list(PruneConfig().targets(list(trace.layers), trace.first_conv, trace.head))
    blocks = layer_blocks(layers)
    names = list(blocks)
    body = [b for b in names if blocks[b] != [trace.head]]
    ramp = {b: float(np.round(np.interp(i, [0, max(len(body) - 1, 1)], [0.5, 0.95]), 2)) for i, b in enumerate(body)}
    ramp.update({b: 0.9 for b in names if b not in ramp})
    late = {b: (0.95 if i >= len(body) // 2 else 0.0) for i, b in enumerate(body)}
    late.update({b: 0.95 for b in names if b not in late})
    return [
        SparsityProfile(
            "uniform-90",
            "Every layer but the first conv at 90% (FastSPADE's uniform setting).",
            PruneConfig(sparsity=0.9),
        ),
        SparsityProfile(
            f"{model_name}-per-block",
            "Later blocks pruned harder: " + _describe(ramp) + ".",
            block_config(blocks, ramp, PruneConfig()),
            model_name,
            {"blocks": ramp},
        ),
        SparsityProfile(
            f"{model_name}-late-only",
            "Only the last blocks and the head, at 95% (the paper's "
            "feature-visualisation setting): " + _describe(late) + ".",
            block_config(blocks, late, PruneConfig()),
            model_name,
            {"blocks": late},
        ),
    ]


def _describe(blocks: dict[str, float]) -> str:
    return ", ".join(f"{b} {s:.0%}" for b, s in blocks.items())
