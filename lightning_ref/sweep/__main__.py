"""python -m lightning_ref.sweep: the sweep's command line (lightning_ref.sweep.runner)."""

import sys

from lightning_ref.sweep.runner import main

if __name__ == "__main__":
    sys.exit(main())
