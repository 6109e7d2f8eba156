"""``python -m recsys``: the same as the ``recsys`` command."""
import sys

from recsys.cli import main

sys.exit(main())
