"""SpadeEngine behaviour on tiny residual, depthwise and Linear-head networks."""

import pytest
import torch
from torch import nn

from spade_engine.engine import PruneConfig, SpadeEngine, spade_prune
from spade_engine.hooks import forward_hooks

from .nets import NETS, sample

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module", params=list(NETS))
def setup(request):
    model = NETS[request.param]()
    engine = SpadeEngine(model, "cpu", batch_size=16)
    trace = engine.prepare(sample(), n_aug=48, seed=0)
    return request.param, model, engine, trace


@pytest.mark.parametrize("sparsity", [0.3, 0.9])
def test_reached_sparsity_equals_target(setup, sparsity):
    _, _, engine, trace = setup
    pruned, result = engine.prune(trace, sparsity)
    modules = dict(pruned.named_modules())
    assert result.layer_sparsity, "nothing was pruned"
    for name, reached in result.layer_sparsity.items():
        w = modules[name].weight
        assert reached == pytest.approx(float((w == 0).float().mean()))
        assert abs(reached - sparsity) <= 1.0 / w.numel() + 1e-9, name


def reference_count(layer: nn.Module, sparsity: float) -> int:
    """Zeros the SPADE authors' granularity leaves: int(n*s)+1 per input channel's block of n weights, per group."""
    g = getattr(layer, "groups", 1)
    r = layer.weight.shape[0] // g
    k = layer.weight[0, 0].numel()  # kh*kw columns per input channel; 1 for a Linear
    n = r * k
    return layer.weight.shape[1] * g * min(int(n * sparsity) + 1, n)


def test_reference_granularity_reaches_the_predicted_count(setup):
    _, _, engine, trace = setup
    cfg = PruneConfig(0.8, blocksize="kernel", mask_count="reference")
    assert cfg == PruneConfig.reference_granularity(0.8)
    pruned, result = engine.prune(trace, cfg)
    modules = dict(pruned.named_modules())
    assert result.layer_sparsity, "nothing was pruned"
    for name, reached in result.layer_sparsity.items():
        w = modules[name].weight
        assert int((w == 0).sum()) == reference_count(modules[name], 0.8), name
        assert reached >= 0.8, name


@pytest.mark.parametrize("bad", [{"blocksize": "kernal"}, {"blocksize": 0}, {"mask_count": "exact"}])
def test_bad_granularity_raises(setup, bad):
    _, _, engine, trace = setup
    with pytest.raises(ValueError, match=next(iter(bad))):
        engine.prune(trace, PruneConfig(0.5, **bad))


def test_dense_model_is_bit_identical(setup):
    _, model, engine, trace = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned, _ = engine.prune(trace, PruneConfig(0.7, sequential=True))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert pruned is not model  # hooks: tests/engine/test_hook_hygiene.py


def test_first_conv_skipped_and_every_other_layer_pruned(setup):
    _, _, engine, trace = setup
    _, result = engine.prune(trace, 0.5)
    assert trace.first_conv not in result.layer_sparsity
    assert set(result.layer_sparsity) == set(trace.layers) - {trace.first_conv}
    _, result = engine.prune(trace, PruneConfig(0.5, skip_head=True, layer_sparsity=(("*.3.*", 0.8),)))
    assert trace.head not in result.layer_sparsity
    assert all(v == 0.8 for k, v in result.layer_target.items() if ".3." in k)


@pytest.mark.parametrize("sparsity", [0.5, 0.8])
def test_obs_error_below_magnitude_on_every_layer(setup, sparsity):
    _, _, engine, trace = setup
    _, obs = engine.prune(trace, PruneConfig(sparsity))
    _, mag = engine.prune(trace, PruneConfig(sparsity, solver="magnitude"))
    for name in obs.layer_error:
        assert obs.layer_error[name] < mag.layer_error[name], name


