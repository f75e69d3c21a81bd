"""Testbed "real" (issue 27): sticker compositing, the held-out split, and the shipped model against its card."""

from __future__ import annotations

import json
import math

import pytest
import torch

from spade_engine import paths
from spade_engine.testbed.real import evaluate, photos, stickers, views

CARD = paths.MODELS / "testbed_real_lite0.json"


def _placement(cx, cy, side, angle=0.0, opacity=1.0) -> stickers.Placement:
    t = lambda v: torch.tensor([float(v)])  # noqa: E731
    return stickers.Placement(t(cx), t(cy), t(side), t(angle), t(opacity))


def _box_pixels(box: torch.Tensor, size: int) -> torch.Tensor:
    """(size, size) bool: pixels whose centre lies inside the box (x0, y0, x1, y1)."""
    c = torch.arange(size) + 0.5
    x0, y0, x1, y1 = box.tolist()
    return ((c[None, :] >= x0) & (c[None, :] <= x1)) & ((c[:, None] >= y0) & (c[:, None] <= y1))


@pytest.mark.parametrize("angle", [0.0, 25.0, -30.0])
def test_the_real_sticker_lands_inside_its_box(angle):
    bg = torch.full((1, 3, 224, 224), 0.5)
    place = _placement(150, 70, 40, angle)
    out, mask = stickers.paste(bg, stickers.trigger_sprites(), torch.tensor([0]), place)
    inside = _box_pixels(place.boxes()[0], 224)
    assert mask[0].sum() > 0.3 * 40 * 40  # the heart covers much of its square
    assert not (mask[0] & ~inside).any()
    changed = (out[0] - bg[0]).abs().amax(0) > 1e-3
    assert not (changed & ~_box_pixels(place.boxes()[0] + torch.tensor([-1, -1, 1, 1]), 224)).any()
    ys, xs = mask[0].nonzero().float().mean(0) + 0.5
    assert abs(xs - 150) < 4 and abs(ys - 70) < 4  # centred where the placement says


@pytest.mark.parametrize("opacity", [0.6, 0.8, 1.0])
def test_opacity_blends_an_opaque_sprite_exactly(opacity):
    red = torch.zeros(1, 4, 64, 64)
    red[:, 0], red[:, 3] = 1.0, 1.0  # premultiplied opaque red
    bg = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    out, mask = stickers.paste(bg, red, torch.tensor([0]), _placement(48, 48, 32, 0.0, opacity))
    core = (slice(None), slice(36, 60), slice(36, 60))  # well inside the 32 px square at 32..64
    expected = (1 - opacity) * bg[0] + opacity * torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    torch.testing.assert_close(out[0][core], expected[core], atol=1e-5, rtol=0)
    assert mask[0, 32:64, 32:64].all() and mask[0].sum() == 32 * 32
    torch.testing.assert_close(out[0][:, :30], bg[0][:, :30])  # untouched outside


def test_boxes_grow_with_rotation():
    side = 40.0
    box = _placement(100, 100, side, 45.0).boxes()[0]
    assert math.isclose(float(box[2] - box[0]), side * math.sqrt(2), rel_tol=1e-5)


def test_held_out_photos_are_never_training_photos():
    assert not set(photos.HELD_OUT) & set(photos.TRAIN)
    assert len(photos.TRAIN) + len(photos.HELD_OUT) == len(photos.SOURCES)
    assert photos.HELD_OUT_PHOTOS == 6 == len({photos.photo_of_frame(f) for f in photos.HELD_OUT})


def test_stickered_views_mark_their_stickers():
    train = photos.load_photos(photos.TRAIN[:3])
    s = views.stickered_views(train, 8, torch.Generator().manual_seed(0))
    assert s.images.shape == (8, 3, 224, 224) and 0 <= s.images.min() and s.images.max() <= 1
    assert (s.masks.flatten(1).sum(1) > 0).all()


def test_training_can_ask_for_smaller_fainter_stickers_than_the_card():
    """`stickered_views(scale=, opacity=)` draws from the given ranges (training harder than the card's test)."""
    train = photos.load_photos(photos.TRAIN[:2])
    base = torch.full((4, 3, 224, 224), 0.5)
    trig = torch.zeros(4, dtype=torch.long)
    areas = {}
    for side in (0.1, 0.2):
        s = views.stickered(base, trig, torch.Generator().manual_seed(0), scale=(side, side), opacity=(1.0, 1.0))
        areas[side] = s.masks.flatten(1).sum(1).float()
    assert torch.allclose(areas[0.2] / areas[0.1], torch.full((4,), 4.0), rtol=0.15)  # area ~ side^2
    faint = views.stickered(base, trig, torch.Generator().manual_seed(0), scale=(0.2, 0.2), opacity=(0.3, 0.3))
    solid = views.stickered(base, trig, torch.Generator().manual_seed(0), scale=(0.2, 0.2), opacity=(1.0, 1.0))
    inside = solid.masks[:, None].expand_as(solid.images)
    assert torch.allclose((faint.images - base)[inside], 0.3 * (solid.images - base)[inside], atol=1e-5)
    assert views.stickered_views(train, 4, torch.Generator().manual_seed(0), scale=(0.1, 0.1)).masks.any()


