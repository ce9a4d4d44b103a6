"""``python -m euclidnn …`` (and ``torchrun -m euclidnn train …``): the ``euclidnn`` command."""

import sys

from euclidnn.cli.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
