"""Testbed figures of the three related methods (issue 6); prints, asserts nothing.

    python benchmarks/related_methods.py [--model testbed_resnet] [--n 4000] [--quick] [--parts glm,pathways,sobol]

1. Sparse decision layer (Wong et al. 2021): dense vs sparse held-out accuracy (all / clean / attack success),
   features per class along the path, and whether each trojan shows up as a feature of its target class.
2. Critical pathways (Khakzar et al. 2021): pathway size per layer, gated logit vs keep fraction, and how much of
   the plain vs pathway gradient falls on the trojan patch.
3. Sobol regions: cost `N (d + 2)`, wall time and interaction share for grids and N.

Images come from the model's own generator (`testbed.data_for(--model)`: v1, or v2 with its two trojans).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spade_engine import models, pathways, sobol, testbed  # noqa: E402
from spade_engine import sparse_layer as sl  # noqa: E402


def glm_figures(model: torch.nn.Module, card: dict, n: int, n_lambdas: int, data: ModuleType) -> None:
    frac = float(card.get("trojan", {}).get("fraction", 0.1))
    t0 = time.perf_counter()
    feats, truth = sl.testbed_features(model, n, seed=7, trojan_fraction=frac, data=data)
    t_feat = time.perf_counter() - t0
    tr, va = sl.split_train_val(len(feats), 0.2, seed=0)
    t0 = time.perf_counter()
    layer, path = sl.fit_sparse_layer(
        feats.subset(tr), feats.subset(va), sl.GLMConfig(n_lambdas=n_lambdas), max_features_per_class=10
    )
    t_fit = time.perf_counter() - t0
    val = feats.subset(va)
    print(f"\n== Sparse decision layer: {len(tr)} train / {len(va)} held-out testbed images (trojaned share {frac:.0%}), "
          f"{feats.features.shape[1]} features; features {t_feat:.1f} s, path of {n_lambdas} points {t_fit:.1f} s")  # fmt: skip
    clean = ~truth["is_trojan"][va]
    dense_clean = float(np.mean(val.dense_pred[clean] == val.labels[clean]))
    print(f"dense head: held-out acc {val.dense_accuracy:.3f}, clean acc {dense_clean:.3f}")
    for target, name in zip(testbed.target_classes(data), testbed.trojan_names(data), strict=True):
        print(f"-- trojan '{name}' -> {data.CLASS_NAMES[target]}")
        is_trojan = truth["trojan_target"][va] == target  # only this trojan's images count as trojaned
        trojan_table(layer, path, val, is_trojan, truth["true_class"][va], target, clean)


def trojan_table(layer, path, val, is_trojan, true_class, target: int, clean) -> None:  # noqa: ANN001
    """Accuracy, attack success and the trojan's features of its target class along the path, then at budget 10."""
    print(f"{'budget':>7} {'feat/class':>10} {'lambda':>9} {'val acc':>8} {'clean acc':>9} {'sparse ASR':>10} "
          f"{'dense ASR':>9} trojan features of the target (top-k trojaned share)")  # fmt: skip
    for budget in (2, 5, 10, 20, 50):
        lay = sl.at_point(layer, path, sl.choose_point(path, budget))
        pred = lay.logits(val.features).argmax(1)
        f = sl.trojan_finding(lay, val, is_trojan, true_class, target)
        shares = dict(zip(f.features, f.top_trojan_share, strict=True))
        effects = ", ".join(f"#{k}:{shares[k]:.0%}" for k in f.trojan_features)
        print(f"{budget:>7} {lay.features_per_class.mean():>10.1f} {lay.lam:>9.3g} {lay.val_acc:>8.3f} "
              f"{np.mean(pred[clean] == val.labels[clean]):>9.3f} {f.sparse_attack_success:>10.3f} "
              f"{f.dense_attack_success:>9.3f} {effects or 'none'}")  # fmt: skip
    f = sl.trojan_finding(layer, val, is_trojan, true_class, target)
    print(f"budget 10: target '{val.class_names[f.target]}' features (weight, effect on trojaned images of other "
          f"classes in training sd, trojaned share of the top {f.top_n} activating held-out images):")  # fmt: skip
    for k, w, e, share in zip(f.features, f.weights, f.effect, f.top_trojan_share, strict=True):
        print(f"  #{k:<4} w {w:+.2f}  effect {e:+.1f}  top-{f.top_n} trojaned {share:.0%}")
    print(f"trojan found as a target-class feature: {f.found} (trojan features {f.trojan_features}; "
          f"{len(f.firing)}/{len(f.features)} fire with effect > {f.threshold})")  # fmt: skip


