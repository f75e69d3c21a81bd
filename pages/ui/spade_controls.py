"""The sidebar SPADE controls: sparsity (uniform or a stored profile), views, seed, solver, as the engine's one
settings type (`spade_engine.settings.SpadeSettings`, also what `spade explain` parses).

    settings = spade_controls(keys.DEBUGGER, model_name=model.loaded.info.name)
    config = settings.prune_config(cache.sparsity_profiles())   # the engine's PruneConfig

Defaults come from the model card through `SpadeSettings().resolved(model_name)`, as for `spade explain`; profiles
are read through `cache.sparsity_profiles` (the JSON files once a minute, not at every page run).
"""

from __future__ import annotations

import streamlit as st

from pages.ui import cache, keys
from pages.ui.state import persisted
from spade_engine import models
from spade_engine.settings import SpadeSettings

N_AUG_CHOICES = [8, 16, 32, 64, 128, 256, 512, 1024]
SOLVERS = {"sparsegpt": "SparseGPT sweep (FastSPADE)", "obc": "Exact OBC (SPADE; slower, exact up to {limit} columns)",
           "magnitude": "Magnitude (baseline, no OBS update)"}  # fmt: skip


BN_CORRECTIONS = {"none": "None (BatchNorms as trained)", "match": "Match the dense statistics",
                  "reestimate": "Re-estimate on the views (OBC)"}  # fmt: skip
BN_HELP = ("Pruning shifts what each BatchNorm sees. 'Match' moves each BatchNorm's mean and scale so the pruned "
           "network's normalised activations on the calibration views have the dense network's mean and spread: "
           "the same connections, re-fitted per-channel biases and gains (like the OBS weight update). "
           "'Re-estimate' normalises to the pruned activations' own statistics on this sample's views.")  # fmt: skip
CALIBRATIONS = {"dense": "Dense network's (one pass)", "sequential": "Pruned prefix's (sequential)",
                "asymmetric": "Pruned prefix's, towards the dense output"}  # fmt: skip
CALIBRATION_PHRASES = {"sequential": "sequential calibration", "asymmetric": "asymmetric calibration"}
CALIBRATION_HELP = ("Which inputs each layer is pruned on. 'Dense': every layer's inputs from one pass of the dense "
                    "network (the SPADE authors' code; fastest). 'Sequential': the inputs the already-pruned layers "
                    "give (SparseGPT). 'Towards the dense output': the same inputs, but each layer's kept weights "
                    "are re-fitted so its output matches the dense network's, repairing the earlier layers' error "
                    "(GPTAQ); one extra pass of the views per setting. All three keep a sub-network of the "
                    "original's connections; only the kept weights' values differ.")  # fmt: skip


def solver_label(solver: str) -> str:
    """A solver's name in the picker (the exact solver's column limit as configured now)."""
    from spade_engine.pruning.obc import exact_columns_limit

    return SOLVERS[solver].format(limit=exact_columns_limit())


def calibration_crop(model_name: str | None) -> float:
    """Default smallest crop of the calibration views: the card's, else the SPADE reference's 0.2."""
    return SpadeSettings().resolved(model_name).crop_min


