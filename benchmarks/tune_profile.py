"""Tune per-block SPADE sparsities on calibration images (FastSPADE*) and report them on held-out images.

    python benchmarks/tune_profile.py --model testbed_resnet [--calib 16] [--heldout 32]
                                      [--methods Saliency IntegratedGradients GradCAM]

Writes assets/profiles/<model>-tuned.json (and the fixed profiles: uniform, per-block, late-only). The objective
is the insertion AUC, on the dense model, of the methods' maps computed on the pruned model (their mean, so the
profile does not fit one method). The search starts from the model card's uniform sparsity and uses the card's
calibration crops (`models.spade_defaults`), as the protocol's SPADE columns do.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from spade_engine import metrics
from spade_engine.augment import AugmentConfig
from spade_engine.engine import PruneConfig, SpadeEngine
from spade_engine.models import load_model, spade_defaults
from spade_engine.profiles import score_config, standard_profiles, tune_profile
from spade_engine.protocol import clean_samples
from spade_engine.saliency import attribute
from spade_engine.testbed import data_for


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="testbed_resnet")
    ap.add_argument("--calib", type=int, default=16)
    ap.add_argument("--heldout", type=int, default=32)
    ap.add_argument("--methods", nargs="+", default=["Saliency", "IntegratedGradients", "GradCAM"])
    ap.add_argument("--n-aug", type=int, default=32)
    ap.add_argument("--candidates", type=float, nargs="+", default=[0.0, 0.5, 0.8, 0.9, 0.95, 0.99])
    args = ap.parse_args()
    model = load_model(args.model).model
    engine = SpadeEngine(model)
    card = spade_defaults(args.model)
    aug = AugmentConfig(scale=(card["crop_min"], 1.0))

    def objective(pruned, x, target) -> float:
        maps = [attribute(m, pruned, x[None], target) for m in args.methods]
        return float(np.mean([metrics.insertion_auc(model, x[None], sal, target) for sal in maps]))

    data = data_for(args.model)  # the model's own testbed generator (v1 or v2)
    calib = [(s.image, s.target) for s in clean_samples(model, args.calib, seed=2000, data=data)]
    held = [(s.image, s.target) for s in clean_samples(model, args.heldout, seed=3000, data=data)]
    for prof in standard_profiles(engine, calib[0][0], args.model):
        print("wrote", prof.save())
    t0 = time.perf_counter()
    result = tune_profile(
        engine,
        calib,
        objective,
        candidates=args.candidates,
        start=card["sparsity"],
        n_aug=args.n_aug,
        augment_config=aug,
        name=f"{args.model}-tuned",
        model_name=args.model,
        progress=lambda d, t: print(f"\rsearch {d}/{t}", end="", flush=True),
    )
    meta = result.profile.meta
    print(
        f"\nsearch: {time.perf_counter() - t0:.0f} s; calibration insertion AUC uniform {card['sparsity']:.0%} "
        f"{result.uniform_score:.3f} -> tuned {result.score:.3f} (decision kept on "
        f"{meta['uniform_agreement']:.0%} -> {meta['calibration_agreement']:.0%} of the images)"
    )
    print("blocks:", result.profile.meta["blocks"])

    held_traces = [engine.prepare(x, args.n_aug, 50 + i, aug) for i, (x, _) in enumerate(held)]

    def heldout(cfg: PruneConfig) -> tuple[float, float]:
        """(mean objective, share of decisions kept) on the held-out images."""
        scores, kept = score_config(engine, held_traces, held, cfg, objective)
        return float(scores.mean()), kept

    dense = float(np.mean([objective(model, x, y) for x, y in held]))
    (uni, uni_keep), (tuned, tuned_keep) = heldout(PruneConfig(card["sparsity"])), heldout(result.profile.config)
    meta.update(heldout_dense=dense, heldout_uniform=uni, heldout_tuned=tuned, heldout_uniform_agreement=uni_keep,
                heldout_tuned_agreement=tuned_keep, methods=args.methods, n_heldout=len(held))  # fmt: skip
    print(
        f"held-out insertion AUC ({', '.join(args.methods)}; {len(held)} images): dense {dense:.3f}, "
        f"uniform {card['sparsity']:.0%} {uni:.3f} (decision kept {uni_keep:.0%}), "
        f"tuned {tuned:.3f} (kept {tuned_keep:.0%})"
    )
    print("wrote", result.profile.save())


if __name__ == "__main__":
    main()
