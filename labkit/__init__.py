"""pg-labkit: a live PostgreSQL 16 lab for Jupyter notebooks.

In a notebook::

    import labkit
    shop = labkit.lab()
"""

from labkit.errors import LabkitError
from labkit.notebook import Lab, lab

__all__ = ["Lab", "LabkitError", "lab"]
__version__ = "0.1.0"
