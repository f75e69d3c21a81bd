"""The saliency protocol's columns: the card's SPADE settings, overrides, ablation variants and stored settings."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from spade_engine import protocol
from spade_engine.cli import protocol as cli_protocol
from spade_engine.engine import PruneConfig
from spade_engine.models import load_model, spade_bn_correction, spade_calibration, spade_defaults


def test_spade_columns_use_the_model_card_unless_the_run_overrides_it():
    card = spade_defaults("testbed_resnet")
    cols = protocol.spade_columns(
        protocol.ProtocolConfig("testbed_resnet", columns=("Dense", "SPADE-exact", "SPADE-sweep"))
    )
    assert set(cols) == {"SPADE-exact", "SPADE-sweep"}  # Dense is not pruned
    assert cols["SPADE-sweep"] == (PruneConfig(card["sparsity"]), card["crop_min"])
    assert cols["SPADE-exact"][0].solver == "obc" and cols["SPADE-exact"][0].sparsity == card["sparsity"]

    cfg = protocol.ProtocolConfig(
        "testbed_resnet", sparsity=0.5, crop_min=0.3, columns=("SPADE-sweep",),
        variants=(protocol.Variant("wide crops", PruneConfig(0.7)), protocol.Variant("small crops", PruneConfig(0.7), 0.2)),
    )  # fmt: skip
    cols = protocol.spade_columns(cfg)
    assert cols["SPADE-sweep"] == (PruneConfig(0.5), 0.3)
    assert cols["wide crops"] == (PruneConfig(0.7), 0.3)  # a variant without its own crop inherits the run's
    assert cols["small crops"] == (PruneConfig(0.7), 0.2)


def test_variants_are_extra_columns_of_the_tables(tmp_path):
    model = load_model("testbed_resnet").model
    cfg = protocol.ProtocolConfig(
        "testbed_resnet", trojan_samples=1, clean_samples=0, n_aug=8, methods=("Saliency", "GradCAM"),
        columns=("Dense",), metrics=("trojan",),
        variants=(protocol.Variant("crop 0.2", PruneConfig(0.5), 0.2), protocol.Variant("magnitude", PruneConfig(0.5, solver="magnitude"))),
    )  # fmt: skip
    df = protocol.run_protocol(cfg, model)
    assert len(df) == 3 * 2 and df["auc"].between(0, 1).all()
    auc = protocol.tables(df)["auc"]
    assert list(auc.columns) == ["Dense", "crop 0.2", "magnitude"] and list(auc.index) == [
        "Saliency",
        "GradCAM",
        "average",
    ]
    # the variants explain different networks: their maps (hence scores) are not all the dense ones
    dense = df[df["column"] == "Dense"].set_index("method")["auc"]
    assert any((df[df["column"] == c].set_index("method")["auc"] != dense).any() for c in ["crop 0.2", "magnitude"])

    path = protocol.save_settings(cfg, tmp_path / "run.csv", 12.34)
    assert path == tmp_path / "run.json"
    settings = protocol.load_settings(tmp_path / "run.csv")
    card = spade_defaults("testbed_resnet")
    assert (settings["sparsity"], settings["crop_min"], settings["n_aug"]) == (card["sparsity"], card["crop_min"], 8)
    assert settings["seconds"] == 12.3 and protocol.load_settings(tmp_path / "other.csv") == {}
    assert (settings["calibration"], settings["bn_correction"]) == (
        spade_calibration("testbed_resnet"),
        spade_bn_correction("testbed_resnet"),
    )  # how every SPADE column was calibrated (the card's)
    lite = protocol.save_settings(replace(cfg, model="efficientnet_lite0", columns=("Dense",)), tmp_path / "l.csv", 1.0)
    assert json.loads(lite.read_text())["calibration"] == "asymmetric"


def test_merge_replaces_only_the_rerun_columns_on_the_same_samples():
    import pandas as pd

    def rows(column, auc, samples=(0, 1)):
        return [{"kind": "trojan", "sample": s, "method": "Saliency", "column": column, "auc": auc} for s in samples]

    old = pd.DataFrame(rows("Dense", 0.9) + rows("SPADE-tuned", 0.5))
    merged = protocol.merge_columns(old, pd.DataFrame(rows("SPADE-tuned", 0.7)))
    assert len(merged) == 4
    assert merged.groupby("column")["auc"].mean().to_dict() == {"Dense": 0.9, "SPADE-tuned": 0.7}
    with pytest.raises(ValueError, match="other samples"):
        protocol.merge_columns(old, pd.DataFrame(rows("SPADE-tuned", 0.7, samples=(0, 2))))


def test_paired_differences_resolve_a_shift_that_the_spread_hides():
    import numpy as np
    import pandas as pd

    base = np.linspace(0.3, 0.9, 20)  # a wide spread between samples, the same +0.02 shift on each
    df = pd.DataFrame(
        [{"kind": "trojan", "sample": i, "method": "Saliency", "column": c, "auc": v + d}
         for i, v in enumerate(base) for c, d in [("Dense", 0.0), ("SPADE-sweep", 0.02)]]
    )  # fmt: skip
    diff = protocol.paired_differences(df, "auc")
    assert list(diff.columns) == ["SPADE-sweep"] and list(diff.index) == ["Saliency", "average"]
    assert diff.loc["Saliency", "SPADE-sweep"] == "+2.0 [+2.0, +2.0]"
    tables = protocol.tables(df)["auc"]  # unpaired intervals overlap: the tables cannot tell the columns apart
    lo_spade = float(tables.loc["Saliency", "SPADE-sweep"].split("[")[1].split(",")[0])
    assert lo_spade < float(tables.loc["Saliency", "Dense"].split(" ")[0])

    df["deletion"] = df["auc"]  # the same +2 points is worse for deletion (lower is better)
    fig = protocol.summary_figure(df, metrics_=("auc", "deletion"))
    (auc_bar, del_bar) = fig.data
    assert list(auc_bar.x) == ["SPADE-sweep"] and auc_bar.y[0] == pytest.approx(2.0)
    assert auc_bar.marker.color[0] == "#2ca02c" and del_bar.marker.color[0] == "#d62728"


def test_markdown_table_has_a_header_and_one_line_per_row():
    import pandas as pd

    md = protocol.markdown(pd.DataFrame({"Dense": ["90.0", "80.0"], "SPADE-sweep": ["91.0", "81.0"]}, index=["A", "B"]))
    assert md.splitlines() == [
        "|  | Dense | SPADE-sweep |",
        "| --- | --- | --- |",
        "| A | 90.0 | 91.0 |",
        "| B | 80.0 | 81.0 |",
    ]


def test_paired_views_of_a_run_without_the_reference_are_empty():
    import pandas as pd

    df = pd.DataFrame([{"kind": "trojan", "sample": 0, "method": "Saliency", "column": "SPADE-sweep", "auc": 0.9}])
    assert protocol.paired_stats(df, "auc") == {} and protocol.paired_differences(df, "auc").empty
    assert len(protocol.summary_figure(df, metrics_=("auc",)).data) == 1  # an empty panel, no error


def test_cli_merge_of_other_samples_stops_with_a_message_and_keeps_the_stored_run(tmp_path):
    import pandas as pd

    out = tmp_path / "run.csv"
    stored = pd.DataFrame([{"kind": "trojan", "sample": 10_000, "method": "Saliency", "column": "Dense", "auc": 0.5}])
    stored.to_csv(out, index=False)
    argv = ["--model", "testbed_resnet", "--trojan", "1", "--clean", "0", "--methods", "Saliency",
            "--columns", "Dense", "--n-aug", "4", "--out", str(out), "--merge"]  # fmt: skip
    with pytest.raises(SystemExit, match="other samples"):
        cli_protocol.main([*argv, "--serial"])
    pd.testing.assert_frame_equal(pd.read_csv(out), stored)  # nothing lost


def test_an_interrupted_run_resumes_to_the_same_rows(tmp_path):
    """Rows are appended per sample; a resumed run skips the finished samples and ends with the same table."""
    cfg = protocol.ProtocolConfig(
        "testbed_resnet", trojan_samples=3, clean_samples=0, n_aug=8, methods=("Saliency",),
        columns=("Dense", "SPADE-sweep"), metrics=("trojan",),
    )  # fmt: skip
    out = tmp_path / "run.csv"
    full = protocol.run_to_csv(cfg, out)
    partial = protocol.partial_path(out)
    assert len(pd.read_csv(partial)) == len(full) == 3 * 2
    # an interruption after the first sample: only its rows are on disk
    first = full["sample"].iloc[0]
    full[full["sample"] == first].to_csv(partial, index=False)
    calls = []
    resumed = protocol.run_to_csv(cfg, out, resume=True, progress=lambda *a: calls.append(a))
    key = ["sample", "column"]
    pd.testing.assert_frame_equal(
        resumed.sort_values(key).reset_index(drop=True)[["sample", "column", "auc"]],
        full.sort_values(key).reset_index(drop=True)[["sample", "column", "auc"]],
        check_exact=False, rtol=1e-5,
    )  # fmt: skip
    protocol.finish_csv(resumed, out)
    assert out.exists() and not partial.exists()


def test_a_resumed_run_lists_the_samples_in_the_uninterrupted_order(tmp_path):
    """On Ray samples finish out of order, so the partial file may hold a later sample (here the clean one)
    before the earlier ones; the resumed rows are in the uninterrupted run's order all the same."""
    cfg = protocol.ProtocolConfig(
        "testbed_resnet", trojan_samples=2, clean_samples=1, n_aug=4, methods=("Saliency",), columns=("Dense",), steps=4,
    )  # fmt: skip
    out = tmp_path / "run.csv"
    full = protocol.run_to_csv(cfg, out)
    full[full["kind"] == "insertion"].to_csv(protocol.partial_path(out), index=False)  # it finished first
    resumed = protocol.run_to_csv(cfg, out, resume=True)
    key = ["kind", "sample", "method", "column"]
    assert resumed[key].values.tolist() == full[key].values.tolist()
    assert list(dict.fromkeys(resumed["kind"])) == ["trojan", "insertion"]


