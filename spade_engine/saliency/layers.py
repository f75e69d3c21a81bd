"""Which layer GradCAM explains, and how that layer's activations are read as a (C, h, w) feature map.

- **CNNs** (the default rule, `last_feature_module`): the last node whose output is the spatial map
  of the last Conv2d (a ResNet's last block, a VGG's last ReLU, a ConvNeXt's last residual sum).
- **Transformers**: activations on the patch grid come as tokens (B, N, D), N = prefix + h·w (ViT, DeiT: the
  class / distillation / register tokens first), or channels-last (B, h, w, C) (Swin). When such a layer runs
  after the last feature map in (B, C, h, w) layout, the model is explained at the last token layer whose grid
  tokens receive a gradient from the logits. For a class-token ViT that is the first norm of the last block
  (the last block's output reaches the head only through the class token, so its grid tokens get no gradient),
  the layer pytorch-grad-cam recommends; the tokens are reshaped to (B, D, h, w) (its `reshape_transform`).
- **The user's choice**: any layer `feature_layers` lists, by name.

Sources: Selvaraju et al. 2017, arXiv 1610.02391; pytorch-grad-cam's "Vision Transformers" tutorial
(jacobgil/pytorch-grad-cam, docs: vision_transformers.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import fx, nn

from spade_engine.hooks import forward_hooks
from spade_engine.models import logits_of
from spade_engine.saliency._canonical import CanonicalCopy, tensor_shape

MAX_PREFIX_TOKENS = 8  # class, distillation and register tokens before the patch tokens
LAYOUTS = ("nchw", "tokens", "nhwc")


@dataclass(frozen=True)
class FeatureLayer:
    """A module whose output lies on a spatial grid.

    Attributes:
        name: the module's name in the attribution copy.
        layout: "nchw" (B, C, h, w), "tokens" (B, prefix + h·w, D) or "nhwc" (B, h, w, C).
        grid: (h, w).
        prefix: leading non-grid tokens ("tokens" layout).
        order: position in execution order (first call).
        has_grad: whether its grid positions receive a gradient from the logits.
    """

    name: str
    layout: str
    grid: tuple[int, int]
    prefix: int = 0
    order: int = 0
    has_grad: bool = True

    def to_nchw(self, a: torch.Tensor) -> torch.Tensor:
        """This layer's output (or its gradient) as (B, C, h, w)."""
        if self.layout == "nchw":
            return a
        if self.layout == "nhwc":
            return a.permute(0, 3, 1, 2)  # (B, h, w, C) -> (B, C, h, w)
        grid = a[:, self.prefix :, :]  # (B, h*w, D)
        return grid.reshape(a.shape[0], *self.grid, a.shape[-1]).permute(0, 3, 1, 2)  # (B, D, h, w)


def _first_tensor(out: object) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def _grid_stride(size: tuple[int, int], h: int, w: int) -> bool:
    """Whether (h, w) is the image (H, W) divided by one integer stride, with h > 1."""
    H, W = size
    return h > 1 and w > 1 and H % h == 0 and W % w == 0 and H // h == W // w