def measured_error(engine, pruned, trace, name) -> float:
    """||WX - W_hat X||^2 / ||WX||^2 of layer `name` on its real inputs from the calibration views."""
    dense_layer, pruned_layer = dict(engine._work.named_modules())[name], dict(pruned.named_modules())[name]
    inputs = []
    with forward_hooks({name: dense_layer}, lambda n, m, i, o: inputs.append(i[0])), torch.no_grad():
        engine._work(trace.float_views())
    x = torch.cat(inputs)
    bias = dense_layer.bias
    num = (dense_layer(x) - pruned_layer(x)).pow(2).sum()
    den = (dense_layer(x) - (0 if bias is None else bias.view(-1, *[1] * (x.dim() - 2)))).pow(2).sum()
    return float(num / den)


def test_error_matches_outputs_on_calibration_batch(setup):
    """The Hessian-based error equals the error measured on the layer's real inputs: to 1e-3 with exact Hessian
    products, and within 3% with the default (bf16 products where the CPU has them, ~0.3% error on H)."""
    name, model, engine, trace = setup
    pruned, result = engine.prune(trace, 0.6)
    last = list(result.layer_error)[-1]
    assert result.layer_error[last] == pytest.approx(measured_error(engine, pruned, trace, last), rel=0.03)
    exact = SpadeEngine(model, "cpu", batch_size=16, hessian_matmul="exact")
    exact_trace = exact.prepare(sample(), n_aug=48, seed=0)
    pruned, result = exact.prune(exact_trace, 0.6)
    assert result.layer_error[last] == pytest.approx(measured_error(exact, pruned, exact_trace, last), rel=1e-3)


def test_low_sparsity_keeps_logits_close(setup):
    _, _, engine, trace = setup

    def drift(cfg: PruneConfig) -> float:
        _, result = engine.prune(trace, cfg)
        assert result.agrees or cfg.solver == "magnitude"
        return float((result.pruned_logits - result.dense_logits).norm() / result.dense_logits.norm())

    assert drift(PruneConfig(0.1)) < 0.1  # kh*kw mask blocks (the default) keep the decision and stay close
    # with the mask free over 128 columns, the OBS update reconstructs the output better than magnitude pruning
    # (per-channel / per-column masks must cut every input channel of these few-row layers, even the important ones)
    assert drift(PruneConfig(0.1, blocksize=128)) < drift(PruneConfig(0.1, solver="magnitude"))


def test_reprune_reuses_hessians(setup):
    _, _, engine, trace = setup
    engine.prune(trace, 0.33)  # the first prune that needs the Hessians fills them (if no earlier test did)
    passes = engine.stats["hessian_passes"]
    again = engine.prepare(sample(), n_aug=48, seed=0)
    assert again is trace
    _, r1 = engine.prune(trace, 0.42)
    _, r2 = engine.prune(trace, 0.77)
    assert engine.stats["hessian_passes"] == passes
    assert r1.cached_trace and r2.cached_trace
    assert "hessians" not in r2.timings and r2.timings["inverse"] < 0.05 + r1.timings["inverse"]


def test_same_seed_same_masks_other_seed_differs():
    model = NETS["resnet"]()
    masks = []
    for seed in (3, 3, 4):
        pruned, _ = spade_prune(model, sample(), 0.8, n_aug=32, seed=seed, batch_size=16)
        masks.append([m.weight == 0 for m in pruned.modules() if isinstance(m, (nn.Conv2d, nn.Linear))])
    assert all(torch.equal(a, b) for a, b in zip(masks[0], masks[1], strict=False))
    assert not all(torch.equal(a, b) for a, b in zip(masks[0], masks[2], strict=False))


def test_sequential_mode_recomputes_through_pruned_prefix():
    model = NETS["vgg"]()
    engine = SpadeEngine(model, batch_size=16)
    trace = engine.prepare(sample(), n_aug=32, seed=0)
    assert engine.stats["hessian_passes"] == 0 and not trace.has_moments  # the first prune that needs them runs it
    _, one_pass = engine.prune(trace, 0.8)
    assert engine.stats["hessian_passes"] == 1 and trace.has_moments
    _, seq = engine.prune(trace, PruneConfig(0.8, sequential=True))
    assert engine.stats["hessian_passes"] == 2  # one pass of the views, whatever the depth
    first = next(iter(seq.layer_error))
    assert seq.layer_error[first] == pytest.approx(one_pass.layer_error[first])
    assert seq.layer_sparsity == pytest.approx(one_pass.layer_sparsity, abs=1e-3)


