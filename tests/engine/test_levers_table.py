"""`protocol.levers`: the held-out agreement on clear views is pooled over views, not samples; runs with fewer
calibration views are compared on the samples both have."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spade_engine.protocol import levers


def _rows(**extra):
    base = [dict(sample="a", lever="asymmetric", sparsity=0.7, kept=1, p_dense=0.9, held_agree=0.9, logit_cos=0.95,
                 seconds=2.0, method=np.nan),
            dict(sample="b", lever="asymmetric", sparsity=0.7, kept=0, p_dense=0.2, held_agree=0.5, logit_cos=0.9,
                 seconds=3.0, method=np.nan)]  # fmt: skip
    return pd.DataFrame([{**r, **{k: v[i] for k, v in extra.items()}} for i, r in enumerate(base)])


def test_clear_view_agreement_is_pooled_over_the_clear_views():
    table = levers.decision_table(_rows(held_clear=[1.0, 0.5], n_clear=[10, 30])).iloc[0]
    assert table["held_clear"] == pytest.approx((10 * 1.0 + 30 * 0.5) / 40)  # the mean of samples would be 0.75
    assert table["clear_views"] == 20 and table["kept"] == 0.5 and table["held_agree"] == pytest.approx(0.7)


def test_a_sample_without_clear_views_counts_none_and_old_runs_have_no_column():
    table = levers.decision_table(_rows(held_clear=[np.nan, 0.5], n_clear=[0, 30])).iloc[0]
    assert table["held_clear"] == pytest.approx(0.5)
    assert "held_clear" not in levers.decision_table(_rows()).columns


def test_views_table_compares_the_shared_samples_and_pairs_the_agreement():
    default = _rows()
    fewer = _rows().assign(held_agree=[0.8, 0.7], seconds=[1.0, 1.5])
    extra = default.iloc[[0]].assign(sample="only-in-default", held_agree=0.0)  # not shared: left out
    table = levers.views_table(pd.concat([default, extra]), fewer)
    assert list(table["views"]) == [64, 32] and list(table["n"]) == [2, 2]
    assert table.loc[0, "held_agree"] == pytest.approx(0.7) and table.loc[1, "held_agree"] == pytest.approx(0.75)
    assert np.isnan(table.loc[0, "paired_delta"])
    assert table.loc[1, "paired_delta"] == pytest.approx(np.median([0.8 - 0.9, 0.7 - 0.5]))
    assert levers.views_table(default, fewer.assign(sample=["x", "y"])).empty


def _maps(pruned_insertion, dense_insertion=(0.30, 0.40, 0.50)):
    rows = []
    for i, (p, d) in enumerate(zip(pruned_insertion, dense_insertion, strict=True)):
        rows.append(dict(sample=f"s{i}", lever="dense", sparsity=0.0, method="Saliency", insertion=d, deletion=0.1))
        rows.append(dict(sample=f"s{i}", lever="asymmetric", sparsity=0.7, method="Saliency", insertion=p,
                         deletion=0.1))  # fmt: skip
    return pd.DataFrame(rows)


def test_views_map_table_pairs_the_pruned_maps_of_both_runs():
    default, fewer = _maps([0.32, 0.42, 0.52]), _maps([0.31, 0.40, 0.49])
    table = levers.views_map_table(default, fewer).set_index(["views", "metric"])
    assert table.loc[(64, "insertion"), "delta"] == pytest.approx(2.0)  # AUC points against the dense maps
    assert table.loc[(32, "insertion"), "delta"] == pytest.approx(0.0)
    assert table.loc[(32, "insertion"), "pair"] == pytest.approx(-2.0)  # 32 views minus 64, paired
    assert np.isnan(table.loc[(64, "insertion"), "pair"])
    assert levers.views_map_table(default, fewer.assign(sample="other")).empty
