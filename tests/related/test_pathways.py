"""Critical pathways on a tiny CNN that reuses one inplace ReLU module, like torchvision's ResNet."""

import pytest
import torch
import torch.nn.functional as F

from spade_engine import pathways


def _x(seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def _plain_gradient(model, x, target):
    xg = x.clone().requires_grad_(True)
    model(xg)[0, target].backward()
    return xg.grad


def test_records_every_call_of_a_reused_relu(tiny_model):
    names, contrib, logit = pathways.contributions(tiny_model, _x(), 0)
    assert names == ["net.1#0", "net.2.relu#0", "net.2.relu#1", "net.6#0"]
    assert [tuple(c.shape) for c in contrib] == [(1, 8, 16, 16)] * 3 + [(1, 16)]
    assert logit == pytest.approx(float(tiny_model(_x())[0, 0]))


def test_contribution_is_activation_times_gradient(tiny_model):
    x = _x()
    net = tiny_model.net
    with torch.no_grad():
        pre = net[5](net[4](net[3](net[2](net[1](net[0](tiny_model.normalize(x)))))))  # (1, 16)
    pre.requires_grad_(True)
    a = F.relu(pre)
    (grad,) = torch.autograd.grad(net[7](a)[0, 2], a)
    _, contrib, _ = pathways.contributions(tiny_model, x, 2)
    torch.testing.assert_close(contrib[-1], (a * grad).abs().detach())


def test_keep_all_is_the_dense_network(tiny_model):
    x = _x(1)
    path = pathways.critical_pathway(tiny_model, x, 1, keep=1.0)
    assert all(m.all() for m in path.masks)
    with torch.no_grad(), pathways.gated(tiny_model, path.masks):
        gated = tiny_model(x)
    torch.testing.assert_close(gated, tiny_model(x))
    grad = pathways.pathway_gradient(tiny_model, x, 1, keep=1.0)
    torch.testing.assert_close(grad, _plain_gradient(tiny_model, x, 1))


@pytest.mark.parametrize("granularity", ["unit", "channel"])
def test_global_and_per_layer_selection(tiny_model, granularity):
    x = _x(2)
    _, contrib, _ = pathways.contributions(tiny_model, x, 0, granularity)
    total = sum(c.numel() for c in contrib)
    glob = pathways.select(contrib, 0.15, "global")
    assert sum(int(m.sum()) for m in glob) == pytest.approx(0.15 * total, abs=1)
    kept = torch.cat([c[m] for c, m in zip(contrib, glob, strict=True)])
    dropped = torch.cat([c[~m] for c, m in zip(contrib, glob, strict=True)])
    assert kept.min() >= dropped.max()  # one threshold over all layers
    per = pathways.select(contrib, 0.25, "per_layer")
    for c, m in zip(contrib, per, strict=True):
        assert int(m.sum()) == max(1, -(-c.numel() // 4))
    if granularity == "channel":
        assert tuple(contrib[0].shape) == (1, 8, 1, 1)


def test_pathway_gradient_masks_are_fixed_and_change_the_map(tiny_model):
    x = _x(3)
    path = pathways.critical_pathway(tiny_model, x, 0, keep=0.1)
    g = pathways.pathway_gradient(tiny_model, x, 0, pathway=path)
    assert g.shape == (1, 3, 16, 16) and torch.isfinite(g).all()
    assert not torch.allclose(g, _plain_gradient(tiny_model, x, 0))
    # the gated network is locally linear: a small step along sign(g) raises the gated logit by eps * |g|_1
    eps = 1e-3
    with torch.no_grad(), pathways.gated(tiny_model, path.masks):
        y0, y1 = tiny_model(x)[0, 0], tiny_model(x + eps * g.sign())[0, 0]
    assert float(y1 - y0) == pytest.approx(float(eps * g.abs().sum()), rel=0.05)


def test_too_few_masks_raise(tiny_model):  # no hook left: tests/engine/test_hook_hygiene.py
    with pytest.raises(RuntimeError):
        with pathways.gated(tiny_model, [torch.ones(1)]):  # too few masks for 4 ReLU calls
            tiny_model(_x())


def test_summary_curve(tiny_model):
    x = _x(4)
    s = pathways.pathway_summary(tiny_model, x, 3, keep=0.15, curve=(0.05, 0.5, 1.0))
    assert len(s.names) == len(s.kept) == len(s.sizes) == 4
    assert sum(s.kept) == pytest.approx(0.15 * sum(s.sizes), abs=1)
    assert 0 < s.contributing <= sum(s.sizes) and s.keeps_all_contributing == (sum(s.kept) >= s.contributing)
    assert s.curve_logit[-1] == pytest.approx(s.dense_logit, abs=1e-5)
    assert s.curve_preserved[-1] == pytest.approx(1.0, abs=1e-5) and s.curve_agrees[-1]
    path = pathways.critical_pathway(tiny_model, x, 3, keep=0.15)
    with torch.no_grad(), pathways.gated(tiny_model, path.masks):
        assert s.gated_logit == pytest.approx(float(tiny_model(x)[0, 3]), abs=1e-5)


def test_works_on_torchvision_resnet():
    from torchvision.models import resnet18

    from spade_engine.models import Classifier

    torch.manual_seed(0)
    model = Classifier(resnet18(num_classes=5), (0.5,) * 3, (0.25,) * 3).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(1, 3, 32, 32)
    names, _, _ = pathways.contributions(model, x, 0, "channel")
    assert len(names) == 1 + 2 * 8 and "net.layer1.0.relu#1" in names
    torch.testing.assert_close(pathways.pathway_gradient(model, x, 0, keep=1.0), _plain_gradient(model, x, 0))
    assert pathways.pathway_gradient(model, x, 0, keep=0.15).abs().sum() > 0


@pytest.mark.parametrize("arch", ["tb_resnet", "tb_vgg", "tb_mobilenet"])
def test_testbed_architectures(arch):
    from spade_engine.models import Classifier
    from spade_engine.testbed.archs import ARCHS

    torch.manual_seed(0)
    model = Classifier(ARCHS[arch](10), (0.5,) * 3, (0.25,) * 3).eval().requires_grad_(False)
    x = torch.rand(1, 3, 64, 64)
    path = pathways.critical_pathway(model, x, 3, keep=1.0, granularity="channel")
    dense = model(x)
    with torch.no_grad(), pathways.gated(model, path.masks):
        torch.testing.assert_close(model(x), dense)
    torch.testing.assert_close(pathways.pathway_gradient(model, x, 3, keep=1.0), _plain_gradient(model, x, 3))
    s = pathways.pathway_summary(model, x, 3, keep=0.15, curve=(0.15, 1.0))
    assert s.curve_logit[-1] == pytest.approx(s.dense_logit, abs=1e-4)
