"""Token and PIN administration through PKCS#11 (worker-thread code): initialise a token, set the
first user PIN, change the user and SO PINs, unblock the user PIN with the SO PIN.

Every PIN is checked against the token's own limits (and, for a SmartCard-HSM or Nitrokey HSM,
against the device's rules: user PIN 6-15 characters, SO PIN 16 hex digits) before the token
sees it, so a malformed PIN never costs a try. Initialising a token that holds anything asks for
its label to be typed back: it erases every key and certificate on it.
"""

from __future__ import annotations

import logging

from cert_desk import errors as E
from cert_desk.models import TokenInfo, TokenRef, TokenSelector
from cert_desk.pkcs11.module import LoadedModule, check_pin_length, session_handle
from cert_desk.secrets import Secret

log = logging.getLogger(__name__)

MAX_LABEL_BYTES = 32  # CK_TOKEN_INFO.label


def is_smartcard_hsm(info: TokenInfo | None) -> bool:
    """A SmartCard-HSM or Nitrokey HSM, as OpenSC names its tokens."""
    from cert_desk.pkcs11.schsm import is_smartcard_hsm as by_model

    return by_model(info, None)


def check_new_pin(pin: Secret, info: TokenInfo, *, so: bool) -> None:
    """A new PIN the token will accept: its length limits, and the SmartCard-HSM's own rules."""
    if not pin:
        raise E.PinPolicyError(f"The new {'SO PIN' if so else 'PIN'} is empty.", so=so)
    if is_smartcard_hsm(info):
        from cert_desk.pkcs11.schsm import check_so_pin, check_user_pin

        (check_so_pin if so else check_user_pin)(pin)
    check_pin_length(pin, info, so=so)


def check_label(label: str) -> str:
    label = label.strip()
    if not label:
        raise E.InputError("A token needs a label.", "Give it a name you will recognise, such as 'alice-hsm'.")
    if len(label.encode("utf-8")) > MAX_LABEL_BYTES:
        raise E.InputError(f"The label {label!r} is longer than {MAX_LABEL_BYTES} bytes, the most PKCS#11 allows.")
    if any(ord(c) < 0x20 for c in label):
        raise E.InputError(f"The label {label!r} contains control characters.")
    return label


def init_token(m: LoadedModule, slot_id: int, *, so_pin: Secret, label: str, confirm: str | None) -> TokenRef:
    """C_InitToken: a fresh token labelled ``label`` in ``slot_id``, erasing what was there.

    Args:
        confirm: The current label typed back, required when the slot holds an initialised
            token (everything on it is erased).

    Returns:
        The new token (SoftHSM2 gives it another slot ID: found again by label).

    Raises:
        ConfirmationRequired (``confirm`` does not match), InputError, PinPolicyError, PinIncorrectError
        (a wrong SO PIN on a token that keeps its SO PIN), TokenError.
    """
    label = check_label(label)
    reports = {r.slot.slot_id: r for r in m.slot_reports(with_mechanisms=False)}
    report = reports.get(slot_id)
    if report is None:
        raise E.NoSuchSlotError(f"Slot {slot_id} does not exist.", hint="List the slots with 'cert-desk slots'.")
    if report.token is None:
        raise E.NoTokenError(f"Slot {slot_id} has no token in it.")
    info = report.token
    if info.initialized:
        if confirm is None or confirm != info.label:
            raise E.ConfirmationRequired(
                f"Initialising {info.label!r} (slot {slot_id}) erases every key and certificate on it.",
                f"Type its label, {info.label!r}, to confirm (--confirm LABEL).")
        check_pin_length(so_pin, info, so=True)
    if is_smartcard_hsm(info):
        from cert_desk.pkcs11.schsm import check_so_pin

        check_so_pin(so_pin)
    m.forget_slot(slot_id)
    with m.operation(f"initialise the token in slot {slot_id}", slot_id, so=True):
        m.ck.init_token(slot_id, so_pin.reveal().encode("utf-8"), label)
    log.info("initialised the token in slot %s as %r", slot_id, label)
    candidates = m.candidates(TokenSelector(label=label))
    same_slot = [r for r in candidates if r.slot_id == slot_id]
    if same_slot or len(candidates) == 1:
        return (same_slot or candidates)[0]
    # SoftHSM2 moves a token it initialised to a new slot ID: the newest match is not knowable here
    raise E.TokenError(f"The token was initialised, but {len(candidates)} tokens are labelled {label!r} now.",
                       operation="find the new token", hint="Pick it with --serial; 'cert-desk slots' lists them.")


def set_user_pin(m: LoadedModule, ref: TokenRef, *, so_pin: Secret, new_pin: Secret) -> TokenInfo:
    """C_InitPIN with the SO logged in: the first user PIN of a fresh token, or a new one for a
    user PIN that is locked ("unblock")."""
    info = m.verify(ref)
    check_new_pin(new_pin, info, so=False)
    m.login(ref, so_pin, so=True)
    try:
        with m.operation("set the user PIN", ref.slot_id):
            m.ck.init_pin(session_handle(m.pkcs11_session(ref)), new_pin.reveal().encode("utf-8"))
    finally:
        m.logout(ref)
    log.info("set a new user PIN on %s", ref.describe())
    return m.verify(ref)


def change_pin(m: LoadedModule, ref: TokenRef, *, old: Secret, new: Secret, so: bool = False,
               allow_final_try: bool = False) -> TokenInfo:
    """C_SetPIN: the user PIN (or, with ``so``, the SO PIN) changed from ``old`` to ``new``.

    The old PIN is used to log in first, with the same care as any login (a locked PIN is never
    tried, the final try needs ``allow_final_try``), so a wrong old PIN is said as a login failure.
    """
    info = m.verify(ref)
    state = info.so_pin if so else info.user_pin
    if state == E.PinState.NOT_INITIALIZED and not so:
        raise E.PinError(f"{ref.describe()} has no user PIN yet: set one with the SO PIN.", so=False)
    check_new_pin(new, info, so=so)
    m.login(ref, old, so=so, allow_final_try=allow_final_try)
    try:
        with m.operation(f"change the {'SO PIN' if so else 'PIN'}", ref.slot_id, so=so):
            m.ck.set_pin(session_handle(m.pkcs11_session(ref)), old.reveal().encode("utf-8"),
                         new.reveal().encode("utf-8"))
    finally:
        m.logout(ref)
    log.info("changed the %s of %s", "SO PIN" if so else "PIN", ref.describe())
    return m.verify(ref)

