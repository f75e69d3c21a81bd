"""The default smallest crop of the calibration views comes from the model card."""

from pages.ui import widgets
from spade_engine.models import get_info, spade_defaults


def test_card_sets_the_crop_and_unknown_models_get_the_reference_default():
    assert widgets.calibration_crop("testbed_resnet") == get_info("testbed_resnet").card["spade"]["crop_min"] == 1.0
    assert widgets.calibration_crop("resnet18") == 0.2  # torchvision models: the SPADE reference's 0.2
    assert widgets.calibration_crop("no_such_model") == 0.2
    assert widgets.calibration_crop(None) == 0.2
    assert spade_defaults("testbed_resnet") == {"sparsity": 0.8, "crop_min": 1.0}
    assert spade_defaults("resnet18") == spade_defaults(None) == {"sparsity": 0.9, "crop_min": 0.2}
