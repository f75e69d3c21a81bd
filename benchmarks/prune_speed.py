"""Cold SPADE time (augment + Hessians + inverse + solve) vs warm re-prune at a new sparsity, per phase.

    python benchmarks/prune_speed.py [--models resnet18 resnet50] [--n-aug 128] [--size 224] [--exact]
    python benchmarks/prune_speed.py --sweep
    python benchmarks/prune_speed.py --models resnet18 --per-layer [--compare-paths]

Random weights are fine for timing. `peak_RSS_MB` is the process's peak resident memory so far (Linux
`ru_maxrss`), so run one model per call for a per-model figure. Runs on CPU, and on CUDA when available. `--sweep` times only
`sparsegpt_solve` on CPU, on four layer shapes: kernel-sized mask blocks ("kernel") vs 128-column blocks, and the
compiled (Numba) lazy-block kernel against the torch one.

`--per-layer` also prints, per layer, the seconds and achieved GFLOP/s of each phase against its nominal work:
Hessians (path "shift", "depthwise" or "unfold": multiply-adds of `shift_flops`, of the depthwise (K, K)
products over every column, or of the unfold's upper block triangle at the column cap), inverse (Cholesky + triangular inverse, 2/3 d^3 per group), solve (the sweep, R d^2 / 2
multiply-adds per group: every column's OBS update of the later ones) and the layer error (R d^2 for the
dense energy, once per trace; `sweep_error` itself is O(R d)). One multiply-add is 2 flops. `--compare-paths` runs each model twice in one process,
first with the unfold path for every conv (as before the shifted path), then with the default rule.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import time
from collections import defaultdict

import torch
from torchvision.models import get_model

from spade_engine import engine as engine_module
from spade_engine.engine import SpadeEngine
from spade_engine.models import IMAGENET_MEAN, IMAGENET_STD, Classifier
from spade_engine.pruning import hessian, inverse_hessian
from spade_engine.pruning.hessian import HessianAccumulator
from spade_engine.pruning.shifted import shift_flops
from spade_engine.pruning.sparsegpt import sparsegpt_solve

SWEEP_SHAPES = {  # layer: (rows R, columns d, columns of its "kernel" mask block)
    "fc 1000x2048": (1000, 2048, 1),
    "1x1 conv 512x2048": (512, 2048, 1),
    "3x3 conv 512x4608": (512, 4608, 9),
    "3x3 conv 256x2304": (256, 2304, 9),
}


class LayerClock:
    """Per-layer seconds and nominal multiply-adds of each phase, recorded by wrapping the engine's calls."""

    def __init__(self):
        self.seconds = defaultdict(float)  # (layer, phase) -> s
        self.macs = defaultdict(float)  # (layer, phase) -> multiply-adds
        self.path: dict[str, str] = {}
        self.names: dict[int, str] = {}

    @contextlib.contextmanager
    def installed(self, engine: SpadeEngine):
        self.names = {id(m): n for n, m in engine._work.named_modules()}
        originals = (HessianAccumulator.add_batch, engine_module.inverse_hessian, engine_module.prune_layer)
        add_batch, inverse, prune_layer = originals
        current: list[str] = [""]
        clock = self

        def timed_add_batch(acc, inp):
            name = clock.names.get(id(acc.layer), "?")
            path = acc.path(inp.shape)
            if path == "shift":
                macs = shift_flops(acc.layer, inp.shape)
            elif path == "depthwise":  # every column, the full (K, K) product per channel
                macs = acc._H.shape[0] * acc._H.shape[-1] ** 2 * acc._n_columns(inp.shape)
            else:
                g, d = acc._H.shape[0], acc._H.shape[-1]
                n = acc._n_columns(inp.shape)
                cap = n if acc.max_columns is None else min(n, acc.max_columns)
                diagonal = sum(r == c for r, c in acc._blocks)
                macs = len(acc._blocks) / diagonal**2 * g * d * d * cap
            t0 = time.perf_counter()
            add_batch(acc, inp)
            clock.seconds[(name, "hessian")] += time.perf_counter() - t0
            clock.macs[(name, "hessian")] += macs
            clock.path[name] = path

        def timed_inverse(H, damp=0.01, *a, **k):
            t0 = time.perf_counter()
            out = inverse(H, damp, *a, **k)
            clock.seconds[(current[0], "inverse")] += time.perf_counter() - t0
            clock.macs[(current[0], "inverse")] += H.shape[0] * H.shape[-1] ** 3 * 2 / 3
            return out

        def timed_prune_layer(layer, hinv, *a, **k):
            name = current[0]  # the pruned copy's layer: named by the `_inverse` call just before
            t0 = time.perf_counter()
            out = prune_layer(layer, hinv, *a, **k)
            clock.seconds[(name, "solve")] += time.perf_counter() - t0
            g, r, d = out[0].shape
            clock.macs[(name, "solve")] += g * r * d * d / 2
            return out

        def timed(fn, macs):  # the layer-error functions: `reconstruction_error` 2 R d^2, `dense_energy` R d^2
            def wrapper(W, *a):
                t0 = time.perf_counter()
                out = fn(W, *a)
                clock.seconds[(current[0], "error")] += time.perf_counter() - t0
                clock.macs[(current[0], "error")] += macs * W.numel() * W.shape[-1]
                return out

            return wrapper

        errors = (engine_module.reconstruction_error, engine_module.dense_energy, engine_module.sweep_error)
        layer_inverse = engine._inverse

        def named_inverse(trace, name, *a, **k):
            current[0] = name
            return layer_inverse(trace, name, *a, **k)

        HessianAccumulator.add_batch = timed_add_batch
        engine_module.inverse_hessian = timed_inverse
        engine_module.prune_layer = timed_prune_layer
        engine_module.reconstruction_error = timed(errors[0], 2)
        engine_module.dense_energy = timed(errors[1], 1)
        engine_module.sweep_error = timed(errors[2], 0)
        engine._inverse = named_inverse
        try:
            yield self
        finally:
            HessianAccumulator.add_batch = add_batch
            engine_module.inverse_hessian = inverse
            engine_module.prune_layer = prune_layer
            engine_module.reconstruction_error, engine_module.dense_energy, engine_module.sweep_error = errors
            del engine._inverse

    def print(self, title: str) -> None:
        phases = ["hessian", "inverse", "solve", "error"]
        print(f"\nper layer, {title}: seconds (GFLOP/s), one multiply-add = 2 flops")
        print(" | ".join(f"{h:>18}" for h in ["layer", "path", *phases]))
        layers = list(dict.fromkeys(n for n, _ in self.seconds))
        for name in layers:
            cells = [name, self.path.get(name, "-")]
            for ph in phases:
                t = self.seconds.get((name, ph), 0.0)
                rate = 2 * self.macs.get((name, ph), 0.0) / t / 1e9 if t else 0.0
                cells.append(f"{t:.3f} ({rate:.0f})" if t else "-")
            print(" | ".join(f"{v:>18}" for v in cells))
        for ph in phases:
            t = sum(v for (_, p), v in self.seconds.items() if p == ph)
            m = sum(v for (_, p), v in self.macs.items() if p == ph)
            print(f"total {ph}: {t:.2f} s, {2 * m / 1e9:.0f} GFLOP, {2 * m / max(t, 1e-9) / 1e9:.0f} GFLOP/s")


