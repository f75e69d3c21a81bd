"""Sparse decision layer: the GLM path, the chosen layer, explanations, the sparse-head model, save/load, the
safe reading of user image sets (data root, zip limits), the bounded layer cache and the thread-count race."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spade_engine import sparse_layer as sl

from .conftest import tiny_classifier

K, D = 3, 12


def _glm_data(n: int, seed: int):
    """Standardised-ish features; labels from a sparse multinomial model (noisy: the MLE exists)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.zeros(K, D)
    w[0, 0], w[1, 1], w[2, 2] = 2.0, 2.0, 1.5
    w[:, 3] = torch.tensor([1.0, -1.0, 0.5])
    z = torch.randn(n, D, generator=g)
    y = torch.multinomial(F.softmax(z @ w.T, 1), 1, generator=g)[:, 0]
    return z, y


@pytest.fixture(scope="module")
def path():
    (z, y), (zv, yv) = _glm_data(600, 0), _glm_data(300, 1)
    return sl.fit_glm_path(z, y, zv, yv, K, sl.GLMConfig(n_lambdas=15, lr=1.0, epochs=200, batch_size=600)), (z, y)


def test_path_is_monotone_in_sparsity(path):
    p, _ = path
    assert np.all(np.diff(p.lambdas) < 0)  # largest lambda first
    assert p.nnz[0] == 0  # lambda_max: every weight is zero
    assert p.nnz[1] > 0  # just below it the first features enter
    assert np.all(np.diff(p.nnz) >= 0), p.nnz  # non-zeros never decrease as lambda decreases
    assert p.val_acc[-1] > p.val_acc[0] + 0.2
    # the first features to enter are the informative ones
    first = np.flatnonzero(np.abs(p.weights[np.argmax(p.nnz > 0)]).sum(0))
    assert set(first) <= {0, 1, 2, 3}


def test_densest_point_matches_logistic_regression(path):
    p, (z, y) = path
    ref = torch.nn.Linear(D, K)
    opt = torch.optim.LBFGS(
        ref.parameters(), max_iter=500, tolerance_grad=1e-10, tolerance_change=1e-12, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(ref(z), y)
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        ref_prob = F.softmax(ref(z), 1)
    prob = F.softmax(z @ torch.as_tensor(p.weights[-1]).T + torch.as_tensor(p.biases[-1]), 1)
    assert (prob.argmax(1) == ref_prob.argmax(1)).float().mean() >= 0.98
    assert (prob - ref_prob).abs().max() < 0.05
    assert p.train_acc[-1] == pytest.approx(float((ref_prob.argmax(1) == y).float().mean()), abs=0.01)


def test_choose_point_respects_budget():
    w = np.zeros((4, 2, 5))
    w[1, 0, 0] = w[2, :, :2] = w[3] = 1.0  # nnz 0, 1, 4, 10 -> features per class 0, 0.5, 2, 5
    p = sl.GLMPath(np.array([4.0, 3, 2, 1]), w, np.zeros((4, 2)), np.zeros(4), np.array([0.5, 0.7, 0.7, 0.9]), 0.99)
    assert sl.choose_point(p, max_features_per_class=2) == 1  # tie on val acc: the sparser point
    assert sl.choose_point(p, max_features_per_class=10) == 3
    assert sl.choose_point(p, max_features_per_class=0.1) == 1  # nothing within budget: sparsest non-empty


def _layer(seed: int = 0) -> sl.SparseLayer:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(4, 32)).astype(np.float32) * (rng.random((4, 32)) < 0.2)
    return sl.SparseLayer(
        w,
        rng.normal(size=4).astype(np.float32),
        rng.normal(size=32).astype(np.float32),
        rng.uniform(0.5, 2, 32).astype(np.float32),
        0.1,
        0.99,
        ("a", "b", "c", "d"),
    )


