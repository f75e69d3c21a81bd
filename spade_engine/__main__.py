"""`python -m spade_engine ...` is the `spade` command (`spade_engine.cli.main`): a user's error ends with one line
on stderr and exit status 2."""

import sys

from spade_engine.cli import main

sys.exit(main())
