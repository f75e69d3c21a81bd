"""Gradient-family saliency methods through Captum: Saliency, InputXGradient, IntegratedGradients,
GradientShap and SmoothGrad, all w.r.t. the normalised input `inp.z` (see `_base`): a zero baseline is the
mean colour, and black pixels get attribution like any other.

Papers: Simonyan et al. 2014 (arXiv 1312.6034), Shrikumar et al. 2016 (arXiv 1605.01713),
Sundararajan et al. 2017 (arXiv 1703.01365), Lundberg & Lee 2017 (arXiv 1705.07874),
Smilkov et al. 2017 (arXiv 1706.03825).
"""

from __future__ import annotations

import torch
from captum.attr import GradientShap, InputXGradient, IntegratedGradients, NoiseTunnel, Saliency
from torch import nn

from spade_engine.saliency._base import AttributionInput
from spade_engine.saliency._canonical import attribution_copy

IG_STEPS = 32
SHAP_SAMPLES = 16
SHAP_RANDOM_BASELINES = 8
SMOOTHGRAD_SAMPLES = 16
SMOOTHGRAD_NOISE_LEVEL = 0.15  # sigma / (z.max - z.min) (Smilkov et al.: 10-20% of the input range)


def _model(inp: AttributionInput) -> nn.Module:
    return attribution_copy(inp.net, inp.z).module


def saliency(inp: AttributionInput, target: int) -> torch.Tensor:
    """|d logit_target / d z| (Simonyan et al.)."""
    return Saliency(_model(inp)).attribute(inp.z, target=target, abs=True)


def input_x_gradient(inp: AttributionInput, target: int) -> torch.Tensor:
    """z * d logit_target / d z: the first-order contribution of each input relative to the mean colour."""
    return InputXGradient(_model(inp)).attribute(inp.z, target=target)


def integrated_gradients(inp: AttributionInput, target: int) -> torch.Tensor:
    """Integrated Gradients from z = 0 (the mean colour), `IG_STEPS` Gauss-Legendre steps."""
    ig = IntegratedGradients(_model(inp))
    z = inp.z
    return ig.attribute(z, baselines=torch.zeros_like(z), target=target, n_steps=IG_STEPS, internal_batch_size=IG_STEPS)


def shap_baselines(inp: AttributionInput) -> torch.Tensor:
    """The mean colour (z = 0) plus `SHAP_RANDOM_BASELINES` uniform-noise images in [0, 1], normalised
    (seeded by the caller), (1+R, 3, H, W)."""
    x = inp.pixels
    noise = torch.rand((SHAP_RANDOM_BASELINES, *x.shape[1:]), device=x.device, dtype=x.dtype)
    with torch.no_grad():
        noise = inp.normalize(noise)
    return torch.cat([torch.zeros_like(inp.z), noise])


def gradient_shap(inp: AttributionInput, target: int) -> torch.Tensor:
    """GradientShap: expected gradients x (z - baseline) over random baselines and random path points."""
    gs = GradientShap(_model(inp))
    return gs.attribute(inp.z, baselines=shap_baselines(inp), target=target, n_samples=SHAP_SAMPLES, stdevs=0.0)


def smoothgrad(inp: AttributionInput, target: int) -> torch.Tensor:
    """SmoothGrad: mean of |gradient| over Gaussian-noised copies of z (NoiseTunnel over Saliency), noise
    sigma `SMOOTHGRAD_NOISE_LEVEL` times the input's range."""
    nt = NoiseTunnel(Saliency(_model(inp)))
    sigma = SMOOTHGRAD_NOISE_LEVEL * float(inp.z.max() - inp.z.min()) or SMOOTHGRAD_NOISE_LEVEL
    return nt.attribute(
        inp.z,
        nt_type="smoothgrad",
        nt_samples=SMOOTHGRAD_SAMPLES,
        nt_samples_batch_size=SMOOTHGRAD_SAMPLES,
        stdevs=sigma,
        target=target,
        abs=True,
    )
