"""`python -m historyfs` runs the historyfs command."""

import sys

from .cli import main

sys.exit(main())
