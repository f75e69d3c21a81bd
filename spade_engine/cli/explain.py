"""`spade explain`: dense vs SPADE saliency maps for many images, written as an offline report.

    spade explain IMAGES_OR_FOLDERS... --model NAME --out DIR [--sparsity S --methods M ...]
    spade explain photos/ --checkpoint model.pt --arch resnet18 --out report/

Writes the report described in `spade_engine.report`; `explain_command` gives the line that reproduces the
Debugger's settings. Errors a user can fix end with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from spade_engine.report import DEFAULT_METHODS, ExplainSettings

PROG = "spade"


def explain_parser(sub) -> argparse.ArgumentParser:
    """`spade explain`'s options (defaults: the Debugger's)."""
    from spade_engine.saliency import METHODS

    p = sub.add_parser("explain", help="dense vs SPADE saliency maps for many images, as an offline report",
                       description="Explain every image as the Debugger does; write index.html, CSVs, PNG "
                       "overlays and raw maps (.npz) to --out. Unreadable files are listed and skipped.")  # fmt: skip
    p.add_argument("paths", nargs="+", metavar="IMAGE_OR_FOLDER")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a registry name: testbed_resnet, resnet18, timm:convnext_tiny, ...")
    src.add_argument("--checkpoint", type=Path, help="a weights file (.pt, .pth, .ckpt, .safetensors) or TorchScript")
    p.add_argument("--arch", help="the checkpoint's architecture (a torchvision / testbed name or timm:<name>)")
    p.add_argument("--num-classes", type=int, default=None, help="checkpoint head size (default: read from it)")
    p.add_argument("--input-size", type=int, default=224, help="checkpoint input size in pixels")
    p.add_argument("--sparsity", type=float, default=None, help="per-layer sparsity in [0, 1) (default: the card's)")
    p.add_argument("--n-aug", type=int, default=64, help="calibration views")
    p.add_argument("--seed", type=int, default=0, help="calibration views' seed")
    p.add_argument("--crop-min", type=float, default=None, help="smallest calibration crop (default: the card's)")
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=list(METHODS), metavar="METHOD",
                   help=f"saliency methods (default: {' '.join(DEFAULT_METHODS)}; any of {', '.join(METHODS)})")  # fmt: skip
    p.add_argument("--reduction", choices=["absolute", "signed"], default=None,
                   help="channel reduction of every map (default: each method's own)")  # fmt: skip
    p.add_argument("--prune-first-conv", action="store_true", help="prune the first conv too (default: kept dense)")
    p.add_argument("--skip-head", action="store_true", help="keep the classifier head dense")
    p.add_argument("--damp", type=float, default=0.01, help="dampening, fraction of the mean Hessian diagonal")
    p.add_argument("--solver", default="sparsegpt", choices=["sparsegpt", "obc", "magnitude"])
    p.add_argument("--profile", default="", help="a sparsity profile in assets/profiles (replaces --sparsity)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, required=True, help="report folder (created)")
    return p


def settings_from_args(args: argparse.Namespace) -> ExplainSettings:
    """The `ExplainSettings` the `explain` options describe."""
    return ExplainSettings(
        args.sparsity, args.n_aug, args.seed, args.crop_min, tuple(args.methods), args.reduction,
        not args.prune_first_conv, args.skip_head, args.damp, args.solver, args.profile,
    )  # fmt: skip


def _validate(args: argparse.Namespace) -> None:
    if args.checkpoint and not args.arch:
        raise SystemExit("--checkpoint needs --arch (e.g. --arch resnet18); TorchScript files need any --arch.")
    if args.sparsity is not None and not 0.0 <= args.sparsity < 1.0:
        raise SystemExit(f"--sparsity must be in [0, 1), e.g. 0.9 for 90%; got {args.sparsity}.")
    if args.crop_min is not None and not 0.0 < args.crop_min <= 1.0:
        raise SystemExit(f"--crop-min must be in (0, 1]; got {args.crop_min}.")
    if args.n_aug < 1:
        raise SystemExit("--n-aug must be at least 1.")


def load(args: argparse.Namespace):
    """The model the options name (`models.load_model` or `models.load_checkpoint`); SystemExit with the
    loader's message when it cannot be loaded."""
    from spade_engine import models

    try:
        if args.model:
            return models.load_model(args.model, args.device)
        data = args.checkpoint.read_bytes()
        return models.load_checkpoint(data, args.arch, args.num_classes, input_size=args.input_size,
                                      name=args.checkpoint.stem, device=args.device)  # fmt: skip
    except (models.ModelLoadError, OSError) as e:
        raise SystemExit(f"Cannot load the model: {e}") from None


