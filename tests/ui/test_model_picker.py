"""The checkpoint form's normalisation parser (pages/ui/model_picker.checkpoint_normalisation): three numbers each,
refused in plain words. (The picker on the page: tests/app/test_pickers.py.)"""

from __future__ import annotations

import pytest

from pages.ui.model_picker import checkpoint_normalisation
from spade_engine.models import ModelLoadError


def test_checkpoint_normalisation_parses_three_numbers_each():
    assert checkpoint_normalisation(" 0.5,0.25 , 1", "1, 2,3") == ((0.5, 0.25, 1.0), (1.0, 2.0, 3.0))


@pytest.mark.parametrize(
    ("mean", "std", "message"),
    [
        ("0.5, 0.5", "1, 1, 1", "Mean needs exactly three finite numbers"),
        ("0.5, 0.5, 0.5", "1; 1; 1", "Std needs three comma-separated numbers"),
        ("0.5, nan, 0.5", "1, 1, 1", "Mean needs exactly three finite numbers"),
        ("0.5, 0.5, 0.5", "0.2, 0, 0.2", "Std must be positive"),
        ("0.5, 0.5, 0.5", "0.2, -1, 0.2", "Std must be positive"),
    ],
)
def test_checkpoint_normalisation_refuses_in_plain_words(mean, std, message):
    with pytest.raises(ModelLoadError, match=message):
        checkpoint_normalisation(mean, std)
