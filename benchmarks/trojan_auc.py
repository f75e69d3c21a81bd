"""Trojan AUC, dense vs SPADE, for every saliency method (the SPADE paper's Table 1 on our testbed).

    python benchmarks/trojan_auc.py [--model testbed_resnet] [--samples 30] [--sparsity S ...] [--n-aug 64]
                                    [--methods Saliency LRP ...] [--threads 1] [--out trojan_results.csv]

Scores each map by the ROC AUC of its pixels against the trojan patch (`spade_engine.metrics.trojan_auc`) on
trojaned images the dense model sends to the trojan target; see `spade_engine.bench` (an alias of the protocol
pipeline, `spade_engine.protocol`). Sparsity and crops default to the model card's.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spade_engine.bench import main  # noqa: E402

# sparsity, crops and views: the model card's and the pipeline's
DEFAULTS = ["--samples", "30", "--out", "trojan_results.csv"]

if __name__ == "__main__":
    main(["trojan", *DEFAULTS, *sys.argv[1:]])
