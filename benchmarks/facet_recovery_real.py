"""Facet recovery on real neurons: does SPADE's visualisation of a multifaceted EfficientNet-Lite0 channel, for a
sample, show the facet that sample activates, more often than the dense visualisation does?

The testbeds' facets were built in (`facet_recovery.py`); a real network's are found:

- probe set: `--views` augmented views (the model's SPADE augmentation, crop area 0.2-1, seed 0) of every offline
  photo (`spade_engine.photos.offline_photos`: 20 photos);
- channels: the Neuron explorer's finder (`neurons.find_multifaceted`: 2-means of the contribution descriptors of a
  channel's top-32 probe images) on `--layer` (default `net.conv_head`, Lite0's last conv, 1280 channels); the
  rule takes the `--channels` best-scoring channels whose two facets' top images come from *different photos*
  (two crops of one photo are not two facets of a neuron);
- per channel and facet: the sample is the facet's top image; SPADE with the model card's settings (calibration,
  solver, views) prunes the late layers at `--sparsity` (`neurons.late_prune_config`: the reference prunes only
  the last blocks for feature visualisation, at 95%); Lucent visualises the channel (FFT + decorrelated, 224 px,
  the same seed) on the dense and on the pruned network;
- judges, each nearest by cosine to each facet's mean unit vector over the facet's probe images, the sample left
  out: "contribution" (the finder's own descriptor of the image, on the dense network, at the channel's peak) and
  "features" (the dense network's penultimate features, centred on the probe set, as the testbeds' feature judge).
  Each judge is first checked on the facets' own probe images (each left out of its prototype). The dense visualisation is one image for
  both facets; with the sample left out, the two prototypes move a little between its facets, so the dense
  image usually matches one facet of two (near 50%), at times both or neither.

Rows are appended to `--out` as they come (`--resume` continues); `--figure` writes a picture: per channel the two
facets' top images, the dense visualisation and SPADE's for each facet.

    python benchmarks/facet_recovery_real.py --out assets/benchmarks/efficientnet_lite0_facet_recovery.csv --resume
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from facet_recovery import penultimate  # noqa: E402  (benchmarks/: the testbeds' feature judge's features)

from spade_engine import featvis, neurons  # noqa: E402
from spade_engine.augment import augment  # noqa: E402
from spade_engine.engine import SpadeEngine  # noqa: E402
from spade_engine.models import load_model, spade_augment  # noqa: E402
from spade_engine.photos import offline_photos  # noqa: E402
from spade_engine.settings import SpadeSettings  # noqa: E402

FIELDS = ["channel", "score", "facet", "sample", "photo", "other_photo", "sparsity", "dense_facet", "spade_facet",
          "dense_cos", "spade_cos", "dense_facet_features", "spade_facet_features", "dense_cos_features",
          "spade_cos_features", "kept", "act_dense", "act_pruned", "seconds_spade", "seconds_vis"]  # fmt: skip
JUDGES = ("contribution", "features")


def probe_set(loaded, views: int) -> tuple[torch.Tensor, list[str]]:
    """`views` augmented views of every offline photo: images (N, 3, S, S) in [0, 1] and each view's photo."""
    aug = spade_augment(loaded.info.name)
    images, names = [], []
    for k, (name, img) in enumerate(offline_photos().items()):
        images.append(augment(loaded.preprocess(img), views, 100 + k, aug))
        names += [name] * views
    return torch.cat(images), names


def pick_channels(scores: list[neurons.FacetScore], photo: list[str], n: int) -> list[neurons.FacetScore]:
    """The `n` best-scoring channels whose two facets' top images are views of different photos."""
    return [s for s in scores if len(s.facets[1]) and photo[s.facets[0][0]] != photo[s.facets[1][0]]][:n]


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def descriptor(model, image: torch.Tensor, layer: str, channel: int) -> np.ndarray:
    """The finder's contribution descriptor of `channel` for one image (3, S, S), at the channel's peak, unit norm."""
    acts = neurons.dataset_activations(model, image[None], layer)
    return unit(neurons.facet_descriptors(model, image[None], acts, [channel], top_k=1)[channel][1][0])


def prototypes(vectors: dict[int, np.ndarray], members: list[list[int]], leave_out: int) -> np.ndarray:
    """(2, d) mean unit vector of each facet's probe images, without image `leave_out`."""
    return np.stack([np.mean([vectors[i] for i in m if i != leave_out], 0) for m in members])


