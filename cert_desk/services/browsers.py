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
        via_proxy: The name of the p11-kit proxy entry that already loads the module (it is in
            p11-kit's registry), or "". Such a database needs no entry of its own.
    """

    db: NssDatabase
    modules: tuple[NssModule, ...]
    registered: tuple[NssModule, ...]
    conflicts: tuple[str, ...]
    running: RunningApplication | None
    problem: str = ""
    via_proxy: str = ""


@dataclass(frozen=True)
class Change:
    """What an add or remove did to one database, read back with NSS's own modutil."""

    db: NssDatabase
    changed: bool
    words: str
    loaded: tuple[LoadedModule, ...]


@dataclass(frozen=True)
class Readback:
    """A database as NSS sees it: the modules it loads, the certificates on the token, and why
    there are none when they could not be read (``note``)."""

    db: NssDatabase
    loaded: tuple[LoadedModule, ...]
    certificates: tuple[tuple[str, str], ...]  # (nickname, trust)
    note: str = ""


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
            if not token_label:
                return Readback(db, loaded, ())
            try:
                if pin is None:
                    certs = tools.token_certificates(db.spec, token_label, None)
                else:
                    with tools.pin_file(pin) as path:
                        certs = tools.token_certificates(db.spec, token_label, path)
            except E.CertDeskError as err:  # the module list still says why (the token is not there ...)
                return Readback(db, loaded, (), f"The token's certificates: {err.message}")
            return Readback(db, loaded, certs)

        return self._run(job)

    # ------------------------------------------------------------------ changing

    def add(self, db: NssDatabase, name: str, module: str, *, create: bool = False) -> Future[Change]:
        def job() -> Change:
            _refuse_if_running(db)
            if db.format == "missing":
                if not creatable(db):
                    raise E.InputError(f"{where(db)} has no NSS database in {db.directory}.",
                                       f"Start {db.application.split(' (')[0]} once with this profile: it creates its "
                                       "own (a profile directory that is gone is a stale profiles.ini entry).")
                if not create:
                    raise E.InputError(f"There is no NSS database in {db.directory} yet.",
                                       "Create it (--create, or tick it in the Browsers pane).")
                tools.create_database(db.directory)
            elif not db.supported:
                raise E.InputError(f"{db.application} {db.profile!r}: {db.reason}".strip())
            else:
                proxy = state(db, os.path.realpath(module)).via_proxy
                if proxy:
                    return Change(db, False, f"{where(db)} already loads {os.path.basename(module)} through p11-kit's "
                                  f"proxy ({proxy!r}): nothing changed (a second entry would show the token twice).",
                                  _loaded(db))
            added = tools.add_module(db.directory, name, module, before=lambda: _refuse_if_running(db))
            words = (f"Registered {name!r} ({module}) in {where(db)}." if added else
                     f"{where(db)} already loads {os.path.basename(module)}: nothing changed.")
            if added and "softhsm" in os.path.basename(module) and os.environ.get("SOFTHSM2_CONF"):
                # the read-back ran with cert-desk's environment; a browser started from the desktop has its own
                words += (f" SoftHSM2 finds its tokens through SOFTHSM2_CONF={os.environ['SOFTHSM2_CONF']}: the "
                          "browser must be started with it too, or it sees no token.")
            return Change(db, added, words, _loaded(db))

        return self._run(job)

    def remove(self, db: NssDatabase, name: str) -> Future[Change]:
        def job() -> Change:
            _refuse_if_running(db)
            removed = tools.remove_module(db.directory, name, before=lambda: _refuse_if_running(db))
            words = (f"Removed {name!r} from {where(db)}." if removed else
                     f"{where(db)} has no module named {name!r}: nothing changed.")
            return Change(db, removed, words, _loaded(db))

        return self._run(job)

    # ------------------------------------------------------------------ proof

    def test_login(self, db: NssDatabase, nickname: str, url: str, pin: Secret | None) -> Future[TlsLogin]:
        return self._run(lambda: tls_login(db.spec, nickname, url, pin))


def _loaded(db: NssDatabase) -> tuple[LoadedModule, ...]:
    """What NSS loads now, for the report: the change itself was already read back and checked,
    so a failure to list again (a slow module) does not turn a done change into an error."""
    try:
        return tools.list_loaded(db.spec)
    except E.CertDeskError as err:
        log.info("listing %s again after the change: %s", db.spec, err.message)
        return ()


def state(db: NssDatabase, module_realpath: str) -> DatabaseState:
    """Where the module stands in ``db`` (never raises: what cannot be read is said in ``problem``)."""
    running = locks.running(db)
    if db.format == "missing":  # nothing to read yet; only Chrome's may be created (see creatable)
        return DatabaseState(db, (), (), (), running, "" if creatable(db) else db.reason)
    if not db.supported:
        return DatabaseState(db, (), (), (), running, db.reason)
    try:
        modules = pkcs11txt.read(db.directory)
    except E.CertDeskError as err:
        return DatabaseState(db, (), (), (), running, err.message)
    if not module_realpath:
        return DatabaseState(db, modules, (), (), running)
    known = known_to_p11kit(module_realpath)
    registered = tuple(pkcs11txt.find(modules, module_realpath))
    conflicts = tuple(pkcs11txt.conflicts(modules, module_realpath, known_to_p11kit=known))
    proxy = pkcs11txt.through_proxy(modules, module_realpath, known_to_p11kit=known)
    return DatabaseState(db, modules, registered, conflicts, running, via_proxy=proxy.name if proxy else "")


def known_to_p11kit(realpath: str) -> bool:
    """The module is in p11-kit's registry (so p11-kit's proxy loads it)."""
    from cert_desk.pkcs11.discovery import read_registry

    return any(r.module and os.path.realpath(r.module) == realpath for r in read_registry())


def creatable(db: NssDatabase) -> bool:
    """cert-desk may create this missing database: Chrome's (Chrome uses one made before it first runs);
    never a Firefox or Thunderbird profile's, which the application makes with the profile."""
    return db.format == "missing" and db.application.startswith(("Chrome", "Chromium"))


def where(db: NssDatabase) -> str:
    """The database in words: the application, and its profile when it has one."""
    return f"{db.application} ({db.profile})" if db.profile else db.application


def _refuse_if_running(db: NssDatabase) -> None:
    running = locks.running(db)
    if running is not None:
        raise E.ApplicationRunningError(
            f"{running.application} is running ({running.evidence}): {where(db)}'s module list was not changed.",
            f"Close {running.application}, then try again; it loads new modules only when it starts.")
