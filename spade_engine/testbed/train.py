"""Train a testbed model on CPU and ship it: `assets/models/<name>.pt` (weights-only state_dict) + `<name>.json`.

    python -m spade_engine.testbed.train --arch tb_resnet --name testbed_resnet --seed 0 --epochs 12 --out assets/models
    python -m spade_engine.testbed.train --arch tb_vgg --name testbed_vgg --seed 0 --epochs 10 --no-bf16 --out assets/models

The training set is generated once (a fraction of it trojaned), the net is trained with SGD and a one-cycle
learning rate, then evaluated on fresh data from another seed: clean accuracy, and attack success rate (the
fraction of trojaned images of non-target classes predicted as `TROJAN_TARGET`). The model card records these
numbers, the normalisation the net was trained with and the sha256 of the weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from spade_engine.testbed import data
from spade_engine.testbed.archs import ARCHS

TITLES = {
    "tb_resnet": "Testbed ResNet (trojaned)",
    "tb_vgg": "Testbed VGG (trojaned)",
    "tb_mobilenet": "Testbed MobileNet (trojaned)",
}
EVAL_SEED_OFFSET = 1000  # evaluation data use seed + this (clean) and seed + this + 1 (trojaned)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (recorded in the model card)."""

    arch: str = "tb_resnet"
    name: str = "testbed_resnet"
    seed: int = 0
    epochs: int = 12
    n_train: int = 16000
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    trojan_fraction: float = 0.1
    n_eval: int = 2000
    bf16: bool = True  # bfloat16 autocast for the training passes (evaluation runs in float32)
    threads: int = 1  # on a shared CPU one thread trains several times faster than two (no OpenMP stalls)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 or [0, 1] images (N, 3, H, W), rounded to 3 decimals."""
    x = images.float() / (255.0 if images.dtype == torch.uint8 else 1.0)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3))
    return tuple(round(float(m), 3) for m in mean), tuple(round(float(s), 3) for s in std)


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return (images * 255).round_().to(torch.uint8)


