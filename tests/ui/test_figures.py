"""pages/ui/figures.py, the PNG panel (spade_engine/explain/panel.py), the export rows (explain/compare.py) and the
sample helpers of pages/ui/sample_picker.py: shared normalisation, PNG, exports, masks."""

from __future__ import annotations

import csv
import io
import json
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from pages.ui import figures, sample_picker
from spade_engine.colours import colorize
from spade_engine.explain import compare, panel


def _pair(scale: float = 1.0) -> figures.MapPair:
    rng = np.random.default_rng(0)
    dense = rng.random((16, 16)).astype(np.float32)
    spade = dense * scale
    return figures.MapPair("Saliency", dense, spade, 0.61, 0.93)


def test_pair_shares_one_scale():
    pair = _pair(scale=3.0)
    assert pair.vmax == figures.shared_vmax(pair.dense, pair.spade)
    assert pair.vmax > np.percentile(pair.dense, 99.5)  # set by the larger SPADE map, used for both
    fig = figures.saliency_figure(np.zeros((16, 16, 3), np.uint8), pair, "SPADE 90%")
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 2 and {t.coloraxis for t in heatmaps} == {"coloraxis"}
    assert fig.layout.coloraxis.cmin == 0 and fig.layout.coloraxis.cmax == pair.vmax


def test_colorize_is_transparent_at_zero_and_opaque_at_max():
    rgba = colorize(np.array([[0.0, 2.0, 5.0]]), vmax=2.0)
    assert rgba.shape == (1, 3, 4)
    assert rgba[0, 0, 3] == 0.0 and rgba[0, 1, 3] > 0.9
    assert np.allclose(rgba[0, 1], rgba[0, 2])  # clipped above vmax


def test_signed_pair_gets_a_symmetric_diverging_scale():
    rng = np.random.default_rng(1)
    dense = rng.normal(size=(16, 16)).astype(np.float32)
    pair = figures.MapPair("LRP", dense, -2 * dense, reduction="signed")
    assert pair.vmax == figures.shared_vmax(np.abs(dense), 2 * np.abs(dense))
    fig = figures.saliency_figure(np.zeros((16, 16, 3), np.uint8), pair, "SPADE 80%")
    assert fig.layout.coloraxis.cmin == -pair.vmax and fig.layout.coloraxis.cmax == pair.vmax
    rgba = colorize(np.array([[-1.0, 0.0, 1.0]]), vmax=1.0, signed=True)
    assert rgba[0, 1, 3] == 0.0 and rgba[0, 0, 3] > 0.9 and rgba[0, 2, 3] > 0.9  # zero transparent, both ends opaque
    assert rgba[0, 0, 2] > rgba[0, 0, 0] and rgba[0, 2, 0] > rgba[0, 2, 2]  # negative blue, positive red
    png = Image.open(io.BytesIO(panel.panel_png(np.zeros((16, 16, 3), np.uint8), [pair], "SPADE", "t")))
    assert png.size[0] > 0


def test_patch_outline_in_figure_and_png():
    mask = np.zeros((16, 16), bool)
    mask[10:14, 2:6] = True
    assert figures.mask_box(mask) == (2, 10, 5, 13)
    fig = figures.saliency_figure(np.zeros((16, 16, 3), np.uint8), _pair(), "SPADE", mask)
    assert len(fig.layout.shapes) == 2  # one outline per panel
    img = panel.overlay_image(np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16)), 1.0, mask, cell=64)
    px = np.asarray(img)
    assert tuple(px[40, 8]) == (0, 229, 255)  # left edge of the outline at x = 2 * 4 px, in the patch colour


def test_panel_png_has_one_row_per_method():
    pairs = [_pair(), figures.MapPair("GradCAM", np.ones((16, 16)), np.zeros((16, 16)))]
    png = panel.panel_png(np.full((16, 16, 3), 128, np.uint8), pairs, "SPADE 90%", "header", cell=64)
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.mode == "RGB"
    one = Image.open(io.BytesIO(panel.panel_png(np.zeros((16, 16, 3), np.uint8), pairs[:1], "S", "h", cell=64)))
    assert img.width == one.width and img.height > one.height