def run(
    arch: str, device: str, n_aug: int, size: int, max_columns: int | None, per_layer: bool = False
) -> dict[str, float]:
    torch.manual_seed(0)
    model = Classifier(get_model(arch, weights=None), IMAGENET_MEAN, IMAGENET_STD).eval()
    engine = SpadeEngine(model, device, batch_size=64, max_columns=max_columns)
    cold_clock, warm_clock = LayerClock(), LayerClock()
    x = torch.rand(3, size, size)
    t0 = time.perf_counter()
    with cold_clock.installed(engine) if per_layer else contextlib.nullcontext():
        trace = engine.prepare(x, n_aug=n_aug, seed=0)
        _, cold = engine.prune(trace, 0.9)
    if device == "cuda":
        torch.cuda.synchronize()
    cold_total = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warm_clock.installed(engine) if per_layer else contextlib.nullcontext():
        _, warm = engine.prune(trace, 0.8)
    if device == "cuda":
        torch.cuda.synchronize()
    warm_total = time.perf_counter() - t0
    if per_layer:
        cold_clock.print(f"{arch} {device} cold")
        warm_clock.print(f"{arch} {device} re-prune")
    return {
        "augment": cold.timings["augment"],
        "hessians": cold.timings["hessians"],
        "inverse": cold.timings["inverse"],
        "solve": cold.timings["solve"],
        "cold": cold_total,
        "warm_solve": warm.timings["solve"],
        "warm": warm_total,
        "ratio": cold_total / warm_total,
        "cache_MB": engine.cache_info()["trace_bytes"] / 2**20,
        "peak_RSS_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10,  # Linux: KiB; process peak so far
    }


