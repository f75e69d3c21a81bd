"""The saliency protocol on Ray: one task per sample, the networks shipped once through the object store.

    spade protocol --model testbed_resnet --trojan 100 --clean 100 --out results.csv            # local cluster
    spade protocol --address auto --model testbed_resnet --out results.csv                      # a running cluster

Only the command line (`spade_engine.cli.protocol`) imports this module: the protocol library never names Ray.
`run_protocol_ray` has `run_protocol`'s signature and result (the same rows in the same order), so
`run_to_csv` appends each sample's rows to `<out>.partial.csv` as its task finishes and `--resume`
skips finished samples. The driver loads the model, builds the fixed networks (Dense, Sparse FC) and the sample
list once; `ray.put` stores them once, every task reads them from the object store (Ray's documented pattern for
large shared arguments: https://docs.ray.io/en/latest/ray-core/patterns/pass-large-arg-by-value.html). Each task
requests one CPU, and `gpus_per_task` GPUs when the cluster has GPUs (then it runs on "cuda"). At most `workers`
tasks are in flight. Ray is an optional dependency (`pip install -e ".[ray]"`).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pandas as pd
from torch import nn

from spade_engine.protocol.columns import Networks, networks
from spade_engine.protocol.config import ProtocolConfig
from spade_engine.protocol.run import Progress, sample_rows
from spade_engine.protocol.samples import run_samples

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # spade_engine/, shipped to the workers


class RayUnavailableError(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached; the message says what to do."""


def _ray():
    try:
        import ray
    except ImportError as e:
        raise RayUnavailableError(
            'Ray is not installed: `pip install -e ".[ray]"` (or `pip install ray`), or run serially with --serial.'
        ) from e
    return ray


def connect(address: str | None = None, workers: int | None = None) -> bool:
    """Join the Ray cluster at `address`, or start a local one with `workers` CPUs (default: all cores).

    Our package travels with the job (`runtime_env.py_modules`), so cluster nodes need the dependencies but not
    this checkout. A SIGTERM handler the caller installed stays (`ray.init` would replace it). An already initialised Ray (e.g. a test's `ray.init(num_cpus=2)`) is used as it is.

    Returns:
        Whether this call started Ray (then `run_protocol_ray` shuts it down at the end).

    Raises:
        RayUnavailableError: Ray missing, or no cluster at `address`.
    """
    ray = _ray()
    if ray.is_initialized():
        return False
    env = {"py_modules": [str(PACKAGE_DIR)]}
    sigterm = signal.getsignal(signal.SIGTERM)  # `ray.init` replaces it with `sys.exit(15)`
    try:
        if address:
            ray.init(address=address, runtime_env=env, log_to_driver=False)
        else:
            ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, runtime_env=env, log_to_driver=False)
    except Exception as e:  # Ray raises bare Exceptions too (e.g. "timed out during startup" on a busy machine)
        where = address or "a local cluster"
        raise RayUnavailableError(
            f"Could not start or reach Ray ({where}): {e} Try again, or run with --serial."
        ) from e
    finally:
        if callable(sigterm) and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, sigterm)  # the caller's (e.g. the command line's clean stop) stays
    return True


def _sample_task(nets: Networks, cfg: ProtocolConfig, kind: str, position: int, sample, on_gpu: bool) -> list[dict]:
    """One Ray task: a sample's rows (`sample_rows`), on the task's GPU when it was given one (Ray sets
    `CUDA_VISIBLE_DEVICES` to it, so it is "cuda")."""
    if on_gpu:
        cfg = replace(cfg, device="cuda")
    nets.to(cfg.device)
    return sample_rows(nets, cfg, kind, position, sample)


def run_protocol_ray(
    cfg: ProtocolConfig,
    model: nn.Module | None = None,
    progress: Progress | None = None,
    on_sample: Callable[[list[dict]], None] | None = None,
    done: frozenset[tuple[str, int]] = frozenset(),
    workers: int | None = None,
    address: str | None = None,
    gpus_per_task: float | None = None,
) -> pd.DataFrame:
    """`run_protocol` with one Ray task per sample; the same rows in the same order.

    Args:
        cfg, model, progress, on_sample, done: as `run_protocol` (`on_sample` runs in this process as
            each task finishes, in finishing order).
        workers: tasks in flight at once (default: the cluster's GPUs when tasks get GPUs, else its CPUs).
        address: a running cluster ("auto", "ray://head:10001"); None starts a local one (`connect`).
        gpus_per_task: GPUs each task requests (default: 1 when the cluster has GPUs, else 0; 0.5 puts two
            samples on one GPU).

    Raises:
        RayUnavailableError: Ray missing or unreachable. FileNotFoundError: SPADE-tuned without a tuned profile.
        ray.exceptions.RayTaskError: a sample failed (finished samples are already in `on_sample`'s file).
    """
    from spade_engine.models import load_model

    ray = _ray()
    started = connect(address, workers)
    try:
        model = model if model is not None else load_model(cfg.model, cfg.device).model
        nets = networks(cfg, model.cpu() if cfg.device == "cpu" else model)
        plan = run_samples(cfg, model)
        resources = ray.cluster_resources()
        gpus = gpus_per_task if gpus_per_task is not None else (1.0 if resources.get("GPU", 0) > 0 else 0.0)
        slots = workers or int(resources.get("GPU", 0) / gpus if gpus else resources.get("CPU", 1))
        task = ray.remote(_sample_task).options(num_cpus=1, num_gpus=gpus, max_retries=0)
        nets_ref = ray.put(nets)  # once; every task reads it from the object store
        args = (nets_ref, cfg)
        results = _schedule(ray, task, args, gpus > 0, plan, done, max(slots, 1), progress, on_sample, not started)
    finally:
        if started:
            ray.shutdown()
    order = [(kind, i) for kind, i, _ in plan if (kind, i) in results]
    return pd.DataFrame([row for key in order for row in results[key]])


def _schedule(ray, task, args, on_gpu, plan, done, slots, progress, on_sample, cancel) -> dict[tuple[str, int], list]:
    """Keep `slots` tasks in flight; hand each finished sample's rows to `on_sample` as it comes.

    On an error or a signal, `cancel` stops the tasks still in flight (a cluster we joined). A local cluster we
    started is not cancelled task by task: `ray.shutdown` stops its workers, and a cancel that races a task's
    finishing reply aborts the driver inside Ray ("Tried to complete task that was not pending",
    ray-project/ray#54798; seen in our CI on a SIGTERM).
    """
    todo = [(kind, i, s) for kind, i, s in plan if (kind, s.index) not in done]
    totals = {kind: sum(1 for k, _, _ in plan if k == kind) for kind, _, _ in plan}
    finished = {kind: total - sum(1 for k, _, _ in todo if k == kind) for kind, total in totals.items()}
    pending: dict = {}
    results: dict[tuple[str, int], list] = {}
    try:
        while todo or pending:
            while todo and len(pending) < slots:
                kind, i, sample = todo.pop(0)
                pending[task.remote(*args, kind, i, sample, on_gpu)] = (kind, i)
            ready, _ = ray.wait(list(pending), num_returns=1)
            key = pending.pop(ready[0])
            results[key] = ray.get(ready[0])
            finished[key[0]] += 1
            if on_sample:
                on_sample(results[key])
            if progress:
                progress(key[0], finished[key[0]], totals[key[0]])
    finally:
        for ref in pending if cancel else ():  # an error or Ctrl-C: stop the rest; finished samples are saved
            ray.cancel(ref, force=True)
    return results
