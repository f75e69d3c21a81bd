"""Our SPADE engine against the authors' code, side by side in one run: speed and pruning quality.

    python benchmarks/vs_reference.py --reference-dir /tmp/spade_ref [--arch resnet18 resnet50] [--repeats 3]

`--reference-dir` is a local checkout of IST-DASLab/SPADE (e.g. `git clone https://github.com/IST-DASLab/SPADE`);
its `src/sparseGPT.py` `SparseGPT` class is imported and run as it is, driven the way its notebook's
`FOBC_core` drives it: forward hooks on every Conv2d/Linear but the first conv, one pass of the views (batches
of 256), then `fasterprune` per layer with blocksize kh*kw for a conv and 1 for a Linear, dampening 1%. The
authors' code caches nothing, so its re-prune at a new sparsity is a full run again. Their module imports
`transformers` only for `transformers.Conv1D` (GPT-2 layers, absent here); when transformers is not installed a
stand-in module with an empty `Conv1D` class is registered so the import succeeds. Their prints are silenced.

Both get the same model (torchvision `--arch`, random weights, seed 0), sample (uniform noise, seed 0), views
(`spade_engine.augment`, 8-bit like the engine's cache), and the same sparsities: `--sparsity` cold, then
`--resparsity` as the re-prune. Ours is `SpadeEngine` with its defaults (`--hessian-matmul` for bf16
products). Per repeat the order is reference cold, reference re-prune, ours cold, ours re-prune (a fresh engine
each repeat).

Quality is measured on held-out views (another augmentation seed) for the models pruned at each sparsity:
- held-out layer error: mean over pruned layers of `||W X - W_hat X||^2 / ||W X||^2`, X the layer's dense
  inputs on the held-out views (`reconstruction_error` with their Hessian);
- top-1 kept: share of held-out views on which the pruned model predicts the dense model's class;
- logit cosine: mean cosine similarity of pruned and dense logits over the held-out views.

Times: median [min-max] over `--repeats`; the ratios are reference / ours, the median of the per-repeat ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import statistics
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import get_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spade_engine.augment import augment  # noqa: E402
from spade_engine.engine import SpadeEngine  # noqa: E402
from spade_engine.hooks import forward_hooks  # noqa: E402
from spade_engine.models import IMAGENET_MEAN, IMAGENET_STD, Classifier  # noqa: E402
from spade_engine.pruning import HessianAccumulator, grouped_weight, reconstruction_error  # noqa: E402
from spade_engine.pruning.hessian import PRUNABLE  # noqa: E402


def load_reference(reference_dir: Path) -> type:
    """The authors' `SparseGPT` class from `<reference_dir>/src/sparseGPT.py`.

    Raises:
        SystemExit: the directory does not hold the authors' code.
    """
    if not (reference_dir / "src" / "sparseGPT.py").is_file():
        raise SystemExit(f"{reference_dir} has no src/sparseGPT.py: pass a checkout of IST-DASLab/SPADE.")
    try:
        import transformers  # noqa: F401
    except ImportError:  # only `transformers.Conv1D` is used, in isinstance checks
        sys.modules["transformers"] = types.SimpleNamespace(Conv1D=type("Conv1D", (), {}))
    sys.path.insert(0, str(reference_dir))
    from src.sparseGPT import SparseGPT

    return SparseGPT


def reference_prune(SparseGPT: type, model: nn.Module, views: torch.Tensor, sparsity: float) -> nn.Module:
    """The notebook's `FOBC_core` on a copy of `model`: hooks, one pass over `views` (B, 3, H, W), per-layer prune."""
    pruned = copy.deepcopy(model)
    layers = [(n, m) for n, m in pruned.named_modules() if isinstance(m, PRUNABLE)][1:]  # all but the first conv
    gpts = {n: SparseGPT(m) for n, m in layers}
    with forward_hooks(dict(layers), lambda n, mod, i, o: gpts[n].add_batch(i[0].data, o.data)), torch.no_grad():
        for batch in views.split(256):
            pruned(batch)
    with contextlib.redirect_stdout(io.StringIO()):
        for n, m in layers:
            block = m.kernel_size[0] * m.kernel_size[1] if isinstance(m, nn.Conv2d) else 1
            gpts[n].fasterprune(sparsity, prunen=0, prunem=0, percdamp=0.01, blocksize=block)
            gpts[n].free()
    return pruned


