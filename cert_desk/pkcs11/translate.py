"""The one place where PKCS#11 failures become :mod:`cert_desk.errors`.

python-pkcs11 raises one class per CKR code, without the code; a few codes
(BUFFER_TOO_SMALL, CRYPTOKI_ALREADY_INITIALIZED, USER_TYPE_INVALID, unknown ones) come
as a bare ``PKCS11Error`` with a message. The ctypes calls of :mod:`cert_desk.pkcs11.ck`
raise :class:`~cert_desk.pkcs11.ck.CkError` with the code. Both end here.
"""

from __future__ import annotations

import re
from typing import Final

import pkcs11.exceptions as p11x

from cert_desk import errors as E
from cert_desk.pkcs11.ck import CkError
from cert_desk.pkcs11.constants import CKR_BY_NAME, ckr_name

# python-pkcs11 exception class -> CKR code
_CLASS_TO_CKR: Final[dict[type[BaseException], int]] = {
    p11x.AnotherUserAlreadyLoggedIn: 0x104,
    p11x.AttributeTypeInvalid: 0x12,
    p11x.AttributeValueInvalid: 0x13,
    p11x.AttributeReadOnly: 0x10,
    p11x.AttributeSensitive: 0x11,
    p11x.ArgumentsBad: 0x07,
    p11x.DataInvalid: 0x20,
    p11x.DataLenRange: 0x21,
    p11x.DomainParamsInvalid: 0x130,
    p11x.DeviceError: 0x30,
    p11x.DeviceMemory: 0x31,
    p11x.DeviceRemoved: 0x32,
    p11x.EncryptedDataInvalid: 0x40,
    p11x.EncryptedDataLenRange: 0x41,
    p11x.ExceededMaxIterations: 0x1B5,
    p11x.FunctionCancelled: 0x50,
    p11x.FunctionFailed: 0x06,
    p11x.FunctionRejected: 0x200,
    p11x.FunctionNotSupported: 0x54,
    p11x.KeyHandleInvalid: 0x60,
    p11x.KeyIndigestible: 0x67,
    p11x.KeyNeeded: 0x66,
    p11x.KeyNotNeeded: 0x64,
    p11x.KeyNotWrappable: 0x69,
    p11x.KeySizeRange: 0x62,
    p11x.KeyTypeInconsistent: 0x63,
    p11x.KeyUnextractable: 0x6A,
    p11x.GeneralError: 0x05,
    p11x.HostMemory: 0x02,
    p11x.MechanismInvalid: 0x70,
    p11x.MechanismParamInvalid: 0x71,
    p11x.NoEvent: 0x08,
    p11x.ObjectHandleInvalid: 0x82,
    p11x.OperationActive: 0x90,
    p11x.OperationNotInitialized: 0x91,
    p11x.PinExpired: 0xA3,
    p11x.PinIncorrect: 0xA0,
    p11x.PinInvalid: 0xA1,
    p11x.PinLenRange: 0xA2,
    p11x.PinLocked: 0xA4,
    p11x.PinTooWeak: 0x1B8,
    p11x.PublicKeyInvalid: 0x1B9,
    p11x.RandomNoRNG: 0x121,
    p11x.RandomSeedNotSupported: 0x120,
    p11x.SessionClosed: 0xB0,
    p11x.SessionCount: 0xB1,
    p11x.SessionExists: 0xB6,
    p11x.SessionHandleInvalid: 0xB3,
    p11x.SessionReadOnly: 0xB5,
    p11x.SessionReadOnlyExists: 0xB7,
    p11x.SessionReadWriteSOExists: 0xB8,
    p11x.SignatureLenRange: 0xC1,
    p11x.SignatureInvalid: 0xC0,
    p11x.TemplateIncomplete: 0xD0,
    p11x.TemplateInconsistent: 0xD1,
    p11x.SlotIDInvalid: 0x03,
    p11x.TokenNotPresent: 0xE0,
    p11x.TokenNotRecognised: 0xE1,
    p11x.TokenWriteProtected: 0xE2,
    p11x.UnwrappingKeyHandleInvalid: 0xF0,
    p11x.UnwrappingKeySizeRange: 0xF1,
    p11x.UnwrappingKeyTypeInconsistent: 0xF2,
    p11x.UserNotLoggedIn: 0x101,
    p11x.UserAlreadyLoggedIn: 0x100,
    p11x.UserPinNotInitialized: 0x102,
    p11x.UserTooManyTypes: 0x105,
    p11x.WrappedKeyInvalid: 0x110,
    p11x.WrappedKeyLenRange: 0x112,
    p11x.WrappingKeyHandleInvalid: 0x113,
    p11x.WrappingKeySizeRange: 0x114,
    p11x.WrappingKeyTypeInconsistent: 0x115,
}
_BARE_MESSAGES: Final[tuple[tuple[str, int], ...]] = (
    ("Buffer was too small", 0x150),
    ("already initialized", 0x191),
    ("not initialized", 0x190),
    ("Parallel not supported", 0xB4),
    ("User type invalid", 0x103),
)
_UNMAPPED = re.compile(r"Unmapped error code (0x[0-9a-fA-F]+)")

