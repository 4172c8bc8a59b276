"""The one error tree of cert-desk.

Every error carries a ``message`` (what happened, in words a user can act on) and a
``hint`` (what to do next). ``str(error)`` joins both. Foreign exceptions
(python-pkcs11, OSError from dlopen, ...) are translated into this tree at the
adapter that calls the foreign code, with ``raise ... from``; for PKCS#11 that single
place is :mod:`cert_desk.pkcs11.translate` (``translate``, ``module_init_error``).

No message ever contains a PIN: PINs travel as :class:`cert_desk.secrets.Secret`,
whose ``repr`` and ``str`` are masked, and no constructor here takes one.
"""

from __future__ import annotations

from enum import Enum


class CertDeskError(Exception):
    """Base of every error cert-desk raises on purpose.

    Attributes:
        message: What happened.
        hint: What the user can do next (may be empty).
    """

    default_hint = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = self.default_hint if hint is None else hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n{self.hint}"
        return self.message

    @property
    def kind(self) -> str:
        """A stable, machine-readable name of the error class (used in ``--json`` errors)."""
        return type(self).__name__


class InternalError(CertDeskError):
    """A bug in cert-desk: an exception nobody translated."""

    default_hint = "This is a bug in cert-desk. The log file has the details; please report it."


class InputError(CertDeskError):
    """The user gave something cert-desk cannot use (a bad file, value or option)."""


class ConflictError(InputError):
    """What the user asked for would clash with what is already there (an ID or label in use)."""


class ConfirmationRequired(InputError):
    """The operation is allowed, but only once the user has confirmed it (an expired
    certificate, a duplicate label): the GUI asks, the CLI wants the option the hint names."""


class ApplicationRunningError(CertDeskError):
    """A browser or mail client has the database open: changing it now is refused."""

    default_hint = "Close it (all its windows), then try again: it reads the module list only when it starts."


class CancelledError(CertDeskError):
    """The user cancelled the operation."""


# --------------------------------------------------------------------- modules


class ModuleError(CertDeskError):
    """A PKCS#11 module could not be used.

    Attributes:
        path: The module path as given.
    """

    def __init__(self, message: str, path: str, hint: str | None = None) -> None:
        self.path = path
        super().__init__(message, hint)


class ModuleNotFoundError_(ModuleError):
    """The module file does not exist."""

    default_hint = (
        "Check the path. Installed modules are listed by 'cert-desk modules'; OpenSC's is in the "
        "'opensc-pkcs11' package, SoftHSM2's in 'softhsm2'."
    )


class NotAPkcs11ModuleError(ModuleError):
    """The file exists but is not a loadable PKCS#11 module."""

    default_hint = "Choose the vendor's PKCS#11 library (a .so file that exports C_GetFunctionList)."


class ModuleInitError(ModuleError):
    """The module loaded but ``C_Initialize`` (or ``C_GetInfo``) failed.

    Attributes:
        ckr: The CKR code, when the module returned one.
    """

    default_hint = "The module's own configuration may be wrong (for SoftHSM2: SOFTHSM2_CONF)."

    def __init__(self, message: str, path: str, ckr: int | None = None, hint: str | None = None) -> None:
        self.ckr = ckr
        super().__init__(message, path, hint)


# ---------------------------------------------------------------- slots/tokens


class SelectionError(CertDeskError):
    """The token or slot the user named cannot be picked."""


class NoSuchSlotError(SelectionError):
    """No slot with that ID."""

    default_hint = "List the slots with 'cert-desk slots'."


class NoTokenError(SelectionError):
    """No token matches, or the slot is empty."""

    default_hint = "List the tokens with 'cert-desk slots'; is the token plugged in?"


class AmbiguousTokenError(SelectionError):
    """More than one token matches."""

    default_hint = "Pick one with --serial or --slot (and --module)."


class TokenNotInitializedError(SelectionError):
    """The slot holds a token that was never initialised."""

    default_hint = "Initialise the token first, for example: pkcs11-tool --init-token --label NAME --so-pin env:SO_PIN."


class TokenError(CertDeskError):
    """A PKCS#11 call failed.

    Attributes:
        ckr: The CKR code (``None`` when the failure did not come with one).
        ckr_name: Its name (``CKR_...``), or the hex value for unknown codes.
        operation: What cert-desk was doing, in words.
    """

    default_hint = "Try again; if it keeps failing, unplug and re-insert the token."

    def __init__(
        self,
        message: str,
        ckr: int | None = None,
        ckr_name: str | None = None,
        operation: str = "",
        hint: str | None = None,
    ) -> None:
        self.ckr = ckr
        self.ckr_name = ckr_name
        self.operation = operation
        super().__init__(message, hint)