def sweep(sparsity: float = 0.9) -> None:
    """Print `sparsegpt_solve`'s time per shape (float32, G=1, Hessian of random X with n = 4d columns): kernel-sized
    vs 128-column mask blocks with the torch kernel, and kernel-sized blocks with the compiled (Numba) kernel,
    median of 3 after a warm-up call (which loads or compiles the Numba function)."""
    print(f"sparsity={sparsity} threads={torch.get_num_threads()}")
    heads = ["layer", "kernel block (s)", "128 block (s)", "ratio", "compiled (s)", "torch/compiled"]
    print(" | ".join(f"{h:>17}" for h in heads))
    for name, (r, d, kernel) in SWEEP_SHAPES.items():
        gen = torch.Generator().manual_seed(0)
        X = torch.randn(1, d, 4 * d, generator=gen)  # (G, d, n)
        hinv = inverse_hessian(2 * X @ X.transpose(1, 2) / X.shape[-1], 0.01)
        W = torch.randn(1, r, d, generator=gen)  # (G, R, d)
        times = []
        for blocksize, how in ((kernel, "torch"), (128, "torch"), (kernel, "compiled")):
            sparsegpt_solve(W, hinv, sparsity, blocksize, kernel=how)
            runs = []
            for _ in range(3):
                t0 = time.perf_counter()
                sparsegpt_solve(W, hinv, sparsity, blocksize, kernel=how)
                runs.append(time.perf_counter() - t0)
            times.append(sorted(runs)[1])
        row = [name, f"{times[0]:.3f} (k={kernel})", f"{times[1]:.3f}", f"{times[0] / times[1]:.2f}x"]
        row += [f"{times[2]:.3f}", f"{times[0] / times[2]:.2f}x"]
        print(" | ".join(f"{v:>17}" for v in row), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    ap.add_argument("--n-aug", type=int, default=128)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--exact", action="store_true", help="no Hessian column subsampling")
    ap.add_argument("--threads", type=int, default=0, help="torch threads on CPU (0: torch's default)")
    ap.add_argument("--sweep", action="store_true", help="time only the SparseGPT sweep on four layer shapes")
    ap.add_argument("--per-layer", action="store_true", help="seconds and GFLOP/s per layer and phase")
    ap.add_argument("--compare-paths", action="store_true", help="each model with the unfold path, then default")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.sweep:
        return sweep()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    cols = None if args.exact else 32768
    print(f"n_aug={args.n_aug} size={args.size} max_columns={cols} threads={torch.get_num_threads()}")
    header = [
        "model",
        "device",
        "augment",
        "hessians",
        "inverse",
        "solve",
        "cold",
        "warm",
        "ratio",
        "cache_MB",
        "peak_RSS_MB",
    ]
    print(" | ".join(f"{h:>9}" for h in header))
    paths = [("unfold", 0.0), ("default", hessian.SHIFT_ADVANTAGE)] if args.compare_paths else [("", None)]
    for arch in args.models:
        for device in devices:
            for label, advantage in paths:
                if advantage is not None:
                    hessian.SHIFT_ADVANTAGE = advantage
                r = run(arch, device, args.n_aug, args.size, cols, args.per_layer)
                row = (
                    [arch + (f" ({label})" if label else ""), device]
                    + [f"{r[k]:.2f}" for k in header[2:8]]
                    + [f"{r['ratio']:.1f}x", f"{r['cache_MB']:.0f}", f"{r['peak_RSS_MB']:.0f}"]
                )
                print(" | ".join(f"{v:>9}" for v in row), flush=True)


if __name__ == "__main__":
    main()
