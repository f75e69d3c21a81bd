"""The debugger page (pages/1_Debugger.py) through the app router, with streamlit.testing's AppTest."""

from __future__ import annotations

import pytest
import torch

from pages.ui import cache, keys
from tests.app.conftest import ROOT, TINY, make_app

FEW_VIEWS = {keys.scoped(keys.DEBUGGER, keys.N_AUG): 16}


def _texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def _engine():
    return cache.get_engine(TINY, "cpu", None)  # cached by (model key, device); the model is not part of the key


def test_page_runs_on_tiny_model_and_example(tiny_assets):
    at = make_app(**FEW_VIEWS).run()
    assert not at.exception, at.exception
    assert not at.error, _texts(at.error)
    assert at.sidebar.selectbox(key=keys.WIDGET + keys.MODEL).value == TINY
    methods = at.multiselect(key=keys.DEBUGGER_METHODS)
    assert methods.value and set(methods.options) == set(cache.saliency_methods())
    charts = {c.key for c in at.get("plotly_chart")}
    assert {keys.PREDICTIONS_CHART, keys.DEBUGGER_LAYERS_CHART} <= charts
    saliency_charts = {keys.scoped(keys.DEBUGGER_SALIENCY_CHART, m) for m in methods.value}
    assert {k for k in charts if k.startswith(keys.DEBUGGER_SALIENCY_CHART + ".")} == saliency_charts
    assert len(at.get("download_button")) == 3
    assert "SPADE ran in" in _status_labels(at)
    assert any(type(c).__name__ == "Progress" for c in at.status[0].children.values())  # st.status + st.progress


def test_slider_reprunes_from_cached_trace(tiny_assets):
    at = make_app(**FEW_VIEWS).run()
    assert not at.exception, at.exception
    engine = _engine()
    stats = dict(engine.stats)
    assert stats["traces_built"] == 1
    first = _last_result(engine, 0.90)

    at.sidebar.slider(key=keys.WIDGET + keys.scoped(keys.DEBUGGER, keys.SPARSITY)).set_value(40).run()
    assert not at.exception, at.exception
    assert engine.stats["traces_built"] == 1, "moving the slider must not rebuild the trace"
    assert engine.stats["trace_hits"] > stats["trace_hits"]
    assert engine.stats["solves"] > stats["solves"], "the new sparsity must be solved"
    second = _last_result(engine, 0.40)
    assert second.cached_trace
    assert second.config.sparsity == pytest.approx(0.40)
    reached = sum(second.layer_sparsity.values()) / len(second.layer_sparsity)
    assert reached == pytest.approx(0.40, abs=0.05) and first.total_sparsity == pytest.approx(0.90, abs=0.05)
    assert not torch.equal(first.pruned_logits, second.pruned_logits)
    assert "Reused cached trace" in _texts(at.caption) + _status_labels(at)


def _last_result(engine, sparsity: float | None = None):
    """The most recent prune, or the one at `sparsity` (the engine also pre-prunes the slider's neighbours)."""
    results = [r for _, r in reversed(engine._pruned.values())]
    return next(r for r in results if sparsity is None or r.config.sparsity == pytest.approx(sparsity))


def _status_labels(at) -> str:
    return "\n".join(s.label for s in at.status)


def test_trojan_example_shows_patch_auc(tiny_assets):
    at = make_app(**FEW_VIEWS, **{keys.SAMPLE_EXAMPLE: "ex_trojan.png"}).run()
    assert not at.exception, at.exception
    fig = at.get("plotly_chart")[1].proto.spec
    assert "trojan AUC" in fig and '"type":"rect"' in fig.replace(" ", "")


def test_bad_upload_shows_error_not_traceback(tiny_assets):
    at = make_app(**FEW_VIEWS, **{keys.SAMPLE_SOURCE: "Upload"}).run()
    assert not at.exception
    assert any("Upload an image" in i.value for i in at.info)
    at.sidebar.file_uploader(key=keys.WIDGET + keys.SAMPLE_UPLOAD).set_value(
        ("notes.png", b"this is not an image", "image/png")
    )
    at.run()
    assert not at.exception, at.exception
    assert any("Cannot use this image" in e.value and "not an image" in e.value for e in at.error)
    assert not at.get("plotly_chart")  # the page stopped before SPADE


