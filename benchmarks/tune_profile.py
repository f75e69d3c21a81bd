"""Tune per-block SPADE sparsities on calibration images (FastSPADE*) and report them on held-out images.

    python benchmarks/tune_profile.py --model testbed_resnet [--calib 8] [--heldout 16] [--method Saliency]

Writes assets/profiles/<model>-tuned.json (and the fixed profiles: uniform, per-block, late-only). The objective
is the insertion AUC, on the dense model, of the method's map computed on the pruned model.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from spade_engine import metrics
from spade_engine.bench import clean_samples
from spade_engine.engine import PruneConfig, SpadeEngine
from spade_engine.models import load_model
from spade_engine.profiles import standard_profiles, tune_profile
from spade_engine.saliency import attribute


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="testbed_resnet")
    ap.add_argument("--calib", type=int, default=8)
    ap.add_argument("--heldout", type=int, default=16)
    ap.add_argument("--method", default="Saliency")
    ap.add_argument("--n-aug", type=int, default=32)
    ap.add_argument("--candidates", type=float, nargs="+", default=[0.0, 0.5, 0.8, 0.9, 0.95, 0.99])
    args = ap.parse_args()
    model = load_model(args.model).model
    engine = SpadeEngine(model)

    def objective(pruned, x, target) -> float:
        sal = attribute(args.method, pruned, x[None], target)
        return metrics.insertion_auc(model, x[None], sal, target)

    calib = [(s.image, s.target) for s in clean_samples(model, args.calib, seed=2000)]
    held = [(s.image, s.target) for s in clean_samples(model, args.heldout, seed=3000)]
    for prof in standard_profiles(engine, calib[0][0], args.model):
        print("wrote", prof.save())
    t0 = time.perf_counter()
    result = tune_profile(
        engine,
        calib,
        objective,
        candidates=args.candidates,
        n_aug=args.n_aug,
        name=f"{args.model}-tuned",
        model_name=args.model,
        progress=lambda d, t: print(f"\rsearch {d}/{t}", end="", flush=True),
    )
    print(
        f"\nsearch: {time.perf_counter() - t0:.0f} s; calibration insertion AUC uniform 90% "
        f"{result.uniform_score:.3f} -> tuned {result.score:.3f}"
    )
    print("blocks:", result.profile.meta["blocks"])

    def heldout(cfg: PruneConfig) -> float:
        return float(
            np.mean(
                [
                    objective(engine.prune(engine.prepare(x, n_aug=args.n_aug, seed=50 + i), cfg)[0], x, y)
                    for i, (x, y) in enumerate(held)
                ]
            )
        )

    dense = float(np.mean([objective(model, x, y) for x, y in held]))
    uni, tuned = heldout(PruneConfig(0.9)), heldout(result.profile.config)
    result.profile.meta.update(
        heldout_dense=dense, heldout_uniform=uni, heldout_tuned=tuned, method=args.method, n_heldout=len(held)
    )
    print(
        f"held-out insertion AUC ({args.method}, {len(held)} images): dense {dense:.3f}, uniform 90% {uni:.3f}, "
        f"tuned {tuned:.3f}"
    )
    print("wrote", result.profile.save())


if __name__ == "__main__":
    main()
