"""pg-labkit: a live PostgreSQL 16 lab for Jupyter notebooks.

In a notebook::

    import labkit
    shop = labkit.lab()
"""

import sys

if sys.platform == "win32":  # the lab's server management needs POSIX (file locks, sockets, users)
    raise SystemExit(
        "labkit runs on Linux and macOS, not on Windows itself: use WSL2 (Ubuntu) or Docker, then the same steps (see the README)."
    )

from labkit.errors import LabkitError
from labkit.notebook import erd, explain, sessions
from labkit.notebook.lab import Lab, lab

__all__ = ["Lab", "LabkitError", "erd", "explain", "lab", "sessions"]
__version__ = "0.1.0"
