"""The one cached layer between pages and the engine.

- `st.cache_resource` (shared by all sessions): models, one `SpadeEngine` per (model, device), one lock per model.
  Cached models are shared, so never mutate one: the engine prunes private copies, saliency runs on copies.
- `st.cache_data`: saliency maps keyed by (model key, sample hash, variant, method, target); arguments with a
  leading `_` (model, tensors) stay out of the key.
- The engine caches traces (Hessians) and recent pruned copies itself; `run_spade` reports whether it reused them,
  and then has the engine pre-prune the slider's neighbouring sparsities in the background (env
  `SPADE_PREFETCH=0` turns that off), so a one-step slider move is usually a cache hit.
- Long runs that show a progress bar (a GLM path, a Sobol design) cannot be `st.cache_data` (the bar would be
  recorded and replayed): `long_run` keeps them in one bounded LRU shared by all sessions, with one lock per key,
  so two sessions asking for the same result compute it once.

Page-specific cached wrappers live in one module per page (`neurons`, `tour`, `sparse_layer`, `pathways`, `sobol`,
`benchmarks`, `study`) and reach the engine through this one.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from spade_engine import models, paths
from spade_engine.disk_cache import KeyedLocks

EXAMPLES_DIR = paths.ASSETS / "examples"
Progress = Callable[[str, int, int], None]


def default_device() -> str:
    """`$SPADE_DEVICE` if set, else "cuda" when available, else "cpu"."""
    return os.environ.get("SPADE_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


# ------------------------------------------------------------------------------------------------ models


@st.cache_data(ttl=60, show_spinner=False)
def model_infos() -> list[models.ModelInfo]:
    """The model registry (testbed models first); re-read every minute so newly shipped models appear."""
    return models.list_models()


@st.cache_data(ttl=60, show_spinner=False)
def weights_cached(name: str) -> bool:
    """Whether a torchvision model's pretrained weights are in the torch cache."""
    from torchvision.models import get_model_weights

    url = get_model_weights(models.TORCHVISION_MODELS[name][0]).DEFAULT.url
    return (models.weights_cache_dir() / os.path.basename(url)).exists()


@st.cache_data(show_spinner=False)
def architecture_names() -> list[str]:
    """Architectures a user checkpoint can be loaded into."""
    return list(models.build.architectures())  # the loader's own name: one override for tests (`fake_assets`)


@st.cache_data(ttl=60, show_spinner=False)
def sparsity_profiles() -> dict:
    """All sparsity profiles (assets/profiles/*.json) by name: the JSON files are read once and re-read every
    minute, so a newly tuned profile appears without a restart.

    Returns:
        {name: `spade_engine.profiles.SparsityProfile`}, sorted by name; each says in `.model` which model it
        was made for ("" = any).
    """
    from spade_engine.profiles import list_profiles

    return {p.name: p for p in list_profiles()}


@st.cache_resource(show_spinner="Loading the model…", max_entries=8)
def load_model(name: str, device: str) -> models.LoadedModel:
    """A registry model in eval mode on `device`, shared by all sessions (read-only!)."""
    return models.load_model(name, device)


@st.cache_resource(show_spinner="Loading the checkpoint…", max_entries=4)
def load_checkpoint(
    digest: str,
    arch: str,
    class_names: tuple[str, ...],
    input_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    filename: str,
    device: str,
    _data: bytes,
) -> models.LoadedModel:
    """A user checkpoint (`digest` = hash of `_data`), shared by all sessions (read-only!)."""
    name = Path(filename).stem or "checkpoint"
    return models.load_checkpoint(_data, arch, None, class_names, input_size, mean, std, name=name, device=device)


_MODEL_LOCKS: list = []  # every `model_lock`, for `_finish_model_work` at exit


@st.cache_resource(show_spinner=False)
def model_lock(model_key: str) -> threading.RLock:
    """One lock per model: saliency runs on a model (dense or its pruned copies) hold it, across sessions."""
    lock = threading.RLock()
    _MODEL_LOCKS.append(lock)
    return lock


