"""``python -m batch.evaluate``: the same as ``recsys evaluate`` (:func:`batch.evaluate.cli.main`)."""
import sys

from batch.evaluate.cli import main

if __name__ == "__main__":
    sys.exit(main())