def classify(shape: torch.Size, size: tuple[int, int]) -> tuple[str, tuple[int, int], int] | None:
    """(layout, grid, prefix) of an activation of `shape` for an input of spatial `size`, or None."""
    if len(shape) == 4 and _grid_stride(size, shape[2], shape[3]):
        return "nchw", (int(shape[2]), int(shape[3])), 0
    if len(shape) == 4 and _grid_stride(size, shape[1], shape[2]):
        return "nhwc", (int(shape[1]), int(shape[2])), 0
    if len(shape) == 3:
        H, W = size
        for prefix in range(min(MAX_PREFIX_TOKENS, shape[1] - 4) + 1):
            n = shape[1] - prefix
            stride = math.sqrt(H * W / n)
            s = round(stride)
            if abs(stride - s) < 1e-6 and s > 0 and _grid_stride(size, H // s, W // s) and (H // s) * (W // s) == n:
                return "tokens", (H // s, W // s), prefix
    return None


def feature_layers(canonical: CanonicalCopy) -> list[FeatureLayer]:
    """Every module of the copy whose output lies on a spatial grid, in execution order (first call), with
    whether its grid positions receive a gradient from the logits (one forward and backward pass)."""
    module, x = canonical.module, canonical.example
    if x is None:
        raise ValueError("The attribution copy has no example input; build it with `attribution_copy`.")
    size = tuple(x.shape[-2:])
    seen: dict[str, tuple[int, torch.Tensor]] = {}

    def record(name: str, mod: nn.Module, inputs: tuple, out) -> None:
        t = _first_tensor(out)
        if name not in seen and t is not None and t.requires_grad:
            t.retain_grad()
            seen[name] = (len(seen), t)

    named = {n: m for n, m in module.named_modules() if n}
    with forward_hooks(named, record), torch.enable_grad():
        z = x.detach().clone().requires_grad_(True)
        logits_of(module(z)).sum().backward()
    layers = []
    for name, (order, t) in seen.items():
        kind = classify(t.shape, size)
        if kind is None:
            continue
        layer = FeatureLayer(name, kind[0], kind[1], kind[2], order)
        grad = None if t.grad is None else layer.to_nchw(t.grad)
        layers.append(replace(layer, has_grad=grad is not None and bool(grad.abs().sum() > 0)))
    return sorted(layers, key=lambda layer: layer.order)


def token_layer(canonical: CanonicalCopy) -> FeatureLayer | None:
    """The transformer rule (module docstring): the last token / channels-last layer with gradient, when it runs
    after the node the CNN rule would explain (a ViT's patch-embedding conv, a Swin's first stage); None for
    CNNs, whose last feature map comes after any channels-last block internals (ConvNeXt)."""
    layers = feature_layers(canonical)
    tokens = [layer for layer in layers if layer.layout != "nchw" and layer.has_grad]
    if not tokens:
        return None
    module = canonical.module
    try:
        if canonical.traced:
            nodes = list(module.graph.nodes)
            cnn = cnn_rule_index(module)
            position = max(i for i, n in enumerate(nodes) if n.op == "call_module" and n.target == tokens[-1].name)
            return tokens[-1] if position > cnn else None
        convs = [n for n, m in module.named_modules() if isinstance(m, nn.Conv2d)]
    except ValueError:  # no Conv2d at all: tokens are all there is
        return tokens[-1]
    orders = {layer.name: layer.order for layer in layers}
    last_conv = max((orders[n] for n in convs if n in orders), default=-1)
    return tokens[-1] if tokens[-1].order > last_conv else None


def last_feature_module(canonical: CanonicalCopy) -> str:
    """Name of the module whose output GradCAM explains by default: `default_layer(canonical).name`.

    For CNNs the last spatial feature map: the last node, in execution order, whose output is 4-D with the
    spatial size of the last Conv2d's output (for a ResNet: the last block's final ReLU, after the residual add;
    for a VGG: the ReLU after the last conv). When that node is a function (e.g. a residual `+` with no
    activation after it) an `nn.Identity` is inserted after it in the copy's graph, so Captum has a module to
    hook. Untraced copies fall back to the last registered Conv2d. Transformers are explained at `token_layer`.
    """
    return default_layer(canonical).name


def default_layer(canonical: CanonicalCopy) -> FeatureLayer:
    """The layer GradCAM explains when the user has not chosen one: `token_layer` for transformers, else the
    CNN rule (`cnn_feature_module`)."""
    if canonical.example is not None and _may_have_tokens(canonical):
        token = token_layer(canonical)
        if token is not None:
            return token
    return FeatureLayer(cnn_feature_module(canonical), "nchw", (0, 0))


def explained_layer(canonical: CanonicalCopy, name: str | None) -> FeatureLayer:
    """`find_layer(canonical, name)` for a chosen layer, `default_layer(canonical)` for None."""
    return default_layer(canonical) if name is None else find_layer(canonical, name)


def find_layer(canonical: CanonicalCopy, name: str) -> FeatureLayer:
    """The feature layer called `name` in the copy.

    Raises:
        ValueError: no such module, or its output is not on a spatial grid (the message lists valid names).
    """
    layers = {layer.name: layer for layer in feature_layers(canonical)}
    if name not in layers:
        valid = ", ".join(list(layers)[-8:])
        raise ValueError(f"GradCAM cannot explain layer '{name}': it is not a spatial feature layer of this model. "
                         f"Layers it can explain include: {valid}.")  # fmt: skip
    return layers[name]


def choosable_layers(canonical: CanonicalCopy, net: nn.Module) -> list[FeatureLayer]:
    """The feature layers a user may pick: those with a gradient that are modules of `net` itself (no helper
    modules the attribution copy adds), in execution order."""
    own = {n for n, _ in net.named_modules()}
    return [layer for layer in feature_layers(canonical) if layer.has_grad and layer.name in own]


# ------------------------------------------------------------------------------- the CNN rule


def cnn_feature_module(canonical: CanonicalCopy) -> str:
    """The CNN rule of `last_feature_module` alone: the last node with the last Conv2d's spatial output size
    (untraced: the last Conv2d); may insert an `nn.Identity` anchor after a function node."""
    module = canonical.module
    if not canonical.traced:
        convs = [n for n, m in module.named_modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise ValueError("GradCAM needs a Conv2d layer; the model has none.")
        if canonical.example is None:
            return convs[-1]
        on_grid = {layer.name for layer in feature_layers(canonical) if layer.layout == "nchw"}
        mapped = [n for n in convs if n in on_grid]  # convs whose output is a map larger than 1×1
        if not mapped:
            raise ValueError(_no_map_message(tuple(canonical.example.shape[-2:])))
        return mapped[-1]
    last = list(module.graph.nodes)[cnn_rule_index(module)]
    return last.target if last.op == "call_module" else _anchor_after(module, last)


def cnn_rule_index(gm: fx.GraphModule) -> int:
    """Index, in the graph's node order, of the node the CNN rule explains (see `cnn_feature_module`): the last
    node with the spatial size of the last Conv2d whose map is larger than 1×1 (at small inputs a network's
    last convs can give 1×1 maps, whose GradCAM is one flat value).

    Raises:
        ValueError: the graph has no Conv2d, or every conv output is 1×1 at this input size.
    """
    nodes = list(gm.graph.nodes)
    convs = [
        i for i, n in enumerate(nodes) if n.op == "call_module" and isinstance(gm.get_submodule(n.target), nn.Conv2d)
    ]
    if not convs:
        raise ValueError("GradCAM needs a Conv2d layer; the model has none.")
    mapped = [i for i in convs if (s := tensor_shape(nodes[i])) is not None and s[-2] * s[-1] > 1]
    if not mapped:
        raise ValueError(_no_map_message(_input_size(nodes)))
    convs = mapped
    spatial = tensor_shape(nodes[convs[-1]])[-2:]
    return [
        i
        for i, n in enumerate(nodes)
        if i >= convs[-1] and (s := tensor_shape(n)) is not None and len(s) == 4 and s[-2:] == spatial
    ][-1]


def _input_size(nodes: list[fx.Node]) -> tuple[int, int] | None:
    shape = next((tensor_shape(n) for n in nodes if n.op == "placeholder"), None)
    return None if shape is None else tuple(shape[-2:])


def _no_map_message(size: tuple[int, int] | None) -> str:
    at = f" at {size[0]}×{size[1]} px" if size else ""
    return (
        f"GradCAM has no layer to explain{at}: every conv layer's output is 1×1, so its map would be one flat "
        "value. Use a larger input size or another method."
    )


def _may_have_tokens(canonical: CanonicalCopy) -> bool:
    """Whether a token-shaped activation can follow the last conv (always, for an untraced copy)."""
    if not canonical.traced:
        return True
    size = tuple(canonical.example.shape[-2:])
    shapes = [s for n in canonical.module.graph.nodes if (s := tensor_shape(n)) is not None]
    return any((kind := classify(s, size)) is not None and kind[0] != "nchw" for s in shapes)


def _anchor_after(gm: fx.GraphModule, node: fx.Node) -> str:
    name = "_gradcam_anchor"
    gm.add_submodule(name, nn.Identity())
    with gm.graph.inserting_after(node):
        anchor = gm.graph.call_module(name, (node,))
    node.replace_all_uses_with(anchor, delete_user_cb=lambda user: user is not anchor)
    anchor.meta = dict(node.meta)
    gm.recompile()
    return name
