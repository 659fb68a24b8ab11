"""``python -m le_ray.cli`` = ``le-ray``."""

import sys

from le_ray.cli.console import main

if __name__ == "__main__":
    sys.exit(main())
