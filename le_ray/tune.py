"""``python -m le_ray.tune``: tune every loss, then test on fresh seeds (code: :mod:`le_ray.runners.tune`).

A documented entry point, kept thin: it only dispatches to the runner.
"""

import sys

from le_ray.runners.tune import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
