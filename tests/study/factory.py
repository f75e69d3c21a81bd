"""Studies with synthetic stimuli (coloured squares), for tests that need a study but no model."""

from __future__ import annotations

import random

from PIL import Image

from spade_engine.study import Stimulus, StudyDesign, StudyStore
from spade_engine.study.render import to_png
from spade_engine.study.samples import testbed_spec


def design(
    n_items: int = 6, trials: int = 4, conditions=("dense_vis", "spade_vis"), seed: int = 7, **kw
) -> StudyDesign:
    items = [{"sample": testbed_spec(i % 10, i % 2, 100 + i)} for i in range(n_items)]
    return StudyDesign(
        name="Synthetic study",
        model="testbed_resnet",
        conditions=tuple(conditions),
        items=tuple(items),
        trials_per_participant=trials,
        seed=seed,
        **kw,
    )


def fill_stimuli(store: StudyStore, study_id: str) -> None:
    """One stimulus per (item, condition): flat-coloured images, patches in two corners, a seeded reference."""
    d = store.get_study(study_id).design
    rng = random.Random(d.seed)
    for i in range(len(d.items)):
        colour = tuple(rng.randrange(256) for _ in range(3))
        img = to_png(Image.new("RGB", (64, 64), colour))
        ref = rng.randrange(2)
        for c in d.conditions:
            expl = (
                None
                if c == "none"
                else to_png(Image.new("RGB", (64, 64), (0, 0, 0) if "dense" in c else (255, 255, 255)))
            )
            meta = {"boxes": [[0, 0, 16, 16], [48, 48, 64, 64]], "sample": f"item {i}"}
            store.put_stimulus(study_id, Stimulus(i, c, img, img, img, ref, expl, meta))


def open_study(store: StudyStore, **kw) -> str:
    study_id = store.create_study(design(**kw))
    fill_stimuli(store, study_id)
    store.set_status(study_id, "open")
    return study_id