def test_uploaded_example_is_recognised(tiny_assets):
    data = (tiny_assets / "ex_trojan.png").read_bytes()
    at = make_app(**FEW_VIEWS, **{keys.SAMPLE_SOURCE: "Upload"}).run()
    at.sidebar.file_uploader(key=keys.WIDGET + keys.SAMPLE_UPLOAD).set_value(("mine.png", data, "image/png")).run()
    assert not at.exception, at.exception
    assert "trojan patch" in _texts(at.caption)


def test_unavailable_weights_show_the_fix_and_keep_the_app(tiny_assets):
    at = make_app(**{keys.MODEL: "resnet18"}).run()
    assert not at.exception, at.exception
    message = _texts(at.error)
    assert "not available" in message and "TORCH_HOME" in message
    assert at.sidebar.selectbox(key=keys.WIDGET + keys.MODEL).value == "resnet18"  # the picker still works
    at.sidebar.selectbox(key=keys.WIDGET + keys.MODEL).set_value(TINY).run()
    assert not at.exception and not at.error


def test_checkpoint_mismatch_lists_keys(tiny_assets):
    at = make_app(**{keys.MODEL: "__checkpoint__", keys.CKPT_ARCH: "ui_tiny_arch"}).run()
    assert not at.exception
    import io

    buf = io.BytesIO()
    torch.save({"0.weight": torch.zeros(4, 3, 3, 3), "8.weight": torch.zeros(3, 16)}, buf)  # wrong shape, keys missing
    at.sidebar.file_uploader(key=keys.WIDGET + keys.CKPT_FILE).set_value(
        ("bad.pt", buf.getvalue(), "application/octet-stream")
    ).run()
    assert not at.exception, at.exception
    message = _texts(at.error)
    assert "does not match" in message and "0.weight" in message and "missing keys" in message


@pytest.mark.slow
def test_app_opens_on_the_real_network_and_a_real_photo():
    """The app opens on EfficientNet-Lite0 (models.DEFAULT_MODEL, real ImageNet weights, offline), on the shipped
    photo it is most confident about (the stated rule, shown on the page), with dense and SPADE maps."""
    from PIL import Image

    from spade_engine.models import DEFAULT_MODEL, load_model

    at = make_app(**FEW_VIEWS).run()
    assert not at.exception, at.exception
    assert not at.error, _texts(at.error)
    assert at.sidebar.selectbox(key=keys.WIDGET + keys.MODEL).value == DEFAULT_MODEL == "efficientnet_lite0"
    example = at.sidebar.selectbox(key=keys.WIDGET + keys.SAMPLE_EXAMPLE).value
    photos = [f for f, e in cache.all_examples().items() if e.get("class") is None]
    loaded = load_model(DEFAULT_MODEL)
    with torch.no_grad():  # the rule, computed here independently: the highest top-1 probability
        confidence = {f: float(loaded.model(loaded.preprocess(Image.open(ROOT / "assets/examples" / f))[None])
                                .softmax(-1).max()) for f in photos}  # fmt: skip
    assert example == max(confidence, key=confidence.get)
    assert any("Why this photo" in c.value and cache.PHOTO_RULE in c.value for c in at.caption)
    assert not any("Out of domain" in w.value for w in at.warning)
    shown = {m.label: m.value for m in at.metric}
    x = loaded.preprocess(Image.open(ROOT / "assets/examples" / example))
    with torch.no_grad():
        assert shown["Dense predicts"] == loaded.class_names[int(loaded.model(x[None]).argmax())]
    saliency = [c for c in at.get("plotly_chart") if c.key.startswith(keys.DEBUGGER_SALIENCY_CHART + ".")]
    assert len(saliency) == 2 and all("SPADE" in c.proto.spec and "Dense" in c.proto.spec for c in saliency)


