"""The sidebar widgets and result blocks every page reuses, under one name:

    model = widgets.model_picker()            # stops the page (after an st.error) when no model is usable
    sample = widgets.sample_picker(model)     # an image as the model sees it, its hash, trojan mask if known
    settings = widgets.spade_controls("neurons")   # sparsity, views, seed, advanced options

They live by concern in `state` (values that survive page switches, kept uploads), `model_picker`,
`sample_picker`, `spade_controls` and `results` (progress, predictions, map choices, downloads); this module only
gathers them for the pages.
"""

from __future__ import annotations

from pages.ui.model_picker import CHECKPOINT, CHECKPOINT_TYPES, ModelChoice, checkpoint_normalisation, model_picker
from pages.ui.results import (
    REDUCTION_CHOICES,
    SpadeProgress,
    download_buttons,
    palette_picker,
    reduction_picker,
    show_predictions,
)
from pages.ui.sample_picker import (
    EXAMPLE,
    IMAGE_TYPES,
    UPLOAD,
    Sample,
    demo_note,
    example_label,
    make_sample,
    sample_caption,
    sample_picker,
    to_uint8,
)
from pages.ui.spade_controls import N_AUG_CHOICES, SOLVERS, SpadeSettings, calibration_crop, spade_controls
from pages.ui.state import drop_upload, kept_upload, persisted

__all__ = [
    "CHECKPOINT", "CHECKPOINT_TYPES", "EXAMPLE", "IMAGE_TYPES", "N_AUG_CHOICES", "REDUCTION_CHOICES", "SOLVERS",
    "UPLOAD", "ModelChoice", "Sample", "SpadeProgress", "SpadeSettings", "calibration_crop",
    "checkpoint_normalisation", "demo_note", "download_buttons", "drop_upload", "example_label", "kept_upload", "make_sample",
    "model_picker", "palette_picker", "persisted", "reduction_picker", "sample_caption", "sample_picker",
    "show_predictions", "spade_controls", "to_uint8",
]  # fmt: skip
