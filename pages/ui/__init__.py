"""Shared Streamlit layer for all pages: cached models and engines (`cache`), session-state keys (`keys`), the
sidebar widgets and result blocks (`widgets`, gathering `state`, `model_picker`, `sample_picker`,
`spade_controls` and `results`) and figure helpers (`figures`).

Pages import from here, e.g. `from pages.ui import cache, widgets`; page-specific cached wrappers live in
`pages/ui/<area>.py`. Nothing under `spade_engine/` imports this package. docs/ARCHITECTURE.md has the map.
"""
