"""How many IntegratedGradients steps a real network needs: completeness error and agreement with a finer map.

    python benchmarks/ig_steps.py [--model efficientnet_lite0] [--steps 64 32 16 8] [--threads 1]

For each offline photo (centre crop at the model's size, the dense top-1 as target) and each step count, Captum's
IntegratedGradients from the zero baseline (the mean colour in the normalised space, as `saliency.gradients`),
Gauss-Legendre rule: the completeness error |sum of attributions - (f(z) - f(0))| / |f(z) - f(0)| (Sundararajan
et al. 2017, arXiv 1703.01365) and the Pearson correlation of the map (absolute channel sum) with the map at the
first (finest) step count. The app uses `gradients.IG_STEPS`; fewer steps make an IG map cheaper in proportion.
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torchvision.transforms.functional as TF
from captum.attr import IntegratedGradients

from spade_engine.models import load_model
from spade_engine.photos import offline_photos


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--steps", nargs="+", type=int, default=[64, 32, 16, 8])
    p.add_argument("--photos", nargs="*", default=["chelsea", "coffee", "astronaut", "rocket", "motorcycle_left"])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    model, size = loaded.model.eval(), loaded.info.card.get("image_size", 224)
    errors, corrs = {s: [] for s in args.steps}, {s: [] for s in args.steps}
    for name, img in offline_photos(args.photos).items():
        x = TF.to_tensor(TF.center_crop(TF.resize(img, round(size * 256 / 224)), size))[None]  # (1, 3, S, S)
        z, net = model.normalize(x), model.net
        target = int(model(x).argmax())
        with torch.no_grad():
            total = float(net(z)[0, target] - net(torch.zeros_like(z))[0, target])
        ig, finest, cells = IntegratedGradients(net), None, []
        for steps in args.steps:
            attr, delta = ig.attribute(z, baselines=torch.zeros_like(z), target=target, n_steps=steps,
                                       internal_batch_size=steps, method="gausslegendre",
                                       return_convergence_delta=True)  # fmt: skip
            amap = attr.abs().sum(1).flatten()
            finest = amap if finest is None else finest
            err, corr = abs(float(delta)) / abs(total), float(torch.corrcoef(torch.stack([amap, finest]))[0, 1])
            errors[steps].append(err)
            corrs[steps].append(corr)
            cells.append(f"{steps}: error {err:.3f}, r {corr:.3f}")
        print(f"{name:18s}" + " | ".join(cells), flush=True)
    print(f"\n{args.model}, {len(args.photos)} photos, medians [range] (r: against the {args.steps[0]}-step map)")
    for s in args.steps:
        e, c = errors[s], corrs[s]
        print(f"  {s:4d} steps: completeness error {statistics.median(e):.3f} [{min(e):.3f}-{max(e):.3f}]"
              f"  r {statistics.median(c):.3f} [{min(c):.3f}-{max(c):.3f}]")  # fmt: skip


if __name__ == "__main__":
    main()
