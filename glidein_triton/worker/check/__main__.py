"""``python3 -m glidein_triton.worker.check``: the node check.

Python 3.6 (EL8's python3) must get as far as the version test, so nothing here needs a newer Python.
"""

import sys

if sys.version_info < (3, 9):
    sys.stderr.write(
        "glidein-triton check: Python {} at {} is too old: the worker code needs Python >= 3.9. On EL8, "
        "python3 and /usr/libexec/platform-python are 3.6: install python39 (python3.9) or use a Python on "
        "CVMFS, and give the startup script the same Python with GLIDEIN_TRITON_PYTHON "
        "(docs/lifecycle.md)\n".format(sys.version.split()[0], sys.executable)
    )
    sys.exit(1)

from glidein_triton.worker.check.command import main

sys.exit(main())