def heldout_hessians(model: nn.Module, names: list[str], views: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each layer's input Hessian on the held-out views, from the dense model (float64, all columns)."""
    modules = dict(model.named_modules())
    accs = {n: HessianAccumulator(modules[n], torch.float64, max_columns=65536) for n in names}
    with forward_hooks({n: modules[n] for n in names}, lambda n, m, i, o: accs[n].add_batch(i[0])), torch.no_grad():
        for batch in views.split(32):
            model(batch)
    return {n: a.H for n, a in accs.items()}


def quality(dense: nn.Module, pruned: nn.Module, hessians: dict[str, torch.Tensor], views: torch.Tensor) -> dict:
    """Held-out layer error, top-1 kept and logit cosine of `pruned` against `dense` (see the module docstring)."""
    d_mod, p_mod = dict(dense.named_modules()), dict(pruned.named_modules())
    errors = [
        reconstruction_error(grouped_weight(d_mod[n]), grouped_weight(p_mod[n]), H)
        for n, H in hessians.items()
        if bool((p_mod[n].weight == 0).any())
    ]
    with torch.no_grad():
        a, b = dense(views), pruned(views)  # (B, K) each
    return {
        "error": sum(errors) / len(errors),
        "top1": float((a.argmax(1) == b.argmax(1)).float().mean()),
        "cosine": float(F.cosine_similarity(a, b, dim=1).mean()),
    }


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def ours_run(
    model: nn.Module, x: torch.Tensor, n_aug: int, sparsities: tuple[float, float], hessian_matmul: str = "exact"
):
    """Cold (prepare + prune) and re-prune times of a fresh `SpadeEngine` (Hessian products `hessian_matmul`),
    and its two pruned copies."""
    engine = SpadeEngine(model, hessian_matmul=hessian_matmul)
    t0 = time.perf_counter()
    first, _ = engine.prune(engine.prepare(x, n_aug=n_aug, seed=0), sparsities[0])
    cold = time.perf_counter() - t0
    (second, _), warm = timed(engine.prune, engine.prepare(x, n_aug=n_aug, seed=0), sparsities[1])
    return (first, second), cold, warm


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def compare(SparseGPT: type, arch: str, args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    model = Classifier(get_model(arch, weights=None), IMAGENET_MEAN, IMAGENET_STD).eval()
    x = torch.rand(3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    views = (augment(x, args.n_aug, 0) * 255).round() / 255  # the engine's 8-bit views, (B, 3, H, W)
    heldout = (augment(x, args.heldout, 1000) * 255).round() / 255
    sparsities = (args.sparsity, args.resparsity)
    load_before = os.getloadavg()
    times = {k: [] for k in ("ref_cold", "ref_warm", "ours_cold", "ours_warm")}
    for _ in range(args.repeats):
        ref_first, t = timed(reference_prune, SparseGPT, model, views, sparsities[0])
        times["ref_cold"].append(t)
        ref_second, t = timed(reference_prune, SparseGPT, model, views, sparsities[1])
        times["ref_warm"].append(t)
        ours, cold, warm = ours_run(model, x, args.n_aug, sparsities, args.hessian_matmul)
        times["ours_cold"].append(cold)
        times["ours_warm"].append(warm)
        print(" ".join(f"{k}={v[-1]:.2f}s" for k, v in times.items()), flush=True)
    names = [n for n, m in ours[0].named_modules() if isinstance(m, PRUNABLE)][1:]
    hessians = heldout_hessians(model, names, heldout)
    rows = {"authors'": (ref_first, ref_second), "ours": ours}
    print(
        f"\n{arch}, {args.size} px, {args.n_aug} views, {args.sparsity:.0%} cold then {args.resparsity:.0%}, "
        f"{args.repeats} repeats, {torch.get_num_threads()} threads, quality on {args.heldout} held-out views; "
        f"load average (1/5/15 min) before {'/'.join(f'{v:.1f}' for v in load_before)}, "
        f"after {'/'.join(f'{v:.1f}' for v in os.getloadavg())}"
    )
    print("| code | cold (s) | re-prune (s) | held-out layer error | top-1 kept | logit cosine |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, key in (("authors'", "ref"), ("ours", "ours")):
        q = [quality(model, p, hessians, heldout) for p in rows[label]]

        def fmt(k: str, f: str, q: list[dict] = q) -> str:
            return " / ".join(f.format(qi[k]) for qi in q)

        print(
            f"| {label} | {spread(times[key + '_cold'])} | {spread(times[key + '_warm'])} | "
            f"{fmt('error', '{:.4f}')} | {fmt('top1', '{:.1%}')} | {fmt('cosine', '{:.4f}')} |"
        )
    cold = [a / b for a, b in zip(times["ref_cold"], times["ours_cold"], strict=True)]
    warm = [a / b for a, b in zip(times["ref_warm"], times["ours_warm"], strict=True)]
    print(f"| ratio (authors' / ours) | {spread(cold)}x | {spread(warm)}x | | | |")
    print(f"(quality columns: {args.sparsity:.0%} / {args.resparsity:.0%})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference-dir", type=Path, required=True, help="checkout of IST-DASLab/SPADE")
    ap.add_argument("--arch", nargs="+", default=["resnet18"], help="torchvision architectures, e.g. resnet50")
    ap.add_argument("--n-aug", type=int, default=128)
    ap.add_argument("--heldout", type=int, default=64, help="held-out views for the quality columns")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--sparsity", type=float, default=0.9, help="cold prune")
    ap.add_argument("--resparsity", type=float, default=0.8, help="re-prune")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--hessian-matmul", default="exact", choices=["exact", "bfloat16", "auto"],
                    help="our engine's Hessian products (SpadeEngine's default: exact)")  # fmt: skip
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    SparseGPT = load_reference(args.reference_dir.resolve())
    for arch in args.arch:
        compare(SparseGPT, arch, args)


if __name__ == "__main__":
    main()
