"""The one user-facing settings type: what the Debugger's sidebar says and what `spade explain` parses.

    settings = SpadeSettings(seed=3).resolved("testbed_resnet")   # the card's sparsity, views, crop and solver
    config = settings.prune_config()                                # the engine's `PruneConfig`

Fields left None mean "the model card's" (`models.spade_defaults`, `models.spade_views`, `models.spade_solver`);
`resolved(name)` fills
them in, the one way every entry point gets its defaults (the Debugger's widgets start from it, `spade explain`
resolves its options with it), so both use the same sparsity, crop and layer solver for the same model. The
command-line spelling lives here too (`add_arguments`, `from_args`, `argv`), so the parser, the parsed settings
and the command line the Debugger shows cannot drift apart.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, replace

from spade_engine.saliency.registry import METHODS

DEFAULT_METHODS: tuple[str, ...] = tuple(list(METHODS)[:2])  # the Debugger's default selection
SOLVERS: tuple[str, ...] = ("sparsegpt", "obc", "magnitude")
REDUCTIONS: tuple[str, ...] = ("absolute", "signed")
BN_CORRECTIONS: tuple[str, ...] = ("none", "match", "reestimate")  # `spade_engine.statistics.RULES`
CALIBRATIONS: tuple[str, ...] = ("dense", "sequential", "asymmetric")  # `PruneConfig.sequential` / `.asymmetric`
DEFAULT_DAMP = 0.01


@dataclass(frozen=True)
class SpadeSettings:
    """SPADE's and the saliency maps' settings for one model (arXiv 2310.04519).

    Attributes:
        sparsity: per-layer sparsity in [0, 1); None: the model card's.
        n_aug: calibration views (random crops, flips and colour jitter of the sample); None: the model card's
            (`models.spade_views`: 64 unless the card says otherwise).
        seed: the views' seed.
        crop_min: smallest random crop, as a share of the image area; None: the model card's.
        methods: saliency methods (keys of `saliency.METHODS`).
        reduction: channel reduction of every map, "absolute" or "signed"; None: each method's own.
        skip_first, skip_head: keep the first conv / the classifier head dense.
        damp: dampening, fraction of the mean Hessian diagonal.
        solver: layer solver ("sparsegpt", "obc", "magnitude"); None: the model card's.
        profile: a sparsity profile's name (assets/profiles) that replaces the uniform sparsity; "" for none.
        bn_correction: BatchNorm statistics after pruning ("none", "match", "reestimate";
            `spade_engine.statistics`); None: the model card's.
        calibration: the inputs each layer's solve is calibrated on: "dense" (one pass of the dense network, the
            SPADE authors' code), "sequential" (the pruned prefix's, SparseGPT's sequential mode) or "asymmetric"
            (the pruned prefix's, pruned towards the dense output; `pruning.asymmetric`); None: the model card's.
    """

    sparsity: float | None = None
    n_aug: int | None = None
    seed: int = 0
    crop_min: float | None = None
    methods: tuple[str, ...] = DEFAULT_METHODS
    reduction: str | None = None
    skip_first: bool = True
    skip_head: bool = False
    damp: float = DEFAULT_DAMP
    solver: str | None = None
    profile: str = ""
    bn_correction: str | None = None
    calibration: str | None = None

    # ------------------------------------------------------------------------------------ defaults

    def resolved(self, model_name: str | None) -> SpadeSettings:
        """These settings with every None filled in from the model's card (the reference's defaults for a model
        without one: sparsity 0.9, 64 views, crop 0.2, the "sparsegpt" solver)."""
        from spade_engine.models import (
            spade_bn_correction,
            spade_calibration,
            spade_defaults,
            spade_solver,
            spade_views,
        )

        card = spade_defaults(model_name)
        return replace(
            self,
            sparsity=card["sparsity"] if self.sparsity is None else float(self.sparsity),
            n_aug=spade_views(model_name) if self.n_aug is None else int(self.n_aug),
            crop_min=card["crop_min"] if self.crop_min is None else float(self.crop_min),
            solver=spade_solver(model_name) if self.solver is None else self.solver,
            bn_correction=spade_bn_correction(model_name) if self.bn_correction is None else self.bn_correction,
            calibration=spade_calibration(model_name) if self.calibration is None else self.calibration,
        )

    # ------------------------------------------------------------------------------------- engine

    def prune_config(self, profiles: Mapping | None = None):
        """The engine's `PruneConfig`: the profile's per-layer targets with these options on top, or the uniform
        sparsity.

        Args:
            profiles: {name: `profiles.SparsityProfile`} to look the profile up in (the Debugger passes its
                cached copy); default: read assets/profiles now.

        Raises:
            ValueError: an unknown profile name, or settings not `resolved` (sparsity or solver None).
        """
        from spade_engine.engine import PruneConfig

        if self.solver is None or (self.sparsity is None and not self.profile):
            raise ValueError("SpadeSettings.prune_config needs resolved settings: call .resolved(model_name) first.")
        options = dict(skip_first=self.skip_first, skip_head=self.skip_head, damp=self.damp, solver=self.solver,
                       bn_correction=self.bn_correction or "none", sequential=self.calibration == "sequential",
                       asymmetric=self.calibration == "asymmetric")  # fmt: skip
        if self.profile:
            return replace(self._profile(profiles).config, **options)
        return PruneConfig(sparsity=float(self.sparsity), **options)

    def _profile(self, profiles: Mapping | None):
        if profiles is None:
            from spade_engine.profiles import list_profiles

            profiles = {p.name: p for p in list_profiles()}
        if self.profile not in profiles:
            raise ValueError(f"The sparsity profile {self.profile!r} is not in assets/profiles.")
        return profiles[self.profile]

    def augment_config(self):
        """The calibration views' `AugmentConfig`: random crops of at least `crop_min` of the area (resolved)."""
        from spade_engine.augment import AugmentConfig

        if self.crop_min is None:
            raise ValueError("SpadeSettings.augment_config needs resolved settings: call .resolved(model_name).")
        return AugmentConfig(scale=(float(self.crop_min), 1.0))

    # --------------------------------------------------------------------------------------- words

    @property
    def label(self) -> str:
        """The pruned network's name in titles: "SPADE 90%" or "SPADE <profile>"."""
        return f"SPADE {self.profile}" if self.profile else f"SPADE {self.sparsity:.0%}"

    @property
    def prune_key(self) -> tuple:
        """Everything the pruned network depends on besides the model, sample, views and seed (a cache key)."""
        sparsity = self.profile or round(self.sparsity, 4)
        crop = None if self.crop_min is None else round(self.crop_min, 3)
        return (sparsity, self.skip_first, self.skip_head, round(self.damp, 6), self.solver, crop, self.bn_correction,
                self.calibration)  # fmt: skip

    # -------------------------------------------------------------------------------- command line

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Add the settings' options (`--sparsity`, `--n-aug`, ... `--profile`) to a parser; None defaults mean
        the model card's."""
        p = parser
        p.add_argument(
            "--sparsity", type=float, default=None, help="per-layer sparsity in [0, 1) (default: the card's)"
        )
        p.add_argument("--n-aug", type=int, default=None, help="calibration views (default: the card's, else 64)")
        p.add_argument("--seed", type=int, default=0, help="calibration views' seed")
        p.add_argument("--crop-min", type=float, default=None, help="smallest calibration crop (default: the card's)")
        p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=list(METHODS), metavar="METHOD",
                       help=f"saliency methods (default: {' '.join(DEFAULT_METHODS)}; any of {', '.join(METHODS)})")  # fmt: skip
        p.add_argument("--reduction", choices=list(REDUCTIONS), default=None,
                       help="channel reduction of every map (default: each method's own)")  # fmt: skip
        p.add_argument("--prune-first-conv", action="store_true", help="prune the first conv too (default: kept dense)")
        p.add_argument("--skip-head", action="store_true", help="keep the classifier head dense")
        p.add_argument(
            "--damp", type=float, default=DEFAULT_DAMP, help="dampening, fraction of the mean Hessian diagonal"
        )
        p.add_argument("--solver", default=None, choices=list(SOLVERS), help="layer solver (default: the card's)")
        p.add_argument("--profile", default="", help="a sparsity profile in assets/profiles (replaces --sparsity)")
        p.add_argument("--bn-correction", default=None, choices=list(BN_CORRECTIONS),
                       help="BatchNorm statistics after pruning (default: the card's)")  # fmt: skip
        p.add_argument("--calibration", default=None, choices=list(CALIBRATIONS),
                       help="layer inputs each solve is calibrated on: the dense network's, the pruned prefix's "
                            "(sequential), or the pruned prefix's towards the dense output (asymmetric); "
                            "default: the card's")  # fmt: skip

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SpadeSettings:
        """The settings the options of `add_arguments` describe (not resolved: None stays the card's).

        Raises:
            SystemExit: a value out of range, with one line that says which and why.
        """
        if args.sparsity is not None and not 0.0 <= args.sparsity < 1.0:
            raise SystemExit(f"--sparsity must be in [0, 1), e.g. 0.9 for 90%; got {args.sparsity}.")
        if args.crop_min is not None and not 0.0 < args.crop_min <= 1.0:
            raise SystemExit(f"--crop-min must be in (0, 1]; got {args.crop_min}.")
        if args.n_aug is not None and args.n_aug < 1:
            raise SystemExit("--n-aug must be at least 1.")
        return cls(args.sparsity, args.n_aug, args.seed, args.crop_min, tuple(args.methods), args.reduction,
                   not args.prune_first_conv, args.skip_head, args.damp, args.solver, args.profile,
                   getattr(args, "bn_correction", None), getattr(args, "calibration", None))  # fmt: skip

    def argv(self, model_name: str | None = None) -> list[str]:
        """The options that `from_args` parses back into these settings (resolved fields written out; the solver
        only where it differs from `model_name`'s card)."""
        from spade_engine.models import spade_bn_correction, spade_calibration, spade_solver

        out = ["--profile", self.profile] if self.profile else []
        if self.sparsity is not None and not self.profile:
            out += ["--sparsity", f"{self.sparsity:g}"]
        out += ["--n-aug", str(self.n_aug)] if self.n_aug is not None else []
        out += ["--seed", str(self.seed)]
        if self.crop_min is not None:
            out += ["--crop-min", f"{self.crop_min:g}"]
        out += ["--methods", *self.methods] + (["--reduction", self.reduction] if self.reduction else [])
        out += ["--prune-first-conv"] * (not self.skip_first) + ["--skip-head"] * self.skip_head
        if self.damp != DEFAULT_DAMP:
            out += ["--damp", f"{self.damp:g}"]
        if self.solver is not None and self.solver != spade_solver(model_name):
            out += ["--solver", self.solver]
        if self.bn_correction is not None and self.bn_correction != spade_bn_correction(model_name):
            out += ["--bn-correction", self.bn_correction]
        if self.calibration is not None and self.calibration != spade_calibration(model_name):
            out += ["--calibration", self.calibration]
        return out
