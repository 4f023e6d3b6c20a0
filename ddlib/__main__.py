"""``python -m ddlib``: the command line of :mod:`ddlib.cli`."""

import sys

from ddlib.cli import main

if __name__ == "__main__":
    sys.exit(main())
