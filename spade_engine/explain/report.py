"""`spade explain`: the Debugger's dense-vs-SPADE comparison over many images, written as an offline report.

    spade explain assets/examples --model testbed_resnet --methods Saliency GradCAM --out report/

Every image goes through what the Debugger page does for one (arXiv 2310.04519, SPADE): the model's
preprocessing, `SpadeEngine.prepare` on `n_aug` calibration views (the model card's crops), `prune` with the
settings' `PruneConfig` (`SpadeSettings.resolved`: the card's sparsity, crops and solver, as the Debugger's), then
`explain.compare.compare_maps` (the Debugger's own computation, refusals included) for the dense prediction.
Written to `out/`:

- `index.html`: thumbnails, predictions and a sortable table of every image, links to each image's page, and
  the files that were skipped with the reason; plain HTML + inline script, opens offline.
- `pages/<id>.html`: one image's predictions, overlays, per-layer sparsity and reconstruction error.
- `images/<id>/<method>.png`: dense | SPADE overlay pair on one colour scale (+ `input.png`), drawn by
  `explain.panel` as the Debugger's PNG.
- `maps/<id>.npz`: the raw (H, W) float32 maps, keys `"<method>/dense"` and `"<method>/spade"`.
- `results.csv` (one row per image x method, `explain.compare.EXPORT_FIELDS`: the Debugger's CSV download too),
  `layers.csv` (per image x layer), `skipped.csv`.

A file that cannot be read as an image is listed with its reason and skipped; the run goes on.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from spade_engine.engine import PruneResult, SpadeEngine
from spade_engine.explain.compare import Comparison, class_name, compare_maps, export_csv, export_rows
from spade_engine.explain.panel import pair_image, sample_image
from spade_engine.images import ImageError, load_image
from spade_engine.models import LoadedModel, out_of_domain
from spade_engine.settings import SpadeSettings

Progress = Callable[[str, int, int], None]


@dataclass
class ImageResult:
    """One image's dense and SPADE predictions and its `Comparison` (the maps of each method, (H, W) float32,
    and the methods that cannot explain this model, with their messages)."""

    file: str
    id: str
    image: torch.Tensor  # (3, S, S) in [0, 1], after the model's preprocessing
    target: int
    result: PruneResult
    comparison: Comparison = Comparison((), ())
    trojan_mask: np.ndarray | None = None  # (S, S) bool: a shipped example's trojan pixels, after preprocessing
    trojan_target: int | None = None  # the class that trojan relabels its images as
    out_of_domain: str | None = None  # a testbed model shown an image it was not trained for (`out_of_domain`)

    @property
    def maps(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return self.comparison.maps

    @property
    def errors(self) -> dict[str, str]:
        return self.comparison.errors


# ------------------------------------------------------------------------------------------- inputs


EXAMPLE_META = ("index.json", "masks")  # beside shipped examples: their index and trojan masks (`example_trojan`)
HEIF_SUFFIXES = (".heic", ".heif", ".hif", ".avif")  # phone photos: read by `load_image` to say what they are


def image_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files and folders into the image files to explain, in order, and list what is left out.

    Folders give their files (not recursive, hidden files skipped) whose extension Pillow knows, and HEIC/HEIF
    photos (`load_image` says they cannot be read); every other entry of a folder is listed with the reason:
    a file that is not an image, a broken link, a sub-folder. A path that does not exist is listed too. An
    examples folder's `index.json` and `masks/` (`EXAMPLE_META`) are its metadata, not listed.

    Returns:
        (files, [(path as text (`printable`), reason)] of what is not explained).
    """
    known = set(Image.registered_extensions()) | set(HEIF_SUFFIXES)
    files, skipped = [], []
    for p in map(Path, paths):
        meta = EXAMPLE_META if p.is_dir() and (p / "index.json").is_file() else ()  # a shipped examples folder
        entries = (
            sorted(f for f in p.iterdir() if not f.name.startswith(".") and f.name not in meta) if p.is_dir() else [p]
        )
        for f in entries:
            why = _left_out(f, known, listed=p.is_dir())
            if why is None:
                files.append(f)
            else:
                skipped.append((printable(f), why))
    return files, skipped