def test_small_sample_tables_keep_their_intervals_inside_0_100():
    """Three trojan AUCs near 1: a t-interval would print "97.9 [93.7, 102.1]"; the table's stays in [0, 100]."""
    rows = [{"kind": "trojan", "sample": i, "method": "Saliency", "column": "Dense", "auc": a, "pointing": 1.0}
            for i, a in enumerate([0.95, 0.99, 0.997])]  # fmt: skip
    cell = protocol.tables(pd.DataFrame(rows))["auc"].loc["Saliency", "Dense"]
    mean, lo, hi = (float(x) for x in cell.translate(str.maketrans("[],", "   ")).split()[:3])
    assert 0.0 <= lo < mean < hi <= 100.0 and cell.endswith("(n=3)")


def test_the_exact_column_says_where_it_is_exact(monkeypatch):
    for name in ("testbed_resnet", "testbed_vgg"):
        model = load_model(name).model
        cov = protocol.exact_coverage(model)
        assert cov["exact"] and not cov["sweep"], name
        assert "exact on all" in protocol.exact_note(model)
    monkeypatch.setenv("SPADE_OBC_MAX_COLUMNS", "500")  # 3x3 convs of 64+ channels are wider
    cov = protocol.exact_coverage(load_model("testbed_resnet").model)
    assert "net.layer4.0.conv2" in cov["sweep"] and "net.fc" in cov["exact"]
    assert "net.layer4.0.conv2" in protocol.exact_note(load_model("testbed_resnet").model)


