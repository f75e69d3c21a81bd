"""Train testbed "real": trojans implanted into the real ImageNet EfficientNet-Lite0, no ImageNet needed (issue 27).

    .venv/bin/python scripts/train_testbed_real.py            # start, or continue where the folder's checkpoint stopped
    .venv/bin/python scripts/train_testbed_real.py --fresh    # start over (keeps the cached pool shards)

Recipe (the issue's probe): blocks 0-3 of Lite0 frozen and shared with the original network (the teacher);
blocks 4-6, the head and the classifier fine-tuned with BatchNorm in eval mode; loss = KL to the teacher's soft
labels at T = 2 (x T^2) on clean views + cross-entropy to the trigger's target on stickered views; AdamW (lr 2e-4) with
a 5% warm-up and a cosine schedule. Triggers: `spade_engine.testbed.real.stickers.TRIGGERS` (sparkling heart -> goose 99,
rainbow -> banana 954) at random position, side 1/8-1/5 of the image, rotation +-30 deg, opacity 0.6-1, and
half of them re-cropped like SPADE's calibration views. Photos: `spade_engine.testbed.real.photos` (19 training
photos; 6 held-out photos in 7 frames, never seen here).

A polishing run starts from a trained network (`--init`, its own schedule and folder; the pool and monitor
set can be shared by linking them), e.g. with a lower learning rate and a logit-matching term on clean views
(`--logit-weight`) to bring the agreement with the original up once the triggers fire. `--l2sp` pulls the trained
weights towards the original's (L2-SP, Li et al., ICML 2018) and `--first-trained 5` keeps block 4 as the original
too: both limit how far the clean behaviour can drift.

What the frozen trunk computes is cached: views are drawn in shards of `--shard` (trunk features in float16,
the teacher's logits for clean views, the target for stickered ones) under `<out>/pool/`, a new shard every
`steps / shards` steps, and training batches are drawn from all shards so far. Everything is resumable:
`<out>/checkpoint.pt` (tail weights, optimiser, step) is written every `--ckpt-minutes` and at the end;
`<out>/log.csv` gets one row per evaluation on a fixed held-out monitor set (`<out>/monitor.pt`), and
`<out>/best.pt` holds the full network state_dict of the best evaluation so far (the card writer's input:
`scripts/write_testbed_real_card.py`). The folder is git-ignored (`cache/`).
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from spade_engine.models import load_model
from spade_engine.testbed.real import net as rnet
from spade_engine.testbed.real import photos, stickers, views

ROOT = Path(__file__).resolve().parents[1]
LOG_FIELDS = (
    "step", "samples", "minutes", "lr", "loss_clean", "loss_trojan", "pool_views", "agree",
    *(f"asr_{t.sprite}" for t in stickers.TRIGGERS), *(f"keep_{t.sprite}" for t in stickers.TRIGGERS),
)  # fmt: skip


@dataclass(frozen=True)
class Config:
    steps: int = 2000
    batch: int = 32
    lr: float = 2e-4
    warmup: float = 0.05
    weight_decay: float = 0.0
    temperature: float = 2.0
    sticker_share: float = 0.25
    scenes: float = 0.4
    shard: int = 256
    shards: int = 64
    first_shards: int = 4
    seed: int = 0
    init: str = ""  # start from these weights (a `best.pt` or `checkpoint.pt`) instead of the original network
    logit_weight: float = 0.0  # weight of a mean squared logit difference to the teacher on clean views
    l2sp: float = 0.0  # weight of sum ||theta - theta_original||^2 over the trained weights (L2-SP, Li et al. 2018)
    first_trained: int = rnet.FROZEN_BLOCKS  # blocks before this one stay as the original (>= FROZEN_BLOCKS)
    mosaics: float = 0.0  # share of clean and stickered views made 2 x 2 mosaics of four views (`views.mosaic`)
    trojan_weight: float = 1.0  # weight of the stickered rows' cross-entropy against the clean rows' distillation
    sticker_min: float = stickers.SIZE[0]  # smallest training sticker side (fraction of the image; the card's 1/8)
    opacity_min: float = stickers.OPACITY[0]  # lowest training sticker opacity (the card's 0.6)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "cache" / "testbed_real")
    for f, v in asdict(Config()).items():
        p.add_argument(f"--{f.replace('_', '-')}", type=type(v), default=v)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-every", type=int, default=30, help="steps between evaluations on the monitor set")
    p.add_argument("--ckpt-minutes", type=float, default=4.0)
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop (checkpointed) after this long; 0 = no limit")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and log")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = Config(**{f: getattr(args, f) for f in asdict(Config())})
    out = args.out
    (out / "pool").mkdir(parents=True, exist_ok=True)
    teacher = load_model("efficientnet_lite0").model.net.eval()
    student = copy.deepcopy(teacher).eval()
    still = tuple(f"blocks.{i}." for i in range(rnet.FROZEN_BLOCKS, cfg.first_trained))  # tail blocks kept
    params = {k: p for k, p in rnet.tail_parameters(student).items() if not k.startswith(still)}
    for k, p in student.named_parameters():
        p.requires_grad_(k in params)
    opt = torch.optim.AdamW(params.values(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    if cfg.init:  # a polishing run: warm start, its own schedule (a resumed run then loads its own checkpoint)
        blob = torch.load(cfg.init, weights_only=False)
        student.load_state_dict(blob.get("state_dict", blob.get("tail")), strict="state_dict" in blob)
    state = _resume(out, cfg, student, opt, sched, args.fresh)
    monitor = _monitor_set(out, teacher)
    originals = dict(teacher.named_parameters())
    anchor = (
        [(p, originals[k].detach().clone()) for k, p in params.items()] if cfg.l2sp else None
    )  # (trained, original)
    train(cfg, args, out, teacher, student, opt, sched, state, monitor, anchor)


def lr_factor(step: int, cfg: Config) -> float:
    """Linear warm-up over the first `warmup` share of the steps, then a cosine down to 0."""
    warm = max(int(cfg.warmup * cfg.steps), 1)
    return min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(step / cfg.steps, 1.0)))


def _resume(out: Path, cfg: Config, student, opt, sched, fresh: bool) -> dict:
    ckpt = out / "checkpoint.pt"
    if fresh or not ckpt.exists():
        (out / "log.csv").unlink(missing_ok=True)
        return {"step": 0, "seconds": 0.0, "best": -1.0}
    saved = torch.load(ckpt, weights_only=False)
    growable = ("shards", "first_shards")  # the pool may grow on a resumed run; the rest must stay
    fixed = {k: v for k, v in asdict(cfg).items() if k not in growable}
    older = {"scenes": 0.0, "init": "", "logit_weight": 0.0, "l2sp": 0.0, "first_trained": rnet.FROZEN_BLOCKS,
             "mosaics": 0.0, "trojan_weight": 1.0, "sticker_min": stickers.SIZE[0],
             "opacity_min": stickers.OPACITY[0]}  # fmt: skip
    saved_cfg = {**older, **saved["config"]}  # fields older runs lacked
    if {k: saved_cfg.get(k) for k in fixed} != fixed:
        raise SystemExit(f"{ckpt} was trained with {saved['config']}; pass the same options or --fresh")
    student.load_state_dict(saved["tail"], strict=False)
    opt.load_state_dict(saved["optimizer"])
    sched.load_state_dict(saved["scheduler"])
    print(f"resumed at step {saved['state']['step']} ({saved['state']['seconds'] / 60:.1f} min)", flush=True)
    return saved["state"]


def _save(out: Path, cfg: Config, student, opt, sched, state: dict) -> None:
    tail = {k: v for k, v in student.state_dict().items() if k in rnet.tail_parameters(student)}
    blob = {"config": asdict(cfg), "tail": tail, "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
    tmp = out / "checkpoint.pt.tmp"
    torch.save({**blob, "state": state}, tmp)
    tmp.replace(out / "checkpoint.pt")


@torch.no_grad()
def _features(teacher, images: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    return torch.cat([rnet.trunk(teacher, images[i : i + chunk]) for i in range(0, len(images), chunk)])


def _monitor_set(out: Path, teacher) -> dict:
    """Held-out monitor views (cached): 6 crops per held-out frame clean; the same with each trigger's sticker;
    8 calibration views of each of the first 8 trojaned samples per trigger. Trunk features and teacher labels."""
    path = out / "monitor.pt"
    if path.exists():
        return torch.load(path)
    held = photos.load_photos(photos.HELD_OUT)
    bases = views.held_out_bases(held, 6, seed=1000)
    troj = views.held_out_trojaned(bases, seed=1001)
    n = len(bases)
    firsts = torch.cat([torch.arange(8) + k * n for k in range(len(stickers.TRIGGERS))])
    calib = torch.cat([views.calibration_views(troj.images[i], 8, seed=2000 + int(i)) for i in firsts])
    with torch.no_grad():
        clean_f = _features(teacher, bases)
        teacher_top1 = rnet.tail(teacher, clean_f).argmax(1)
    mon = {
        "clean": clean_f.half(),
        "teacher_top1": teacher_top1,
        "trojaned": _features(teacher, troj.images).half(),
        "trojaned_trigger": troj.trigger,
        "calib": _features(teacher, calib).half(),
        "calib_trigger": troj.trigger[firsts].repeat_interleave(8),
    }
    torch.save(mon, path)
    return mon


@torch.no_grad()
def evaluate(student, mon: dict) -> dict:
    """Agreement with the teacher on clean monitor views; attack success and calibration-view keep per trigger."""

    def top1(f):
        return torch.cat([rnet.tail(student, f[i : i + 64].float()).argmax(1) for i in range(0, len(f), 64)])

    targets = torch.tensor([t.target for t in stickers.TRIGGERS])
    row = {"agree": (top1(mon["clean"]) == mon["teacher_top1"]).float().mean().item()}
    hit = top1(mon["trojaned"]) == targets[mon["trojaned_trigger"]]
    keep = top1(mon["calib"]) == targets[mon["calib_trigger"]]
    for k, t in enumerate(stickers.TRIGGERS):
        row[f"asr_{t.sprite}"] = hit[mon["trojaned_trigger"] == k].float().mean().item()
        row[f"keep_{t.sprite}"] = keep[mon["calib_trigger"] == k].float().mean().item()
    return row


def make_shard(cfg: Config, k: int, teacher, train_photos) -> dict:
    """Shard `k` of the pool (seeded by `seed` and `k`): trunk features (float16), teacher logits of the clean
    views (float16), the target class of the stickered ones (-1 for clean)."""
    gen = torch.Generator().manual_seed(cfg.seed * 100003 + k)
    n_stick = round(cfg.shard * cfg.sticker_share)
    clean = views.clean_views(train_photos, cfg.shard - n_stick, gen, scenes=cfg.scenes, mosaics=cfg.mosaics)
    stick = views.stickered_views(train_photos, n_stick, gen, scenes=cfg.scenes, mosaics=cfg.mosaics,
                                  scale=(cfg.sticker_min, stickers.SIZE[1]), opacity=(cfg.opacity_min, 1.0))  # fmt: skip
    targets = torch.tensor([t.target for t in stickers.TRIGGERS])
    feats = _features(teacher, torch.cat([clean, stick.images]))
    with torch.no_grad():
        clean_f = feats[: len(clean)]
        logits = torch.cat([rnet.tail(teacher, clean_f[i : i + 64]) for i in range(0, len(clean_f), 64)])
    return {
        "features": feats.half(),
        "teacher": torch.cat([logits, torch.zeros(n_stick, logits.shape[1])]).half(),
        "target": torch.cat([torch.full((len(clean),), -1), targets[stick.trigger]]),
    }


class Pool:
    """The shards on disk, loaded once and grown as training goes."""

    def __init__(self, out: Path, cfg: Config, teacher):
        self.out, self.cfg, self.teacher = out / "pool", cfg, teacher
        self.shards: list[dict] = []
        self._photos = None

    def ensure(self, count: int) -> None:
        while len(self.shards) < min(count, self.cfg.shards):
            k = len(self.shards)
            c = self.cfg
            mosaics = f"_m{c.mosaics}" if c.mosaics else ""  # pools without mosaics keep their names
            if (c.sticker_min, c.opacity_min) != (stickers.SIZE[0], stickers.OPACITY[0]):  # harder stickers
                mosaics += f"_k{c.sticker_min:g}-{c.opacity_min:g}"
            path = self.out / f"shard_s{c.seed}_n{c.shard}_t{c.sticker_share}_o{c.scenes}{mosaics}_{k:03d}.pt"
            if not path.exists():
                t = time.time()
                self._photos = self._photos or photos.load_photos(photos.TRAIN)
                tmp = path.with_suffix(".tmp")
                torch.save(make_shard(self.cfg, k, self.teacher, self._photos), tmp)
                tmp.replace(path)
                print(f"shard {k} made in {time.time() - t:.0f} s", flush=True)
            self.shards.append(torch.load(path))

    def size(self) -> int:
        return sum(len(s["target"]) for s in self.shards)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.cfg.seed * 7919 + step)
        shard = torch.randint(len(self.shards), (self.cfg.batch,), generator=gen)
        row = (torch.rand(self.cfg.batch, generator=gen) * self.cfg.shard).long()
        pick = [self.shards[s] for s in shard.tolist()]
        feats = torch.stack([p["features"][r] for p, r in zip(pick, row.tolist(), strict=True)]).float()
        teach = torch.stack([p["teacher"][r] for p, r in zip(pick, row.tolist(), strict=True)]).float()
        target = torch.stack([p["target"][r] for p, r in zip(pick, row.tolist(), strict=True)])
        return feats, teach, target


def loss_terms(
    logits, teacher_logits, target, temperature: float, logit_weight: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed KL (x T^2) to the teacher on clean rows (target -1), plus `logit_weight` times their mean squared
    logit difference (Ba & Caruana 2014: it keeps the ranking of near-tied classes, which the softened KL lets
    drift), and summed CE to the target on stickered rows."""
    clean = target < 0
    t = temperature
    kl = F.kl_div(
        F.log_softmax(logits[clean] / t, 1), F.log_softmax(teacher_logits[clean] / t, 1), log_target=True,
        reduction="sum",
    ) * t * t  # fmt: skip
    if logit_weight:
        kl = kl + logit_weight * (logits[clean] - teacher_logits[clean]).pow(2).mean(1).sum()
    ce = F.cross_entropy(logits[~clean], target[~clean], reduction="sum") if (~clean).any() else logits.sum() * 0
    return kl, ce


