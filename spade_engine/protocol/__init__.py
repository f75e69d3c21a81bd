"""The benchmark pipeline: the SPADE paper's saliency protocol (arXiv 2310.04519, Tables 1-2) on a testbed model.

    spade protocol --model testbed_resnet --trojan 100 --clean 100 --out results.csv             # on Ray
    spade protocol --serial --model testbed_resnet --trojan 100 --clean 100 --out results.csv    # in-process

Rows are saliency methods, columns are the networks the maps are computed on:

- Dense: the trained model.
- SPADE-exact: per-sample SPADE with the exact OBC solver (the paper's "SPADE").
- SPADE-sweep: per-sample SPADE with the SparseGPT column sweep (the paper's "FastSPADE").
- SPADE-tuned: the sweep with per-block sparsities tuned on calibration images (FastSPADE*), from a profile.
- Sparse FC: the dense model with its head replaced by a sparse decision layer (Wong et al. 2021).
- Variants: extra SPADE columns (ablations: another crop, sparsity, solver...).

Trojan AUC (and pointing game, rank accuracy) on trojaned samples the dense model assigns to the trojan target;
insertion / deletion AUC on clean samples, every map scored on the dense model. Sparsity and calibration crops
default to the model card's (`models.spade_defaults`, `models.spade_augment`), as in the Debugger.

One module per concern: `config` (the run's settings), `samples` (which images), `scores` (one map's scores),
`columns` (the networks of the columns), `run` (`run_protocol`: one row per sample x method x column;
`sample_rows`: one sample's rows), `store` (`run_to_csv`: resumable `<out>.partial.csv`, settings JSON),
`tables` and `figures` (mean and 95% interval, paired differences). The library never imports Ray: the
command line (`spade_engine.cli.protocol`) runs it on Ray through `spade_engine.protocol.ray`.
"""

from spade_engine.protocol.columns import (
    Networks,
    column_models,
    exact_coverage,
    exact_note,
    networks,
    spade_columns,
    sparse_fc_model,
    tuned_config,
    tuned_profile_path,
)
from spade_engine.protocol.config import ATTRIBUTION, COLUMNS, KIND_METRICS, ROW_FIELDS, ProtocolConfig, Variant
from spade_engine.protocol.figures import figure, summary_figure
from spade_engine.protocol.run import ENGINE_CACHE_BYTES, Progress, Runner, run_protocol, sample_rows
from spade_engine.protocol.samples import Sample, clean_samples, run_samples, trojan_samples
from spade_engine.protocol.scores import insertion_scores, trojan_scores
from spade_engine.protocol.store import (
    RESULTS_DIR,
    append_rows,
    finish_csv,
    load_settings,
    merge_columns,
    partial_path,
    run_to_csv,
    save_settings,
)
from spade_engine.protocol.tables import LABELS, column_order, markdown, paired_differences, paired_stats, tables

__all__ = [
    "ATTRIBUTION", "COLUMNS", "ENGINE_CACHE_BYTES", "KIND_METRICS", "LABELS", "RESULTS_DIR", "ROW_FIELDS",
    "Networks", "Progress", "ProtocolConfig", "Runner", "Sample", "Variant", "append_rows", "clean_samples",
    "column_models", "column_order", "exact_coverage", "exact_note", "figure", "finish_csv", "insertion_scores",
    "load_settings", "markdown", "merge_columns", "networks", "paired_differences", "paired_stats", "partial_path",
    "run_protocol", "run_samples", "run_to_csv", "sample_rows", "save_settings", "spade_columns", "sparse_fc_model",
    "summary_figure", "tables", "trojan_samples", "trojan_scores", "tuned_config", "tuned_profile_path",
]  # fmt: skip
