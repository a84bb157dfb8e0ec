"""``python -m emogen_bench`` is the same as the ``emogen-bench`` command."""

import sys

from emogen_bench.cli import main

sys.exit(main())
