"""Shared result blocks of pages/ui/results.py rendered on their own (AppTest.from_function)."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest


def _predictions_script(pruned_logits: list[float]) -> None:
    from types import SimpleNamespace

    import torch

    from pages.ui import results

    def top5(z):
        p, i = z.softmax(-1).topk(3)
        return [(int(c), float(v)) for c, v in zip(i, p, strict=True)]

    dense, pruned = torch.tensor([3.0, 0.0, 0.0]), torch.tensor(pruned_logits)
    result = SimpleNamespace(
        dense_logits=dense, pruned_logits=pruned, dense_top5=top5(dense), pruned_top5=top5(pruned),
        agrees=int(dense.argmax()) == int(pruned.argmax()), layer_sparsity={"a": 0.9, "b": 0.9}, total_sparsity=0.9,
    )  # fmt: skip
    results.show_predictions(result, ("cat", "dog", "eel"), "SPADE 90%")


@pytest.mark.parametrize(("pruned", "warns"), [([2.0, 1.0, 0.0], False), ([0.0, 3.0, 0.0], True)])
def test_prediction_block_warns_only_when_the_class_changes(pruned, warns):
    at = AppTest.from_function(_predictions_script, args=(pruned,), default_timeout=60).run()
    assert not at.exception, at.exception
    shown = {m.label: m.value for m in at.metric}
    assert shown["Dense predicts"] == "cat"
    assert shown["SPADE 90% predicts"] == ("dog" if warns else "cat")
    assert len(at.warning) == int(warns)
    if warns:
        assert "no longer predicts the dense class **cat**" in at.warning[0].value
    assert [c.key for c in at.get("plotly_chart")] == ["predictions"]
