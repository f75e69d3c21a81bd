"""`spade protocol` (spade_engine/cli/protocol.py): one command line for the protocol. Extra SPADE columns are the
protocol's columns for the same settings, named by what they change, with the model card's defaults; a stored
run prints as markdown; Ctrl-C and SIGTERM stop a run with one line, exit status 130 / 143, and `--resume`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from spade_engine import protocol
from spade_engine.cli import protocol as cli_protocol
from spade_engine.engine import PruneConfig
from spade_engine.models import spade_defaults

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--model", "testbed_resnet", "--n-aug", "4", "--methods", "Saliency"]


def _args(*argv: str):
    return cli_protocol.parser().parse_args(list(argv))


def test_a_variant_at_the_cards_sparsity_has_the_sweep_columns_rows(tmp_path, capsys):
    """A variant column holds exactly the protocol's SPADE-sweep rows for the same samples and settings."""
    out = tmp_path / "t.csv"
    card = spade_defaults("testbed_resnet")
    argv = [*SMALL, "--serial", "--trojan", "1", "--clean", "0", "--columns", "Dense",
            "--variant-sparsity", str(card["sparsity"]), "--out", str(out)]  # fmt: skip
    assert cli_protocol.main(argv) == 0
    df = pd.read_csv(out)
    name = f"SPADE {card['sparsity']:.0%}"
    assert list(df["column"]) == ["Dense", name] and set(df["kind"]) == {"trojan"}
    assert protocol.load_settings(out)["sparsity"] == card["sparsity"]  # the settings JSON beside it, as ever
    printed = capsys.readouterr().out
    assert "== auc" in printed and "column - Dense, paired" in printed
    cfg = protocol.ProtocolConfig("testbed_resnet", 1, 0, n_aug=4, methods=("Saliency",),
                                  columns=("Dense", "SPADE-sweep"))  # fmt: skip
    ref = protocol.run_protocol(cfg).set_index("column")
    mine = df.set_index("column")
    assert mine.loc[name, "auc"] == pytest.approx(ref.loc["SPADE-sweep", "auc"], rel=1e-6)
    assert mine.loc["Dense", "auc"] == pytest.approx(ref.loc["Dense", "auc"], rel=1e-6)


def test_defaults_are_the_model_cards():
    card = spade_defaults("testbed_resnet")
    assert cli_protocol.variants_from_args(_args(), "testbed_resnet") == ()  # no variant option, no variant
    (variant,) = cli_protocol.variants_from_args(_args("--sequential"), "testbed_resnet")
    assert variant.prune == PruneConfig(card["sparsity"], sequential=True) and variant.crop_min is None
    cfg = cli_protocol.config_from_args(_args("--trojan", "30", "--clean", "0", "--columns", "Dense"))
    assert cfg.spade_settings() == (card["sparsity"], card["crop_min"])
    assert (cfg.trojan_samples, cfg.clean_samples, cfg.columns) == (30, 0, ("Dense",))
    assert cfg.views == 64  # the testbed card names no views: the reference's 64
    assert cli_protocol.config_from_args(_args("--n-aug", "8")).views == 8
    assert cli_protocol.config_from_args(_args(), "efficientnet_lite0").views == 32  # its card's `spade.views`


def test_pruning_options_become_named_columns():
    args = _args("--variant-sparsity", "0.5", "0.9", "--only-layers", "net.layer4*", "--skip-head",
                 "--solver", "magnitude", "--seed", "3", "--crop-min", "0.2")  # fmt: skip
    v = cli_protocol.variants_from_args(args, "testbed_resnet")
    assert [x.name for x in v] == [
        "SPADE 50% net.layer4* skip_head magnitude",
        "SPADE 90% net.layer4* skip_head magnitude",
    ]
    layers = ["net.conv1", "net.layer3.0.conv1", "net.layer4.0.conv1", "net.fc"]
    assert v[1].prune.targets(layers, first_conv="net.conv1", head="net.fc") == {"net.layer4.0.conv1": 0.9}
    assert v[1].prune.solver == "magnitude"
    cfg = cli_protocol.config_from_args(args)
    assert (cfg.seed, cfg.crop_min, cfg.variants) == (3, 0.2, v)