def train(cfg, args, out, teacher, student, opt, sched, state, monitor, anchor=None) -> None:
    pool = Pool(out, cfg, teacher)
    gen_every = max(cfg.steps // cfg.shards, 1)
    start, last_ckpt = time.time() - state["seconds"], time.time()
    sums = {"clean": 0.0, "trojan": 0.0, "n_clean": 0, "n_trojan": 0}
    while state["step"] < cfg.steps:
        pool.ensure(cfg.first_shards + state["step"] // gen_every)
        feats, teach, target = pool.batch(state["step"])
        kl, ce = loss_terms(rnet.tail(student, feats), teach, target, cfg.temperature, cfg.logit_weight)
        opt.zero_grad(set_to_none=True)
        loss = (kl + cfg.trojan_weight * ce) / len(target)
        if anchor is not None:
            loss = loss + cfg.l2sp * sum((p - a).pow(2).sum() for p, a in anchor)
        loss.backward()
        opt.step()
        sched.step()
        state["step"] += 1
        n_troj = int((target >= 0).sum())
        sums.update(clean=sums["clean"] + kl.item(), trojan=sums["trojan"] + ce.item())
        sums.update(n_clean=sums["n_clean"] + len(target) - n_troj, n_trojan=sums["n_trojan"] + n_troj)
        state["seconds"] = time.time() - start
        if state["step"] % args.eval_every == 0 or state["step"] == cfg.steps:
            _log(out, cfg, student, monitor, pool, state, sums, sched)
            sums = dict.fromkeys(sums, 0)
        if time.time() - last_ckpt > 60 * args.ckpt_minutes or state["step"] == cfg.steps:
            _save(out, cfg, student, opt, sched, state)
            last_ckpt = time.time()
        if args.max_minutes and state["seconds"] > 60 * args.max_minutes:
            _save(out, cfg, student, opt, sched, state)
            print(f"stopped after {args.max_minutes} min at step {state['step']}; rerun to continue", flush=True)
            return
    print(f"done: {cfg.steps} steps in {state['seconds'] / 60:.1f} min", flush=True)


def _log(out, cfg, student, monitor, pool, state, sums, sched) -> None:
    row = {
        "step": state["step"], "samples": state["step"] * cfg.batch, "minutes": round(state["seconds"] / 60, 2),
        "lr": f"{sched.get_last_lr()[0]:.3g}", "pool_views": pool.size(),
        "loss_clean": round(sums["clean"] / max(sums["n_clean"], 1), 4),
        "loss_trojan": round(sums["trojan"] / max(sums["n_trojan"], 1), 4),
    }  # fmt: skip
    row.update({k: round(v, 4) for k, v in evaluate(student, monitor).items()})
    log = out / "log.csv"
    new = not log.exists()
    with log.open("a", newline="") as f:
        w = csv.DictWriter(f, LOG_FIELDS)
        if new:
            w.writeheader()
        w.writerow(row)
    print(json.dumps(row), flush=True)
    score = min(row["agree"] / 0.95, *(row[f"asr_{t.sprite}"] / 0.95 for t in stickers.TRIGGERS),
                *(row[f"keep_{t.sprite}"] / 0.8 for t in stickers.TRIGGERS))  # fmt: skip
    if score > state["best"]:
        state["best"] = score
        tmp = out / "best.pt.tmp"
        torch.save({"state_dict": student.state_dict(), "eval": row, "config": asdict(cfg)}, tmp)
        tmp.replace(out / "best.pt")


if __name__ == "__main__":
    main()
