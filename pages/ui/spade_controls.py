"""The sidebar SPADE controls and what they say: sparsity (uniform or a stored profile), views, seed, solver.

    settings = spade_controls(keys.DEBUGGER, model_name=model.loaded.info.name)
    config = settings.prune_config()   # the engine's PruneConfig

Defaults come from the model card (`models.spade_defaults`); profiles are read through `cache.sparsity_profiles`
(the JSON files once a minute, not at every page run).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import streamlit as st

from pages.ui import cache, keys
from pages.ui.state import persisted
from spade_engine import models

N_AUG_CHOICES = [8, 16, 32, 64, 128, 256, 512, 1024]
SOLVERS = {"sparsegpt": "SparseGPT sweep (FastSPADE)", "obc": "Exact OBC (SPADE; slower, exact up to {limit} columns)",
           "magnitude": "Magnitude (baseline, no OBS update)"}  # fmt: skip


def solver_label(solver: str) -> str:
    """A solver's name in the picker (the exact solver's column limit as configured now)."""
    from spade_engine.pruning.obc import exact_columns_limit

    return SOLVERS[solver].format(limit=exact_columns_limit())


@dataclass(frozen=True)
class SpadeSettings:
    """What the SPADE controls say; `prune_config()` turns it into the engine's `PruneConfig`."""

    sparsity: float
    n_aug: int
    seed: int
    skip_first: bool = True
    skip_head: bool = False
    damp: float = 0.01
    solver: str = "sparsegpt"
    profile: str = ""  # a sparsity profile's name (assets/profiles); "" = the slider's uniform sparsity
    crop_min: float = 0.2  # smallest random crop, as a share of the image area (the reference's 0.2)

    def augment_config(self):
        """The calibration views' `AugmentConfig` (random crops of at least `crop_min` of the area)."""
        from spade_engine.augment import AugmentConfig

        return AugmentConfig(scale=(self.crop_min, 1.0))

    def prune_config(self):
        """The engine's `PruneConfig`: the profile's per-block sparsities (with these advanced options), or the
        slider's uniform sparsity.

        Raises:
            ValueError: the named profile is not in assets/profiles (the picker offers only those that are).
        """
        from spade_engine.engine import PruneConfig

        if self.profile:
            profile = cache.sparsity_profiles().get(self.profile)
            if profile is None:
                raise ValueError(f"The sparsity profile {self.profile!r} is no longer in assets/profiles.")
            return replace(profile.config, skip_first=self.skip_first, skip_head=self.skip_head, damp=self.damp,
                           solver=self.solver)  # fmt: skip
        return PruneConfig(sparsity=self.sparsity, skip_first=self.skip_first, skip_head=self.skip_head,
                           damp=self.damp, solver=self.solver)  # fmt: skip

    @property
    def label(self) -> str:
        """Short name of the pruned network for titles: "SPADE 90%" or "SPADE <profile>"."""
        return f"SPADE {self.profile}" if self.profile else f"SPADE {self.sparsity:.0%}"

    @property
    def prune_key(self) -> tuple:
        """Everything the pruned network depends on besides the model, sample, views and seed."""
        sparsity = self.profile or round(self.sparsity, 4)
        return (sparsity, self.skip_first, self.skip_head, round(self.damp, 6), self.solver, round(self.crop_min, 3))


def calibration_crop(model_name: str | None) -> float:
    """Default smallest crop of the calibration views: the card's, else the SPADE reference's 0.2."""
    return models.spade_defaults(model_name)["crop_min"]


def spade_controls(prefix: str = keys.DEBUGGER, default_sparsity: int | None = None, default_n_aug: int = 64,
                   model_name: str | None = None, profiles: bool = True) -> SpadeSettings:  # fmt: skip
    """Sidebar SPADE controls: sparsity slider (0–99 %), number of augmented views, seed; advanced options.

    Args:
        prefix: session-state namespace of the calling page (`keys.DEBUGGER`…), so pages keep their own values.
        default_sparsity: initial slider value in percent; default: the model card's, else 90 (the reference's).
        default_n_aug: initial number of views.
        model_name: the model's registry name: sets the default smallest crop (`calibration_crop`) and, with
            `profiles`, offers the sparsity profiles (assets/profiles) made for this model.
        profiles: offer the sparsity profiles.

    Returns:
        The settings.
    """
    side, k = st.sidebar, lambda name: keys.scoped(prefix, name)
    if default_sparsity is None:
        default_sparsity = round(100 * models.spade_defaults(model_name)["sparsity"])
    side.subheader("SPADE")
    sparsity = persisted(side.slider, k(keys.SPARSITY), default_sparsity, "Sparsity per layer (%)", 0, 99, step=1,
                          help="Fraction of each pruned layer's weights removed for this sample.")  # fmt: skip
    n_aug = persisted(side.select_slider, k(keys.N_AUG), default_n_aug, "Augmented views", N_AUG_CHOICES,
                       valid=lambda v: v in N_AUG_CHOICES, help="Calibration batch: random crops, flips and colour jitter of the sample.")  # fmt: skip
    seed = persisted(side.number_input, k(keys.SEED), 0, "Seed", min_value=0, max_value=2**31 - 1, step=1)
    with side.expander("Advanced"):
        crop_min = persisted(st.slider, k(f"{keys.CROP_MIN}.{model_name}"), calibration_crop(model_name),
                             "Smallest crop (share of the image)", 0.05, 1.0,
                             step=0.05, help="Calibration views are random crops of at least this area. Larger "
                             "crops keep small evidence (a trojan patch) in every view.")  # fmt: skip
        skip_first = persisted(st.checkbox, k(keys.SKIP_FIRST), True, "Keep the first conv dense")
        skip_head = persisted(st.checkbox, k(keys.SKIP_HEAD), False, "Keep the classifier head dense")
        damp = persisted(st.number_input, k(keys.DAMP), 0.01, "Dampening (fraction of mean diag H)",
                          min_value=1e-4, max_value=1.0, step=0.005, format="%.4f")  # fmt: skip
        card_solver = models.spade_solver(model_name)
        solver = persisted(st.selectbox, k(f"{keys.SOLVER}.{model_name}"), card_solver, "Layer solver",
                           options=list(SOLVERS), valid=lambda v: v in SOLVERS, format_func=solver_label,
                           help="Default: the model card's recommendation.")  # fmt: skip
        if card_solver != "sparsegpt":
            why = models.get_info(model_name).card["spade"].get("solver_why")
            st.caption(f"The model card recommends **{solver_label(card_solver)}**" + (f": {why}." if why else "."))
        profile = ""
        if model_name is not None and profiles:
            names = ["", *(n for n, p in cache.sparsity_profiles().items() if p.model in ("", model_name))]
            profile = persisted(st.selectbox, k(keys.PROFILE), "", "Sparsity profile", options=names,
                                valid=lambda v: v in names, format_func=lambda n: n or "uniform (the slider)",
                                help="Per-block sparsities from assets/profiles; overrides the slider.")  # fmt: skip
    return SpadeSettings(sparsity / 100, int(n_aug), int(seed), bool(skip_first), bool(skip_head), float(damp),
                         str(solver), str(profile), float(crop_min))  # fmt: skip
