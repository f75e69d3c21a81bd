"""`python -m spade_engine ...` is the `spade` command (`spade_engine.cli`).

An error the user can fix (a `SystemExit` carrying a message) ends with that one line on stderr and exit status 2.
"""

import sys

from spade_engine.cli import main

try:
    status = main()
except SystemExit as e:
    if not isinstance(e.code, str):
        raise
    print(e.code, file=sys.stderr)
    status = 2
sys.exit(status)