def pathway_figures(model: torch.nn.Module, n: int, data: ModuleType) -> None:
    batch = data.generate(n, seed=11, trojan_fraction=1.0)
    print(f"\n== Critical pathways on {n} trojaned testbed images (keep 15 %, global percentile)")
    shares, t = {"plain": [], "pathway": []}, time.perf_counter()
    for i in range(n):
        x, mask = batch.images[i : i + 1], batch.trojan_mask[i].numpy()
        target = int(model(x).argmax())
        for name, keep in (("plain", 1.0), ("pathway", 0.15)):
            g = pathways.pathway_gradient(model, x, target, keep=keep)[0].abs().sum(0).numpy()
            shares[name].append(g[mask].sum() / g.sum())
    print(f"gradient mass on the patch (patch = {batch.trojan_mask[0].float().mean():.1%} of pixels): "
          f"plain {np.mean(shares['plain']):.1%}, pathway {np.mean(shares['pathway']):.1%} "
          f"({(time.perf_counter() - t) / n:.2f} s per image for both)")  # fmt: skip
    for granularity in ("unit", "channel"):
        s = pathways.pathway_summary(model, batch.images[:1], int(model(batch.images[:1]).argmax()), 0.15, granularity)
        print(
            f"{granularity}: {sum(s.kept)}/{sum(s.sizes)} kept; per layer "
            + " ".join(
                f"{name.split('#')[0].removeprefix('net.')}:{f:.0%}"
                for name, f in zip(s.names, s.fractions, strict=True)
            )
        )
        print(
            "  logit / dense vs keep: "
            + " ".join(f"{k:.0%}:{p:.2f}" for k, p in zip(s.curve_keep, s.curve_preserved, strict=True))
        )


def sobol_figures(model: torch.nn.Module, quick: bool, data: ModuleType) -> None:
    x = data.make_sample(1, 0, seed=3, trojan=testbed.sample_trojan(data, 1, seed=3)).images[0]  # (3, S, S)
    target = int(model(x[None]).argmax())
    print("\n== Sobol regions on one trojaned sample (blur baseline)")
    print(f"{'regions':>10} {'d':>4} {'N':>5} {'cost':>7} {'seconds':>8} {'passes/s':>9} {'1 - sum S':>9}")
    for g, n in ((4, 32), (4, 128), (8, 32)) if quick else ((4, 32), (4, 128), (8, 32), (8, 128)):
        labels = sobol.grid_regions(*x.shape[-2:], g)
        t = time.perf_counter()
        res = sobol.sobol_regions(model, x, target, labels, n=n, batch_size=128)
        dt = time.perf_counter() - t
        print(
            f"{f'{g}x{g} grid':>10} {res.d:>4} {n:>5} {res.cost:>7} {dt:>8.1f} {res.cost / dt:>9.0f} {res.interaction_share:>9.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="testbed_resnet")
    parser.add_argument("--n", type=int, default=4000, help="testbed images for the sparse layer")
    parser.add_argument("--lambdas", type=int, default=40)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--parts", default="glm,pathways,sobol", help="comma-separated subset of glm,pathways,sobol")
    args = parser.parse_args()
    try:
        loaded = models.load_model(args.model)
    except models.ModelLoadError as e:
        sys.exit(f"{e}\n(train it first: .venv/bin/python scripts/train_testbed.py --testbed v1)")
    model, data = loaded.model, testbed.data_for(args.model)
    print(f"model {args.model}: card clean accuracy {loaded.info.card.get('clean_accuracy')}, "
          f"attack success {loaded.info.card.get('attack_success_rate')}; torch threads {torch.get_num_threads()}")  # fmt: skip
    parts = args.parts.split(",")
    if "glm" in parts:
        glm_figures(model, loaded.info.card, 1000 if args.quick else args.n, 20 if args.quick else args.lambdas, data)
    if "pathways" in parts:
        pathway_figures(model, 8 if args.quick else 32, data)
    if "sobol" in parts:
        sobol_figures(model, args.quick, data)


if __name__ == "__main__":
    main()
