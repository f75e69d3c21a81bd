"""The dense-vs-SPADE comparison: each saliency method on the dense and on the SPADE-pruned network, one export
schema for the numbers.

    comparison = compare_maps(model, pruned, x, target, ["Saliency", "GradCAM"], mask=trojan_mask)
    comparison.pairs     # MapPair per method that explained both networks (same target, same reduction)
    comparison.refused   # Refusal per method that cannot explain this model, with the sentence for the user
    rows = export_rows("cat.png", "000_cat", class_names, result, target, comparison)   # EXPORT_FIELDS

The Debugger page (through its cached `attribute`) and `spade explain` both call `compare_maps`, so a map, a
refusal and a CSV row mean the same in both (SPADE: arXiv 2310.04519).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from spade_engine.colours import DEFAULT_PALETTE, palette_maps, shared_vmax

# (method name, network, "dense" | "spade", x (1, 3, H, W), target, reduction) -> (H, W) map
Attribute = Callable[[str, nn.Module, str, torch.Tensor, int, "str | None"], np.ndarray]
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class MapPair:
    """One saliency method's dense and SPADE maps (H, W) with their trojan AUCs (None when unknown)."""

    method: str
    dense: np.ndarray
    spade: np.ndarray
    dense_auc: float | None = None
    spade_auc: float | None = None
    reduction: str = "absolute"  # "signed": a diverging colour scale symmetric around 0
    palette: str = DEFAULT_PALETTE  # a key of `spade_engine.colours.PALETTES`

    @property
    def signed(self) -> bool:
        return self.reduction == "signed"

    @property
    def cmap(self) -> str:
        """The matplotlib colour map of this pair: the palette's diverging map when signed, else its sequential."""
        return palette_maps(self.palette)[int(self.signed)]

    @property
    def vmax(self) -> float:
        """The pair's one colour-scale top (`colours.shared_vmax`; of |values| when signed)."""
        return shared_vmax(self.dense, self.spade, signed=self.signed)


@dataclass(frozen=True)
class Refusal:
    """A method with no maps for this model: `message` says why, for the user. `failed` False: the method
    cannot explain this model faithfully (a layer type it has no rule for, a failed conservation check); True:
    it raised (e.g. on a TorchScript model)."""

    method: str
    message: str
    failed: bool = False


