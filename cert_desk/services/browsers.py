"""Browser registration as services: scan every NSS database, add or remove the token's module,
read a database back, prove a TLS client login through it.

The NSS tools run as subprocesses on one serial thread of this service (never two changes to
databases at once, never on the GUI thread); results are frozen dataclasses. A change is refused
while the database's application runs, because it keeps its own copy of the module list and would
not load the module before its next start anyway (and may write its list back over ours).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from cert_desk import errors as E
from cert_desk.nss import discovery, locks, pkcs11txt, tools
from cert_desk.nss.models import LoadedModule, NssDatabase, NssModule, RunningApplication
from cert_desk.nss.tls import TlsLogin, tls_login
from cert_desk.secrets import Secret

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class DatabaseState:
    """A database and where the module in question stands in it.

    Attributes:
        modules: Every module its pkcs11.txt registers.
        registered: The entries that load the module in question (compared by real path).
        conflicts: Duplicates and the p11-kit proxy, which would show the token twice, in words.
        running: The application that has it open now, if any.
        problem: Why its module list cannot be read (a corrupt pkcs11.txt ...), or "".
    """

    db: NssDatabase
    modules: tuple[NssModule, ...]
    registered: tuple[NssModule, ...]
    conflicts: tuple[str, ...]
    running: RunningApplication | None
    problem: str = ""


@dataclass(frozen=True)
class Change:
    """What an add or remove did to one database, read back with NSS's own modutil."""

    db: NssDatabase
    changed: bool
    words: str
    loaded: tuple[LoadedModule, ...]


@dataclass(frozen=True)
class Readback:
    """A database as NSS sees it: the modules it loads, and the certificates on the token."""

    db: NssDatabase
    loaded: tuple[LoadedModule, ...]
    certificates: tuple[tuple[str, str], ...]  # (nickname, trust)


class BrowserService:
    """NSS databases of the user's browsers and mail client."""

    def __init__(self, home: str | None = None) -> None:
        self.home = home
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nss")

    def _run(self, fn: Callable[[], T]) -> Future[T]:
        return self._pool.submit(fn)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ reading

    def scan(self, module: str | None = None) -> Future[tuple[DatabaseState, ...]]:
        """Every database, with where ``module`` (a path; compared by real path) stands in each."""
        real = os.path.realpath(module) if module else ""
        return self._run(lambda: tuple(state(db, real) for db in discovery.discover(self.home)))

    def readback(self, db: NssDatabase, token_label: str | None = None, pin: Secret | None = None
                 ) -> Future[Readback]:
        def job() -> Readback:
            loaded = tools.list_loaded(db.spec)
            certs: tuple[tuple[str, str], ...] = ()
            if token_label:
                if pin is None:
                    certs = tools.token_certificates(db.spec, token_label, None)
                else:
                    with tools.pin_file(pin) as path:
                        certs = tools.token_certificates(db.spec, token_label, path)
            return Readback(db, loaded, certs)

        return self._run(job)

    # ------------------------------------------------------------------ changing

    def add(self, db: NssDatabase, name: str, module: str, *, create: bool = False) -> Future[Change]:
        def job() -> Change:
            _refuse_if_running(db)
            if db.format == "missing":
                if not create:
                    raise E.InputError(f"There is no NSS database in {db.directory} yet.",
                                       "Create it (--create, or Create database in the Browsers pane).")
                tools.create_database(db.directory)
            elif not db.supported:
                raise E.InputError(f"{db.application} {db.profile!r}: {db.reason}".strip())
            added = tools.add_module(db.directory, name, module)
            words = (f"Registered {name!r} ({module}) in {_where(db)}." if added else
                     f"{_where(db)} already loads {os.path.basename(module)}: nothing changed.")
            return Change(db, added, words, tools.list_loaded(db.spec))

        return self._run(job)

    def remove(self, db: NssDatabase, name: str) -> Future[Change]:
        def job() -> Change:
            _refuse_if_running(db)
            removed = tools.remove_module(db.directory, name)
            words = (f"Removed {name!r} from {_where(db)}." if removed else
                     f"{_where(db)} has no module named {name!r}: nothing changed.")
            return Change(db, removed, words, tools.list_loaded(db.spec))

        return self._run(job)

    # ------------------------------------------------------------------ proof

    def test_login(self, db: NssDatabase, nickname: str, url: str, pin: Secret | None) -> Future[TlsLogin]:
        return self._run(lambda: tls_login(db.spec, nickname, url, pin))


def state(db: NssDatabase, module_realpath: str) -> DatabaseState:
    """Where the module stands in ``db`` (never raises: what cannot be read is said in ``problem``)."""
    running = locks.running(db)
    if db.format == "missing":  # nothing to read yet; creating it is allowed
        return DatabaseState(db, (), (), (), running)
    if not db.supported:
        return DatabaseState(db, (), (), (), running, db.reason)
    try:
        modules = pkcs11txt.read(db.directory)
    except E.CertDeskError as err:
        return DatabaseState(db, (), (), (), running, err.message)
    registered = tuple(pkcs11txt.find(modules, module_realpath)) if module_realpath else ()
    conflicts = tuple(pkcs11txt.conflicts(modules, module_realpath)) if module_realpath else ()
    return DatabaseState(db, modules, registered, conflicts, running)


def _where(db: NssDatabase) -> str:
    return f"{db.application} ({db.profile})" if db.profile else db.application


def _refuse_if_running(db: NssDatabase) -> None:
    running = locks.running(db)
    if running is not None:
        raise E.ApplicationRunningError(
            f"{running.application} is running ({running.evidence}): {_where(db)}'s module list was not changed.",
            f"Close {running.application}, then try again; it loads new modules only when it starts.")
