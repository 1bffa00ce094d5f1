"""Remove JupyterLab front-end bundles that the lab does not use and that JupyterLab 4.6 flags.

jupysql-plugin 0.4.5 (a dependency of JupySQL) ships a front-end extension built for an older
JupyterLab; `jupyter labextension list` marks it as incompatible. The lab needs none of its UI
(a connection widget and SQL highlighting): `%sql` is JupySQL's kernel side, which stays. Its
Python package also stays, since JupySQL imports it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

UNUSED = ("jupysql-plugin",)

for name in UNUSED:
    bundle = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / name
    if bundle.exists():
        shutil.rmtree(bundle)
        print(f"removed the unused front-end extension {name}")
