"""SpadeEngine: sample-targeted pruning (SPADE, arXiv 2310.04519) with a per-sample cache.

`prepare` does what depends only on the sample (augmented views, the layer trace, the dense logits); `prune`
runs the layer-wise solver at a sparsity and returns a pruned *copy*. The first prune that needs the dense
network's layer Hessians fills every prunable layer's in one dense pass of the views and caches them on the trace,
with the dampened inverse-Hessian factors, so a slider move costs only the column sweeps. The sequential and
asymmetric calibrations fill their own moments in their pruning pass instead, so they never run that dense pass.

SPADE prunes what forward hooks can see: every Conv2d and Linear *module* called once per forward pass. Weight
matrices used functionally (`nn.MultiheadAttention`'s input and output projections in torchvision's ViT and
Swin), shared modules, layers inside TorchScript and layers whose forward transforms their weight (timm's
StdConv2d; `reparam`) stay dense (weight-normed weights are folded into plain ones first, so pruning acts on
the weight the forward uses); `PruneResult.dense_layers` lists them with
the reason, together with the layers the settings keep dense (first conv, head, patterns).
"""

from __future__ import annotations

import atexit
import copy
import fnmatch
import hashlib
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from spade_engine.augment import AugmentConfig, augment
from spade_engine.hooks import LayerTrace, forward_hooks, forward_pre_hooks, layer_trace, replaced_forwards
from spade_engine.pruning import (
    SOLVERS,
    HessianAccumulator,
    InverseHessian,
    dense_energy,
    inverse_hessian,
    prune_layer,
    reconstruction_error,
    sweep_error,
)
from spade_engine.pruning import cancel as cancellation
from spade_engine.pruning.asymmetric import asymmetric_target, paired_moments
from spade_engine.pruning.budget import obs_budget, relative_saliency
from spade_engine.pruning.cancel import Cancelled, cancellable, check_cancelled
from spade_engine.pruning.hessian import MATMULS, PRUNABLE, grouped_weight, ungroup_weight
from spade_engine.reparam import copy_model, fold_reparametrisations, transformed_weight_layers
from spade_engine.statistics import RULES, ChannelStats, StatsAccumulator, batchnorms, correct_batchnorms

Progress = Callable[[str, int, int], None]
BUDGETS = ("uniform", "obs")  # `PruneConfig.budget`


def _no_progress(phase: str, done: int, total: int) -> None:
    pass


_ENGINES: weakref.WeakSet = weakref.WeakSet()  # every engine, for `_stop_at_exit`


@atexit.register
def _stop_at_exit() -> None:
    """At interpreter exit, stop every running prune (`cancellation.shutdown`: the solvers and the Hessian pass raise at
    their next check) and wait briefly for it: a torch op still running in a daemon thread (a server's script
    thread, a background prefetch) while Python finalises aborts the process."""
    cancellation.shutdown()
    for engine in list(_ENGINES):
        engine.cancel_prefetch()
        if engine._lock.acquire(timeout=30):  # a foreground prune holds it until it has stopped
            engine._lock.release()


def _yield_cpu() -> None:
    """Lower the calling thread's priority (Linux: nice 19 per thread; the threads its torch ops start inherit
    it), so background pre-pruning does not slow what the user is waiting for. Elsewhere a no-op."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass


class PrefetchCancelled(Cancelled):
    """Raised inside a background prefetch's prune when a foreground request cancels it."""


