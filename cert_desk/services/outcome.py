"""One result-or-error outcome per job (Qt-free)."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from cert_desk import errors as E

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What a finished job produced: a value, or an error a user can read.

    Attributes:
        description: The job, in words ("list the objects").
        value: The result when ``error`` is ``None``.
        error: A :class:`~cert_desk.errors.CertDeskError` (anything else is wrapped as InternalError).
    """

    description: str
    value: T | None = None
    error: E.CertDeskError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]

    @classmethod
    def of(cls, future: Future[T], description: str) -> Outcome[T]:
        """The outcome of a finished future (never raises)."""
        if future.cancelled():
            return cls(description, error=E.CancelledError(f"Cancelled: {description}."))
        exc = future.exception()
        if exc is None:
            return cls(description, value=future.result())
        if isinstance(exc, E.CertDeskError):
            return cls(description, error=exc)
        return cls(description, error=E.InternalError(f"{description} failed: {type(exc).__name__}: {exc}"))