@atexit.register
def _finish_model_work() -> None:
    """At exit (e.g. Ctrl-C on the server): stop running prunes at their next check (`cancel.shutdown`) and wait,
    up to 30 s per model, for the work under each model lock (a prune, a saliency map) to end: torch ops still
    running in Streamlit's script threads while Python finalises abort the process."""
    from spade_engine.pruning import cancel

    cancel.shutdown()
    for lock in list(_MODEL_LOCKS):
        if lock.acquire(timeout=30):
            lock.release()


@st.cache_resource(show_spinner=False, max_entries=8)
def get_engine(model_key: str, device: str, _model: torch.nn.Module):
    """The shared `SpadeEngine` of a model (it caches traces and pruned copies, and is thread-safe)."""
    from spade_engine.engine import SpadeEngine

    return SpadeEngine(_model, device)


# ---------------------------------------------------------------------------------------------- examples


@st.cache_data(ttl=60, show_spinner=False)
def testbed_version(model_name: str | None) -> str:
    """The testbed generator of a model ("v1" or "v2", from its card; "v1" for non-testbed models and unknown
    names): pages generate testbed images and read facet names and trojans from this one."""
    from spade_engine import testbed

    return testbed.version_for(model_name)


@st.cache_data(ttl=60, show_spinner=False)
def all_examples() -> dict[str, dict]:
    """Every shipped example `file -> metadata` from `assets/examples/index.json` (files that exist only)."""
    index = EXAMPLES_DIR / "index.json"
    if not index.exists():
        return {}
    entries = json.loads(index.read_text())["examples"]  # written by spade_engine/testbed/examples.py
    return {e["file"]: e for e in entries if (EXAMPLES_DIR / e["file"]).exists()}


def examples(model_name: str | None = None) -> dict[str, dict]:
    """The shipped examples for a model, `file -> metadata`: the photographs, and for a testbed model the samples
    of its own generator (`testbed_version`: an entry's `"testbed"`, "v1" when absent). The ImageNet networks
    (packaged, torchvision, timm) get the photographs only: testbed scenes are out of their domain. A user's
    checkpoint may be either kind, so it gets both (as v1's testbed)."""
    photos_only = model_name is not None and imagenet_model(model_name)
    version = testbed_version(model_name)
    return {
        f: e
        for f, e in all_examples().items()
        if e.get("class") is None or (not photos_only and e.get("testbed", "v1") == version)
    }


@st.cache_data(ttl=60, show_spinner=False)
def imagenet_model(model_name: str) -> bool:
    """Whether a registered model classifies photos into ImageNet's classes (packaged, torchvision, timm, and a
    testbed card with `"classes": "imagenet"`, testbed real); False for testbeds and users' checkpoints."""
    try:
        info = models.get_info(model_name)
    except models.ModelLoadError:
        return False
    return info.family in ("packaged", "torchvision", "timm") or info.card.get("classes") == "imagenet"


def out_of_domain(model_name: str, meta: dict | None) -> str | None:
    """Why a sample is outside what the model was trained on (e.g. a photo shown to a testbed model), or None
    (`models.out_of_domain`, from the model card)."""
    return models.out_of_domain(model_name, meta)


PHOTO_RULE = "the shipped photo this model is most confident about (highest top-1 probability)"


@st.cache_data(show_spinner=False, max_entries=16)
def default_photo(model_key: str, files: tuple[str, ...], _loaded: models.LoadedModel) -> tuple[str, str, float]:
    """The example a real network opens on, by `PHOTO_RULE`: `(file, top-1 class name, its probability)`.

    Args:
        model_key: names the model in the cache; files: the shipped photos' file names; _loaded: the model.
    """
    from spade_engine.images import load_image

    batch = torch.stack([_loaded.preprocess(load_image(example_bytes(f))) for f in files])  # (N, 3, S, S)
    with torch.no_grad():
        p, c = _loaded.model(batch.to(next(_loaded.model.parameters()).device)).softmax(-1).max(-1)  # (N,), (N,)
    i = int(p.argmax())
    return files[i], _loaded.class_names[int(c[i])], float(p[i])


@st.cache_data(show_spinner=False, max_entries=256)
def example_bytes(file: str) -> bytes:
    """The bytes of a shipped example image."""
    return (EXAMPLES_DIR / Path(file).name).read_bytes()


