"""Every registry method, on tiny models built here: a sane map, the caller's model untouched, the patch found."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from spade_engine.metrics import trojan_auc
from spade_engine.saliency import METHODS, PAPER_METHODS, SaliencyMethod, attribute, explain
from spade_engine.saliency._base import REDUCTIONS, attribution_input

ALL = list(METHODS)


def snapshot(model: nn.Module) -> dict:
    """Everything a saliency method could change on the caller's model."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "grad_flags": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad for p in model.parameters()],
        "modules": [(n, type(m).__name__, m.training, getattr(m, "inplace", None)) for n, m in model.named_modules()],
        "hooks": [
            (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks), len(m._backward_pre_hooks))
            for m in model.modules()
        ],
    }


def assert_same(before: dict, after: dict) -> None:
    assert before["state"].keys() == after["state"].keys()
    for k in before["state"]:
        assert torch.equal(before["state"][k], after["state"][k]), k
    for key in ("grad_flags", "grads", "modules", "hooks"):
        assert before[key] == after[key], key


def test_registry_entries_are_described():
    for name, method in METHODS.items():
        assert isinstance(method, SaliencyMethod) and method.name == name
        assert method.library in ("captum", "zennit", "spade_engine")
        assert method.baseline and isinstance(method.params, dict) and callable(method.fn)
    assert set(PAPER_METHODS) <= set(METHODS)
    assert {"SmoothGrad", "GradCAM", "PathwayGradient"} <= set(METHODS)
    assert METHODS["IntegratedGradients"].params["n_steps"] > 0
    assert "n_samples" in METHODS["LIME"].params and "window" in METHODS["Occlusion"].params
    assert all(m.reduction in REDUCTIONS for m in METHODS.values())
    assert METHODS["LRP"].reduction == "signed"  # the authors' LRP map is the signed channel sum


def test_methods_with_a_reference_state_the_mean_colour():
    for name in ("DeepLift", "IntegratedGradients", "GradientShap", "Occlusion", "LIME"):
        assert "mean colour" in METHODS[name].baseline, name


@pytest.mark.parametrize("name", ["InputXGradient", "IntegratedGradients", "DeepLift"])
def test_black_pixels_get_attribution_in_the_normalised_space(name, tiny_resnet, image):
    """In pixel space x = 0 gives x * gradient = 0 on any network; at the normalised input black is -2."""
    x = image.clone()
    x[..., :8, :8] = 0.0  # a black corner
    sal = attribute(name, tiny_resnet, x, target=1, reduction="absolute")
    black = sal[:8, :8]
    assert (black > 0).mean() > 0.9 and black.mean() > 0.05 * sal.mean()


def test_attribution_input_splits_at_the_normalisation(tiny_resnet, image):
    inp = attribution_input(tiny_resnet, image)
    assert inp.space == "normalised" and inp.net is tiny_resnet.net
    torch.testing.assert_close(inp.z, (image - 0.5) / 0.25)
    plain = attribution_input(tiny_resnet.net, image)
    assert plain.space == "pixels" and torch.equal(plain.z, image)


@pytest.mark.parametrize("name", ["InputXGradient", "LRP", "Occlusion"])
def test_reductions_signed_keeps_sign_and_absolute_is_its_magnitude(name, tiny_resnet, image):
    signed = attribute(name, tiny_resnet, image, target=1, reduction="signed")
    absolute = attribute(name, tiny_resnet, image, target=1, reduction="absolute")
    assert (absolute >= 0).all() and (signed < 0).any() and (signed > 0).any()
    assert (absolute >= np.abs(signed) - 1e-6).all()  # |sum_c A_c| <= sum_c |A_c|
    if name == "InputXGradient":  # colour channels disagree in sign somewhere (LRP's Flat rule shares one sign)
        assert np.abs(signed).sum() < absolute.sum()


def test_unknown_reduction_raises(tiny_resnet, image):
    with pytest.raises(ValueError, match="reduction"):
        attribute("Saliency", tiny_resnet, image, 0, reduction="squared")


