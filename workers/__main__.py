"""`python -m workers ...` is the `kaizen-stream` command."""

import sys

from workers.cli import main

sys.exit(main())
