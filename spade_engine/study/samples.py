"""Study items: sample specs (a testbed image or an image file) turned into tensors, and generated item lists."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from spade_engine.images import load_image
from spade_engine.models import LoadedModel
from spade_engine.paths import ASSETS

REPO_ROOT = ASSETS.parent


def testbed_spec(cls: int, facet: int, seed: int, trojan: bool | int = False) -> dict:
    """A spec for `make_sample(cls, facet, seed, trojan)` of the study model's own generator (`testbed.data_for`).

    Args:
        trojan: False for a clean sample; True for a trojan the class can carry (v1's patch; for v2 one of its
            trojans, picked by the seed); an index to ask for one trojan (used when the class can carry it).
    """
    trojan = trojan if isinstance(trojan, bool) else int(trojan)
    return {"source": "testbed", "cls": int(cls), "facet": int(facet), "seed": int(seed), "trojan": trojan}


def file_spec(path: str | Path) -> dict:
    """A spec for an image file (relative paths are taken from the repository root)."""
    return {"source": "file", "path": str(path)}


def load_sample(spec: dict, loaded: LoadedModel) -> torch.Tensor:
    """The (3, S, S) image in [0, 1] that `spec` names, preprocessed for `loaded`."""
    if spec["source"] == "testbed":
        return testbed_sample(spec, loaded.info.name, loaded.info.input_size).images[0]
    if spec["source"] == "file":
        path = Path(spec["path"])
        path = path if path.is_absolute() else REPO_ROOT / path
        return loaded.preprocess(load_image(path))
    raise ValueError(f"Unknown sample source '{spec['source']}'.")


def testbed_sample(spec: dict, model_name: str | None, image_size: int):
    """The generated batch of one testbed spec, from the model's own generator (`testbed.data_for`), at
    `image_size` px."""
    from spade_engine import testbed

    data = testbed.data_for(model_name)
    want = spec.get("trojan", False)
    cls, seed = spec["cls"], spec["seed"]
    trojan = False if want is False else testbed.sample_trojan(data, cls, seed, None if want is True else want)
    return data.make_sample(cls, spec["facet"], seed, False if trojan is None else trojan, image_size)


def describe(spec: dict) -> str:
    """A short human-readable name of a sample spec (for the researcher, never shown to participants)."""
    if spec["source"] == "testbed":
        trojan = spec.get("trojan", False)
        trojan = "" if trojan is False else ", trojan" if trojan is True else f", trojan {trojan}"
        return f"testbed class {spec['cls']} facet {spec['facet']} seed {spec['seed']}{trojan}"
    return Path(spec["path"]).name


def patch_items(n: int, seed: int, n_classes: int = 10, trojan_fraction: float = 0.5) -> list[dict]:
    """`n` items for the "patch" question: testbed samples of random classes and facets, a share with the trojan."""
    rng = random.Random(seed)
    n_trojan = round(n * trojan_fraction)
    return [
        {"sample": testbed_spec(rng.randrange(n_classes), rng.randrange(2), 10_000 + seed * 1000 + i, i < n_trojan)}
        for i in range(n)
    ]


def neuron_items(n: int, seed: int, neurons: list[dict], n_classes: int = 10) -> list[dict]:
    """`n` items for the "neuron" question: pairs of testbed samples of two different classes, cycling over
    `neurons` (`{"layer": name, "channel": index}`; layer "logits" is the class logit)."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        a, b = rng.sample(range(n_classes), 2)
        items.append({
            "sample": testbed_spec(a, rng.randrange(2), 20_000 + seed * 1000 + 2 * i),
            "other": testbed_spec(b, rng.randrange(2), 20_000 + seed * 1000 + 2 * i + 1),
            "neuron": dict(neurons[i % len(neurons)]),
        })  # fmt: skip
    return items
