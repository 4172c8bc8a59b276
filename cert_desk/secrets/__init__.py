"""Secrets: PIN values that cannot leak by accident, and where the CLI gets them from.

A :class:`Secret` is a frozen dataclass (so it may cross to a worker thread) whose
``repr``/``str`` never show the value; code that must hand the value to a PKCS#11 call
asks for it with :meth:`Secret.reveal`, which makes every use greppable.
"""

from cert_desk.secrets.secret import Secret
from cert_desk.secrets.sources import PIN_ENV, SO_PIN_ENV, read_pin_file

__all__ = ["PIN_ENV", "SO_PIN_ENV", "Secret", "read_pin_file"]
