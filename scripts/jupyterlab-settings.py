"""Install the lab's JupyterLab settings into this Python environment (run by scripts/install, Binder and Docker).

- No "Would you like to get notified about official Jupyter news?" pop-up: the announcements plugin is
  disabled (page_config.json), and news and update checks are off (overrides.json).
Existing settings in those files are kept; only these keys are set.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

PAGE_CONFIG = Path(sys.prefix) / "etc" / "jupyter" / "labconfig" / "page_config.json"
OVERRIDES = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
DISABLED = {"@jupyterlab/apputils-extension:announcements": True}
SETTINGS = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}


def merge(path: Path, update: dict[str, Any]) -> None:
    try:
        current = json.loads(path.read_text())
    except (OSError, ValueError):
        current = {}
    for key, value in update.items():
        current[key] = {**current.get(key, {}), **value} if isinstance(value, dict) else value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2) + "\n")


merge(PAGE_CONFIG, {"disabledExtensions": DISABLED})
merge(OVERRIDES, SETTINGS)