def test_cache_is_bounded_in_bytes():
    engine = SpadeEngine(NETS["vgg"](), max_cache_bytes=1)
    for seed in range(3):
        engine.prepare(sample(seed), n_aug=8, seed=0)
    info = engine.cache_info()
    assert info["traces"] == 1 and info["traces_built"] == 3


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_device(device):
    model = NETS["mobilenet"]()
    pruned, result = spade_prune(model, sample(), 0.5, n_aug=16, device=device)
    assert next(pruned.parameters()).device.type == device
    assert next(model.parameters()).device.type == "cpu"
    assert result.pruned_logits.device.type == "cpu"


def test_view_agreement_counts_views_that_keep_the_dense_class():
    model = NETS["vgg"]()
    engine = SpadeEngine(model, batch_size=8)
    trace = engine.prepare(sample(), n_aug=24, seed=0)
    with torch.no_grad():
        preds = model(trace.float_views()).argmax(-1)
    expected = float((preds == trace.dense_logits.argmax()).float().mean())
    assert trace.view_agreement == pytest.approx(expected)
    assert engine.prune(trace, 0.5)[1].view_agreement == trace.view_agreement


def test_inverse_factors_count_against_the_bound_and_are_evicted_after_prune():
    """Factors per dampening value are counted; after a prune the oldest go first, and a later prune that
    needs them again recomputes the same result."""
    engine = SpadeEngine(NETS["vgg"](), batch_size=8)
    trace = engine.prepare(sample(), n_aug=8, seed=0)
    base = trace.nbytes  # Hessians and views, before any factor
    _, first = engine.prune(trace, PruneConfig(0.5, damp=0.01))
    one_damp = trace.nbytes - base
    assert one_damp > 0 and engine.cache_info()["inverse_factors"] == len(first.layer_sparsity)
    engine.max_cache_bytes = base + one_damp  # room for one dampening's factors
    engine.prune(trace, PruneConfig(0.5, damp=0.05))
    info = engine.cache_info()
    assert info["trace_bytes"] <= engine.max_cache_bytes
    assert {damp for _, damp in trace.inverses} == {0.05}
    engine.max_pruned = 0  # force a real solve again
    engine._pruned.clear()
    _, again = engine.prune(trace, PruneConfig(0.5, damp=0.01))
    assert again.layer_error == pytest.approx(first.layer_error)
    assert engine.cache_info()["trace_bytes"] <= engine.max_cache_bytes


def test_layer_over_the_hessian_bound_stays_dense_with_a_reason():
    from spade_engine.engine import hessian_bytes

    model = NETS["vgg"]()
    sizes = {
        n: hessian_bytes(m, torch.float32) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    }
    widest = max(sizes, key=sizes.get)
    engine = SpadeEngine(model, batch_size=8, max_hessian_bytes=sizes[widest] - 1)
    trace = engine.prepare(sample(), n_aug=8, seed=0)
    assert widest not in trace.hessians and len(trace.hessians) == len(sizes) - 1
    pruned, result = engine.prune(trace, 0.5)
    assert "too wide for the memory bound" in result.dense_layers[widest]
    assert torch.equal(dict(pruned.named_modules())[widest].weight, dict(model.named_modules())[widest].weight)
    assert all(s == pytest.approx(0.5, abs=0.01) for s in result.layer_sparsity.values())