@dataclass(frozen=True)
class PruneConfig:
    """How to prune: per-layer target sparsity, which layers, which solver.

    `layer_sparsity` holds (fnmatch pattern, sparsity) pairs over module names (e.g. ("net.layer4*", 0.95));
    the first matching pattern wins, other layers get `sparsity`. A layer whose sparsity is 0 is left dense.

    `blocksize` and `mask_count` set the mask granularity of the SparseGPT sweep: `blocksize` columns per
    block (or "kernel": kh*kw columns, one input channel, for a conv and 1 column for a Linear, as the SPADE
    authors do), and per block either the exact running layer target ("running") or the authors' count
    `int(n * s) + 1` of its n weights ("reference"). With the reference count the reached sparsity is
    slightly above the target: a 10-class Linear head at 80% loses 9 of 10 weights per column, 90% (and at 90%
    all 10: the whole head; `skip_head` keeps it).
    `PruneConfig.reference_granularity(s)` gives the authors' granularity.
    """

    sparsity: float = 0.9
    layer_sparsity: tuple[tuple[str, float], ...] = ()
    skip_first: bool = True  # the first conv sees raw pixels; the reference leaves it dense
    skip_head: bool = False  # the reference prunes the classifier head too
    skip: tuple[str, ...] = ()  # fnmatch patterns of layer names left dense
    damp: float = 0.01  # relative dampening of H (1% of mean diag)
    # Columns per mask block, or "kernel" (kh*kw for a conv, 1 for a Linear): the default since the block-size
    # ablation (assets/benchmarks/*_blocksize.csv: paired trojan AUC +0.2 / +0.1 points over 128-column blocks).
    blocksize: int | str = "kernel"
    solver: str = "sparsegpt"  # a key of spade_engine.pruning.SOLVERS
    sequential: bool = False  # SparseGPT's sequential mode: inputs of layer l+1 from the pruned prefix (one pass)
    bn_correction: str = "none"  # BatchNorm statistics after pruning: "none", "match" or "reestimate" (`statistics`)
    # Asymmetric calibration (`pruning.asymmetric`, GPTAQ): in the sequential pass each layer's target is the dense
    # network's output, so the prefix's error is repaired instead of copied. Implies `sequential`.
    asymmetric: bool = False
    mask_count: str = "running"  # "running" (exact layer total) or "reference" (int(n*s)+1 per block)
    # How the pruned weights are shared among the layers: "uniform" (each layer its target) or "obs" (the same
    # total, each layer losing its cheapest weights by relative OBS error, `pruning.budget`; at most 95% a layer).
    budget: str = "uniform"

    @classmethod
    def reference_granularity(cls, sparsity: float = 0.9, **fields) -> PruneConfig:
        """The SPADE authors' mask granularity: one block per input channel (kh*kw columns; 1 for a Linear),
        `int(n * s) + 1` of each block's n weights pruned, so each layer ends slightly above `sparsity`.

        Args:
            sparsity: target sparsity; `fields`: any other `PruneConfig` fields.
        """
        return cls(sparsity, blocksize="kernel", mask_count="reference", **fields)

    def targets(self, layers: list[str], first_conv: str | None = None, head: str | None = None) -> dict[str, float]:
        """Target sparsity of each layer that gets pruned, in execution order."""
        out = {}
        for name in layers:
            if (self.skip_first and name == first_conv) or (self.skip_head and name == head):
                continue
            if any(fnmatch.fnmatch(name, p) for p in self.skip):
                continue
            s = next((v for p, v in self.layer_sparsity if fnmatch.fnmatch(name, p)), self.sparsity)
            if s > 0:
                out[name] = float(s)
        return out


@dataclass(eq=False)
class Trace:
    """Per-sample work that does not depend on the sparsity. Built by `SpadeEngine.prepare`."""

    key: tuple
    sample: torch.Tensor  # (3, H, W) in [0, 1], CPU
    views: torch.Tensor  # (B, 3, H, W) uint8, CPU: the calibration batch
    layers: tuple[str, ...]  # prunable layers in execution order
    dense_logits: torch.Tensor  # (K,) CPU
    timings: dict[str, float]
    first_conv: str | None = None  # first Conv2d executed (sees raw pixels)
    head: str | None = None  # last layer executed, when it is a Linear
    inverses: dict[tuple[str, float], InverseHessian] = field(default_factory=dict)
    prunes: int = 0  # how many prunes have used this trace
    unreachable: dict[str, str] = field(default_factory=dict)  # weight layers hooks cannot prune -> why
    energies: dict[str, float] = field(default_factory=dict)  # name -> W H W^T of the dense layer (`dense_energy`)
    # One dense pass of the views with hooks: trace -> (Hessians, BatchNorm statistics). Run on first use only: the
    # asymmetric calibration (the EfficientNet-Lite cards' default) fills its own moments in its pruning pass.
    fill_moments: Callable[[Trace], tuple[dict, dict]] | None = field(default=None, repr=False)
    _hessians: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    _bn_stats: dict[str, ChannelStats] | None = field(default=None, repr=False)
    # trace -> (B,) the dense model's class per view, when no dense pass of the views has recorded them yet.
    predict_views: Callable[[Trace], torch.Tensor] | None = field(default=None, repr=False)
    _view_preds: torch.Tensor | None = field(default=None, repr=False)

    @property
    def view_predictions(self) -> torch.Tensor:
        """(B,) the dense model's class for each calibration view (CPU): recorded by the first dense pass of the
        views (a prune's), or one plain forward when read before any."""
        if self._view_preds is None:
            self._view_preds = self.predict_views(self) if self.predict_views else self.dense_logits.argmax().view(1)
        return self._view_preds

    @property
    def view_agreement(self) -> float:
        """Share of calibration views the dense model gives the sample's class, in [0, 1]."""
        return float((self.view_predictions == self.dense_logits.argmax()).float().mean())

    @property
    def hessians(self) -> dict[str, torch.Tensor]:
        """Prunable layer name -> (G, d, d) input Hessian `2/n X X^T` on the views, from one dense pass (run on
        first use, `fill_moments`)."""
        self._fill()
        return self._hessians

    @property
    def bn_stats(self) -> dict[str, ChannelStats]:
        """BatchNorm name -> its dense input statistics on the views (same pass as `hessians`)."""
        self._fill()
        return self._bn_stats

    @property
    def has_moments(self) -> bool:
        """Whether the dense pass that fills `hessians` and `bn_stats` has run."""
        return self._hessians is not None

    def _fill(self) -> None:
        if self._hessians is None:
            self._hessians, self._bn_stats = self.fill_moments(self) if self.fill_moments else ({}, {})

    @property
    def n_aug(self) -> int:
        return self.views.shape[0]

    @property
    def nbytes(self) -> int:
        hs = sum(h.numel() * h.element_size() for h in (self._hessians or {}).values())
        return hs + self.views.numel() + sum(i.nbytes for i in self.inverses.values())

    def float_views(self) -> torch.Tensor:
        return self.views.float() / 255.0  # (B, 3, H, W)