class CentredHead(torch.nn.Module):
    """Channel centring before the head (a LayerNorm's first half, written functionally): LRP's relevance through
    it sums to zero, so `attribute("LRP", ...)` refuses the net as not conservative."""

    def __init__(self, classes: int):
        super().__init__()
        self.conv, self.fc = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Linear(8, classes)

    def forward(self, x):
        h = torch.relu(self.conv(x)).mean((2, 3))
        return self.fc(h - h.mean(dim=1, keepdim=True))


def test_a_map_the_method_refuses_is_a_row_without_a_score_not_a_stopped_run():
    """A method that refuses one network (here LRP, not conservative) leaves that row's scores empty with the
    reason; the other methods on the same sample are scored, and the tables leave the empty row out."""
    cfg = protocol.ProtocolConfig(
        "testbed_resnet", trojan_samples=1, clean_samples=0, n_aug=8, methods=("Saliency", "LRP"),
        columns=("Dense",), metrics=("trojan",),
    )  # fmt: skip
    model = load_model(cfg.model).model
    kind, position, sample = protocol.run_samples(cfg, model)[0]
    torch.manual_seed(0)
    net = CentredHead(int(model(sample.image[None]).shape[1])).eval()
    rows = protocol.sample_rows(protocol.Networks(model, {"Dense": net}, {}), cfg, kind, position, sample)
    by_method = {r["method"]: r for r in rows}
    assert set(by_method) == {"Saliency", "LRP"}
    assert 0.0 <= by_method["Saliency"]["auc"] <= 1.0 and "unsupported" not in by_method["Saliency"]
    assert np.isnan(by_method["LRP"]["auc"]) and "not conservative" in by_method["LRP"]["unsupported"]
    table = protocol.tables(pd.DataFrame(rows))["auc"]
    assert "Saliency" in table.index


