"""python -m cnnlab (also what torchrun launches)."""

import sys

from cnnlab.cli import main

sys.exit(main())
