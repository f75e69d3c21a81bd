"""BatchNorm statistics correction for a pruned copy: its BatchNorms see, on the calibration views, inputs whose
per-channel mean and spread drifted from the dense network's (each pruned layer's small error compounds
through the stack). Correcting them is a per-channel affine change of the normalisation; no connection is added.

Two rules, both applied in one pass of the views through the pruned copy, BatchNorm by BatchNorm in execution
order (a correction changes what every later BatchNorm sees), with statistics over the views and positions:

- **"match"** (bias and variance correction; Nagel et al. 2019, arXiv 1906.04721, "bias correction", and
  Banner et al. 2019 for the variance): move the running mean and scale the running variance so that the
  pruned inputs, once normalised, have the mean and spread the dense inputs had. With dense input statistics
  (mu_d, s_d), pruned (mu_p, s_p) and running statistics (m, v):
  `v' = v * s_p^2 / s_d^2`, `m' = mu_p - (mu_d - m) * s_p / s_d`.
  A channel that pruning silenced (s_p < `DEAD_RATIO` * s_d) keeps its variance (only its mean is matched):
  scaling it back up would amplify what is left of it, noise, by 1 / ratio.
- **"reestimate"** (OBC's BatchNorm re-estimation, Frantar & Alistarh, NeurIPS 2022, arXiv 2208.11580): set
  the running statistics to the pruned inputs' own, `m' = mu_p`, `v' = s_p^2`. OBC re-estimates on training
  data; here only the calibration views of one sample exist, so this normalises each channel to *this
  sample's* statistics.

What this means for "a sub-network of the original": the connections kept are the same and the OBS update
already changed the kept weights; the correction changes the BatchNorms' per-channel shift and scale
(equivalently, each channel's bias and gain), so the pruned network is a sub-network with re-fitted biases and
gains, like the OBS-updated weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from spade_engine.hooks import forward_pre_hooks
from spade_engine.pruning.cancel import check_cancelled

RULES = ("none", "match", "reestimate")
DEAD_RATIO = 0.1  # pruned spread below this share of the dense spread: the channel is silenced, variance kept
BATCHNORMS = (nn.modules.batchnorm._BatchNorm,)


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and variance of a BatchNorm's input over views and positions, (C,) float64 each."""

    mean: torch.Tensor
    var: torch.Tensor


class StatsAccumulator:
    """Per-channel mean and variance of a BatchNorm's inputs (N, C, ...) over batches and positions: each batch's
    moments in the input's dtype (`torch.var_mean`), merged in float64 by Chan et al.'s pairwise rule."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, None, None

    def add(self, x: torch.Tensor) -> None:
        dims = [0, *range(2, x.dim())]
        var, mean = torch.var_mean(x.detach(), dim=dims, correction=0)  # (C,), (C,)
        n_b = x.numel() // x.shape[1]
        mean, m2 = mean.double(), var.double() * n_b
        if self.mean is None:
            self.n, self.mean, self.m2 = n_b, mean, m2
            return
        n = self.n + n_b
        delta = mean - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2 + delta * delta * (self.n * n_b / n)
        self.n = n

    def stats(self) -> ChannelStats:
        return ChannelStats(self.mean.cpu(), (self.m2 / self.n).clamp_min(0).cpu())


def batchnorms(model: nn.Module) -> dict[str, nn.Module]:
    """The BatchNorm modules of `model` (timm's BatchNormAct2d included), by name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, BATCHNORMS) and m.track_running_stats}


def corrected_statistics(
    bn: nn.Module, dense: ChannelStats, pruned: ChannelStats, rule: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The new (running_mean, running_var) of one BatchNorm, (C,) each in the module's dtype.

    Args:
        bn: the pruned copy's BatchNorm (its current running statistics are the dense ones).
        dense, pruned: its input statistics in the dense network and in the pruned copy, on the same views.
        rule: "match" or "reestimate" (see the module docstring).

    Raises:
        ValueError: unknown rule.
    """
    m, v = bn.running_mean.double().cpu(), bn.running_var.double().cpu()
    if rule == "reestimate":
        new_m, new_v = pruned.mean, pruned.var
    elif rule == "match":
        s_d, s_p = dense.var.sqrt(), pruned.var.sqrt()
        live = (s_d > 1e-12) & (s_p >= DEAD_RATIO * s_d)
        ratio = torch.where(live, s_p / s_d.clamp_min(1e-12), torch.ones_like(s_d))
        new_v = v * ratio**2
        new_m = pruned.mean - (dense.mean - m) * ratio
    else:
        raise ValueError(f"Unknown statistics correction {rule!r}; use one of {', '.join(RULES)}.")
    return new_m.to(bn.running_mean), new_v.to(bn.running_var)


def correct_batchnorms(
    pruned: nn.Module, dense_stats: Mapping[str, ChannelStats], views: torch.Tensor, rule: str
) -> dict[str, float]:
    """Correct every BatchNorm of `pruned` in place, in one pass of `views` (all in one batch).

    Args:
        pruned: the pruned copy (eval mode); its BatchNorms hold the dense running statistics.
        dense_stats: name -> the dense network's input statistics on the same views (`StatsAccumulator`).
        views: (B, 3, H, W) float images in [0, 1] on the copy's device.
        rule: "match" or "reestimate"; "none" does nothing.

    Returns:
        name -> how far the normalisation moved: mean |log(v'/v)| / 2 over channels (0 = unchanged; ln 2 ≈ 0.69:
        the spread halved or doubled on average).
    """
    if rule == "none":
        return {}
    modules = {n: m for n, m in batchnorms(pruned).items() if n in dense_stats}
    moved = {}

    def correct(name: str, bn: nn.Module, inputs: tuple) -> None:
        check_cancelled()  # a background prefetch stops here too when the user asks for something else
        acc = StatsAccumulator()
        acc.add(inputs[0])
        old_v = bn.running_var.detach().double().cpu().clamp_min(1e-12)
        new_m, new_v = corrected_statistics(bn, dense_stats[name], acc.stats(), rule)
        bn.running_mean.copy_(new_m)
        bn.running_var.copy_(new_v)
        moved[name] = float((new_v.double().cpu().clamp_min(1e-12) / old_v).log().abs().mean() / 2)

    with forward_pre_hooks(modules, correct), torch.no_grad():
        pruned(views)
    return moved
