"""Perturbation-based saliency through Captum: Occlusion (sliding window) and LIME over SLIC superpixels
(scikit-image). Both replace regions by z = 0 in the normalised input, i.e. the mean colour (Captum's default
baseline on a normalised input, as in the SPADE authors' notebook), and read the target logit.

Papers: Zeiler & Fergus 2014, arXiv 1311.2901; Ribeiro, Singh, Guestrin 2016, arXiv 1602.04938;
SLIC: Achanta et al. 2012. LIME's perturbations (which superpixels stay) are drawn from a local generator
(`_base.local_generator`) through Captum's `perturb_func` hook, never from the process-wide RNG.
"""

from __future__ import annotations

import numpy as np
import torch
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import Lime, Occlusion
from captum.attr._core.lime import get_exp_kernel_similarity_function
from skimage.segmentation import slic

from spade_engine.saliency._base import AttributionInput, local_generator
from spade_engine.saliency._canonical import attribution_copy

OCCLUSION_WINDOW_FRACTION = 1 / 8  # window side = H / 8 (8 px at 64 px, 28 px at 224 px)
OCCLUSION_STRIDE_FRACTION = 1 / 2  # stride = window / 2: a 15 x 15 grid of windows at any size
OCCLUSION_BATCH = 32
LIME_SAMPLES = 256
LIME_SEGMENTS = 50
LIME_COMPACTNESS = 10.0
LIME_KERNEL_WIDTH = 0.25  # exp(-d^2 / w^2), d = cosine distance of perturbed vs original image (pixel space)
LIME_BATCH = 64
LIME_MIN_SEGMENTS = 4  # SLIC can collapse on textureless or noise images: fall back to a grid
LIME_GRID = 8  # fallback: LIME_GRID x LIME_GRID square cells


def occlusion_window(size: int) -> tuple[int, int]:
    """(window, stride) in pixels for an image side of `size`."""
    window = max(2, round(size * OCCLUSION_WINDOW_FRACTION))
    return window, max(1, round(window * OCCLUSION_STRIDE_FRACTION))


def occlusion(inp: AttributionInput, target: int) -> torch.Tensor:
    """Drop in the target logit when a window (all channels) is set to the mean colour, averaged over windows
    per pixel."""
    x = inp.z
    window, stride = occlusion_window(x.shape[-1])
    occ = Occlusion(attribution_copy(inp.net, x).module)
    return occ.attribute(
        x,
        sliding_window_shapes=(x.shape[1], window, window),
        strides=(x.shape[1], stride, stride),
        baselines=0.0,
        target=target,
        perturbations_per_eval=OCCLUSION_BATCH,
    )


def superpixels(x: torch.Tensor) -> torch.Tensor:
    """SLIC segmentation of one image (1, 3, H, W) -> (1, 1, H, W) long labels 0..S-1, contiguous.

    Falls back to a `LIME_GRID` x `LIME_GRID` grid when SLIC finds fewer than `LIME_MIN_SEGMENTS` segments.
    """
    image = x[0].permute(1, 2, 0).detach().cpu().numpy().astype(np.float64)  # (H, W, 3)
    labels = slic(image, n_segments=LIME_SEGMENTS, compactness=LIME_COMPACTNESS, start_label=0, channel_axis=-1)
    if len(np.unique(labels)) < LIME_MIN_SEGMENTS:
        rows = np.arange(image.shape[0]) * LIME_GRID // image.shape[0]
        cols = np.arange(image.shape[1]) * LIME_GRID // image.shape[1]
        labels = rows[:, None] * LIME_GRID + cols[None, :]
    _, contiguous = np.unique(labels, return_inverse=True)
    return torch.from_numpy(contiguous.reshape(labels.shape)).long().to(x.device)[None, None]  # (1, 1, H, W)


def _coin_flips(generator: torch.Generator):  # noqa: ANN202
    """Captum's default LIME sampler (keep each interpretable feature with probability 1/2), drawn from
    `generator`: a `perturb_func` for `captum.attr.Lime`."""

    def perturb(original_inp: torch.Tensor, **kwargs) -> torch.Tensor:
        probs = torch.full((1, int(kwargs["num_interp_features"])), 0.5)
        return torch.bernoulli(probs, generator=generator).to(original_inp.device).long()  # (1, n_features)

    return perturb


def lime(inp: AttributionInput, target: int) -> torch.Tensor:
    """Ridge-regression weight of each SLIC superpixel (present vs mean colour), broadcast to its pixels.

    Superpixels are found on the image in [0, 1] (`inp.pixels`); the perturbations happen at `inp.z`."""
    x = inp.z
    lime_attr = Lime(
        attribution_copy(inp.net, x).module,
        interpretable_model=SkLearnRidge(alpha=1.0),
        similarity_func=get_exp_kernel_similarity_function("cosine", kernel_width=LIME_KERNEL_WIDTH),
        perturb_func=_coin_flips(local_generator()),
    )
    mask = superpixels(inp.pixels).expand(1, x.shape[1], *x.shape[-2:])  # (1, 3, H, W)
    return lime_attr.attribute(
        x,
        target=target,
        baselines=0.0,
        feature_mask=mask,
        n_samples=LIME_SAMPLES,
        perturbations_per_eval=LIME_BATCH,
    )
