"""``python -m euclidnn …`` (and ``torchrun -m euclidnn train …``): the ``euclidnn`` command.

Nothing here may import torch: :func:`euclidnn.cli.__main__.main` sets OpenMP's defaults in
the environment before torch (and with it the OpenMP runtime, which reads them) is loaded.
"""

import sys

from euclidnn.cli.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
