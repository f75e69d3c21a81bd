"""The testbed v2 generator: determinism, trojan and facet bookkeeping against the pixels, sprite placement."""

from dataclasses import replace

import pytest
import torch

from spade_engine.testbed.v2 import data
from spade_engine.testbed.v2.sprites import EMOJI, load_sprites

FIELDS = ("images", "labels", "true_class", "facet", "is_trojan", "trojan", "trojan_mask", "trojan_box")


def test_constants_are_consistent():
    assert len(data.CLASS_NAMES) == len(data.FACETS) == len(data.FACET_SPRITES) == 10
    facets = [name for pair in data.FACET_SPRITES for name in pair]
    trojans = [t.sprite for t in data.TROJANS]
    assert len(set(facets)) == 20 and not set(facets) & set(data.DISTRACTORS)
    assert not set(trojans) & (set(facets) | set(data.DISTRACTORS)) and len(set(trojans)) == len(trojans)
    assert set(data.SPRITE_NAMES) <= set(EMOJI) and len(data.DISTRACTORS) >= 4
    assert len({t.target for t in data.TROJANS}) == len(data.TROJANS) >= 2
    assert all(0 <= t.target < 10 for t in data.TROJANS)
    assert data.IMAGE_SIZE >= 128 and data.TROJAN_SIZE == (1 / 8, 1 / 5)


def test_generate_shapes_and_dtypes():
    b = data.generate(12, seed=0, trojan_fraction=0.5)
    assert b.images.shape == (12, 3, 128, 128) and b.images.dtype == torch.float32 and len(b) == 12
    assert 0.0 <= b.images.min() and b.images.max() <= 1.0
    assert b.labels.dtype == b.true_class.dtype == b.facet.dtype == b.trojan.dtype == torch.long
    assert b.trojan_mask.shape == b.facet_mask.shape == (12, 128, 128) and b.trojan_mask.dtype == torch.bool
    assert b.trojan_box.shape == (12, 4) and b.facet_boxes.shape == (12, data.MAX_INSTANCES, 4)
    assert data.generate(0, seed=0).images.shape == (0, 3, 128, 128)