# CKR codes that mean "the token is not there any more"
REMOVED_CODES: Final = frozenset({0x32, 0xE0, 0xB0, 0xB3})  # DEVICE_REMOVED, TOKEN_NOT_PRESENT, SESSION_CLOSED/_INVALID


def ckr_of(exc: BaseException) -> int | None:
    """The CKR code behind a python-pkcs11 or ctypes exception, or ``None``."""
    if isinstance(exc, CkError):
        return exc.ckr
    for cls in type(exc).__mro__:
        code = _CLASS_TO_CKR.get(cls)
        if code is not None:
            return code
    if isinstance(exc, p11x.PKCS11Error):
        text = str(exc)
        m = _UNMAPPED.search(text)
        if m:
            return int(m.group(1), 16)
        for fragment, code in _BARE_MESSAGES:
            if fragment in text:
                return code
    return None


def is_pkcs11_failure(exc: BaseException) -> bool:
    return isinstance(exc, p11x.PKCS11Error | CkError)


def error_for_ckr(code: int | None, operation: str, *, so: bool = False) -> E.CertDeskError:
    """The cert-desk error for a CKR code returned while doing ``operation`` (words, e.g. "log in").

    PIN errors that need token state (attempts left) are completed by the caller, which
    re-reads the token; here they get what the code alone says.
    """
    name = ckr_name(code) if code is not None else "an error without a return code"
    who = "SO PIN" if so else "PIN"
    doing = f" while trying to {operation}" if operation else ""
    if code is None:
        return E.TokenError(f"The token failed{doing}.", None, None, operation)
    if code in REMOVED_CODES:
        return E.TokenRemovedError(f"The token was removed{doing} ({name}).", code, name, operation)
    match name:
        case "CKR_PIN_INCORRECT":
            return E.PinIncorrectError(f"Wrong {who}.", E.PinState.OK, None, so=so)
        case "CKR_PIN_LOCKED":
            return E.PinLockedError(f"The {who} is locked: too many wrong tries.", so=so)
        case "CKR_PIN_LEN_RANGE":
            return E.PinPolicyError(f"The token refused the {who}: its length is out of the allowed range.", so=so)
        case "CKR_PIN_INVALID" | "CKR_PIN_TOO_WEAK":
            return E.PinPolicyError(f"The token refused the {who}: it contains characters or a pattern it does "
                                    "not allow.", so=so)
        case "CKR_PIN_EXPIRED":
            return E.PinExpiredError(f"The {who} has expired and must be changed.", so=so)
        case "CKR_USER_PIN_NOT_INITIALIZED":
            return E.PinError("The token has no user PIN yet.", so=False,
                              hint="Set it with the SO PIN: cert-desk pin unblock, or Unblock PIN… (Devices).")
        case "CKR_USER_NOT_LOGGED_IN":
            return E.NotLoggedInError(f"The token wants a login{doing}.", code, name, operation)
        case "CKR_DEVICE_MEMORY" | "CKR_TOKEN_RESOURCE_EXCEEDED":
            return E.TokenFullError(f"The token is full{doing} ({name}).", code, name, operation)
        case "CKR_TOKEN_WRITE_PROTECTED" | "CKR_SESSION_READ_ONLY":
            return E.WriteProtectedError(f"The token is write-protected{doing} ({name}).", code, name, operation)
        case ("CKR_MECHANISM_INVALID" | "CKR_MECHANISM_PARAM_INVALID" | "CKR_KEY_SIZE_RANGE"
              | "CKR_CURVE_NOT_SUPPORTED" | "CKR_DOMAIN_PARAMS_INVALID"):
            return E.UnsupportedMechanismError(
                f"The token does not support this{doing} ({name}).", code, name, operation)
        case "CKR_TOKEN_NOT_RECOGNIZED":
            return E.TokenNotRecognizedError(f"The module does not recognise the card{doing} ({name}).",
                                             code, name, operation)
        case "CKR_SLOT_ID_INVALID":
            return E.NoSuchSlotError(f"The slot does not exist (any more){doing} ({name}).")
        case "CKR_FUNCTION_CANCELED":
            return E.CancelledError(f"Cancelled on the token or PIN pad{doing}.")
        case "CKR_CRYPTOKI_ALREADY_INITIALIZED":
            return E.TokenError(
                f"The module was already initialised by someone else in this process{doing} ({name}).",
                code, name, operation, hint="Restart cert-desk.")
        case "CKR_DEVICE_ERROR":
            return E.TokenError(f"The token reported a device error{doing} ({name}).", code, name, operation,
                                hint="Unplug the token, plug it in again and retry.")
        case "CKR_USER_ANOTHER_ALREADY_LOGGED_IN":
            return E.TokenError(f"Another user is logged in to the token{doing} ({name}).", code, name,
                                operation, hint="Log out first.")
        case "CKR_SESSION_COUNT":
            return E.TokenError(f"The token has no free sessions{doing} ({name}).", code, name, operation,
                                hint="Close other programs that use the token and try again.")
    # a code cert-desk has no words for: its name when PKCS#11 (or the vendor range) has one, and the
    # number, which is what a vendor's documentation lists
    shown = name if code is None or name.startswith("0x") else f"{name} (0x{code:08X})"
    return E.TokenError(f"The token failed{doing}: {shown}.", code, name, operation,
                        hint="This is not an error cert-desk knows; the token's documentation may explain the "
                             "code.")


def module_init_error(path: str, exc: BaseException) -> E.ModuleInitError:
    """C_Initialize (or C_GetInfo) of the module at ``path`` failed with ``exc``."""
    code = ckr_of(exc)
    name = ckr_name(code) if code is not None else type(exc).__name__
    hint = None
    if code == 0x191:  # CKR_CRYPTOKI_ALREADY_INITIALIZED
        hint = "Something else in this process initialised the module already; restart cert-desk."
    return E.ModuleInitError(f"The PKCS#11 module {path} failed to initialise ({name}).", path, code, hint)


def translate(exc: BaseException, operation: str, *, so: bool = False) -> E.CertDeskError:
    """Translate a python-pkcs11 / ctypes failure; any other exception comes back as InternalError."""
    if isinstance(exc, E.CertDeskError):
        return exc
    if is_pkcs11_failure(exc):
        return error_for_ckr(ckr_of(exc), operation, so=so)
    return E.InternalError(f"Unexpected failure while trying to {operation}: {type(exc).__name__}: {exc}")


__all__ = ["CKR_BY_NAME", "REMOVED_CODES", "ckr_of", "error_for_ckr", "is_pkcs11_failure", "module_init_error",
           "translate"]
