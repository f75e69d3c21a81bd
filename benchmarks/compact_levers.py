"""Does SPADE keep the decision, and the reasons, on a real compact network? Each lever alone and combined.

For every offline photo sample (`spade_engine.photos`: whole photos and square crops), every lever and every
sparsity: is the dense top-1 kept on the sample, how many *held-out* views (another augmentation seed, same
crop range) the pruned network classifies like the dense one (all of them, and the "clear" ones, where the dense
top-1 probability leads the second by at least `CLEAR_MARGIN`: near-ties flip under any small change), the mean
cosine of their logits, and optionally
the insertion / deletion AUC of saliency maps of the pruned network, scored on the dense model as the paper's
protocol does (paired with the dense maps of the same sample).

Levers (`LEVERS`): "sweep" (the engine's one-pass Hessians and SparseGPT sweep), "sequential" (SparseGPT's
sequential mode, one pass), "asymmetric" (the sequential pass pruning each layer towards the dense network's
output, `spade_engine.pruning.asymmetric`), "match" / "reestimate" (BatchNorm statistics correction, `spade_engine.statistics`),
"dw-half" (depthwise convs at half the sparsity), "dense-head" (the classifier left dense: with 64 views its
Hessian has rank at most 64 of 1280, so pruning it may fit the calibration views only), "obs-budget" (the
same number of weights pruned, shared among layers by their relative OBS error, `spade_engine.pruning.budget`),
"exact" (OBC's greedy per row where a layer has at most `obc.exact_columns_limit()` columns, the sweep above),
"dense-1px" (a reference, not a lever: the dense network itself with every input moved by one pixel,
`torch.roll` as the trojan card's `stability`; no pruning, written at sparsity 0: how often an imperceptible change
flips the dense decision on the same held-out views, the scale for "held-out views agree"),
"damp10" / "damp100" (dampening 0.1 / 1.0 of the mean Hessian diagonal instead of 0.01: a Hessian from one sample's
views is nearly singular for wide layers, and stronger dampening pulls the solve towards magnitude pruning, which may
generalise beyond the calibration views), and
"+"-combinations ("sequential+match").

Rows are appended to a CSV as they come (`--resume` skips what is there); the summary prints medians, shares
with Wilson intervals, paired differences with 95% t intervals, and intervals that resample photos rather
than samples (crops of one photo are not independent).

    python benchmarks/compact_levers.py --out assets/benchmarks/efficientnet_lite0_levers_decision.csv --resume
    python benchmarks/compact_levers.py --out assets/benchmarks/efficientnet_lite0_levers_decision.csv --summary
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from spade_engine import metrics
from spade_engine.augment import augment
from spade_engine.engine import PruneConfig, SpadeEngine
from spade_engine.models import load_model, spade_augment
from spade_engine.photos import offline_photos, photo_crops
from spade_engine.protocol import levers
from spade_engine.saliency import UnsupportedModelError, attribute

LEVERS = {
    "sweep": {},
    "sequential": {"sequential": True},
    "match": {"bn_correction": "match"},
    "reestimate": {"bn_correction": "reestimate"},
    "dw-half": {"dw_half": True},
    "asymmetric": {"asymmetric": True},
    "dense-head": {"skip_head": True},
    "obs-budget": {"budget": "obs"},
    "exact": {"solver": "obc"},
    "damp10": {"damp": 0.1},
    "damp100": {"damp": 1.0},
}
FIELDS = ["sample", "photo", "lever", "sparsity", "kept", "p_dense", "p_pruned", "held_agree", "logit_cos",
          "seconds", "method", "insertion", "deletion", "note", "held_clear", "n_clear"]  # fmt: skip
REFERENCE = "dense-1px"  # the dense network on inputs moved by one pixel: the scale of held-out agreement
CLEAR_MARGIN = 0.1  # a held-out view is "clear" when the dense top-1 probability leads the second by this much


def lever_config(lever: str, sparsity: float) -> PruneConfig:
    """The `PruneConfig` of a lever name ("sweep", "sequential+match", …) at a sparsity."""
    kw: dict = {}
    for part in lever.split("+"):
        kw.update(LEVERS[part])
    cfg = PruneConfig(
        sparsity,
        sequential=kw.get("sequential", False),
        asymmetric=kw.get("asymmetric", False),
        bn_correction=kw.get("bn_correction", "none"),
        skip_head=kw.get("skip_head", False),
        budget=kw.get("budget", "uniform"),
        solver=kw.get("solver", "sparsegpt"),
        damp=kw.get("damp", PruneConfig.damp),
    )
    if kw.get("dw_half"):
        cfg = replace(cfg, layer_sparsity=(("*conv_dw", sparsity / 2),))
    return cfg


def map_scores(model, dense_model, x, target, methods) -> dict[str, tuple[float, float, str]]:
    """method -> (insertion, deletion, note) of `model`'s map, scored on `dense_model`."""
    out = {}
    for method in methods:
        try:
            sal = attribute(method, model, x, target)
        except UnsupportedModelError as e:
            out[method] = (float("nan"), float("nan"), str(e)[:80])
            continue
        out[method] = (
            metrics.insertion_auc(dense_model, x, sal, target),
            metrics.deletion_auc(dense_model, x, sal, target),
            "",
        )
    return out


