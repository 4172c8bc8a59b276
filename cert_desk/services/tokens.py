"""The token services: what the GUI and the CLI ask of PKCS#11 modules.

Qt-free. Every method that touches a module queues a job on that module's worker and
returns a :class:`concurrent.futures.Future`; the CLI waits on it, the GUI hands it to
:class:`cert_desk.services.qt.QtJobs`, which delivers the outcome on the GUI thread.
Arguments and results are frozen dataclasses (a PIN is a :class:`~cert_desk.secrets.Secret`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from typing import TypeVar

from cert_desk import errors as E
from cert_desk.models import (
    LibraryInfo,
    LoginPreparation,
    LoginResult,
    ModuleEntry,
    ModuleState,
    ObjectListing,
    SlotReport,
    TokenInfo,
    TokenRef,
    TokenSelector,
)
from cert_desk.pkcs11.discovery import discover_modules
from cert_desk.pkcs11.module import LoadedModule
from cert_desk.secrets import Secret
from cert_desk.services.worker import Job, WorkerPool
from cert_desk.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


class TokenService:
    """Modules, slots, tokens, login and objects.

    Args:
        pool: The worker pool (one is made when not given).
        settings: User settings (for the modules the user added).
        extra_modules: Modules given for this run only (``--module``).
    """

    def __init__(
        self,
        pool: WorkerPool | None = None,
        settings: Settings | None = None,
        extra_modules: Iterable[str] = (),
    ) -> None:
        self.pool = pool or WorkerPool()
        self.settings = settings if settings is not None else Settings.load()
        self.extra_modules = tuple(extra_modules)

    # ------------------------------------------------------------ modules

    def modules(self) -> list[ModuleEntry]:
        """The modules found on this machine (nothing is loaded)."""
        return discover_modules(self.settings.module_paths, extra_paths=self.extra_modules)

    def run(self, module: str, fn: Job[T], description: str) -> Future[T]:
        """Run ``fn`` on ``module``'s worker (for services built on this one)."""
        return self.pool.submit(module, fn, description)

    def library_info(self, module: str) -> Future[LibraryInfo]:
        return self.run(module, LoadedModule.library_info, "read the module information")

    def module_state(self, module: str) -> Future[ModuleState]:
        """Library information, slots, tokens and mechanisms of one module, in one job."""

        def job(m: LoadedModule) -> ModuleState:
            return ModuleState(m.library_info(), m.slot_reports(with_mechanisms=True))

        return self.run(module, job, "list the slots")

    def poll(self, module: str) -> Future[tuple[SlotReport, ...]]:
        """The slots and tokens now; sessions of tokens that are gone are dropped (see LoadedModule.poll)."""
        return self.run(module, LoadedModule.poll, "look for token changes")

    def slots(self, module: str, *, with_mechanisms: bool = True) -> Future[tuple[SlotReport, ...]]:
        def job(m: LoadedModule) -> tuple[SlotReport, ...]:
            return m.slot_reports(with_mechanisms=with_mechanisms)

        return self.run(module, job, "list the slots")

    # ------------------------------------------------------------- tokens

    def candidates(self, module: str, selector: TokenSelector) -> Future[tuple[TokenRef, ...]]:
        def job(m: LoadedModule) -> tuple[TokenRef, ...]:
            if selector.slot_id is not None:
                try:
                    return (m.resolve(selector),)
                except (E.NoSuchSlotError, E.NoTokenError):
                    return ()
            return tuple(m.candidates(selector))

        return self.run(module, job, "find the token")

    def find_token(self, selector: TokenSelector, modules: Sequence[str] | None = None) -> TokenRef:
        """The one initialised token ``selector`` names, searching ``modules`` (default: all discovered).

        Modules searched by default that fail to load are skipped (and logged); a module
        the user named explicitly that fails to load is an error.

        Raises:
            NoTokenError, AmbiguousTokenError, TokenNotInitializedError, NoSuchSlotError, ModuleError.
        """
        explicit = modules is not None
        paths = list(modules) if modules is not None else [e.realpath for e in self.modules() if e.exists]
        if not paths:
            raise E.NoTokenError("No PKCS#11 module is installed.",
                                 hint="Install OpenSC (opensc-pkcs11) for smart cards and USB tokens, or add "
                                      "your token's module with --module PATH.")
        if explicit and selector.slot_id is not None and len(paths) == 1:
            # one module, one slot: let its own error speak (no such slot, empty slot, not initialised)
            return self.pool.submit(paths[0], lambda m: m.resolve(selector), "find the token").result()
        futures = {p: self.candidates(p, selector) for p in dict.fromkeys(os.path.realpath(p) for p in paths)}
        found: list[TokenRef] = []
        failures: list[str] = []
        for path, fut in futures.items():
            try:
                found.extend(fut.result())
            except E.CertDeskError as err:
                if explicit:
                    raise
                log.debug("skipping %s: %s", path, err.message)
                failures.append(f"{os.path.basename(path)}: {err.message}")
        if not found:
            where = f" on {', '.join(os.path.basename(p) for p in futures)}"
            raise E.NoTokenError(f"No initialised token with {selector.describe()}{where}.")
        if len(found) > 1:
            listed = "; ".join(
                f"{r.label!r} serial {r.serial} slot {r.slot_id} ({os.path.basename(r.module)})" for r in found
            )
            raise E.AmbiguousTokenError(f"{len(found)} tokens match {selector.describe()}: {listed}.")
        return found[0]

    def token_info(self, ref: TokenRef) -> Future[TokenInfo]:
        return self.run(ref.module, lambda m: m.verify(ref), "read the token information")

    def login(self, ref: TokenRef, pin: Secret | None, *, so: bool = False,
              allow_final_try: bool = False, remember: bool | None = None) -> Future[LoginResult]:
        """Log in. ``remember`` (user PIN only): True stores the PIN in the OS keyring once the
        token accepted it, False deletes a remembered one, None leaves the keyring alone."""

        def job(m: LoadedModule) -> LoginResult:
            if remember and not so and pin is not None:
                m.logout(ref)  # a session already logged in would not check this PIN: it must be checked
            result = m.login(ref, pin, so=so, allow_final_try=allow_final_try)
            if so or remember is None:
                return result
            from dataclasses import replace

            from cert_desk.secrets import remembered

            try:
                if remember and pin is not None:
                    remembered.remember(ref.serial, ref.label, pin)
                    return replace(result, notice="The PIN is remembered in the keyring for this token.")
                if not remember and remembered.forget(ref.serial, ref.label):
                    return replace(result, notice="The remembered PIN of this token was deleted from the keyring.")
            except E.CertDeskError as err:
                return replace(result, notice=f"Logged in, but: {err}")
            return result

        return self.run(ref.module, job, "log in")

    def prepare_login(self, ref: TokenRef) -> Future[LoginPreparation]:
        """Read the PIN state and the keyring; log in with a remembered PIN when one is stored and
        the token reports no earlier wrong PIN. A remembered PIN is tried once: refused, it is
        deleted (see :mod:`cert_desk.secrets.remembered`)."""

        def job(m: LoadedModule) -> LoginPreparation:
            from cert_desk.secrets import remembered

            info = m.verify(ref)
            if os.environ.get("CERT_DESK_NO_KEYRING"):
                return LoginPreparation(info, False, "CERT_DESK_NO_KEYRING is set.", False, None)
            status = remembered.keyring_status()
            opted_in = remembered.is_remembered(ref.serial, ref.label)
            if not status.available or info.protected_authentication_path or not opted_in:
                return LoginPreparation(info, status.available, status.reason, False, None)
            try:
                pin = remembered.recall(ref.serial, ref.label)
            except E.CertDeskError as err:
                return LoginPreparation(info, True, "", True, None,
                                        notice=f"The remembered PIN could not be read: {err.message}")
            if pin is None:
                return LoginPreparation(info, True, "", False, None)
            if not remembered.usable_for(info.user_pin):
                return LoginPreparation(info, True, "", True, None,
                                        notice=f"A PIN is remembered, but the token says: {info.user_pin.words}. "
                                               "cert-desk does not try it; type the PIN.")
            try:
                result = m.login(ref, pin)
            except E.PinError as err:
                removed = remembered.on_login_result(ref.serial, ref.label, pin, err)
                fresh = m.token_info(ref.slot_id)
                what = "was refused and has been deleted: it is not tried again" if removed else "was refused"
                return LoginPreparation(fresh, True, "", not removed, None,
                                        notice=f"The remembered PIN {what}. {err.message}")
            return LoginPreparation(result.token, True, "", True,
                                    LoginResult(result.token, result.logged_in_as, pin_source=remembered.SOURCE))

        return self.run(ref.module, job, "log in")

    def logout(self, ref: TokenRef) -> Future[LoginResult]:
        return self.run(ref.module, lambda m: m.logout(ref), "log out")

    def logged_in_as(self, ref: TokenRef) -> Future[str | None]:
        return self.run(ref.module, lambda m: m.logged_in_as(ref), "check the login")

    def list_objects(self, ref: TokenRef) -> Future[ObjectListing]:
        return self.run(ref.module, lambda m: m.list_objects(ref), "list the objects")

    def close_token(self, ref: TokenRef) -> Future[None]:
        """Log out and drop every session on the token's slot."""
        return self.run(ref.module, lambda m: m.forget_slot(ref.slot_id), "close the token")

    def shutdown(self, timeout: float = 5.0) -> bool:
        return self.pool.shutdown(timeout)
