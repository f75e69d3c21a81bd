"""Hand-built tiny models and images for the feature-visualisation and neuron tests."""

import torch
from torch import nn

from spade_engine.models import Classifier


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def or_model() -> Classifier:
    """Hand-built, identity normalisation. net.0 passes R, G, B through (1x1 identity). net.2 (3x3 box filters):
    channel 0 = red OR green, channel 1 = blue, channel 2 = red. net.6 (linear on pooled net.2): unit 0 = blue OR
    red (channels 1 + 2), unit 1 = red only (channel 2)."""
    conv1, conv2, fc = nn.Conv2d(3, 3, 1, bias=False), nn.Conv2d(3, 3, 3, padding=1, bias=False), nn.Linear(3, 2)
    with torch.no_grad():
        conv1.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        conv2.weight.zero_()
        conv2.weight[0, 0], conv2.weight[0, 1], conv2.weight[1, 2], conv2.weight[2, 0] = 1.0, 1.0, 1.0, 1.0
        fc.weight.copy_(torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]]))
        fc.bias.zero_()
    net = nn.Sequential(conv1, nn.ReLU(), conv2, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc)
    return freeze(Classifier(net, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)))


def blob_images(n: int, seed: int = 0, size: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Black images with one 4x4 square of pure red, green or blue (colour id 0, 1, 2) at a random place,
    random brightness, plus faint noise. Returns (images (n, 3, size, size), colour ids, top-left corners)."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand((n, 3, size, size), generator=gen) * 0.02
    colour = torch.randint(0, 3, (n,), generator=gen)
    corner = torch.randint(0, size - 4, (n, 2), generator=gen)
    bright = 0.5 + 0.5 * torch.rand(n, generator=gen)
    for i in range(n):
        r, c = corner[i].tolist()
        images[i, colour[i], r : r + 4, c : c + 4] = bright[i]
    return images, colour, corner
