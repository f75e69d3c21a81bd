"""Why SPADE helps (or not) on a testbed model: the protocol's SPADE-sweep column against one-change variants.

    python benchmarks/protocol_ablation.py --model testbed_resnet [--trojan 30] [--clean 30] [--methods ...]
    python benchmarks/protocol_ablation.py --study blocksize --model testbed_resnet


Each variant changes one thing the SPADE paper's results depend on: the calibration crops (the reference's
0.2 against the card's), the sparsity, which layers are pruned (late blocks only, or the first conv too) and the
solver (magnitude pruning, no OBS update, as a control). Writes assets/benchmarks/<model>_ablation.csv (+ .json
settings), shown on the app's Benchmarks page, and prints the trojan / insertion / deletion tables.

`--study blocksize` compares the sweep's mask granularity instead (`<model>_blocksize.csv`): blocks of 128
columns, 32 columns, one input channel (kh*kw columns; 1 for a Linear) with the exact running count, and the
SPADE authors' granularity (kh*kw blocks, `int(n*s)+1` weights pruned per block).
"""

from __future__ import annotations

import argparse
import time

from spade_engine import protocol
from spade_engine.engine import PruneConfig
from spade_engine.models import spade_defaults
from spade_engine.profiles import PROFILE_DIR, load_profile
from spade_engine.saliency import METHODS


def variants(model: str) -> tuple[protocol.Variant, ...]:
    """One-change variants of the run's SPADE-sweep column (card sparsity s, card crop)."""
    s = spade_defaults(model)["sparsity"]
    out = [
        protocol.Variant("crop 0.2 (reference)", PruneConfig(s), 0.2),
        protocol.Variant("crop 0.5", PruneConfig(s), 0.5),
        protocol.Variant("sparsity 50%", PruneConfig(0.5)),
        protocol.Variant("sparsity 95%", PruneConfig(0.95)),
        protocol.Variant("first conv pruned", PruneConfig(s, skip_first=False)),
        protocol.Variant("magnitude (no OBS)", PruneConfig(s, solver="magnitude")),
    ]
    late = PROFILE_DIR / f"{model}-late-only.json"
    if late.exists():
        out.append(protocol.Variant("late blocks only", load_profile(late).config))
    return tuple(out)


def blocksize_variants(model: str) -> tuple[protocol.Variant, ...]:
    """The sweep's mask granularity at the card's sparsity: 128, 32 and kh*kw blocks, and the authors' count."""
    s = spade_defaults(model)["sparsity"]
    return (
        protocol.Variant("block 128", PruneConfig(s, blocksize=128)),
        protocol.Variant("block 32", PruneConfig(s, blocksize=32)),
        protocol.Variant("block kh·kw", PruneConfig(s, blocksize="kernel")),
        protocol.Variant("block kh·kw, int(n·s)+1 (authors')", PruneConfig.reference_granularity(s)),
    )


STUDIES = {"one-change": ("ablation", variants), "blocksize": ("blocksize", blocksize_variants)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="testbed_resnet")
    ap.add_argument("--trojan", type=int, default=30)
    ap.add_argument("--clean", type=int, default=30)
    ap.add_argument("--n-aug", type=int, default=64)
    ap.add_argument("--methods", nargs="*", default=list(METHODS))
    ap.add_argument("--study", choices=list(STUDIES), default="one-change")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run from its .partial.csv")
    args = ap.parse_args()
    kind, make_variants = STUDIES[args.study]
    columns = ("Dense", "SPADE-sweep") if args.study == "one-change" else ("Dense",)
    cfg = protocol.ProtocolConfig(
        args.model, args.trojan, args.clean, n_aug=args.n_aug, methods=tuple(args.methods),
        columns=columns, variants=make_variants(args.model),
    )  # fmt: skip
    t0 = time.perf_counter()
    out = protocol.RESULTS_DIR / f"{args.model}_{kind}.csv"
    df = protocol.run_to_csv(cfg, out, args.resume, lambda p, d, t: print(f"\r{p}: {d}/{t}", end="", flush=True))
    protocol.finish_csv(df, out)
    protocol.save_settings(cfg, out, time.perf_counter() - t0)
    sparsity, crop = cfg.spade_settings()
    for name, table in protocol.tables(df).items():
        print(f"\n== {name} ({args.model}; SPADE-sweep: sparsity {sparsity:.0%}, crop >= {crop:g})")
        print(table.loc[["average"]].T.to_string() if name != "agreement" else table.to_string())
    print("wrote", out)


if __name__ == "__main__":
    main()
