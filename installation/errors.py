"""The one exception tree of qcat.

Every error a *user* can cause or meet (a bad file, a bad config, a failing service, a missing
tool) is a `QcatError` with a one-sentence message and, where useful, a hint naming the fix. The
CLI prints it as ``qcat: error: ...`` plus ``hint: ...`` and exits with its code; no traceback.
Bugs are *not* dressed up as QcatError: they raise ordinary exceptions and show a traceback.

This module is a leaf: it imports nothing of qcat, so every package (quantum, models, firmware,
phrases) may raise these without depending on the appliance layer.

    QcatError                     exit_code  meaning
    ├── UsageError                2          the command line itself is wrong
    ├── InputError                2          a file, value or reply handed to us is wrong
    │   ├── ConfigError           2            the config file (names key, value and fix)
    │   └── FormatError           2            one of our binary formats: magic, version, CRC, size
    ├── CheckFailed               1          a verification ran and found a difference
    ├── NotBuiltYet               2          a command whose feature is not built yet
    └── ExternalError             3          something outside our code failed
        ├── ServiceError          3            the ANU service: network, TLS, HTTP, quota
        ├── DeviceError           3            a unit, serial port, audio device or card
        ├── ToolMissing           3            an external program (espeak-ng, a C compiler)
        └── EntropyExhausted      3            the pool is empty and the policy says fail
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_EXTERNAL = 3


class QcatError(Exception):
    """Base of all user-facing errors: a sentence, an optional hint, an exit code."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(QcatError):
    """The command line is wrong (unknown option, missing argument, contradictory flags)."""


class InputError(QcatError):
    """A file, value or reply handed to qcat is wrong; nothing was written because of it."""


class ConfigError(InputError):
    """The config file is wrong; the message names the key, the value and the fix."""


class FormatError(InputError):
    """A file in one of qcat's binary formats is wrong (magic, version, size, CRC, hash)."""


class CheckFailed(QcatError):
    """A verification ran to the end and found a difference (exit 1, not a crash)."""

    exit_code = EXIT_CHECK_FAILED


class NotBuiltYet(QcatError):
    """A command whose feature is not built yet in this version; says so instead of pretending."""


class ExternalError(QcatError):
    """Something outside qcat's code failed: a service, a device, an external tool."""

    exit_code = EXIT_EXTERNAL


class ServiceError(ExternalError):
    """The ANU QRNG service failed: network, TLS, DNS, HTTP status, quota, malformed reply."""


class DeviceError(ExternalError):
    """A unit, serial port, audio device or SD card failed or is absent."""


class ToolMissing(ExternalError):
    """An external program qcat needs (espeak-ng, a C compiler) is not installed."""


class EntropyExhausted(ExternalError):
    """The entropy pool is empty and the configured policy is to fail."""