@pytest.mark.slow
def test_testbed_demo_model_with_its_demo_sample():
    """The testbed v2 model opens on its demo sample (chosen by the stated rule, which the page shows) and the
    solver its card recommends (exact OBC); a photo shown to it is called out of domain."""
    from PIL import Image

    from spade_engine.models import load_model

    model = "testbed_v2_resnet"
    at = make_app(**FEW_VIEWS, **{keys.MODEL: model}).run()
    assert not at.exception, at.exception
    assert not at.error, _texts(at.error)
    example = at.sidebar.selectbox(key=keys.WIDGET + keys.SAMPLE_EXAMPLE).value
    meta = cache.all_examples()[example]
    assert example == "testbed_v2_demo.png" and meta["trojan"] and "median" in meta["demo"]["rule"]
    assert any("Why this sample" in c.value and f"sample {meta['demo']['sample']}" in c.value for c in at.caption)
    solver = at.sidebar.selectbox(key=keys.WIDGET + keys.scoped(keys.DEBUGGER, f"{keys.SOLVER}.{model}"))
    assert solver.value == "obc" and any("recommends" in c.value for c in at.caption)
    loaded = load_model(model)
    x = loaded.preprocess(Image.open(ROOT / "assets/examples" / example))
    with torch.no_grad():
        dense_cls = int(loaded.model(x[None]).argmax())
    shown = {m.label: m.value for m in at.metric}
    assert shown["Dense predicts"] == loaded.class_names[dense_cls] == loaded.class_names[meta["label"]]
    saliency = [c for c in at.get("plotly_chart") if c.key.startswith(keys.DEBUGGER_SALIENCY_CHART + ".")]
    assert saliency and all("trojan AUC" in c.proto.spec for c in saliency)
    assert not any("Out of domain" in w.value for w in at.warning)
    at.sidebar.selectbox(key=keys.WIDGET + keys.SAMPLE_EXAMPLE).set_value("photo_coffee.jpg").run()
    assert not at.exception, at.exception
    assert any("Out of domain" in w.value for w in at.warning)


def test_checkpoint_upload_runs_the_page(tiny_assets):
    import io

    from tests.app.conftest import tiny_net

    buf = io.BytesIO()
    torch.save({"state_dict": tiny_net(5).state_dict()}, buf)  # wrapped, 5 classes read from the head
    at = make_app(
        **FEW_VIEWS, **{keys.MODEL: "__checkpoint__", keys.CKPT_ARCH: "ui_tiny_arch", keys.CKPT_SIZE: 32}
    ).run()
    at.sidebar.file_uploader(key=keys.WIDGET + keys.CKPT_FILE).set_value(
        ("mine.pt", buf.getvalue(), "application/octet-stream")
    )
    at.run()
    assert not at.exception, at.exception
    assert not at.error, _texts(at.error)
    target = next(w for w in at.selectbox if (w.key or "").startswith(keys.DEBUGGER_TARGET))
    assert len(target.options) == 5 and target.options[0].startswith("class 0")


def test_torchscript_checkpoint_never_shows_a_traceback(tiny_assets, monkeypatch):
    monkeypatch.setenv("SPADE_ALLOW_TORCHSCRIPT", "1")
    at = _upload_torchscript("m.ts")
    assert not at.exception, at.exception
    assert "SPADE ran in" in _status_labels(at)
    charts, errors = {c.key for c in at.get("plotly_chart")}, _texts(at.error)
    for method in at.multiselect(key=keys.DEBUGGER_METHODS).value:  # a map, or a message naming the method
        assert keys.scoped(keys.DEBUGGER_SALIENCY_CHART, method) in charts or f"{method} failed on this model" in errors


def test_torchscript_upload_is_refused_by_default_and_the_page_says_why(tiny_assets, monkeypatch):
    monkeypatch.delenv("SPADE_ALLOW_TORCHSCRIPT", raising=False)
    loads = []
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: loads.append(a))  # must never be reached
    at = _upload_torchscript("refused.ts")
    assert not at.exception, at.exception
    assert "TorchScript files are programs" in _texts(at.error) and "SPADE_ALLOW_TORCHSCRIPT=1" in _texts(at.error)
    assert loads == [] and "SPADE ran in" not in _status_labels(at)


def _upload_torchscript(name: str):
    """The Debugger with a scripted tiny net uploaded through the checkpoint form as `name`, run once more."""
    import io

    from tests.app.conftest import tiny_net

    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(tiny_net(4)), buf)
    at = make_app(**FEW_VIEWS, **{keys.MODEL: "__checkpoint__", keys.CKPT_SIZE: 32}).run()
    at.sidebar.file_uploader(key=keys.WIDGET + keys.CKPT_FILE).set_value(
        (name, buf.getvalue(), "application/octet-stream")
    )
    return at.run()
