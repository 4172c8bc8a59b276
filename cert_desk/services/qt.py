"""The thin Qt adapter: job outcomes delivered on the GUI thread, and what is running.

A worker thread finishing a job only emits a queued signal; the slot, a method of a
QObject living on the GUI thread, runs the callback there with one
:class:`~cert_desk.services.outcome.Outcome`. Callbacks never run on a worker thread, and
no Qt object is touched off the GUI thread. (Cross-thread signals go to ``@Slot``
methods, not lambdas: some PySide6 versions run a lambda on the emitting thread.)

Every job is also a :class:`JobRecord` for the Activity panel (what, the equivalent
command, when, how long, the result), and counts as work of its ``owner`` (a pane), so
the pane that waits can show that it does.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from PySide6.QtCore import QObject, Qt, Signal, Slot

from cert_desk.services.outcome import Outcome

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class JobRecord:
    """One operation, for the Activity panel.

    Attributes:
        description: What it does, in words ("list the objects of 'x'").
        command: The equivalent command line (PINs as ``env:PIN``), if there is one.
        started: Wall-clock start (``time.time()``).
        duration: Seconds, once finished.
        ok: ``None`` while running.
        message: The error message when it failed, else "".
    """

    id: int
    description: str
    command: str | None
    started: float
    duration: float | None = None
    ok: bool | None = None
    message: str = ""


@dataclass
class _Pending:
    future: Future[Any]
    on_done: Callable[[Outcome[Any]], None]
    record: JobRecord
    owner: object | None
    t0: float
    quiet: bool = False


class QtJobs(QObject):
    """Watches futures and calls back on the GUI thread.

    Signals:
        busy_changed(str): The descriptions of the jobs still running, joined ("" when idle).
        owner_busy(object, bool): An owner (a pane) got its first job, or finished its last.
        job_started(JobRecord), job_finished(JobRecord): For the Activity panel.
    """

    busy_changed = Signal(str)
    owner_busy = Signal(object, bool)
    job_started = Signal(object)
    job_finished = Signal(object)
    _done = Signal(int)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._owners: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._closed = False
        self._done.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    def watch(self, future: Future[T], on_done: Callable[[Outcome[T]], None], description: str, *,
              command: str | None = None, owner: object | None = None, quiet: bool = False) -> JobRecord:
        """Call ``on_done(outcome)`` on the GUI thread when ``future`` finishes.

        ``quiet`` jobs (background polling) are not shown as activity or as work in progress.
        """
        job_id = next(self._ids)
        record = JobRecord(job_id, description, command, time.time())
        with self._lock:
            self._pending[job_id] = _Pending(future, on_done, record, owner, time.monotonic(), quiet)
        if owner is not None:
            self._owners[id(owner)] += 1
            if self._owners[id(owner)] == 1:
                self.owner_busy.emit(owner, True)
        if not quiet:
            self.job_started.emit(record)
            self.busy_changed.emit(self.busy_text())
        future.add_done_callback(lambda _f: self._notify(job_id))
        return record

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
        outcome = Outcome.of(entry.future, entry.record.description)
        record = replace(entry.record, duration=time.monotonic() - entry.t0, ok=outcome.ok,
                         message=outcome.error.message if outcome.error is not None else "")
        try:
            entry.on_done(outcome)
        except Exception:
            log.exception("callback for %r failed", record.description)
            raise
        finally:
            if entry.owner is not None:
                self._owners[id(entry.owner)] -= 1
                if self._owners[id(entry.owner)] <= 0:
                    del self._owners[id(entry.owner)]
                    self.owner_busy.emit(entry.owner, False)
            if not entry.quiet:
                self.busy_changed.emit(self.busy_text())
                self.job_finished.emit(record)

    def busy_text(self) -> str:
        with self._lock:
            names = [p.record.description for p in self._pending.values() if not p.quiet]
        return ", ".join(dict.fromkeys(names))

    def is_busy(self, owner: object) -> bool:
        return self._owners.get(id(owner), 0) > 0

    def pending(self, *, include_quiet: bool = False) -> int:
        with self._lock:
            return sum(1 for p in self._pending.values() if include_quiet or not p.quiet)

    def close(self) -> None:
        """Stop delivering (the window is going away)."""
        self._closed = True
        with self._lock:
            self._pending.clear()


class QtReaderWatcher(QObject):
    """PC/SC changes, delivered on the GUI thread.

    Signals:
        changed(PcscSnapshot, tuple[ReaderEvent, ...]): After every change (and once at start).
            When pcscd stops answering (a hung daemon blocks the watcher without an error) for
            ``stall_s`` seconds, a NOT_ANSWERING snapshot with a ``pcscd-not-answering`` event;
            when it answers again, the last real snapshot with ``pcscd-answering``.
    """

    changed = Signal(object, object)

    def __init__(self, parent: QObject | None = None, *, stall_s: float | None = None) -> None:
        super().__init__(parent)
        from PySide6.QtCore import QTimer

        from cert_desk.pcsc.watch import ReaderWatcher

        self._closed = False
        self._watcher = ReaderWatcher(self._emit)
        from cert_desk.pcsc.watch import STALL_S

        self._stall_s = STALL_S if stall_s is None else stall_s
        self.stalled = False
        self._timer = QTimer(self)
        self._timer.setInterval(500)
        self._timer.timeout.connect(self._check_stall)

    def _check_stall(self) -> None:
        from cert_desk.pcsc.readers import ReaderEvent, not_answering

        late = self._watcher.late_by() >= self._stall_s
        if late == self.stalled or self._closed:
            return
        self.stalled = late
        last = self._watcher.last
        if late or last is None:
            self.changed.emit(not_answering(), (ReaderEvent("pcscd-not-answering"),))
        else:
            self.changed.emit(last, (ReaderEvent("pcscd-answering"),))

    def _emit(self, snap: object, events: object) -> None:
        # on the watcher's thread: only a (queued) signal
        if not self._closed:
            self.changed.emit(snap, events)

    def start(self) -> None:
        self._watcher.start()
        self._timer.start()

    def stop(self) -> None:
        self._closed = True
        self._timer.stop()
        self._watcher.stop()
