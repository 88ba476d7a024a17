"""``python3 -m glidein_triton.worker.check``: the node check."""

import sys

from glidein_triton.worker.check.command import main

sys.exit(main())