def run(args) -> None:
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    model, aug = loaded.model, spade_augment(args.model)
    engine = SpadeEngine(model, max_pruned=1)
    out = Path(args.out)
    done = set()
    if out.exists() and args.resume:
        with out.open() as f:
            done = {(r["sample"], r["lever"], r["sparsity"], r["method"]) for r in csv.DictReader(f)}
    elif out.exists():
        raise SystemExit(f"{out} exists: pass --resume to continue it, or another --out.")
    out.parent.mkdir(parents=True, exist_ok=True)
    new = not out.exists()
    fields = FIELDS
    if not new:  # a file from before a column was added keeps its header
        with out.open() as f:
            fields = next(csv.reader(f))
    with out.open("a", newline="") as f:
        writer = csv.DictWriter(f, fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        samples = photo_crops(offline_photos(), args.per_photo)[: args.limit]
        for i, (name, img) in enumerate(samples):
            x = loaded.preprocess(img)  # (3, S, S)
            held = augment(x, args.held_out, 1000 + i, aug)  # held-out views: another seed
            with torch.no_grad():
                dense_logits, dense_held = model(x[None])[0], model(held)  # (K,), (B, K)
            target = int(dense_logits.argmax())
            top2 = dense_held.softmax(-1).topk(2, -1).values  # (B, 2)
            clear = top2[:, 0] - top2[:, 1] >= CLEAR_MARGIN  # (B,) views whose dense decision is no near-tie

            def emit(name=name, **row):
                writer.writerow({"sample": name, "photo": name.split("@")[0], **row})
                f.flush()

            for method, (ins, dele, note) in (
                map_scores(model, model, x[None], target, [m for m in args.maps if (name, "dense", "0", m) not in done])
            ).items():
                emit(lever="dense", sparsity=0, method=method, insertion=ins, deletion=dele, note=note)
            if REFERENCE in args.levers and (name, REFERENCE, "0", "") not in done:
                with torch.no_grad():
                    moved, moved_held = model(torch.roll(x, 1, -1)[None])[0], model(torch.roll(held, 1, -1))
                same = moved_held.argmax(-1) == dense_held.argmax(-1)  # (B,)
                emit(lever=REFERENCE, sparsity=0, kept=int(moved.argmax() == target),
                     held_clear=float(same[clear].float().mean()) if clear.any() else float("nan"),
                     n_clear=int(clear.sum()), p_dense=float(dense_logits.softmax(-1)[target]),
                     p_pruned=float(moved.softmax(-1)[target]), held_agree=float(same.float().mean()),
                     logit_cos=float(F.cosine_similarity(moved_held, dense_held, dim=-1).mean()),
                     seconds=0.0, method="")  # fmt: skip
            trace = None
            for lever in (lever for lever in args.levers if lever != REFERENCE):
                for s in args.sparsities:
                    todo = [m for m in ["", *args.maps] if (name, lever, str(s), m) not in done]
                    if not todo:
                        continue
                    trace = trace or engine.prepare(x, args.views, 0, aug)
                    t0 = time.perf_counter()
                    pruned, result = engine.prune(trace, lever_config(lever, s))
                    seconds = time.perf_counter() - t0
                    with torch.no_grad():
                        held_logits = pruned(held)  # (B, K)
                    if "" in todo:
                        same = held_logits.argmax(-1) == dense_held.argmax(-1)  # (B,)
                        emit(lever=lever, sparsity=s, kept=int(result.agrees),
                             held_clear=float(same[clear].float().mean()) if clear.any() else float("nan"),
                             n_clear=int(clear.sum()),
                             p_dense=float(dense_logits.softmax(-1)[target]),
                             p_pruned=float(result.pruned_logits.softmax(-1)[target]),
                             held_agree=float(same.float().mean()),
                             logit_cos=float(F.cosine_similarity(held_logits, dense_held, dim=-1).mean()),
                             seconds=round(seconds, 2), method="")  # fmt: skip
                    for method, (ins, dele, note) in map_scores(
                        pruned, model, x[None], target, [m for m in todo if m]
                    ).items():
                        emit(lever=lever, sparsity=s, method=method, insertion=ins, deletion=dele, note=note)
            print(f"{i + 1}/{len(samples)} {name}", flush=True)


def summary(path: str, min_p_dense: float = 0.0) -> None:
    """Print a run's decision table (`protocol.levers.decision_table`) and its maps' paired differences."""
    import pandas as pd

    df = pd.read_csv(path)
    dec = df[df["method"].isna() & (df["lever"] != "dense")]
    print(f"{dec['sample'].nunique()} samples of {dec['photo'].nunique()} distinct photos ({path})")
    for floor in sorted({0.0, min_p_dense}):
        table = levers.decision_table(df, floor)
        if floor:
            print(f"\nonly samples with dense p(top-1) >= {floor:g}")
        clear = "held_clear" in table
        print(f"\n{'lever':>18} {'sparsity':>8} {'n':>4} {'kept':>18} {'held-out agree':>15} {'logit cos':>10} "
              f"{'s/prune':>8}" + (f" {'clear views agree (n/sample)':>30}" if clear else ""))  # fmt: skip
        for r in table.itertuples():
            print(f"{r.lever:>18} {r.sparsity:>8.2f} {r.n:>4} {r.kept:>7.0%} [{r.kept_lo:.0%}, {r.kept_hi:.0%}] "
                  f"{r.held_agree:>15.2f} {r.logit_cos:>10.2f} {r.seconds:>8.1f}"
                  + (f" {r.held_clear:>22.2f} ({r.clear_views:.0f})" if clear else ""))  # fmt: skip
    diffs = levers.map_differences(df)
    if diffs.empty:
        return
    print("\npaired difference to dense, points of AUC x100 (mean [95% t interval] [95% photo-bootstrap interval])")
    for r in diffs.itertuples():
        print(f"{r.lever:>18} {r.sparsity:.2f} {r.method:>20} {r.metric:>9}: dense {r.dense:5.1f}  {r.delta:+5.1f} "
              f"[{r.lo:+.1f}, {r.hi:+.1f}] [{r.photo_lo:+.1f}, {r.photo_hi:+.1f}]  n={r.n}")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="assets/benchmarks/efficientnet_lite0_levers_decision.csv")
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--levers", nargs="+", default=["sweep", "sequential", "match", "sequential+match"])
    p.add_argument("--sparsities", nargs="+", type=float, default=[0.5, 0.7, 0.8, 0.9])
    p.add_argument("--maps", nargs="*", default=["Saliency", "IntegratedGradients", "GradCAM"],
                   help="methods whose maps are scored (default: Saliency IntegratedGradients GradCAM; "
                        "--maps alone: none, decision only)")  # fmt: skip
    p.add_argument("--per-photo", type=int, default=2, help="samples per photo: the photo, then square crops")
    p.add_argument("--views", type=int, default=64, help="calibration views per prune")
    p.add_argument("--held-out", type=int, default=64, help="held-out views per sample (the same for any --views)")
    p.add_argument("--limit", type=int, default=None, help="only the first N samples (a quick probe)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--summary", action="store_true", help="only print the summary of --out")
    p.add_argument("--min-p-dense", type=float, default=0.5,
                   help="the summary also gives the decision table on samples the dense network gives at least this")  # fmt: skip
    args = p.parse_args()
    if not args.summary:
        run(args)
    summary(args.out, args.min_p_dense)


if __name__ == "__main__":
    main()