def test_prefetch_makes_the_neighbours_cache_hits_with_the_same_result():
    model = NETS["resnet"]()
    engine = SpadeEngine(model, batch_size=16)
    trace = engine.prepare(sample(), n_aug=16, seed=0)
    engine.prune(trace, 0.5)
    thread = engine.prefetch(trace, [0.4, 0.6])
    thread.join()
    solves, hits = engine.stats["solves"], engine.stats["pruned_hits"]
    _, near = engine.prune(trace, 0.6)
    assert engine.stats["solves"] == solves and engine.stats["pruned_hits"] == hits + 1
    assert engine.stats["prefetched"] == 2 and engine.prefetch(trace, [0.4, 0.6]) is None  # both cached already
    fresh = SpadeEngine(model, batch_size=16)
    _, ref = fresh.prune(fresh.prepare(sample(), n_aug=16, seed=0), 0.6)
    assert near.layer_error == pytest.approx(ref.layer_error)


def test_a_foreground_prune_cancels_the_prefetch():
    import threading

    engine = SpadeEngine(NETS["resnet"](), batch_size=16)
    trace = engine.prepare(sample(), n_aug=16, seed=0)
    gate, real = threading.Event(), engine._prune

    def held(trace, cfg, progress):  # the prefetch waits at its first layer until the foreground request comes
        def wait_then(phase, done, total):
            gate.wait(10)
            progress(phase, done, total)

        return real(trace, cfg, wait_then)

    engine._prune = held
    thread = engine.prefetch(trace, [0.3, 0.4, 0.5])
    threading.Timer(0.2, gate.set).start()
    _, result = engine.prune(trace, 0.8)  # cancels, waits for the prefetch to stop, then prunes
    assert not thread.is_alive() and engine.stats.get("prefetched", 0) == 0
    assert [k[1].sparsity for k in engine._pruned] == [0.8] and result.config.sparsity == 0.8


class ViewsActivations(nn.Module):
    """A conv net that `.view`s its activations, which channels-last tensors do not allow."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16 * 16, 5)

    def forward(self, x):
        x = self.conv2(torch.relu(self.conv(x)))
        return self.fc(x.view(x.shape[0], -1))


def test_hessian_pass_feeds_channels_last_only_to_models_that_accept_it():
    """The Hessian pass runs channels-last where the model allows (a plain ResNet) and falls back for a model
    that `.view`s its activations; either way the Hessians are the contiguous pass's to rounding."""
    for model, expected in ((NETS["resnet"](), True), (ViewsActivations(), False)):
        x = sample(size=16) if expected is False else sample()
        engine = SpadeEngine(model, "cpu", batch_size=8)
        trace = engine.prepare(x, n_aug=8, seed=0)
        assert engine._channels_last is expected
        plain = SpadeEngine(model, "cpu", batch_size=8)
        plain._channels_last = False
        reference = plain.prepare(x, n_aug=8, seed=0)
        for name in trace.layers:
            H, ref = trace.hessians[name], reference.hessians[name]
            assert float((H - ref).norm() / ref.norm()) < 1e-5, name
        pruned, result = engine.prune(trace, 0.5)
        assert result.total_sparsity > 0.3


def test_a_cancel_stops_an_exact_prefetch_inside_its_layer(monkeypatch):
    """The exact OBC solver checks for a cancel inside its greedy loop (`pruning.cancel`), so a foreground request
    does not wait for the rest of a layer: the prefetch stops in the layer it was solving."""
    import threading

    from spade_engine.pruning import cancel, obc

    engine = SpadeEngine(NETS["resnet"](), batch_size=16)
    trace = engine.prepare(sample(), n_aug=16, seed=0)
    inside, real_check, layers = threading.Event(), cancel.check_cancelled, []

    def check():  # hold the solver inside its first layer until the cancel comes, then really check
        event = getattr(cancel._local, "event", None)
        inside.set()
        if event is not None:
            event.wait(10)
        real_check()

    real_prune = engine._prune

    def counting(trace, cfg, progress):
        return real_prune(trace, cfg, lambda phase, *a: (layers.append(phase), progress(phase, *a)))

    monkeypatch.setattr(obc, "check_cancelled", check)
    engine._prune = counting
    thread = engine.prefetch(trace, [PruneConfig(0.5, solver="obc")])
    assert inside.wait(60)
    engine.cancel_prefetch()
    assert not thread.is_alive() and engine.stats.get("prefetched", 0) == 0 and not engine._pruned
    assert len([p for p in layers if p.startswith("solve ")]) == 1  # stopped inside the first layer's solve
    with cancel.cancellable(threading.Event()):  # outside a cancelled block the check is a no-op
        real_check()


