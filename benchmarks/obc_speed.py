"""Exact OBC vs the SparseGPT sweep, layer by layer, on one trojaned testbed sample per model; prints, asserts nothing.

    python benchmarks/obc_speed.py [--models testbed_resnet testbed_vgg] [--n-aug 64] [--threads 1]

Settings are the protocol's: the model card's sparsity and smallest crop (`models.spade_defaults`), 64 views,
seed 0, one torch thread (the protocol runs one per model). For every layer SPADE prunes it times `obc_solve`
and `sparsegpt_solve` on the same cached inverse Hessian and prints their reconstruction errors; then one full
`SpadeEngine.prune(..., solver="obc")` gives the wall time of an exact prune per sample.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spade_engine import load_model  # noqa: E402
from spade_engine.augment import AugmentConfig  # noqa: E402
from spade_engine.engine import PruneConfig, SpadeEngine  # noqa: E402
from spade_engine.models import spade_defaults  # noqa: E402
from spade_engine.protocol import trojan_samples  # noqa: E402
from spade_engine.pruning import grouped_weight, inverse_hessian, reconstruction_error  # noqa: E402
from spade_engine.pruning.obc import exact_columns_limit, is_exact, obc_solve  # noqa: E402
from spade_engine.pruning.sparsegpt import sparsegpt_solve  # noqa: E402
from spade_engine.testbed import data_for  # noqa: E402


def timed(solve, W, hinv, sparsity) -> tuple[torch.Tensor, float]:
    t0 = time.perf_counter()
    out = solve(W, hinv, sparsity)
    return out, time.perf_counter() - t0


def run(name: str, n_aug: int) -> None:
    model = load_model(name).model
    card = spade_defaults(name)
    sample = trojan_samples(model, 1, seed=0, data=data_for(name))[0]  # from the model's own generator
    engine = SpadeEngine(model)
    aug = AugmentConfig(scale=(card["crop_min"], 1.0))
    trace = engine.prepare(sample.image, n_aug=n_aug, seed=0, augment_config=aug)
    cfg = PruneConfig(card["sparsity"], solver="obc")
    modules = dict(model.named_modules())
    print(f"\n{name}: sparsity {card['sparsity']}, crop_min {card['crop_min']}, {n_aug} views, sample {sample.index}")
    print(
        f"{'layer':<28} {'rows':>5} {'cols':>5} {'exact':>5} {'obc ms':>9} {'sweep ms':>9}"
        f" {'obc err':>9} {'sweep err':>9}"
    )
    t_obc = t_sweep = 0.0
    for layer, sparsity in cfg.targets(list(trace.layers), trace.first_conv, trace.head).items():
        H = trace.hessians[layer]
        hinv = inverse_hessian(H, cfg.damp)
        W = grouped_weight(modules[layer]).clone()  # (G, R, d)
        exact, a = timed(obc_solve, W, hinv, sparsity)
        sweep, b = timed(sparsegpt_solve, W, hinv, sparsity)
        t_obc, t_sweep = t_obc + a, t_sweep + b
        g, r, d = W.shape
        e_obc, e_sweep = reconstruction_error(W, exact, H), reconstruction_error(W, sweep, H)
        print(
            f"{layer:<28} {g * r:>5} {d:>5} {'yes' if is_exact(d) else 'no':>5} {a * 1e3:>9.0f} {b * 1e3:>9.1f}"
            f" {e_obc:>9.2e} {e_sweep:>9.2e}"
        )
    print(f"{'total solve (s)':<46} {t_obc:>9.2f} {t_sweep:>9.3f}")
    _, result = engine.prune(trace, cfg)
    print(
        f"engine.prune(solver='obc'): {result.timings['prune_total']:.2f} s per sample "
        f"(solve {result.timings['solve']:.2f} s), keeps the dense class: {result.agrees}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["testbed_resnet", "testbed_vgg"])
    ap.add_argument("--n-aug", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the protocol runs one per model)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads={torch.get_num_threads()} exact_columns_limit={exact_columns_limit()}")
    for name in args.models:
        run(name, args.n_aug)


if __name__ == "__main__":
    main()
