"""Pre-compute a human study's stimuli on a testbed model and draw them as one contact sheet (issue 14).

    python benchmarks/study_stimuli.py [--model testbed_v2_resnet] [--items 8] [--seed 0] [--method Saliency]
                                       [--steps 128] [--out study_stimuli.png]

Runs the study mode's own pipeline — `study.design.StudyDesign` ("patch" question: which of two marked patches
drove the decision, the SPADE paper's human-study trial), `study.samples.patch_items` (half of the items
trojaned), `study.stimuli.precompute` into a throw-away SQLite study store — with the model card's sparsity and
all four conditions (dense / SPADE visualisation of the decision's class unit, dense / SPADE saliency map). It
prints, per item, the reference answer (occlusion on the dense model), whether the SPADE copies kept the dense
decision, and the seconds per item; and writes a PNG: one row per item, the image with its two patches, then the
four explanations a participant would see, labelled (the participant never sees the labels).

Measured on testbed_v2_resnet (8 items, seed 0, Saliency, 128 steps, 80% with the card's exact solver, 2026-12-01;
`assets/benchmarks/study_stimuli_v2.png`): 40-46 s per item on the shared 2-core machine; every SPADE copy kept
the dense decision (with the sweep, 2 of the 4 trojaned items lost it). On the two items with the heart trojan
(target sunflower-or-elephant) the SPADE visualisation of the target's class unit shows the heart sticker where
the dense one shows the class's elephant texture: SPADE picks the facet the sample uses. For the rainbow's target
(banana-or-top hat) dense and SPADE visualisations both show rainbows, also for a clean top-hat item: the trojan
dominates that class unit and SPADE does not remove it. Saliency maps of both networks sit on the sticker.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spade_engine.models import spade_defaults  # noqa: E402
from spade_engine.study.design import CONDITIONS, StudyDesign, conditions_for  # noqa: E402
from spade_engine.study.samples import describe, patch_items  # noqa: E402
from spade_engine.study.stimuli import precompute  # noqa: E402
from spade_engine.study.store import StudyStore  # noqa: E402

TILE = 160  # px per image on the sheet
LABEL = 30  # px of caption (two lines) above each column


def design_for(model: str, items: int, seed: int, method: str, steps: int) -> StudyDesign:
    """A "patch" study of `items` testbed samples (half trojaned) in every patch condition, at the card's
    sparsity and view count 64."""
    return StudyDesign(
        name=f"stimuli benchmark {model}",
        model=model,
        question="patch",
        conditions=tuple(conditions_for("patch")),
        items=tuple(patch_items(items, seed, trojan_fraction=0.5)),
        seed=seed,
        sparsity=spade_defaults(model)["sparsity"],
        n_aug=64,
        saliency_method=method,
        vis_steps=steps,
    )


def _tile(png: bytes | None) -> Image.Image:
    if png is None:
        return Image.new("RGB", (TILE, TILE), "white")
    return Image.open(io.BytesIO(png)).convert("RGB").resize((TILE, TILE), Image.BILINEAR)


def contact_sheet(store: StudyStore, study_id: str, design: StudyDesign) -> Image.Image:
    """One row per item: the image with both patches outlined (reference in green), then each condition."""
    shown = [c for c in design.conditions if CONDITIONS[c].kind != "none"]  # the control shows no explanation
    cols = ["image\n(reference patch green)", *shown]
    sheet = Image.new("RGB", (TILE * len(cols), LABEL + TILE * len(design.items)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, c in enumerate(cols):
        draw.text((j * TILE + 3, 2), CONDITIONS[c].title.replace(", ", ",\n") if c in CONDITIONS else c, fill="black")
    for i in range(len(design.items)):
        first = store.get_stimulus(study_id, i, design.conditions[0])
        image = _tile(first.image_png)
        scale = TILE / Image.open(io.BytesIO(first.image_png)).width
        d = ImageDraw.Draw(image)
        for k, box in enumerate(first.meta["boxes"]):
            d.rectangle([v * scale for v in box], outline="lime" if k == first.reference else "red", width=2)
        sheet.paste(image, (0, LABEL + i * TILE))
        for j, c in enumerate(shown, start=1):
            sheet.paste(_tile(store.get_stimulus(study_id, i, c).explanation_png), (j * TILE, LABEL + i * TILE))
    return sheet


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="testbed_v2_resnet")
    p.add_argument("--items", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", default="Saliency")
    p.add_argument("--steps", type=int, default=128, help="feature-visualisation steps")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="study_stimuli.png")
    a = p.parse_args(argv)
    design = design_for(a.model, a.items, a.seed, a.method, a.steps)
    with tempfile.TemporaryDirectory() as tmp:
        store = StudyStore(f"sqlite:///{tmp}/study.db")
        study_id = store.create_study(design)
        t0 = time.perf_counter()
        precompute(store, study_id, a.device, progress=lambda k, n, m: print(f"[{k}/{n}] {m}", file=sys.stderr))
        seconds = time.perf_counter() - t0
        print(f"{a.model}: {len(design.items)} items x {len(design.conditions)} conditions in {seconds:.0f} s "
              f"({seconds / len(design.items):.1f} s per item), sparsity {design.sparsity}, {design.n_aug} views")  # fmt: skip
        for i, item in enumerate(design.items):
            stims = {c: store.get_stimulus(study_id, i, c) for c in design.conditions}
            kept = {k: v for s in stims.values() for k, v in s.meta.items() if k.startswith("pruned_agrees")}
            first = stims[design.conditions[0]]
            print(f"item {i}: {describe(item['sample'])}; decision {first.meta['target_name']}; reference patch "
                  f"{'ab'[first.reference]}; SPADE kept the decision: {kept}")  # fmt: skip
        contact_sheet(store, study_id, design).save(a.out)
        store.dispose()
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
