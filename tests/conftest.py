"""Fixtures shared by every test package."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One intra-op thread for the whole suite: the tensors are tiny, and on a shared 2-core machine two OpenMP
    threads run many times slower (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def isolated_app(monkeypatch, tmp_path):
    """For Streamlit page tests: CPU, no network, an empty torch cache and private engine caches under tmp,
    and Streamlit's caches cleared before and after the test."""
    import streamlit as st

    monkeypatch.setenv("SPADE_OFFLINE", "1")
    monkeypatch.setenv("SPADE_DEVICE", "cpu")
    monkeypatch.setenv("SPADE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()
