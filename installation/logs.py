"""Logging to `<home>/logs/qcat.log` with rotation, and a filter that scrubs secrets.

The ANU API key must never reach a log line (promise S1), whatever code logged it: the filter
replaces every registered secret in the formatted message before any handler writes it.
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Before `setup` runs (or when it never does: a home that is a file), records go nowhere rather
# than to Python's last-resort stderr handler, which would repeat a sentence already printed.
logging.getLogger("qcat").addHandler(logging.NullHandler())
_SECRETS: set[str] = set()


def register_secret(value: str) -> None:
    """From now on, `value` is replaced by <hidden> in every log record."""
    if value:
        _SECRETS.add(value)


def scrub(text: str) -> str:
    """`text` with every registered secret replaced (use it on error texts too)."""
    for secret in _SECRETS:
        text = text.replace(secret, "<hidden>")
    return text


class SecretFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            record.msg = scrub(record.getMessage())
            record.args = None
        return True


def setup(log_file: Path, level: str = "INFO", max_bytes: int = 1_000_000, backups: int = 5,
          verbose: int = 0) -> bool:
    """Send the `qcat` loggers to a rotating file, and to stderr with `-v`.

    A log file that cannot be opened (a home on read-only media) is not an error: the records go
    to stderr instead, errors only unless `-v` (a user error is already printed once as a
    sentence; its warning record would say it twice). Returns whether the file is in use."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_qcat", False):
            root.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = []
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    except OSError:
        to_file = False
    else:
        file_handler.setLevel(level)
        handlers.append(file_handler)
        to_file = True
    if verbose or not to_file:
        stderr = logging.StreamHandler()
        stderr.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose
                        else logging.ERROR)
        handlers.append(stderr)
    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(SecretFilter())
        handler._qcat = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(min(h.level for h in handlers))
    return to_file
