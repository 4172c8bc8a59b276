"""Logging: a rotating log file in the state directory, and stderr with ``-v``.

Loggers are per module (``logging.getLogger(__name__)``). PINs are never logged: they
travel as :class:`cert_desk.secrets.Secret`, whose ``str``/``repr`` are masked, and no
log call formats a PIN value (the test suite checks the log file).
"""

from __future__ import annotations

import logging
import logging.handlers
import os

from cert_desk.paths import log_file

_FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"


class _NoTraceback(logging.Formatter):
    """For the terminal: the message only; tracebacks go to the log file (``-vv`` shows them)."""

    def __init__(self, fmt: str, *, tracebacks: bool = False) -> None:
        super().__init__(fmt)
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if self.tracebacks or not record.exc_info:
            return super().format(record)
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return super().format(record) + f" (details in {log_file()})"
        finally:
            record.exc_info, record.exc_text = saved
_configured = False


def configure(verbose: int = 0, *, to_file: bool = True) -> None:
    """Set up the root logger once per process."""
    global _configured  # noqa: PLW0603 - process-wide, once
    if _configured:
        return
    _configured = True
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    if to_file and os.environ.get("CERT_DESK_NO_LOG_FILE") != "1":
        path = log_file()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = logging.handlers.RotatingFileHandler(path, maxBytes=1_000_000, backupCount=3, encoding="utf-8")
            fh.setLevel(logging.DEBUG)
            fh.setFormatter(logging.Formatter(_FORMAT))
            root.addHandler(fh)
        except OSError:
            pass
    sh = logging.StreamHandler()
    sh.setLevel(logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG)
    sh.setFormatter(_NoTraceback("%(levelname)s %(name)s: %(message)s", tracebacks=verbose >= 2))
    root.addHandler(sh)