@st.cache_data(ttl=60, show_spinner=False)
def example_by_digest() -> dict[str, dict]:
    """sha256 of each shipped example's bytes -> its metadata, to recognise an uploaded example."""
    from spade_engine.testbed.examples import by_digest

    return by_digest(EXAMPLES_DIR)


def patch_mask_bytes(meta: dict) -> bytes | None:
    """The exact trojan mask PNG of a shipped example (`masks/<stem>.png`, 255 on the trojan's pixels: the mask the
    protocol and the Teaching tour score trojan AUC against), or None when it has none."""
    name = meta.get("patch_mask") if meta.get("trojan") else None
    path = EXAMPLES_DIR / name if name else None
    return path.read_bytes() if path is not None and path.exists() else None


def patch_box(meta: dict) -> tuple[int, int, int, int] | None:
    """The trojan patch of an example as (left, top, right, bottom) pixels, or None when it has none."""
    if not meta.get("trojan"):
        return None
    box = meta.get("patch_box")  # [x0, y0, x1, y1], x1 and y1 exclusive
    return tuple(int(v) for v in box) if box else None


# ------------------------------------------------------------------------------------------------- SPADE


@dataclass
class SpadeRun:
    """A pruned copy for the current settings and how it was obtained."""

    pruned: torch.nn.Module = field(repr=False)
    result: object  # spade_engine.engine.PruneResult
    built_trace: bool  # prepare did the per-sample work now (cold run)
    pruned_now: bool  # the solver ran now (False: the engine had this pruned copy cached)
    seconds: float  # wall time of this call
    prefetch: Callable[[], None] = field(default=lambda: None, repr=False)  # see `run_spade(defer_prefetch=True)`

    def summary(self) -> str:
        """One line: what was computed or reused, and how long it took."""
        t = self.result.timings
        if self.built_trace:
            names = {"augment": "augment", "hessians": "Hessians", "inverse": "inverse", "solve": "solve"}
            phases = " · ".join(f"{name} {t.get(k, 0):.1f} s" for k, name in names.items())
            return f"SPADE ran in {self.seconds:.1f} s ({phases})"
        if self.pruned_now:
            phases = f"inverse {t.get('inverse', 0):.2f} s · solve {t.get('solve', 0):.2f} s"
            return f"Reused cached trace · re-pruned in {self.seconds:.2f} s ({phases})"
        if self.seconds >= 1.0:  # the pruned copy came from the background pre-prune, which was still running
            return (f"Reused cached trace and pruned network: waited {self.seconds:.1f} s for the background "
                    "pre-prune of this setting to finish")  # fmt: skip
        return f"Reused cached trace and pruned network ({self.seconds * 1000:.0f} ms)"


def spade_variant(settings) -> str:
    """The cache-key name of the network SPADE prunes with `settings` (a `SpadeSettings`):
    "spade:<n_aug>:<seed>:<prune_key>", the `variant` of `saliency`, `compare_maps` and the Sobol runs."""
    return f"spade:{settings.n_aug}:{settings.seed}:{settings.prune_key}"


def prune_config(settings):
    """`settings.prune_config` with the shipped sparsity profiles (`sparsity_profiles`), as `run_spade` takes it."""
    return settings.prune_config(sparsity_profiles())


def neighbour_configs(config, step: float = 0.01) -> list:
    """`config` at the slider's neighbouring sparsities (one step of 1% down and up, within [0, 0.99])."""
    values = [round(config.sparsity + delta, 2) for delta in (-step, step)]
    return [replace(config, sparsity=v) for v in values if 0.0 <= v <= 0.99]


