"""Stimulus pre-computation on a tiny seeded model: occlusion references, dense vs SPADE explanations, caching."""

import numpy as np
import pytest
import torch
from torch import nn

from spade_engine.models import Classifier, LoadedModel, ModelInfo
from spade_engine.study import StudyDesign, StudyStore
from spade_engine.study.render import from_png
from spade_engine.study.samples import neuron_items, patch_items
from spade_engine.study.stimuli import choose_patches, occlusion_scores, precompute


class QuadrantModel(nn.Module):
    """Class 0's logit is the red mass of the top-left quadrant; class 1's the blue mass of the rest."""

    def forward(self, x):
        h, w = x.shape[-2:]
        top_left = x[:, 0, : h // 2, : w // 2].sum(dim=(1, 2))
        return torch.stack([top_left, x[:, 2].sum(dim=(1, 2)) - x[:, 2, : h // 2, : w // 2].sum(dim=(1, 2))], 1)


def tiny_loaded(name: str = "tiny", size: int = 32) -> LoadedModel:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 10),
    )  # fmt: skip
    info = ModelInfo(
        name, name, "testbed", "tiny", size, size, tuple(f"class {i}" for i in range(10)), (0.5,) * 3, (0.25,) * 3
    )
    model = Classifier(net, info.mean, info.std).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(info, model)


def test_occlusion_finds_the_cell_that_carries_the_logit():
    x = torch.full((3, 16, 16), 0.2)
    x[0, 2:6, 1:5] = 1.0  # red blob inside cell (0, 0) of a 4x4 grid
    scores = occlusion_scores(QuadrantModel(), x, target=0, grid=4)
    assert scores.shape == (4, 4)
    assert scores.flatten().argmax().item() == 0
    assert scores[2:, :].abs().max() == 0 and scores[:, 2:].abs().max() == 0  # cells outside the quadrant: no effect
    import random

    top, other = choose_patches(scores, random.Random(0))
    assert top == (0, 0) and other != top and scores[other] <= scores.flatten().median()


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("SPADE_CACHE_DIR", str(tmp_path / "cache"))
    s = StudyStore(str(tmp_path / "s.db"))
    yield s
    s.dispose()


def test_precompute_patch_study_all_conditions(store):
    design = StudyDesign("t", "tiny", "patch", ("dense_vis", "spade_vis", "dense_saliency", "spade_saliency", "none"),
                         tuple(patch_items(2, seed=1)), trials_per_participant=4, sparsity=0.8, n_aug=8,
                         saliency_method="Saliency", vis_steps=3, patch_grid=4)  # fmt: skip
    study_id = store.create_study(design)
    calls = []
    n = precompute(
        store, study_id, progress=lambda d, t, m: calls.append((d, t)), load=lambda name, dev: tiny_loaded(name)
    )
    assert n == 10 and calls[-1] == (10, 10)
    assert store.missing_stimuli(study_id) == [] and store.get_study(study_id).status == "ready"
    loaded = tiny_loaded()
    for item in range(2):
        stims = {c: store.get_stimulus(study_id, item, c) for c in design.conditions}
        ref = stims["none"]
        occ = ref.meta["occlusion"]
        assert occ[ref.reference] > occ[1 - ref.reference]  # the reference patch matters more on the dense model
        assert ref.meta["target"] == int(loaded.model(_sample(loaded, design, item)).argmax())
        assert ref.explanation_png is None and all(stims[c].explanation_png for c in design.conditions if c != "none")
        assert len({s.reference for s in stims.values()}) == 1 and len({s.image_png for s in stims.values()}) == 1
        assert not np.array_equal(
            _arr(stims["dense_saliency"].explanation_png), _arr(stims["spade_saliency"].explanation_png)
        )
        assert not np.array_equal(_arr(stims["dense_vis"].explanation_png), _arr(stims["spade_vis"].explanation_png))
        assert {"pruned_agrees_vis", "pruned_agrees_saliency"} <= set(stims["spade_saliency"].meta)
    assert precompute(store, study_id, load=lambda name, dev: pytest.fail("all stimuli were cached")) == 0


def test_precompute_neuron_study_reference_is_the_more_active_image(store):
    items = neuron_items(3, seed=2, neurons=[{"layer": "net.2", "channel": 5}, {"layer": "logits", "channel": 3}])
    design = StudyDesign("n", "tiny", "neuron", ("dense_vis", "none"), tuple(items), 4, vis_steps=3, n_aug=8)
    study_id = store.create_study(design)
    precompute(store, study_id, load=lambda name, dev: tiny_loaded(name))
    for item in range(3):
        stim = store.get_stimulus(study_id, item, "dense_vis")
        acts = stim.meta["activations"]
        assert acts[stim.reference] >= acts[1 - stim.reference] and acts[0] != acts[1]
        assert stim.option_a_png != stim.option_b_png


def _sample(loaded, design, item):
    from spade_engine.study.samples import load_sample

    return load_sample(design.items[item]["sample"], loaded).unsqueeze(0)


def _arr(png: bytes) -> np.ndarray:
    return np.asarray(from_png(png))


def test_stimuli_prune_with_the_solver_the_model_card_recommends():
    from spade_engine.models import load_model
    from spade_engine.study.stimuli import prune_config

    for name, solver in (("testbed_v2_resnet", "obc"), ("testbed_resnet", "sparsegpt")):
        loaded = load_model(name)
        design = StudyDesign(name="s", model=name, items=tuple(patch_items(2, 0)), sparsity=0.7)
        size = loaded.info.input_size
        vis, sal = (prune_config(design, kind, loaded.model, size, "cpu") for kind in ("vis", "saliency"))
        assert vis.solver == sal.solver == solver
        assert sal.sparsity == 0.7 and vis.sparsity == 0.0 and all(s == 0.7 for _, s in vis.layer_sparsity)
        assert not (vis.asymmetric or sal.asymmetric)


def test_stimuli_keep_the_cards_calibration_late_only_too():
    """The EfficientNet-Lite card prunes with asymmetric calibration (the sweep loses Lite0's decision); the
    study's saliency and late-only visualisation conditions use it, as the Debugger does."""
    from spade_engine.models import load_model
    from spade_engine.study.stimuli import prune_config

    loaded = load_model("efficientnet_lite0")
    design = StudyDesign(name="s", model="efficientnet_lite0", items=tuple(patch_items(2, 0)), sparsity=0.8)
    vis, sal = (prune_config(design, kind, loaded.model, 224, "cpu") for kind in ("vis", "saliency"))
    assert vis.asymmetric and sal.asymmetric and sal.sparsity == 0.8
    late = dict(vis.layer_sparsity)
    assert "net.conv_head" in late and "net.conv_stem" not in late and set(late.values()) == {0.8}
