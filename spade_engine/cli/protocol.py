"""`spade protocol`: the SPADE paper's saliency protocol (`spade_engine.protocol`) from the command line.

    spade protocol --model testbed_resnet --trojan 100 --clean 100 --out results.csv       # on a local Ray cluster
    spade protocol --model testbed_resnet --trojan 100 --clean 100 --out results.csv --resume  # after a stop
    spade protocol --serial --model testbed_resnet --trojan 30 --clean 0 --columns Dense --variant-sparsity 0.8 0.9
    spade protocol --store --model testbed_resnet testbed_vgg        # the Benchmarks page's stored runs
    spade protocol --show --model testbed_resnet                     # a stored run's tables as markdown

Runs on Ray (one task per sample; `--workers`, `--address`, `--gpus-per-task`) unless `--serial`. `--out` gets the
rows (CSV) and the settings (JSON); rows reach `<out>.partial.csv` sample by sample, so Ctrl-C or SIGTERM stops
with one line (exit status 130 / 143) and `--resume` continues. The tables (mean [95% interval]) and the paired
differences to Dense are printed at the end. Errors a user can fix end with one line, never a traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import pandas as pd

from spade_engine.engine import PruneConfig
from spade_engine.models import spade_defaults
from spade_engine.protocol.config import COLUMNS, ProtocolConfig, Variant
from spade_engine.saliency import METHODS

PROG = "spade protocol"
EXIT_STATUS = {"SIGINT": 130, "SIGTERM": 143}  # 128 + the signal's number, as shells report it


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the run is (as Ctrl-C raises KeyboardInterrupt), so the same clean-up runs."""


