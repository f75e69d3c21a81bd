"""Input and output of the sparse decision layer, kept apart from the analysis: user image sets (a folder under the
server's data root, or an uploaded zip in ImageFolder layout, both with limits), and fitted layers on disk
(weights-only files, atomic writes, a byte-bounded LRU cache folder, one fit per key when sessions race).

A folder typed into the page is read only under `$SPADE_DATA_ROOT`: the path is resolved and must stay inside
the root, no component may be a symbolic link, and symbolic links inside it are skipped, so no other server
file can be reached (`resolve_data_folder`). Zips are read in memory, never extracted (`load_image_zip`).
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from spade_engine.disk_cache import DiskCache, atomic_write
from spade_engine.sparse_layer.glm import GLMPath
from spade_engine.sparse_layer.layer import SparseLayer

DATA_ROOT_ENV = "SPADE_DATA_ROOT"
DEFAULT_CACHE = Path(__file__).resolve().parents[2] / "cache" / "sparse_layer"
MAX_IMAGES = 20_000  # images in one folder or zip
ZIP_MAX_BYTES = 200 * 2**20  # the upload itself (Streamlit's default upload limit)
ZIP_MAX_UNCOMPRESSED = 1024 * 2**20  # all members together once decompressed (zip bombs)
_SKIP = ("__MACOSX", ".")  # macOS resource forks, hidden files

Preprocess = Callable  # PIL image -> (3, S, S) tensor in [0, 1] (`LoadedModel.preprocess`)
ImageSet = tuple[torch.Tensor, np.ndarray, tuple[str, ...]]  # images (N, 3, S, S), labels (N,), class names


class DataInputError(ValueError):
    """A folder or zip that cannot be used; `str(e)` is a plain message for the user."""


# ------------------------------------------------------------------------------------------ image sets


def data_root() -> Path | None:
    """The folder under which the page may read image folders (`$SPADE_DATA_ROOT`), or None when not set."""
    value = os.environ.get(DATA_ROOT_ENV, "").strip()
    return Path(value).expanduser() if value else None


def resolve_data_folder(folder: str, root: Path | None = None) -> Path:
    """The real folder `folder` names under the data root, checked against traversal and symbolic links.

    Args:
        folder: a path relative to the root (an absolute path is accepted when it lies inside the root).
        root: the data root; default `data_root()`.

    Raises:
        DataInputError: no root configured, a `..` component, a symbolic link on the way, a path outside the
            root, or no such folder.
    """
    root = root or data_root()
    if root is None:
        raise DataInputError(f"Reading folders on the server is off: the server sets no {DATA_ROOT_ENV}. "
                             "Upload a zip of your images instead.")  # fmt: skip
    try:
        root = root.resolve(strict=True)
    except OSError:
        raise DataInputError(f"The data root {DATA_ROOT_ENV} of this server does not exist.") from None
    rel = Path(folder.strip())
    if rel.is_absolute():
        if not rel.is_relative_to(root):
            raise DataInputError("That folder is outside the data root; give a folder inside it.")
        rel = rel.relative_to(root)
    if ".." in rel.parts:
        raise DataInputError("A folder path may not contain '..'; give a folder inside the data root.")
    current = root
    for part in rel.parts:
        current = current / part
        if current.is_symlink():
            raise DataInputError(f"'{part}' is a symbolic link, which is not followed; give a real folder.")
    if not current.is_dir() or not current.resolve().is_relative_to(root):
        raise DataInputError(f"There is no folder '{rel}' under the data root.")
    return current


def load_image_folder(root: str | Path, preprocess: Preprocess, max_images: int = MAX_IMAGES) -> ImageSet:
    """An ImageFolder-style folder (`root/<class>/<image>`) as tensors; symbolic links inside are skipped.

    Args:
        root: folder with one sub-folder per class (check user input with `resolve_data_folder` first).
        preprocess: `LoadedModel.preprocess` (PIL -> (3, S, S) in [0, 1]).
        max_images: refuse folders with more image files than this.

    Returns:
        images (N, 3, S, S), labels (N,), class names (sorted sub-folder names). Unreadable files are skipped.

    Raises:
        DataInputError (a ValueError): fewer than two classes with readable images, or too many files.
    """
    root = Path(root)
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(_SKIP))
    files = [(d.name, f) for d in dirs for f in sorted(d.iterdir()) if f.is_file() and not f.is_symlink()]
    _check_count(len(files), max_images)
    return _decode(((name, f.read_bytes) for name, f in files), preprocess, str(root))


def load_image_zip(data: bytes, preprocess: Preprocess, max_images: int = MAX_IMAGES, min_classes: int = 2) -> ImageSet:
    """A zip of images in ImageFolder layout (`<class>/<image>`, optionally under one top folder), read in
    memory (nothing is extracted). With `min_classes=1`, images at the top level (no class folders) count too,
    as one class named after the zip's folder (or "images").

    Raises:
        DataInputError: not a zip, over `ZIP_MAX_BYTES` / `ZIP_MAX_UNCOMPRESSED` / `max_images`, or fewer than
            `min_classes` classes with readable images.
    """
    if len(data) > ZIP_MAX_BYTES:
        raise DataInputError(f"The zip is larger than {ZIP_MAX_BYTES // 2**20} MB.")
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise DataInputError("This file is not a zip archive.") from None
    with z:
        members = [i for i in z.infolist() if not i.is_dir() and not _hidden(i.filename)]
        _check_count(len(members), max_images)
        if sum(i.file_size for i in members) > ZIP_MAX_UNCOMPRESSED:
            raise DataInputError(f"The zip unpacks to more than {ZIP_MAX_UNCOMPRESSED // 2**20} MB.")
        named = _class_names_in_zip(members)
        if min_classes < 2 and not named:  # a flat zip of images: one class
            named = [("images", i) for i in sorted(members, key=lambda i: i.filename)]
        return _decode(((cls, lambda i=i: z.read(i)) for cls, i in named), preprocess, "The zip", min_classes)


def _hidden(name: str) -> bool:
    return any(part.startswith(_SKIP) for part in PurePosixPath(name).parts)


def _class_names_in_zip(members: list[zipfile.ZipInfo]) -> list[tuple[str, zipfile.ZipInfo]]:
    """(class, member) for members at `<class>/<file>`, or `<top>/<class>/<file>` when all share one top."""
    parts = [PurePosixPath(i.filename).parts for i in members]
    tops = {p[0] for p in parts if len(p) >= 3}
    strip = 1 if len(tops) == 1 and all(len(p) >= 3 for p in parts) else 0
    return sorted(((p[strip], i) for p, i in zip(parts, members, strict=True) if len(p) - strip == 2),
                  key=lambda t: (t[0], t[1].filename))  # fmt: skip


def _check_count(n: int, max_images: int) -> None:
    if n > max_images:
        raise DataInputError(f"There are {n} files; at most {max_images} images can be used.")


def _decode(
    files: Iterable[tuple[str, Callable[[], bytes]]], preprocess: Preprocess, where: str, min_classes: int = 2
) -> ImageSet:
    from spade_engine.images import ImageError, load_image

    by_class: dict[str, list[torch.Tensor]] = {}
    for cls, read in files:
        try:
            by_class.setdefault(cls, []).append(preprocess(load_image(read())))
        except (ImageError, OSError):
            continue
    classes = tuple(sorted(c for c, imgs in by_class.items() if imgs))
    if len(classes) < min_classes:
        raise DataInputError(
            f"{where} needs at least two class sub-folders with readable images."
            if min_classes >= 2
            else f"{where} holds no readable images."
        )
    images = [img for c in classes for img in by_class[c]]
    labels = np.concatenate([np.full(len(by_class[c]), k, dtype=np.int64) for k, c in enumerate(classes)])
    return torch.stack(images), labels, classes


# ---------------------------------------------------------------------------------------------- layers


def cache_dir(override: str | Path | None = None) -> Path:
    """The layer cache folder: `override`, else `$SPADE_CACHE_DIR/sparse_layer`, else `cache/sparse_layer`."""
    if override:
        return Path(override)
    return Path(os.environ.get("SPADE_CACHE_DIR", DEFAULT_CACHE.parent)) / "sparse_layer"


def cache_key(key: str) -> str:
    """The file stem of the layer fitted under `key` (any string describing model, data and settings)."""
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def cache_path(key: str, cache_dir_: str | Path | None = None) -> Path:
    """Where the layer fitted under `key` is stored."""
    return cache_dir(cache_dir_) / f"{cache_key(key)}.pt"


_CACHES: dict[Path, DiskCache] = {}


def layer_cache(cache_dir_: str | Path | None = None) -> DiskCache:
    """The byte-bounded cache of fitted layers (`$SPADE_DISK_CACHE_MB`; one object and lock set per folder)."""
    root = cache_dir(cache_dir_)
    return _CACHES.setdefault(root, DiskCache(root, ".pt"))


def fit_cached(
    key: str, fit: Callable[[], tuple[SparseLayer, GLMPath]], cache_dir_: str | Path | None = None
) -> tuple[SparseLayer, GLMPath]:
    """The layer and path stored under `key`, or `fit()` now (then stored); sessions asking for the same missing
    key at once wait for one fit. A damaged or path-less file is fitted again."""
    store, stem = layer_cache(cache_dir_), cache_key(key)
    with store.locks.hold(stem):
        path = store.hit(stem)
        if path is not None:
            try:
                layer, glm = load_layer(path)
                if glm is not None:
                    return layer, glm
            except (OSError, RuntimeError, KeyError):
                pass  # evicted meanwhile or damaged: fit again
        layer, glm = fit()
        store.put(stem, lambda f: torch.save(_layer_dict(layer, glm), f))
    return layer, glm


def save_layer(layer: SparseLayer, path: str | Path, path_data: GLMPath | None = None) -> Path:
    """Save atomically as a weights-only dict of tensors and plain values (`torch.load(weights_only=True)`)."""
    return atomic_write(path, lambda f: torch.save(_layer_dict(layer, path_data), f))


def _layer_dict(layer: SparseLayer, path_data: GLMPath | None) -> dict:
    t = lambda a: torch.as_tensor(np.asarray(a))  # noqa: E731
    obj = {"weight": t(layer.weight), "bias": t(layer.bias), "mean": t(layer.mean), "std": t(layer.std),
           "lam": layer.lam, "alpha": layer.alpha, "class_names": list(layer.class_names),
           "val_acc": layer.val_acc, "dense_val_acc": layer.dense_val_acc}  # fmt: skip
    if path_data is not None:
        obj["path"] = {"lambdas": t(path_data.lambdas), "weights": t(path_data.weights), "biases": t(path_data.biases),
                       "train_acc": t(path_data.train_acc), "val_acc": t(path_data.val_acc), "alpha": path_data.alpha}  # fmt: skip
    return obj


def load_layer(path: str | Path) -> tuple[SparseLayer, GLMPath | None]:
    """Inverse of `save_layer`."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    n = lambda k, d=obj: d[k].numpy()  # noqa: E731
    layer = SparseLayer(n("weight"), n("bias"), n("mean"), n("std"), float(obj["lam"]), float(obj["alpha"]),
                        tuple(obj["class_names"]), float(obj["val_acc"]), float(obj["dense_val_acc"]))  # fmt: skip
    p = obj.get("path")
    glm = None if p is None else GLMPath(n("lambdas", p), n("weights", p), n("biases", p), n("train_acc", p),
                                         n("val_acc", p), float(p["alpha"]))  # fmt: skip
    return layer, glm
