"""``python -m le_ray.repeats``: the Ray sweep over (seed × loss) trials (code: :mod:`le_ray.runners.repeats`).

A documented entry point, kept thin: it only dispatches to the runner.
"""

import sys

from le_ray.runners.repeats import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
