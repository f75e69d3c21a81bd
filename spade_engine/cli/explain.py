"""`spade explain`: dense vs SPADE saliency maps for many images, written as an offline report.

    spade explain IMAGES_OR_FOLDERS... --model NAME --out DIR [--sparsity S --methods M ...]
    spade explain photos/ --checkpoint model.pt --arch resnet18 --out report/

Writes the report described in `spade_engine.explain.report`; `explain_command` gives the line that reproduces the
Debugger's settings. Errors a user can fix end with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from spade_engine.settings import SpadeSettings

PROG = "spade"


def explain_parser(sub) -> argparse.ArgumentParser:
    """`spade explain`'s options: the model, `SpadeSettings.add_arguments` (defaults: the model card's, as the
    Debugger's), the device and the report folder."""
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
    SpadeSettings.add_arguments(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, required=True, help="report folder (created)")
    return p


def _validate(args: argparse.Namespace) -> None:
    if args.checkpoint and not args.arch:
        raise SystemExit("--checkpoint needs --arch (e.g. --arch resnet18); TorchScript files need any --arch.")


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

    from spade_engine.explain.report import run_explain

    _validate(args)
    settings = SpadeSettings.from_args(args)
    loaded = load(args)
    try:  # an unknown --profile fails here, before any work
        settings.resolved(loaded.info.name).prune_config()
    except ValueError as e:
        raise SystemExit(str(e)) from None
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
    finally:
        phase_bar.close()
        images.n = images.total or 0
        images.close()
    for file, why in summary["skipped"]:
        print(f"skipped {file}: {why}", file=sys.stderr)
    if summary["out_of_domain"]:
        print(f"warning: {len(summary['out_of_domain'])} of {summary['images']} images are out of domain. "
              f"{summary['out_of_domain_note']}", file=sys.stderr)  # fmt: skip
    print(f"{summary['images']} images explained, {len(summary['skipped'])} skipped -> {summary['out']}")
    return summary


def explain_command(
    model: str | None,
    settings: SpadeSettings,
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
    argv += settings.argv(model)
    return shlex.join([*argv, "--out", out])


def main(argv: Sequence[str] | None = None) -> int:
    """Run `spade explain` with `argv` (the arguments after `explain`); 0 when done, SystemExit with a message
    on an error the user can fix."""
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    explain_parser(ap.add_subparsers(dest="command", required=True))
    explain(ap.parse_args(["explain", *(argv or [])]))
    return 0
