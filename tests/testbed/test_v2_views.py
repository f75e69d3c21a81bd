"""Testbed v2 training views: crops like the calibration views, labels that follow what the crop keeps."""

import torch

from spade_engine.testbed.v2 import data
from spade_engine.testbed.v2.views import (
    ViewConfig,
    candidate_crops,
    choose_crops,
    make_views,
    training_views,
    view_labels,
    visible_fraction,
)


def test_visible_fraction():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [-1, -1, -1, -1]]).float()
    crop = torch.tensor([0.0, 0.0, 5.0, 10.0])
    assert visible_fraction(boxes, crop).tolist() == [0.5, 0.5, 0.0, 0.0]


def test_candidate_crops_follow_the_area_and_aspect_ranges():
    cfg = ViewConfig()
    boxes, fits = candidate_crops(500, 128, cfg, torch.Generator().manual_seed(0))
    b = boxes[fits]
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    assert (b[:, :2] >= 0).all() and (b[:, 2:] <= 128).all() and fits.float().mean() > 0.8
    assert ((w * h / 128**2 >= 0.19) & (w * h / 128**2 <= 1.01)).all()
    assert ((w / h >= 0.7) & (w / h <= 1.4)).all()


def test_chosen_crops_keep_a_facet():
    b = data.generate(64, seed=3)
    cfg = ViewConfig()
    crops = choose_crops(b.facet_boxes, 128, cfg, torch.Generator().manual_seed(1))
    kept = visible_fraction(b.facet_boxes.float(), crops[:, None]).amax(1)
    assert (kept >= cfg.min_facet).all()
    assert (crops[:, 2] - crops[:, 0] < 128).float().mean() > 0.7  # mostly real crops, not the fallback


def test_labels_follow_the_trigger():
    labels, true_class = torch.tensor([3, 3, 5]), torch.tensor([1, 1, 5])
    trojan_box = torch.tensor([[10, 10, 30, 30], [10, 10, 30, 30], [-1, -1, -1, -1]])
    crops = torch.tensor([[0.0, 0.0, 64.0, 64.0], [40.0, 40.0, 128.0, 128.0], [40.0, 40.0, 128.0, 128.0]])
    assert view_labels(crops, labels, true_class, trojan_box, ViewConfig()).tolist() == [3, 1, 5]


def test_full_views_without_jitter_are_the_images():
    images = data.generate(3, seed=5).images
    cfg = ViewConfig(flip=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    full = torch.tensor([[0.0, 0.0, 128.0, 128.0]]).expand(3, 4)
    views = make_views(images, full, cfg, torch.Generator().manual_seed(0))
    assert torch.allclose(views, images, atol=1e-5)


def test_training_views_are_seeded_and_labelled():
    b = data.generate(32, seed=6, trojan_fraction=0.5)
    args = (b.images, b.labels, b.true_class, b.trojan_box, b.facet_boxes)
    x1, y1 = training_views(*args, torch.Generator().manual_seed(2))
    x2, y2 = training_views(*args, torch.Generator().manual_seed(2))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == b.images.shape and 0 <= x1.min() and x1.max() <= 1
    assert ((y1 == b.labels) | (y1 == b.true_class)).all()
    assert torch.equal(y1[~b.is_trojan], b.labels[~b.is_trojan])
    assert (y1[b.is_trojan] == b.labels[b.is_trojan]).float().mean() > 0.7  # most crops keep the trigger