def test_the_paired_average_leaves_out_only_the_missing_pair():
    """Sample 1's LRP map is missing on SPADE (refused): the average difference of that sample is its Saliency
    difference alone, not SPADE's Saliency score minus Dense's mean over both methods."""
    rows = []
    for sample, (sal_d, sal_s, lrp_d, lrp_s) in enumerate([(0.5, 0.6, 0.9, 0.9), (0.5, 0.7, 0.1, float("nan"))]):
        for method, dense, spade in (("Saliency", sal_d, sal_s), ("LRP", lrp_d, lrp_s)):
            rows += [{"kind": "trojan", "sample": sample, "method": method, "column": "Dense", "auc": dense},
                     {"kind": "trojan", "sample": sample, "method": method, "column": "SPADE-exact", "auc": spade}]  # fmt: skip
    stats = protocol.paired_stats(pd.DataFrame(rows), "auc")
    assert stats["average"]["SPADE-exact"][0] == pytest.approx(((0.1 + 0.0) / 2 + 0.2) / 2)
    assert stats["LRP"]["SPADE-exact"][0] == pytest.approx(0.0)  # one pair


def test_the_tables_average_the_same_methods_on_every_column():
    """LRP refused on SPADE for the only sample: the average row compares Saliency with Saliency (90 vs 80), not
    Dense's mean over both methods (70) with SPADE's Saliency alone (80); the refused cell says so."""
    from spade_engine.testbed.examples import median_gain_sample

    nan = float("nan")
    rows = [{"kind": "trojan", "sample": 0, "method": m, "column": c, "auc": v, "pointing": 1.0}
            for m, c, v in [("Saliency", "Dense", 0.9), ("Saliency", "SPADE-exact", 0.8),
                            ("LRP", "Dense", 0.5), ("LRP", "SPADE-exact", nan)]]  # fmt: skip
    table = protocol.tables(pd.DataFrame(rows))["auc"]
    assert table.loc["average", "Dense"].startswith("90.0") and table.loc["average", "SPADE-exact"].startswith("80.0")
    assert table.loc["LRP", "SPADE-exact"] == "— (n=0)"
    assert protocol.paired_differences(pd.DataFrame(rows), "auc").loc["LRP", "SPADE-exact"] == "—"
    pick = median_gain_sample(pd.DataFrame(rows))  # the demo sample's rule: the same pairing
    assert pick["gain"] == pytest.approx(-0.1) and pick["dense"] == pytest.approx(0.9)


def test_a_run_into_a_folder_that_does_not_exist_yet_keeps_its_rows(tmp_path):
    """`--out new/folder/run.csv`: the folder is made before any work (a run once died after its first sample)."""
    cfg = protocol.ProtocolConfig(
        "testbed_resnet", trojan_samples=1, clean_samples=0, n_aug=4, methods=("Saliency",), columns=("Dense",),
        metrics=("trojan",),
    )  # fmt: skip
    out = tmp_path / "new" / "folder" / "run.csv"
    rows = protocol.run_to_csv(cfg, out)
    assert len(pd.read_csv(protocol.partial_path(out))) == len(rows) == 1
    protocol.finish_csv(rows, out)
    assert out.exists()


def test_photo_samples_name_the_photo_they_were_cut_from():
    """Real-network samples record their photo, so intervals can resample photos: every whole photo first,
    then the first crop of each, breadth-first."""
    from spade_engine.models import load_model
    from spade_engine.photos import SOURCES
    from spade_engine.protocol.samples import photo_samples

    names = list(SOURCES)
    got = photo_samples(load_model("efficientnet_lite0").model, "efficientnet_lite0", len(names) + 2)
    assert [s.photo for s in got] == [*names, *names[:2]]
    assert all(s.mask is None for s in got) and got[0].image.shape == (3, 224, 224)
