"""``python -m memif_cffi``: the ``memif`` command (see :mod:`memif_cffi.cli`)."""

import sys

from memif_cffi.cli import main

if __name__ == "__main__":
    sys.exit(main())
