"""Session-state keys, one constant per key, namespaced per page (`"debugger.sparsity"`).

Keys under `shared.` belong to widgets every page reuses (model and sample pickers): their values survive
page switches. Widget keys get the `WIDGET` prefix; `state.persisted` mirrors their values into the plain key.
"""

from __future__ import annotations

WIDGET = "_w."  # prefix of a widget's own key; the un-prefixed key holds the value that survives navigation

# ---- shared sidebar widgets (pages/ui/model_picker.py, sample_picker.py)
MODEL = "shared.model"
CKPT_FILE = "shared.checkpoint.file"
CKPT_ARCH = "shared.checkpoint.arch"
CKPT_CLASSES = "shared.checkpoint.class_names"
CKPT_SIZE = "shared.checkpoint.input_size"
CKPT_MEAN = "shared.checkpoint.mean"
CKPT_STD = "shared.checkpoint.std"
SAMPLE_SOURCE = "shared.sample.source"
SAMPLE_EXAMPLE = "shared.sample.example"
SAMPLE_UPLOAD = "shared.sample.upload"
SAMPLE_RULE = "shared.sample.rule"  # (file, why): the rule that picked a real network's default photo

# ---- SPADE controls (reused by pages that prune; `prefix` in spade_controls.spade_controls)
SPARSITY = "sparsity"
N_AUG = "n_aug"
SEED = "seed"
SKIP_FIRST = "skip_first"
SKIP_HEAD = "skip_head"
DAMP = "damp"
SOLVER = "solver"
CROP_MIN = "crop_min"
PROFILE = "profile"
BN_CORRECTION = "bn_correction"

# ---- debugger page (pages/1_Debugger.py)
DEBUGGER = "debugger"
DEBUGGER_METHODS = "debugger.methods"
DEBUGGER_TARGET = "debugger.target"
DEBUGGER_REDUCTION = "debugger.reduction"
DEBUGGER_PALETTE = "debugger.palette"


def scoped(prefix: str, name: str) -> str:
    """`scoped("debugger", SPARSITY)` -> `"debugger.sparsity"`."""
    return f"{prefix}.{name}"
