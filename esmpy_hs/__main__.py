"""``python -m esmpy_hs``: the ``esmpy-hs`` command (see :mod:`esmpy_hs.cli`)."""

import sys

from esmpy_hs.cli import main

if __name__ == "__main__":
    sys.exit(main())
