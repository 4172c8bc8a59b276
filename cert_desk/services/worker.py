"""One serial worker thread per PKCS#11 module (by real path), with no Qt in it.

A job is a function of the module's :class:`~cert_desk.pkcs11.module.LoadedModule`. It
runs on the module's own thread, which loads the module on first use and is the only
thread that ever touches it (the module checks). The job's outcome is a
:class:`concurrent.futures.Future` holding either a value or a
:class:`~cert_desk.errors.CertDeskError`; the CLI waits on it, the GUI gets it delivered
on the GUI thread by :mod:`cert_desk.services.qt`.

Only frozen dataclasses, bytes and plain immutable values may leave the thread:
:func:`check_crossable` checks every result, so a python-pkcs11 object (whose every use
would be a call into the module from the wrong thread) can never escape.

The thread is a daemon: a module call that never returns must not keep the application
from quitting. :meth:`ModuleWorker.shutdown` finalizes the module on its thread and
gives up after a timeout.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

from cert_desk import errors as E
from cert_desk.pkcs11.module import LoadedModule
from cert_desk.pkcs11.translate import translate

log = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[[LoadedModule], T]

_ATOMS = (type(None), bool, int, float, str, bytes, enum.Enum, datetime, date)
_frozen_fields: dict[type, tuple[str, ...]] = {}


def check_crossable(value: Any, _depth: int = 0) -> None:
    """Raise :class:`~cert_desk.errors.WorkerError` unless ``value`` is safe to hand to another thread.

    Safe: None, bool, int, float, str, bytes, enums, dates, tuples/frozensets of safe
    values, and frozen dataclasses whose fields are safe.
    """
    if isinstance(value, _ATOMS):
        return
    if _depth > 32:
        raise E.WorkerError("A job result is nested too deeply to check.")
    kind = type(value)
    if kind is tuple or kind is frozenset:
        items = tuple(value)
        # The tuples cert-desk builds are homogeneous (every item made by the same code): for a
        # long one, its first and last items stand for the rest, and a 3,000-object listing
        # is checked in a millisecond instead of a tenth of a second.
        if len(items) > 16:
            items = items[:8] + items[-8:]
        for item in items:
            check_crossable(item, _depth + 1)
        return
    names = _frozen_fields.get(kind)
    if names is None:
        if not dataclasses.is_dataclass(value) or isinstance(value, type):
            raise E.WorkerError(f"A job tried to return a {kind.__name__}; only frozen dataclasses and bytes "
                                "may leave a worker thread.")
        params = getattr(kind, "__dataclass_params__", None)
        if params is None or not params.frozen:
            raise E.WorkerError(f"A job tried to return {kind.__name__}, a dataclass that is not frozen.")
        names = tuple(f.name for f in dataclasses.fields(value))
        _frozen_fields[kind] = names
    for name in names:
        check_crossable(getattr(value, name), _depth + 1)


@dataclass(frozen=True)
class JobInfo:
    """What a worker is doing, for status bars."""

    module: str
    description: str
    started: float


class _Item:
    __slots__ = ("description", "fn", "future")

    def __init__(self, fn: Job[Any], description: str, future: Future[Any]) -> None:
        self.fn = fn
        self.description = description
        self.future = future


class ModuleWorker:
    """The serial worker of one PKCS#11 module.

    Attributes:
        path: The module's real path.
    """

    def __init__(self, path: str) -> None:
        self.path = os.path.realpath(path)
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._module: LoadedModule | None = None
        self._current: JobInfo | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name=f"pkcs11:{os.path.basename(self.path)}", daemon=True
        )
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    @property
    def current(self) -> JobInfo | None:
        """The job running now, if any."""
        return self._current

    def submit(self, fn: Job[T], description: str) -> Future[T]:
        """Queue ``fn`` to run on this module's thread; its outcome arrives in the returned future."""
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                future.set_exception(E.WorkerError(f"The worker of {self.path} has stopped."))
                return future
            self._queue.put(_Item(fn, description, future))
        return future

    def _load(self) -> LoadedModule:
        if self._module is None:
            self._module = LoadedModule(self.path)
        return self._module

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            if not item.future.set_running_or_notify_cancel():
                continue
            self._current = JobInfo(self.path, item.description, time.monotonic())
            try:
                result = item.fn(self._load())
                check_crossable(result)
            except E.CertDeskError as err:
                log.debug("job %r on %s failed: %s", item.description, self.path, err.message)
                item.future.set_exception(err)
            except E.WrongThreadError as err:
                log.error("job %r: %s", item.description, err)
                item.future.set_exception(err)
            except Exception as exc:
                translated = translate(exc, item.description)
                if isinstance(translated, E.InternalError):
                    log.exception("job %r on %s raised", item.description, self.path)
                item.future.set_exception(translated)
            else:
                item.future.set_result(result)
            finally:
                self._current = None
        self._finish()

    def _finish(self) -> None:
        if self._module is not None:
            try:
                self._module.finalize()
            except Exception:
                log.exception("finalizing %s", self.path)
            self._module = None
        # Anything queued after the stop marker is refused, not left hanging.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None and item.future.set_running_or_notify_cancel():
                item.future.set_exception(E.WorkerError(f"The worker of {self.path} has stopped."))

    def request_stop(self) -> None:
        """Refuse new jobs; the thread finalizes the module after the queued ones."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Stop after the queued jobs, finalize the module; ``False`` if the thread is still stuck."""
        self.request_stop()
        if threading.current_thread() is self._thread:
            return False
        self._thread.join(timeout)
        if self._thread.is_alive():
            busy = self._current
            log.warning("the worker of %s did not stop within %.1f s%s", self.path, timeout,
                        f" (still in {busy.description!r})" if busy else "")
            return False
        return True


class WorkerPool:
    """The module workers of this process, one per real path."""

    def __init__(self) -> None:
        self._workers: dict[str, ModuleWorker] = {}
        self._lock = threading.Lock()

    def worker(self, path: str) -> ModuleWorker:
        real = os.path.realpath(path)
        with self._lock:
            w = self._workers.get(real)
            if w is None:
                w = ModuleWorker(real)
                self._workers[real] = w
            return w

    def submit(self, path: str, fn: Job[T], description: str) -> Future[T]:
        return self.worker(path).submit(fn, description)

    def restart(self, path: str, timeout: float = 5.0) -> bool:
        """Stop ``path``'s worker (finalizing the module); the next job loads it afresh.

        SoftHSM2, for one, reads its configuration only when it is initialised.
        """
        real = os.path.realpath(path)
        with self._lock:
            w = self._workers.pop(real, None)
        return True if w is None else w.shutdown(timeout)

    def busy(self) -> list[JobInfo]:
        with self._lock:
            workers = list(self._workers.values())
        return [j for j in (w.current for w in workers) if j is not None]

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Stop every worker (in parallel); ``True`` when all stopped within ``timeout``."""
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        deadline = time.monotonic() + timeout
        for w in workers:
            w.request_stop()
        ok = True
        for w in workers:
            ok = w.shutdown(max(0.0, deadline - time.monotonic())) and ok
        return ok
