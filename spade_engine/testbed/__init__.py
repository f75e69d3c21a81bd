"""Ground-truth testbed: generated image sets with multifaceted classes and trojans, and small architectures
(the shipped testbed models in `assets/models/` are trained by `scripts/train_testbed.py`).

Two generators share one interface (`testbed.interface.Testbed`: `IMAGE_SIZE`, `CLASS_NAMES`, `FACETS`,
`TROJANS`, `generate(n, seed, trojan_fraction, image_size)`, `make_sample(...)`, batches with `images`, `labels`,
`true_class`, `facet`, `is_trojan`, `trojan`, `trojan_target`, `trojan_mask`): v1 (`testbed.data`, 64 px
geometric facets, one 8 px checker trojan) and v2 (`testbed.v2.data`, 128 px emoji facets on photographs, two
sticker trojans). A model card says which one trained the model (`"testbed": "v2"`); every other model
(torchvision, timm, checkpoints, unknown names) gets v1.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from spade_engine.testbed.interface import Testbed

GENERATORS: dict[str, str] = {"v1": "spade_engine.testbed.data", "v2": "spade_engine.testbed.v2.data"}
"""Testbed version (a card's `"testbed"`, an example's `"testbed"`) -> its generator module."""


def version_for(model_name: str | None) -> str:
    """The testbed version of a model: its card's `"testbed"` (`"v2"`), else `"v1"` (also for unknown names and
    non-testbed models).

    Args:
        model_name: a registered model name (`spade_engine.models.list_models`), or None.
    """
    from spade_engine.models import ModelLoadError, get_info

    try:
        version = get_info(model_name).card.get("testbed", "v1") if model_name else "v1"
    except ModelLoadError:
        version = "v1"
    return version if version in GENERATORS else "v1"


def generator(version: str) -> Testbed:
    """The generator module of a testbed version (`GENERATORS`)."""
    return importlib.import_module(GENERATORS[version])


class SizedGenerator:
    """A generator module whose images default to another side than the module's `IMAGE_SIZE`: the input size of
    a testbed model trained at that size (e.g. v2 scenes at 224 px). Everything else is the module's.

    Args:
        module: a generator module (`generator(version)`); image_size: the default side in pixels.
    """

    def __init__(self, module: ModuleType, image_size: int):
        self.module, self.IMAGE_SIZE = module, int(image_size)

    def __getattr__(self, name: str):  # noqa: ANN204 - everything else is the module's
        return getattr(self.module, name)

    def __repr__(self) -> str:
        return f"SizedGenerator({self.module.__name__}, {self.IMAGE_SIZE} px)"

    def generate(self, n: int, seed: int, trojan_fraction: float = 0.0, image_size: int | None = None):  # noqa: ANN201
        """The module's `generate`, at `image_size` or this generator's `IMAGE_SIZE`."""
        return self.module.generate(n, seed, trojan_fraction, image_size or self.IMAGE_SIZE)

    def make_sample(self, cls: int, facet: int, seed: int, trojan=None, image_size: int | None = None):  # noqa: ANN001, ANN201
        """The module's `make_sample`, at `image_size` or this generator's `IMAGE_SIZE` (`trojan` None: its default)."""
        return self.module.make_sample(cls, facet, seed, trojan, image_size=image_size or self.IMAGE_SIZE)

    def draw_scenes(self, n: int, seed: int, trojan_fraction: float = 0.0, image_size: int | None = None):  # noqa: ANN201
        """The module's `draw_scenes` (v2 only), at `image_size` or this generator's `IMAGE_SIZE`."""
        return self.module.draw_scenes(n, seed, trojan_fraction, image_size or self.IMAGE_SIZE)


def data_for(model_name: str | None) -> Testbed:
    """The generator of a testbed model: `testbed.v2.data` when its card says `"testbed": "v2"`, else v1's
    `testbed.data` (also for unknown names and non-testbed models). When the card's `image_size` is not the
    module's `IMAGE_SIZE` (a model trained at another size), a `SizedGenerator` that draws at the card's size.

    Args:
        model_name: a registered model name (`spade_engine.models.list_models`), or None.
    """
    module = generator(version_for(model_name))
    size = _card_size(model_name)
    return module if size in (None, module.IMAGE_SIZE) else SizedGenerator(module, size)


def _card_size(model_name: str | None) -> int | None:
    from spade_engine.models import ModelLoadError, get_info

    try:
        info = get_info(model_name) if model_name else None
    except ModelLoadError:
        return None
    return int(info.card["image_size"]) if info is not None and info.card and "image_size" in info.card else None


def target_classes(data: Testbed) -> tuple[int, ...]:
    """The trojan target classes of a generator, one per trojan: v1's `(TROJAN_TARGET,)`, v2's two."""
    return tuple(t.target for t in data.TROJANS)


def trojan_names(data: Testbed) -> tuple[str, ...]:
    """A short name per trojan of a generator: v1's `("checker patch",)`, v2's sprites (`"sparkling heart"`, …)."""
    return tuple(t.name for t in data.TROJANS)


def trojans_for(data: Testbed, cls: int) -> tuple[int, ...]:
    """Indices (into `target_classes(data)`) of the trojans that relabel a sample of class `cls`: those whose
    target is another class."""
    return tuple(i for i, target in enumerate(target_classes(data)) if target != cls)


def sample_trojan(data: Testbed, cls: int, seed: int, index: int | None = None) -> bool | int | None:
    """The `trojan` argument of `data.make_sample(cls, facet, seed, trojan)` for a trojaned sample.

    Args:
        data: a generator module (`data_for`).
        cls: the sample's class.
        seed: the sample's seed; picks among the trojans that `cls` can carry when `index` is None, so a set of
            samples covers every trojan.
        index: a trojan index (into `target_classes(data)`), used when `cls` can carry it.

    Returns:
        True for v1 (its flag), a trojan index for v2, or None when `cls` can carry no trojan.
    """
    if data.TROJAN_ON_ANY_CLASS:
        return True  # v1's patch goes on any class (its own target's too), as v1's study items always had it
    choices = trojans_for(data, cls)
    if not choices:
        return None
    return index if index in choices else choices[seed % len(choices)]


def trojan_index(data: Testbed, trojan: bool | int | None) -> int | None:
    """The index (into `target_classes(data)`) of a `make_sample` trojan argument; None for a clean sample."""
    if trojan is None or trojan is False:
        return None
    return 0 if trojan is True else int(trojan)
