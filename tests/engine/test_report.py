"""`spade explain` (spade_engine/explain/report.py, spade_engine/cli/explain.py) on three shipped examples and a
broken file: the report, CSVs and raw maps, the broken file listed and skipped, the Debugger's command line, and the
offline index.html sorted in a real browser. (The maps are `explain.compare.compare_maps`', the Debugger's own.)"""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from spade_engine import cli
from spade_engine.cli import explain as explain_cli
from spade_engine.models import spade_defaults
from spade_engine.paths import ASSETS
from spade_engine.settings import SpadeSettings

EXAMPLES = ["testbed_c0_f0.png", "testbed_c1_f0_trojan.png", "testbed_c4_f1.png"]
METHODS = ["Saliency", "LRP"]  # LRP's maps are signed: the diverging overlay path too
N_AUG = 8


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One `spade explain` run over a folder with three shipped examples and a text file named like a PNG."""
    folder = tmp_path_factory.mktemp("images")
    for name in EXAMPLES:
        shutil.copy(ASSETS / "examples" / name, folder / name)
    (folder / "broken.png").write_text("this is not an image")
    out = tmp_path_factory.mktemp("report")
    argv = ["explain", str(folder), "--model", "testbed_resnet", "--n-aug", str(N_AUG), "--methods", *METHODS,
            "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    return folder, out


def test_explain_writes_the_report_csv_and_raw_maps(report):
    _, out = report
    results = pd.read_csv(out / "results.csv")
    assert len(results) == len(EXAMPLES) * len(METHODS)
    assert sorted(results["file"].map(lambda f: f.rsplit("/", 1)[-1]).unique()) == sorted(EXAMPLES)
    card = spade_defaults("testbed_resnet")
    assert results["sparsity"].between(card["sparsity"] - 0.02, card["sparsity"] + 0.02).all()  # reached ≈ target
    assert results["map_spearman"].between(-1, 1).all() and results["view_agreement"].between(0, 1).all()
    layers = pd.read_csv(out / "layers.csv")
    assert layers.groupby("file").size().nunique() == 1 and (layers["error"] >= 0).all()
    index = (out / "index.html").read_text()
    assert "http" not in index.split("<body>")[1]  # nothing to fetch: opens offline
    for image_id in results["id"].unique():
        assert f"pages/{image_id}.html" in index and (out / "pages" / f"{image_id}.html").exists()
        assert (out / "images" / image_id / "input.png").exists()
        maps = np.load(out / "maps" / f"{image_id}.npz")
        assert sorted(maps.files) == sorted(f"{m}/{v}" for m in METHODS for v in ("dense", "spade"))
        assert maps["Saliency/dense"].shape == (64, 64) and (maps["Saliency/dense"] >= 0).all()
        assert (maps["LRP/dense"] < 0).any()  # signed, as the method's own reduction says
        for method in METHODS:
            assert (out / "images" / image_id / f"{method}.png").exists()


def test_a_bad_file_is_reported_with_its_reason_and_skipped(report):
    folder, out = report
    skipped = pd.read_csv(out / "skipped.csv")
    assert list(skipped["file"]) == [str(folder / "broken.png")]
    assert "not an image" in skipped["reason"].iloc[0]
    index = (out / "index.html").read_text()
    assert "broken.png" in index and "3 images explained, 1 skipped" in index


def test_the_debuggers_command_line_parses_back_to_its_settings():
    settings = SpadeSettings(0.75, 32, 7, 0.5, ("Saliency", "GradCAM"), "signed", False, True, 0.02, "obc")
    line = explain_cli.explain_command("testbed_resnet", settings, folder="my images")
    assert line.startswith("spade explain 'my images' --model testbed_resnet")
    ap = explain_cli.argparse.ArgumentParser()
    explain_cli.explain_parser(ap.add_subparsers(dest="command"))
    args = ap.parse_args(explain_cli.shlex.split(line)[1:])
    assert SpadeSettings.from_args(args) == settings and args.paths == ["my images"]
    profile = explain_cli.explain_command(
        None, SpadeSettings(0.9, 64, 0, 1.0, profile="p"), checkpoint="m.pt", arch="resnet18"
    )
    assert "--checkpoint m.pt --arch resnet18 --profile p" in profile and "--sparsity" not in profile


def test_bad_options_end_with_a_message_not_a_traceback(tmp_path, capsys):
    for argv, message in [
        (["--model", "testbed_resnet", "--sparsity", "90"], "--sparsity must be in [0, 1)"),
        (["--checkpoint", str(tmp_path / "m.pt")], "--checkpoint needs --arch"),
        (["--model", "no_such_model"], "Cannot load the model: Unknown model 'no_such_model'"),
    ]:
        assert cli.main(["explain", str(tmp_path), *argv, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_python_dash_m_is_the_spade_command():
    done = subprocess.run([sys.executable, "-m", "spade_engine", "--help"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "{explain,protocol}" in done.stdout


def test_index_table_sorts_in_a_browser(report):
    from tests.e2e.server import CHROMIUM, CHROMIUM_ARGS, require_browser

    require_browser()
    from playwright.sync_api import sync_playwright

    _, out = report
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto((out / "index.html").as_uri())
        column = 9  # mean layer error: distinct per image

        def values() -> list[float]:
            return [float(v) for v in page.locator(f"#results tbody tr td:nth-child({column + 1})").all_inner_texts()]

        page.locator("#results th").nth(column).click()
        assert values() == sorted(values())
        page.locator("#results th").nth(column).click()
        assert values() == sorted(values(), reverse=True)
        page.locator("#results tbody a").first.click()
        assert "Per-layer sparsity" in page.content()
        browser.close()


def test_explain_says_a_photo_is_out_of_a_testbed_models_domain(tmp_path, capsys):
    """A testbed model shown a photo says so (stderr, the index and the image's page); a copy of a shipped testbed
    example, recognised by its bytes, is in its domain."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(ASSETS / "examples" / "photo_coffee.jpg", folder / "holiday.jpg")
    shutil.copy(ASSETS / "examples" / "testbed_c0_f0.png", folder / "scene.png")
    out = tmp_path / "out"
    argv = ["explain", str(folder), "--model", "testbed_resnet", "--n-aug", "4", "--methods", "Saliency",
            "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "1 of 2 images are out of domain" in err and "trained on generated testbed scenes" in err
    index = (out / "index.html").read_text()
    assert index.count("out of domain") == 1  # the photo's row only
    pages = {p.name: p.read_text() for p in (out / "pages").glob("*.html")}
    assert any("holiday" in n and "Out of domain" in t for n, t in pages.items())
    assert not any("scene" in n and "Out of domain" in t for n, t in pages.items())
