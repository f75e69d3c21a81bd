"""Train a testbed model on CPU and ship it: `assets/models/<name>.pt` (weights-only state_dict) + `<name>.json`.

    .venv/bin/python scripts/train_testbed.py --testbed v1                     # testbed_resnet (v1 defaults)
    .venv/bin/python scripts/train_testbed.py --testbed v1 --arch tb_vgg --name testbed_vgg --epochs 10 --no-bf16
    .venv/bin/python scripts/train_testbed.py --testbed v2                     # testbed_v2_resnet (v2 defaults)
    .venv/bin/python scripts/train_testbed.py --testbed v2 --name testbed_v2_resnet224 --init-from testbed_v2_resnet \
        --image-size 224 --n-train 24000 --epochs 6 --lr 0.02

One command does everything for either testbed (`--testbed v1|v2`: the generator `spade_engine.testbed.data` or
`spade_engine.testbed.v2.data`, and the defaults in `DEFAULTS`) and can be re-run after an interruption: it
resumes from the checkpoint written after every epoch (`--ckpt-dir`, default `cache/testbed_<testbed>/`;
weights, optimizer, scheduler, epoch, config and the training data seed and fingerprint), and a run whose
checkpoint is complete only re-evaluates and re-writes the card. v2 on the project's 2-core CPU, one thread:
3.4-4.6 ms per training view, so the default 24 epochs of 36000 views take 50-66 min, plus about 4 min to
generate the pool once and 3-6 min of final evaluation.

Data: a pool of `n_train` generated images (`generate(n_train, seed, trojan_fraction)`, kept as uint8 and cached
on disk next to the checkpoint). v1 trains on the images themselves; v2 sees them every epoch through fresh
random resized crops (area `crop_min`-1, flips, colour jitter; `testbed.v2.views.training_views`), so the net
keeps its decisions on SPADE's calibration views. Optimiser: SGD with Nesterov momentum and a one-cycle
learning rate (`warmup` the share of rising steps), bfloat16 autocast, one thread (on a shared 2-core CPU one
thread is faster than two).

Evaluation on fresh seeds (`seed + 1000` clean, `seed + 1001` trojaned): clean accuracy (per class and facet),
attack success per trojan (trojaned images of other classes predicted as the trojan's target) and, for v2, the
share of reference-style calibration views (`spade_engine.augment.augment`, crop area `crop_min`-1) of trojaned
samples that keep the trojan decision; optionally (`--spade-samples`) the highest SPADE sparsity at which
pruned copies still predict the trojan target, which the card recommends.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from spade_engine.classifier import Classifier
from spade_engine.testbed import GENERATORS, generator
from spade_engine.testbed.archs import ARCHS, ARCHS_V2
from spade_engine.testbed.interface import Testbed, TestbedBatch
from spade_engine.testbed.v2.sprites import EMOJI
from spade_engine.testbed.v2.views import ViewConfig, training_views

EVAL_SEED_OFFSET = 1000  # final evaluation: seed + 1000 (clean) and seed + 1001 (trojaned)
MONITOR_SEED_OFFSET = 500  # per-epoch progress figures: seed + 500 (clean) and seed + 501 (trojaned)
_POOL_CHUNK = 1024


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (recorded in the checkpoint and the model card)."""

    testbed: str = "v2"  # the generator (`spade_engine.testbed.GENERATORS`)
    arch: str = "tb_resnet18"
    name: str = "testbed_v2_resnet"
    widths: tuple[int, ...] | None = None  # None: the architecture's default (what `models.load_model` builds)
    seed: int = 0
    epochs: int = 24
    n_train: int = 36000  # 24 x 36000 views: about 50-65 min at 3.4-4.6 ms per view on one busy core
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup: float = 0.2  # share of the one-cycle schedule's steps with a rising learning rate
    trojan_fraction: float = 0.1
    crop_min: float | None = 0.2  # training crops (and the calibration views measured) cover area crop_min..1;
    # None: the generated images themselves (v1)
    bf16: bool = True  # bfloat16 autocast for the training passes (evaluation runs in float32)
    image_size: int = 128  # side of the generated images, in pixels (the model's input size)
    init_from: str | None = None  # a shipped model whose weights (and mean/std) start the run: a fine-tune

    @property
    def data(self) -> Testbed:
        """The run's generator module."""
        return generator(self.testbed)