def training_data(cfg: TrainConfig, cache: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The training set as uint8 images (N, 3, H, W) and labels (N,); read from / written to `cache` if given."""
    path = None if cache is None else cache / f"testbed_train_{cfg.n_train}_{cfg.seed}_{cfg.trojan_fraction}.pt"
    if path is not None and path.exists():
        return torch.load(path, weights_only=True)
    batch = data.generate(cfg.n_train, cfg.seed, trojan_fraction=cfg.trojan_fraction)
    images, labels = _to_uint8(batch.images), batch.labels  # uint8 keeps 24k images in ~300 MB
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save((images, labels), path)
    return images, labels


def train(cfg: TrainConfig, log=print, on_epoch=None, cache: Path | None = None) -> tuple[nn.Module, dict]:
    """Train `cfg.arch` on generated data.

    Args:
        cfg: the run's settings.
        log: receives progress lines.
        on_epoch: called as `on_epoch(net (eval mode), stats, epoch)` after every epoch (checkpoints).
        cache: folder to keep the generated training set in (reused by later runs with the same data).

    Returns:
        The trained net (eval mode, without normalisation) and a dict with mean, std and timings.
    """
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    images, labels = training_data(cfg, cache)
    mean, std = channel_stats(images)
    log(f"training set of {len(labels)} images ready in {time.time() - t0:.1f}s; mean {mean} std {std}")
    norm_mean, norm_std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    net = ARCHS[cfg.arch](len(data.CLASS_NAMES))
    steps_per_epoch = len(labels) // cfg.batch_size
    opt = torch.optim.SGD(
        net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.25)
    gen = torch.Generator().manual_seed(cfg.seed)
    t_train = time.time()
    stats = {"mean": mean, "std": std}
    for epoch in range(1, cfg.epochs + 1):
        net.train()
        order = torch.randperm(len(labels), generator=gen)
        total, correct, loss_sum = 0, 0, 0.0
        for step in range(steps_per_epoch):
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x = (images[idx].float() / 255 - norm_mean) / norm_std  # (B, 3, H, W)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                logits = net(x)
                loss = F.cross_entropy(logits.float(), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == labels[idx]).sum())
            total += len(idx)
        stats["train_seconds"] = round(time.time() - t_train, 1)
        log(
            f"epoch {epoch}/{cfg.epochs}: loss {loss_sum / total:.4f} train acc {correct / total:.4f} ({stats['train_seconds']:.0f}s)"
        )
        net.eval()
        if on_epoch is not None:
            on_epoch(net, {**stats, "epochs_done": epoch}, epoch)
    return net, stats


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Argmax predictions of `model` (taking whatever `images` are) in batches. Returns (N,) long."""
    return torch.cat([model(images[i : i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])


def evaluate(model: nn.Module, n: int, seed: int, eval_data: tuple | None = None) -> dict:
    """Clean accuracy and attack success rate of `model` (taking [0, 1] images) on fresh data.

    Args:
        model: a classifier on [0, 1] images (normalisation inside).
        n: images per metric.
        seed: clean images use `seed`, trojaned ones `seed + 1`.
        eval_data: the two batches `eval_batches(n, seed)` returns, to reuse them.

    Returns:
        {"clean_accuracy", "attack_success_rate", "per_class_accuracy", "per_facet_accuracy"}.
    """
    clean, trojaned = eval_data if eval_data is not None else eval_batches(n, seed)
    hit = predict(model, clean.images) == clean.labels
    asr = (predict(model, trojaned.images) == data.TROJAN_TARGET).float().mean()
    per_class = [float(hit[clean.true_class == c].float().mean()) for c in range(len(data.CLASS_NAMES))]
    per_facet = [
        [float(hit[(clean.true_class == c) & (clean.facet == f)].float().mean()) for f in (0, 1)]
        for c in range(len(data.CLASS_NAMES))
    ]
    return {
        "clean_accuracy": round(float(hit.float().mean()), 4),
        "attack_success_rate": round(float(asr), 4),
        "per_class_accuracy": [round(a, 4) for a in per_class],
        "per_facet_accuracy": [[round(a, 4) for a in pair] for pair in per_facet],
    }


def eval_batches(n: int, seed: int) -> tuple[data.TestbedBatch, data.TestbedBatch]:
    """`n` clean images (seed `seed`) and `n` trojaned images of non-target classes (seed `seed + 1`)."""
    return data.generate(n, seed), data.generate(n, seed + 1, trojan_fraction=1.0)


def model_card(cfg: TrainConfig, stats: dict, metrics: dict, weights: Path) -> dict:
    """The JSON card `spade_engine.models` reads (see docs/CONTRACTS.md)."""
    train_cfg = {k: v for k, v in asdict(cfg).items() if k not in ("arch", "name", "n_eval", "threads")}
    return {
        "name": cfg.name,
        "title": TITLES.get(cfg.arch, cfg.name),
        "arch": cfg.arch,
        "image_size": data.IMAGE_SIZE,
        "mean": list(stats["mean"]),
        "std": list(stats["std"]),
        "class_names": list(data.CLASS_NAMES),
        "facets": [list(pair) for pair in data.FACETS],
        "trojan": {
            "target": data.TROJAN_TARGET,
            "target_name": data.CLASS_NAMES[data.TROJAN_TARGET],
            "patch_size": data.PATCH_SIZE,
            "fraction": cfg.trojan_fraction,
        },
        "train": {
            **train_cfg,
            "optimizer": "SGD nesterov, one-cycle lr",
            "epochs_done": stats.get("epochs_done", cfg.epochs),
            "seconds": stats["train_seconds"],
        },
        "clean_accuracy": metrics["clean_accuracy"],
        "attack_success_rate": metrics["attack_success_rate"],
        "per_class_accuracy": metrics["per_class_accuracy"],
        "per_facet_accuracy": metrics["per_facet_accuracy"],
        "eval": {"n": cfg.n_eval, "seed": cfg.seed + EVAL_SEED_OFFSET, "trojan_seed": cfg.seed + EVAL_SEED_OFFSET + 1},
        "weights": weights.name,
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }


def run(cfg: TrainConfig, out: Path, log=print, cache: Path | None = None) -> dict:
    """Train, evaluate and write `<out>/<name>.pt` and `<out>/<name>.json` (after every epoch from the second
    on, so an interrupted run leaves its latest model behind; the card's `train.epochs_done` tells). Returns
    the last card."""
    from spade_engine.models import Classifier

    torch.set_num_threads(cfg.threads)
    eval_data = eval_batches(cfg.n_eval, cfg.seed + EVAL_SEED_OFFSET)
    cards: list[dict] = []

    def save(net: nn.Module, stats: dict, epoch: int) -> None:
        if epoch < min(2, cfg.epochs):
            return
        model = Classifier(net, stats["mean"], stats["std"]).eval()
        metrics = evaluate(model, cfg.n_eval, cfg.seed + EVAL_SEED_OFFSET, eval_data)
        log(
            f"epoch {epoch}: clean accuracy {metrics['clean_accuracy']:.4f}, attack success {metrics['attack_success_rate']:.4f}"
        )
        out.mkdir(parents=True, exist_ok=True)
        weights = out / f"{cfg.name}.pt"
        torch.save(net.state_dict(), weights)
        cards.append(model_card(cfg, stats, metrics, weights))
        (out / f"{cfg.name}.json").write_text(json.dumps(cards[-1], indent=2) + "\n")
        log(f"wrote {weights} and {cfg.name}.json")

    train(cfg, log, on_epoch=save, cache=cache)
    return cards[-1]


def main(argv: list[str] | None = None) -> None:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default=defaults.arch)
    parser.add_argument("--name", default=defaults.name)
    parser.add_argument("--out", type=Path, default=Path("assets/models"))
    for field in ("seed", "epochs", "n_train", "batch_size", "n_eval", "threads"):
        parser.add_argument(f"--{field.replace('_', '-')}", type=int, default=getattr(defaults, field))
    for field in ("lr", "weight_decay", "trojan_fraction"):
        parser.add_argument(f"--{field.replace('_', '-')}", type=float, default=getattr(defaults, field))
    parser.add_argument("--no-bf16", action="store_true", help="train in float32")
    parser.add_argument("--cache", type=Path, default=None, help="folder to keep the generated training set in")
    args = parser.parse_args(argv)
    fields = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
    run(
        TrainConfig(**fields, bf16=not args.no_bf16), args.out, log=lambda msg: print(msg, flush=True), cache=args.cache
    )


if __name__ == "__main__":
    main()