def run_spade(
    model_key: str,
    device: str,
    model: torch.nn.Module,
    x: torch.Tensor,
    n_aug: int,
    seed: int,
    config,
    progress: Progress | None = None,
    augment_config=None,
    defer_prefetch: bool = False,
) -> SpadeRun:
    """Prepare (cached per sample by the engine) and prune (cached per config) for one sample.

    After the prune the engine pre-prunes the slider's neighbouring sparsities in a background thread at the
    lowest CPU priority (`SpadeEngine.prefetch`; env `SPADE_PREFETCH=0` turns it off), so that a one-step slider
    move is usually a cache hit. By default it starts at once, except for the exact OBC solver, whose solves take
    seconds each and would slow the page's own maps. With `defer_prefetch=True` nothing starts here: the page
    calls `run.prefetch()` once its own work is drawn, and then OBC neighbours are pre-pruned too.

    Args:
        model_key, device: identify the shared engine.
        model: the dense classifier (never modified).
        x: (3, H, W) image in [0, 1].
        n_aug, seed: calibration views and their seed.
        config: `PruneConfig`.
        progress: `progress(phase, done, total)`; called only for work actually done.
        augment_config: `AugmentConfig` of the calibration views (default: the engine's).
        defer_prefetch: leave starting the neighbours' prefetch to the caller (`SpadeRun.prefetch`).

    Returns:
        The run; `built_trace` / `pruned_now` tell what had to be computed.
    """
    engine = get_engine(model_key, device, model)
    did = {"prepare": False, "prune": False}

    def watch(stage: str) -> Progress:
        def cb(phase: str, done: int, total: int) -> None:
            did[stage] = True
            if progress is not None:
                progress(phase, done, total)

        return cb

    t0 = time.perf_counter()
    with model_lock(model_key):
        trace = engine.prepare(x, n_aug=n_aug, seed=seed, augment_config=augment_config, progress=watch("prepare"))
        pruned, result = engine.prune(trace, config, progress=watch("prune"))

    def prefetch() -> None:
        if os.environ.get("SPADE_PREFETCH", "1") != "0":
            engine.prefetch(trace, neighbour_configs(config))

    run = SpadeRun(pruned, result, did["prepare"], did["prune"], time.perf_counter() - t0)
    if defer_prefetch:
        return replace(run, prefetch=prefetch)
    if config.solver != "obc":  # exact solves take seconds each: only once the page has drawn (defer_prefetch)
        prefetch()
    return run


@st.cache_data(show_spinner=False, max_entries=256)
def predicted_class(model_key: str, sample_hash: str, device: str, _model: torch.nn.Module, _x: torch.Tensor) -> int:
    """The dense model's top-1 class for a sample (`_x`: (1, 3, H, W) in [0, 1]), under the model's lock."""
    with model_lock(model_key), torch.no_grad():
        return int(_model(_x.to(device))[0].argmax())


def spade_trace(model_key: str, device: str, model: torch.nn.Module, x: torch.Tensor, n_aug: int, seed: int,
                augment_config=None, progress: Progress | None = None):  # fmt: skip
    """The engine's trace of one sample (calibration views, Hessians; cached per sample by the engine), for pages
    that show it (the Teaching tour); `run_spade` takes the same trace from the engine's cache."""
    with model_lock(model_key):
        return get_engine(model_key, device, model).prepare(
            x, n_aug, seed, augment_config=augment_config, progress=progress
        )


# ---------------------------------------------------------------------------------------------- saliency


def saliency_methods() -> list[str]:
    """Names in the saliency registry."""
    from spade_engine.saliency import METHODS

    return list(METHODS)


def takes_layer(methods: list[str]) -> bool:
    """Whether any of `methods` explains a chosen layer (GradCAM and kin: `saliency.LAYER_METHODS`)."""
    from spade_engine.saliency import LAYER_METHODS

    return bool(set(methods) & set(LAYER_METHODS))


@st.cache_data(show_spinner=False, max_entries=64)
def gradcam_layers(
    model_key: str, sample_hash: str, _model: torch.nn.Module, _x: torch.Tensor
) -> tuple[str, list[str]]:
    """(default layer, every choosable layer) of GradCAM on the model (`saliency.gradcam_layers`), per model and
    sample; `_x` is (1, 3, H, W) in [0, 1]."""
    from spade_engine.saliency import gradcam_layers as layers

    with model_lock(model_key):
        return layers(_model, _x)


@st.cache_data(show_spinner=False, max_entries=512)
def saliency(
    model_key: str,
    sample_hash: str,
    variant: str,
    method: str,
    target: int,
    _model: torch.nn.Module,
    _x: torch.Tensor,
    reduction: str | None = None,
) -> np.ndarray:
    """A saliency map (H, W), cached per (model, sample, variant, method, target, reduction).

    Args:
        model_key, sample_hash: identify the model and the sample.
        variant: "dense" or the pruned network's settings (e.g. "spade:<n_aug>:<seed>:<prune_key>").
        method: a key of `spade_engine.saliency.METHODS`.
        target: class index.
        _model: the network to explain (dense or a pruned copy); not hashed.
        _x: (1, 3, H, W) in [0, 1]; not hashed.
        reduction: "absolute", "signed", or None for the method's (the paper's).
    """
    from spade_engine.saliency import attribute

    device = next(_model.parameters()).device
    with model_lock(model_key):
        return np.asarray(attribute(method, _model, _x.to(device), int(target), reduction), dtype=np.float32)


