"""Testbed v2 sprites: shipped as PNGs, loaded offline without any font, small, and credited."""

import builtins

import torch
from PIL import ImageFont

from spade_engine.testbed.v2 import data
from spade_engine.testbed.v2.sprites import EMOJI, SPRITE_DIR, SPRITE_SIZE, _load, load_sprites

LICENSE = SPRITE_DIR.parent / "LICENSE.md"


def test_every_sprite_is_shipped_small_and_credited():
    files = sorted(SPRITE_DIR.glob("*.png"))
    assert {p.stem for p in files} == set(EMOJI) >= set(data.SPRITE_NAMES)
    assert sum(p.stat().st_size for p in files) < 1_000_000
    text = LICENSE.read_text()
    assert "Apache" in text and "SIL" in text and "2013-2017 Google Inc." in text
    assert all(f"`{p.name}`" in text for p in files)


def test_sprites_load_offline_without_a_font(monkeypatch):
    _load.cache_clear()

    def no_font(*args, **kwargs):
        raise AssertionError("a font was opened")

    real_import = builtins.__import__

    def no_skimage(name, *args, **kwargs):  # sprites need neither scikit-image nor a font
        if name.startswith("skimage"):
            raise AssertionError("scikit-image was imported")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(ImageFont, "truetype", no_font)
    monkeypatch.setattr(builtins, "__import__", no_skimage)
    bank = load_sprites(data.SPRITE_NAMES)
    assert bank.shape == (len(data.SPRITE_NAMES), 4, SPRITE_SIZE, SPRITE_SIZE) and bank.dtype == torch.float32
    _load.cache_clear()


def test_sprites_are_colourful_premultiplied_and_opaque_in_the_middle():
    bank = load_sprites(data.SPRITE_NAMES)  # (K, 4, S, S)
    rgb, alpha = bank[:, :3], bank[:, 3:]
    assert (rgb <= alpha + 1e-6).all()  # premultiplied
    assert (alpha[:, 0].flatten(1).mean(1) > 0.25).all()  # every sprite covers a good part of its square
    centre = alpha[:, 0, 24:40, 24:40].flatten(1).mean(1)
    assert (centre > 0.5).float().mean() > 0.8
    for trojan in data.TROJANS:
        sprite = bank[data.SPRITE_NAMES.index(trojan.sprite)]
        opaque = sprite[3] > 0.5
        rgb = sprite[:3][:, opaque] / sprite[3][opaque]  # (3, n) straight colour of the opaque pixels
        assert (rgb.amax(0) - rgb.amin(0)).mean() > 0.25  # colourful stickers, not black and white