def explain(args: argparse.Namespace) -> dict:
    """Run `spade explain`: one progress bar over the images, one per phase of the current image."""
    from tqdm import tqdm

    from spade_engine.report import run_explain

    _validate(args)
    loaded = load(args)
    settings = settings_from_args(args)
    images = tqdm(desc="images", unit="image", position=0, file=sys.stderr)
    phase_bar = tqdm(total=1, desc="", position=1, leave=False, file=sys.stderr)

    def progress(file: str, index: int, total: int):
        images.total, images.n = total, index
        images.set_postfix_str(Path(file).name)
        state = {"phase": None}

        def cb(phase: str, done: int, total: int) -> None:
            if phase != state["phase"]:
                state["phase"] = phase
                phase_bar.reset(total=max(total, 1))
                phase_bar.set_description(phase)
            phase_bar.n = done
            phase_bar.refresh()

        return cb

    try:
        summary = run_explain(args.paths, loaded, settings, args.out, progress)
    except FileNotFoundError as e:  # an unknown --profile
        raise SystemExit(f"No such sparsity profile: {e.filename or e}") from None
    finally:
        phase_bar.close()
        images.n = images.total or 0
        images.close()
    for file, why in summary["skipped"]:
        print(f"skipped {file}: {why}", file=sys.stderr)
    print(f"{summary['images']} images explained, {len(summary['skipped'])} skipped -> {summary['out']}")
    return summary


def explain_command(
    model: str | None,
    settings: ExplainSettings,
    folder: str = "FOLDER",
    out: str = "spade_report",
    checkpoint: str | None = None,
    arch: str | None = None,
) -> str:
    """The `spade explain` command line that reproduces the Debugger's current settings over a folder.

    Args:
        model: the registry name (None with `checkpoint`); settings: the Debugger's controls (sparsity and
            crop explicit); checkpoint, arch: an uploaded checkpoint's file name and architecture.

    Returns:
        One shell line, every argument quoted where it needs it.
    """
    argv = [PROG, "explain", folder]
    argv += ["--model", model] if checkpoint is None else ["--checkpoint", checkpoint, "--arch", arch or "ARCH"]
    if settings.profile:
        argv += ["--profile", settings.profile]
    else:
        argv += ["--sparsity", f"{settings.sparsity:g}"]
    argv += ["--n-aug", str(settings.n_aug), "--seed", str(settings.seed), "--crop-min", f"{settings.crop_min:g}"]
    argv += ["--methods", *settings.methods]
    if settings.reduction:
        argv += ["--reduction", settings.reduction]
    argv += ["--prune-first-conv"] * (not settings.skip_first) + ["--skip-head"] * settings.skip_head
    if settings.damp != 0.01:
        argv += ["--damp", f"{settings.damp:g}"]
    if settings.solver != "sparsegpt":
        argv += ["--solver", settings.solver]
    return shlex.join([*argv, "--out", out])


def main(argv: Sequence[str] | None = None) -> int:
    """Run `spade explain` with `argv` (the arguments after `explain`); 0 when done, SystemExit with a message
    on an error the user can fix."""
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    explain_parser(ap.add_subparsers(dest="command", required=True))
    explain(ap.parse_args(["explain", *(argv or [])]))
    return 0
