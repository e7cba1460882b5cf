"""`python -m stroke.runs`: the same as `stroke-runs`."""

import sys

from stroke.runs.cli import main

sys.exit(main())
