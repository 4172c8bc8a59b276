"""Where PINs come from on the command line: a file, the environment, or a terminal prompt.

There is deliberately no way to give a PIN value as a command-line argument: argv is
readable by every user of the machine through ``/proc/PID/cmdline``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cert_desk.errors import InputError
from cert_desk.secrets.secret import Secret

PIN_ENV = "CERT_DESK_PIN"
SO_PIN_ENV = "CERT_DESK_SO_PIN"

_MAX_PIN_FILE = 4096


def read_pin_file(path: str) -> Secret:
    """Read a PIN from the first line of ``path`` (``-`` reads standard input).

    The trailing newline is removed; nothing else is stripped, so a PIN may contain spaces.

    Raises:
        InputError: the file is missing, unreadable, too large, or its first line is empty.
    """
    if path == "-":
        import sys

        line = sys.stdin.readline(_MAX_PIN_FILE)
        return _from_line(line, "standard input")
    p = Path(path)
    try:
        st = p.stat()
        if not stat.S_ISREG(st.st_mode) and not stat.S_ISFIFO(st.st_mode):
            raise InputError(f"PIN file {path} is not a regular file.")
        if st.st_size > _MAX_PIN_FILE:
            raise InputError(f"PIN file {path} is larger than {_MAX_PIN_FILE} bytes; it should hold one line.")
        with p.open("r", encoding="utf-8") as fh:
            line = fh.readline(_MAX_PIN_FILE)
    except FileNotFoundError as e:
        raise InputError(f"PIN file {path} does not exist.") from e
    except PermissionError as e:
        raise InputError(f"PIN file {path} cannot be read (permission denied).") from e
    except UnicodeDecodeError as e:
        raise InputError(f"PIN file {path} is not UTF-8 text.") from e
    except IsADirectoryError as e:
        raise InputError(f"PIN file {path} is a directory.") from e
    return _from_line(line, f"file {path}")


def pin_from_env(name: str) -> Secret | None:
    """The PIN in environment variable ``name``, or ``None`` when it is unset."""
    value = os.environ.get(name)
    if value is None:
        return None
    return _from_line(value, f"environment variable {name}")


def _from_line(line: str, source: str) -> Secret:
    value = line.removesuffix("\n").removesuffix("\r")
    if not value:
        raise InputError(f"The PIN from {source} is empty.")
    try:
        value.encode("utf-8")  # the environment decodes undecodable bytes to lone surrogates
    except UnicodeEncodeError:
        raise InputError(f"The PIN from {source} is not valid UTF-8 text.") from None
    return Secret(value, source=source)