def compare_maps(
    model_key: str,
    sample_hash: str,
    variant: str,
    model: torch.nn.Module,
    pruned: torch.nn.Module,
    x: torch.Tensor,
    target: int,
    methods: list[str],
    reduction: str | None = None,
    layer: str | None = None,
    mask: np.ndarray | None = None,
    palette: str | None = None,
):
    """`spade_engine.explain.compare.compare_maps` with each map from `saliency` (cached per method and network).

    Args:
        model_key, sample_hash: identify the model and the sample; variant: the pruned network's settings
            ("spade:<n_aug>:<seed>:<prune_key>").
        model, pruned: the dense and the pruned network; x: (1, 3, H, W) in [0, 1].
        target, methods, reduction, layer, mask: as `compare_maps`; palette: the pairs' colour palette.

    Returns:
        The `Comparison` (pairs with `palette`, refusals).
    """
    from spade_engine.explain import compare

    def cached(name: str, net: torch.nn.Module, which: str, x: torch.Tensor, target: int, reduction) -> np.ndarray:
        return saliency(
            model_key, sample_hash, "dense" if which == "dense" else variant, name, target, net, x, reduction
        )

    comparison = compare.compare_maps(model, pruned, x, target, methods, reduction, layer, mask, attribute=cached)
    if palette is None:
        return comparison
    return replace(comparison, pairs=tuple(replace(p, palette=palette) for p in comparison.pairs))


def exports(sample_name: str, sample_hash: str, class_names: tuple[str, ...], result, target: int, comparison,
            methods: list[str], image_u8: np.ndarray, spade_label: str, header: str,
            mask: np.ndarray | None = None) -> tuple[bytes | None, str]:  # fmt: skip
    """The Debugger's downloads of one comparison: the PNG panel (`explain.panel`) and the CSV rows
    (`explain.compare`, the schema `spade explain` writes).

    Args:
        sample_name, sample_hash: the sample's file name and hash (the CSV's image id is its first 8 characters).
        class_names, result, target: the SPADE result and the explained class.
        comparison, methods: the `Comparison` of `compare_maps` and the methods asked for.
        image_u8 (H, W, 3), spade_label, header, mask: what the panel draws.

    Returns:
        (PNG bytes, or None without a map pair; CSV text).
    """
    from spade_engine.explain import compare, panel

    pairs = list(comparison.pairs)
    png = panel.panel_png(image_u8, pairs, spade_label, header, mask) if pairs else None
    rows = compare.export_rows(sample_name, sample_hash[:8], class_names, result, target, comparison, methods)
    return png, compare.export_csv(rows)


# ---------------------------------------------------------------------------------------------- long runs


class _Memo:
    """A thread-safe LRU of finished long runs shared by all sessions, with one lock per key."""

    def __init__(self, size: int = 32):
        self.size, self.items, self.lock, self.keys = size, OrderedDict(), threading.Lock(), KeyedLocks()

    def get(self, key: tuple):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
            return self.items.get(key)

    def put(self, key: tuple, value) -> None:
        with self.lock:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)


@st.cache_resource(show_spinner=False)
def _memo() -> _Memo:
    return _Memo()


def long_run(key: tuple, compute: Callable[[], object]):
    """The result of a long run (with its own progress bar) from the shared LRU, or `compute()` now; a session
    asking for a result another session is computing waits for it instead of computing it again."""
    memo = _memo()
    result = memo.get(key)
    if result is not None:
        return result
    with memo.keys.hold(repr(key)):
        result = memo.get(key)
        if result is None:
            result = compute()
            memo.put(key, result)
    return result


def long_run_done(key: tuple) -> bool:
    """Whether the long run `key` is finished and kept (a page then shows it without asking for a click)."""
    return _memo().get(key) is not None
