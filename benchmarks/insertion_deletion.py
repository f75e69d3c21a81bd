"""Insertion / deletion AUC (RISE) of every saliency method on clean testbed images, dense vs SPADE maps,
all scored on the dense model.

    python benchmarks/insertion_deletion.py [--model testbed_resnet] [--samples 30] [--sparsity S ...]
                                            [--n-aug 64] [--steps 32] [--threads 1] [--out insertion_results.csv]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spade_engine.bench import main  # noqa: E402

# sparsity, crops and views: the model card's and the pipeline's
DEFAULTS = ["--samples", "30", "--out", "insertion_results.csv"]

if __name__ == "__main__":
    main(["insertion", *DEFAULTS, *sys.argv[1:]])