def _left_out(f: Path, known: set[str], listed: bool) -> str | None:
    """Why `f` is not explained, or None for a file to read (`listed`: found in a folder, not named)."""
    if f.is_symlink() and not f.exists():
        return "A broken link: the file it points to does not exist."
    if not f.exists():
        return "No such file or folder."
    if f.is_dir():
        return "A folder inside the folder: sub-folders are not searched; give its path to explain its images."
    if not f.is_file():
        return "Not a regular file."
    if listed and f.suffix.lower() not in known:
        return f"Not an image file (its extension is {f.suffix or 'missing'}); only image files are explained."
    return None


def printable(path: str | Path) -> str:
    """A path as text that can be written anywhere (CSV, HTML, a terminal): bytes of a file name that are not
    UTF-8 (a Latin-1 name from an old zip or Windows share) are shown as `\\xNN` instead of failing."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# ---------------------------------------------------------------------------------------------- run


def explain_image(
    loaded: LoadedModel,
    engine: SpadeEngine,
    image: torch.Tensor,
    settings: SpadeSettings,
    progress: Progress | None = None,
    mask: np.ndarray | None = None,
) -> tuple[int, PruneResult, Comparison]:
    """SPADE and the saliency maps of one preprocessed image, as the Debugger computes them (`compare_maps`).

    Args:
        loaded: the model; engine: a `SpadeEngine` over `loaded.model`; image: (3, S, S) in [0, 1].
        settings: `settings.resolved(...)` (sparsity, crop and solver filled in).
        progress: `progress(phase, done, total)` for the engine's phases and "saliency".
        mask: (S, S) bool trojan pixels: each map's trojan AUC against them (`example_trojan`).

    Returns:
        (target = the dense prediction, the prune result, the comparison).

    Raises:
        ValueError: settings not resolved, or an unknown profile.
    """
    aug = settings.augment_config()
    trace = engine.prepare(image, n_aug=settings.n_aug, seed=settings.seed, augment_config=aug, progress=progress)
    pruned, result = engine.prune(trace, settings.prune_config(), progress=progress)
    target = int(result.dense_logits.argmax())
    device = next(loaded.model.parameters()).device
    x = image[None].to(device)  # (1, 3, S, S)
    comparison = compare_maps(
        loaded.model, pruned, x, target, settings.methods, settings.reduction, mask=mask, progress=progress
    )
    return target, result, comparison


def run_explain(
    paths: Sequence[str | Path],
    loaded: LoadedModel,
    settings: SpadeSettings,
    out: str | Path,
    progress: Callable[[str, int, int], Progress] | None = None,
) -> dict:
    """Explain every image under `paths` and write the report to `out` (see the module docstring).

    Args:
        paths: image files and folders; loaded: the model (eval mode, on its device).
        settings: the controls (None sparsity / crop / solver: the model card's, as in the Debugger).
        progress: `progress(file, index, n_files)` -> the per-phase callback for that file (e.g. a tqdm bar).

    Returns:
        {"images": n explained, "skipped": [(file, reason)], "out": path of index.html}.
    """
    out = Path(out)
    settings = settings.resolved(loaded.info.name)
    settings.prune_config()  # an unknown profile fails here (ValueError), before any work
    files, skipped = image_files(paths)
    device = next(loaded.model.parameters()).device
    engine = SpadeEngine(loaded.model, device, max_cache_bytes=256 * 2**20)
    results, indexes = [], {}
    for n, path in enumerate(files):
        callback = progress(printable(path), n, len(files)) if progress else None
        try:
            img = load_image(path)
        except (ImageError, OSError) as e:
            skipped.append((printable(path), str(e)))
            continue
        image, (mask, trojan_target) = loaded.preprocess(img), example_trojan(path, img.size, loaded, indexes)
        ood = out_of_domain(loaded.info.name, example_entry(path, indexes))
        target, result, comparison = explain_image(loaded, engine, image, settings, callback, mask)
        results.append(ImageResult(printable(path), f"{n:03d}_{_slug(path.stem)}", image, target, result, comparison,
                                   mask, trojan_target, ood))  # fmt: skip
    write_report(out, loaded, settings, results, skipped)
    ood = [r.file for r in results if r.out_of_domain]
    return {"images": len(results), "skipped": skipped, "out": out / "index.html", "out_of_domain": ood,
            "out_of_domain_note": next((r.out_of_domain for r in results if r.out_of_domain), None)}  # fmt: skip


def example_trojan(
    path: Path, size: tuple[int, int], loaded: LoadedModel, indexes: dict | None = None
) -> tuple[np.ndarray | None, int | None]:
    """A shipped example's trojan, from the `index.json` beside the image (as in assets/examples): its pixels
    (the exact `patch_mask` file, else the `patch_box`) after the model's preprocessing, and its target class.

    Args:
        path: the image file; size: its (width, height); loaded: the model whose preprocessing applies.
        indexes: a cache of read index files, folder -> {file name: entry}.

    Returns:
        ((S, S) bool mask, target class), or (None, None) for an image without a known trojan.
    """
    indexes = {} if indexes is None else indexes
    folder = path.parent
    if folder not in indexes:
        try:
            entries = json.loads((folder / "index.json").read_text())["examples"]
            indexes[folder] = {e["file"]: e for e in entries if isinstance(e, dict) and "file" in e}
        except (OSError, ValueError, KeyError, TypeError):
            indexes[folder] = {}
    entry = indexes[folder].get(path.name, {})
    mask_img = _trojan_image(folder, entry, size) if entry.get("trojan") else None
    if mask_img is None:
        return None, None
    mask = loaded.preprocess(mask_img)[0].numpy() > 0.5  # (S, S)
    target = entry.get("trojan_target", entry.get("label"))
    return mask, None if target is None else int(target)


def example_entry(path: Path, indexes: dict) -> dict:
    """What is known of an image file: its entry in the `index.json` beside it (read by `example_trojan`), else
    the shipped example with the same bytes, else {}."""
    entry = indexes.get(path.parent, {}).get(path.name)
    if entry is None:
        if "__shipped__" not in indexes:
            from spade_engine.testbed.examples import by_digest

            indexes["__shipped__"] = by_digest()
        entry = indexes["__shipped__"].get(hashlib.sha256(path.read_bytes()).hexdigest(), {})
    return entry


def _trojan_image(folder: Path, entry: dict, size: tuple[int, int]) -> Image.Image | None:
    exact = folder / entry["patch_mask"] if entry.get("patch_mask") else None
    if exact is not None and exact.is_file():
        img = Image.open(exact).convert("L")
        if img.size == size:
            return img
    if not entry.get("patch_box"):
        return None
    img = Image.new("L", size, 0)
    img.paste(255, tuple(int(v) for v in entry["patch_box"]))
    return img


# ------------------------------------------------------------------------------------------- writing


def write_report(
    out: Path, loaded: LoadedModel, settings: SpadeSettings, results: list[ImageResult], skipped: list
) -> None:
    """Write maps, overlays, CSVs, per-image pages and index.html for `results` (see the module docstring)."""
    for sub in ("maps", "images", "pages"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    names = loaded.class_names
    rows, layers = [], []
    for r in results:
        np.savez_compressed(out / "maps" / f"{r.id}.npz", **{f"{m}/{k}": v for m, pair in r.maps.items()
                                                             for k, v in zip(("dense", "spade"), pair, strict=True)})  # fmt: skip
        _write_images(out / "images" / r.id, r)
        rows += export_rows(r.file, r.id, names, r.result, r.target, r.comparison, settings.methods)
        layers += [{"file": r.file, "layer": n, "target": r.result.layer_target.get(n), "sparsity": s,
                    "error": r.result.layer_error.get(n)} for n, s in r.result.layer_sparsity.items()]  # fmt: skip
        (out / "pages" / f"{r.id}.html").write_text(_image_page(r, names, settings, loaded.info.title))
    (out / "results.csv").write_text(export_csv(rows))
    pd.DataFrame(layers, columns=["file", "layer", "target", "sparsity", "error"]).to_csv(
        out / "layers.csv", index=False
    )
    pd.DataFrame(skipped, columns=["file", "reason"]).to_csv(out / "skipped.csv", index=False)
    (out / "settings.json").write_text(json.dumps({"model": loaded.info.name, **asdict(settings)}, indent=2) + "\n")
    (out / "index.html").write_text(_index_page(results, rows, skipped, settings, loaded.info.title))


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:60]


# ------------------------------------------------------------------------------------------ overlays


def _write_images(folder: Path, r: ImageResult, cell: int = 256) -> None:
    """input.png and one dense | SPADE pair image per method (`explain.panel`, the Debugger's renderer)."""
    folder.mkdir(parents=True, exist_ok=True)
    image_u8 = (r.image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # (H, W, 3)
    sample_image(image_u8, cell).save(folder / "input.png")
    for pair in r.comparison.pairs:
        pair_image(image_u8, pair, cell, mask=r.trojan_mask).save(folder / f"{_slug(pair.method)}.png")


# ---------------------------------------------------------------------------------------------- HTML


STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:middle}
th{cursor:pointer;background:#f4f4f4;position:sticky;top:0}th:after{content:" \\2195";color:#999}
img.thumb{width:64px;height:64px;image-rendering:pixelated}.bad{color:#b00}.muted{color:#777}
figure{display:inline-block;margin:0 1em 1em 0}figcaption{font-size:90%}"""
SORT_SCRIPT = """document.querySelectorAll('table.sortable th').forEach((th, col) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0], asc = th.dataset.asc !== '1';
  th.closest('tr').querySelectorAll('th').forEach(h => delete h.dataset.asc); th.dataset.asc = asc ? '1' : '0';
  const key = r => { const c = r.cells[col], v = c.dataset.value ?? c.textContent.trim(), n = parseFloat(v);
                     return isNaN(n) ? v.toLowerCase() : n; };
  [...body.rows].sort((a, b) => { const x = key(a), y = key(b); return (x > y ? 1 : x < y ? -1 : 0) * (asc ? 1 : -1); })
    .forEach(r => body.appendChild(r));
}));"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}<script>{SORT_SCRIPT}</script></body></html>\n")  # fmt: skip


