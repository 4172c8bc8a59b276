"""The :class:`Secret` value type."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Secret:
    """A PIN or passphrase. Its value never appears in ``repr``, ``str``, logs or tracebacks.

    Attributes:
        source: Where the value came from, in words ("prompt", "file /path", "environment
            CERT_DESK_PIN"); safe to show.
    """

    _value: str = field(repr=False)
    source: str = "unknown"

    def reveal(self) -> str:
        """The value, for the one call that needs it (C_Login, C_InitPIN, ...)."""
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __str__(self) -> str:
        return "********"

    def __repr__(self) -> str:
        return f"Secret(<hidden>, source={self.source!r})"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not pickled")
