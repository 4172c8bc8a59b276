"""Watch PC/SC on a thread of its own: readers and cards coming and going, pcscd stopping and starting.

The watcher blocks in ``SCardGetStatusChange`` (woken by pcscd on any change, or by
``SCardCancel`` when it stops) and, while pcscd is down, tries again every second. Every
change becomes a new :class:`~cert_desk.pcsc.readers.PcscSnapshot` and the events that lead
to it, handed to a callback on the watcher's thread: the CLI prints them, the GUI's adapter
carries them to the GUI thread. Only frozen dataclasses leave the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cert_desk.pcsc.readers import PcscClient, PcscSnapshot, PcscStatus, ReaderEvent, diff

log = logging.getLogger(__name__)

Callback = Callable[[PcscSnapshot, tuple[ReaderEvent, ...]], None]


#: What a snapshot may take before it counts as late (two calls to a local daemon).
_SNAPSHOT_S = 0.5
#: How late a call may be before pcscd counts as not answering. A call may have begun up to one
#: wait (1 s) plus _SNAPSHOT_S before pcscd hung, and callers look twice a second: with 2.5 s the
#: user hears of a hung pcscd within 5 s.
STALL_S = 2.5


def _shown(snap: PcscSnapshot) -> tuple[tuple[str, str], ...]:
    return tuple((r.name, r.state_words()) for r in snap.readers)


class ReaderWatcher:
    """Calls ``callback(snapshot, events)`` once at start and after every change.

    Args:
        callback: Runs on the watcher's thread; must be quick and must not raise.
        wait_ms: How long one ``SCardGetStatusChange`` blocks (also how soon :meth:`stop` returns).
        retry_s: How often to look for pcscd while it is not there.
    """

    def __init__(self, callback: Callback, *, wait_ms: int = 1000, retry_s: float = 1.0) -> None:
        self._callback = callback
        self._wait_ms = wait_ms
        self._retry_s = retry_s
        self._stop = threading.Event()
        self._client = PcscClient()
        self._thread = threading.Thread(target=self._run, name="pcsc-watch", daemon=True)
        self.last: PcscSnapshot | None = None
        self._call: tuple[float, float] | None = None  # (started, seconds it may take)

    def late_by(self) -> float:
        """How long the PC/SC call now running has overrun what it should take (0 when none has).

        A hung pcscd (a reader driver stuck on a USB device, a stopped process) blocks every
        PC/SC client, this thread too, with no error: this is how its caller notices.
        """
        call = self._call
        if call is None:
            return 0.0
        return max(0.0, time.monotonic() - call[0] - call[1])

    @contextmanager
    def _calling(self, seconds: float) -> Iterator[None]:
        self._call = (time.monotonic(), seconds)
        try:
            yield
        finally:
            self._call = None

    def start(self) -> ReaderWatcher:
        self._thread.start()
        return self

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        if self.late_by() > 0:
            # pcscd hangs: SCardCancel would hang too, and the thread is stuck in pcscd until it
            # answers; it is a daemon thread, so leave it behind rather than block the caller
            log.info("pcscd does not answer; not waiting for the reader watcher")
            return
        self._client.cancel()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _emit(self, snap: PcscSnapshot) -> None:
        events = diff(self.last, snap)
        if self.last is None or events or snap.status != self.last.status or _shown(snap) != _shown(self.last):
            try:
                self._callback(snap, events)
            except Exception:
                log.exception("reader watcher callback failed")
        self.last = snap

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with self._calling(_SNAPSHOT_S):
                    snap = self._client.snapshot()
                self._emit(snap)
                if snap.status in (PcscStatus.NO_SERVICE, PcscStatus.ERROR):
                    self._stop.wait(self._retry_s)
                    continue
                # pcscd wakes a waiting client for readers and cards, not when another program
                # takes or releases a card exclusively: after a quiet wait, look again anyway
                # (a snapshot is two cheap calls; callbacks still come only for real changes)
                with self._calling(self._wait_ms / 1000 + _SNAPSHOT_S):
                    self._client.wait(snap, self._wait_ms)
        finally:
            self._client.close()
