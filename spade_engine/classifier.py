"""The classifier contract: what the app expects of a network's output, and the `Classifier` wrapper every model
is served as (normalisation first, so engine code feeds images in [0, 1]).

What the app expects of a network's output (`logits_of`, applied by `Classifier` and by every saliency method):
the class logits, shape (B, K). A tuple or list (a named tuple such as torchvision's `GoogLeNetOutputs`, or
`(logits, features)`) gives its **first element** as the logits; a mapping gives its `"logits"` entry. A network
with a **single output logit** is a sigmoid (binary) classifier: `Classifier(binary=True)` shows it as two
classes with logits (-z/2, z/2), whose softmax is (1 - sigmoid(z), sigmoid(z)).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from spade_engine.errors import ModelOutputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def logits_of(output: object) -> torch.Tensor:
    """The class logits in a network's output, by the app's one rule.

    A tensor is the logits; a tuple or list (named tuples included: torchvision's `GoogLeNetOutputs`,
    `InceptionOutputs`, `(logits, features)` models) gives its first element; a mapping (Hugging Face
    `ModelOutput`) its `"logits"` entry. torch.fx proxies pass through, so a `Classifier` stays traceable.

    Raises:
        ModelOutputError: the output holds no logits by that rule (the message names what it holds).
    """
    if isinstance(output, Mapping):
        if "logits" in output:
            return output["logits"]
    elif isinstance(output, (tuple, list)):
        if output and isinstance(output[0], (torch.Tensor, torch.fx.Proxy)):
            return output[0]
    else:
        return output  # a tensor (or an fx proxy while tracing)
    raise ModelOutputError(
        f"The model returns {describe_output(output)}, not class logits. The app takes the first element of a "
        "tuple or list, or the 'logits' entry of a mapping, as the logits (B, K); make the model's forward "
        "return them first."
    )


def two_class_logits(logit: torch.Tensor) -> torch.Tensor:
    """A sigmoid head's one logit z, (B, 1), as two-class logits (-z/2, z/2), (B, 2).

    Their softmax is (1 - sigmoid(z), sigmoid(z)) exactly, and their difference is z, so probabilities,
    predictions and the class-1 evidence are those of the sigmoid classifier (captum #475: a softmax over one
    logit is always 1).
    """
    return torch.cat([-logit / 2, logit / 2], dim=-1)  # (B, 2)


class Normalize(nn.Module):
    """Per-channel normalisation as a module, so the model takes images in [0, 1]."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """`normalize` then `net`: maps images in [0, 1], (B, 3, H, W), to logits (B, K).

    `net`'s output goes through `logits_of` (a tuple's first element, a mapping's "logits"). With `binary=True`
    `net` is a sigmoid classifier with one logit, shown as two classes (`two_class_logits`: K = 2).
    """

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...], binary: bool = False):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net
        self.binary = bool(binary)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = logits_of(self.net(self.normalize(x)))
        return two_class_logits(logits) if getattr(self, "binary", False) else logits


def describe_output(out: object) -> str:
    """A short, user-facing description of a model's output: "a tensor of shape (1, 10)", "a tuple of 3"…"""
    if isinstance(out, torch.Tensor):
        return f"a tensor of shape {tuple(out.shape)}"
    if isinstance(out, Mapping):
        return f"a mapping with keys {', '.join(map(str, list(out)[:5]))}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)}"
    return f"a {type(out).__name__}"
