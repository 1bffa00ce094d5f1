"""pg-labkit: a live PostgreSQL 16 lab for Jupyter notebooks.

In a notebook::

    import labkit
    shop = labkit.lab()
"""

from labkit.errors import LabkitError
from labkit.notebook import erd, explain, sessions
from labkit.notebook.lab import Lab, lab

__all__ = ["Lab", "LabkitError", "erd", "explain", "lab", "sessions"]
__version__ = "0.1.0"
