"""The protocol on Ray (spade_engine/protocol/ray.py): 2 workers give the serial run's rows, an interrupted run
resumes to the same result, and rows reach the partial file sample by sample. Ray runs as a small local cluster
(2 CPUs, no dashboard), shut down after the module."""

from __future__ import annotations

import pandas as pd
import pytest

from spade_engine import protocol
from spade_engine.cli import protocol as cli_protocol
from spade_engine.models import load_model
from spade_engine.protocol import ray as on_ray

ray = pytest.importorskip("ray")

CFG = protocol.ProtocolConfig(
    "testbed_resnet", trojan_samples=2, clean_samples=1, n_aug=4, methods=("Saliency",),
    columns=("Dense", "SPADE-sweep"), steps=4,
)  # fmt: skip
KEY = ["kind", "sample", "method", "column"]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"py_modules": [str(on_ray.PACKAGE_DIR)]})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model():
    return load_model(CFG.model).model


@pytest.fixture(scope="module")
def serial(model):
    return protocol.run_protocol(CFG, model)


def _same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    a, b = a.drop(columns="seconds"), b.drop(columns="seconds")
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_exact=False, rtol=1e-5)


@pytest.mark.slow  # a Ray cluster
def test_two_ray_workers_give_the_serial_rows(cluster, model, serial):
    finished = []
    rows = on_ray.run_protocol_ray(CFG, model, on_sample=finished.append, workers=2)
    assert len(serial) == 3 * 2 and set(serial["kind"]) == {"trojan", "insertion"}
    _same_rows(rows, serial)  # the same rows in the same order
    assert sorted(len(r) for r in finished) == [2, 2, 2]  # handed over one sample at a time


@pytest.mark.slow
def test_an_interrupted_ray_run_resumes_to_the_same_result(cluster, model, serial, tmp_path):
    out = tmp_path / "run.csv"
    runner = on_ray.run_protocol_ray

    class Stop(Exception):
        pass

    def stop_after_first(rows):
        protocol.append_rows(protocol.partial_path(out), rows)
        raise Stop  # the run dies right after its first sample reached the file

    with pytest.raises(Stop):
        runner(CFG, model, on_sample=stop_after_first, workers=1)
    assert pd.read_csv(protocol.partial_path(out))["sample"].nunique() == 1
    calls = []
    resumed = protocol.run_to_csv(CFG, out, resume=True, runner=lambda *a: calls.append(a) or runner(*a, workers=2))
    done = calls[0][4]
    assert len(done) == 1  # the finished sample is not run again
    resumed = resumed.set_index(KEY).loc[serial.set_index(KEY).index].reset_index()
    _same_rows(resumed[serial.columns], serial)


def test_old_partial_files_keep_their_columns_when_clean_rows_follow(tmp_path):
    """Partial files of earlier versions hold one kind's fields; appending the other kind must not shift them."""
    partial = tmp_path / "run.partial.csv"
    trojan = {"kind": "trojan", "sample": 0, "method": "Saliency", "column": "Dense", "agrees": True,
              "seconds": 1.0, "auc": 0.9, "pointing": 1.0, "rank_acc": 0.5}  # fmt: skip
    pd.DataFrame([trojan]).to_csv(partial, index=False)  # as the old code wrote it
    clean = {"kind": "insertion", "sample": 3, "method": "Saliency", "column": "Dense", "agrees": True,
             "seconds": 2.0, "insertion": 0.7, "deletion": 0.2}  # fmt: skip
    protocol.append_rows(partial, [clean])
    protocol.append_rows(partial, [dict(clean, sample=4)])
    back = pd.read_csv(partial)
    assert list(back.columns) == list(protocol.ROW_FIELDS)
    assert back.loc[0, "auc"] == 0.9 and pd.isna(back.loc[0, "insertion"])
    assert list(back["insertion"].iloc[1:]) == [0.7, 0.7] and back["auc"].iloc[1:].isna().all()


def test_without_a_cluster_the_command_says_what_to_do(monkeypatch):
    monkeypatch.setattr(on_ray, "_ray", lambda: (_ for _ in ()).throw(on_ray.RayUnavailableError("no ray")))
    with pytest.raises(SystemExit, match="no ray"):
        cli_protocol.main(["--trojan", "1", "--clean", "0", "--methods", "Saliency", "--columns", "Dense"])
