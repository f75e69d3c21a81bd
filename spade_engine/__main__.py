"""`python -m spade_engine ...` is the `spade` command (`spade_engine.cli`)."""

import sys

from spade_engine.cli import main

sys.exit(main())