@dataclass(frozen=True)
class PruneResult:
    """What a prune did: per-layer reached sparsity and reconstruction error, predictions, timings."""

    config: PruneConfig
    layer_target: dict[str, float]
    layer_sparsity: dict[str, float]
    layer_error: dict[str, float]  # relative ||WX - W_hat X||^2 / ||WX||^2 on the calibration inputs
    dense_logits: torch.Tensor  # (K,)
    pruned_logits: torch.Tensor  # (K,)
    timings: dict[str, float]  # seconds per phase of this call (cold calls include prepare's phases)
    cached_trace: bool  # True when an earlier prune used this trace (a warm re-prune: its cached work is reused)
    view_agreement: float = 1.0  # share of calibration views on which the dense model predicts the sample's class
    dense_layers: dict[str, str] = field(default_factory=dict)  # weight layers left dense -> why, in words
    bn_moved: dict[str, float] = field(default_factory=dict)  # BatchNorm -> how far the correction moved it

    @property
    def total_sparsity(self) -> float:
        return sum(self.layer_sparsity.values()) / max(len(self.layer_sparsity), 1)

    @property
    def dense_top5(self) -> list[tuple[int, float]]:
        return _top5(self.dense_logits)

    @property
    def pruned_top5(self) -> list[tuple[int, float]]:
        return _top5(self.pruned_logits)

    @property
    def agrees(self) -> bool:
        """Whether the pruned network still predicts the dense network's class."""
        return int(self.dense_logits.argmax()) == int(self.pruned_logits.argmax())


def _top5(logits: torch.Tensor) -> list[tuple[int, float]]:
    p = logits.float().softmax(-1)
    v, i = p.topk(min(5, p.numel()))
    return [(int(a), float(b)) for a, b in zip(i, v, strict=False)]


def sample_hash(x: torch.Tensor) -> str:
    """Stable content hash of an image tensor (cache key)."""
    arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
    return hashlib.sha256(str(arr.shape).encode() + arr.tobytes()).hexdigest()[:16]