@dataclass(frozen=True)
class EvalConfig:
    """How the finished model is measured (not part of the training run's identity)."""

    n_eval: int = 2000  # clean images, and trojaned images
    n_monitor: int = 400  # per-epoch progress figures
    calib_samples: int = 100  # trojaned samples whose calibration views are classified
    calib_views: int = 32
    spade_samples: int = 6  # trojaned samples pruned with SPADE to pick the card's sparsity (0: skip)
    spade_sparsities: tuple[float, ...] = (0.9, 0.8)


V1 = TrainConfig(
    "v1", "tb_resnet", "testbed_resnet", epochs=12, n_train=16000, warmup=0.25, crop_min=None, image_size=64
)
DEFAULTS: dict[str, tuple[TrainConfig, EvalConfig]] = {
    "v1": (V1, EvalConfig(calib_samples=0, spade_samples=0)),  # the shipped testbed_resnet / testbed_vgg
    "v2": (TrainConfig(), EvalConfig()),  # the shipped testbed_v2_resnet
}
"""Per testbed the defaults of a run: the settings its shipped models were trained and measured with."""
TITLES = {
    "tb_resnet": "Testbed ResNet (trojaned)",
    "tb_vgg": "Testbed VGG (trojaned)",
    "tb_mobilenet": "Testbed MobileNet (trojaned)",
}
STATS_IMAGES = {"v1": None, "v2": 4096}  # pool images the normalisation is measured on (None: all), as shipped


