"""`python -m spade_engine.bench` is a thin alias of the protocol pipeline: its SPADE columns are the protocol's
columns for the same settings, named by what they change, and its defaults are the model card's."""

from __future__ import annotations

import pandas as pd
import pytest

from spade_engine import bench, protocol
from spade_engine.engine import PruneConfig
from spade_engine.models import spade_defaults


def _args(*argv: str):
    return bench._parser().parse_args(["trojan", *argv])


def test_the_alias_is_the_protocol_pipeline_with_the_same_rows(tmp_path, capsys):
    """A bench run's SPADE column holds exactly the protocol's SPADE-sweep rows for the same samples."""
    out = tmp_path / "t.csv"
    df = bench.main(["trojan", "--samples", "1", "--n-aug", "4", "--methods", "Saliency", "--out", str(out)])
    card = spade_defaults("testbed_resnet")
    name = f"SPADE {card['sparsity']:.0%}"
    assert list(df["column"]) == ["Dense", name] and set(df["kind"]) == {"trojan"}
    pd.testing.assert_frame_equal(pd.read_csv(out).drop(columns="seconds"), df.drop(columns="seconds"),
                                  check_dtype=False)  # fmt: skip
    assert protocol.load_settings(out)["sparsity"] == card["sparsity"]  # the settings JSON beside it, as ever
    assert "SPADE - Dense, paired" in capsys.readouterr().out
    cfg = protocol.ProtocolConfig("testbed_resnet", 1, 0, n_aug=4, methods=("Saliency",),
                                  columns=("Dense", "SPADE-sweep"))  # fmt: skip
    ref = protocol.run_protocol(cfg).set_index("column")
    mine = df.set_index("column")
    assert mine.loc[name, "auc"] == pytest.approx(ref.loc["SPADE-sweep", "auc"], rel=1e-6)
    assert mine.loc["Dense", "auc"] == pytest.approx(ref.loc["Dense", "auc"], rel=1e-6)


def test_defaults_are_the_model_cards():
    card = spade_defaults("testbed_resnet")
    (variant,) = bench.variants(_args())
    assert variant.prune == PruneConfig(card["sparsity"]) and variant.crop_min is None  # the run's: the card's
    argv = bench.protocol_argv(_args())
    assert "--sparsity" not in argv and "--crop-min" not in argv and "--seed" not in argv
    cfg = protocol.config_from_args(protocol.add_arguments(protocol.argparse.ArgumentParser()).parse_args(argv))
    assert cfg.spade_settings() == (card["sparsity"], card["crop_min"])
    assert (cfg.trojan_samples, cfg.clean_samples, cfg.columns) == (30, 0, ("Dense",))


def test_pruning_options_become_named_columns():
    v = bench.variants(_args("--sparsity", "0.5", "0.9", "--only-layers", "net.layer4*", "--skip-head",
                             "--solver", "magnitude"))  # fmt: skip
    assert [x.name for x in v] == [
        "SPADE 50% net.layer4* skip_head magnitude",
        "SPADE 90% net.layer4* skip_head magnitude",
    ]
    layers = ["net.conv1", "net.layer3.0.conv1", "net.layer4.0.conv1", "net.fc"]
    assert v[1].prune.targets(layers, first_conv="net.conv1", head="net.fc") == {"net.layer4.0.conv1": 0.9}
    assert v[1].prune.solver == "magnitude"
    argv = bench.protocol_argv(_args("--crop-scale", "0.2", "1", "--seed", "3"))
    assert argv[argv.index("--crop-min") + 1] == "0.2" and argv[argv.index("--seed") + 1] == "3"
    with pytest.raises(SystemExit, match="HI = 1"):
        bench.protocol_argv(_args("--crop-scale", "0.2", "0.8"))


def test_insertion_runs_only_clean_samples():
    argv = bench.protocol_argv(bench._parser().parse_args(["insertion", "--samples", "5"]))
    assert argv[argv.index("--trojan") + 1] == "0" and argv[argv.index("--clean") + 1] == "5"