def test_store_and_show_use_the_benchmarks_pages_file(tmp_path, monkeypatch, capsys):
    from spade_engine.protocol import store

    monkeypatch.setattr(store, "RESULTS_DIR", tmp_path)
    assert cli_protocol.out_path(_args("--store"), "testbed_vgg") == tmp_path / "testbed_vgg_protocol.csv"
    assert cli_protocol.out_path(_args("--out", "x.csv"), "testbed_vgg") == Path("x.csv")
    assert cli_protocol.out_path(_args(), "testbed_vgg") is None
    rows = [{"kind": "trojan", "sample": s, "method": "Saliency", "column": c, "agrees": True, "auc": a}
            for s in (0, 1, 2) for c, a in (("Dense", 0.8 + s / 100), ("SPADE-sweep", 0.85 + s / 100))]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "testbed_vgg_protocol.csv", index=False)
    assert cli_protocol.main(["--show", "--model", "testbed_vgg", "testbed_resnet"]) == 0
    printed = capsys.readouterr().out
    assert "## testbed_vgg_protocol.csv" in printed and "| Saliency | 81.0 [" in printed
    assert "paired difference to Dense" in printed and "no stored run at" in printed  # resnet: none here
    with pytest.raises(SystemExit, match="--out takes one --model"):
        cli_protocol.main(["--model", "a", "b", "--out", "x.csv"])


def _stop_a_run(tmp_path: Path, signum: int, extra: list[str]) -> subprocess.CompletedProcess:
    """Start `spade protocol` in a real process, send `signum` once its first sample is on disk, wait for it."""
    out = tmp_path / "run.csv"
    argv = [sys.executable, "-m", "spade_engine", "protocol", *SMALL, "--trojan", "30", "--clean", "0",
            "--columns", "Dense", "SPADE-sweep", "--out", str(out), *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPADE_OFFLINE": "1"}
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = protocol.partial_path(out)
    deadline = time.monotonic() + 300
    while not (partial.exists() and partial.stat().st_size) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1]  # still running when the first sample was saved
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def _assert_stopped_cleanly(done: subprocess.CompletedProcess, signame: str, status: int) -> None:
    lines = [line for line in done.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert done.returncode == status, done.stderr
    assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr
    last = lines[-1]
    assert last.startswith(f"spade protocol: stopped ({signame}) with ") and "--resume" in last, done.stderr
    ours = ("trojan: ", "spade protocol: stopped")  # the signal may land before the first progress line is printed
    after_start = lines[next(i for i, line in enumerate(lines) if line.startswith(ours)) :]  # Ray logs its start
    assert all(line.startswith(ours) for line in after_start), done.stderr


@pytest.mark.slow  # a real process per signal
@pytest.mark.parametrize("signum, signame, status", [(signal.SIGINT, "SIGINT", 130), (signal.SIGTERM, "SIGTERM", 143)])
def test_a_signal_stops_a_serial_run_with_one_line_and_resume_continues(tmp_path, signum, signame, status):
    done = _stop_a_run(tmp_path, signum, ["--serial"])
    _assert_stopped_cleanly(done, signame, status)
    saved = pd.read_csv(protocol.partial_path(tmp_path / "run.csv"))
    assert f"with {saved['sample'].nunique()} finished samples" in done.stderr  # what the line says is on disk


@pytest.mark.slow
@pytest.mark.parametrize("signum, signame, status", [(signal.SIGINT, "SIGINT", 130), (signal.SIGTERM, "SIGTERM", 143)])
def test_a_signal_stops_a_ray_run_with_one_line(tmp_path, signum, signame, status):
    pytest.importorskip("ray")
    _assert_stopped_cleanly(_stop_a_run(tmp_path, signum, ["--workers", "1"]), signame, status)
