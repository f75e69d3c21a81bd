"""Fixtures for the unit tests of `pages/ui/` (no AppTest: the page tests are in `tests/app/`)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _offline(isolated_app):
    """Every test here runs in `isolated_app` (tests/conftest.py)."""
