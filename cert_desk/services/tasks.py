"""Background work that is not a PKCS#11 call (file parsing, waiting on several jobs), Qt-free.

PKCS#11 calls never run here: they go to the module's worker. This pool exists so the
GUI thread never blocks on anything that can take time (the demo token's creation waits
on several module jobs in turn, a certificate file may be large, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class TaskRunner:
    def __init__(self, workers: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cert-desk-task")

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        return self._pool.submit(fn)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
