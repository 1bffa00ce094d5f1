"""Errors labkit raises: each message says what went wrong and what to do next."""

from __future__ import annotations


class LabkitError(Exception):
    """Base class: the message is written for the learner, with a next step."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  → {self.hint}" if self.hint else self.message


class ConfigError(LabkitError):
    """A setting (environment variable, flag, config file) is invalid."""

    exit_code = 2


class ProviderUnavailable(LabkitError):
    """A server provider cannot run on this machine (no binaries, no engine, …)."""

    exit_code = 3


class ServerStartError(LabkitError):
    """A provider was available but the server did not come up."""

    exit_code = 4


class ConnectError(LabkitError):
    """A server was expected to answer and did not (or refused our credentials)."""

    exit_code = 5


class NotRunning(LabkitError):
    """An operation needs a running lab server and there is none."""

    exit_code = 6


class ForeignServer(ConnectError):
    """The server that answers is not the one this project started (another clone took its port)."""
