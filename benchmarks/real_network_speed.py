"""A new photo's first SPADE run and dense + SPADE map pairs (Saliency, IntegratedGradients, GradCAM) on the real
EfficientNet-Lite0, per phase.

    python benchmarks/real_network_speed.py [--views 64] [--repeats 3] [--threads 2] [--compare | --baseline REV]
    python benchmarks/real_network_speed.py --calibration dense --sparsity 0.8    # another setting than the card's

Each repeat runs in a fresh process (model loading not timed): `prepare` (augment, the layer trace; before the
Hessians became lazy it also held the dense pass of the views), one `prune` with the model card's settings
(asymmetric calibration at 70% for Lite0; `--calibration`, `--sparsity` override them), then a Saliency map on the
dense model and on the pruned copy (with the time spent making attribution copies), and the IntegratedGradients and
GradCAM pairs with the registry's defaults (as the Debugger runs them). Within the first run: the
layers' input moments per layer type (depthwise, pointwise 1x1, full k x k convs (the same-padded stem), linear;
Hessians and the asymmetric cross moments, in whichever pass fills them), the inverse factors, the column sweeps,
and the rest (the forward passes themselves, the model copy).

`--compare` runs the old code paths (`_old_paths`: the Hessian rule, TF-"same" handling and saliency copies
from before issue 26's work, selected in-process, so everything else is the same code) side by side with the
current ones; `--baseline REV` instead runs `spade_engine/` of that revision (`git archive` into a temporary
folder). Each repeat runs the old version, then the current one, so both see the same load; the tables give the
medians, their spread (min-max over repeats) and the ratio of medians (old / now) with the spread of the
per-repeat ratios, in wall-clock seconds and in the process's CPU seconds (all threads: less sensitive to other
users of a shared machine; there the forward row also holds the augmentation). The load (`/proc/loadavg`) is printed before and after: only ratios from one run
compare.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "assets" / "examples" / "photo_chelsea.jpg"
TYPES = ("depthwise", "pointwise", "full conv", "linear")
ROWS = (
    "prepare (augment, layer trace)",
    "prune",
    "  moments: depthwise",
    "  moments: pointwise",
    "  moments: full conv",
    "  moments: linear",
    "  inverse (+ asymmetric target)",
    "  solve",
    "  rest (forward passes, copies)",
    "first SPADE run (prepare + prune)",
    "saliency dense",
    "saliency pruned",
    "  of which attribution copies",
    "saliency pair (dense + pruned)",
    "IntegratedGradients pair (dense + pruned)",
    "GradCAM pair (dense + pruned)",
)
PAIRS = ("IntegratedGradients", "GradCAM")  # the other gradient methods of the "each map pair <= 1 s"
FIRST_RUN = ROWS.index("first SPADE run (prepare + prune)")


def layer_type(layer) -> str:
    """depthwise, pointwise (1x1, one group), full conv (k x k) or linear."""
    from torch import nn

    if isinstance(layer, nn.Linear):
        return "linear"
    if layer.groups > 1 and layer.groups == layer.in_channels:
        return "depthwise"
    return "pointwise" if tuple(layer.kernel_size) == (1, 1) else "full conv"


def measure(args: argparse.Namespace) -> dict[str, float]:
    """One repeat in this process: seconds per row of `ROWS` (keys "cpu:<row>": the process's CPU seconds)."""
    import torch

    torch.set_num_threads(args.threads)
    from spade_engine import engine as engine_module
    from spade_engine.engine import SpadeEngine
    from spade_engine.images import load_image
    from spade_engine.models import load_model
    from spade_engine.pruning.hessian import HessianAccumulator
    from spade_engine.saliency import _canonical, registry
    from spade_engine.settings import SpadeSettings

    if args.old:
        _old_paths()
    loaded = load_model("efficientnet_lite0", allow_download=False)
    model = loaded.model
    x = loaded.preprocess(load_image(PHOTO))  # (3, 224, 224)
    engine = SpadeEngine(model)
    card = SpadeSettings(n_aug=args.views, sparsity=args.sparsity, calibration=args.calibration)
    config = card.resolved("efficientnet_lite0").prune_config()
    seconds: dict[str, float] = defaultdict(float)
    seconds["config"] = str(config)  # type: ignore[assignment]
    add_batch, copy_fn = HessianAccumulator.add_batch, _canonical.attribution_copy
    paired = getattr(engine_module, "paired_moments", None)

    def timed(kind_of, fn):
        def run(*a, **k):
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn(*a, **k)
            seconds[f"  moments: {kind_of(*a)}"] += time.perf_counter() - t0
            seconds[f"cpu:  moments: {kind_of(*a)}"] += time.process_time() - c0
            return out

        return run

    def timed_copy(*a, **k):
        t0 = time.perf_counter()
        out = copy_fn(*a, **k)
        seconds["  of which attribution copies"] += time.perf_counter() - t0
        return out

    HessianAccumulator.add_batch = timed(lambda acc, inp: layer_type(acc.layer), add_batch)
    if paired is not None:
        engine_module.paired_moments = timed(lambda layer, *a: layer_type(layer), paired)

    def clock(label: str, fn, *a):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(*a)
        seconds[label], seconds[f"cpu:{label}"] = time.perf_counter() - t0, time.process_time() - c0
        return out

    trace = clock("prepare (augment, layer trace)", lambda: engine.prepare(x, n_aug=args.views))
    pruned, result = clock("prune", engine.prune, trace, config)
    seconds["  inverse (+ asymmetric target)"], seconds["  solve"] = result.timings["inverse"], result.timings["solve"]
    for prefix in ("", "cpu:"):
        first = seconds[prefix + "prepare (augment, layer trace)"] + seconds[prefix + "prune"]
        seconds[prefix + "first SPADE run (prepare + prune)"] = first
        moments = sum(seconds[f"{prefix}  moments: {t}"] for t in TYPES)
        solver = 0.0 if prefix else seconds["  inverse (+ asymmetric target)"] + seconds["  solve"]
        seconds[prefix + "  rest (forward passes, copies)"] = first - moments - solver
    for module in [m for m in sys.modules.values() if getattr(m, "attribution_copy", None) is copy_fn]:
        module.attribution_copy = timed_copy
    target = int(result.dense_logits.argmax())
    for label, net in (("dense", model), ("pruned", pruned)):
        t0, c0 = time.perf_counter(), time.process_time()
        registry.attribute("Saliency", net, x, target)
        seconds[f"saliency {label}"] = time.perf_counter() - t0
        seconds[f"cpu:saliency {label}"] = time.process_time() - c0
    seconds["saliency pair (dense + pruned)"] = seconds["saliency dense"] + seconds["saliency pruned"]
    seconds["cpu:saliency pair (dense + pruned)"] = seconds["cpu:saliency dense"] + seconds["cpu:saliency pruned"]
    for method in PAIRS:  # the registry's defaults, as the Debugger runs them
        t0, c0 = time.perf_counter(), time.process_time()
        for net in (model, pruned):
            registry.attribute(method, net, x, target)
        seconds[f"{method} pair (dense + pruned)"] = time.perf_counter() - t0
        seconds[f"cpu:{method} pair (dense + pruned)"] = time.process_time() - c0
    return dict(seconds)


def _old_paths() -> None:
    """The code paths before issue 26's speed work, in this process: Hessians by the old rule (shifted or
    unfold, for depthwise convs too), timm's TF-"same" convs left dense as before (then misread as
    weight-transforming), gradient maps on a fresh attribution copy per map."""
    from spade_engine import engine
    from spade_engine.pruning.hessian import HessianAccumulator
    from spade_engine.pruning.padding import is_tf_same
    from spade_engine.reparam import TRANSFORMED
    from spade_engine.saliency import _canonical, gradients

    HessianAccumulator.path = lambda self, shape: "shift" if self.shifted(shape) else "unfold"
    transformed = engine.transformed_weight_layers

    def old_transformed(model, x, names):
        modules = dict(model.named_modules())
        return {**transformed(model, x, names), **{n: TRANSFORMED for n in names if is_tf_same(modules[n])}}

    engine.transformed_weight_layers = old_transformed
    gradients._model = lambda inp: _canonical.attribution_copy(inp.net, inp.z).module


def run_repeat(src: Path, args: argparse.Namespace, old: bool = False) -> dict[str, float]:
    """One repeat in a fresh process with `src` first on the path (`old`: with `_old_paths`)."""
    cmd = [sys.executable, __file__, "--worker", "--views", str(args.views), "--threads", str(args.threads)]
    cmd += ["--calibration", args.calibration] if args.calibration else []
    cmd += ["--old"] if old else []
    cmd += ["--sparsity", str(args.sparsity)] if args.sparsity is not None else []
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{ROOT}", "SPADE_OFFLINE": "1"}
    env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def extract(commit: str, into: Path) -> Path:
    """`spade_engine/` and the model cards of `commit` under `into` (git archive; the repository is not touched)."""
    archive = subprocess.run(["git", "archive", commit, "spade_engine", "assets/models"], cwd=ROOT, check=True,
                             capture_output=True)  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} [{min(values):.2f}-{max(values):.2f}]"