class SpadeEngine:
    """Runs SPADE on one model, caching per-sample traces (LRU, bounded in bytes) and recent pruned copies.

    Args:
        model: classifier taking (B, 3, H, W) images in [0, 1]. Never modified: hooks run on a private copy.
        device: where the work runs ("cpu", "cuda", ...).
        batch_size: views per forward pass.
        max_columns: Hessian column subsample per layer and batch (None: exact; see `HessianAccumulator`).
        hessian_dtype: torch.float32 (default, as the reference; half the memory) or torch.float64.
        hessian_matmul: how the Hessians' `X @ X.T` products run: "exact" (default, in `hessian_dtype`),
            "bfloat16", or "auto" (bf16 inputs on CUDA, exact on CPUs: `hessian.default_matmul`). On this
            CPU bf16 is both slower with the shifted-correlation Hessians (22.5-23.8 s against 8.0-9.4 s for
            ResNet-18, 128 views) and less accurate (held-out layer error 0.0796 against 0.0755 at 90%), so it
            is opt-in. See `HessianAccumulator`.
        max_cache_bytes: bound on cached traces (Hessians, inverse factors per dampening, views), enforced after
            every `prepare` and `prune`; the current trace's Hessians and views are always kept (during one
            prune its new inverse factors may exceed the bound until the prune ends).
        max_hessian_bytes: layers whose Hessian (G * d^2 in `hessian_dtype`) would take more stay dense, with the
            reason in `PruneResult.dense_layers`. Default 1 GiB: a layer's peak while its inverse factor is
            computed is about 4x its Hessian, so one layer stays within about 4 GiB on top of the cache. VGG-16's
            classifier.0 (25,088 inputs: 2.5 GB in float32) is refused by default; raise the bound to prune it.
        max_pruned: number of recent pruned copies kept (moving the slider back is free).

    Thread-safe: one lock serialises prepare/prune, so several UI sessions can share an engine.
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        max_columns: int | None = 32768,
        hessian_dtype: torch.dtype = torch.float32,
        hessian_matmul: str = "exact",
        max_cache_bytes: int = 2 * 2**30,
        max_hessian_bytes: int = 2**30,
        max_pruned: int = 4,
    ):
        self.model = model
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.max_columns = max_columns
        self.hessian_dtype = hessian_dtype
        if hessian_matmul not in MATMULS:
            raise ValueError(f"hessian_matmul must be one of {', '.join(MATMULS)}; got {hessian_matmul!r}.")
        self.hessian_matmul = hessian_matmul
        self.max_cache_bytes = max_cache_bytes
        self.max_hessian_bytes = max_hessian_bytes
        self.max_pruned = max_pruned
        self._work = copy_model(model).to(self.device).eval()
        fold_reparametrisations(self._work)  # weight norm & co.: prune the weight the forward computes with
        self._traces: OrderedDict[tuple, Trace] = OrderedDict()
        self._pruned: OrderedDict[tuple, tuple[nn.Module, PruneResult]] = OrderedDict()
        self._lock = threading.RLock()
        self._prefetch_thread: threading.Thread | None = None
        self._prefetch_cancel = threading.Event()
        self._prefetch_key: tuple | None = None
        self._channels_last: bool | None = None  # set by the first trace (`_runs_channels_last`)
        _ENGINES.add(self)
        self.stats = {"traces_built": 0, "trace_hits": 0, "hessian_passes": 0, "solves": 0, "pruned_hits": 0}

    # ------------------------------------------------------------------------------------ prepare

    def prepare(
        self,
        x: torch.Tensor,
        n_aug: int = 64,
        seed: int = 0,
        augment_config: AugmentConfig | None = None,
        progress: Progress | None = None,
    ) -> Trace:
        """Build (or fetch from the cache) the sample's trace: views, layer trace, dense logits. The dense pass
        of the views (Hessians, BatchNorm statistics, view predictions) runs on the first `prune` that needs it.

        Args:
            x: (3, H, W) image in [0, 1].
            n_aug: calibration views B.
            seed: augmentation seed.
            augment_config: augmentation parameters.
            progress: `progress(phase, done, total)` callback.
        """
        aug = augment_config or AugmentConfig()
        key = (sample_hash(x), tuple(x.shape), int(n_aug), int(seed), aug)
        prefetch = self._prefetch_thread
        if prefetch is not None and prefetch.is_alive() and threading.current_thread() is not prefetch:
            trace = self._traces.get(key)
            if trace is not None:  # cached: hand it out without waiting for the prefetch (it may hold the lock)
                self.stats["trace_hits"] += 1
                return trace
            self.cancel_prefetch()  # a new sample or settings: the user's request goes first, even between two
            # of the prefetch's prunes (when it holds no `_prefetch_key` yet but is about to take the lock)
        with self._lock:
            if key in self._traces:
                self._traces.move_to_end(key)
                self.stats["trace_hits"] += 1
                return self._traces[key]
            trace = self._build_trace(key, x, n_aug, seed, aug, progress or _no_progress)
            self._traces[key] = trace
            self._evict()
            return trace

    def _build_trace(self, key, x, n_aug, seed, aug, progress: Progress) -> Trace:
        timings = {}
        t0 = time.perf_counter()
        progress("augment", 0, 1)
        views = (augment(x.detach().cpu(), n_aug, seed, aug) * 255).round().to(torch.uint8)  # (B, 3, H, W)
        timings["augment"] = time.perf_counter() - t0
        found, layers, unreachable = self._prunable_layers(x)
        with torch.no_grad():
            dense_logits = self._work(x.unsqueeze(0).to(self.device))[0].float().cpu()
        self.stats["traces_built"] += 1
        trace = Trace(
            key, x.detach().cpu().clone(), views, tuple(layers), dense_logits, timings, found.first_conv, found.head,
            unreachable=unreachable,
        )  # fmt: skip
        # The dense passes of the views run when a prune needs them (its progress shows them), or on first read.
        # The callbacks take the trace, so it holds no reference cycle through them (its Hessians free promptly).
        trace.fill_moments = lambda t: self._moments(t, progress=_no_progress)
        trace.predict_views = lambda t: self._predict(t.views, _no_progress)
        return trace

    def _predict(self, views: torch.Tensor, progress: Progress, phase: str = "forward") -> torch.Tensor:
        """(B,) the dense model's class for each uint8 view (B, 3, H, W), batch by batch (`progress(phase, …)`);
        also the batch loop of the hooked pass (`_accumulate`)."""
        preds = []
        with torch.no_grad():
            for b, batch in enumerate(batches := views.split(self.batch_size)):
                progress(phase, b, len(batches))
                check_cancelled()
                preds.append(self._work(self._float_batch(batch)).argmax(-1).cpu())
        return torch.cat(preds)

    def _float_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """A uint8 batch of views as float in [0, 1] on the device, channels-last where the model runs so."""
        batch = batch.to(self.device).float().div_(255.0)  # (B, 3, H, W)
        if self._channels_last:  # the convs run ~20% faster on CPU (oneDNN); same values to rounding
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    def _moments(self, trace: Trace, progress: Progress) -> tuple[dict, dict]:
        """Fill `trace`'s Hessians and BatchNorm statistics by one dense pass of its views (under the lock;
        its time goes to `trace.timings["hessians"]`). Returns (hessians, bn_stats)."""
        with self._lock:
            if not trace.has_moments:
                t0 = time.perf_counter()
                hessians, bn_stats, preds = self._accumulate(list(trace.layers), trace.views, trace.key[3], progress)
                if trace._view_preds is None:
                    trace._view_preds = preds
                trace.timings["hessians"] = time.perf_counter() - t0
                trace._hessians, trace._bn_stats = hessians, bn_stats
            return trace._hessians, trace._bn_stats

    def _prunable_layers(self, x: torch.Tensor) -> tuple[LayerTrace, list[str], dict[str, str]]:
        """The model's layers as `hooks.layer_trace` sees them (execution order, shared layers out, first conv and
        head: the one rule), the prunable ones among them, and the weight layers that cannot be pruned, with
        the reason (including layers whose Hessian would exceed `max_hessian_bytes`)."""
        with torch.no_grad():
            found = layer_trace(self._work, x.unsqueeze(0).to(self.device))
            if self._channels_last is None:
                self._channels_last = self._runs_channels_last(x)
        modules = dict(self._work.named_modules())
        once = list(found.layers)
        transformed = transformed_weight_layers(self._work, x.unsqueeze(0).to(self.device), once)
        out, too_wide = [], {}
        for name in once:
            if name in transformed:  # a weight transform, or padding of its own inside forward
                too_wide[name] = transformed[name]
                continue
            nbytes = hessian_bytes(modules[name], self.hessian_dtype)
            if nbytes > self.max_hessian_bytes:
                too_wide[name] = too_wide_reason(modules[name], nbytes, self.max_hessian_bytes)
            else:
                out.append(name)
        called = [*found.layers, *found.shared]
        return found, out, {**unprunable_layers(self._work, called, set(found.shared)), **too_wide}

    def _runs_channels_last(self, x: torch.Tensor) -> bool:
        """Whether the model accepts channels-last input (a model that `.view`s its activations may not): the
        Hessian pass then feeds the views channels-last."""
        try:
            self._work(x.unsqueeze(0).to(self.device).contiguous(memory_format=torch.channels_last))
        except RuntimeError:
            return False
        return True

    def _accumulate(
        self, layers: list[str], views: torch.Tensor, seed: int, progress: Progress
    ) -> tuple[dict[str, torch.Tensor], dict[str, ChannelStats], torch.Tensor]:
        """One pass of the uint8 views (B, 3, H, W) through the dense model with hooks (removed after).

        Returns:
            (the Hessians of `layers`, every BatchNorm's input statistics on the views (for
            `PruneConfig.bn_correction`), (B,) the predicted class of each view, CPU).
        """
        modules = dict(self._work.named_modules())
        gen = torch.Generator().manual_seed(int(seed) + 1)
        accs = {
            n: HessianAccumulator(modules[n], self.hessian_dtype, self.max_columns, gen, self.hessian_matmul)
            for n in layers
        }
        norms = batchnorms(self._work)
        moments = {n: StatsAccumulator() for n in norms}

        def hook(name, module, inputs, output):
            accs[name].add_batch(inputs[0])

        with (
            forward_hooks({n: modules[n] for n in layers}, hook),
            forward_pre_hooks(norms, lambda name, module, inputs: moments[name].add(inputs[0])),
        ):
            predictions = self._predict(views, progress, phase="hessians")
        self.stats["hessian_passes"] += 1
        return {n: a.H for n, a in accs.items()}, {n: m.stats() for n, m in moments.items()}, predictions

    def _evict(self) -> None:
        """Keep the cache within `max_cache_bytes`: drop the least recently used traces (with their pruned copies)
        while more than one is cached, then the remaining trace's inverse factors, oldest first (they are
        recomputed when needed). The current trace's Hessians and views always stay."""
        while len(self._traces) > 1 and self._cache_bytes() > self.max_cache_bytes:
            old_key, _ = self._traces.popitem(last=False)
            for k in [k for k in self._pruned if k[0] == old_key]:
                del self._pruned[k]
        for trace in self._traces.values():
            while trace.inverses and self._cache_bytes() > self.max_cache_bytes:
                del trace.inverses[next(iter(trace.inverses))]

    def _cache_bytes(self) -> int:
        return sum(t.nbytes for t in self._traces.values())

    def cache_info(self) -> dict:
        """Number and size of cached traces and pruned copies, and the bound."""
        with self._lock:
            return {
                "traces": len(self._traces),
                "trace_bytes": self._cache_bytes(),
                "inverse_factors": sum(len(t.inverses) for t in self._traces.values()),
                "max_cache_bytes": self.max_cache_bytes,
                "pruned_models": len(self._pruned),
                **self.stats,
            }

    # -------------------------------------------------------------------------------------- prune

    def prune(
        self, trace: Trace, config: float | PruneConfig = 0.9, progress: Progress | None = None
    ) -> tuple[nn.Module, PruneResult]:
        """Prune a copy of the model for the trace's sample.

        Args:
            trace: from `prepare`.
            config: a sparsity in [0, 1) or a full `PruneConfig`.
            progress: `progress(phase, done, total)` callback; phases name the current layer.

        Returns:
            (pruned copy in eval mode on the engine's device — treat it as read-only, it may be cached;
            `PruneResult`).
        """
        cfg = config if isinstance(config, PruneConfig) else PruneConfig(sparsity=float(config))
        if cfg.solver not in SOLVERS:
            raise ValueError(f"Unknown solver '{cfg.solver}'. Known: {', '.join(SOLVERS)}.")
        key = (trace.key, cfg)
        if threading.current_thread() is not self._prefetch_thread:
            self.cancel_prefetch(unless=key)  # the user's request goes first
        with self._lock:
            if key in self._pruned:
                self._pruned.move_to_end(key)
                self.stats["pruned_hits"] += 1
                return self._pruned[key]
            out = self._prune(trace, cfg, progress or _no_progress)
            trace.prunes += 1
            self._evict()  # the inverse factors this prune added count against the bound
            self._pruned[key] = out
            while len(self._pruned) > self.max_pruned:
                self._pruned.popitem(last=False)
            return out

    def prefetch(self, trace: Trace, configs: list[PruneConfig]) -> threading.Thread | None:
        """Prune `configs` for `trace` in a background thread, so that a later `prune` of one of them is a cache
        hit (e.g. the slider's neighbouring sparsities after the first prune).

        At most `max_pruned - 1` configs run (the pruned copies they add stay within the cache, next to the
        current one), configs already cached are skipped, and any earlier prefetch is cancelled first. The thread
        runs at the lowest CPU priority (Linux). A `prune` from another thread cancels the prefetch at its next
        check (layer boundaries and the solvers' loops, `pruning.cancel`: milliseconds to a fraction of a second),
        unless the prefetch is computing exactly what it asks for (then it waits for that result).

        Args:
            trace: from `prepare`.
            configs: `PruneConfig`s (or sparsities), most wanted first.

        Returns:
            The started thread (daemon), or None when there was nothing to do.
        """
        self.cancel_prefetch()
        todo = [c if isinstance(c, PruneConfig) else PruneConfig(sparsity=float(c)) for c in configs]
        todo = [c for c in todo if (trace.key, c) not in self._pruned][: max(0, self.max_pruned - 1)]
        if not todo:
            return None
        cancel = threading.Event()

        def stop_if_cancelled(phase: str, done: int, total: int) -> None:
            if cancel.is_set():
                raise PrefetchCancelled

        def work() -> None:
            _yield_cpu()
            for cfg in todo:
                if cancel.is_set():
                    return
                self._prefetch_key = (trace.key, cfg)
                try:
                    with cancellable(cancel):  # the solvers' loops check it too: a cancel waits milliseconds
                        self.prune(trace, cfg, progress=stop_if_cancelled)
                except Cancelled:
                    return
                finally:
                    self._prefetch_key = None
                self.stats["prefetched"] = self.stats.get("prefetched", 0) + 1

        self._prefetch_cancel = cancel
        self._prefetch_thread = threading.Thread(target=work, name="spade-prefetch", daemon=True)
        self._prefetch_thread.start()
        return self._prefetch_thread

    def cancel_prefetch(self, unless: tuple | None = None) -> None:
        """Stop the background prefetch (at its next layer boundary or solver check) and wait for it, unless it is
        computing the prune `unless` (a `(trace.key, config)` pair)."""
        thread = self._prefetch_thread
        if thread is None or not thread.is_alive() or threading.current_thread() is thread:
            return
        if unless is not None and self._prefetch_key == unless:
            return
        self._prefetch_cancel.set()
        thread.join()

    def _prune(self, trace: Trace, cfg: PruneConfig, progress: Progress) -> tuple[nn.Module, PruneResult]:
        if cfg.bn_correction not in RULES:
            raise ValueError(f"Unknown bn_correction {cfg.bn_correction!r}; use one of {', '.join(RULES)}.")
        cached = trace.prunes > 0
        timings = {} if cached else {k: v for k, v in trace.timings.items()}
        timings.update(inverse=0.0, solve=0.0)
        t_start = time.perf_counter()
        if cfg.budget not in BUDGETS:
            raise ValueError(f"Unknown budget {cfg.budget!r}; use one of {', '.join(BUDGETS)}.")
        own_pass = cfg.sequential or cfg.asymmetric  # these fill their Hessians in their own pass of the views
        if not trace.has_moments and (not own_pass or cfg.bn_correction != "none" or cfg.budget != "uniform"):
            self._moments(trace, progress)
            timings["hessians"] = trace.timings["hessians"]
        pruned = copy.deepcopy(self._work).eval()
        modules = dict(pruned.named_modules())
        targets = cfg.targets(list(trace.layers), trace.first_conv, trace.head)
        if cfg.budget == "obs":
            targets = self._obs_budget(trace, targets, modules, cfg.damp)
        reached, errors = {}, {}

        def solve(i: int, name: str, H: torch.Tensor, hinv: InverseHessian | None, fresh: bool) -> None:
            progress(f"solve {name}", i, len(targets))
            t0 = time.perf_counter()
            loss = torch.zeros(H.shape[0], dtype=torch.float64, device=H.device)
            W, W_hat = prune_layer(
                modules[name], hinv, targets[name], cfg.solver, cfg.blocksize, cfg.mask_count, loss_out=loss
            )
            timings["solve"] += time.perf_counter() - t0
            reached[name] = float((W_hat == 0).float().mean())
            errors[name] = self._layer_error(trace, name, W, W_hat, H, hinv, None if fresh else loss, cfg)
            self.stats["solves"] += 1

        if own_pass:
            self._sequential_pass(trace, pruned, targets, cfg, solve, timings)
        else:
            for i, name in enumerate(targets):
                t0 = time.perf_counter()
                hinv = None if cfg.solver == "magnitude" else self._inverse(trace, name, cfg.damp)
                timings["inverse"] += time.perf_counter() - t0
                solve(i, name, trace.hessians[name], hinv, False)
        progress("evaluate", len(targets), len(targets))
        t0 = time.perf_counter()
        stats = trace.bn_stats if cfg.bn_correction != "none" else {}
        moved = correct_batchnorms(pruned, stats, trace.float_views().to(self.device), cfg.bn_correction)
        if moved:
            timings["bn_correction"] = time.perf_counter() - t0
        with torch.no_grad():
            pruned_logits = pruned(trace.sample.unsqueeze(0).to(self.device))[0].float().cpu()
        timings["prune_total"] = time.perf_counter() - t_start
        dense = {**trace.unreachable, **_kept_dense(trace, cfg, targets)}
        result = PruneResult(
            cfg, targets, reached, errors, trace.dense_logits, pruned_logits, timings, cached, trace.view_agreement,
            dense, moved,
        )  # fmt: skip
        return pruned, result

    def _sequential_pass(self, trace: Trace, pruned: nn.Module, targets: dict[str, float], cfg: PruneConfig,
                         solve: Callable, timings: dict[str, float]) -> None:  # fmt: skip
        """SparseGPT's sequential mode in one pass: all views go through the copy as one batch; each target layer
        fills its Hessian from the inputs the already-pruned prefix gives, is pruned, and then computes its
        output, so every later layer sees the pruned prefix (Frantar & Alistarh 2023, arXiv 2301.00774, section
        3.5). The first target's inputs are the dense ones: the trace's Hessian serves when it has been filled.

        With `cfg.asymmetric` the batch holds every view twice, dense half first: at a target layer the dense
        half gets the dense weights' output and the pruned half the pruned layer's, and the layer is pruned
        towards the dense half's output (`pruning.asymmetric`); the dense half's logits give the trace its view
        predictions. Each half is computed once (the target layers' forward is replaced for the pass, not
        hooked). Memory: one forward of all views (twice with `asymmetric`) at once, no autograd."""
        modules = dict(pruned.named_modules())
        order = list(targets)
        gen = torch.Generator().manual_seed(int(trace.key[3]) + 1)

        def asymmetric(i: int, name: str, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
            x_dense, x_pruned = x.chunk(2)
            y_dense = type(module).forward(module, x_dense)  # the dense weights, before the solve changes them
            t0 = time.perf_counter()
            H, C = paired_moments(module, x_pruned if i == 0 else x_dense, x_pruned, self.max_columns, gen)
            timings["hessians"] = timings.get("hessians", 0.0) + time.perf_counter() - t0
            t0 = time.perf_counter()
            hinv = inverse_hessian(H, cfg.damp)
            module.weight.data.copy_(ungroup_weight(module, asymmetric_target(grouped_weight(module), H, C, hinv)))
            timings["inverse"] += time.perf_counter() - t0
            solve(i, name, H, None if cfg.solver == "magnitude" else hinv, True)
            return torch.cat([y_dense, type(module).forward(module, x_pruned)])

        def sequential(i: int, name: str, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
            t0 = time.perf_counter()
            if i == 0 and trace.has_moments:  # dense inputs: the trace's Hessian and cached inverse factor
                H = trace.hessians[name]
                hinv = None if cfg.solver == "magnitude" else self._inverse(trace, name, cfg.damp)
            else:
                acc = HessianAccumulator(module, self.hessian_dtype, self.max_columns, gen, self.hessian_matmul)
                acc.add_batch(x)
                H = acc.H
                timings["hessians"] = timings.get("hessians", 0.0) + time.perf_counter() - t0
                t0 = time.perf_counter()
                hinv = None if cfg.solver == "magnitude" else inverse_hessian(H, cfg.damp)
            timings["inverse"] += time.perf_counter() - t0
            solve(i, name, H, hinv, i > 0 or not trace.has_moments)
            return type(module).forward(module, x)  # the pruned layer's output

        def step(name: str, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
            check_cancelled()
            return (asymmetric if cfg.asymmetric else sequential)(order.index(name), name, module, x)

        views = self._float_batch(trace.views)  # (B, 3, H, W)
        if cfg.asymmetric:
            views = torch.cat([views, views])
        with replaced_forwards({n: modules[n] for n in order}, step), torch.no_grad():
            logits = pruned(views)
        if cfg.asymmetric and trace._view_preds is None:
            trace._view_preds = logits.chunk(2)[0].argmax(-1).cpu()
        self.stats["hessian_passes"] += 1

    def _obs_budget(self, trace: Trace, targets: dict[str, float], modules: dict, damp: float) -> dict[str, float]:
        """`targets` re-shared by `pruning.budget.obs_budget` on the dense Hessians: the same number of weights
        pruned in total (their targets' weighted mean), each layer losing its cheapest; layers it leaves dense
        are dropped."""
        sizes = {n: modules[n].weight.numel() for n in targets}
        share = sum(targets[n] * sizes[n] for n in targets) / max(sum(sizes.values()), 1)
        saliency = {
            n: relative_saliency(grouped_weight(modules[n]), trace.hessians[n], self._inverse(trace, n, damp))
            for n in targets
        }
        return {n: s for n, s in obs_budget(saliency, share).items() if s > 0}

    @staticmethod
    def _layer_error(trace, name, W, W_hat, H, hinv, loss, cfg: PruneConfig) -> float:
        """The layer's `reconstruction_error`: from the sweep's OBS losses and the trace's cached dense energy
        when the SparseGPT sweep ran on the trace's Hessian (`sweep_error`), else the direct product."""
        if loss is None or cfg.solver != "sparsegpt":
            return reconstruction_error(W, W_hat, H)
        if name not in trace.energies:
            trace.energies[name] = dense_energy(W, H)
        return sweep_error(W, W_hat, H, hinv, loss, trace.energies[name])

    def _inverse(self, trace: Trace, name: str, damp: float) -> InverseHessian:
        key = (name, float(damp))
        hinv = trace.inverses.pop(key, None) or inverse_hessian(trace.hessians[name], damp)
        trace.inverses[key] = hinv  # most recently used last: `_evict` drops the oldest first
        return hinv


def hessian_bytes(layer: nn.Module, dtype: torch.dtype) -> int:
    """Bytes of a Conv2d/Linear layer's (G, d, d) Hessian in `dtype`."""
    w = layer.weight
    g = getattr(layer, "groups", 1)
    d = w[0].numel() if isinstance(layer, nn.Conv2d) else w.shape[1]
    return g * d * d * torch.empty((), dtype=dtype).element_size()


def too_wide_reason(layer: nn.Module, nbytes: int, bound: int) -> str:
    """Why a layer stays dense when its Hessian exceeds the engine's `max_hessian_bytes`, in words."""
    d = layer.weight[0].numel()
    return (
        f"too wide for the memory bound: its Hessian ({d:,} inputs) would take {nbytes / 2**30:.1f} GiB, over "
        f"max_hessian_bytes = {bound / 2**30:.1f} GiB (a prune needs about 4x that); raise the bound to prune it"
    )


FUNCTIONAL = "applied functionally (not through the module's forward), so SPADE's hooks cannot see its inputs"
SHARED = "called more than once per forward pass (shared weights): one mask cannot fit every call"
SCRIPTED = "inside a TorchScript model: hooks cannot run there"
UNSUPPORTED = "a layer type the solvers do not prune"


def unprunable_layers(model: nn.Module, order: list[str], shared: set[str]) -> dict[str, str]:
    """Weight layers of `model` that SPADE cannot prune, `{name: reason}`: Conv2d/Linear modules the forward
    pass never called (`FUNCTIONAL`) or called more than once (`SHARED`), `nn.MultiheadAttention`'s input
    projection (`<name>.in_proj_weight`, always functional), layers inside TorchScript (`SCRIPTED`), other
    convolutions (`UNSUPPORTED`).

    Args:
        model: the network the engine runs.
        order, shared: the layers one forward pass called, and those it called more than once (`hooks.layer_trace`).
    """
    called, out = set(order), {}
    for name, module in model.named_modules():
        if isinstance(module, torch.jit.ScriptModule):
            if getattr(module, "original_name", "") in ("Conv2d", "Linear"):
                out[name] = SCRIPTED
        elif isinstance(module, PRUNABLE) and name not in called:
            out[name] = FUNCTIONAL
        elif name in shared:
            out[name] = SHARED
        elif isinstance(module, nn.MultiheadAttention) and module.in_proj_weight is not None:
            out[f"{name}.in_proj_weight"] = FUNCTIONAL
        elif isinstance(module, nn.modules.conv._ConvNd) and not isinstance(module, PRUNABLE):
            out[name] = UNSUPPORTED
    return out


def _kept_dense(trace: Trace, cfg: PruneConfig, targets: dict[str, float]) -> dict[str, str]:
    """The prunable layers the settings leave dense, with the setting that does."""
    out = {}
    for name in trace.layers:
        if name in targets:
            continue
        if cfg.skip_first and name == trace.first_conv:
            out[name] = "first conv, kept dense by the settings (it sees raw pixels)"
        elif cfg.skip_head and name == trace.head:
            out[name] = "classifier head, kept dense by the settings"
        else:
            out[name] = "kept dense by the settings (skip pattern or sparsity 0)"
    return out


def spade_prune(
    model: nn.Module,
    x: torch.Tensor,
    sparsity: float | PruneConfig = 0.9,
    n_aug: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
    **engine_kwargs,
) -> tuple[nn.Module, PruneResult]:
    """One-shot SPADE: prune a copy of `model` for the sample `x` (3, H, W) in [0, 1]. No caching across calls."""
    engine = SpadeEngine(model, device, **engine_kwargs)
    return engine.prune(engine.prepare(x, n_aug, seed), sparsity)
