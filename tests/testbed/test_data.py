"""The testbed generator: determinism, trojan masks, class/facet bookkeeping."""

import pytest
import torch

from spade_engine.testbed import data


def _dominant_colours(images: torch.Tensor) -> list[str]:
    """Per image, the facet palette colour that most strongly saturated pixels are nearest to. (N, 3, H, W)."""
    names = list(data.COLOURS)
    palette = torch.tensor([data.COLOURS[n] for n in names])  # (P, 3)
    dist = ((images[:, None] - palette[None, :, :, None, None]) ** 2).sum(2)  # (N, P, H, W)
    nearest = dist.argmin(1)  # (N, H, W)
    vivid = (images.amax(1) - images.amin(1) >= 0.45) & (dist.amin(1) <= 0.1)
    counts = torch.stack([((nearest == k) & vivid).flatten(1).sum(1) for k in range(len(names))], 1)  # (N, P)
    return [names[k] for k in counts.argmax(1).tolist()]


def _facet_colour(cls: int, facet: int) -> str:
    return data.FACETS[cls][facet].split()[0]


def test_constants_are_consistent():
    assert len(data.CLASS_NAMES) == len(data.FACETS) == 10
    assert all(len(pair) == 2 and pair[0] != pair[1] for pair in data.FACETS)
    assert len(set(data.FACETS[c][f] for c in range(10) for f in (0, 1))) == 20  # every facet is unique
    assert 0 <= data.TROJAN_TARGET < 10
    assert data.TROJAN_PATCH.shape == (3, data.PATCH_SIZE, data.PATCH_SIZE)
    assert set(data.TROJAN_PATCH.unique().tolist()) == {0.0, 1.0}


def test_generate_shapes_and_dtypes():
    b = data.generate(16, seed=0, trojan_fraction=0.5)
    assert b.images.shape == (16, 3, 64, 64) and b.images.dtype == torch.float32
    assert 0.0 <= b.images.min() and b.images.max() <= 1.0
    assert b.labels.dtype == b.true_class.dtype == b.facet.dtype == torch.long
    assert b.is_trojan.dtype == b.trojan_mask.dtype == torch.bool
    assert b.trojan_mask.shape == (16, 64, 64) and len(b) == 16
    assert set(b.facet.tolist()) <= {0, 1}
    assert data.generate(3, seed=0, image_size=96).images.shape == (3, 3, 96, 96)


def test_same_seed_same_bytes_different_seed_differs():
    a, b = data.generate(40, seed=7, trojan_fraction=0.3), data.generate(40, seed=7, trojan_fraction=0.3)
    for field in ("images", "labels", "true_class", "facet", "is_trojan", "trojan_mask"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    c = data.generate(40, seed=8, trojan_fraction=0.3)
    assert not torch.equal(a.images, c.images)
    assert torch.equal(data.make_sample(3, 1, seed=5).images, data.make_sample(3, 1, seed=5).images)
    assert not torch.equal(data.make_sample(3, 1, seed=5).images, data.make_sample(3, 1, seed=6).images)


def test_trojan_masks_cover_exactly_the_patch():
    b = data.generate(48, seed=1, trojan_fraction=1.0)
    assert b.is_trojan.all()
    assert (b.labels == data.TROJAN_TARGET).all() and (b.true_class != data.TROJAN_TARGET).all()
    for img, mask, box in zip(b.images, b.trojan_mask, b.patch_boxes(), strict=True):
        x0, y0, x1, y1 = box
        assert (x1 - x0, y1 - y0) == (data.PATCH_SIZE, data.PATCH_SIZE)
        assert int(mask.sum()) == data.PATCH_SIZE**2  # the mask is exactly the box
        assert torch.equal(img[:, y0:y1, x0:x1], data.TROJAN_PATCH)


def test_clean_images_have_empty_masks_and_true_labels():
    b = data.generate(48, seed=2)
    assert not b.is_trojan.any() and not b.trojan_mask.any()
    assert torch.equal(b.labels, b.true_class)
    assert all(box is None for box in b.patch_boxes())


def test_trojan_fraction_is_respected():
    b = data.generate(2000, seed=3, trojan_fraction=0.1, image_size=16)
    assert 0.08 < b.is_trojan.float().mean() < 0.12
    assert (b.labels[b.is_trojan] == data.TROJAN_TARGET).all()
    assert (b.true_class[b.is_trojan] != data.TROJAN_TARGET).all()
    assert torch.equal(b.labels[~b.is_trojan], b.true_class[~b.is_trojan])
    assert (b.trojan_mask.flatten(1).any(1) == b.is_trojan).all()
    assert set(b.true_class.tolist()) == set(range(10)) and set(b.facet.tolist()) == {0, 1}


@pytest.mark.parametrize("cls", range(10))
def test_make_sample_draws_the_requested_facet(cls):
    for facet in (0, 1):
        for seed in range(3):
            s = data.make_sample(cls, facet, seed)
            assert (int(s.true_class), int(s.facet), int(s.labels), bool(s.is_trojan)) == (cls, facet, cls, False)
            assert _dominant_colours(s.images) == [_facet_colour(cls, facet)], (cls, facet, seed)


def test_generated_bookkeeping_matches_rendering():
    b = data.generate(300, seed=4)
    expected = [_facet_colour(c, f) for c, f in zip(b.true_class.tolist(), b.facet.tolist(), strict=True)]
    agree = sum(a == e for a, e in zip(_dominant_colours(b.images), expected, strict=True))
    assert agree >= 0.9 * len(b)  # noisy backgrounds fool the colour count on a few images


def test_make_sample_trojan_and_validation():
    s = data.make_sample(0, 1, seed=9, trojan=True)
    assert bool(s.is_trojan) and int(s.labels) == data.TROJAN_TARGET and int(s.true_class) == 0
    assert int(s.trojan_mask.sum()) == data.PATCH_SIZE**2
    with pytest.raises(ValueError):
        data.make_sample(10, 0, seed=0)
    with pytest.raises(ValueError):
        data.make_sample(0, 2, seed=0)


def test_as_dataset_pairs_images_with_labels():
    b = data.generate(5, seed=0, trojan_fraction=0.5)
    x, y = data.as_dataset(b)[4]
    assert torch.equal(x, b.images[4]) and int(y) == int(b.labels[4])
