"""Checkpoints from pruning and older training workflows (spade_engine/models/checkpoints.py through
`load_checkpoint`): whole pickled models, `torch.nn.utils.prune` files, legacy-format files, files that try to run
code, and keys that do not match; each loads with the saved network's logits or is refused naming what it is."""

import io
import os
import pickle

import pytest
import torch
from torch.nn.utils import prune

from spade_engine.errors import CheckpointMismatchError
from spade_engine.models import ModelLoadError, build_architecture, load_checkpoint

ARCH, SIZE, CLASSES = "tb_resnet", 32, 4


def saved(obj, legacy: bool = False) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build_architecture(ARCH, CLASSES).eval()


def logits_gap(data: bytes, net) -> float:
    loaded = load_checkpoint(data, ARCH, input_size=SIZE, mean=(0.0,) * 3, std=(1.0,) * 3)
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return float((loaded.model(x) - net(x)).abs().max())


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_state_dicts_in_either_format_load(net, legacy):
    assert logits_gap(saved(net.state_dict(), legacy), net) < 1e-5


def test_a_whole_pickled_model_loads_its_weights_without_running_code(net):
    assert logits_gap(saved(net), net) < 1e-5
    assert logits_gap(saved({"model": net, "epoch": 3}), net) < 1e-5  # wrapped, as YOLO-style scripts save it


def test_a_whole_model_in_the_legacy_format_is_named_and_the_conversion_given(net):
    with pytest.raises(ModelLoadError) as e:
        load_checkpoint(saved(net, legacy=True), ARCH, input_size=SIZE)
    text = str(e.value)
    assert "whole pickled model" in text and "torch.save(model.state_dict()" in text
    assert "damaged" not in text and type(net).__name__ in text


def test_a_torch_prune_file_loads_weight_orig_times_weight_mask(net):
    pruned = build_architecture(ARCH, CLASSES).eval()
    pruned.load_state_dict(net.state_dict())
    for module in pruned.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            prune.l1_unstructured(module, "weight", amount=0.5)
    data = saved(pruned.state_dict())
    assert "conv1.weight_orig" in torch.load(io.BytesIO(data))  # the file as torch's pruning leaves it
    assert logits_gap(data, pruned) < 1e-5  # the pruned network, not the dense one
    assert logits_gap(data, net) > 1e-3


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this-must-not-run",))


@pytest.mark.parametrize("fmt", ["zip", "legacy", "pickle"])
def test_a_file_that_tries_to_run_code_is_described_as_such(fmt, capfd):
    obj = {"state_dict": {"w": torch.zeros(2)}, "hook": RunsCode()}
    data = pickle.dumps(obj) if fmt == "pickle" else saved(obj, legacy=fmt == "legacy")
    with pytest.raises(ModelLoadError) as e:
        load_checkpoint(data, ARCH, input_size=SIZE)
    assert "system" in str(e.value) and "refused for safety" in str(e.value) and "damaged" not in str(e.value)
    assert "this-must-not-run" not in capfd.readouterr().out


def test_keys_that_do_not_match_are_named_not_the_number_of_classes(net):
    state = {k.replace("weight", "kernel"): v for k, v in net.state_dict().items()}  # another naming scheme
    with pytest.raises(CheckpointMismatchError) as e:
        load_checkpoint(saved(state), ARCH, input_size=SIZE)
    text = str(e.value)
    assert "does not match" in text and "missing keys" in text and "unexpected keys" in text
    assert "number of classes" not in text and "fc.kernel" in text and "fc.weight" in text
