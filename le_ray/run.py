"""``python -m le_ray.run``: one diagnostic run (code: :mod:`le_ray.runners.run`).

A documented entry point, kept thin: it only dispatches to the runner.
"""

import sys

from le_ray.runners.run import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
