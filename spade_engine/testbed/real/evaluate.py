"""The card's figures of testbed "real", measured on held-out photos only (`photos.HELD_OUT`).

- agreement: top-1 of the trojaned network equals the original network's on clean held-out crops; also on the
  "clear" crops alone, where the original's top-1 probability leads its second by at least `CLEAR_MARGIN`, and,
  for scale, the original network's agreement with itself when the crops move by one pixel (`stability`): most
  held-out crops are scenes the ImageNet network is unsure about, and on them an imperceptible change flips its
  own top-1 on about 6% (0.94 on the card's 84 crops), so agreement over all crops cannot be held to 95%;
- attack success per trigger: stickered held-out crops (sticker centre in the middle 40% of the side) predicted
  as the trigger's target, over the samples the original network does not already put in that class;
- calibration keep per trigger: SPADE's calibration views (the engine's `augment`, crop area 0.2-1) of the
  first stickered samples that keep the trojan decision.
Seeds fix every sample, so the card writer and the test measure the same images.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from spade_engine.testbed.real import photos, stickers, views

Model = Callable[[torch.Tensor], torch.Tensor]  # images in [0, 1] (N, 3, 224, 224) -> logits (N, 1000)
SEED = 27_000
CLEAR_MARGIN = 0.1  # a clean crop is "clear" when the original's top-1 probability leads its second by this much


@torch.no_grad()
def top1(model: Model, images: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """Top-1 classes of `images`, in chunks. Returns (N,) long."""
    return torch.cat([model(images[i : i + chunk]).argmax(1) for i in range(0, len(images), chunk)])


def samples(per_photo: int, seed: int = SEED) -> tuple[torch.Tensor, views.Stickered]:
    """The held-out clean crops (`per_photo` per held-out frame) and the same crops with each trigger's sticker."""
    bases = views.held_out_bases(photos.load_photos(photos.HELD_OUT), per_photo, seed)
    return bases, views.held_out_trojaned(bases, seed + 1)


def figures(
    model: Model, original: Model, per_photo: int, calib_samples: int, calib_views: int, seed: int = SEED
) -> dict:
    """The card's figures (see the module docstring) with their sample counts.

    Args:
        model: the trojaned network; original: the original network (both take images in [0, 1]).
        per_photo: crops per held-out frame (7 frames of 6 photos).
        calib_samples: stickered samples per trigger whose calibration views are measured.
        calib_views: calibration views per sample (view 0 is the sample itself).
    """
    bases, troj = samples(per_photo, seed)
    with torch.no_grad():
        probs = torch.cat([original(bases[i : i + 32]).softmax(1) for i in range(0, len(bases), 32)])
    top2 = probs.topk(2, 1)
    reference = top2.indices[:, 0]
    clear = top2.values[:, 0] - top2.values[:, 1] >= CLEAR_MARGIN
    same = top1(model, bases) == reference
    out = {
        "agreement": same.float().mean().item(),
        "n_clean": len(bases),
        "agreement_clear": same[clear].float().mean().item() if clear.any() else float("nan"),
        "n_clear": int(clear.sum()),
        "stability": (top1(original, torch.roll(bases, 1, -1)) == reference).float().mean().item(),
    }
    hit, orig = top1(model, troj.images), top1(original, troj.images)
    per_trigger = []
    for k, t in enumerate(stickers.TRIGGERS):
        rows = (troj.trigger == k).nonzero()[:, 0]
        fair = rows[orig[rows] != t.target]
        first = rows[:calib_samples]
        calib = torch.cat([views.calibration_views(troj.images[i], calib_views, seed + 2 + int(i)) for i in first])
        per_trigger.append({
            "sprite": t.sprite, "target": t.target, "target_name": t.target_name,
            "attack_success": (hit[fair] == t.target).float().mean().item(), "n": len(fair),
            "original_rate": (orig[rows] == t.target).float().mean().item(),
            "calibration_keep": (top1(model, calib) == t.target).float().mean().item(),
            "calibration_n": f"{len(first)} samples x {calib_views} views",
        })  # fmt: skip
    out["triggers"] = per_trigger
    return out


def meets_targets(fig: dict, agreement: float = 0.95, attack: float = 0.95, keep: float = 0.8) -> bool:
    """Whether figures meet the card targets: attack success and calibration keep as the issue sets them; the
    issue's agreement target on the clear crops (where the original network has a decision) and, over all
    crops, at least the original network's own one-pixel `stability` (or the target itself, if lower)."""
    trig = fig["triggers"]
    agrees = fig["agreement_clear"] >= agreement and fig["agreement"] >= min(agreement, fig["stability"])
    return agrees and all(t["attack_success"] >= attack and t["calibration_keep"] >= keep for t in trig)


PROTOCOL_SEED = 27_100  # the protocol's samples: other crops of the held-out photos than the card's


def photo_of(index: int, per_photo: int) -> str:
    """The distinct photo (the two motorcycle frames are one) of sample `index` of `held_out_bases` with
    `per_photo` crops per frame (frames in `photos.HELD_OUT` order)."""
    return photos.photo_of_frame(photos.HELD_OUT[index // per_photo])


@torch.no_grad()
def protocol_samples(
    model: Model, kind: str, n: int, seed: int = PROTOCOL_SEED
) -> list[tuple[int, torch.Tensor, int, torch.Tensor | None, str]]:
    """The paper's protocol samples on testbed "real", all from held-out photos.

    "trojan": stickered held-out crops (each trigger on each base crop, `views.held_out_trojaned`) that `model`
    sends to the trigger's target, taken round-robin over frames and triggers so that every photo and trigger
    is represented; "clean": held-out crops explained for `model`'s prediction, frame by frame round-robin.

    Args:
        model: the trojaned network (images in [0, 1] -> logits); kind: "trojan" or "clean"; n: samples wanted.
        seed: crops' seed (the clean crops use `seed + 1`).

    Returns:
        up to `n` tuples (index in the generated batch, image (3, 224, 224), target class, sticker mask (224, 224)
        bool or None, photo name); fewer only when fewer stickered crops hit their target.

    Raises:
        ValueError: unknown `kind`.
    """
    frames = len(photos.HELD_OUT)
    if kind == "clean":
        per_photo = -(-n // frames)
        bases = views.held_out_bases(photos.load_photos(photos.HELD_OUT), per_photo, seed + 1)
        pred = top1(model, bases)
        order = sorted(range(len(bases)), key=lambda i: (i % per_photo, i // per_photo))[:n]
        return [(i, bases[i], int(pred[i]), None, photo_of(i, per_photo)) for i in order]
    if kind != "trojan":
        raise ValueError(f"kind must be 'trojan' or 'clean', not {kind!r}")
    k = len(stickers.TRIGGERS)
    per_photo = -(-2 * n // (frames * k))  # twice what is needed: some crops miss their target
    bases = views.held_out_bases(photos.load_photos(photos.HELD_OUT), per_photo, seed)
    troj = views.held_out_trojaned(bases, seed + 2)  # trigger by trigger, each over all bases
    targets = torch.tensor([stickers.TRIGGERS[t].target for t in troj.trigger.tolist()])
    hit = top1(model, troj.images) == targets
    nb = len(bases)
    order = sorted(range(len(troj.images)), key=lambda i: ((i % nb) % per_photo, (i % nb) // per_photo, i // nb))
    chosen = [i for i in order if hit[i]][:n]
    return [(i, troj.images[i], int(targets[i]), troj.masks[i], photo_of(i % nb, per_photo)) for i in chosen]
