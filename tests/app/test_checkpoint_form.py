"""The Debugger page shows what is wrong with the values typed into the checkpoint form (the loader's own checks:
tests/engine/test_checkpoint_form.py)."""

import pytest

from tests.app.conftest import APP
from tests.conftest import CKPT_ARCH as ARCH
from tests.conftest import CKPT_SIZE as SIZE


@pytest.fixture(scope="module")
def weights(checkpoint_weights) -> bytes:
    return checkpoint_weights


def test_the_debugger_page_says_what_is_wrong(weights):
    from streamlit.testing.v1 import AppTest

    from pages.ui import keys

    at = AppTest.from_file(str(APP), default_timeout=600)
    for key, value in {keys.MODEL: "__checkpoint__", keys.CKPT_ARCH: ARCH, keys.CKPT_SIZE: SIZE,
                       keys.CKPT_CLASSES: "cat\ndog"}.items():  # fmt: skip
        at.session_state[key] = value
    at.run()
    at.sidebar.file_uploader(key=keys.WIDGET + keys.CKPT_FILE).set_value(("m.pt", weights, "application/octet-stream"))
    at.run()
    assert not at.exception, at.exception
    assert any("2 class names were given, but the model has 4 classes" in e.value for e in at.error)
