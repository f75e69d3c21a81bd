"""Fixtures shared by every test package."""

from __future__ import annotations

import pytest


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
