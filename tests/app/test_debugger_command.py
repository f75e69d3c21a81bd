"""The Debugger's "run this over a folder" block: the `spade explain` command for the page's current settings."""

from __future__ import annotations

import argparse
import shlex

from pages.ui import keys
from spade_engine.cli import explain as cli
from tests.app.conftest import TINY, make_app


def _parsed(line: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    cli.explain_parser(ap.add_subparsers(dest="command"))
    return ap.parse_args(shlex.split(line)[1:])


def test_the_command_follows_the_pages_settings(tiny_assets):
    at = make_app(**{keys.scoped(keys.DEBUGGER, keys.N_AUG): 16}).run()
    assert not at.exception, at.exception
    (code,) = [c for c in at.code if "spade explain" in c.value]
    args = _parsed(code.value)
    methods = at.multiselect(key=keys.DEBUGGER_METHODS).value
    assert (args.model, args.n_aug, args.seed, args.methods) == (TINY, 16, 0, list(methods))
    at.sidebar.slider(key=keys.WIDGET + keys.scoped(keys.DEBUGGER, keys.SPARSITY)).set_value(55).run()
    assert not at.exception, at.exception
    (code,) = [c for c in at.code if "spade explain" in c.value]
    assert _parsed(code.value).sparsity == 0.55