def add_arguments(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The protocol's options; defaults are `ProtocolConfig`'s (sparsity and crops: the model card's)."""
    d = ProtocolConfig()
    ap.add_argument("--model", nargs="+", default=[d.model], help="one or more models, one run each")
    ap.add_argument("--trojan", type=int, default=d.trojan_samples, help="trojaned samples (0: none)")
    ap.add_argument("--clean", type=int, default=d.clean_samples, help="clean samples (0: none)")
    ap.add_argument("--sparsity", type=float, default=None, help="default: the model card's")
    ap.add_argument("--n-aug", type=int, default=None, help="calibration views per sample; default: the card's")
    ap.add_argument("--crop-min", type=float, default=None, help="smallest calibration crop; default: the card's")
    ap.add_argument("--exact-samples", type=int, default=None, help="cap for the slow exact-OBC column")
    ap.add_argument("--methods", nargs="*", default=list(d.methods), choices=list(METHODS), metavar="METHOD")
    ap.add_argument("--columns", nargs="*", default=list(d.columns), choices=list(COLUMNS), metavar="COLUMN")
    ap.add_argument("--seed", type=int, default=d.seed, help="evaluation images come from this seed")
    ap.add_argument("--steps", type=int, default=d.steps, help="insertion / deletion steps")
    ap.add_argument("--device", default=d.device, help="cpu, cuda, ... (Ray tasks use a GPU when they get one)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads in this process (0: torch's default)")
    out = ap.add_mutually_exclusive_group()
    out.add_argument("--out", default=None, help="CSV of the rows (+ .json settings); rows go to <out>.partial.csv "
                     "as samples finish")  # fmt: skip
    out.add_argument("--store", action="store_true",
                     help="write assets/benchmarks/<model>_protocol.csv, the Benchmarks page's stored run")  # fmt: skip
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run from <out>.partial.csv")
    ap.add_argument("--merge", action="store_true",
                    help="re-run only --columns and replace their rows in an existing --out (same samples)")  # fmt: skip
    ap.add_argument("--show", action="store_true",
                    help="print the stored run's (or --out's) settings, tables and paired differences as markdown; "
                    "run nothing")  # fmt: skip
    var = ap.add_argument_group("extra SPADE columns (ablations), after --columns")
    var.add_argument("--variant-sparsity", type=float, nargs="+", default=None, metavar="S",
                     help="one SPADE column per sparsity, named 'SPADE 80%%' and by the options below "
                     "(default with any of them: the run's sparsity)")  # fmt: skip
    var.add_argument("--only-layers", nargs="+", default=[], metavar="PATTERN",
                     help="fnmatch patterns of the layers the variants prune, e.g. 'net.layer4*' (others dense)")  # fmt: skip
    var.add_argument("--skip-head", action="store_true", help="the variants leave the classifier head dense")
    var.add_argument("--sequential", action="store_true", help="the variants use SparseGPT's sequential mode")
    var.add_argument("--solver", default="sparsegpt", choices=["sparsegpt", "obc", "magnitude"],
                     help="the variants' solver")  # fmt: skip
    ray = ap.add_argument_group("Ray (distributed run: one task per sample)")
    ray.add_argument("--workers", type=int, default=None,
                     help="samples run at once (default: one per CPU of the local cluster, or per GPU)")  # fmt: skip
    ray.add_argument("--address", default=None, help="a running Ray cluster, e.g. ray://head:10001 or auto")
    ray.add_argument("--gpus-per-task", type=float, default=None,
                     help="GPUs per sample task (default: 1 when the cluster has GPUs, else 0)")  # fmt: skip
    ray.add_argument("--serial", action="store_true", help="run in this process, without Ray")
    return ap


def parser() -> argparse.ArgumentParser:
    """`spade protocol`'s parser."""
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_arguments(ap)


def variants_from_args(args: argparse.Namespace, model: str) -> tuple[Variant, ...]:
    """The extra SPADE columns the options ask for: one per `--variant-sparsity` (default: the run's sparsity),
    pruned as `--only-layers` / `--skip-head` / `--sequential` / `--solver` say and named by what they change
    ("SPADE 90% net.layer4* skip_head magnitude"). None when no such option is given."""
    changes = ((",".join(args.only_layers), bool(args.only_layers)), ("skip_head", args.skip_head),
               ("sequential", args.sequential), (args.solver, args.solver != "sparsegpt"))  # fmt: skip
    if args.variant_sparsity is None and not any(on for _, on in changes):
        return ()
    default = args.sparsity if args.sparsity is not None else spade_defaults(model)["sparsity"]
    extra = "".join(f" {text}" for text, on in changes if on)
    out = []
    for s in args.variant_sparsity or [default]:
        per_layer = tuple((p, s) for p in args.only_layers) + ((("*", 0.0),) if args.only_layers else ())
        prune = PruneConfig(s, layer_sparsity=per_layer, skip_head=args.skip_head, sequential=args.sequential,
                            solver=args.solver)  # fmt: skip
        out.append(Variant(f"SPADE {s:.0%}{extra}", prune))
    return tuple(out)


def config_from_args(args: argparse.Namespace, model: str | None = None) -> ProtocolConfig:
    """The `ProtocolConfig` the parsed options describe for `model` (default: the first `--model`)."""
    model = model or args.model[0]
    return ProtocolConfig(
        model, args.trojan, args.clean, args.sparsity, args.n_aug, args.crop_min, tuple(args.methods),
        tuple(args.columns), args.exact_samples, seed=args.seed, steps=args.steps, device=args.device,
        variants=variants_from_args(args, model),
    )  # fmt: skip


def out_path(args: argparse.Namespace, model: str) -> Path | None:
    """Where `model`'s run goes: `--out`, the stored run with `--store` (or `--show`), else nowhere."""
    from spade_engine.protocol.store import RESULTS_DIR

    if args.out:
        return Path(args.out)
    return RESULTS_DIR / f"{model}_protocol.csv" if args.store or args.show else None


def runner_from_args(args: argparse.Namespace):
    """`run_protocol` (with `--serial`) or the Ray runner with the options' workers / address / GPUs."""
    if args.serial:
        from spade_engine.protocol.run import run_protocol

        return run_protocol
    from spade_engine.protocol import ray as on_ray

    return partial(
        on_ray.run_protocol_ray, workers=args.workers, address=args.address, gpus_per_task=args.gpus_per_task
    )


class ProgressLine:
    """`Progress` callback of the command line: "trojan: 3/100" on one stderr line, rewritten in place."""

    def __init__(self) -> None:
        self.open = False  # a line without its newline yet

    def __call__(self, phase: str, done: int, total: int) -> None:
        self.open = done < total
        print(f"\r{phase}: {done}/{total}", end="" if self.open else "\n", file=sys.stderr, flush=True)

    def close(self) -> None:
        """End an open progress line, so the next message starts on its own line."""
        if self.open:
            print(file=sys.stderr, flush=True)
            self.open = False


def run(args: argparse.Namespace, model: str, progress: ProgressLine) -> pd.DataFrame:
    """One model's run: rows (to `out_path` as they come, with settings JSON at the end), then the tables."""
    from spade_engine.protocol.store import run_to_csv

    cfg = config_from_args(args, model)
    out = out_path(args, model)
    runner = runner_from_args(args)
    t0 = time.perf_counter()
    if out is not None:
        df = run_to_csv(cfg, out, args.resume, progress, runner)
    else:
        df = runner(cfg, None, progress, None, frozenset())
    if out is not None:
        store(cfg, args, out, df, time.perf_counter() - t0)
    sparsity, crop = cfg.spade_settings()
    print_tables(df, f"{cfg.model}, sparsity {sparsity:.0%}, crop >= {crop:g}, n_aug {cfg.views}")
    return df


def store(cfg: ProtocolConfig, args: argparse.Namespace, out: Path, df: pd.DataFrame, seconds: float) -> None:
    """Write the finished run (merged into the stored one with `--merge`) and its settings JSON."""
    from spade_engine.protocol.store import finish_csv, load_settings, merge_columns, save_settings

    extra = {"workers": args.workers, "address": args.address} if args.workers or args.address else None
    if args.merge and out.exists():
        try:
            df = merge_columns(pd.read_csv(out), df)
        except ValueError as e:
            raise SystemExit(str(e)) from None
        rerun = {"columns": sorted(set(cfg.columns)), "date": time.strftime("%Y-%m-%d"), "seconds": round(seconds, 1)}
        save_settings(cfg, out, load_settings(out).get("seconds", 0.0), {"rerun": rerun})
    else:
        save_settings(cfg, out, seconds, extra)
    finish_csv(df, out)


def print_tables(df: pd.DataFrame, title: str) -> None:
    """The tables (mean [95% interval]), then each column's paired difference to Dense on the same samples."""
    from spade_engine.protocol.tables import paired_differences, tables

    for name, table in tables(df).items():
        print(f"\n== {name} ({title})")
        print(table.to_string())
    for metric in ("auc", "insertion", "deletion"):
        diff = paired_differences(df, metric) if metric in df else pd.DataFrame()
        if not diff.empty:
            print(f"\n== {metric}: column - Dense, paired on the same samples (points, mean [95% CI])")
            print(diff.to_string())


def show(path: Path) -> None:
    """Print a stored run's settings, tables and paired differences to Dense as markdown."""
    from spade_engine.protocol.store import load_settings
    from spade_engine.protocol.tables import markdown, paired_differences, tables

    if not path.exists():
        print(f"no stored run at {path}: run `{PROG} --store --model <model>` (or --out {path}) first")
        return
    df = pd.read_csv(path)
    print(f"## {path.name}\n\nsettings: {load_settings(path)}\n")
    for name, table in tables(df).items():
        print(f"### {name}\n\n{markdown(table.round(2) if name == 'agreement' else table)}\n")
        if name != "agreement":
            print(f"paired difference to Dense (points):\n\n{markdown(paired_differences(df, name))}\n")


def stopped_line(signame: str, out: Path | None) -> str:
    """The one line a stopped run prints: what stopped it, what is saved and how to continue."""
    from spade_engine.protocol.store import partial_path

    if out is None:
        return f"{PROG}: stopped ({signame}); nothing was saved: give --out to keep finished samples for --resume."
    partial = partial_path(out)
    n = (
        len(pd.read_csv(partial)[["kind", "sample"]].drop_duplicates())
        if partial.exists() and partial.stat().st_size
        else 0
    )
    return (f"{PROG}: stopped ({signame}) with {n} finished samples in {partial}; "
            "run the same command with --resume to continue.")  # fmt: skip


_SIGNALS: list[str] = []  # the signal that stopped the run, as the handler saw it


def _raise_terminated(signum, frame) -> None:
    _SIGNALS.append("SIGTERM")  # Ray's `ray.get` may re-raise it as a plain KeyboardInterrupt: remember it
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Run `spade protocol` with `argv` (default: `sys.argv[1:]` after the command).

    Returns:
        0 when every run finished; 130 after Ctrl-C, 143 after SIGTERM (one line on stderr says what was
        saved and that `--resume` continues). Errors a user can fix raise SystemExit with a message.
    """
    args = parser().parse_args(argv)
    if args.out and len(args.model) > 1:
        raise SystemExit(f"{PROG}: --out takes one --model; for several models use --store (or one run each).")
    if args.show:
        for model in args.model:
            show(out_path(args, model))
        return 0
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    progress = ProgressLine()
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    _SIGNALS.clear()
    model = args.model[0]
    try:
        for model in args.model:
            run(args, model, progress)
    except KeyboardInterrupt as e:
        signame = "SIGTERM" if isinstance(e, Terminated) or _SIGNALS else "SIGINT"
        progress.close()
        print(stopped_line(signame, out_path(args, model)), file=sys.stderr, flush=True)
        return EXIT_STATUS[signame]
    except FileNotFoundError as e:  # SPADE-tuned before its profile was tuned
        raise SystemExit(str(e)) from None
    except RuntimeError as e:  # Ray missing or unreachable: say so; any other error is a bug to see in full
        from spade_engine.protocol.ray import RayUnavailableError

        if isinstance(e, RayUnavailableError):
            raise SystemExit(str(e)) from None
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
