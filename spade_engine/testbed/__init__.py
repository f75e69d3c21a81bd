"""Ground-truth testbed: a generated image set with multifaceted classes and a trojan, small architectures,
and the training script that produces the shipped testbed models (`assets/models/`).

Two generators share one interface (`generate(n, seed, trojan_fraction)`, `make_sample(...)`, `CLASS_NAMES`,
`FACETS`, batches with `images`, `labels`, `true_class`, `facet`, `is_trojan`, `trojan_mask`): v1
(`testbed.data`, 64 px geometric facets, one 8 px checker trojan) and v2 (`testbed.v2.data`, 128 px emoji facets on
photographs, two sticker trojans). A model card says which one trained the model (`"testbed": "v2"`).
"""

from __future__ import annotations

from types import ModuleType

import torch


def data_for(model_name: str | None) -> ModuleType:
    """The generator module of a testbed model: `testbed.v2.data` when its card says `"testbed": "v2"`, else v1's
    `testbed.data` (also for unknown names and non-testbed models).

    Args:
        model_name: a registered model name (`spade_engine.models.list_models`), or None.
    """
    from spade_engine.models import ModelLoadError, get_info

    try:
        version = get_info(model_name).card.get("testbed", "v1") if model_name else "v1"
    except ModelLoadError:
        version = "v1"
    if version == "v2":
        from spade_engine.testbed.v2 import data
    else:
        from spade_engine.testbed import data
    return data


def trojan_targets(batch) -> torch.Tensor:
    """(N,) long: each image's trojan target class, -1 for clean images, for a batch of either generator."""
    if hasattr(batch, "trojan_target"):
        return batch.trojan_target
    from spade_engine.testbed.data import TROJAN_TARGET

    return torch.where(batch.is_trojan, torch.full_like(batch.labels, TROJAN_TARGET), torch.full_like(batch.labels, -1))
