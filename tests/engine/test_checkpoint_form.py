"""Values typed into the checkpoint form (and given to `load_checkpoint`) are checked with a plain message: a mean
and std on a 0–255 scale, a std that is not positive, a number of class names that is not the number of classes;
the Debugger page shows the message (tests/app/test_checkpoint_form.py), not a model with silently wrong inputs or
names."""

import pytest

from spade_engine.models import ModelLoadError, load_checkpoint
from tests.conftest import CKPT_ARCH as ARCH
from tests.conftest import CKPT_CLASSES as CLASSES
from tests.conftest import CKPT_SIZE as SIZE


@pytest.fixture(scope="module")
def weights(checkpoint_weights) -> bytes:
    return checkpoint_weights


def test_mean_and_std_on_a_0_255_scale_are_refused_with_the_values_to_type(weights):
    with pytest.raises(ModelLoadError) as e:
        load_checkpoint(weights, ARCH, input_size=SIZE, mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))
    text = str(e.value)
    assert "0–255" in text and "0.485, 0.456, 0.406" in text and "0.229, 0.224, 0.225" in text


def test_std_must_be_positive(weights):
    with pytest.raises(ModelLoadError, match="positive"):
        load_checkpoint(weights, ARCH, input_size=SIZE, std=(0.2, 0.0, 0.2))


def test_unusual_but_valid_values_load(weights):
    loaded = load_checkpoint(weights, ARCH, input_size=SIZE, mean=(0.5, 0.25, 1.0), std=(1.0, 2.0, 3.0))
    assert len(loaded.class_names) == CLASSES


def test_class_names_must_name_every_class(weights):
    with pytest.raises(ModelLoadError, match="3 class names were given, but the model has 4 classes"):
        load_checkpoint(weights, ARCH, input_size=SIZE, class_names=("cat", "dog", "bird"))
    names = ("cat", "dog", "bird", "fish")
    assert load_checkpoint(weights, ARCH, input_size=SIZE, class_names=names).class_names == names
    assert load_checkpoint(weights, ARCH, input_size=SIZE).class_names == tuple(f"class {i}" for i in range(4))