def table(runs: dict[str, list[dict[str, float]]], prefix: str = "") -> None:
    """Median [min-max] per row and version; ratio of medians (baseline / now) [per-repeat ratios' spread].
    `prefix` "cpu:" gives the process's CPU seconds (all threads) instead of wall-clock seconds."""
    names = list(runs)
    head = f"{'phase (' + ('CPU-s' if prefix else 'wall s') + ')':44}" + "".join(f"{n:>24}" for n in names)
    print(head + ("  ratio base/now [spread]" if len(names) == 2 else ""))
    for row in ROWS:
        cells = [[r.get(prefix + row, 0.0) for r in runs[n]] for n in names]
        if prefix and not any(any(c) for c in cells):
            continue
        line = f"{row:44}" + "".join(f"{spread(c):>24}" for c in cells)
        if len(names) == 2 and statistics.median(cells[1]) > 0:
            ratios = [b / max(n, 1e-9) for b, n in zip(cells[0], cells[1], strict=True)]
            med = statistics.median(cells[0]) / statistics.median(cells[1])
            line += f"  {med:6.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=None, help="default: the model card's (spade.views)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sparsity", type=float, default=None, help="default: the model card's")
    parser.add_argument(
        "--calibration", default=None, choices=("dense", "sequential", "asymmetric"), help="default: the model card's"
    )
    parser.add_argument("--baseline", default=None, help="a commit to run side by side (its spade_engine/)")
    parser.add_argument("--compare", action="store_true", help="also the old paths (`_old_paths`), alternating")
    parser.add_argument("--old", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.views is None:
        from spade_engine.models import spade_views

        args.views = spade_views("efficientnet_lite0")
    if args.worker:
        print(json.dumps(measure(args)))
        return
    print(f"load before: {Path('/proc/loadavg').read_text().strip()}  ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory() as tmp:
        versions = {f"now ({_head()}+tree)": (ROOT, False)}
        if args.compare:
            versions = {"old paths": (ROOT, True), **versions}
        elif args.baseline:
            versions = {f"baseline {args.baseline}": (extract(args.baseline, Path(tmp)), False), **versions}
        runs: dict[str, list[dict[str, float]]] = {n: [] for n in versions}
        for r in range(args.repeats):
            for name, (src, old) in versions.items():
                runs[name].append(run_repeat(src, args, old))
                first = runs[name][-1][ROWS[FIRST_RUN]]
                print(f"  repeat {r + 1}/{args.repeats} {name}: first run {first:.2f} s", flush=True)
    print(f"load after: {Path('/proc/loadavg').read_text().strip()}")
    print(f"Lite0, 224 px, {args.views} views, {args.threads} threads, {args.repeats} repeats")
    for name, rs in runs.items():
        print(f"  {name}: {rs[0]['config']}")
    table(runs)
    print()
    table(runs, "cpu:")


def _head() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()


if __name__ == "__main__":
    main()