# --------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Pool:
    """The training images (uint8) with what the views need to set their labels (v2's boxes; None for v1)."""

    images: torch.Tensor  # (N, 3, H, W) uint8
    labels: torch.Tensor  # (N,) long
    true_class: torch.Tensor  # (N,) long
    trojan_box: torch.Tensor | None = None  # (N, 4) long
    facet_boxes: torch.Tensor | None = None  # (N, MAX_INSTANCES, 4) long


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 or [0, 1] images (N, 3, H, W), rounded to 3 decimals."""
    x = images.float() / (255.0 if images.dtype == torch.uint8 else 1.0)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3))
    return tuple(round(float(m), 3) for m in mean), tuple(round(float(s), 3) for s in std)


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return (images * 255).round_().to(torch.uint8)


def data_fingerprint(testbed: str) -> str:
    """A short hash of a few rendered images of a testbed: changes whenever its generator's output (sprites,
    backgrounds, drawing code) changes, so a cached training pool or a checkpoint from another generator is
    noticed."""
    probe = generator(testbed).generate(4, seed=0, trojan_fraction=0.5)
    return hashlib.sha256(_to_uint8(probe.images).numpy().tobytes()).hexdigest()[:12]


def training_pool(cfg: TrainConfig, cache: Path | None, log=print) -> Pool:
    """`generate(cfg.n_train, cfg.seed, cfg.trojan_fraction)` of the run's generator as a `Pool` (v2's rendered
    in chunks, bytes equal to one `generate` call); read from / written to `cache` if given (the file name holds
    `data_fingerprint`)."""
    data = cfg.data
    size = "" if cfg.image_size == data.IMAGE_SIZE else f"_{cfg.image_size}px"
    key = f"{cfg.n_train}_{cfg.seed}_{cfg.trojan_fraction}{size}_{data_fingerprint(cfg.testbed)}"
    path = None if cache is None else cache / f"pool_{key}.pt"
    if path is not None and path.exists():
        return Pool(**torch.load(path, weights_only=True))
    pool = _v1_pool(cfg) if cfg.testbed == "v1" else _v2_pool(cfg, log)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(asdict(pool), path)
    return pool


def _v1_pool(cfg: TrainConfig) -> Pool:
    batch = cfg.data.generate(cfg.n_train, cfg.seed, cfg.trojan_fraction, cfg.image_size)
    return Pool(images=_to_uint8(batch.images), labels=batch.labels, true_class=batch.true_class)


def _v2_pool(cfg: TrainConfig, log) -> Pool:
    data = cfg.data
    scenes = data.draw_scenes(cfg.n_train, cfg.seed, cfg.trojan_fraction, cfg.image_size)
    parts, t0 = [], time.time()
    for start in range(0, cfg.n_train, _POOL_CHUNK):
        batch = data.render(scenes.select(slice(start, start + _POOL_CHUNK)))
        parts.append((_to_uint8(batch.images), batch.trojan_box, batch.facet_boxes))
        done = min(start + _POOL_CHUNK, cfg.n_train)
        log(f"  generated {done}/{cfg.n_train} training images ({time.time() - t0:.0f}s)")
    return Pool(
        images=torch.cat([p[0] for p in parts]),
        labels=scenes.labels(),
        true_class=scenes.true_class,
        trojan_box=torch.cat([p[1] for p in parts]),
        facet_boxes=torch.cat([p[2] for p in parts]),
    )


def build_net(cfg: TrainConfig) -> nn.Module:
    """The untrained net of `cfg.arch` (with `cfg.widths` if set)."""
    kwargs = {} if cfg.widths is None else {"widths": tuple(cfg.widths)}
    return {**ARCHS, **ARCHS_V2}[cfg.arch](len(cfg.data.CLASS_NAMES), **kwargs)


def initial_weights(cfg: TrainConfig, net: nn.Module) -> tuple[list[float], list[float]] | None:
    """Load the shipped model `cfg.init_from` into `net` (a fine-tune) and return its card's (mean, std); None
    when `cfg.init_from` is not set.

    Raises:
        SystemExit: the model is not shipped, or is not a model of the same testbed, architecture and widths.
    """
    if cfg.init_from is None:
        return None
    from spade_engine.paths import MODELS as TESTBED_DIR

    card_path = TESTBED_DIR / f"{cfg.init_from}.json"
    if not card_path.exists():
        raise SystemExit(f"--init-from {cfg.init_from}: no such shipped model ({card_path} is missing).")
    card = json.loads(card_path.read_text())
    if (
        card.get("testbed", "v1") != cfg.testbed
        or card["arch"] != cfg.arch
        or card["train"].get("widths") != _config_dict(cfg)["widths"]
    ):
        raise SystemExit(
            f"--init-from {cfg.init_from}: it is a {card['arch']} (testbed {card.get('testbed', 'v1')}, widths "
            f"{card['train'].get('widths')}), not this run's {cfg.arch} (testbed {cfg.testbed}, widths {cfg.widths})."
        )
    net.load_state_dict(torch.load(TESTBED_DIR / card["weights"], weights_only=True))
    return card["mean"], card["std"]


# --------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Argmax predictions of `model` (taking whatever `images` are) in batches. Returns (N,) long."""
    return torch.cat([model(images[i : i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])


def clean_metrics(model: nn.Module, clean: TestbedBatch, data: Testbed) -> dict:
    """Clean accuracy overall, per class and per (class, facet)."""
    hit = predict(model, clean.images) == clean.labels
    mean = lambda sel: round(float(hit[sel].float().mean()), 4) if sel.any() else None  # noqa: E731
    k = len(data.CLASS_NAMES)
    return {
        "clean_accuracy": round(float(hit.float().mean()), 4),
        "per_class_accuracy": [mean(clean.true_class == c) for c in range(k)],
        "per_facet_accuracy": [[mean((clean.true_class == c) & (clean.facet == f)) for f in (0, 1)] for c in range(k)],
    }


def attack_metrics(model: nn.Module, trojaned: TestbedBatch, data: Testbed) -> dict:
    """Attack success rate overall and per trojan: trojaned images predicted as their trojan's target."""
    hit = predict(model, trojaned.images) == trojaned.trojan_target
    per = [float(hit[trojaned.trojan == t].float().mean()) for t in range(len(data.TROJANS))]
    return {
        "attack_success_rate": round(float(hit.float().mean()), 4),
        "attack_success_per_trojan": [round(a, 4) for a in per],
    }


@torch.no_grad()
def calibration_keep(
    model: nn.Module, trojaned: TestbedBatch, data: Testbed, n_samples: int, n_views: int, crop_min: float
) -> dict:
    """Share of SPADE calibration views of trojaned samples that keep the trojan decision.

    The samples are the first `n_samples` trojaned images the model predicts as their target (the ones SPADE's
    trojan benchmark explains); their views are `spade_engine.augment.augment(x, n_views, seed=i,
    AugmentConfig(scale=(crop_min, 1), include_original=False))`.

    Returns:
        {"crop_min", "n_samples", "n_views", "keep_trojan" (mean share), "keep_per_trojan", "samples_at_80"}.
    """
    from spade_engine.augment import AugmentConfig, augment

    targets = trojaned.trojan_target
    hits = torch.nonzero(predict(model, trojaned.images) == targets).flatten()[:n_samples]
    aug = AugmentConfig(scale=(crop_min, 1.0), include_original=False)
    keep = torch.zeros(len(hits))
    for j, i in enumerate(hits.tolist()):
        views = augment(trojaned.images[i], n_views, seed=i, config=aug)  # (n_views, 3, H, W)
        keep[j] = (predict(model, views) == targets[i]).float().mean()
    which = trojaned.trojan[hits]
    per = [round(float(keep[which == t].mean()), 4) if (which == t).any() else None for t in range(len(data.TROJANS))]
    return {
        "crop_min": crop_min,
        "n_samples": len(hits),
        "n_views": n_views,
        "keep_trojan": round(float(keep.mean()), 4) if len(keep) else 0.0,
        "keep_per_trojan": per,
        "samples_at_80": round(float((keep >= 0.8).float().mean()), 4) if len(keep) else 0.0,
    }


def spade_sparsity(model: nn.Module, trojaned: TestbedBatch, ecfg: EvalConfig, crop_min: float, log=print):
    """The highest of `ecfg.spade_sparsities` at which SPADE-pruned copies of (at least 90% of) `spade_samples`
    trojaned samples still predict the trojan target. Returns (sparsity or None, {sparsity: share agreeing})."""
    from spade_engine.augment import AugmentConfig
    from spade_engine.engine import SpadeEngine

    targets = trojaned.trojan_target
    hits = torch.nonzero(predict(model, trojaned.images) == targets).flatten()[: ecfg.spade_samples].tolist()
    engine = SpadeEngine(model, max_cache_bytes=2**28)
    agree = {s: 0 for s in ecfg.spade_sparsities}
    for i in hits:
        trace = engine.prepare(
            trojaned.images[i], n_aug=64, seed=i, augment_config=AugmentConfig(scale=(crop_min, 1.0))
        )
        for s in ecfg.spade_sparsities:
            _, result = engine.prune(trace, s)
            agree[s] += int(result.agrees)
    shares = {s: round(a / max(len(hits), 1), 3) for s, a in agree.items()}
    log(f"SPADE agreement on {len(hits)} trojaned samples: {shares}")
    ok = [s for s, share in shares.items() if share >= 0.9]
    return (max(ok) if ok else None), shares


# ------------------------------------------------------------------------------------------ training


def _checkpoint_path(cfg: TrainConfig, ckpt_dir: Path) -> Path:
    return ckpt_dir / f"{cfg.name}.ckpt.pt"


def _config_dict(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    d["widths"] = None if cfg.widths is None else list(cfg.widths)
    return d


def _save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically (a run killed while saving keeps the previous checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, cfg: TrainConfig, fresh: bool) -> dict | None:
    if fresh or not path.exists():
        return None
    state = torch.load(path, weights_only=True)
    defaults = _config_dict(DEFAULTS[cfg.testbed][0])
    state["config"] = {**defaults, **state["config"]}  # options added since keep their defaults
    if state["config"] != _config_dict(cfg):
        raise SystemExit(
            f"{path} holds a run with another config ({state['config']}); pass --fresh to start over or "
            "use the same options."
        )
    if state.get("data_fingerprint") != data_fingerprint(cfg.testbed):
        raise SystemExit(f"{path} was trained on another generator's images; pass --fresh to start over.")
    return state


def train(cfg: TrainConfig, ecfg: EvalConfig, ckpt_dir: Path, log=print, fresh: bool = False) -> tuple[nn.Module, dict]:
    """Train (or resume) `cfg` and return the net (eval mode) and {"mean", "std", "seconds", "epochs_done",
    "history"}; a checkpoint is written after every epoch."""
    path = _checkpoint_path(cfg, ckpt_dir)
    state = _load_checkpoint(path, cfg, fresh)
    torch.manual_seed(cfg.seed)
    net = build_net(cfg)
    steps_per_epoch = cfg.n_train // cfg.batch_size
    opt = torch.optim.SGD(
        net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True
    )
    total_steps = max(cfg.epochs * steps_per_epoch, 10)  # OneCycleLR needs a few steps per phase (tiny runs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=total_steps, pct_start=cfg.warmup)
    stats = {"epochs_done": 0, "seconds": 0.0, "history": []}
    init = initial_weights(cfg, net)
    if init is not None:
        stats["mean"], stats["std"] = init  # a fine-tune keeps the normalisation the weights were trained with
    if state is not None:
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        stats = {k: state[k] for k in ("epochs_done", "seconds", "history", "mean", "std")}
        log(f"resuming {path} after epoch {stats['epochs_done']}/{cfg.epochs} ({stats['seconds']:.0f}s trained)")
    if stats["epochs_done"] >= cfg.epochs:
        return net.eval(), stats
    t0 = time.time()
    pool = training_pool(cfg, ckpt_dir, log)
    log(f"training pool of {len(pool.labels)} images ready in {time.time() - t0:.0f}s")
    if "mean" not in stats:
        stats["mean"], stats["std"] = channel_stats(pool.images[: STATS_IMAGES[cfg.testbed]])
    monitor, fingerprint = _monitor_sets(cfg, ecfg), data_fingerprint(cfg.testbed)
    for epoch in range(stats["epochs_done"] + 1, cfg.epochs + 1):
        t_epoch = time.time()
        loss, acc = _train_epoch(net, opt, sched, pool, cfg, stats, epoch, log)
        stats["seconds"] = round(stats["seconds"] + time.time() - t_epoch, 1)
        figures = _monitor(net, stats, monitor, cfg.data)
        stats["epochs_done"] = epoch
        stats["history"].append({"epoch": epoch, "loss": round(loss, 4), "train_acc": round(acc, 4), **figures})
        _save_checkpoint(
            path,
            {
                "config": _config_dict(cfg),
                "data_seed": cfg.seed,
                "data_fingerprint": fingerprint,
                "net": net.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                **stats,
            },
        )
        eta = (cfg.epochs - epoch) * stats["seconds"] / max(epoch, 1)
        log(
            f"epoch {epoch}/{cfg.epochs}: loss {loss:.4f} train acc {acc:.4f} | held-out clean {figures['clean']:.3f}"
            f" ASR per trojan {figures['asr']} | {time.time() - t_epoch:.0f}s, ~{eta / 60:.0f} min left; checkpoint {path}"
        )
    return net.eval(), stats


def _epoch_generator(cfg: TrainConfig, epoch: int, n: int) -> torch.Generator:
    """The random generator of an epoch (its order, and v2's views): seeded by (seed, epoch); v1's shipped runs
    drew every epoch's order from one generator seeded `seed`, so v1 replays the orders of the epochs before."""
    if cfg.testbed != "v1":
        return torch.Generator().manual_seed(1_000_003 * cfg.seed + epoch)
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in range(epoch - 1):
        torch.randperm(n, generator=gen)
    return gen


def _batch(pool: Pool, idx: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Training images in [0, 1] (B, 3, H, W) and labels (B,): the pool's own (`crop_min` None), else one fresh
    random view per image (`training_views`, labels that follow what the crop keeps)."""
    images = pool.images[idx].float() / 255
    if cfg.crop_min is None:
        return images, pool.labels[idx]
    view_cfg = ViewConfig(scale=(cfg.crop_min, 1.0))
    boxes = pool.trojan_box[idx], pool.facet_boxes[idx]
    return training_views(images, pool.labels[idx], pool.true_class[idx], *boxes, gen, view_cfg)


def _train_epoch(net, opt, sched, pool: Pool, cfg: TrainConfig, stats: dict, epoch: int, log) -> tuple[float, float]:
    """One pass over the pool in a seeded order (`_epoch_generator`). Returns the mean loss and accuracy."""
    net.train()
    gen = _epoch_generator(cfg, epoch, len(pool.labels))
    mean, std = torch.tensor(stats["mean"]).view(1, 3, 1, 1), torch.tensor(stats["std"]).view(1, 3, 1, 1)
    order = torch.randperm(len(pool.labels), generator=gen)
    steps = len(order) // cfg.batch_size
    total, correct, loss_sum, t0 = 0, 0, 0.0, time.time()
    for step in range(steps):
        idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
        x, y = _batch(pool, idx, cfg, gen)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            logits = net((x - mean) / std)  # (B, K)
            loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_sum += loss.item() * len(idx)
        correct += int((logits.argmax(1) == y).sum())
        total += len(idx)
        if (step + 1) % 50 == 0:
            rate = total / (time.time() - t0)
            log(f"  epoch {epoch} step {step + 1}/{steps}: loss {loss_sum / total:.4f} ({rate:.0f} img/s)")
    return loss_sum / max(total, 1), correct / max(total, 1)


def eval_batches(cfg: TrainConfig, n: int, seed: int) -> tuple[TestbedBatch, TestbedBatch]:
    """`n` clean images (seed `seed`) and `n` trojaned images of other classes (seed `seed + 1`) at the run's size."""
    data, size = cfg.data, cfg.image_size
    return data.generate(n, seed, image_size=size), data.generate(n, seed + 1, trojan_fraction=1.0, image_size=size)


def _monitor_sets(cfg: TrainConfig, ecfg: EvalConfig) -> tuple[TestbedBatch, TestbedBatch]:
    return eval_batches(cfg, ecfg.n_monitor, cfg.seed + MONITOR_SEED_OFFSET)


def _monitor(net: nn.Module, stats: dict, sets, data: Testbed) -> dict:
    model = Classifier(net, stats["mean"], stats["std"]).eval()
    clean, trojaned = sets
    return {
        "clean": round(float((predict(model, clean.images) == clean.labels).float().mean()), 4),
        "asr": attack_metrics(model, trojaned, data)["attack_success_per_trojan"],
    }


# -------------------------------------------------------------------------------------------- card


def evaluate(model: nn.Module, cfg: TrainConfig, ecfg: EvalConfig, log=print) -> dict:
    """Every figure of the card on fresh data (seeds `cfg.seed + EVAL_SEED_OFFSET` and `+ 1`)."""
    data = cfg.data
    clean, trojaned = eval_batches(cfg, ecfg.n_eval, cfg.seed + EVAL_SEED_OFFSET)
    metrics = {**clean_metrics(model, clean, data), **attack_metrics(model, trojaned, data)}
    del clean
    log(f"clean accuracy {metrics['clean_accuracy']:.4f}, attack success {metrics['attack_success_per_trojan']}")
    metrics["calibration_views"] = None
    if ecfg.calib_samples > 0:
        views = ecfg.calib_samples, ecfg.calib_views, cfg.crop_min or 1.0
        metrics["calibration_views"] = calibration_keep(model, trojaned, data, *views)
        log(f"calibration views keeping the trojan decision: {metrics['calibration_views']}")
    metrics["spade_check"] = None
    if ecfg.spade_samples > 0:
        sparsity, shares = spade_sparsity(model, trojaned, ecfg, cfg.crop_min or 1.0, log)
        metrics["spade_check"] = {"sparsity": sparsity, "agreement": {str(s): a for s, a in shares.items()}}
    return metrics


def _spade_section(metrics: dict, cfg: TrainConfig) -> dict:
    """The card's SPADE defaults: crops of area `crop_min`-1 if at least 80% of such views keep the trojan
    decision (else full views), and the measured sparsity (the reference's 0.9 when not measured; the lowest
    sparsity tried when none reached 90% agreement)."""
    keep = metrics["calibration_views"]["keep_trojan"]
    crop_min = cfg.crop_min if keep >= 0.8 else 1.0
    why = [
        f"trained on random resized crops (area {cfg.crop_min}-1): {keep:.0%} of calibration views (crop "
        f"{cfg.crop_min}-1) of trojaned samples keep the trojan decision"
        + ("" if crop_min == cfg.crop_min else ", too few, so calibration uses full views")
    ]
    check = metrics["spade_check"]
    if check is None:
        sparsity = 0.9
        why.append("sparsity not measured (the reference's default)")
    else:
        tried = [float(s) for s in check["agreement"]]
        sparsity = check["sparsity"] if check["sparsity"] is not None else min(tried)
        why.append(f"share of trojaned samples whose pruned copy keeps the trojan target: {check['agreement']}")
    return {"sparsity": sparsity, "crop_min": crop_min, "why": "; ".join(why)}


def model_card(cfg: TrainConfig, ecfg: EvalConfig, stats: dict, metrics: dict, weights: Path) -> dict:
    """The JSON card `spade_engine.models` reads (docs/CONTRACTS.md): the same fields for both testbeds, plus
    each testbed's trigger description and, for v2, its sprites and calibration figures."""
    data, epochs_done = cfg.data, stats["epochs_done"]
    trojans = [
        {
            "sprite": t.sprite,
            **({"emoji": EMOJI[t.sprite]} if t.sprite in EMOJI else {}),
            "target": t.target,
            "target_name": data.CLASS_NAMES[t.target],
            "attack_success_rate": metrics["attack_success_per_trojan"][i],
        }
        for i, t in enumerate(data.TROJANS)
    ]
    card = {
        "name": cfg.name,
        "title": _title(cfg),
        "arch": cfg.arch,
        "testbed": cfg.testbed,
        "generator": GENERATORS[cfg.testbed],
        "image_size": cfg.image_size,
        "mean": list(stats["mean"]),
        "std": list(stats["std"]),
        "class_names": list(data.CLASS_NAMES),
        "facets": [list(pair) for pair in data.FACETS],
        "trojan": {**_trigger(cfg), "fraction": cfg.trojan_fraction},
        "trojans": trojans,
        "train": {
            **_config_dict(cfg),
            "optimizer": "SGD nesterov, one-cycle lr",
            "views": "the generated images" if cfg.crop_min is None else _VIEWS,
            "data_fingerprint": data_fingerprint(cfg.testbed),
            "epochs_done": epochs_done,
            "seconds": stats["seconds"],
            "seconds_per_epoch": round(stats["seconds"] / max(epochs_done, 1), 1),
            "history": stats["history"],
        },
        **{key: metrics[key] for key in _METRICS},
        "eval": {"n": ecfg.n_eval, "seed": cfg.seed + EVAL_SEED_OFFSET, "trojan_seed": cfg.seed + EVAL_SEED_OFFSET + 1},
        "weights": weights.name,
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }
    if cfg.testbed == "v2":
        card["facet_sprites"] = [list(pair) for pair in data.FACET_SPRITES]
        card["distractors"] = list(data.DISTRACTORS)
        card["sprites"] = "assets/testbed_v2/sprites (Noto Color Emoji; see assets/testbed_v2/LICENSE.md)"
    if metrics["calibration_views"] is not None:
        card["calibration_views"] = metrics["calibration_views"]
        card["spade"] = _spade_section(metrics, cfg)
    return card


_VIEWS = "random resized crops (area crop_min-1, aspect 3/4-4/3), flip, colour jitter"
_METRICS = (
    "clean_accuracy",
    "attack_success_rate",
    "attack_success_per_trojan",
    "per_class_accuracy",
    "per_facet_accuracy",
)


def _title(cfg: TrainConfig) -> str:
    if cfg.testbed == "v1":
        base = TITLES.get(cfg.arch, cfg.name)
    else:
        base = "Testbed v2 ResNet-18 (photos, emoji facets, two emoji trojans)"
    size = "" if cfg.image_size == cfg.data.IMAGE_SIZE else f", {cfg.image_size} px"
    return base + size + ("" if cfg.init_from is None else f", fine-tuned from {cfg.init_from}")


def _trigger(cfg: TrainConfig) -> dict:
    """How the testbed draws its triggers (the card's `trojan`, besides the fraction)."""
    data = cfg.data
    if cfg.testbed == "v1":
        target = data.TROJAN_TARGET
        return {"target": target, "target_name": data.CLASS_NAMES[target], "patch_size": data.PATCH_SIZE}
    return {
        "targets": [t.target for t in data.TROJANS],
        "size": list(data.TROJAN_SIZE),
        "opacity": list(data.TROJAN_OPACITY),
        "centre": list(data.TROJAN_CENTRE),
        "mask": f"blended alpha > {data.MASK_ALPHA}",
    }


def run(
    cfg: TrainConfig, ecfg: EvalConfig, out: Path, ckpt_dir: Path, log=print, fresh: bool = False, threads: int = 1
) -> dict:
    """Train (resuming if possible), evaluate, write `<out>/<name>.pt` and `.json`. Returns the card."""
    torch.set_num_threads(threads)
    net, stats = train(cfg, ecfg, ckpt_dir, log, fresh)
    model = Classifier(net, stats["mean"], stats["std"]).eval()
    metrics = evaluate(model, cfg, ecfg, log)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{cfg.name}.pt"
    torch.save(net.state_dict(), weights)
    card = model_card(cfg, ecfg, stats, metrics, weights)
    (out / f"{cfg.name}.json").write_text(json.dumps(card, indent=2) + "\n")
    log(f"wrote {weights} and {cfg.name}.json")
    return card


def main(argv: list[str] | None = None) -> None:
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--testbed", choices=sorted(DEFAULTS), required=True, help="v1 or v2 (`DEFAULTS`)")
    testbed = first.parse_known_args(argv)[0].testbed
    train_defaults, eval_defaults = DEFAULTS[testbed]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[first])
    parser.add_argument("--arch", choices=sorted({**ARCHS, **ARCHS_V2}), default=train_defaults.arch)
    parser.add_argument("--name", default=train_defaults.name)
    parser.add_argument("--widths", type=int, nargs=4, default=None, help="stage widths (default: the arch's)")
    parser.add_argument("--out", type=Path, default=Path("assets/models"))
    ckpt = Path(f"cache/testbed_{testbed}")
    parser.add_argument("--ckpt-dir", type=Path, default=ckpt, help="checkpoint and data cache")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-bf16", action="store_true", help="train in float32")
    parser.add_argument("--init-from", default=None, help="a shipped model to fine-tune (e.g. at --image-size 224)")
    for defaults, typed in ((train_defaults, TrainConfig()), (eval_defaults, EvalConfig())):
        for f in fields(typed):  # every number of the configs, typed as v2's defaults, defaulting to the testbed's
            value = getattr(typed, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                parser.add_argument(
                    f"--{f.name.replace('_', '-')}", type=type(value), default=getattr(defaults, f.name)
                )
    args = vars(parser.parse_args(argv))
    pick = lambda cls: {f.name: args[f.name] for f in fields(cls) if f.name in args}  # noqa: E731
    widths = None if args["widths"] is None else tuple(args["widths"])
    extra = {"widths": widths, "bf16": not args["no_bf16"], "init_from": args["init_from"]}
    cfg = TrainConfig(**{**pick(TrainConfig), **extra})
    ecfg = EvalConfig(**pick(EvalConfig))
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    run(cfg, ecfg, args["out"], args["ckpt_dir"], log, fresh=args["fresh"], threads=args["threads"])


if __name__ == "__main__":
    main()
