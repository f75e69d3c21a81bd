"""A protocol run: every method on every column for each sample (`sample_rows`: the unit of work of a Ray task,
see `spade_engine.protocol.ray`), and the serial run over all samples (`run_protocol`)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pandas as pd
from torch import nn

from spade_engine.engine import SpadeEngine
from spade_engine.protocol.columns import Networks, column_models, networks
from spade_engine.protocol.config import KIND_METRICS, ProtocolConfig
from spade_engine.protocol.samples import Sample, run_samples
from spade_engine.protocol.scores import insertion_scores, trojan_scores
from spade_engine.saliency import UnsupportedModelError, attribute

Progress = Callable[[str, int, int], None]  # progress(phase, done, total), e.g. ("trojan", 3, 100)
ENGINE_CACHE_BYTES = 256 * 2**20  # each sample is visited once: keep little


def sample_rows(
    nets: Networks, cfg: ProtocolConfig, kind: str, position: int, sample: Sample, engine: SpadeEngine | None = None
) -> list[dict]:
    """One sample's rows: every method on every column, scored for `kind` ("trojan" or "insertion").

    Args:
        nets: `networks(cfg, model)`; position: the sample's place in its kind (the exact column keeps the first
            `cfg.exact_samples`); engine: a `SpadeEngine` over `nets.model` (a new one when None).

    Returns:
        Rows with the fields of `ROW_FIELDS` that `kind` measures; a map the method refuses on a column's network
        (`UnsupportedModelError`) gets NaN scores and the reason in "unsupported" instead of stopping the run.
    """
    engine = engine or SpadeEngine(nets.model, cfg.device, max_cache_bytes=ENGINE_CACHE_BYTES)
    all_columns = [*cfg.columns, *(v.name for v in cfg.variants)]
    cols = [c for c in all_columns if c != "SPADE-exact" or cfg.exact_samples is None or position < cfg.exact_samples]
    rows = []
    photo = {"photo": sample.photo} if sample.photo else {}  # samples of real photos: intervals resample photos
    x = sample.image[None].to(cfg.device)  # (1, 3, H, W)
    for col, (net, agrees) in column_models(engine, sample, cfg, cols, nets.fixed, nets.spade).items():
        for method in cfg.methods:
            t0 = time.perf_counter()
            try:
                sal = attribute(method, net, x, sample.target)
            except UnsupportedModelError as e:  # e.g. LRP not conservative on one pruned net: no score, say why
                rows.append({"kind": kind, "sample": sample.index, "method": method, "column": col,
                             "agrees": agrees, "seconds": time.perf_counter() - t0, **photo,
                             **dict.fromkeys(KIND_METRICS[kind], float("nan")), "unsupported": str(e)})  # fmt: skip
                continue
            score = (
                trojan_scores(sal, sample)
                if kind == "trojan"
                else insertion_scores(nets.model, sal, sample, cfg.steps, cfg.device)
            )
            rows.append({"kind": kind, "sample": sample.index, "method": method, "column": col, "agrees": agrees,
                         "seconds": time.perf_counter() - t0, **photo, **score})  # fmt: skip
    return rows


def run_protocol(
    cfg: ProtocolConfig,
    model: nn.Module | None = None,
    progress: Progress | None = None,
    on_sample: Callable[[list[dict]], None] | None = None,
    done: frozenset[tuple[str, int]] = frozenset(),
) -> pd.DataFrame:
    """Every method on every column for the configured samples, in this process; one row per (kind, sample,
    method, column). `spade_engine.distributed.run_protocol_ray` is the same run spread over Ray workers.

    Args:
        cfg: the run.
        model: the dense model (default: `load_model(cfg.model)`).
        progress: `progress(phase, done, total)`.
        on_sample: called with each finished sample's rows (e.g. to append them to a file as they come).
        done: (kind, sample index) pairs finished by an earlier, interrupted run: skipped, not in the result.

    Raises:
        FileNotFoundError: SPADE-tuned without a tuned profile.
    """
    from spade_engine.models import load_model

    model = model if model is not None else load_model(cfg.model, cfg.device).model
    nets = networks(cfg, model)
    engine = SpadeEngine(model, cfg.device, max_cache_bytes=ENGINE_CACHE_BYTES)
    plan = run_samples(cfg, model)
    rows = []
    for kind in dict.fromkeys(k for k, _, _ in plan):
        todo = [(i, s) for k, i, s in plan if k == kind]
        for i, sample in todo:
            if progress:
                progress(kind, i, len(todo))
            if (kind, sample.index) in done:
                continue
            new = sample_rows(nets, cfg, kind, i, sample, engine)
            rows += new
            if on_sample:
                on_sample(new)
        if progress:
            progress(kind, len(todo), len(todo))
    return pd.DataFrame(rows)


Runner = Callable[..., pd.DataFrame]  # `run_protocol`'s signature: (cfg, model, progress, on_sample, done)