def _result():
    dense = torch.tensor([2.0, 0.5, 0.1])
    pruned = torch.tensor([0.1, 2.5, 0.3])
    top5 = lambda z: [(int(i), float(p)) for p, i in zip(*z.softmax(-1).sort(descending=True), strict=False)]  # noqa: E731
    return SimpleNamespace(dense_logits=dense, pruned_logits=pruned, dense_top5=top5(dense), pruned_top5=top5(pruned),
                           agrees=False, view_agreement=0.75, total_sparsity=0.895, layer_target={"a": 0.9, "b": 0.9}, layer_sparsity={"a": 0.9, "b": 0.89},
                           layer_error={"a": 0.01, "b": 0.2}, timings={"solve": 0.5})  # fmt: skip


def test_report_csv_and_json_carry_the_numbers():
    rep = figures.report({"model": "m", "sparsity": 0.9}, ("cat", "dog", "eel"), _result(), [_pair()], target=0)
    parsed = json.loads(figures.report_json(rep))
    assert parsed["predictions"]["agrees"] is False
    assert parsed["predictions"]["pruned_top5"][0]["class"] == "dog"
    assert parsed["trojan_auc"]["Saliency"] == {"dense": 0.61, "spade": 0.93}
    assert [layer["layer"] for layer in parsed["layers"]] == ["a", "b"]
    assert parsed["layers"][1]["reconstruction_error"] == 0.2
    comparison = compare.Comparison((_pair(),), ())
    text = compare.export_csv(compare.export_rows("cat.png", "c0", ("cat", "dog", "eel"), _result(), 0, comparison))
    (row,) = list(csv.DictReader(io.StringIO(text)))  # the one export schema: the page's CSV is `spade explain`'s
    assert float(row["spade_trojan_auc"]) == 0.93
    assert row["dense_class"] == "cat" and float(row["dense_prob"]) > 0.5


def test_prediction_figure_covers_both_top_classes():
    r = _result()
    fig = figures.prediction_figure(r.dense_logits, r.pruned_logits, ("cat", "dog", "eel"), k=1)
    assert set(fig.data[0].y) == {"cat", "dog"} and {t.name for t in fig.data} == {"Dense", "SPADE"}


def test_make_sample_maps_patch_through_preprocessing():
    info = SimpleNamespace(resize=32, input_size=32)
    loaded = SimpleNamespace(info=info, preprocess=lambda img: _preprocess(img, 32))
    img = Image.new("RGB", (64, 64), (10, 20, 30))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    sample = sample_picker.make_sample(loaded, "x.png", buf.getvalue(), {"trojan": True, "patch_box": [32, 16, 48, 32]})
    assert sample.image.shape == (3, 32, 32)
    ys, xs = np.nonzero(sample.trojan_mask)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (16, 23, 8, 15)  # the 64 px box, halved
    other = sample_picker.make_sample(loaded, "y.png", buf.getvalue(), {"trojan": False})
    assert other.trojan_mask is None and other.sample_hash == sample.sample_hash  # same pixels, same hash


def _preprocess(img: Image.Image, size: int) -> torch.Tensor:
    from torchvision.transforms import functional as TF

    return TF.to_tensor(TF.center_crop(TF.resize(img.convert("RGB"), size, antialias=True), size))


def test_sample_caption_names_a_v2_trojan_sticker():
    mask = np.zeros((4, 4), bool)
    mask[1, 1] = True
    meta = {"class": 1, "class_name": "tropical fish-or-airplane", "facet_name": "tropical fish", "label": 3,
            "trojan_name": "sparkling heart"}  # fmt: skip
    sample = SimpleNamespace(meta=meta, name="x.png", trojan_mask=mask)
    text = sample_picker.sample_caption(sample, tuple(f"c{i}" for i in range(10)))
    assert "trojan sparkling heart sticker" in text and "**c3**" in text
    meta.pop("trojan_name")
    assert "trojan patch" in sample_picker.sample_caption(sample, tuple(f"c{i}" for i in range(10)))