def as_tensor(image: np.ndarray) -> torch.Tensor:
    """A visualisation (H, W, 3) in [0, 1] as the model's input (3, H, W)."""
    return torch.from_numpy(image).permute(2, 0, 1).float()


def judge(vis_desc: np.ndarray, prototypes: np.ndarray) -> tuple[int, float]:
    """Nearest facet (cosine to the (2, d) prototypes) and the cosine margin facet 0 minus facet 1."""
    cos = unit(prototypes) @ vis_desc
    return int(cos.argmax()), float(cos[0] - cos[1])


def run(args) -> None:
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    model, size = loaded.model, loaded.info.input_size
    settings = SpadeSettings(sparsity=args.sparsity[0]).resolved(args.model)
    images, photo = probe_set(loaded, args.views)
    print(f"probe set: {len(images)} views of {len(set(photo))} photos", file=sys.stderr)
    t0 = time.perf_counter()
    acts = neurons.dataset_activations(model, images, args.layer)
    scores = neurons.find_multifaceted(model, images, args.layer, acts=acts)
    chosen = pick_channels(scores, photo, args.channels)
    print(f"finder: {time.perf_counter() - t0:.0f} s; channels {[s.channel for s in chosen]}", file=sys.stderr)
    described = neurons.facet_descriptors(model, images, acts, [s.channel for s in chosen])
    layers = neurons.list_layers(model, size)
    head = layers[-1].name
    feats = penultimate(model, images, head)  # (N, D) the classifier's input
    centre = feats.mean(0)
    probe_features = unit((feats - centre).numpy())
    engine = SpadeEngine(model, max_pruned=1)
    config = featvis.FeatVisConfig(image_size=size, steps=args.steps, seed=args.seed)
    out = Path(args.out)
    done = set()
    if out.exists() and args.resume:
        with out.open() as f:
            done = {(r["channel"], r["facet"], r["sparsity"]) for r in csv.DictReader(f)}
    elif out.exists():
        raise SystemExit(f"{out} exists: pass --resume to continue it, or another --out.")
    new = not out.exists()
    validity = {j: [] for j in JUDGES}
    with out.open("a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if new:
            writer.writeheader()
        for s in chosen:
            c = s.channel
            target = featvis.channel_target(args.layer, c)
            top, desc = described[c]
            members = [s.facets[0].tolist(), s.facets[1].tolist()]
            probe = {"contribution": dict(zip(top.tolist(), unit(desc), strict=True)),
                     "features": {i: probe_features[i] for i in top.tolist()}}  # fmt: skip
            describe = {"contribution": lambda img, c=c: descriptor(model, img, args.layer, c),
                        "features": lambda img: unit((penultimate(model, img[None], head)[0] - centre).numpy())}  # fmt: skip
            for j in JUDGES:  # the judge on the facets' own images, each left out of its prototype
                validity[j] += [judge(probe[j][i], prototypes(probe[j], members, i))[0] == f
                                for f in (0, 1) for i in members[f]]  # fmt: skip
            dense = None
            for facet in (0, 1):
                sample = members[facet][0]
                protos = {j: prototypes(probe[j], members, sample) for j in JUDGES}
                for sparsity in args.sparsity:
                    if (str(c), str(facet), str(sparsity)) in done:
                        continue
                    if dense is None:  # one dense visualisation per channel, judged against each facet's prototypes
                        image = as_tensor(featvis.render_cached(model, target, config, model_name=args.model).image)
                        dense = {j: describe[j](image) for j in JUDGES}
                    x = images[sample]
                    cfg = neurons.late_prune_config(layers, sparsity, base=settings.prune_config())
                    t1 = time.perf_counter()
                    pruned, result = engine.prune(engine.prepare(x, settings.n_aug, 0, spade_augment(args.model)), cfg)
                    t_spade = time.perf_counter() - t1
                    vis = featvis.render_cached(pruned, target, config, model_name=args.model,
                                                variant=featvis.sample_hash(x), sparsity=repr(cfg))  # fmt: skip
                    image = as_tensor(vis.image)
                    row = dict(channel=c, score=round(s.score, 4), facet=facet, sample=sample, photo=photo[sample],
                               other_photo=photo[members[1 - facet][0]], sparsity=sparsity, kept=int(result.agrees),
                               seconds_spade=round(t_spade, 2), seconds_vis=round(vis.seconds, 1))  # fmt: skip
                    for j in JUDGES:
                        suffix = "" if j == "contribution" else f"_{j}"
                        row[f"dense_facet{suffix}"], row[f"dense_cos{suffix}"] = judge(dense[j], protos[j])
                        row[f"spade_facet{suffix}"], row[f"spade_cos{suffix}"] = judge(describe[j](image), protos[j])
                    with torch.no_grad():
                        row["act_dense"] = float(neurons.dataset_activations(model, x[None], args.layer).value[0, c])
                        row["act_pruned"] = float(neurons.dataset_activations(pruned, x[None], args.layer).value[0, c])
                    writer.writerow({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
                    f.flush()
                    print(f"channel {c} facet {facet} {sparsity:.0%}: dense -> {row['dense_facet']} / "
                          f"{row['dense_facet_features']}, SPADE -> {row['spade_facet']} / "
                          f"{row['spade_facet_features']} (contribution / features judge)", file=sys.stderr)  # fmt: skip
    for j, hits in validity.items():
        print(f"judge {j}: classifies the facets' own probe images (each left out) {np.mean(hits):.0%} "
              f"(n = {len(hits)})")  # fmt: skip
    if args.figure:
        figure(args, model, images, chosen, settings, layers, config)


def figure(args, model, images, chosen, settings, layers, config) -> None:
    """Per channel one row: the two facets' top images, the dense visualisation, SPADE's for facet A and B (from
    the visualisation cache the run filled)."""
    from PIL import Image, ImageDraw

    side, sparsity = 128, args.sparsity[0]
    sheet = Image.new("RGB", (5 * side, len(chosen) * (side + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, s in enumerate(chosen):
        target = featvis.channel_target(args.layer, s.channel)
        tiles = [images[int(s.facets[f][0])].permute(1, 2, 0).numpy() for f in (0, 1)]
        tiles.append(featvis.render_cached(model, target, config, model_name=args.model).image)
        for f in (0, 1):
            x = images[int(s.facets[f][0])]
            cfg = neurons.late_prune_config(layers, sparsity, base=settings.prune_config())
            engine = SpadeEngine(model, max_pruned=1)
            pruned, _ = engine.prune(engine.prepare(x, settings.n_aug, 0, spade_augment(args.model)), cfg)
            tiles.append(featvis.render_cached(pruned, target, config, model_name=args.model,
                                               variant=featvis.sample_hash(x), sparsity=repr(cfg)).image)  # fmt: skip
        y = row * (side + 14)
        for col, tile in enumerate(tiles):
            img = Image.fromarray(featvis.to_uint8(tile)).resize((side, side), Image.BILINEAR)
            sheet.paste(img, (col * side, y + 14))
        draw.text((2, y), f"channel {s.channel}: facet A, facet B | dense | SPADE for A, for B", fill="black")
    sheet.save(args.figure)
    print(f"figure: {args.figure}", file=sys.stderr)


def summary(path: str) -> None:
    """Facet accuracy of the dense and the SPADE visualisations per judge (`neurons.facet_recovery_table`), and how
    often the pruned copy keeps the sample's top-1."""
    import pandas as pd

    df = pd.read_csv(path)
    for r in neurons.facet_recovery_table(df).itertuples():
        split = f"; different facets on {r.channels_split} of {r.channels} channels" if r.network == "spade" else ""
        print(f"late layers at {r.sparsity:.0%}, {r.judge} judge: {r.network:>5} visualisation shows the sample's "
              f"facet {r.shows_facet}/{r.n} = {r.share:.0%} [{r.lo:.0%}, {r.hi:.0%}]{split}")  # fmt: skip
    for sparsity, g in df.groupby("sparsity"):
        print(f"late layers at {sparsity:.0%}: the pruned copy keeps the sample's top-1 on {g['kept'].mean():.0%}; "
              f"channel activation on the sample, pruned / dense, median {np.median(g['act_pruned'] / g['act_dense']):.2f}")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="assets/benchmarks/efficientnet_lite0_facet_recovery.csv")
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--layer", default="net.conv_head")
    p.add_argument("--views", type=int, default=16, help="probe views per offline photo")
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--sparsity", type=float, nargs="+", default=[0.95], help="late layers' sparsity (reference 95%%)")
    p.add_argument("--steps", type=int, default=512, help="feature-visualisation steps (reference 512)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--figure", default=None, help="write the picture here (PNG)")
    p.add_argument("--summary", action="store_true", help="only print the summary of --out")
    args = p.parse_args()
    if not args.summary:
        run(args)
    summary(args.out)


if __name__ == "__main__":
    main()
