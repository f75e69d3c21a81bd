"""Blocks the pages share around a SPADE result: progress while it runs, the dense-vs-pruned predictions, the
choices of how maps are drawn (channel sum, colour palette), and the download buttons."""

from __future__ import annotations

import streamlit as st

from pages.ui import figures, keys
from pages.ui.state import persisted
from spade_engine.colours import DEFAULT_PALETTE, PALETTES


class Bar:
    """A plain `st.progress` bar usable as `progress(done, total)` or `progress(phase, done, total)`."""

    def __init__(self, label: str):
        self.slot, self.label = st.empty(), label

    def __call__(self, *args) -> None:
        done, total = args[-2:]
        phase = f" · {args[0]}" if len(args) == 3 else ""
        self.slot.progress(min(done / max(total, 1), 1.0), text=f"{self.label}{phase} ({done}/{total})")

    def clear(self) -> None:
        self.slot.empty()


class SpadeProgress:
    """Progress of a SPADE run as `st.status` + `st.progress`, created only if the engine reports work.

    Pass the instance as the engine's `progress(phase, done, total)` callback; call `finish(run)` afterwards.
    A fully cached run shows nothing here (the page says what was reused).
    """

    PHASES = {"augment": "Augmenting the sample", "hessians": "Collecting layer Hessians (one dense pass)",
              "evaluate": "Evaluating the pruned network"}  # fmt: skip

    def __init__(self, first_run_label: str = "Running SPADE on this sample…"):
        self._slot = st.empty()
        self._label = first_run_label
        self._status = self._bar = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if self._status is None:
            label = self._label if phase in ("augment", "hessians") else "Re-pruning from the cached trace…"
            self._status = self._slot.status(label, expanded=True)
            self._bar = self._status.progress(0.0)
        text = self.PHASES.get(phase) or phase.replace("solve ", "Solving layer ")
        counter = f" ({done + 1}/{total})" if total > 1 and done < total else ""
        self._bar.progress(min(done / max(total, 1), 1.0), text=text + counter)

    def finish(self, label: str) -> None:
        """Collapse the status into the line `label` (a caption when nothing ran: everything was cached)."""
        if self._status is not None:
            self._status.update(label=label, state="complete", expanded=False)
        else:
            self._slot.caption(label)


REDUCTION_CHOICES = {
    "as in the paper": None,
    "absolute": "absolute",
    "signed": "signed",
}


def reduction_picker(container=st) -> str | None:
    """How attributions become one value per pixel: the method's own (the paper's: signed for LRP, absolute for the
    others), `sum_c |A_c|` or `sum_c A_c` (diverging colours). Returns None, "absolute" or "signed"."""
    labels = list(REDUCTION_CHOICES)
    label = persisted(
        container.selectbox, keys.DEBUGGER_REDUCTION, labels[0], "Channel sum", options=labels,
        valid=lambda v: v in labels,
        help="Attributions are taken at the normalised input (zero = the mean colour). 'signed' keeps the sign of "
        "the channel sum (blue = against the class, red = for it); 'absolute' sums magnitudes; 'as in the paper' "
        "is signed for LRP (the SPADE authors' maps) and absolute for the other methods.",
    )  # fmt: skip
    return REDUCTION_CHOICES[label]


def palette_picker(container=st) -> str:
    """The colour palette of the saliency maps (a key of `spade_engine.colours.PALETTES`): a sequential matplotlib
    map for non-negative maps and a diverging one for signed maps; the page, the PNG and the legend follow it."""
    labels = list(PALETTES)
    return persisted(
        container.selectbox, keys.DEBUGGER_PALETTE, DEFAULT_PALETTE, "Colours", options=labels,
        valid=lambda v: v in labels,
        help="Colour maps from matplotlib: the first for non-negative maps, the second for signed ones (zero is "
        "always transparent). viridis and cividis stay readable with red–green colour blindness.",
    )  # fmt: skip


def show_predictions(result, class_names: tuple[str, ...], spade_label: str) -> None:
    """Dense vs pruned predictions: a top-5 bar chart, the two top classes, and a warning when they differ.

    Args:
        result: the engine's `PruneResult`.
        class_names: the model's class names.
        spade_label: how the pruned network is called ("SPADE 90%").
    """
    name = lambda c: figures.class_name(class_names, c)  # noqa: E731
    (dense_cls, dense_p), (pruned_cls, pruned_p) = result.dense_top5[0], result.pruned_top5[0]
    left, right = st.columns([3, 2], gap="large")
    left.subheader("Predictions")
    left.plotly_chart(
        figures.prediction_figure(result.dense_logits, result.pruned_logits, class_names), key=keys.PREDICTIONS_CHART
    )
    right.subheader("Pruned network")
    quiet = dict(delta_color="off", delta_arrow="off")  # class names can be long: one metric per row
    right.metric("Dense predicts", name(dense_cls), f"{dense_p:.1%}", **quiet)
    right.metric(f"{spade_label} predicts", name(pruned_cls), f"{pruned_p:.1%}", **quiet)
    layers = f"{len(result.layer_sparsity)} layers pruned"
    right.metric("Weights removed (mean over pruned layers)", f"{result.total_sparsity:.1%}", layers, **quiet)
    if not result.agrees:
        right.warning(
            f"The pruned network no longer predicts the dense class **{name(dense_cls)}** (it predicts "
            f"**{name(pruned_cls)}**), so its explanations describe a different decision: lower the sparsity "
            "or add views.",
            icon=":material/warning:",
        )


def download_buttons(stem: str, png: bytes | None, csv_text: str, json_text: str) -> None:
    """PNG of the figure panel, and the numbers as CSV and JSON, side by side (no rerun on click)."""
    common = dict(on_click="ignore", width="stretch", icon=":material/download:")
    cols = st.columns(3)
    cols[0].download_button("Panel (PNG)", png or b"", f"{stem}.png", "image/png", disabled=not png, **common)
    cols[1].download_button("Numbers (CSV)", csv_text, f"{stem}.csv", "text/csv", **common)
    cols[2].download_button("Numbers (JSON)", json_text, f"{stem}.json", "application/json", **common)
