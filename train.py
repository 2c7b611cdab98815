"""``python train.py``: the training command of the README (a shim over ``agents.train``, which
``python -m agents.train`` runs from any directory)."""

import sys

from agents.train import main

if __name__ == "__main__":
    sys.exit(main())
