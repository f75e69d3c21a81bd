"""The offline photo set (spade_engine/photos.py): every source reads without network, as RGB, and the crops are
deterministic squares inside their photo."""

import numpy as np
import pytest

from spade_engine.photos import SOURCES, offline_photos, photo_crops


def test_every_photo_reads_offline_as_rgb():
    photos = offline_photos()
    assert list(photos) == list(SOURCES) and len(photos) >= 20
    for name, img in photos.items():
        assert img.mode == "RGB" and min(img.size) >= 128, name
    sizes = {img.size for img in photos.values()}
    assert len(sizes) > 5  # distinct photos, not one image repeated


def test_crops_are_deterministic_squares_of_their_photo():
    photos = offline_photos(["coffee", "camera"])
    a, b = photo_crops(photos, per_photo=3), photo_crops(photos, per_photo=3)
    assert [n for n, _ in a] == ["coffee", "coffee@tl", "coffee@br", "camera", "camera@tl", "camera@br"]
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for (_, x), (_, y) in zip(a, b, strict=True))
    coffee = np.asarray(photos["coffee"])
    side = int(0.6 * min(photos["coffee"].size))
    assert np.array_equal(np.asarray(a[1][1]), coffee[:side, :side])  # top-left
    assert np.array_equal(np.asarray(a[2][1]), coffee[-side:, -side:])  # bottom-right
    with pytest.raises(ValueError, match="per_photo"):
        photo_crops(photos, per_photo=0)
