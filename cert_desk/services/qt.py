"""The thin Qt adapter: job outcomes delivered on the GUI thread.

A worker thread finishing a job only emits a queued signal; the slot, a method of a
QObject living on the GUI thread, runs the callback there with one
:class:`~cert_desk.services.outcome.Outcome`. Callbacks never run on a worker thread, and
no Qt object is touched off the GUI thread. (Cross-thread signals go to ``@Slot``
methods, not lambdas: some PySide6 versions run a lambda on the emitting thread.)
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from PySide6.QtCore import QObject, Qt, Signal, Slot

from cert_desk.services.outcome import Outcome

log = logging.getLogger(__name__)

T = TypeVar("T")


class QtJobs(QObject):
    """Watches futures and calls back on the GUI thread.

    Signals:
        busy_changed(str): The descriptions of the jobs still running, joined ("" when idle).
        finished(object): Every outcome, after its callback (for the activity log).
    """

    busy_changed = Signal(str)
    finished = Signal(object)
    _done = Signal(int)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[Future[Any], Callable[[Outcome[Any]], None], str]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._done.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    def watch(self, future: Future[T], on_done: Callable[[Outcome[T]], None], description: str) -> None:
        """Call ``on_done(outcome)`` on the GUI thread when ``future`` finishes."""
        job_id = next(self._ids)
        with self._lock:
            self._pending[job_id] = (future, on_done, description)
        self.busy_changed.emit(self.busy_text())
        future.add_done_callback(lambda _f: self._notify(job_id))

    def _notify(self, job_id: int) -> None:
        # Runs on the worker thread (or here, if the future was already done): only a queued emit.
        if not self._closed:
            self._done.emit(job_id)

    @Slot(int)
    def _deliver(self, job_id: int) -> None:
        with self._lock:
            entry = self._pending.pop(job_id, None)
        if entry is None:
            return
        future, on_done, description = entry
        outcome = Outcome.of(future, description)
        try:
            on_done(outcome)
        except Exception:
            log.exception("callback for %r failed", description)
            raise
        finally:
            self.busy_changed.emit(self.busy_text())
            self.finished.emit(outcome)

    def busy_text(self) -> str:
        with self._lock:
            names = [d for _f, _cb, d in self._pending.values()]
        return ", ".join(dict.fromkeys(names))

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        """Stop delivering (the window is going away)."""
        self._closed = True
        with self._lock:
            self._pending.clear()