class TokenRemovedError(TokenError):
    """The token (or its reader) went away."""

    default_hint = "Insert the token again; you will have to log in again."


class TokenNotRecognizedError(TokenError):
    """A card is present but the module does not know it."""

    default_hint = "This module has no driver for the card in the reader; is it the right module for this token?"


class TokenFullError(TokenError):
    """The token has no memory left for the object."""

    default_hint = "Delete objects you no longer need (old certificates, unused keys) and try again."


class WriteProtectedError(TokenError):
    """The token refuses changes."""

    default_hint = "The token is write-protected; it can be read but not changed."


class UnsupportedMechanismError(TokenError):
    """The token lacks a mechanism, or does not take the key size or parameters."""

    default_hint = "Choose another key type or size: 'cert-desk slots' lists what the token supports."


class KeyMismatchError(TokenError):
    """What the token signed does not verify with the public key cert-desk holds for that key:
    the public key object (or certificate) with its ID belongs to another key."""

    default_hint = "Run 'cert-desk doctor' on the token: objects with this ID do not belong together."


class NotLoggedInError(TokenError):
    """The operation needs a login first."""

    default_hint = "Log in to the token (--login) and try again."


class TokenBusyError(TokenError):
    """The module did not answer in time."""

    default_hint = "The token is busy (it may be waiting for a button or a PIN pad); wait and try again."


# ------------------------------------------------------------------------ PINs


class PinState(Enum):
    """What the token says about one PIN before anyone types it."""

    OK = "ok"
    COUNT_LOW = "count_low"
    FINAL_TRY = "final_try"
    LOCKED = "locked"
    TO_BE_CHANGED = "to_be_changed"
    NOT_INITIALIZED = "not_initialized"

    @property
    def words(self) -> str:
        return _PIN_STATE_WORDS[self]


_PIN_STATE_WORDS = {
    PinState.OK: "ok",
    PinState.COUNT_LOW: "count low: a wrong PIN was entered, fewer tries remain",
    PinState.FINAL_TRY: "final try: one more wrong PIN locks it",
    PinState.LOCKED: "locked",
    PinState.TO_BE_CHANGED: "must be changed",
    PinState.NOT_INITIALIZED: "not set",
}


class PinError(CertDeskError):
    """A PIN was refused or cannot be used.

    Attributes:
        so: True when the SO (security officer) PIN is meant.
    """

    def __init__(self, message: str, so: bool = False, hint: str | None = None) -> None:
        self.so = so
        super().__init__(message, hint)


class PinIncorrectError(PinError):
    """The token refused the PIN.

    Attributes:
        state: The PIN state the token reported after the attempt.
        attempts_left: Tries left when the token says so (1 on FINAL_TRY, 0 when locked),
            otherwise ``None``.
    """

    def __init__(self, message: str, state: PinState, attempts_left: int | None, so: bool = False,
                 hint: str | None = None) -> None:
        self.state = state
        self.attempts_left = attempts_left
        super().__init__(message, so, hint)


class PinLockedError(PinError):
    """The PIN is blocked; logging in is not possible."""

    default_hint = (
        "Set a new user PIN with the SO PIN: cert-desk pin unblock, or Unblock PIN… in the Devices pane "
        "(a locked SO PIN: only re-initialising the token, where the device allows it)."
    )


class PinFinalTryError(PinError):
    """The token has one try left and the user has not confirmed that a wrong PIN locks it."""

    default_hint = (
        "One more wrong PIN locks the token. Confirm that you want to try (the GUI asks; on the command "
        "line, answer the prompt or pass --allow-final-try), or unblock the PIN with the SO PIN first."
    )


class PinPolicyError(PinError):
    """The PIN does not meet the token's rules (length, characters)."""


class PinExpiredError(PinError):
    """The token requires the PIN to be changed before use."""

    default_hint = "Change the PIN first: cert-desk pin change, or Change PIN… in the Devices pane."


class PinRequiredError(PinError):
    """An operation needs a PIN and none could be obtained."""

    default_hint = (
        "Give the PIN with --pin-file FILE, the CERT_DESK_PIN environment variable, or run in a terminal "
        "to be asked for it."
    )


# -------------------------------------------------------------------- keyring


class KeyringError(CertDeskError):
    """The OS keyring (Secret Service, KWallet, ...) cannot store or give a remembered PIN:
    there is none, it is locked, or it refused."""

    default_hint = "Log in with the PIN without remembering it; nothing was stored."


# ----------------------------------------------------------------------- misc


class WorkerError(CertDeskError):
    """The service layer cannot run the job (stopped, or a result that may not cross threads)."""


class WrongThreadError(RuntimeError):
    """A PKCS#11 object was touched off its module's worker thread.

    This is a programming error, not a user error, so it is not a :class:`CertDeskError`.
    """
