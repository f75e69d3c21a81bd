"""Where the shipped assets live: one root, read by every module that needs a shipped file.

`ASSETS` is the repository's `assets/` folder (models, profiles, examples, sprites, stored benchmarks);
`MODELS` the testbed model cards and weights under it. Tests point `MODELS` elsewhere with
`monkeypatch.setattr(paths, "MODELS", folder)`: the registry reads it at every call.
"""

from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"
MODELS = ASSETS / "models"