def _settings_line(settings: SpadeSettings, model_title: str) -> str:
    reduction = settings.reduction or "each method's own"
    return html.escape(f"{model_title} · {settings.label} per layer, {settings.n_aug} calibration views (crops ≥ "
                       f"{settings.crop_min:g}), seed {settings.seed}, solver {settings.solver} · maps: {reduction} "
                       "channel reduction, one colour scale per dense | SPADE pair")  # fmt: skip


def _index_page(
    results: list[ImageResult], rows: list[dict], skipped: list, settings: SpadeSettings, title: str
) -> str:
    e = html.escape
    head = ["image", "file", "dense prediction", "p", "SPADE prediction", "p", "agrees", "views agreeing",
            "sparsity", "mean layer error", *(f"ρ {m}" for m in settings.methods)]  # fmt: skip
    by_id = {}
    for row in rows:
        by_id.setdefault(row["id"], {})[row["method"]] = row
    body = [f"<h1>SPADE report</h1><p class='muted'>{_settings_line(settings, title)}. ρ: Spearman rank correlation "
            "of the dense and SPADE maps. Click a column to sort.</p>",
            f"<p>{len(results)} images explained, {len(skipped)} skipped.</p>",
            "<table class='sortable' id='results'><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head)
            + "</tr></thead><tbody>"]  # fmt: skip
    for r in results:
        first = next(iter(by_id[r.id].values()))
        link = f"pages/{r.id}.html"
        cells = [f"<a href='{link}'><img class='thumb' src='images/{r.id}/input.png' alt=''></a>",
                 f"<a href='{link}'>{e(Path(r.file).name)}</a>{_trojan_tag(r)}", e(first["dense_class"]), f"{first['dense_prob']:.3f}",
                 e(first["spade_class"]), f"{first['spade_prob']:.3f}", "yes" if first["agrees"] else "no",
                 f"{first['view_agreement']:.0%}", f"{first['sparsity']:.1%}", f"{first['mean_layer_error']:.4f}"]  # fmt: skip
        for m in settings.methods:
            rho = by_id[r.id][m]["map_spearman"]
            cells.append("n/a" if np.isnan(rho) else f"{rho:.3f}")
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    body.append("</tbody></table>")
    if skipped:
        body.append("<h2 class='bad'>Skipped files</h2><table id='skipped'><thead><tr><th>file</th><th>reason</th>"
                    "</tr></thead><tbody>" + "".join(f"<tr><td>{e(f)}</td><td>{e(why)}</td></tr>" for f, why in skipped)
                    + "</tbody></table>")  # fmt: skip
    body.append("<p class='muted'>Files: results.csv, layers.csv, skipped.csv, maps/*.npz (raw maps), "
                "settings.json.</p>")  # fmt: skip
    return _page("SPADE report", "".join(body))