def test_layer_explanations_are_consistent():
    layer = _layer()
    x = np.random.default_rng(1).normal(size=(5, 32)).astype(np.float32)
    contrib = layer.contributions(x[0])
    np.testing.assert_allclose(contrib.sum(1) + layer.bias, layer.logits(x)[0], rtol=1e-5, atol=1e-5)
    assert np.count_nonzero(contrib) <= layer.nnz
    feats = layer.class_features(2)
    assert len(feats) == layer.features_per_class[2]
    assert [abs(w) for _, w in feats] == sorted((abs(w) for _, w in feats), reverse=True)
    with torch.no_grad():
        np.testing.assert_allclose(layer.as_linear()(torch.as_tensor(x)).numpy(), layer.logits(x), rtol=1e-4, atol=1e-4)
    data = sl.FeatureSet(x, np.zeros(5, np.int64), np.zeros(5, np.int64), layer.class_names)
    top = sl.top_activating(layer, data, 7, n=3)
    assert list(top) == list(np.argsort(-x[:, 7])[:3])


def test_save_load_roundtrip(tmp_path, path):
    layer, glm = _layer(), path[0]
    file = sl.save_layer(layer, sl.cache_path("model=x;data=y", tmp_path), glm)
    torch.load(file, weights_only=True)  # weights-only loadable
    back, back_path = sl.load_layer(file)
    np.testing.assert_array_equal(back.weight, layer.weight)
    assert back.class_names == layer.class_names and back.lam == layer.lam
    np.testing.assert_array_equal(back_path.nnz, glm.nnz)
    assert sl.cache_path("a", tmp_path) != sl.cache_path("b", tmp_path)


def test_pipeline_on_tiny_model():
    model = tiny_classifier(num_classes=3, seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    images = torch.rand(240, 3, 16, 16, generator=g)
    labels = (images[:, 0].mean((1, 2)) > images[:, 1].mean((1, 2))).long() + (images[:, 2].mean((1, 2)) > 0.5).long()
    data = sl.extract_features(model, images, labels, ("x", "y", "z"), batch_size=64)
    assert data.features.shape == (240, 16)
    tr, va = sl.split_train_val(len(data), 0.25, seed=0)
    calls = []
    layer, glm = sl.fit_sparse_layer(data.subset(tr), data.subset(va), sl.GLMConfig(n_lambdas=10, epochs=50),
                                     max_features_per_class=5, progress=lambda *a: calls.append(a))  # fmt: skip
    assert calls[-1] == ("path", 10, 10)
    assert 0 < layer.features_per_class.mean() <= 5, glm.features_per_class
    sparse = sl.sparse_head_model(model, layer)
    with torch.no_grad():
        out = sparse(images[:8]).numpy()
    np.testing.assert_allclose(out, layer.logits(data.features[:8]), rtol=1e-4, atol=1e-4)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])  # the original model is untouched


def test_trojan_finding_on_synthetic_features():
    rng = np.random.default_rng(0)
    n, target = 400, 1
    feats = rng.normal(size=(n, 8)).astype(np.float32)
    true_class = rng.integers(0, 3, n)
    is_trojan = (rng.random(n) < 0.3) & (true_class != target)
    feats[is_trojan, 5] += 3.0  # feature 5 fires on the patch
    w = np.zeros((3, 8), np.float32)
    w[target, 5], w[target, 2], w[0, 0] = 1.5, 0.8, 1.0
    layer = sl.SparseLayer(w, np.zeros(3, np.float32), np.zeros(8, np.float32), np.ones(8, np.float32), 0.1, 0.99,
                           ("a", "b", "c"))  # fmt: skip
    data = sl.FeatureSet(feats, np.where(is_trojan, target, true_class), np.full(n, target), ("a", "b", "c"))
    f = sl.trojan_finding(layer, data, is_trojan, true_class, target)
    assert f.features == (5, 2) and f.firing == (5,) and f.trojan_features == (5,) and f.found
    assert f.effect[0] > 2.5 and abs(f.effect[1]) < 0.5
    assert f.top_trojan_share[0] > 0.9 and f.top_trojan_share[1] < 0.5
    assert f.dense_attack_success == 1.0 and 0 < f.sparse_attack_success <= 1.0


def test_head_inputs_and_feature_model(tiny_model):  # hook removal: tests/engine/test_hook_hygiene.py
    with sl.capture_head_inputs(tiny_model) as store:
        tiny_model(torch.rand(2, 3, 16, 16))
        assert store[0].shape == (2, 16)
    assert sl.head_linear(tiny_model)[0] == "net.7"
    assert sl.feature_model(tiny_model)(torch.rand(2, 3, 16, 16)).shape == (2, 16)


