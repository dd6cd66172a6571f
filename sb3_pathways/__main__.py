"""``python -m sb3_pathways``: the ``sb3-pathways`` command."""

import sys

from sb3_pathways.cli import main

sys.exit(main())
