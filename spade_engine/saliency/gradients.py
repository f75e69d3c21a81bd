"""Gradient-family saliency methods through Captum: Saliency, InputXGradient, IntegratedGradients,
GradientShap and SmoothGrad, all w.r.t. the normalised input `inp.z` (see `_base`): a zero baseline is the
mean colour, and black pixels get attribution like any other.

Papers: Simonyan et al. 2014 (arXiv 1312.6034), Shrikumar et al. 2016 (arXiv 1605.01713),
Sundararajan et al. 2017 (arXiv 1703.01365), Lundberg & Lee 2017 (arXiv 1705.07874),
Smilkov et al. 2017 (arXiv 1706.03825).

GradientShap and SmoothGrad draw their noise, baselines and path points from a local generator
(`_base.local_generator`), never the process-wide RNG; the gradients come from Captum's `Saliency`. GradientShap
is Captum's `GradientShap` (stdevs 0) written out: mean over samples of grad(b + a (z - b)) x (z - b) for a
baseline b drawn from the set and a ~ U(0, 1); SmoothGrad is Captum's `NoiseTunnel` (smoothgrad, abs) over
`Saliency`, written out the same way.
"""

from __future__ import annotations

import torch
from captum.attr import InputXGradient, IntegratedGradients, Saliency
from torch import nn

from spade_engine.saliency._base import AttributionInput, local_generator
from spade_engine.saliency._canonical import FirstLogits, attribution_copy

IG_STEPS = 32
SHAP_SAMPLES = 16
SHAP_RANDOM_BASELINES = 8
SMOOTHGRAD_SAMPLES = 16
SMOOTHGRAD_NOISE_LEVEL = 0.15  # sigma / (z.max - z.min) (Smilkov et al.: 10-20% of the input range)


HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def _model(inp: AttributionInput) -> nn.Module:
    """The network these methods differentiate: the caller's own, cut to its logits, when it carries no hooks
    (plain gradients add no hooks and change no state, so `attribution_copy`'s deep copy, trace attempt and probe
    forward, a third of a Saliency map's time on EfficientNet-Lite0, buy nothing); else the attribution copy."""
    if not any(getattr(m, h, None) for m in inp.net.modules() for h in HOOKS):
        return FirstLogits(inp.net)
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


def shap_baselines(inp: AttributionInput, generator: torch.Generator) -> torch.Tensor:
    """The mean colour (z = 0) plus `SHAP_RANDOM_BASELINES` uniform-noise images in [0, 1] drawn from
    `generator`, normalised, (1+R, 3, H, W)."""
    x = inp.pixels
    noise = torch.rand((SHAP_RANDOM_BASELINES, *x.shape[1:]), generator=generator).to(x)  # (R, 3, H, W)
    with torch.no_grad():
        noise = inp.normalize(noise)
    return torch.cat([torch.zeros_like(inp.z), noise])


def gradient_shap(inp: AttributionInput, target: int) -> torch.Tensor:
    """GradientShap: expected gradients x (z - baseline) over random baselines and random path points
    (`SHAP_SAMPLES` draws from a local generator), (1, 3, H, W)."""
    gen, z = local_generator(), inp.z
    baselines = shap_baselines(inp, gen)  # (1+R, 3, H, W)
    pick = torch.randint(len(baselines), (SHAP_SAMPLES,), generator=gen).to(z.device)
    alpha = torch.rand(SHAP_SAMPLES, generator=gen).to(z).view(-1, 1, 1, 1)  # (S, 1, 1, 1)
    b = baselines[pick]  # (S, 3, H, W)
    grads = Saliency(_model(inp)).attribute((b + alpha * (z - b)).detach(), target=target, abs=False)
    return (grads * (z - b)).mean(0, keepdim=True)


def smoothgrad(inp: AttributionInput, target: int) -> torch.Tensor:
    """SmoothGrad: mean of |gradient| over `SMOOTHGRAD_SAMPLES` Gaussian-noised copies of z (noise from a local
    generator), noise sigma `SMOOTHGRAD_NOISE_LEVEL` times the input's range, (1, 3, H, W)."""
    z = inp.z
    sigma = SMOOTHGRAD_NOISE_LEVEL * float(z.max() - z.min()) or SMOOTHGRAD_NOISE_LEVEL
    noise = torch.randn((SMOOTHGRAD_SAMPLES, *z.shape[1:]), generator=local_generator()).to(z) * sigma
    grads = Saliency(_model(inp)).attribute((z + noise).detach(), target=target, abs=True)  # (S, 3, H, W)
    return grads.mean(0, keepdim=True)
