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
    if is_smartcard_hsm(info) and not so:
        from cert_desk.pkcs11.schsm import check_user_pin

        check_user_pin(pin)
    check_pin_length(pin, info, so=so)  # a SmartCard-HSM's SO PIN: its own rule, 16 hex digits


def check_label(label: str) -> str:
    label = label.strip()
    if not label:
        raise E.InputError("A token needs a label.", "Give it a name you will recognise, such as 'alice-hsm'.")
    if len(label.encode("utf-8")) > MAX_LABEL_BYTES:
        raise E.InputError(f"The label {label!r} is longer than {MAX_LABEL_BYTES} bytes, the most PKCS#11 allows.")
    if any(ord(c) < 0x20 for c in label):
        raise E.InputError(f"The label {label!r} contains control characters.")
    return label


def init_token(m: LoadedModule, slot_id: int, *, so_pin: Secret, label: str, confirm: str | None,
               allow_final_try: bool = False) -> TokenRef:
    """C_InitToken: a fresh token labelled ``label`` in ``slot_id``, erasing what was there.

    Args:
        so_pin: For an empty slot, the new SO PIN; for an initialised token, its **current** SO PIN
            (C_InitToken checks it; SoftHSM2 and most tokens keep it).
        confirm: The current label typed back, required when the slot holds an initialised
            token (everything on it is erased).
        allow_final_try: Try the SO PIN although the token says one more wrong one locks it.

    Returns:
        The new token (SoftHSM2 gives it another slot ID: found again by label).

    Raises:
        ConfirmationRequired (``confirm`` does not match), InputError, PinPolicyError, PinLockedError,
        PinFinalTryError, PinIncorrectError (a wrong SO PIN: nothing was erased), TokenError.
    """
    label = check_label(label)
    reports = {r.slot.slot_id: r for r in m.slot_reports(with_mechanisms=False)}
    report = reports.get(slot_id)
    if report is None:
        raise E.NoSuchSlotError(f"Slot {slot_id} does not exist.", hint="List the slots with 'cert-desk slots'.")
    if report.token is None:
        raise E.NoTokenError(f"Slot {slot_id} has no token in it.")
    info = report.token
    check_init_confirmation(info, slot_id, confirm)
    if info.initialized:
        if info.so_pin is E.PinState.LOCKED:
            raise E.PinLockedError(f"The SO PIN of {info.label!r} is locked: the token cannot be initialised "
                                   "with it, and no try was made.", so=True,
                                   hint="Some devices can be reset only by their vendor's tool.")
        if info.so_pin is E.PinState.FINAL_TRY and not allow_final_try:
            raise E.PinFinalTryError(f"The SO PIN of {info.label!r} has one try left.", so=True)
    check_pin_length(so_pin, info, so=True)
    m.forget_slot(slot_id)
    try:
        with m.operation(f"initialise the token in slot {slot_id}", slot_id, so=True):
            m.ck.init_token(slot_id, so_pin.reveal().encode("utf-8"), label)
    except E.PinIncorrectError as err:
        raise E.PinIncorrectError(f"Wrong SO PIN: {info.label!r} was not initialised; nothing was erased.",
                                  err.state, err.attempts_left, so=True,
                                  hint="Initialising an initialised token needs its current SO PIN.") from err
    log.info("initialised the token in slot %s as %r", slot_id, label)
    candidates = m.candidates(TokenSelector(label=label))
    same_slot = [r for r in candidates if r.slot_id == slot_id]
    if same_slot or len(candidates) == 1:
        return (same_slot or candidates)[0]
    # SoftHSM2 moves a token it initialised to a new slot ID: the newest match is not knowable here
    raise E.TokenError(f"The token was initialised, but {len(candidates)} tokens are labelled {label!r} now.",
                       operation="find the new token", hint="Pick it with --serial; 'cert-desk slots' lists them.")


def check_init_confirmation(info: TokenInfo, slot_id: int, confirm: str | None) -> None:
    """An initialised token is erased only when its label was typed back exactly."""
    if info.initialized and (confirm is None or confirm != info.label):
        raise E.ConfirmationRequired(
            f"Initialising {info.label!r} (slot {slot_id}) erases every key and certificate on it.",
            f"Type its label, {info.label!r}, to confirm (--confirm LABEL).")


def _logout_quietly(m: LoadedModule, ref: TokenRef) -> None:
    """Log out after an administration step, never hiding the step's own result or error."""
    try:
        m.logout(ref)
    except E.CertDeskError as err:
        log.debug("logout after administration of %s: %s", ref.describe(), err.message)


def _fresh(m: LoadedModule, ref: TokenRef, before: TokenInfo) -> TokenInfo:
    """The token's info after a change that succeeded; the info from before when it cannot be read
    (pulled out just then): the change is done either way."""
    try:
        return m.verify(ref)
    except E.CertDeskError as err:
        log.warning("%s changed, but could not be read again: %s", ref.describe(), err.message)
        return before


def set_user_pin(m: LoadedModule, ref: TokenRef, *, so_pin: Secret, new_pin: Secret,
                 allow_final_try: bool = False) -> TokenInfo:
    """C_InitPIN with the SO logged in: the first user PIN of a fresh token, or a new one for a
    user PIN that is locked ("unblock")."""
    info = m.verify(ref)
    check_new_pin(new_pin, info, so=False)
    m.logout(ref)  # the SO logs in afresh: a user session is not what C_InitPIN needs
    m.login(ref, so_pin, so=True, allow_final_try=allow_final_try)
    try:
        with m.operation("set the user PIN", ref.slot_id):
            m.ck.init_pin(session_handle(m.pkcs11_session(ref)), new_pin.reveal().encode("utf-8"))
    finally:
        _logout_quietly(m, ref)
    log.info("set a new user PIN on %s", ref.describe())
    return _fresh(m, ref, info)


def change_pin(m: LoadedModule, ref: TokenRef, *, old: Secret, new: Secret, so: bool = False,
               allow_final_try: bool = False) -> TokenInfo:
    """C_SetPIN: the user PIN (or, with ``so``, the SO PIN) changed from ``old`` to ``new``.

    The old PIN is used to log in first, in a fresh login, with the same care as any login (a
    locked PIN is never tried, the final try needs ``allow_final_try``), so a wrong old PIN is said
    as a login failure and counted as one.
    """
    info = m.verify(ref)
    state = info.so_pin if so else info.user_pin
    if state == E.PinState.NOT_INITIALIZED and not so:
        raise E.PinError(f"{ref.describe()} has no user PIN yet: set one with the SO PIN.", so=False,
                         hint="cert-desk pin unblock, or Unblock PIN… in the Devices pane.")
    check_new_pin(new, info, so=so)
    m.logout(ref)  # an existing login would let C_SetPIN check the old PIN without the login's guards
    m.login(ref, old, so=so, allow_final_try=allow_final_try)
    try:
        with m.operation(f"change the {'SO PIN' if so else 'PIN'}", ref.slot_id, so=so):
            m.ck.set_pin(session_handle(m.pkcs11_session(ref)), old.reveal().encode("utf-8"),
                         new.reveal().encode("utf-8"))
    finally:
        _logout_quietly(m, ref)
    log.info("changed the %s of %s", "SO PIN" if so else "PIN", ref.describe())
    return _fresh(m, ref, info)
