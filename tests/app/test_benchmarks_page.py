"""The Benchmarks page: stored protocol tables and a small live run, on the shipped testbed model."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from pages.ui import benchmarks as ui
from pages.ui import keys
from tests.app.conftest import ROOT

PAGE = str(ROOT / "pages" / "4_Benchmarks.py")


def page(timeout: int = 120, model: str = "testbed_resnet") -> AppTest:
    """The page run once on `model` (the stored-results tests write v1's files)."""
    at = AppTest.from_file(PAGE, default_timeout=timeout)
    at.session_state[keys.BENCHMARKS_MODEL] = model
    return at.run()


def rows(column: str, auc: float) -> list[dict]:
    return [{"kind": "trojan", "sample": s, "method": "Saliency", "column": column, "agrees": True, "auc": auc + s / 100,
             "pointing": 1.0} for s in range(3)]  # fmt: skip


def _live_run(at: AppTest):
    """One sample, Saliency, Dense and SPADE-sweep: the page's "Run" button; returns the live run's rows."""
    at.slider(key=keys.BENCHMARKS_SAMPLES).set_value(1)
    at.multiselect(key=keys.BENCHMARKS_METHODS).set_value(["Saliency"])
    at.multiselect(key=keys.BENCHMARKS_COLUMNS).set_value(["Dense", "SPADE-sweep"])
    at.run()
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at.session_state[keys.BENCHMARKS_LIVE]


def test_stored_results_are_shown(tmp_path, monkeypatch):
    monkeypatch.setattr(ui, "RESULTS_DIR", tmp_path)
    pd.DataFrame(rows("Dense", 0.9) + rows("SPADE-sweep", 0.8)).to_csv(tmp_path / "testbed_resnet_protocol.csv")
    at = page()
    assert not at.exception, at.exception
    tables = [df.value for df in at.dataframe]
    trojan = next(t for t in tables if "Dense" in getattr(t, "columns", []))
    assert trojan.loc["Saliency", "Dense"].startswith("91.0") and trojan.loc["Saliency", "SPADE-sweep"].startswith(
        "81.0"
    )
    assert "3 trojan samples" in " ".join(c.value for c in at.caption)
    paired = next(t for t in tables if "Dense" not in t.columns and "SPADE-sweep" in t.columns)
    assert paired.loc["Saliency", "SPADE-sweep"] == "-10.0 [-10.0, -10.0]"  # the same samples, 10 points lower
    assert not any("What SPADE's effect depends on" in h.value for h in at.subheader)  # no ablation stored


def test_an_unfinished_run_is_shown_and_labelled(tmp_path, monkeypatch):
    """A long run commits its `.partial.csv` as it goes: the page shows those rows and says they are unfinished;
    the finished file, once there, wins."""
    monkeypatch.setattr(ui, "RESULTS_DIR", tmp_path)
    pd.DataFrame(rows("Dense", 0.9)).to_csv(tmp_path / "testbed_resnet_protocol.partial.csv", index=False)
    at = page()
    assert not at.exception, at.exception
    captions = " ".join(c.value for c in at.caption)
    assert "Unfinished run" in captions and "testbed_resnet_protocol.partial.csv: 3 trojan samples" in captions
    pd.DataFrame(rows("Dense", 0.5)).to_csv(tmp_path / "testbed_resnet_protocol.csv", index=False)
    at = page()
    captions = " ".join(c.value for c in at.caption)
    assert "Unfinished run" not in captions and "testbed_resnet_protocol.csv: 3 trojan samples" in captions


def test_stored_settings_and_ablation_are_shown(tmp_path, monkeypatch):
    monkeypatch.setattr(ui, "RESULTS_DIR", tmp_path)
    pd.DataFrame(rows("Dense", 0.9) + rows("SPADE-sweep", 0.8)).to_csv(tmp_path / "testbed_resnet_protocol.csv")
    settings = {"sparsity": 0.8, "crop_min": 1.0, "n_aug": 64, "date": "2026-11-23", "seconds": 600.0}
    (tmp_path / "testbed_resnet_protocol.json").write_text(json.dumps(settings))
    ablation = rows("Dense", 0.9) + rows("SPADE-sweep", 0.8) + rows("crop 0.2 (reference)", 0.6)
    pd.DataFrame(ablation).to_csv(tmp_path / "testbed_resnet_ablation.csv")
    at = page()
    assert not at.exception, at.exception
    captions = " ".join(c.value for c in at.caption)
    assert "80% sparsity per layer, 64 calibration views (crops ≥ 1 of the image)" in captions
    assert any("What SPADE's effect depends on" in h.value for h in at.subheader)
    (tmp_path / "testbed_resnet_protocol.json").write_text(json.dumps({**settings, "calibration": "asymmetric"}))
    captions = " ".join(c.value for c in page().caption)
    assert "80% sparsity per layer (asymmetric calibration), 64 calibration views" in captions
    tables = [df.value for df in at.dataframe if "crop 0.2 (reference)" in getattr(df.value, "columns", [])]
    assert tables and tables[0].loc["average", "crop 0.2 (reference)"].startswith("61.0")


def test_missing_results_say_how_to_make_them_and_live_run_works(tmp_path, monkeypatch):
    monkeypatch.setattr(ui, "RESULTS_DIR", tmp_path)
    at = page(600)
    assert not at.exception, at.exception
    assert any("spade protocol --store --model testbed_resnet" in i.value for i in at.info)
    live = _live_run(at)
    assert set(live["column"]) == {"Dense", "SPADE-sweep"} and set(live["kind"]) == {"trojan", "insertion"}
    assert live["auc"].dropna().between(0, 1).all() and len(at.get("plotly_chart")) >= 1


def test_a_csv_written_by_spade_protocol_is_shown_and_a_wrong_file_is_named(tmp_path, monkeypatch):
    from spade_engine import protocol

    monkeypatch.setattr(ui, "RESULTS_DIR", tmp_path / "none")
    monkeypatch.setenv("SPADE_DATA_ROOT", str(tmp_path))
    out = tmp_path / "cluster_run.csv"
    protocol.finish_csv(pd.DataFrame(rows("Dense", 0.7) + rows("SPADE-sweep", 0.75)), out)  # as `spade protocol`
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    at = page()
    at.text_input(key=keys.BENCHMARKS_RUN_FILE).set_value(str(out)).run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    tables = [df.value for df in at.dataframe if "SPADE-sweep" in getattr(df.value, "columns", [])]
    assert tables[0].loc["Saliency", "SPADE-sweep"].startswith("76.0")
    assert any("cluster_run.csv: 3 trojan samples" in c.value for c in at.caption)
    at.text_input(key=keys.BENCHMARKS_RUN_FILE).set_value(str(tmp_path / "notes.csv")).run()
    assert not at.exception and "does not hold protocol rows" in at.error[0].value
    at.text_input(key=keys.BENCHMARKS_RUN_FILE).set_value(str(tmp_path / "missing.csv")).run()
    assert not at.exception and "No file at" in at.error[0].value
    for outside in ("/etc/passwd", str(tmp_path / ".." / "x.csv")):  # outside the data root: never read
        at.text_input(key=keys.BENCHMARKS_RUN_FILE).set_value(outside).run()
        assert not at.exception and "data root" in at.error[0].value, at.error[0].value
    monkeypatch.delenv("SPADE_DATA_ROOT")
    at.text_input(key=keys.BENCHMARKS_RUN_FILE).set_value(str(out)).run()
    assert not at.exception and "SPADE_DATA_ROOT" in at.error[0].value


def test_difficulty_diagnostic_is_shown_for_the_model_that_has_one(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(ui, "RESULTS_DIR", tmp_path)
    shutil.copy(ROOT / "assets" / "benchmarks" / "testbed_v2_resnet_difficulty.csv", tmp_path)
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state[keys.BENCHMARKS_MODEL] = "testbed_resnet"
    at.run()
    assert not at.exception and not any("Why dense maps" in h.value for h in at.subheader)
    at.session_state[keys.BENCHMARKS_MODEL] = "testbed_v2_resnet"
    at.run()
    assert not at.exception, at.exception
    assert any("Why dense maps find the trojan here" in h.value for h in at.subheader)
    summary = next(df.value for df in at.dataframe if "attack success" in getattr(df.value, "columns", []))
    assert list(summary.index) == ["card", "faint", "small", "crowded", "no distractors"]
    assert 95 < summary.loc["card", "mean"] < 97.5 and summary.loc["faint", "attack success"] == 70.0


@pytest.mark.slow
def test_the_real_network_runs_on_photos_without_trojan_rows(tmp_path, monkeypatch):
    """EfficientNet-Lite0 has no trojan ground truth: the page says so, and its live run scores insertion and
    deletion on the offline photos only."""
    monkeypatch.setattr(ui, "RESULTS_DIR", tmp_path)
    at = page(900, model="efficientnet_lite0")
    assert not at.exception, at.exception
    assert any("no trojan ground truth" in c.value for c in at.caption)
    assert any("--trojan 0" in i.value for i in at.info)
    live = _live_run(at)
    assert set(live["kind"]) == {"insertion"} and set(live["column"]) == {"Dense", "SPADE-sweep"}
    assert live["insertion"].between(0, 1).all() and live["deletion"].between(0, 1).all()


def test_the_levers_run_is_charted_with_its_confident_subset(tmp_path, monkeypatch):
    """A `benchmarks/compact_levers.py` run: decision kept per lever and sparsity with its interval, the confident
    samples alone on a toggle, and the maps' paired differences to dense."""
    monkeypatch.setattr(ui, "RESULTS_DIR", tmp_path)
    dec = [dict(sample=f"p{i}@c", photo=f"p{i}", lever=lever, sparsity=0.8, kept=int(lever == "asymmetric" or i == 0),
                p_dense=0.9 if i < 2 else 0.2, held_agree=0.5, logit_cos=0.9, seconds=3.0, method=None)
           for i in range(4) for lever in ("sweep", "asymmetric")]  # fmt: skip
    pd.DataFrame(dec).to_csv(tmp_path / "testbed_resnet_levers_decision.csv", index=False)
    maps = [dict(sample=f"p{i}", photo=f"p{i}", lever=lever, sparsity=s, method="Saliency",
                 insertion=0.30 + (0.05 if lever != "dense" else 0) + i / 100, deletion=0.1)
            for i in range(3) for lever, s in (("dense", 0), ("asymmetric", 0.8))]  # fmt: skip
    pd.DataFrame(maps).to_csv(tmp_path / "testbed_resnet_levers_maps.csv", index=False)
    clear = [
        dict(row, held_clear=1.0 if i < 2 else 0.5, n_clear=30 if i < 2 else 10) for i, row in enumerate(dec[1::2])
    ]
    pd.DataFrame(clear).to_csv(tmp_path / "testbed_resnet_levers_clear.csv", index=False)
    at = page()
    assert not at.exception, at.exception
    assert any("keep the decision" in h.value for h in at.subheader)
    table = next(df.value for df in at.dataframe if "kept_lo" in df.value.columns).set_index("lever")
    assert table.loc["asymmetric", "kept"] == 1.0 and table.loc["sweep", "kept"] == 0.25 and table["n"].eq(4).all()
    assert table.loc["sweep", "kept_lo"] < 0.25 < table.loc["sweep", "kept_hi"]
    clear_table = next(df.value for df in at.dataframe if "held_clear" in df.value.columns)
    assert clear_table["held_clear"].iloc[0] == pytest.approx((60 * 1.0 + 20 * 0.5) / 80)  # pooled over views
    diffs = next(df.value for df in at.dataframe if "photo_lo" in df.value.columns).set_index("metric")
    assert diffs.loc["insertion", "delta"] == pytest.approx(5.0) and diffs.loc["deletion", "delta"] == 0
    at.toggle(key=keys.BENCHMARKS_LEVERS_CONFIDENT).set_value(True).run()
    table = next(df.value for df in at.dataframe if "kept_lo" in df.value.columns).set_index("lever")
    assert table["n"].eq(2).all() and table.loc["sweep", "kept"] == 0.5  # p_dense >= 0.5: samples 0 and 1


def test_a_run_with_fewer_calibration_views_is_compared_with_the_default(tmp_path, monkeypatch):
    """`compact_levers.py --views 32` beside the 64-view run: decision tables on the shared samples with the paired
    agreement difference, and the maps of both against dense and against each other."""
    monkeypatch.setattr(ui, "RESULTS_DIR", tmp_path)
    dec = [dict(sample=f"p{i}", photo=f"p{i}", lever="asymmetric", sparsity=0.7, kept=1, p_dense=0.9,
                held_agree=0.9, logit_cos=0.95, seconds=3.0, method=None, held_clear=1.0, n_clear=30)
           for i in range(3)]  # fmt: skip
    dense = [dict(sample=f"p{i}", photo=f"p{i}", lever="dense", sparsity=0.0, method="Saliency", insertion=0.3,
                  deletion=0.1) for i in range(3)]  # fmt: skip
    pruned = [dict(d, lever="asymmetric", sparsity=0.7, insertion=0.32) for d in dense]
    pd.DataFrame(dec).to_csv(tmp_path / "testbed_resnet_levers_decision.csv", index=False)
    pd.DataFrame(dec).to_csv(tmp_path / "testbed_resnet_levers_clear.csv", index=False)
    pd.DataFrame(dense + pruned).to_csv(tmp_path / "testbed_resnet_levers_maps.csv", index=False)
    fewer = [dict(d, held_agree=0.8) for d in dec] + dense + [dict(d, insertion=0.31) for d in pruned]
    pd.DataFrame(fewer).to_csv(tmp_path / "testbed_resnet_levers_views32.csv", index=False)
    at = page()
    assert not at.exception, at.exception
    views = next(df.value for df in at.dataframe if "paired_delta" in df.value.columns).set_index("views")
    assert views.loc[32, "paired_delta"] == pytest.approx(-0.1) and views.loc[64, "held_agree"] == pytest.approx(0.9)
    pair = next(df.value for df in at.dataframe if "pair" in df.value.columns).set_index(["views", "metric"])
    assert pair.loc[(32, "insertion"), "pair"] == pytest.approx(-1.0)  # 32-view maps minus 64-view maps, points


def test_the_cards_default_run_is_shown_with_its_maps(tmp_path, monkeypatch):
    """`compact_levers.py` at the card's default (`<model>_levers_default.csv`): its decision table per sparsity and
    its maps' paired differences to dense, below the levers."""
    monkeypatch.setattr(ui, "RESULTS_DIR", tmp_path)
    dec = [dict(sample=f"p{i}", photo=f"p{i}", lever="sweep", sparsity=0.7, kept=0, p_dense=0.9, held_agree=0.2,
                logit_cos=0.5, seconds=1.0, method=None) for i in range(3)]  # fmt: skip
    pd.DataFrame(dec).to_csv(tmp_path / "testbed_resnet_levers_decision.csv", index=False)
    rows = [
        dict(d, lever="asymmetric", sparsity=s, kept=int(s < 0.9), held_agree=0.85) for d in dec for s in (0.7, 0.9)
    ]
    dense = [dict(sample=f"p{i}", photo=f"p{i}", lever="dense", sparsity=0.0, method="GradCAM", insertion=0.4,
                  deletion=0.2) for i in range(3)]  # fmt: skip
    pruned = [dict(d, lever="asymmetric", sparsity=0.7, insertion=0.43, deletion=0.18) for d in dense]
    reference = [dict(d, lever="dense-1px", sparsity=0.0, kept=int(i > 0), held_agree=0.9) for i, d in enumerate(dec)]
    pd.DataFrame(rows + reference + dense + pruned).to_csv(tmp_path / "testbed_resnet_levers_default.csv", index=False)
    at = page()
    assert not at.exception, at.exception
    assert any("card's default" in m.value for m in at.markdown)
    assert any("moved by one pixel" in c.value for c in at.caption)
    tables = [df.value for df in at.dataframe if "kept_lo" in df.value.columns]
    default = tables[-1][tables[-1]["lever"] == "asymmetric"].set_index("sparsity")
    assert default.loc[0.7, "kept"] == 1.0 and default.loc[0.9, "kept"] == 0.0
    ref = tables[-1][tables[-1]["lever"] == "dense-1px"].iloc[0]
    assert ref["kept"] == pytest.approx(2 / 3) and ref["held_agree"] == 0.9 and ref["sparsity"] == 0.0
    charts = [c for c in at.get("plotly_chart") if "default_chart" in str(c.proto.id)]
    assert len(charts) == 1
    maps = [df.value for df in at.dataframe if "photo_lo" in df.value.columns][-1].set_index("metric")
    assert maps.loc["insertion", "delta"] == pytest.approx(3.0) and maps.loc["deletion", "delta"] == pytest.approx(-2.0)


def test_facet_recovery_is_shown_with_its_picture(tmp_path, monkeypatch):
    """`benchmarks/facet_recovery_real.py`'s rows (`<model>_facet_recovery.csv`) and picture: the share of samples
    whose visualisation shows their facet, per judge and network."""
    from PIL import Image

    monkeypatch.setattr(ui, "RESULTS_DIR", tmp_path)
    rows = [dict(channel=c, facet=f, sparsity=0.95, dense_facet=0, spade_facet=f if c else 1, dense_facet_features=1,
                 spade_facet_features=f, kept=1, act_dense=2.0, act_pruned=1.0) for c in (0, 1) for f in (0, 1)]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "testbed_resnet_facet_recovery.csv", index=False)
    Image.new("RGB", (40, 20), "red").save(tmp_path / "testbed_resnet_facet_recovery.png")
    at = page()
    assert not at.exception, at.exception
    table = next(df.value for df in at.dataframe if "shows_facet" in df.value.columns)
    got = table.set_index(["judge", "network"])
    assert (
        got.loc[("contribution", "dense"), "shows_facet"] == 2
        and got.loc[("contribution", "spade"), "shows_facet"] == 3
    )
    assert got.loc[("features", "spade"), "share"] == 1.0 and got.loc[("features", "spade"), "channels_split"] == 2
    assert got.loc[("contribution", "spade"), "channels_split"] == 1
    assert len(at.get("image")) == 1