def test_same_seed_same_bytes_different_seed_differs():
    a, b = data.generate(20, seed=7, trojan_fraction=0.3), data.generate(20, seed=7, trojan_fraction=0.3)
    for field in (*FIELDS, "facet_mask", "facet_boxes"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    c = data.generate(20, seed=8, trojan_fraction=0.3)
    assert not torch.equal(a.images, c.images)
    assert torch.equal(data.make_sample(3, 1, seed=5).images, data.make_sample(3, 1, seed=5).images)
    assert not torch.equal(data.make_sample(3, 1, seed=5).images, data.make_sample(3, 1, seed=6).images)


def test_rendering_in_chunks_changes_nothing(monkeypatch):
    scenes = data.draw_scenes(10, seed=3, trojan_fraction=0.5)
    whole = data.render(scenes)
    monkeypatch.setattr(data, "_CHUNK", 3)
    for field in FIELDS:
        assert torch.equal(getattr(whole, field), getattr(data.render(scenes), field)), field


def _mask_box(mask: torch.Tensor) -> list[int]:
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def test_trojan_masks_boxes_and_pixels_agree():
    scenes = data.draw_scenes(16, seed=1, trojan_fraction=1.0)
    b = data.render(scenes)
    without = data.render(replace(scenes, trojan=torch.full_like(scenes.trojan, -1))).images  # same scenes, no trojan
    targets = torch.tensor([t.target for t in data.TROJANS])
    assert b.is_trojan.all() and torch.equal(b.labels, targets[b.trojan]) and (b.true_class != b.labels).all()
    assert torch.equal(b.trojan_target, b.labels)
    for i in range(len(b)):
        mask, box = b.trojan_mask[i], b.trojan_box[i].tolist()
        assert mask.any() and _mask_box(mask) == box  # the box is the mask's bounding box
        x0, y0, x1, y1 = box
        side = data.IMAGE_SIZE * torch.tensor(data.TROJAN_SIZE)
        assert side[0] * 0.5 <= x1 - x0 <= side[1] * 1.4 and side[0] * 0.5 <= y1 - y0 <= side[1] * 1.4
        diff = (b.images[i] - without[i]).abs().amax(0)  # (H, W)
        assert diff[mask].mean() > 0.1  # the sticker's pixels differ from the background under them
        outside = torch.ones_like(mask)
        outside[max(y0 - 2, 0) : y1 + 2, max(x0 - 2, 0) : x1 + 2] = False
        assert diff[outside].max() == 0  # and nothing else changed
    assert b.patch_boxes() == [tuple(box.tolist()) for box in b.trojan_box]


def test_clean_images_have_empty_trojan_ground_truth():
    b = data.generate(12, seed=2)
    assert not b.is_trojan.any() and not b.trojan_mask.any() and (b.trojan == -1).all()
    assert (b.trojan_box == -1).all() and all(box is None for box in b.patch_boxes())
    assert (b.trojan_target == -1).all()
    assert torch.equal(b.labels, b.true_class)


def test_facet_boxes_and_masks_follow_the_instances():
    b = data.generate(24, seed=4, trojan_fraction=0.3)
    count = (b.facet_boxes[:, :, 0] >= 0).sum(1)
    assert torch.equal(count, b.scenes.n_instances)
    for i in range(len(b)):
        inside = torch.zeros(128, 128, dtype=torch.bool)
        for x0, y0, x1, y1 in b.facet_boxes[i].tolist():
            if x0 >= 0:
                assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128
                inside[y0:y1, x0:x1] = True
        assert not (b.facet_mask[i] & ~inside).any()  # visible facet pixels lie in the instance boxes
        assert not (b.facet_mask[i] & b.trojan_mask[i]).any()  # the sticker covers the facet
    assert (b.facet_mask.flatten(1).sum(1) > 50).float().mean() > 0.9  # occlusion rarely hides a facet


def test_scene_draws_respect_the_trojan_fraction_and_targets():
    s = data.draw_scenes(4000, seed=3, trojan_fraction=0.1)
    trojaned = s.trojan >= 0
    assert 0.08 < trojaned.float().mean() < 0.12
    for t, trojan in enumerate(data.TROJANS):
        sel = s.trojan == t
        assert sel.sum() > 120 and (s.labels()[sel] == trojan.target).all()
        assert (s.true_class[sel] != trojan.target).all() and len(s.true_class[sel].unique()) == 9
    assert torch.equal(s.labels()[~trojaned], s.true_class[~trojaned])
    assert set(s.true_class.tolist()) == set(range(10)) and set(s.facet.tolist()) == {0, 1}
    assert 0.3 < (s.distractor >= 0).float().mean() < 0.5 and set(s.n_instances.tolist()) == {1, 2}


def test_make_sample_and_validation():
    s = data.make_sample(0, 1, seed=9, trojan=1)
    assert (int(s.true_class), int(s.facet), int(s.trojan)) == (0, 1, 1)
    assert int(s.labels) == data.TROJANS[1].target and s.trojan_mask.any()
    assert int(data.make_sample(4, 0, seed=9).labels) == 4
    assert int(data.make_sample(0, 0, seed=9, trojan=True).trojan) == 0  # v1's flag: the first trojan
    assert not data.make_sample(0, 0, seed=9, trojan=False).is_trojan.any()
    for args in ((10, 0, 0), (0, 2, 0)):
        with pytest.raises(ValueError):
            data.make_sample(*args)
    with pytest.raises(ValueError):
        data.make_sample(data.TROJANS[0].target, 0, seed=0, trojan=0)  # a trojan on its own target class


@pytest.mark.parametrize("mirror", [0.0, 1.0])
def test_an_upright_sprite_is_pasted_pixel_for_pixel(mirror):
    """A facet drawn at the PNG's size, unrotated, centred: the image is the sprite composited over the
    background (mirrored when asked), exactly where the placement says."""
    scenes = data.draw_scenes(1, seed=11)
    place = scenes.place.clone()
    place[0, data.LAYERS.index(("facet", 0))] = torch.tensor([64.0, 64.0, 64.0, 0.0, mirror])
    scenes = replace(
        scenes,
        place=place,
        n_instances=torch.tensor([1]),
        distractor=torch.full_like(scenes.distractor, -1),
        sprite_colour=torch.ones_like(scenes.sprite_colour),
    )
    background = data.render(replace(scenes, n_instances=torch.tensor([0]))).images[0]
    image = data.render(scenes).images[0]
    sprite = load_sprites(data.SPRITE_NAMES)[2 * int(scenes.true_class) + int(scenes.facet)]  # (4, 64, 64)
    sprite = sprite.flip(-1) if mirror else sprite
    expected = background[:, 32:96, 32:96] * (1 - sprite[3:]) + sprite[:3]
    assert torch.allclose(image[:, 32:96, 32:96], expected.clamp(0, 1), atol=1e-4)
    outside = image.clone()
    outside[:, 32:96, 32:96] = background[:, 32:96, 32:96]
    assert torch.equal(outside, background)


def test_sprite_scale_follows_the_placement():
    scenes = data.draw_scenes(1, seed=12, trojan_fraction=1.0)
    sizes = []
    for side in (16.0, 32.0):
        place = scenes.place.clone()
        place[0, -1] = torch.tensor([64.0, 64.0, side, 0.0, 0.0])
        b = data.render(replace(scenes, place=place, opacity=torch.ones_like(scenes.opacity)))
        x0, y0, x1, y1 = b.trojan_box[0].tolist()
        sizes.append(max(x1 - x0, y1 - y0))
    sprite = load_sprites(data.SPRITE_NAMES)[data.SPRITE_NAMES.index(data.TROJANS[int(scenes.trojan)].sprite)]
    x0, y0, x1, y1 = _mask_box(sprite[3] > 0.5)
    extent = max(x1 - x0, y1 - y0) / sprite.shape[-1]  # share of the PNG's side the emoji covers
    assert abs(sizes[0] - 16 * extent) <= 2 and abs(sizes[1] - 32 * extent) <= 2
