"""A protocol run on disk: rows appended to `<out>.partial.csv` sample by sample (so an interrupted run resumes),
the finished CSV, a re-run's columns merged into a stored run, and the settings JSON beside the CSV."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from spade_engine.engine import PruneConfig
from spade_engine.paths import ASSETS
from spade_engine.protocol.columns import exact_note, tuned_profile_path
from spade_engine.protocol.config import ATTRIBUTION, ROW_FIELDS, ProtocolConfig
from spade_engine.protocol.run import Progress, Runner, run_protocol

RESULTS_DIR = ASSETS / "benchmarks"  # <model>_protocol.csv, shown by the Benchmarks page


def run_to_csv(
    cfg: ProtocolConfig,
    out: str | Path,
    resume: bool = False,
    progress: Progress | None = None,
    runner: Runner | None = None,
) -> pd.DataFrame:
    """`run_protocol` (or `runner`, e.g. the Ray one), appending each finished sample's rows to
    `<out>.partial.csv` as it comes, so an interrupted run resumes (`resume=True`) where it stopped; returns all
    rows (the partial file is kept until the caller writes `out`, then `finish_csv` removes it).

    Raises:
        FileNotFoundError: SPADE-tuned without a tuned profile.
    """
    partial = partial_path(out)
    partial.parent.mkdir(parents=True, exist_ok=True)  # before any work: a missing folder must not end the run
    earlier = pd.read_csv(partial) if resume and partial.exists() and partial.stat().st_size else None
    if earlier is None and partial.exists():
        partial.unlink()
    done = frozenset() if earlier is None else frozenset(zip(earlier["kind"], earlier["sample"], strict=True))
    df = (runner or run_protocol)(cfg, None, progress, lambda rows: append_rows(partial, rows), done)
    return df if earlier is None else in_run_order(pd.concat([earlier, df], ignore_index=True), cfg.metrics)


def in_run_order(df: pd.DataFrame, kinds: tuple[str, ...]) -> pd.DataFrame:
    """Rows in the order an uninterrupted run lists them: by kind in `kinds` order, then by sample index (the
    order `run_samples` visits them; a sample's own rows keep theirs). A resumed run's earlier rows come from
    the partial file, in the order the samples finished (on Ray, not the run's order).

    Args:
        df: protocol rows with "kind" and "sample"; kinds: `ProtocolConfig.metrics`.
    """
    rank = df["kind"].map({k: i for i, k in enumerate(kinds)})
    ordered = df.assign(_rank=rank).sort_values(["_rank", "sample"], kind="stable")
    return ordered.drop(columns="_rank").reset_index(drop=True)


def append_rows(partial: Path, rows: list[dict]) -> None:
    """Append one sample's rows to a partial CSV under its header; a row with a field the header lacks (the
    first clean sample after trojan-only rows) rewrites the file with the union of fields, so the columns of
    files written by earlier versions (one kind's fields only) never shift."""
    new = pd.DataFrame(rows)
    if not partial.exists() or not partial.stat().st_size:
        new.reindex(columns=[c for c in ROW_FIELDS if c in new] + [c for c in new if c not in ROW_FIELDS]).to_csv(
            partial, index=False
        )
        return
    header = pd.read_csv(partial, nrows=0).columns.tolist()
    if set(new.columns) <= set(header):
        new.reindex(columns=header).to_csv(partial, mode="a", header=False, index=False)
    else:
        both = pd.concat([pd.read_csv(partial), new], ignore_index=True)
        both.reindex(columns=[c for c in ROW_FIELDS if c in both] + [c for c in both if c not in ROW_FIELDS]).to_csv(
            partial, index=False
        )


def partial_path(out: str | Path) -> Path:
    """Where a running protocol appends its rows: `<out stem>.partial.csv`."""
    out = Path(out)
    return out.with_name(out.stem + ".partial.csv")


def finish_csv(df: pd.DataFrame, out: str | Path) -> None:
    """Write the finished run to `out` and drop its partial file."""
    df.to_csv(out, index=False)
    partial_path(out).unlink(missing_ok=True)


def merge_columns(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """`old` rows with `new`'s columns replaced by `new`'s rows (a re-run of some columns on the same samples)."""
    keys = ["kind", "sample"]
    if set(map(tuple, old[keys].drop_duplicates().to_numpy())) != set(
        map(tuple, new[keys].drop_duplicates().to_numpy())
    ):
        raise ValueError("The re-run covers other samples than the stored run: run the same --trojan/--clean counts.")
    return pd.concat([old[~old["column"].isin(set(new["column"]))], new], ignore_index=True)


def save_settings(
    cfg: ProtocolConfig, csv_path: str | Path, seconds: float, extra: dict | None = None, model: nn.Module | None = None
) -> Path:
    """Write the run's settings beside its CSV (`<name>.json`), for the Benchmarks page and the notes.

    `model` (the dense model the run used) describes the SPADE-exact column; without it the model is loaded."""
    from spade_engine.models import spade_bn_correction, spade_calibration

    sparsity, crop = cfg.spade_settings()
    info = {
        "model": cfg.model,
        "sparsity": sparsity,
        "crop_min": crop,
        "calibration": spade_calibration(cfg.model),  # the card's, as every SPADE column uses (`columns`)
        "bn_correction": spade_bn_correction(cfg.model),
        "n_aug": cfg.views,
        "seed": cfg.seed,
        "tuned_profile": _project_relative(tuned_profile_path(cfg)),
        "sparse_fc_features_per_class": cfg.sparse_fc_features,
        "exact_samples": cfg.exact_samples,
        "insertion_steps": cfg.steps,
        "seconds": round(seconds, 1),
        "date": time.strftime("%Y-%m-%d"),
        "threads": torch.get_num_threads(),
        "attribution": ATTRIBUTION,
        "sweep_granularity": _granularity(PruneConfig()),
        **(
            {"exact": exact_note(model if model is not None else _dense(cfg), _input_size(cfg))}
            if "SPADE-exact" in cfg.columns
            else {}
        ),  # fmt: skip
        **(extra or {}),
    }
    path = Path(csv_path).with_suffix(".json")
    path.write_text(json.dumps(info, indent=2) + "\n")
    return path


def load_settings(csv_path: str | Path) -> dict:
    """The settings stored beside a protocol CSV ({} for runs stored without them)."""
    path = Path(csv_path).with_suffix(".json")
    return json.loads(path.read_text()) if path.exists() else {}


def _granularity(cfg: PruneConfig) -> str:
    block = "kh·kw columns per conv input channel, 1 per Linear column" if cfg.blocksize == "kernel" else cfg.blocksize
    count = "int(n·s)+1 per block (the authors')" if cfg.mask_count == "reference" else "the exact running target"
    return f"mask per block of {block}, {count}"


def _input_size(cfg: ProtocolConfig) -> int:
    from spade_engine.models import get_info

    return get_info(cfg.model).input_size


def _dense(cfg: ProtocolConfig) -> nn.Module:
    from spade_engine.models import load_model

    return load_model(cfg.model).model


def _project_relative(path: Path) -> str:
    root = ASSETS.parent
    full = path.resolve()
    return str(full.relative_to(root)) if full.is_relative_to(root) else str(path)
