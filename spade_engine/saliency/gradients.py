"""Gradient-family saliency methods through Captum: Saliency, InputXGradient, IntegratedGradients,
GradientShap and SmoothGrad. All baselines live in pixel space ([0, 1]): black is 0.

Papers: Simonyan et al. 2014 (arXiv 1312.6034), Shrikumar et al. 2016 (arXiv 1605.01713),
Sundararajan et al. 2017 (arXiv 1703.01365), Lundberg & Lee 2017 (arXiv 1705.07874),
Smilkov et al. 2017 (arXiv 1706.03825).
"""

from __future__ import annotations

import torch
from captum.attr import GradientShap, InputXGradient, IntegratedGradients, NoiseTunnel, Saliency
from torch import nn

from spade_engine.saliency._canonical import attribution_copy

IG_STEPS = 32
SHAP_SAMPLES = 16
SHAP_RANDOM_BASELINES = 8
SMOOTHGRAD_SAMPLES = 16
SMOOTHGRAD_STDEV = 0.15  # noise sigma in [0, 1] pixel units (Smilkov et al.: 10-20% of the input range)


def _model(model: nn.Module, x: torch.Tensor) -> nn.Module:
    return attribution_copy(model, x).module


def saliency(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """|d logit_target / d x| (Simonyan et al.)."""
    return Saliency(_model(model, x)).attribute(x, target=target, abs=True)


def input_x_gradient(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """x * d logit_target / d x."""
    return InputXGradient(_model(model, x)).attribute(x, target=target)


def integrated_gradients(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """Integrated Gradients from a black image, `IG_STEPS` Gauss-Legendre steps."""
    ig = IntegratedGradients(_model(model, x))
    return ig.attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=IG_STEPS, internal_batch_size=IG_STEPS)


def shap_baselines(x: torch.Tensor) -> torch.Tensor:
    """Black image plus `SHAP_RANDOM_BASELINES` uniform-noise images (seeded by the caller), (1+R, 3, H, W)."""
    noise = torch.rand((SHAP_RANDOM_BASELINES, *x.shape[1:]), device=x.device, dtype=x.dtype)
    return torch.cat([torch.zeros_like(x), noise])


def gradient_shap(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """GradientShap: expected gradients x (x - baseline) over random baselines and random path points."""
    gs = GradientShap(_model(model, x))
    return gs.attribute(x, baselines=shap_baselines(x), target=target, n_samples=SHAP_SAMPLES, stdevs=0.0)


def smoothgrad(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """SmoothGrad: mean of |gradient| over Gaussian-noised copies of x (NoiseTunnel over Saliency)."""
    nt = NoiseTunnel(Saliency(_model(model, x)))
    return nt.attribute(
        x,
        nt_type="smoothgrad",
        nt_samples=SMOOTHGRAD_SAMPLES,
        nt_samples_batch_size=SMOOTHGRAD_SAMPLES,
        stdevs=SMOOTHGRAD_STDEV,
        target=target,
        abs=True,
    )