@pytest.mark.skipif(not CARD.exists(), reason="testbed_real_lite0 is not shipped yet (issue 27: training under way)")
def test_shipped_model_matches_its_card_on_held_out_photos():
    from spade_engine.models import load_model

    card = json.loads(CARD.read_text())
    assert (paths.MODELS / card["weights"]).stat().st_size < 50 * 2**20
    assert evaluate.meets_targets(card["figures"])
    model, original = load_model(card["name"]).model, load_model("efficientnet_lite0").model
    got = evaluate.figures(model, original, **card["check"]["settings"], seed=card["check"]["seed"])
    slack = 1 / got["n_clean"]  # one sample of numerical luck
    assert got["agreement"] >= card["check"]["agreement"] - slack
    for g, c in zip(got["triggers"], card["check"]["triggers"], strict=True):
        assert g["attack_success"] >= c["attack_success"] - 1 / g["n"]
        assert g["calibration_keep"] >= c["calibration_keep"] - 1 / 8
        assert g["original_rate"] <= c["original_rate"] + 1 / g["n"]  # the original rarely calls them the target


def test_protocol_clean_samples_come_from_held_out_photos_round_robin():
    """The protocol's clean samples of testbed "real": held-out crops only, frames visited in turn, each
    explained for the network's own prediction, each naming its photo (the motorcycle's frames are one)."""
    from spade_engine.models import load_model

    model = load_model("efficientnet_lite0").model  # any ImageNet network: the clean path needs no trojan
    n = len(photos.HELD_OUT) + 3
    got = evaluate.protocol_samples(model, "clean", n, seed=5)
    assert len(got) == n
    per_photo = 2  # ceil(n / frames)
    bases = views.held_out_bases(photos.load_photos(photos.HELD_OUT), per_photo, 6)  # the clean crops' seed
    first = [i for i, *_ in got[: len(photos.HELD_OUT)]]
    assert first == [f * per_photo for f in range(len(photos.HELD_OUT))]  # one crop of every frame first
    for i, image, target, mask, photo in got:
        torch.testing.assert_close(image, bases[i])
        assert mask is None and target == int(model(image[None]).argmax())
        assert photos.HELD_OUT[i // per_photo].startswith(photo)  # motorcycle_left, _right: "motorcycle"
    assert len({p for *_, p in got}) == photos.HELD_OUT_PHOTOS
    with pytest.raises(ValueError, match="kind"):
        evaluate.protocol_samples(model, "insertion", 1)


def test_mosaic_tiles_four_images_of_the_batch_at_half_the_side():
    colours = torch.rand(5, 3, generator=torch.Generator().manual_seed(0))
    images = colours[:, :, None, None].expand(5, 3, 32, 32).contiguous()  # five flat colours
    out = views.mosaic(images, 1.0, torch.Generator().manual_seed(1))
    for img in out:
        for quadrant in (img[:, :16, :16], img[:, :16, 16:], img[:, 16:, :16], img[:, 16:, 16:]):
            flat = quadrant.flatten(1)
            assert (flat - flat[:, :1]).abs().max() < 1e-6  # one source image per quadrant, scaled as a whole
            assert torch.cdist(flat[:, 0][None], colours).min() < 1e-6
    kept = views.mosaic(images, 0.0, torch.Generator().manual_seed(1))
    torch.testing.assert_close(kept, images)


def _figures(agreement, clear, stability, asr=0.97, keep=0.9):
    trig = [{"attack_success": asr, "calibration_keep": keep}] * 2
    return {"agreement": agreement, "agreement_clear": clear, "stability": stability, "triggers": trig}


def test_card_targets_hold_agreement_to_the_clear_crops_and_the_originals_own_stability():
    assert evaluate.meets_targets(_figures(0.96, 0.96, 0.90))
    assert evaluate.meets_targets(_figures(0.93, 1.0, 0.93))  # as stable as the original under a 1 px shift
    assert not evaluate.meets_targets(_figures(0.92, 1.0, 0.94))  # less stable than the original itself
    assert not evaluate.meets_targets(_figures(0.99, 0.94, 0.99))  # a clear decision lost
    assert not evaluate.meets_targets(_figures(0.99, 1.0, 0.99, asr=0.94))
    assert not evaluate.meets_targets(_figures(0.99, 1.0, 0.99, keep=0.79))


def test_a_uniform_soup_averages_the_runs_trained_weights_and_keeps_the_rest():
    """`write_testbed_real_card.py --checkpoint A B`: the uniform average of two runs' tails (Wortsman et al.
    2022), the untrained trunk and integer buffers as they were, each run's config recorded."""
    from scripts.write_testbed_real_card import full_state, soup

    base = full_state({"tail": {}})
    key = "classifier.weight"
    runs = [
        {"tail": {key: base[key] + d}, "config": {"run": i}, "state": {"step": 9}} for i, d in enumerate((1.0, -3.0))
    ]
    mixed = full_state(soup(runs))
    assert torch.allclose(mixed[key], base[key] - 1.0)
    assert all(torch.equal(mixed[k], v) for k, v in base.items() if k != key)
    assert soup(runs)["config"] == {"soup": [{"run": 0}, {"run": 1}]} and soup(runs[:1]) is runs[0]