def test_load_image_folder(tmp_path):
    from PIL import Image
    from torchvision.transforms import functional as TF

    for cls, colour in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.new("RGB", (20 + i, 16), colour).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    images, labels, names = sl.load_image_folder(tmp_path, lambda im: TF.to_tensor(TF.resize(im, [8, 8])))
    assert names == ("cats", "dogs") and list(labels) == [0, 0, 1, 1]
    assert images.shape == (4, 3, 8, 8) and images[0, 0].mean() > 0.9 and images[3, 2].mean() > 0.9
    with pytest.raises(ValueError):
        sl.load_image_folder(tmp_path / "cats", lambda im: TF.to_tensor(im))


# ------------------------------------------------------------------------------- user image sets (safety)


def _png(colour) -> bytes:
    import io as _io

    from PIL import Image

    buf = _io.BytesIO()
    Image.new("RGB", (12, 10), colour).save(buf, format="PNG")
    return buf.getvalue()


def _to_tensor(im):
    from torchvision.transforms import functional as TF

    return TF.to_tensor(TF.resize(im, [8, 8]))


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    """A data root with `set/cats`, `set/dogs`, and a secret folder of images next to (outside) the root."""
    root, secret = tmp_path / "data", tmp_path / "secret"
    for folder in (root / "set" / "cats", root / "set" / "dogs", secret / "a", secret / "b"):
        folder.mkdir(parents=True)
        (folder / "0.png").write_bytes(_png((200, 0, 0) if "cats" in str(folder) else (0, 0, 200)))
    monkeypatch.setenv(sl.DATA_ROOT_ENV, str(root))
    return root, secret


def test_folders_are_read_only_under_the_data_root(data_root):
    root, secret = data_root
    assert sl.resolve_data_folder("set") == root / "set"
    assert sl.resolve_data_folder(str(root / "set")) == root / "set"  # an absolute path inside the root is fine
    _, labels, names = sl.load_image_folder(sl.resolve_data_folder("set"), _to_tensor)
    assert names == ("cats", "dogs") and list(labels) == [0, 1]
    for bad, why in [("../secret", "'..'"), ("set/../../secret", "'..'"), (str(secret), "outside the data root"),
                     ("/", "outside the data root"), ("nope", "no folder")]:  # fmt: skip
        with pytest.raises(sl.DataInputError, match=why):
            sl.resolve_data_folder(bad)


def test_symbolic_links_are_not_followed(data_root):
    root, secret = data_root
    (root / "link").symlink_to(secret, target_is_directory=True)
    with pytest.raises(sl.DataInputError, match="symbolic link"):
        sl.resolve_data_folder("link")
    (root / "set" / "cats" / "leak.png").symlink_to(secret / "a" / "0.png")  # a file link inside a good folder
    (root / "set" / "birds").symlink_to(secret / "b", target_is_directory=True)  # a class-folder link
    images, labels, names = sl.load_image_folder(sl.resolve_data_folder("set"), _to_tensor)
    assert names == ("cats", "dogs") and len(labels) == 2  # neither link was read


def test_no_data_root_means_no_folder_reads(monkeypatch, tmp_path):
    monkeypatch.delenv(sl.DATA_ROOT_ENV, raising=False)
    with pytest.raises(sl.DataInputError, match="SPADE_DATA_ROOT"):
        sl.resolve_data_folder(str(tmp_path))


def _zip(entries: dict[str, bytes]) -> bytes:
    import io as _io
    import zipfile

    buf = _io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_zip_upload_in_image_folder_layout(tmp_path):
    red, blue = _png((250, 0, 0)), _png((0, 0, 250))
    flat = _zip({"cats/1.png": red, "cats/2.png": red, "dogs/1.png": blue, "__MACOSX/cats/._1.png": b"x",
                 "cats/notes.txt": b"not an image", "../../escape/1.png": red})  # fmt: skip
    images, labels, names = sl.load_image_zip(flat, _to_tensor)
    assert names == ("cats", "dogs") and list(labels) == [0, 0, 1]
    assert images[0, 0].mean() > 0.9 and images[2, 2].mean() > 0.9
    assert not (tmp_path / "escape").exists() and not any(tmp_path.iterdir())  # nothing is extracted
    nested = _zip({"photos/cats/1.png": red, "photos/dogs/1.png": blue})
    assert sl.load_image_zip(nested, _to_tensor)[2] == ("cats", "dogs")


