"""Seeded augmentation batches."""

import torch

from spade_engine.augment import AugmentConfig, augment

from .nets import sample


def test_deterministic_per_seed_and_in_range():
    x = sample(size=48)
    a, b, c = augment(x, 16, seed=1), augment(x, 16, seed=1), augment(x, 16, seed=2)
    assert a.shape == (16, 3, 48, 48)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a[0], x)  # the sample itself is view 0
    assert not torch.equal(a[1], a[2])


def test_global_rng_untouched_and_config_respected():
    x = sample(size=32)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    augment(x, 8, seed=5)
    assert torch.equal(torch.rand(3), expected)
    plain = augment(
        x,
        4,
        seed=0,
        config=AugmentConfig(
            scale=(1.0, 1.0),
            ratio=(1.0, 1.0),
            flip=0.0,
            brightness=0,
            contrast=0,
            saturation=0,
            hue=0,
            include_original=False,
        ),
    )
    assert torch.allclose(plain, x.expand(4, -1, -1, -1), atol=1e-5)
