"""Speed-up of the Ray protocol run (`spade protocol`) from 1 to 2 workers on this machine.

    python benchmarks/protocol_scaling.py [--model testbed_resnet] [--trojan 4] [--clean 2] [--repeats 3]
                                          [--workers 1 2] [--address ADDR]

One local Ray cluster (or `--address`'s) serves every run; each repeat runs the same small protocol once per
worker count, alternating, so the counts see the same machine load, after one untimed warm-up run. Prints wall time per run, the median and
spread per count, and the median speed-up over the first count (paired by repeat). The load average is printed
before and after: on a shared machine other jobs take cores, and the speed-up says as much about them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import ray

from spade_engine import protocol
from spade_engine.models import load_model
from spade_engine.protocol import ray as on_ray


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="testbed_resnet")
    ap.add_argument("--trojan", type=int, default=4)
    ap.add_argument("--clean", type=int, default=2)
    ap.add_argument("--n-aug", type=int, default=16)
    ap.add_argument("--methods", nargs="+", default=["Saliency", "GradCAM", "IntegratedGradients"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--address", default=None, help="a running Ray cluster (default: a local one)")
    args = ap.parse_args()
    cfg = protocol.ProtocolConfig(args.model, args.trojan, args.clean, n_aug=args.n_aug, methods=tuple(args.methods),
                                  columns=("Dense", "SPADE-sweep"))  # fmt: skip
    on_ray.connect(args.address, max(args.workers))
    model = load_model(cfg.model).model
    print(f"{cfg.model}: {args.trojan} trojaned + {args.clean} clean samples, {len(cfg.methods)} methods, "
          f"Dense + SPADE-sweep, {cfg.views} views; cluster {ray.cluster_resources()}; "
          f"{os.cpu_count()} cores here, load average before {os.getloadavg()[0]:.1f}")  # fmt: skip
    reference = on_ray.run_protocol_ray(cfg, model, workers=max(args.workers)).drop(columns="seconds")
    print("warm-up run done (starts every Ray worker process, so no timed run pays for a worker's start-up)")
    seconds: dict[int, list[float]] = {w: [] for w in args.workers}
    for r in range(args.repeats):
        for w in args.workers:
            t0 = time.perf_counter()
            df = on_ray.run_protocol_ray(cfg, model, workers=w)
            seconds[w].append(time.perf_counter() - t0)
            rows = df.drop(columns="seconds")
            assert rows.equals(reference) or _close(rows, reference), "worker counts gave different rows"
            print(f"repeat {r + 1}, {w} worker(s): {seconds[w][-1]:.1f} s")
    base = args.workers[0]
    print(f"\nload average after {os.getloadavg()[0]:.1f}")
    for w, ts in seconds.items():
        ratios = [b / t for b, t in zip(seconds[base], ts, strict=True)]
        print(f"{w} worker(s): median {statistics.median(ts):.1f} s (min {min(ts):.1f}, max {max(ts):.1f}); "
              f"speed-up over {base}: median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, "
              f"max {max(ratios):.2f}), n={len(ts)}")  # fmt: skip
    ray.shutdown()


def _close(a, b) -> bool:
    num = a.select_dtypes("number").columns
    return a.drop(columns=num).equals(b.drop(columns=num)) and ((a[num] - b[num]).abs().max().max() < 1e-5)


if __name__ == "__main__":
    main()