def test_a_probe_zip_may_be_flat_or_hold_one_folder():
    """The Neuron explorer's probe zips (`min_classes=1`): any images count, in folders or not; none is refused."""
    red, blue = _png((250, 0, 0)), _png((0, 0, 250))
    images, labels, names = sl.load_image_zip(_zip({"a.png": red, "b.png": blue, "n.txt": b"x"}), _to_tensor,
                                              min_classes=1)  # fmt: skip
    assert len(images) == 2 and names == ("images",) and images[1, 2].mean() > 0.9  # b.png, in name order
    assert len(sl.load_image_zip(_zip({"trip/1.png": red}), _to_tensor, min_classes=1)[0]) == 1
    with pytest.raises(sl.DataInputError, match="no readable images"):
        sl.load_image_zip(_zip({"n.txt": b"x"}), _to_tensor, min_classes=1)


def test_zip_limits_and_bad_zips_get_plain_messages(monkeypatch):
    from spade_engine.sparse_layer import io as sl_io

    red = _png((250, 0, 0))
    with pytest.raises(sl.DataInputError, match="not a zip"):
        sl.load_image_zip(b"PK but not really", _to_tensor)
    with pytest.raises(sl.DataInputError, match="at most 3 images"):
        sl.load_image_zip(_zip({f"c{i % 2}/{i}.png": red for i in range(4)}), _to_tensor, max_images=3)
    with pytest.raises(sl.DataInputError, match="two class"):
        sl.load_image_zip(_zip({"cats/1.png": red}), _to_tensor)
    bomb = _zip({"a/zeros.png": b"\0" * 3_000_000, "b/1.png": red})  # 3 MB that compresses to a few KB
    assert len(bomb) < 50_000
    monkeypatch.setattr(sl_io, "ZIP_MAX_UNCOMPRESSED", 2_000_000)
    with pytest.raises(sl.DataInputError, match="unpacks to more than"):
        sl.load_image_zip(bomb, _to_tensor)
    monkeypatch.setattr(sl_io, "ZIP_MAX_BYTES", 1000)
    with pytest.raises(sl.DataInputError, match="larger than"):
        sl.load_image_zip(bomb, _to_tensor)


def test_two_fits_at_once_leave_the_thread_count_alone(path):
    """The fit never changes torch's process-wide thread count (it used to set 1 and restore, which two fits at
    once could leave at 1 for good): a watcher sees the same count during and after two concurrent fits."""
    import threading

    before, seen, stop = torch.get_num_threads(), set(), threading.Event()
    (z, y), (zv, yv) = _glm_data(300, 0), _glm_data(100, 1)

    def watch() -> None:
        while not stop.is_set():
            seen.add(torch.get_num_threads())

    def fit() -> None:
        sl.fit_glm_path(z, y, zv, yv, K, sl.GLMConfig(n_lambdas=4, epochs=20))

    watcher = threading.Thread(target=watch)
    watcher.start()
    fits = [threading.Thread(target=fit) for _ in range(2)]
    for t in fits:
        t.start()
    for t in fits:
        t.join()
    stop.set()
    watcher.join()
    assert seen == {before} and torch.get_num_threads() == before


def test_cached_fit_runs_once_for_racing_sessions_and_survives_a_restart(tmp_path):
    import threading

    (z, y), (zv, yv) = _glm_data(300, 0), _glm_data(100, 1)
    calls = []

    def fit():
        calls.append(1)
        train = sl.FeatureSet(z.numpy(), y.numpy(), y.numpy(), tuple(map(str, range(K))))
        val = sl.FeatureSet(zv.numpy(), yv.numpy(), yv.numpy(), tuple(map(str, range(K))))
        return sl.fit_sparse_layer(train, val, sl.GLMConfig(n_lambdas=4, epochs=20))

    out = []
    threads = [threading.Thread(target=lambda: out.append(sl.fit_cached("k", fit, tmp_path))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(out) == 3
    assert all(np.array_equal(o[0].weight, out[0][0].weight) for o in out)
    sl.io._CACHES.clear()  # a new process
    again = sl.fit_cached("k", fit, tmp_path)
    assert len(calls) == 1 and np.array_equal(again[1].weights, out[0][1].weights)
    assert [p.name for p in tmp_path.iterdir()] == [sl.cache_path("k", tmp_path).name]  # no temporary file left
