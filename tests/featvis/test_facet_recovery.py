"""The facet-recovery benchmark's judges (`benchmarks/facet_recovery.py`) on images with known facets."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from spade_engine.testbed import data

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "facet_recovery.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("facet_recovery_bench", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("cls", range(len(data.CLASS_NAMES)))
def test_colour_judge_reads_the_facet_colour(bench, cls):
    judge = bench.colour_judge()
    for facet in (0, 1):
        image = np.full((16, 16, 3), 0.5, dtype=np.float32)  # grey: no vote
        image[4:12, 4:12] = data.COLOURS[data.FACETS[cls][facet].split()[0]]
        assert judge(image, cls) == facet
    assert judge(np.full((8, 8, 3), 0.5, dtype=np.float32), cls) is None  # nothing saturated: undecided


def test_colour_judge_on_generated_samples(bench):
    judge = bench.colour_judge()
    hits = [judge(data.make_sample(c, f, seed=3).images[0].permute(1, 2, 0).numpy(), c) == f
            for c in range(len(data.CLASS_NAMES)) for f in (0, 1)]  # fmt: skip
    assert np.mean(hits) >= 0.9


def test_table_counts_undecided_as_wrong(bench):
    rows = [bench.Row(0, 0, 1, {"late": True}, {"colour": {"dense": 0, "spade-late": 0}}),
            bench.Row(0, 1, 1, {"late": True}, {"colour": {"dense": 0, "spade-late": None}})]  # fmt: skip
    lines = bench.table(rows).splitlines()
    assert lines[1].split() == ["colour", "dense", "50.0%", "0.0%", "2"]
    assert lines[2].split() == ["colour", "spade-late", "50.0%", "50.0%", "2"]
