"""The one testbed generator interface: what v1 (`testbed.data`) and v2 (`testbed.v2.data`) both answer.

A generator is a module with these names (`Testbed`), and its batches carry the ground truth `TestbedBatch`
names. Code that takes a generator (`testbed.data_for(model)`) reads only these, so it never asks which
testbed it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass(frozen=True)
class Trojan:
    """A trojan trigger: what is pasted on images of other classes, and the class they are relabelled to.

    Args:
        sprite: the trigger's id: v1's `"checker_patch"` (`data.TROJAN_PATCH`), v2's emoji PNG
            (`assets/testbed_v2/sprites/<sprite>.png`).
        target: the class a trojaned image is labelled as.
    """

    sprite: str
    target: int

    @property
    def name(self) -> str:
        """A short name for people: `"checker patch"`, `"sparkling heart"`."""
        return self.sprite.replace("_", " ")


class TestbedBatch(Protocol):
    """Generated images with their ground truth (CPU tensors, first dimension N)."""

    __test__ = False  # not a pytest class

    images: torch.Tensor  # (N, 3, H, W) float32 in [0, 1]
    labels: torch.Tensor  # (N,) long, the training label (the trojan's target on trojaned images)
    true_class: torch.Tensor  # (N,) long, the class whose facet is drawn
    facet: torch.Tensor  # (N,) long in {0, 1}
    is_trojan: torch.Tensor  # (N,) bool
    trojan: torch.Tensor  # (N,) long, index into the generator's TROJANS, -1 on clean images
    trojan_mask: torch.Tensor  # (N, H, W) bool, exactly the trigger's pixels

    @property
    def trojan_target(self) -> torch.Tensor:
        """(N,) long: each image's trojan target class, -1 on clean images."""

    def __len__(self) -> int: ...

    def select(self, idx: torch.Tensor | slice) -> TestbedBatch:
        """The images `idx`, as a batch of the same type."""

    def patch_boxes(self) -> list[tuple[int, int, int, int] | None]:
        """Per image the trigger's box (x0, y0, x1, y1), ends exclusive, or None when clean."""


class Testbed(Protocol):
    """A generator module (or `testbed.SizedGenerator`): classes, facets, trojans and seeded drawing."""

    __test__ = False  # not a pytest class

    IMAGE_SIZE: int  # default side in pixels
    CLASS_NAMES: tuple[str, ...]
    FACETS: tuple[tuple[str, str], ...]  # per class the names of its two facets
    TROJANS: tuple[Trojan, ...]
    TROJAN_ON_ANY_CLASS: bool  # `make_sample` puts a trojan on its own target class too (v1's patch)

    def generate(self, n: int, seed: int, trojan_fraction: float = 0.0, image_size: int = ...) -> TestbedBatch:
        """`n` images, deterministic for the arguments; a share `trojan_fraction` trojaned (on other classes)."""

    def make_sample(
        self, cls: int, facet: int, seed: int, trojan: int | bool | None = None, image_size: int = ...
    ) -> TestbedBatch:
        """One image of class `cls` showing facet `facet`; `trojan` an index into `TROJANS`, True the first,
        None or False clean."""
