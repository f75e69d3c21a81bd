"""The `spade` command (also `python -m spade_engine`): batch explanations and the saliency protocol.

    spade explain IMAGES_OR_FOLDERS... --model NAME --out DIR [--sparsity S --methods M ...]
    spade explain photos/ --checkpoint model.pt --arch resnet18 --out report/
    spade protocol --model testbed_resnet --trojan 100 --clean 100 --out results.csv [--workers K] [--address A]

`explain` writes the report described in `spade_engine.explain.report` (`spade_engine.cli.explain`); `protocol`
runs `spade_engine.protocol` on Ray, or in-process with `--serial` (`spade_engine.cli.protocol`). Each subcommand
imports only what it uses. Errors a user can fix end with one line on stderr and exit status 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

PROG = "spade"
COMMANDS = {
    "explain": "dense vs SPADE saliency maps for many images, as an offline report",
    "protocol": "the SPADE paper's saliency protocol on a testbed model (on Ray; --serial in-process)",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `spade` console script and of `python -m spade_engine`: dispatch to `spade explain` or
    `spade protocol`. An error the user can fix (a `SystemExit` carrying a message) ends with that one line on
    stderr and status 2.

    Returns:
        The exit status (0: done; 2: a user's error; `spade protocol` stopped by Ctrl-C / SIGTERM: 130 / 143).
    """
    try:
        return _dispatch(argv)
    except SystemExit as e:
        if not isinstance(e.code, str):
            raise
        print(e.code, file=sys.stderr)
        return 2


def _dispatch(argv: Sequence[str] | None) -> int:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True, metavar="{explain,protocol}")
    for name, text in COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    args, rest = ap.parse_known_args(argv)
    if args.command == "protocol":
        from spade_engine.cli import protocol

        return protocol.main(rest)
    from spade_engine.cli import explain

    return explain.main(rest)


if __name__ == "__main__":
    sys.exit(main())
