"""``python -m minigrad``: the command line (:mod:`minigrad.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
