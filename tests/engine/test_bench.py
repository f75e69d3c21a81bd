"""The benchmark pipeline: rows per sample x method x model, the summary's paired delta, the figure, the CLI."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from spade_engine import bench
from spade_engine.models import TESTBED_DIR, Classifier

SHIPPED = (TESTBED_DIR / "testbed_resnet.json").exists() and (TESTBED_DIR / "testbed_resnet.pt").exists()
FAST_METHODS = ("Saliency", "GradCAM")  # cheap maps; the CLI test covers every method


@pytest.fixture(scope="module")
def random_testbed_model() -> Classifier:
    from spade_engine.testbed.archs import ARCHS
    from spade_engine.testbed.data import CLASS_NAMES

    torch.manual_seed(0)
    model = Classifier(ARCHS["tb_resnet"](len(CLASS_NAMES)), (0.5,) * 3, (0.25,) * 3).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def test_trojan_run_rows_and_metrics(random_testbed_model):
    from spade_engine.testbed.data import TROJAN_TARGET, generate

    batch = generate(2, seed=5, trojan_fraction=1.0)
    samples = [bench.Sample(i, batch.images[i], TROJAN_TARGET, batch.trojan_mask[i].numpy()) for i in range(2)]
    cfg = bench.BenchConfig(samples=2, sparsities=(0.5, 0.9), n_aug=8, methods=FAST_METHODS)
    df = bench.run_trojan(cfg, model=random_testbed_model, samples=samples)
    assert len(df) == 2 * len(FAST_METHODS) * 3  # dense + two sparsities
    assert set(df.method) == set(FAST_METHODS) and set(df.model) == {"dense", "spade"}
    assert df.auc.between(0, 1).all() and df.pointing.isin([0.0, 1.0]).all()
    assert df[df.model == "dense"].sparsity.isna().all() and set(df[df.model == "spade"].sparsity) == {0.5, 0.9}
    spade = df[df.model == "spade"].set_index(["sample", "method", "sparsity"]).auc
    assert not np.allclose(spade.xs(0.5, level="sparsity"), spade.xs(0.9, level="sparsity"))  # maps differ


def test_insertion_run_scores_maps_on_the_dense_model(random_testbed_model):
    cfg = bench.BenchConfig(samples=1, sparsities=(0.9,), n_aug=8, methods=("Saliency",), steps=8)
    samples = bench.clean_samples(random_testbed_model, 1, seed=3)
    assert samples[0].target == int(random_testbed_model(samples[0].image[None]).argmax())
    df = bench.run_insertion(cfg, model=random_testbed_model, samples=samples)
    assert list(df.model) == ["dense", "spade"]
    assert df.insertion.between(0, 1).all() and df.deletion.between(0, 1).all()


def _rows() -> list[dict]:
    rows = []
    for sample, (d, s) in enumerate([(0.6, 0.9), (0.7, 0.8), (0.5, 0.9)]):
        rows.append({"sample": sample, "method": "M", "model": "dense", "sparsity": math.nan, "auc": d, "agrees": True})
        rows.append(
            {"sample": sample, "method": "M", "model": "spade", "sparsity": 0.9, "auc": s, "agrees": sample != 1}
        )
    return rows


def test_summary_pairs_samples():
    summary = bench.summarize(_rows())
    r = summary.iloc[0]
    assert r.n == 3 and r.dense == pytest.approx(0.6) and r.spade == pytest.approx(13 / 15)
    assert r.delta == pytest.approx(np.mean([0.3, 0.1, 0.4])) and r.delta_lo < r.delta < r.delta_hi
    assert r.agreement == pytest.approx(2 / 3)
    table = bench.format_table(summary)
    assert "M" in table and "86.7" in table and "60.0" in table


def test_trojan_figure_has_dense_and_spade_bars():
    fig = bench.trojan_figure(pd.DataFrame(_rows()))
    assert [t.name for t in fig.data] == ["dense", "SPADE 90%"]
    assert list(fig.data[1].y) == pytest.approx([100 * 13 / 15])


def test_cli_trojan_on_the_shipped_model_writes_every_method(tmp_path, capsys):
    out = tmp_path / "trojan.csv"
    bench.main(["trojan", "--model", "testbed_resnet", "--samples", "2", "--n-aug", "8", "--out", str(out)])
    df = pd.read_csv(out)
    assert set(df.method) == set(bench.DEFAULT_METHODS) and df["sample"].nunique() == 2
    assert (df.target == df.target.iloc[0]).all()
    assert "delta" in capsys.readouterr().out


def test_cli_insertion_on_the_shipped_model(tmp_path):
    out = tmp_path / "ins.csv"
    bench.main(
        [
            "insertion",
            "--model",
            "testbed_resnet",
            "--samples",
            "2",
            "--n-aug",
            "8",
            "--methods",
            "Saliency",
            "GradCAM",
            "--steps",
            "8",
            "--out",
            str(out),
        ]
    )
    df = pd.read_csv(out)
    assert len(df) == 2 * 2 * 2 and df.insertion.between(0, 1).all() and df.deletion.between(0, 1).all()


def test_prune_config_restricts_layers():
    layers = ["net.conv1", "net.layer3.0.conv1", "net.layer4.0.conv1", "net.fc"]
    late = bench.BenchConfig(only_layers=("net.layer4*", "net.fc")).prune_config(0.8)
    assert late.targets(layers, first_conv="net.conv1", head="net.fc") == {"net.layer4.0.conv1": 0.8, "net.fc": 0.8}
    every = bench.BenchConfig(skip_head=True).prune_config(0.8)
    assert every.targets(layers, first_conv="net.conv1", head="net.fc") == {
        "net.layer3.0.conv1": 0.8,
        "net.layer4.0.conv1": 0.8,
    }
    assert "layers=net.layer4*,net.fc" in bench.BenchConfig(only_layers=("net.layer4*", "net.fc")).prune_label


def test_bench_defaults_are_the_model_cards():
    """One source of truth: the benchmark CLI prunes and crops as the Debugger and the protocol do."""
    from spade_engine.models import spade_defaults

    card = spade_defaults("testbed_resnet")
    cfg = bench.config_from_args(bench._parser().parse_args(["trojan", "--model", "testbed_resnet"]))
    assert cfg.sparsities == (card["sparsity"],)
    assert cfg.augment_config().scale == (card["crop_min"], 1.0)
    assert bench.BenchConfig(crop_scale=(0.2, 1.0)).augment_config().scale == (0.2, 1.0)