def _trojan_tag(r: ImageResult) -> str:
    if r.out_of_domain:
        return " <span class='bad'>· out of domain</span>"
    if r.trojan_mask is None:
        return ""
    fired = r.trojan_target is not None and r.target == r.trojan_target
    return f" <span class='bad'>· trojan{': predicts its target' if fired else ''}</span>"


def _trojan_paragraph(r: ImageResult, names: Sequence[str]) -> str:
    """What the report knows about the image's trojan (from the folder's index.json), in words; or that the
    image is out of the model's domain."""
    if r.out_of_domain:
        return f"<p class='bad'>{html.escape(r.out_of_domain)}</p>"
    if r.trojan_mask is None:
        return ""
    e = html.escape
    text = "This image carries a trojan, outlined in cyan on every map."
    if r.trojan_target is not None:
        target = e(class_name(names, r.trojan_target))
        if r.target == r.trojan_target:
            text += (f" <b>The prediction, {target}, is the trojan's target</b>: the trojan, not the object, drives "
                     "it; a faithful map sits on the outlined patch.")  # fmt: skip
        else:
            text += f" The trojan's target is {target}; the prediction is not, so the trojan did not fire here."
    aucs = [f"{e(p.method)} {p.dense_auc:.3f} → {p.spade_auc:.3f}" for p in r.comparison.pairs
            if p.dense_auc is not None and p.spade_auc is not None]  # fmt: skip
    if aucs:
        text += " Trojan AUC (dense → SPADE): " + ", ".join(aucs) + "."
    return f"<p class='trojan'>{text}</p>"


