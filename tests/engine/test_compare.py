"""spade_engine/explain/compare.py: the one dense-vs-SPADE computation (Debugger and `spade explain`) with its
refusals, and the one export schema."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from spade_engine.engine import PruneConfig, SpadeEngine
from spade_engine.explain import compare
from spade_engine.saliency import UnsupportedModelError, attribute
from tests.engine.nets import NETS, sample


@pytest.fixture(scope="module")
def pruned_pair():
    model, x = NETS["resnet"](), sample()
    engine = SpadeEngine(model, "cpu", batch_size=8)
    pruned, result = engine.prune(engine.prepare(x, n_aug=8), PruneConfig(0.8))
    return model, pruned, x[None], result


def test_pairs_are_the_registrys_maps_of_both_networks(pruned_pair):
    model, pruned, x, _ = pruned_pair
    got = compare.compare_maps(model, pruned, x, 1, ["Saliency", "LRP"])
    assert [p.method for p in got.pairs] == ["Saliency", "LRP"] and not got.refused
    saliency, lrp = got.pairs
    np.testing.assert_array_equal(saliency.dense, attribute("Saliency", model, x, 1))
    np.testing.assert_array_equal(saliency.spade, attribute("Saliency", pruned, x, 1))
    assert not np.allclose(saliency.dense, saliency.spade)  # the pruned network's map is its own
    assert (saliency.reduction, lrp.reduction) == ("absolute", "signed")  # each method's own reduction
    assert saliency.dense.dtype == np.float32 and saliency.dense_auc is None  # no mask, no AUC


def test_refusals_and_failures_are_reported_and_the_rest_still_runs(pruned_pair):
    model, pruned, x, _ = pruned_pair

    def flaky(name, net, variant, x, target, reduction):
        if name == "LRP":
            raise UnsupportedModelError("LRP has no rule for this layer.")
        if name == "GradCAM":
            raise RuntimeError("scripted")
        return attribute(name, net, x, target, reduction)

    got = compare.compare_maps(model, pruned, x, 0, ["LRP", "GradCAM", "Saliency"], attribute=flaky)
    assert [p.method for p in got.pairs] == ["Saliency"]
    assert got.refused == (compare.Refusal("LRP", "LRP has no rule for this layer."),
                           compare.Refusal("GradCAM", "GradCAM failed on this model: RuntimeError: scripted", True))  # fmt: skip


def test_trojan_auc_against_a_mask(pruned_pair):
    model, pruned, x, _ = pruned_pair
    mask = np.zeros(x.shape[-2:], bool)
    mask[2:8, 2:8] = True
    (pair,) = compare.compare_maps(model, pruned, x, 0, ["Saliency"], mask=mask).pairs
    assert 0.0 <= pair.dense_auc <= 1.0 and 0.0 <= pair.spade_auc <= 1.0
    (everything,) = compare.compare_maps(model, pruned, x, 0, ["Saliency"], mask=np.ones_like(mask)).pairs
    assert everything.dense_auc is None


def test_export_rows_one_per_method_in_the_one_schema(pruned_pair):
    model, pruned, x, result = pruned_pair
    comparison = compare.Comparison(
        compare.compare_maps(model, pruned, x, 0, ["Saliency"]).pairs, (compare.Refusal("LRP", "no rule"),)
    )
    rows = compare.export_rows("a.png", "000_a", ("c0", "c1"), result, 0, comparison, ["Saliency", "LRP"])
    parsed = list(csv.DictReader(io.StringIO(compare.export_csv(rows))))
    assert list(parsed[0]) == compare.EXPORT_FIELDS
    assert [r["method"] for r in parsed] == ["Saliency", "LRP"]
    assert -1 <= float(parsed[0]["map_spearman"]) <= 1 and parsed[0]["error"] == ""
    assert parsed[1]["error"] == "no rule" and parsed[1]["dense_trojan_auc"] == ""
    assert parsed[0]["dense_class"] in ("c0", "c1") or parsed[0]["dense_class"].startswith("class ")
    assert float(parsed[0]["sparsity"]) == pytest.approx(result.total_sparsity)


def test_no_methods_no_pairs(pruned_pair):
    model, pruned, x, _ = pruned_pair
    assert compare.compare_maps(model, pruned, x, 0, []) == compare.Comparison((), ())
