"""`spade explain` over folders as users have them (`report.image_files`, `report.run_explain`): every entry is
either explained or listed with its reason, whatever its name, and the report is always written."""

from __future__ import annotations

import io
import os

import numpy as np
import pandas as pd
from PIL import Image

from spade_engine import cli
from spade_engine.explain.report import image_files, printable

HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(400)


def png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def write(folder, name: bytes, data: bytes) -> None:
    with open(os.path.join(os.fsencode(folder), name), "wb") as f:
        f.write(data)


def test_every_entry_of_a_folder_is_read_or_listed_with_a_reason(tmp_path):
    for name, data in {b"a.png": png(), b"B.JPG": png(), b"c.jfif": png(), b"caf\xe9.png": png(),
                       b"IMG_1.HEIC": HEIC, b"notes.txt": b"hi", b".hidden.png": png()}.items():  # fmt: skip
        write(tmp_path, name, data)
    (tmp_path / "cats").mkdir()
    (tmp_path / "gone.png").symlink_to(tmp_path / "missing.png")
    files, skipped = image_files([tmp_path, tmp_path / "nowhere"])
    names = sorted(os.fsencode(f.name) for f in files)
    assert names == [b"B.JPG", b"IMG_1.HEIC", b"a.png", b"c.jfif", b"caf\xe9.png"]  # HEIC: load_image names it
    reasons = {os.path.basename(f): why for f, why in skipped}
    assert set(reasons) == {"cats", "gone.png", "notes.txt", "nowhere"}
    assert "broken link" in reasons["gone.png"] and "sub-folders" in reasons["cats"]
    assert "Not an image file" in reasons["notes.txt"] and "No such file" in reasons["nowhere"]


def test_printable_names_survive_utf8_writers():
    name = os.fsdecode(b"/photos/caf\xe9.png")
    text = printable(name)
    assert text == "/photos/caf\\xe9.png" and text.encode("utf-8")
    assert printable("/photos/猫.png") == "/photos/猫.png"


def test_a_latin1_name_and_a_heic_photo_do_not_stop_the_report(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    write(folder, b"caf\xe9.png", png())
    write(folder, b"IMG_2.jpg", HEIC)  # a HEIC photo renamed .jpg
    out = tmp_path / "report"
    argv = ["explain", str(folder), "--model", "testbed_resnet", "--n-aug", "4", "--methods", "Saliency",
            "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    results = pd.read_csv(out / "results.csv")
    assert list(results["file"].map(os.path.basename)) == ["caf\\xe9.png"]
    skipped = pd.read_csv(out / "skipped.csv")
    assert list(skipped["file"].map(os.path.basename)) == ["IMG_2.jpg"] and "HEIC" in skipped["reason"][0]
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "caf\\xe9.png" in index and "1 images explained, 1 skipped" in index
    assert "skipped " in capsys.readouterr().err
