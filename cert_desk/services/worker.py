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
import types
import typing
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
_ATOM_TYPES: frozenset[type] = frozenset({type(None), bool, int, float, str, bytes, datetime, date})
_immutable_classes: dict[type, bool] = {}


def _immutable_annotation(tp: Any) -> bool:
    """Whether every value of the annotated type is immutable (atoms, enums, frozen dataclasses
    of such, unions and tuples/frozensets of such)."""
    if tp in _ATOM_TYPES or tp is type(None):
        return True
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return True
        if dataclasses.is_dataclass(tp):
            return _immutable_class(tp)
        return False
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        return all(_immutable_annotation(a) for a in args)
    if origin in (tuple, frozenset):
        return all(a is Ellipsis or _immutable_annotation(a) for a in args)
    return False


def _immutable_class(cls: type) -> bool:
    """A frozen dataclass whose declared fields are all immutable (mypy strict keeps values to
    their declared types, so an instance of it needs no walk of its values)."""
    known = _immutable_classes.get(cls)
    if known is not None:
        return known
    _immutable_classes[cls] = False  # until proven, also for recursive types
    params = getattr(cls, "__dataclass_params__", None)
    ok = False
    if params is not None and params.frozen:
        try:
            hints = typing.get_type_hints(cls)
        except (NameError, TypeError):
            hints = {}
        ok = bool(hints) and all(_immutable_annotation(hints.get(f.name)) for f in dataclasses.fields(cls))
    _immutable_classes[cls] = ok
    return ok


def check_crossable(value: Any, _depth: int = 0) -> None:
    """Raise :class:`~cert_desk.errors.WorkerError` unless ``value`` is safe to hand to another thread.

    Safe: None, bool, int, float, str, bytes, enums, dates, tuples/frozensets of safe values,
    and frozen dataclasses whose fields are safe. A frozen dataclass whose declared field
    types are all immutable is accepted by its type (mypy, strict on the core, holds values to
    their declared types); any other is walked, every item of every tuple included.
    """
    kind = type(value)
    if kind in _ATOM_TYPES or isinstance(value, enum.Enum):
        return
    if _depth > 32:
        raise E.WorkerError("A job result is nested too deeply to check.")
    if kind is tuple or kind is frozenset:
        for item in value:
            check_crossable(item, _depth + 1)
        return
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        raise E.WorkerError(f"A job tried to return a {kind.__name__}; only frozen dataclasses and bytes "
                            "may leave a worker thread.")
    params = getattr(kind, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise E.WorkerError(f"A job tried to return {kind.__name__}, a dataclass that is not frozen.")
    if _immutable_class(kind):
        return
    for f in dataclasses.fields(value):
        check_crossable(getattr(value, f.name), _depth + 1)


def detach(err: BaseException) -> BaseException:
    """Drop the traceback (and those of its causes) of an error that leaves a worker.

    The frames of a failed login hold the PIN in their locals; the error travels to the GUI
    or the CLI and may live long. What happened was logged on the worker already.
    """
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        e.__traceback__ = None
        nxt = e.__cause__ or e.__context__
        e.__cause__ = None
        e.__context__ = None
        e = nxt
    return err


@dataclass(frozen=True)
class JobInfo:
    """What a worker is doing, for status bars."""

    module: str
    description: str
    started: float


def _RELOAD(_m: LoadedModule) -> None:
    raise AssertionError("the reload marker is handled by the worker loop")


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

    def reload(self) -> Future[None]:
        """Finalize the module after the jobs already queued; the next job initialises it afresh.

        SoftHSM2, for one, reads its configuration and finds tokens made by other programs
        only when it is initialised. It all happens on this worker's own thread, in order, so
        no other thread ever touches the module.
        """
        future: Future[None] = Future()
        with self._lock:
            if self._closed:
                future.set_exception(E.WorkerError(f"The worker of {self.path} has stopped."))
                return future
            self._queue.put(_Item(_RELOAD, "reload the module", future))
        return future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            if not item.future.set_running_or_notify_cancel():
                continue
            self._current = JobInfo(self.path, item.description, time.monotonic())
            if item.fn is _RELOAD:
                self._unload()
                item.future.set_result(None)
                self._current = None
                continue
            try:
                result = item.fn(self._load())
                check_crossable(result)
            except E.CertDeskError as err:
                log.debug("job %r on %s failed: %s", item.description, self.path, err.message)
                item.future.set_exception(detach(err))
            except E.WrongThreadError as err:
                log.error("job %r: %s", item.description, err)
                item.future.set_exception(detach(err))
            except Exception as exc:
                translated = translate(exc, item.description)
                if isinstance(translated, E.InternalError):
                    log.exception("job %r on %s raised", item.description, self.path)
                detach(exc)
                item.future.set_exception(detach(translated))
            else:
                item.future.set_result(result)
            finally:
                self._current = None
        self._finish()

    def _unload(self) -> None:
        if self._module is not None:
            try:
                self._module.finalize()
            except Exception:
                log.exception("finalizing %s", self.path)
            self._module = None

    def _finish(self) -> None:
        self._unload()
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

    def reload(self, path: str) -> Future[None]:
        """Re-initialise ``path``'s module after its queued jobs (see :meth:`ModuleWorker.reload`)."""
        return self.worker(path).reload()

    def loaded(self) -> list[str]:
        """The real paths of the modules that have a worker."""
        with self._lock:
            return list(self._workers)

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