def spade_controls(prefix: str = keys.DEBUGGER, default_sparsity: int | None = None, default_n_aug: int | None = None,
                   model_name: str | None = None, profiles: bool = True) -> SpadeSettings:  # fmt: skip
    """Sidebar SPADE controls: sparsity slider (0–99 %), number of augmented views, seed; advanced options.

    Args:
        prefix: session-state namespace of the calling page (`keys.DEBUGGER`…), so pages keep their own values.
        default_sparsity: initial slider value in percent; default: the model card's, else 90 (the reference's).
        default_n_aug: initial number of views; default: the model card's (`models.spade_views`), else 64.
        model_name: the model's registry name: sets the default smallest crop (`calibration_crop`) and, with
            `profiles`, offers the sparsity profiles (assets/profiles) made for this model.
        profiles: offer the sparsity profiles.

    Returns:
        The settings, resolved (every field set); `methods` and `reduction` are the defaults (the page's saliency
        choices are its own widgets).
    """
    side, k = st.sidebar, lambda name: keys.scoped(prefix, name)
    card = SpadeSettings().resolved(model_name)  # the model card's defaults, as `spade explain` resolves them
    if default_sparsity is None:
        default_sparsity = round(100 * card.sparsity)
    if default_n_aug is None:
        default_n_aug = card.n_aug
    side.subheader("SPADE")
    sparsity = persisted(side.slider, k(keys.SPARSITY), default_sparsity, "Sparsity per layer (%)", 0, 99, step=1,
                          help="Fraction of each pruned layer's weights removed for this sample.")  # fmt: skip
    n_aug = persisted(side.select_slider, k(keys.N_AUG), default_n_aug, "Augmented views", N_AUG_CHOICES,
                       valid=lambda v: v in N_AUG_CHOICES, help="Calibration batch: random crops, flips and colour jitter of the "
                       f"sample. Default: the model card's ({card.n_aug}; the reason is under Advanced when it differs "
                       f"from the SPADE reference's {models.SPADE_VIEWS}).")  # fmt: skip
    seed = persisted(side.number_input, k(keys.SEED), 0, "Seed", min_value=0, max_value=2**31 - 1, step=1)
    with side.expander("Advanced"):
        crop_min = persisted(st.slider, k(f"{keys.CROP_MIN}.{model_name}"), card.crop_min,
                             "Smallest crop (share of the image)", 0.05, 1.0,
                             step=0.05, help="Calibration views are random crops of at least this area. Larger "
                             "crops keep small evidence (a trojan patch) in every view.")  # fmt: skip
        skip_first = persisted(st.checkbox, k(keys.SKIP_FIRST), True, "Keep the first conv dense")
        skip_head = persisted(st.checkbox, k(keys.SKIP_HEAD), False, "Keep the classifier head dense")
        damp = persisted(st.number_input, k(keys.DAMP), 0.01, "Dampening (fraction of mean diag H)",
                          min_value=1e-4, max_value=1.0, step=0.005, format="%.4f")  # fmt: skip
        card_solver = card.solver
        solver = persisted(st.selectbox, k(f"{keys.SOLVER}.{model_name}"), card_solver, "Layer solver",
                           options=list(SOLVERS), valid=lambda v: v in SOLVERS, format_func=solver_label,
                           help="Default: the model card's recommendation.")  # fmt: skip
        bn_correction = persisted(st.selectbox, k(f"{keys.BN_CORRECTION}.{model_name}"), card.bn_correction,
                                  "BatchNorm statistics after pruning", options=list(BN_CORRECTIONS),
                                  valid=lambda v: v in BN_CORRECTIONS, format_func=BN_CORRECTIONS.get,
                                  help=BN_HELP)  # fmt: skip
        calibration = persisted(st.selectbox, k(f"{keys.CALIBRATION}.{model_name}"), card.calibration,
                                "Layer inputs (calibration)", options=list(CALIBRATIONS),
                                valid=lambda v: v in CALIBRATIONS, format_func=CALIBRATIONS.get,
                                help=CALIBRATION_HELP)  # fmt: skip
        if card_solver != "sparsegpt" or card.bn_correction != "none" or card.calibration != "dense":
            why = models.spade_why(model_name)
            extras = [CALIBRATION_PHRASES[card.calibration]] if card.calibration in CALIBRATION_PHRASES else []
            extras += [BN_CORRECTIONS[card.bn_correction].lower()] if card.bn_correction != "none" else []
            family = models.spade_section(model_name) is models.COMPACT_SPADE  # the rule, not a card
            source = "The default for this family" if family else "The model card"
            st.caption(f"{source} recommends **{solver_label(card_solver)}**"
                       + "".join(f" with **{e}**" for e in extras[:1]) + "".join(f" and **{e}**" for e in extras[1:])
                       + (f": {why}" if why else "."))  # fmt: skip
        profile = ""
        if model_name is not None and profiles:
            names = ["", *(n for n, p in cache.sparsity_profiles().items() if p.model in ("", model_name))]
            profile = persisted(st.selectbox, k(keys.PROFILE), "", "Sparsity profile", options=names,
                                valid=lambda v: v in names, format_func=lambda n: n or "uniform (the slider)",
                                help="Per-block sparsities from assets/profiles; overrides the slider.")  # fmt: skip
    return SpadeSettings(sparsity=sparsity / 100, n_aug=int(n_aug), seed=int(seed), crop_min=float(crop_min),
                         skip_first=bool(skip_first), skip_head=bool(skip_head), damp=float(damp), solver=str(solver),
                         profile=str(profile), bn_correction=str(bn_correction),
                         calibration=str(calibration))  # fmt: skip