@dataclass(frozen=True)
class Comparison:
    """`compare_maps`' answer: the pairs and the refusals, each in the order of the methods asked for."""

    pairs: tuple[MapPair, ...]
    refused: tuple[Refusal, ...]

    @property
    def maps(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """method -> (dense map, SPADE map), each (H, W) float32."""
        return {p.method: (p.dense, p.spade) for p in self.pairs}

    @property
    def errors(self) -> dict[str, str]:
        """method -> why it has no maps."""
        return {r.method: r.message for r in self.refused}


def _attribute(name: str, net: nn.Module, variant: str, x: torch.Tensor, target: int, reduction) -> np.ndarray:
    from spade_engine.saliency import attribute

    return attribute(name, net, x, target, reduction)


def compare_maps(
    dense: nn.Module,
    pruned: nn.Module,
    x: torch.Tensor,
    target: int,
    methods: Sequence[str],
    reduction: str | None = None,
    layer: str | None = None,
    mask: np.ndarray | None = None,
    attribute: Attribute | None = None,
    progress: Progress | None = None,
) -> Comparison:
    """Each method's map for class `target` on the dense and on the pruned network.

    A method `saliency.unsupported_methods` refuses for this model is not run; one that raises
    `UnsupportedModelError` (a failed conservation / completeness check) is refused; one that raises anything
    else is reported as failed, and the other methods still run.

    Args:
        dense, pruned: the networks (never modified); x: (1, 3, H, W) in [0, 1] on their device.
        target: the class to explain; methods: keys of `saliency.METHODS`.
        reduction: "absolute" / "signed" for every map; None: each method's own (`resolve_reduction`).
        layer: the layer of the layer methods (GradCAM…); None: their default.
        mask: (H, W) bool trojan patch: each map's ROC AUC against it (None without a mask, or when the mask is
            empty or everything).
        attribute: computes one map (default `saliency.attribute`); the Debugger passes its cached one.
        progress: `progress("saliency", done, total)`.

    Returns:
        The pairs (float32 maps, reduction resolved) and the refusals.
    """
    from spade_engine.saliency import UnsupportedModelError, unsupported_methods, with_layer
    from spade_engine.saliency.registry import resolve_reduction

    attribute = attribute or _attribute
    unsupported = unsupported_methods(dense, list(methods))
    pairs, refused = [], []
    for i, method in enumerate(methods):
        if progress:
            progress("saliency", i, len(methods))
        if method in unsupported:
            refused.append(Refusal(method, unsupported[method]))
            continue
        name = with_layer(method, layer)
        try:
            dense_map, spade_map = (np.asarray(attribute(name, net, variant, x, int(target), reduction), np.float32)
                                    for net, variant in ((dense, "dense"), (pruned, "spade")))  # fmt: skip
        except UnsupportedModelError as e:
            refused.append(Refusal(method, str(e)))
            continue
        except Exception as e:  # a method may not support this model (e.g. TorchScript): say so, keep the others
            refused.append(Refusal(method, f"{method} failed on this model: {type(e).__name__}: {e}", failed=True))
            continue
        aucs = _trojan_auc(dense_map, mask), _trojan_auc(spade_map, mask)
        pairs.append(MapPair(method, dense_map, spade_map, *aucs, resolve_reduction(method, reduction)))
    if progress:
        progress("saliency", len(methods), len(methods))
    return Comparison(tuple(pairs), tuple(refused))


def _trojan_auc(saliency_map: np.ndarray, mask: np.ndarray | None) -> float | None:
    from spade_engine.metrics import trojan_auc

    if mask is None or not mask.any() or mask.all():
        return None
    return float(trojan_auc(saliency_map, mask))


# ------------------------------------------------------------------------------------------- export

EXPORT_FIELDS = ["file", "id", "method", "target", "dense_class", "dense_prob", "spade_class", "spade_prob",
                 "agrees", "view_agreement", "sparsity", "mean_layer_error", "map_spearman", "dense_trojan_auc",
                 "spade_trojan_auc", "error"]  # fmt: skip


def export_rows(
    file: str,
    image_id: str,
    class_names: Sequence[str],
    result,
    target: int,
    comparison: Comparison,
    methods: Sequence[str] | None = None,
) -> list[dict]:
    """One export row per method of one image (`EXPORT_FIELDS`): the Debugger's CSV download and `spade
    explain`'s results.csv.

    Args:
        file, image_id: the image's path (or name) and id.
        class_names: the model's; result: the engine's `PruneResult`; target: the class the maps explain.
        comparison: `compare_maps`' answer; methods: the rows' order (default: pairs, then refusals).

    Returns:
        Dicts with top-1 class and probability (dense, SPADE), whether they agree, view agreement, reached
        sparsity (mean over pruned layers), mean relative reconstruction error, the Spearman rank correlation of
        the dense and SPADE maps (1: same ranking of pixels; NaN without maps), both trojan AUCs (empty when
        unknown) and the refusal's message ("" when the method has maps).
    """
    from scipy.stats import spearmanr

    (dc, dp), (sc, sp) = result.dense_top5[0], result.pruned_top5[0]
    errors = list(result.layer_error.values())
    base = {"file": file, "id": image_id, "target": class_name(class_names, target),
            "dense_class": class_name(class_names, dc), "dense_prob": dp, "spade_class": class_name(class_names, sc),
            "spade_prob": sp, "agrees": result.agrees, "view_agreement": result.view_agreement,
            "sparsity": result.total_sparsity, "mean_layer_error": float(np.mean(errors)) if errors else float("nan")}  # fmt: skip
    pairs, refused = {p.method: p for p in comparison.pairs}, comparison.errors
    rows = []
    for method in methods if methods is not None else [*pairs, *refused]:
        if method in pairs:
            p = pairs[method]
            constant = np.ptp(p.dense) == 0 or np.ptp(p.spade) == 0  # no ranking: no correlation
            rho = float("nan") if constant else float(spearmanr(p.dense.ravel(), p.spade.ravel()).statistic)
            rows.append({**base, "method": method, "map_spearman": rho, "dense_trojan_auc": p.dense_auc,
                         "spade_trojan_auc": p.spade_auc, "error": ""})  # fmt: skip
        else:
            rows.append({**base, "method": method, "map_spearman": float("nan"), "dense_trojan_auc": None,
                         "spade_trojan_auc": None, "error": refused.get(method, "")})  # fmt: skip
    return rows


def export_csv(rows: Sequence[dict]) -> str:
    """Rows of `export_rows` as CSV text with the `EXPORT_FIELDS` header (None written as an empty cell)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, EXPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if row.get(k) is None else row[k] for k in EXPORT_FIELDS} for row in rows)
    return out.getvalue()


def class_name(class_names: Sequence[str], index: int) -> str:
    """The name of class `index`, or "class <index>" outside the model's names."""
    return class_names[index] if 0 <= index < len(class_names) else f"class {index}"
