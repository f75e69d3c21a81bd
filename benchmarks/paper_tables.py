"""The paper-style saliency tables for every shipped testbed model (rows = methods, columns = networks).

    python benchmarks/paper_tables.py [--models testbed_resnet testbed_vgg] [--trojan 100] [--clean 100]
                                      [--exact-samples 20] [--methods ...] [--columns ... --merge] [--show]
                                      [--workers K] [--address ADDR]

Writes assets/benchmarks/<model>_protocol.csv (shown by the app's Benchmarks page) and prints the tables:
trojan AUC, pointing game, insertion and deletion AUC (mean [95% CI]) and prediction agreement. The runs are
`spade protocol`'s (`spade_engine.protocol.main`): serial, or on Ray with `--workers` / `--address`.
"""

from __future__ import annotations

import argparse

import pandas as pd

from spade_engine import protocol
from spade_engine.models import list_models
from spade_engine.saliency import METHODS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=[m.name for m in list_models() if m.family == "testbed"])
    ap.add_argument("--trojan", type=int, default=100)
    ap.add_argument("--clean", type=int, default=100)
    ap.add_argument("--sparsity", type=float, default=None, help="default: each model card's")
    ap.add_argument("--crop-min", type=float, default=None, help="smallest calibration crop; default: the card's")
    ap.add_argument("--n-aug", type=int, default=64)
    ap.add_argument("--exact-samples", type=int, default=None, help="cap for the slow exact-OBC column")
    ap.add_argument("--methods", nargs="*", default=list(METHODS))
    ap.add_argument("--columns", nargs="*", default=list(protocol.COLUMNS))
    ap.add_argument("--merge", action="store_true", help="re-run only --columns, replacing their stored rows")
    ap.add_argument("--resume", action="store_true", help="continue interrupted runs from their .partial.csv")
    ap.add_argument("--show", action="store_true", help="print the stored tables as markdown; run nothing")
    ap.add_argument("--workers", type=int, default=None, help="run on Ray with this many samples at once")
    ap.add_argument("--address", default=None, help="run on this Ray cluster (e.g. auto)")
    args = ap.parse_args()
    if args.show:
        for model in args.models:
            show(model)
        return
    for model in args.models:
        argv = ["--model", model, "--trojan", str(args.trojan), "--clean", str(args.clean), "--n-aug", str(args.n_aug),
                "--out", str(protocol.RESULTS_DIR / f"{model}_protocol.csv"),
                "--methods", *args.methods, "--columns", *args.columns]  # fmt: skip
        for flag, value in [("--sparsity", args.sparsity), ("--crop-min", args.crop_min),
                            ("--exact-samples", args.exact_samples), ("--workers", args.workers),
                            ("--address", args.address)]:  # fmt: skip
            if value is not None:
                argv += [flag, str(value)]
        protocol.main(argv + ["--merge"] * args.merge + ["--resume"] * args.resume)


def show(model: str) -> None:
    """Print a stored run's settings, tables and paired differences to Dense as markdown."""
    path = protocol.RESULTS_DIR / f"{model}_protocol.csv"
    if not path.exists():
        print(f"no stored run for {model}: run `python benchmarks/paper_tables.py --models {model}`")
        return
    df = pd.read_csv(path)
    print(f"## {model}\n\nsettings: {protocol.load_settings(path)}\n")
    for name, table in protocol.tables(df).items():
        print(f"### {name}\n\n{protocol.markdown(table.round(2) if name == 'agreement' else table)}\n")
        if name != "agreement":
            print(
                f"paired difference to Dense (points):\n\n{protocol.markdown(protocol.paired_differences(df, name))}\n"
            )


if __name__ == "__main__":
    main()
