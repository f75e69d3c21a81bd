"""The debugger's solver and sparsity-profile controls reach the engine's PruneConfig."""

from __future__ import annotations

from spade_engine import profiles
from spade_engine.engine import PruneConfig
from tests.app.conftest import TINY, make_app
from tests.app.test_debugger import FEW_VIEWS, _engine, _last_result


def test_profile_and_solver_reach_the_engine(tiny_assets, tmp_path, monkeypatch):
    monkeypatch.setattr(profiles, "PROFILE_DIR", tmp_path)
    cfg = PruneConfig(0.9, layer_sparsity=(("net.0", 0.0), ("net.2", 0.3), ("*", 0.6)), skip_first=False)
    profiles.SparsityProfile("tiny-mixed", "test profile", cfg, TINY).save(tmp_path)
    profiles.SparsityProfile("other-model", "not for this model", cfg, "someone_else").save(tmp_path)

    at = make_app(**FEW_VIEWS).run()
    assert not at.exception, at.exception
    box = next(s for s in at.sidebar.selectbox if s.label == "Sparsity profile")
    assert box.options == ["uniform (the slider)", "tiny-mixed"]
    box.set_value("tiny-mixed").run()
    assert not at.exception, at.exception
    result = _last_result(_engine())
    assert result.layer_target["net.2"] == 0.3 and result.layer_target["net.4"] == 0.6
    assert "net.0" not in result.layer_target  # sparsity 0 in the profile: left dense
    assert result.config.skip_first  # the page's advanced option still applies on top of the profile

    solver = next(s for s in at.sidebar.selectbox if s.label == "Layer solver")
    solver.set_value("magnitude").run()
    assert not at.exception, at.exception
    assert _last_result(_engine()).config.solver == "magnitude"
    assert _engine().stats["traces_built"] == 1  # neither change rebuilds the trace
