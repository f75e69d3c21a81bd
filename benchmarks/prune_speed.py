"""Cold SPADE time (augment + Hessians + inverse + solve) vs warm re-prune at a new sparsity, per phase.

    python benchmarks/prune_speed.py [--models resnet18 resnet50] [--n-aug 128] [--size 224] [--exact]
    python benchmarks/prune_speed.py --sweep

Random weights are fine for timing. `peak_RSS_MB` is the process's peak resident memory so far (Linux
`ru_maxrss`), so run one model per call for a per-model figure. Runs on CPU, and on CUDA when available. `--sweep` times only
`sparsegpt_solve` on CPU, on four layer shapes: kernel-sized mask blocks ("kernel") vs 128-column blocks.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from torchvision.models import get_model

from spade_engine.engine import SpadeEngine
from spade_engine.models import IMAGENET_MEAN, IMAGENET_STD, Classifier
from spade_engine.pruning import inverse_hessian
from spade_engine.pruning.sparsegpt import sparsegpt_solve

SWEEP_SHAPES = {  # layer: (rows R, columns d, columns of its "kernel" mask block)
    "fc 1000x2048": (1000, 2048, 1),
    "1x1 conv 512x2048": (512, 2048, 1),
    "3x3 conv 512x4608": (512, 4608, 9),
    "3x3 conv 256x2304": (256, 2304, 9),
}


def run(arch: str, device: str, n_aug: int, size: int, max_columns: int | None) -> dict[str, float]:
    torch.manual_seed(0)
    model = Classifier(get_model(arch, weights=None), IMAGENET_MEAN, IMAGENET_STD).eval()
    engine = SpadeEngine(model, device, batch_size=64, max_columns=max_columns)
    x = torch.rand(3, size, size)
    t0 = time.perf_counter()
    trace = engine.prepare(x, n_aug=n_aug, seed=0)
    _, cold = engine.prune(trace, 0.9)
    if device == "cuda":
        torch.cuda.synchronize()
    cold_total = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, warm = engine.prune(trace, 0.8)
    if device == "cuda":
        torch.cuda.synchronize()
    warm_total = time.perf_counter() - t0
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
    """Print `sparsegpt_solve`'s time per shape (float32, G=1, Hessian of random X with n = 4d columns)."""
    print(f"sparsity={sparsity} threads={torch.get_num_threads()}")
    print(" | ".join(f"{h:>17}" for h in ["layer", "kernel block (s)", "128 block (s)", "ratio"]))
    for name, (r, d, kernel) in SWEEP_SHAPES.items():
        gen = torch.Generator().manual_seed(0)
        X = torch.randn(1, d, 4 * d, generator=gen)  # (G, d, n)
        hinv = inverse_hessian(2 * X @ X.transpose(1, 2) / X.shape[-1], 0.01)
        W = torch.randn(1, r, d, generator=gen)  # (G, R, d)
        times = []
        for blocksize in (kernel, 128):
            t0 = time.perf_counter()
            sparsegpt_solve(W, hinv, sparsity, blocksize)
            times.append(time.perf_counter() - t0)
        row = [name, f"{times[0]:.2f} (k={kernel})", f"{times[1]:.2f}", f"{times[0] / times[1]:.2f}x"]
        print(" | ".join(f"{v:>17}" for v in row), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    ap.add_argument("--n-aug", type=int, default=128)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--exact", action="store_true", help="no Hessian column subsampling")
    ap.add_argument("--threads", type=int, default=0, help="torch threads on CPU (0: torch's default)")
    ap.add_argument("--sweep", action="store_true", help="time only the SparseGPT sweep on four layer shapes")
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
    for arch in args.models:
        for device in devices:
            r = run(arch, device, args.n_aug, args.size, cols)
            row = (
                [arch, device]
                + [f"{r[k]:.2f}" for k in header[2:8]]
                + [f"{r['ratio']:.1f}x", f"{r['cache_MB']:.0f}", f"{r['peak_RSS_MB']:.0f}"]
            )
            print(" | ".join(f"{v:>9}" for v in row), flush=True)


if __name__ == "__main__":
    main()
