"""What one protocol run measures: the run's settings (`ProtocolConfig`), extra SPADE columns (`Variant`), the
paper's columns and the fields of a result row."""

from __future__ import annotations

from dataclasses import dataclass

from spade_engine.engine import PruneConfig
from spade_engine.models import spade_defaults, spade_views
from spade_engine.saliency import METHODS

# How every map is computed (stored in each run's settings JSON).
ATTRIBUTION = (
    "at the normalised input (zero baseline = the mean colour), maps Σ_c |A_c| except LRP's signed Σ_c A_c "
    "(as the SPADE authors)"
)
COLUMNS = ("Dense", "SPADE-exact", "SPADE-sweep", "SPADE-tuned", "Sparse FC")  # the paper's networks, in table order
# Every row's fields, in the order the stored CSVs have them (a trojan row leaves insertion/deletion empty).
ROW_FIELDS = ("kind", "sample", "method", "column", "agrees", "seconds", "auc", "pointing", "rank_acc",
              "insertion", "deletion")  # fmt: skip
# What each kind of sample measures ("insertion" samples are the clean ones: insertion and deletion AUC).
KIND_METRICS = {"trojan": ("auc", "pointing", "rank_acc"), "insertion": ("insertion", "deletion")}


@dataclass(frozen=True)
class ProtocolConfig:
    """One run of the protocol. `exact_samples` caps the samples of the (slow) exact-OBC column."""

    model: str = "testbed_resnet"
    trojan_samples: int = 100
    clean_samples: int = 100
    sparsity: float | None = None  # None: the model card's (`models.spade_defaults`)
    n_aug: int | None = None  # calibration views per sample; None: the model card's (`models.spade_views`)
    crop_min: float | None = None  # smallest calibration crop; None: the model card's
    methods: tuple[str, ...] = tuple(METHODS)
    columns: tuple[str, ...] = COLUMNS
    exact_samples: int | None = None
    tuned_profile: str | None = None  # path of a profile JSON; default: assets/profiles/<model>-tuned.json
    sparse_fc_features: float = 10.0  # features-per-class budget of the sparse decision layer
    seed: int = 1000  # evaluation images are generated from this seed (tuning uses others)
    steps: int = 32
    device: str = "cpu"
    metrics: tuple[str, ...] = ("trojan", "insertion")
    variants: tuple[Variant, ...] = ()  # extra SPADE columns (ablations), after `columns`

    @property
    def views(self) -> int:
        """Calibration views per sample: the configured number, else the model card's (64 unless it says)."""
        return spade_views(self.model) if self.n_aug is None else int(self.n_aug)

    def spade_settings(self) -> tuple[float, float]:
        """(sparsity, crop_min) of this run: the configured ones, else the model card's."""
        card = spade_defaults(self.model)
        return (
            card["sparsity"] if self.sparsity is None else self.sparsity,
            card["crop_min"] if self.crop_min is None else self.crop_min,
        )


@dataclass(frozen=True)
class Variant:
    """An extra SPADE column: its name, how it prunes and the smallest crop of its calibration views."""

    name: str
    prune: PruneConfig
    crop_min: float | None = None  # None: the run's
