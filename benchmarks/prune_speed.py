"""Cold SPADE time (augment + Hessians + inverse + solve) vs warm re-prune at a new sparsity, per phase.

    python benchmarks/prune_speed.py [--models resnet18 resnet50] [--n-aug 128] [--size 224] [--exact]

Random weights are fine for timing. Runs on CPU, and on CUDA when available.
"""

from __future__ import annotations

import argparse
import time

import torch
from torchvision.models import get_model

from spade_engine.engine import SpadeEngine
from spade_engine.models import IMAGENET_MEAN, IMAGENET_STD, Classifier


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
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    ap.add_argument("--n-aug", type=int, default=128)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--exact", action="store_true", help="no Hessian column subsampling")
    ap.add_argument("--threads", type=int, default=0, help="torch threads on CPU (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    cols = None if args.exact else 32768
    print(f"n_aug={args.n_aug} size={args.size} max_columns={cols} threads={torch.get_num_threads()}")
    header = ["model", "device", "augment", "hessians", "inverse", "solve", "cold", "warm", "ratio", "cache_MB"]
    print(" | ".join(f"{h:>9}" for h in header))
    for arch in args.models:
        for device in devices:
            r = run(arch, device, args.n_aug, args.size, cols)
            row = [arch, device] + [f"{r[k]:.2f}" for k in header[2:8]] + [f"{r['ratio']:.1f}x", f"{r['cache_MB']:.0f}"]
            print(" | ".join(f"{v:>9}" for v in row), flush=True)


if __name__ == "__main__":
    main()
