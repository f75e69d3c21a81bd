"""Neuron rankings, top patches and the multifaceted-neuron finder (`spade_engine/neurons.py`)."""

import numpy as np
import pytest
import torch
from featvis_fixtures import blob_images

from spade_engine import neurons


def test_list_layers_in_execution_order(or_model):
    layers = neurons.list_layers(or_model, 16)
    assert [(info.name, info.kind, info.channels, info.spatial) for info in layers] == [
        ("net.0", "conv", 3, (16, 16)),
        ("net.2", "conv", 3, (16, 16)),
        ("net.6", "linear", 2, None),
    ]


def test_rank_neurons_activation_and_attribution(or_model):
    images, colour, corner = blob_images(30, seed=1)
    i = int(torch.nonzero(colour == 2)[0])  # a blue image
    ranking = neurons.rank_neurons(or_model, images[i], "net.2")
    assert ranking.target == 0  # the blue-or-red logit wins
    assert ranking.top("activation", 1) == [1] and ranking.top("attribution", 1) == [1]  # the blue channel
    assert ranking.attribution[0] == 0  # red-or-green channel: no drive, no attribution
    row, col = ranking.position[1]
    r, c = corner[i].tolist()
    assert r - 1 <= row <= r + 4 and c - 1 <= col <= c + 4  # most active where the square is


def test_top_patches_crop_the_receptive_field(or_model):
    images, colour, corner = blob_images(60, seed=2)
    assert neurons.receptive_field(or_model, "net.2", 16) == 3
    acts = neurons.dataset_activations(or_model, images, "net.2", batch_size=16)
    patches = neurons.top_patches(images, acts, channel=1, k=5, rf=6)
    assert patches.images.shape == (5, 6, 6, 3)
    assert (colour[torch.as_tensor(patches.indices)] == 2).all()  # blue unit -> blue images
    assert np.all(np.diff(patches.values) <= 0)
    for crop in patches.images:
        assert crop[..., 2].max() > 0.45  # the crop shows the blue square
    whole = neurons.top_patches(images, acts, channel=1, k=2)
    assert whole.images.shape == (2, 16, 16, 3) and whole.boxes[0] == (0, 0, 16, 16)


@pytest.mark.parametrize("layer, facet_colours", [("net.2", [[0], [1]]), ("net.6", [[0], [2]])])
def test_finder_ranks_or_unit_above_single_facet_units(or_model, layer, facet_colours):
    images, colour, _ = blob_images(90, seed=3)
    scores = neurons.find_multifaceted(or_model, images, layer, top_k=20)
    multi, *single = scores
    assert multi.channel == 0  # net.2: red OR green; net.6: blue OR red
    assert multi.score > 0.6 and all(s.score < 0.2 for s in single)
    found = [sorted(set(colour[torch.as_tensor(f)].tolist())) for f in multi.facets]
    assert sorted(found) == facet_colours  # each facet holds the images of exactly one colour


def test_two_means_and_silhouette_on_separated_blobs():
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.normal(0, 0.1, (10, 2)), rng.normal(5, 0.1, (12, 2))])
    labels = neurons.two_means(pts)
    assert len(set(labels[:10])) == 1 and len(set(labels[10:])) == 1 and labels[0] != labels[-1]
    assert neurons.silhouette(pts, labels) > 0.9
    assert neurons.silhouette(pts, np.zeros(22, dtype=int)) == 0.0


def test_explanation_is_one_sentence():
    assert neurons.SCORE_EXPLANATION.count(". ") == 0 and neurons.SCORE_EXPLANATION.endswith(".")


def test_late_layers_are_the_last_two_stages_and_the_head():
    from spade_engine.models import Classifier
    from spade_engine.testbed.archs import TinyResNet

    model = Classifier(TinyResNet(10), (0.5,) * 3, (0.25,) * 3).eval()
    layers = neurons.list_layers(model, 64)
    late = neurons.late_layers(layers)
    assert set(late) == {i.name for i in layers if i.name.startswith(("net.layer3", "net.layer4", "net.fc"))}
    cfg = neurons.late_prune_config(layers, 0.95)
    names = [info.name for info in layers]
    assert cfg.targets(names, first_conv="net.conv1", head="net.fc") == {n: 0.95 for n in late}
    from spade_engine.engine import PruneConfig

    kept = neurons.late_prune_config(layers, 0.8, base=PruneConfig(0.5, asymmetric=True, damp=0.1, solver="obc"))
    assert (kept.asymmetric, kept.damp, kept.solver, kept.sparsity) == (True, 0.1, "obc", 0.0)
    assert kept.targets(names, first_conv="net.conv1", head="net.fc") == {n: 0.8 for n in late}
    flat = [neurons.LayerInfo(f"l{i}", "linear", 4, None) for i in range(6)]
    assert neurons.late_layers(flat) == ["l4", "l5"]
