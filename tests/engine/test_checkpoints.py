"""Checkpoint files as users have them (spade_engine/checkpoints.py through models.load_checkpoint): training
scripts' wrappers, key prefixes, pickled Python objects, .safetensors, half precision; every refusal in words
for a user, never torch's developer text."""

import argparse
import io
import pickle

import pytest
import torch

from spade_engine.models import ModelLoadError, build_architecture, checkpoints, load_checkpoint

ARCH, SIZE, CLASSES = "tb_resnet", 32, 4


def to_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build_architecture(ARCH, CLASSES).eval()


@pytest.fixture(scope="module")
def x():
    return torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def assert_same_predictions(data: bytes, net, x, **kwargs) -> None:
    loaded = load_checkpoint(data, ARCH, input_size=SIZE, mean=(0.0,) * 3, std=(1.0,) * 3, **kwargs)
    assert len(loaded.class_names) == CLASSES
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), net(x), atol=1e-5, rtol=1e-5)


def test_lightning_ckpt_with_model_prefix_and_training_state(net, x):
    state = {f"model.{k}": v for k, v in net.state_dict().items()}
    state["criterion.pos_weight"] = torch.ones(1)  # another submodule of the LightningModule
    ckpt = {
        "epoch": 3, "global_step": 300, "pytorch-lightning_version": "2.2.0", "state_dict": state,
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]}], "lr_schedulers": [],
        "hyper_parameters": {"lr": 0.1, "num_classes": CLASSES}, "callbacks": {}, "loops": {},
    }  # fmt: skip
    assert_same_predictions(to_bytes(ckpt), net, x)


@pytest.mark.parametrize("prefix", ["_orig_mod.", "_orig_mod.module.", "module._orig_mod.", "net."])
def test_compile_ddp_and_wrapper_prefixes(net, x, prefix):
    assert_same_predictions(to_bytes({prefix + k: v for k, v in net.state_dict().items()}), net, x)


def test_torchvision_reference_checkpoint_with_argparse_namespace(net, x):
    args = argparse.Namespace(model="resnet", lr=0.1, epochs=90, output_dir="/tmp/out")
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    ckpt = {"model": net.state_dict(), "optimizer": opt.state_dict(), "lr_scheduler": {"last_epoch": 3},
            "epoch": 3, "args": args}  # fmt: skip
    assert_same_predictions(to_bytes(ckpt), net, x)


class Recorder:
    """A class from the user's training code: loading must never run it."""

    built = False

    def __setstate__(self, state):
        Recorder.built = True


def test_unknown_classes_are_inert_placeholders(net, x):
    Recorder.built = False
    assert_same_predictions(to_bytes({"state_dict": net.state_dict(), "config": Recorder()}), net, x)
    assert not Recorder.built


class CallsSystem:
    def __reduce__(self):
        import os

        return os.system, ("echo pwned",)


def test_checkpoint_that_calls_os_is_refused_in_plain_words(net):
    data = to_bytes({"state_dict": net.state_dict(), "payload": CallsSystem()})
    with pytest.raises(ModelLoadError, match="refused for safety") as e:
        load_checkpoint(data, ARCH)
    assert "weights_only" not in str(e.value) and "\x1b[" not in str(e.value)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_state_dict_runs_in_float32(net, x, dtype):
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in net.state_dict().items()}
    loaded = load_checkpoint(to_bytes(state), ARCH, input_size=SIZE, mean=(0.0,) * 3, std=(1.0,) * 3)
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), net(x), atol=0.1, rtol=0.05)


def test_safetensors_file_with_a_prefix(net, x):
    safetensors = pytest.importorskip("safetensors.torch")
    data = safetensors.save({f"model.{k}": v.contiguous() for k, v in net.state_dict().items()})
    assert checkpoints.is_safetensors(data) and not checkpoints.is_safetensors(to_bytes(net.state_dict()))
    assert_same_predictions(data, net, x)


def test_safetensors_without_the_package_says_what_to_install(net, monkeypatch):
    safetensors = pytest.importorskip("safetensors.torch")
    data = safetensors.save({k: v.contiguous() for k, v in net.state_dict().items()})
    monkeypatch.setitem(__import__("sys").modules, "safetensors.torch", None)  # import fails
    with pytest.raises(ModelLoadError, match="pip install safetensors"):
        load_checkpoint(data, ARCH)


def test_missing_batchnorm_step_counters_are_tolerated(net, x):
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert_same_predictions(to_bytes(state), net, x)


@pytest.mark.parametrize(
    "data",
    [b"not a checkpoint at all", b"PK\x03\x04broken zip", pickle.dumps({"a": 1}, protocol=2), to_bytes([1, 2])],
)
def test_unreadable_files_get_a_plain_message(data):
    with pytest.raises(ModelLoadError) as e:
        load_checkpoint(data, ARCH)
    text = str(e.value)
    assert "weights_only" not in text and "\x1b[" not in text and "Traceback" not in text
    assert "state_dict" in text or "checkpoint" in text


def test_align_state_dict_picks_the_prefix_that_names_the_architecture():
    expected = {"conv.weight": 0, "fc.weight": 0, "fc.bias": 0}
    state = {"model.conv.weight": 1, "model.fc.weight": 2, "model.fc.bias": 3, "loss.weight": 4}
    assert checkpoints.align_state_dict(state, expected) == {"conv.weight": 1, "fc.weight": 2, "fc.bias": 3}
    assert checkpoints.align_state_dict({"conv.weight": 1}, expected) == {"conv.weight": 1}


def test_torchscript_is_refused_unless_the_server_allows_it(net, x, monkeypatch):
    buf = io.BytesIO()
    torch.jit.save(torch.jit.trace(net.eval(), x), buf)
    real_load = torch.jit.load
    calls = []
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: calls.append(1) or real_load(*a, **k))
    for value in (None, "0", "yes", "true"):  # only "1" allows it
        if value is None:
            monkeypatch.delenv(checkpoints.TORCHSCRIPT_ENV, raising=False)
        else:
            monkeypatch.setenv(checkpoints.TORCHSCRIPT_ENV, value)
        with pytest.raises(checkpoints.TorchScriptRefusedError, match="TorchScript files are programs") as e:
            load_checkpoint(buf.getvalue(), "ignored", input_size=x.shape[-1])
        assert isinstance(e.value, ModelLoadError) and "SPADE_ALLOW_TORCHSCRIPT=1" in str(e.value)
    assert calls == []  # the archive was never opened
    monkeypatch.setenv(checkpoints.TORCHSCRIPT_ENV, "1")
    loaded = load_checkpoint(buf.getvalue(), "ignored", input_size=x.shape[-1])
    assert calls == [1] and loaded.info.arch == "torchscript"
    torch.testing.assert_close(loaded.model.net(x), net(x))