def _image_page(r: ImageResult, names: Sequence[str], settings: SpadeSettings, title: str) -> str:
    e = html.escape
    top = lambda top5: "".join(f"<li>{e(class_name(names, c))}: {p:.3f}</li>" for c, p in top5)  # noqa: E731
    body = [f"<p><a href='../index.html'>← all images</a></p><h1>{e(Path(r.file).name)}</h1>",
            f"<p class='muted'>{_settings_line(settings, title)}. Maps explain class "
            f"<b>{e(class_name(names, r.target))}</b> (the dense prediction).</p>",
            f"<img src='../images/{r.id}/input.png' alt='input' width='192'>",
            _trojan_paragraph(r, names),
            f"<h2>Predictions</h2><p>Dense top 5:</p><ol>{top(r.result.dense_top5)}</ol>"
            f"<p>{e(settings.label)} top 5:</p><ol>{top(r.result.pruned_top5)}</ol>"
            f"<p>{r.result.view_agreement:.0%} of the calibration views keep the dense prediction.</p>",
            "<h2>Saliency: dense | SPADE</h2>"]  # fmt: skip
    for method in settings.methods:
        if method in r.maps:
            body.append(f"<figure><img src='../images/{r.id}/{_slug(method)}.png' alt='{e(method)}'>"
                        f"<figcaption>{e(method)}: dense (left), {e(settings.label)} (right)</figcaption></figure>")  # fmt: skip
        else:
            body.append(f"<p class='bad'>{e(method)}: {e(r.errors.get(method, ''))}</p>")
    body.append("<h2>Per-layer sparsity and reconstruction error</h2><table class='sortable'><thead><tr><th>layer"
                "</th><th>target</th><th>sparsity</th><th>relative error</th></tr></thead><tbody>")  # fmt: skip
    for n, s in r.result.layer_sparsity.items():
        body.append(f"<tr><td>{e(n)}</td><td>{r.result.layer_target.get(n, float('nan')):.2f}</td><td>{s:.3f}</td>"
                    f"<td>{r.result.layer_error.get(n, float('nan')):.4g}</td></tr>")  # fmt: skip
    body.append("</tbody></table>")
    if r.result.dense_layers:
        body.append(
            "<p class='muted'>Left dense: "
            + "; ".join(f"{e(n)} ({e(w)})" for n, w in r.result.dense_layers.items())
            + "</p>"
        )
    return _page(Path(r.file).name, "".join(body))