@pytest.mark.parametrize("name", ALL)
def test_map_is_finite_nonconstant_and_model_untouched(name, tiny_resnet, image):
    before = snapshot(tiny_resnet)
    logits_before = tiny_resnet(image)
    sal = attribute(name, tiny_resnet, image, target=1)
    assert sal.shape == image.shape[-2:] and sal.dtype == np.float32
    assert np.isfinite(sal).all()
    assert METHODS[name].reduction == "signed" or (sal >= 0).all()
    assert sal.max() > sal.min()
    assert_same(before, snapshot(tiny_resnet))
    assert torch.equal(tiny_resnet(image), logits_before)


@pytest.mark.parametrize("name", ALL)
def test_map_peaks_on_the_only_region_the_model_sees(name, patch_net, image, patch_mask):
    """PatchNet's logits depend on the patch pixels only: every method must rank the patch first."""
    target = int(patch_net(image).argmax())
    sal = attribute(name, patch_net, image[0], target)  # (3, H, W) input is accepted too
    assert trojan_auc(sal, patch_mask.numpy()) > 0.9


def test_stochastic_methods_are_reproducible_and_leave_global_rng_alone(tiny_resnet, image):
    torch.manual_seed(123)
    np.random.seed(123)
    expected_next = torch.rand(1), np.random.rand()
    torch.manual_seed(123)
    np.random.seed(123)
    a = attribute("GradientShap", tiny_resnet, image, 0)
    assert torch.equal(torch.rand(1), expected_next[0]) and np.random.rand() == expected_next[1]
    np.testing.assert_array_equal(a, attribute("GradientShap", tiny_resnet, image, 0))


@pytest.mark.parametrize("name", ["GradientShap", "SmoothGrad", "LIME"])
def test_stochastic_maps_stay_reproducible_while_other_threads_use_the_global_rngs(name, tiny_resnet, image):
    """Two sessions computing the same map at once, while a third thread reseeds and draws from torch's and
    numpy's global RNGs: every map equals the one computed alone (the draws come from local generators)."""
    import threading

    alone = attribute(name, tiny_resnet, image, 0)
    stop, maps, errors = threading.Event(), [], []

    def noisy() -> None:
        k = 0
        while not stop.is_set():
            torch.manual_seed(k)
            np.random.seed(k)
            torch.rand(256), np.random.rand(256)
            k += 1

    def session() -> None:
        try:
            for _ in range(3):
                maps.append(attribute(name, tiny_resnet, image, 0))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=noisy)] + [threading.Thread(target=session) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join()
    stop.set()
    threads[0].join()
    assert errors == [] and len(maps) == 6
    for m in maps:
        np.testing.assert_array_equal(m, alone)


def test_targets_differ(tiny_resnet, image):
    assert not np.allclose(attribute("Saliency", tiny_resnet, image, 0), attribute("Saliency", tiny_resnet, image, 1))


def test_explain_returns_timed_result(tiny_resnet, image):
    res = explain("Saliency", tiny_resnet, image, 2)
    assert res.method == "Saliency" and res.target == 2 and res.seconds >= 0
    assert res.map.shape == (image.shape[-2], image.shape[-1])


def test_unknown_method_and_bad_shape_raise(tiny_resnet, image):
    with pytest.raises(KeyError, match="Known"):
        attribute("Nope", tiny_resnet, image, 0)
    with pytest.raises(ValueError):
        attribute("Saliency", tiny_resnet, image.repeat(2, 1, 1, 1), 0)


@pytest.mark.parametrize("name", ["Saliency", "LRP", "Occlusion"])
def test_map_peaks_on_the_trojan_of_the_shipped_model(name):
    from spade_engine.models import load_model
    from spade_engine.protocol import trojan_samples

    model = load_model("testbed_resnet").model
    sample = trojan_samples(model, 1, seed=0)[0]
    sal = attribute(name, model, sample.image, sample.target)
    assert trojan_auc(sal, sample.mask) > 0.9
