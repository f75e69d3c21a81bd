"""Shared Streamlit layer for all pages, one module per job:

- `cache`: the one cached layer between pages and the engine (models, engines, SPADE runs, saliency, long runs);
- `keys`: every session-state key, namespaced per page;
- sidebar widgets and result blocks: `state` (values that survive page switches, kept uploads), `model_picker`,
  `sample_picker`, `spade_controls`, `results` (progress, predictions, map choices, downloads), `command`;
- `figures`: plotly figures and the JSON export;
- one module per page for its cached wrappers and figures: `tour`, `neurons`, `benchmarks`, `sparse_layer`,
  `pathways`, `sobol`, `study` (with `access` for the researcher password).

Pages import the modules they use, e.g. `from pages.ui.model_picker import model_picker`. Nothing under
`spade_engine/` imports this package. docs/ARCHITECTURE.md has the map.
"""
