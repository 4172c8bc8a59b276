"""Token and PIN administration as services (see :mod:`cert_desk.pkcs11.admin` for the rules).

A token initialised in this process may get another slot ID at the module's next
initialisation (SoftHSM2 does that), so after C_InitToken the module is initialised again and
the token found by its serial number.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future

from cert_desk import errors as E
from cert_desk.models import AdminResult, TokenInfo, TokenRef, TokenSelector
from cert_desk.pkcs11 import admin as A
from cert_desk.pkcs11.module import LoadedModule
from cert_desk.secrets import Secret
from cert_desk.services.tokens import TokenService

log = logging.getLogger(__name__)


def forget_stale(serial: str, label: str) -> str:
    """A new user PIN (or an initialised token) makes a remembered PIN wrong (it would cost a try):
    delete it. Returns what happened, in words ("" when nothing was remembered)."""
    from cert_desk.secrets import remembered

    try:
        if remembered.forget(serial, label):
            return "The PIN remembered in the keyring for this token was the old one: it was deleted."
    except E.KeyringError as err:
        log.warning("a remembered PIN of token %s could not be deleted: %s", serial, err.message)
        return (f"The PIN remembered in the keyring for this token is the old one; cert-desk will not use it, "
                f"but the keyring did not delete it: {err.message}")
    return ""


def _forget_stale(ref: TokenRef, info: TokenInfo) -> AdminResult:
    return AdminResult(info, forget_stale(ref.serial, ref.label))


class AdminService:
    """Initialise tokens, set, change and unblock PINs."""

    def __init__(self, tokens: TokenService) -> None:
        self.tokens = tokens

    def slot_token(self, module: str, slot_id: int) -> TokenInfo | None:
        """The token in a slot as it is now (None: empty slot), blocking."""

        def job(m: LoadedModule) -> TokenInfo | None:
            for r in m.slot_reports(with_mechanisms=False):
                if r.slot.slot_id == slot_id:
                    return r.token
            raise E.NoSuchSlotError(f"Slot {slot_id} does not exist.", hint="List the slots with 'cert-desk slots'.")

        return self.tokens.run(module, job, "read the slot").result()

    def init_token(self, module: str, slot_id: int, *, so_pin: Secret, label: str, confirm: str | None,
                   allow_final_try: bool = False) -> tuple[TokenRef, str]:
        """Initialise the token in ``slot_id`` (blocking: the module is initialised again after it).

        Returns:
            The new token, and what else happened in words (a remembered PIN of the erased token
            deleted).
        """

        def job(m: LoadedModule) -> tuple[TokenRef, TokenInfo | None]:
            before = next((r.token for r in m.slot_reports(with_mechanisms=False) if r.slot.slot_id == slot_id), None)
            made = A.init_token(m, slot_id, so_pin=so_pin, label=label, confirm=confirm,
                                allow_final_try=allow_final_try)
            return made, before

        made, before = self.tokens.run(module, job, "initialise the token").result()
        notice = forget_stale(before.serial, before.label) if before is not None and before.initialized else ""
        self.tokens.pool.reload(module).result()
        return self.tokens.find_token(TokenSelector(serial=made.serial, label=made.label), [module]), notice

    def set_user_pin(self, ref: TokenRef, *, so_pin: Secret, new_pin: Secret,
                     allow_final_try: bool = False) -> Future[AdminResult]:
        def job(m: LoadedModule) -> AdminResult:
            return _forget_stale(ref, A.set_user_pin(m, ref, so_pin=so_pin, new_pin=new_pin,
                                                     allow_final_try=allow_final_try))

        return self.tokens.run(ref.module, job, "set the user PIN")

    def change_pin(self, ref: TokenRef, *, old: Secret, new: Secret, so: bool = False,
                   allow_final_try: bool = False) -> Future[AdminResult]:
        def job(m: LoadedModule) -> AdminResult:
            info = A.change_pin(m, ref, old=old, new=new, so=so, allow_final_try=allow_final_try)
            return AdminResult(info) if so else _forget_stale(ref, info)  # the SO PIN is never remembered

        return self.tokens.run(ref.module, job, "change the SO PIN" if so else "change the PIN")