def test_prepare_does_not_wait_for_a_prefetch_of_its_own_trace_and_cancels_one_of_another():
    """The prefetch holds the engine's lock while it prunes. The page's next run first calls `prepare`: for the
    same sample it gets the trace at once (the prefetch goes on), for another sample it cancels the prefetch."""
    import threading
    import time

    engine = SpadeEngine(NETS["resnet"](), batch_size=16)
    x = sample()
    trace = engine.prepare(x, n_aug=16, seed=0)
    gate, real = threading.Event(), engine._prune

    def held(trace, cfg, progress):  # the prefetch waits at its first layer, lock held, until the gate or a cancel
        def wait_then(phase, done, total):
            while not (gate.is_set() or engine._prefetch_cancel.is_set()):
                time.sleep(0.01)
            progress(phase, done, total)

        return real(trace, cfg, wait_then)

    engine._prune = held
    thread = engine.prefetch(trace, [0.3])
    while engine._prefetch_key is None:
        time.sleep(0.01)
    got = []  # a prepare that waited for the prefetch's lock would still be waiting after 20 s: fail, not hang
    waiter = threading.Thread(target=lambda: got.append(engine.prepare(x, n_aug=16, seed=0)), daemon=True)
    waiter.start()
    waiter.join(20)
    assert got == [trace] and thread.is_alive()  # no wait, and the prefetch goes on
    gate.set()
    thread.join(30)
    assert engine.stats["prefetched"] == 1
    gate.clear()
    thread = engine.prefetch(trace, [0.4])
    while engine._prefetch_key is None:
        time.sleep(0.01)
    other = engine.prepare(sample(seed=1), n_aug=16, seed=0)  # another sample: the prefetch is cancelled
    assert other is not trace and not thread.is_alive() and engine.stats["prefetched"] == 1


def test_a_new_sample_cancels_a_prefetch_between_its_prunes(monkeypatch):
    """A prefetch that holds no prune yet (between two configs, about to take the lock) is cancelled by a new
    sample's `prepare` too, so the user's request never queues behind a whole background prune."""
    import threading

    from spade_engine import engine as engine_module

    engine = SpadeEngine(NETS["resnet"](), batch_size=16)
    trace = engine.prepare(sample(), n_aug=16, seed=0)
    gate, started = threading.Event(), threading.Event()
    monkeypatch.setattr(engine_module, "_yield_cpu", lambda: (started.set(), gate.wait(20)))
    thread = engine.prefetch(trace, [0.3, 0.4])
    assert started.wait(20) and engine._prefetch_key is None and thread.is_alive()
    threading.Timer(0.5, gate.set).start()  # the prefetch goes on only after prepare asked it to stop
    other = engine.prepare(sample(seed=1), n_aug=16, seed=0)
    thread.join(30)
    assert other is not trace and not thread.is_alive() and engine.stats.get("prefetched", 0) == 0


def test_an_evicted_trace_is_freed_without_the_cycle_collector():
    """A trace (with its Hessians, possibly gigabytes) holds no reference cycle: evicted, it is freed at once."""
    import gc
    import weakref

    engine = SpadeEngine(NETS["vgg"](), max_cache_bytes=1)
    gc.disable()
    try:
        trace = engine.prepare(sample(0), n_aug=8, seed=0)
        engine.prune(trace, 0.5)  # fills its Hessians
        assert trace.has_moments
        freed = weakref.ref(trace)
        del trace
        engine.prepare(sample(1), n_aug=8, seed=0)  # the byte bound evicts the first trace
        assert freed() is None
    finally:
        gc.enable()
