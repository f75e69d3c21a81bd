"""Dense vs SPADE on one metric: a thin alias of the protocol pipeline (`spade_engine.protocol`).

    python -m spade_engine.bench trojan --model testbed_resnet --samples 30 --out t.csv
    python -m spade_engine.bench insertion --model testbed_resnet --samples 30 --sparsity 0.8 0.9 --out i.csv

The same run as `spade protocol --columns Dense` with one SPADE column per `--sparsity` ("SPADE 80%", ...;
default: the model card's sparsity and crops, as everywhere) and only the trojaned (`trojan`) or only the clean
(`insertion`) samples. The options that change how SPADE prunes (`--only-layers`, `--skip-head`,
`--sequential`, `--solver`, `--crop-min`) apply to those columns and are named in them. Rows, CSV, settings
JSON and tables are the protocol's; the paired differences to Dense are printed after the tables.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import pandas as pd

from spade_engine import protocol
from spade_engine.engine import PruneConfig
from spade_engine.models import spade_defaults

# The pipeline's samples and scores, under the names this module had before it became an alias.
Sample = protocol.Sample
trojan_samples = protocol.trojan_samples
clean_samples = protocol.clean_samples
trojan_scores = protocol.trojan_scores
insertion_scores = protocol.insertion_scores
KIND = {"trojan": "trojan", "insertion": "insertion"}  # command -> the protocol's kind of samples


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m spade_engine.bench", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in KIND:
        s = sub.add_parser(name, help=f"{name} scores, dense vs SPADE")
        s.add_argument("--model", default=protocol.ProtocolConfig.model)
        s.add_argument("--samples", type=int, default=30)
        s.add_argument("--sparsity", type=float, nargs="+", default=None,
                       help="one or more per-layer sparsities, one SPADE column each (default: the model card's)")  # fmt: skip
        s.add_argument("--n-aug", type=int, default=protocol.ProtocolConfig.n_aug)
        s.add_argument("--methods", nargs="+", default=list(protocol.METHODS), choices=list(protocol.METHODS))
        s.add_argument("--seed", type=int, default=None, help="evaluation images' seed (default: the protocol's)")
        s.add_argument("--device", default="cpu")
        s.add_argument("--steps", type=int, default=protocol.ProtocolConfig.steps, help="insertion/deletion steps")
        s.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
        s.add_argument("--only-layers", nargs="+", default=[],
                       help="fnmatch patterns of the layers to prune, e.g. 'net.layer4*' (others stay dense)")  # fmt: skip
        s.add_argument("--skip-head", action="store_true", help="leave the classifier head dense")
        s.add_argument("--sequential", action="store_true", help="SparseGPT sequential mode")
        s.add_argument("--solver", default="sparsegpt")
        s.add_argument("--crop-min", type=float, default=None, help="smallest calibration crop (default: the card's)")
        s.add_argument("--crop-scale", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                       help="the crop area range as before; only HI = 1 is supported (same as --crop-min LO)")  # fmt: skip
        s.add_argument("--out", default=f"{name}_results.csv")
    return p


def variants(args: argparse.Namespace) -> tuple[protocol.Variant, ...]:
    """One SPADE column per sparsity, pruned as the options say, named by what differs from a plain sweep."""
    sparsities = args.sparsity or [spade_defaults(args.model)["sparsity"]]
    layers = tuple((p, None) for p in args.only_layers)
    extra = "".join(
        f" {text}"
        for text, on in ((",".join(args.only_layers), bool(args.only_layers)), ("skip_head", args.skip_head),
                         ("sequential", args.sequential), (args.solver, args.solver != "sparsegpt"))
        if on
    )  # fmt: skip
    out = []
    for s in sparsities:
        per_layer = tuple((p, s) for p, _ in layers) + ((("*", 0.0),) if layers else ())
        prune = PruneConfig(s, layer_sparsity=per_layer, skip_head=args.skip_head, sequential=args.sequential,
                            solver=args.solver)  # fmt: skip
        out.append(protocol.Variant(f"SPADE {s:.0%}{extra}", prune))
    return tuple(out)


def protocol_argv(args: argparse.Namespace) -> list[str]:
    """The `spade_engine.protocol` options of this alias's run (serial, as before)."""
    if args.crop_scale and args.crop_scale[1] != 1.0:
        raise SystemExit("--crop-scale: the calibration crops always reach the full image (HI = 1); use --crop-min.")
    crop = args.crop_min if args.crop_min is not None else (args.crop_scale[0] if args.crop_scale else None)
    n = str(args.samples)
    argv = ["--model", args.model, "--trojan", n if args.command == "trojan" else "0",
            "--clean", n if args.command == "insertion" else "0", "--n-aug", str(args.n_aug),
            "--methods", *args.methods, "--columns", "Dense", "--steps", str(args.steps), "--device", args.device,
            "--threads", str(args.threads), "--out", args.out, "--serial"]  # fmt: skip
    for flag, value in (("--seed", args.seed), ("--crop-min", crop)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    """Run the alias from the command line: the protocol's CSV, settings and tables, then paired differences."""
    args = _parser().parse_args(argv)
    df = protocol.main(protocol_argv(args), prog=f"python -m spade_engine.bench {args.command}",
                       variants=variants(args))  # fmt: skip
    for metric in ("auc",) if args.command == "trojan" else ("insertion", "deletion"):
        print(f"\n{metric}: SPADE - Dense, paired on the same samples (points, mean [95% CI])")
        print(protocol.paired_differences(df, metric).to_string())
    return df


if __name__ == "__main__":
    main()
