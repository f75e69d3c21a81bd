"""No hook is left behind (Captum's test_hook_removal.py): every module of `spade_engine` that hooks a network
goes through `spade_engine.hooks`, and each is run here once normally and once with a forward that raises;
afterwards the network it hooked has no forward, pre-forward or backward hooks left."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spade_engine import featvis as fv
from spade_engine import hooks, neurons, pathways
from spade_engine import sparse_layer as sl
from spade_engine.engine import SpadeEngine
from spade_engine.saliency import gradcam, support
from spade_engine.saliency._canonical import attribution_copy
from spade_engine.saliency.layers import default_layer, feature_layers
from tests.engine.nets import NETS, sample


class Boom(RuntimeError):
    pass


def hook_count(model: nn.Module) -> int:
    """Every kind of module hook PyTorch keeps."""
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(m, kind)) for m in model.modules() for kind in kinds)


def _run_in(context, model):
    with context:
        model(sample()[None])


def _engine(model):
    engine = SpadeEngine(model, "cpu", batch_size=8)
    return engine._work, lambda: engine.prune(engine.prepare(sample(), n_aug=8), 0.5)  # the Hessian pass


def _saliency_layers(model):
    canonical = attribution_copy(model, sample()[None])
    return canonical.module, lambda: feature_layers(canonical)


def _gradcam(model):
    canonical = attribution_copy(model, sample()[None])
    layer = default_layer(canonical)
    return canonical.module, lambda: gradcam._activation_and_gradient(canonical, layer, sample()[None], 0)


def _sparse_layer(model):
    def run():
        with sl.capture_head_inputs(model):
            model(sample()[None])

    return model, run


def _featvis(model):
    def run():
        with fv.capture(model, ["net.0", "net.3"]):
            model(sample()[None])

    return model, run


USERS = {
    "hooks.forward_hooks": lambda m: (
        m,
        lambda: _run_in(hooks.forward_hooks(dict(m.named_modules()), lambda *a: None), m),
    ),
    "hooks.forward_pre_hooks": lambda m: (m, lambda: _run_in(hooks.forward_pre_hooks({"": m}, lambda *a: None), m)),
    "hooks.capture": lambda m: (m, lambda: _run_in(hooks.capture(dict(m.named_modules()), "input"), m)),
    "hooks.layer_trace": lambda m: (m, lambda: hooks.layer_trace(m, sample()[None])),
    "engine.prune": _engine,
    "saliency.layers.feature_layers": _saliency_layers,
    "saliency.gradcam": _gradcam,
    "saliency.support.activation_calls": lambda m: (m, lambda: support.activation_calls(m, sample()[None])),
    "pathways.contributions": lambda m: (m, lambda: pathways.contributions(m, sample()[None], 0)),
    "neurons.layer_inputs": lambda m: (m, lambda: neurons._layer_inputs(m, m.net[0], sample()[None])),
    "featvis.capture": _featvis,
    "sparse_layer.capture_head_inputs": _sparse_layer,
}


BATCH_FAILURES = {"engine.prune"}  # fail in the Hessian pass (a batch of views), after the 1-image layer trace


def _explode(network: nn.Module, batches_only: bool = False) -> None:
    """Make the network's classifier head raise (on every call, or on batches of more than one image); set on
    the instance, so no hook is involved."""
    head = [m for m in network.modules() if isinstance(m, nn.Linear)][-1]
    forward = head.forward

    def failing(x, *args, **kwargs):
        if batches_only and x.shape[0] == 1:
            return forward(x, *args, **kwargs)
        raise Boom("the forward failed")

    head.forward = failing


@pytest.mark.parametrize("user", list(USERS))
def test_no_hook_is_left_after_a_normal_call(user):
    network, call = USERS[user](NETS["resnet"]())
    call()
    assert hook_count(network) == 0


@pytest.mark.parametrize("user", list(USERS))
def test_no_hook_is_left_after_an_exception(user):
    network, call = USERS[user](NETS["resnet"]())
    _explode(network, batches_only=user in BATCH_FAILURES)
    with pytest.raises(Boom):
        call()
    assert hook_count(network) == 0


def test_every_hook_in_the_engine_is_registered_by_the_hooks_module():
    """A new module that registers hooks by hand fails here; give it a `spade_engine.hooks` context instead."""
    from pathlib import Path

    import spade_engine

    root = Path(spade_engine.__file__).parent
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py") if p.name != "hooks.py"
                 and any(f".register_{kind}" in p.read_text() for kind in ("forward", "full_backward", "backward"))]  # fmt: skip
    assert offenders == []


def test_hooks_can_replace_an_output_and_pre_hooks_cannot_replace_an_input():
    model, x = NETS["resnet"](), sample()[None]
    head = {"head": model.net[-1]}
    with hooks.forward_hooks(head, lambda name, m, i, o: torch.zeros_like(o)):
        assert torch.equal(model(x), torch.zeros_like(model(x)))
    with hooks.forward_pre_hooks(head, lambda name, m, i: 0):  # a falsy return is ignored too
        assert torch.equal(model(x), model(x))
    with pytest.raises(ValueError, match="'input' or an 'output'"), hooks.capture(head, "weights"):
        pass


def test_replaced_forwards_compute_the_replacement_and_restore_the_forward():
    model, x = NETS["resnet"](), sample()[None]
    head = model.net[-1]
    own = head.forward = lambda inp: type(head).forward(head, inp) * 2  # a forward set on the instance before
    reference = model(x)
    with hooks.replaced_forwards({"head": head}, lambda name, m, inp: torch.zeros(inp.shape[0], m.out_features)):
        assert torch.equal(model(x), torch.zeros_like(reference))
    assert head.forward is own and torch.equal(model(x), reference)
    with pytest.raises(Boom), hooks.replaced_forwards({"head": head}, lambda *a: (_ for _ in ()).throw(Boom())):
        model(x)
    assert head.forward is own and torch.equal(model(x), reference)
    del head.forward
    with hooks.replaced_forwards({"head": head}, lambda name, m, inp: type(m).forward(m, inp)):
        pass
    assert "forward" not in head.__dict__
