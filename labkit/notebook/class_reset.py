"""``shop.reset()`` on a class server: ask the hub's reset service (labkit.classroom.reset_service) to do it."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from labkit.config import RESET_URL_ENV
from labkit.errors import LabkitError

TOKEN_ENV = "JUPYTERHUB_API_TOKEN"  # the single-user server's own token: it says who asks
ASK_INSTRUCTOR = "On a class server, ask your instructor: labkit class reset <your id>."


def available() -> bool:
    return bool(os.environ.get(RESET_URL_ENV) and os.environ.get(TOKEN_ENV))


def request_reset(timeout: float = 300) -> float:
    """Have this student's class database put back to the template; returns the seconds it took."""
    url, token = os.environ.get(RESET_URL_ENV, ""), os.environ.get(TOKEN_ENV, "")
    if not (url and token):
        raise LabkitError("This class has no reset service, so your database cannot be reset from the notebook.", ASK_INSTRUCTOR)
    request = urllib.request.Request(url, data=b"", method="POST", headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return float(json.load(response)["seconds"])
    except urllib.error.HTTPError as exc:
        try:
            why = json.load(exc)["error"]
        except (ValueError, KeyError, TypeError):
            why = f"HTTP {exc.code}"
        raise LabkitError(f"The class's reset service refused: {why}", ASK_INSTRUCTOR) from None
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LabkitError(f"The class's reset service at {url} did not answer ({reason}).", ASK_INSTRUCTOR) from None
