"""``python -m le_ray.prepare``: the data pipeline alone and its audit (code: :mod:`le_ray.runners.prepare`).

A documented entry point, kept thin: it only dispatches to the runner.
"""

import sys

from le_ray.runners.prepare import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
