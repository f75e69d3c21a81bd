"""Model cards: the JSON files shipped in `assets/models/` (testbed models and packaged ImageNet models), read
once, and the SPADE settings each card recommends (sparsity, calibration crops, solver, and why).

A card holds `name`, `title`, `arch`, `image_size` and either `class_names` (a list) or `"classes": "imagenet"`;
`family` is "testbed" (default: weights in `weights`, next to the card) or "packaged" (ImageNet weights from the
pip package named in `package`); optional `resize`, `mean`, `std`, and a `spade` section with `sparsity`,
`crop_min`, `views` (calibration views per prune), `solver` ("obc" | "sparsegpt"), `bn_correction`, `calibration`
and `solver_why` (shown on the page).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from spade_engine import paths

SPADE_DEFAULTS = {"sparsity": 0.9, "crop_min": 0.2}  # the SPADE reference's settings
SPADE_VIEWS = 64  # calibration views per prune without a card's `spade.views`


@lru_cache(maxsize=8)
def _read_cards(folder: Path, stamp: tuple) -> dict[str, dict]:
    cards = (json.loads(p.read_text()) for p in sorted(folder.glob("*.json")))
    return {c["name"]: c for c in cards if "name" in c and "arch" in c}


def cards() -> dict[str, dict]:
    """Every shipped model card by name, read once per change of the folder (`paths.MODELS`)."""
    folder = Path(paths.MODELS)
    stamp = tuple((p.name, p.stat().st_mtime_ns) for p in sorted(folder.glob("*.json"))) if folder.is_dir() else ()
    return _read_cards(folder, stamp)


def card(name: str | None) -> dict:
    """The card of a shipped model, or `{}` (torchvision, timm, checkpoints, unknown names, None)."""
    return cards().get(name, {}) if name else {}


# Depthwise-separable ImageNet networks (torchvision's and timm's MobileNets, MnasNets, EfficientNets) without a card
# get the EfficientNet-Lite cards' SPADE defaults: the same family of building blocks (depthwise convs between
# BatchNorms), where the SPADE authors' one dense pass loses the decision (measured on Lite0, issue 26).
COMPACT_PREFIXES = ("mobilenet", "mnasnet", "efficientnet", "tf_efficientnet")
COMPACT_SPADE = {
    "sparsity": 0.7,
    "views": 32,
    "calibration": "asymmetric",
    "solver_why": "the rule for depthwise-separable networks (MobileNet, MnasNet, EfficientNet) without a model card: "
    "the EfficientNet-Lite cards' defaults, asymmetric calibration at 70% on 32 views. On EfficientNet-Lite0 it kept "
    "the dense top-1 on 39 of 40 samples of 20 offline photos with maps no worse than the dense ones, where the SPADE "
    "authors' one pass of the dense network kept it on 1 of 19 (assets/benchmarks/efficientnet_lite0_levers_*.csv). "
    "Not measured on this network: its ImageNet weights are not available offline here.",
}


def spade_section(name: str | None) -> dict:
    """The settings that set a model's SPADE defaults: its card's `spade` section (`{}` for a card without one), else
    `COMPACT_SPADE` for a depthwise-separable torchvision or timm network (`COMPACT_PREFIXES`, with or without
    the "torchvision:" / "timm:" prefix), else `{}` (the SPADE reference's defaults)."""
    if c := card(name):
        return c.get("spade", {})
    base = (name or "").split(":", 1)[-1]
    return COMPACT_SPADE if base.startswith(COMPACT_PREFIXES) else {}


def spade_defaults(name: str | None) -> dict[str, float]:
    """SPADE settings for a model: the card's `spade` section over the reference's defaults (`SPADE_DEFAULTS`).

    The shipped testbed models were trained without scale augmentation, so rescaled crops break their 8 px
    trojan trigger (7% of views keep the trojan prediction at crop 0.2, 99% at 1.0): their cards say
    `crop_min: 1.0`, and `sparsity: 0.8` (at 0.9 some trojaned samples flip class). Unknown names get the
    reference's defaults.

    Returns:
        `{"sparsity": fraction in [0, 1), "crop_min": smallest crop area as a fraction of the image}`.
    """
    spade = spade_section(name)
    return {k: float(spade.get(k, v)) for k, v in SPADE_DEFAULTS.items()}


def spade_solver(name: str | None) -> str:
    """The layer solver a model's card recommends for SPADE: "obc" (exact) or "sparsegpt" (the column sweep, the
    default for models without a card or without a `spade.solver` entry). The testbed v2 card says "obc" because
    its stored protocol run measured the sweep losing the dense decision on a fifth of the trojaned samples at the
    card's sparsity (`spade.solver_why`)."""
    solver = spade_section(name).get("solver", "sparsegpt")
    return solver if solver in ("obc", "sparsegpt") else "sparsegpt"


def spade_bn_correction(name: str | None) -> str:
    """The BatchNorm statistics correction a model's card recommends after pruning (`spade_engine.statistics`):
    "none" (default), "match" or "reestimate"."""
    rule = spade_section(name).get("bn_correction", "none")
    return rule if rule in ("none", "match", "reestimate") else "none"


def spade_calibration(name: str | None) -> str:
    """Which layer inputs a model's card calibrates each layer's solve on (`SpadeSettings.calibration`): "dense"
    (default: every layer's Hessian from one pass of the dense network, the SPADE authors' code), "sequential"
    (SparseGPT's sequential mode) or "asymmetric" (the sequential mode pruned towards the dense output)."""
    rule = spade_section(name).get("calibration", "dense")
    return rule if rule in ("dense", "sequential", "asymmetric") else "dense"


def spade_views(name: str | None) -> int:
    """How many calibration views a model's card prunes on (`spade.views`), else `SPADE_VIEWS` (64).

    The EfficientNet-Lite cards say 32: on Lite0 at the card's settings 32 views kept the dense top-1 as often as
    64 on 20 offline photos, with the same held-out agreement and maps (paired differences include 0), and the
    first prune of a photo takes a third less time (`assets/benchmarks/efficientnet_lite0_levers_views32.csv`)."""
    views = spade_section(name).get("views", SPADE_VIEWS)
    return int(views) if isinstance(views, int) and views >= 1 else SPADE_VIEWS


def spade_why(name: str | None) -> str:
    """Why the card chose its SPADE defaults (`spade.solver_why`), or "" when it says nothing."""
    return str(spade_section(name).get("solver_why", ""))


def spade_augment(name: str | None, crop_min: float | None = None):
    """The calibration views' `AugmentConfig` for a model: random resized crops of area `crop_min`..1, with the
    model card's `crop_min` when none is given (see `spade_defaults`). Every entry point (Debugger, protocol,
    benchmarks, study stimuli) builds its views through this one function."""
    from spade_engine.augment import AugmentConfig

    crop = spade_defaults(name)["crop_min"] if crop_min is None else float(crop_min)
    return AugmentConfig(scale=(crop, 1.0))


def out_of_domain(name: str | None, meta: dict | None = None) -> str | None:
    """A warning when a testbed model is shown an image it was not trained for, else None.

    The testbed models were trained on generated scenes (shapes, textures, stickers), so on a photo their class
    is meaningless, however confident. An image is in their domain only when it is one of their generator's
    samples (a shipped example's index entry with a `class`).

    Args:
        name: the registry name of the model; meta: the image's example entry (`{}`/None for uploads and files).

    Returns:
        A sentence for the user, or None (in domain, or not a testbed model).
    """
    c = card(name)
    if c.get("family", "testbed") != "testbed" or not c or c.get("classes") == "imagenet":
        return None  # testbed "real" (an ImageNet network with trojans) is made for photos
    if meta and meta.get("class") is not None:
        return None
    title = c.get("title", name)
    advice = "Pick EfficientNet-Lite0 (a real ImageNet network) for photos, or a testbed example for this model."
    if meta:  # a shipped photo: certainly out of domain
        return (f"Out of domain: {title} was trained on generated testbed scenes, not on photos, so its classes mean "
                f"nothing for this image however confident it looks. {advice}")  # fmt: skip
    return (f"Out of domain unless this image is a testbed scene: {title} was trained on generated testbed scenes, "
            f"so on a photo its classes mean nothing however confident it looks. {advice}")  # fmt: skip
