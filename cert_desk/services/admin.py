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


def _forget_stale(ref: TokenRef, info: TokenInfo) -> AdminResult:
    """A new user PIN makes a remembered one wrong (it would cost a try): delete it."""
    from cert_desk.secrets import remembered

    try:
        if remembered.forget(ref.serial):
            return AdminResult(info, "The PIN remembered in the keyring for this token was the old one: it was "
                                     "deleted.")
    except E.KeyringError as err:
        log.warning("a remembered PIN of token %s could not be deleted: %s", ref.serial, err.message)
        return AdminResult(info, f"The PIN remembered in the keyring for this token is the old one, and could not "
                                 f"be deleted: {err.message} Delete it with 'cert-desk pin forget'.")
    return AdminResult(info)


class AdminService:
    """Initialise tokens, set, change and unblock PINs."""

    def __init__(self, tokens: TokenService) -> None:
        self.tokens = tokens

    def init_token(self, module: str, slot_id: int, *, so_pin: Secret, label: str, confirm: str | None
                   ) -> TokenRef:
        """Initialise the token in ``slot_id`` (blocking: the module is initialised again after it)."""

        def job(m: LoadedModule) -> TokenRef:
            return A.init_token(m, slot_id, so_pin=so_pin, label=label, confirm=confirm)

        made = self.tokens.run(module, job, "initialise the token").result()
        self.tokens.pool.reload(module).result()
        return self.tokens.find_token(TokenSelector(serial=made.serial, label=made.label), [module])

    def set_user_pin(self, ref: TokenRef, *, so_pin: Secret, new_pin: Secret) -> Future[AdminResult]:
        def job(m: LoadedModule) -> AdminResult:
            return _forget_stale(ref, A.set_user_pin(m, ref, so_pin=so_pin, new_pin=new_pin))

        return self.tokens.run(ref.module, job, "set the user PIN")

    def change_pin(self, ref: TokenRef, *, old: Secret, new: Secret, so: bool = False,
                   allow_final_try: bool = False) -> Future[AdminResult]:
        def job(m: LoadedModule) -> AdminResult:
            info = A.change_pin(m, ref, old=old, new=new, so=so, allow_final_try=allow_final_try)
            return AdminResult(info) if so else _forget_stale(ref, info)  # the SO PIN is never remembered

        return self.tokens.run(ref.module, job, "change the SO PIN" if so else "change the PIN")
