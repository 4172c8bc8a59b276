"""Remembered PINs: a token's user PIN kept in the OS keyring, opt-in per token.

Rules, all enforced here so every caller (CLI, GUI) gets them:

* A PIN is remembered only when the user asks, for one token, keyed by its **serial number and
  label** (a label is not unique, and neither is a serial: OpenSC shows one slot per PIN of a card,
  "card (User PIN)" and "card (User PIN (sig))", with the same serial and different PINs).
* Only tokens the user opted in for are looked up: their keys (never a PIN) are listed in
  ``$XDG_STATE_HOME/cert-desk/remembered-pins.json``, so a login to any other token never touches
  the keyring (a locked keyring would show its unlock prompt at every login otherwise).
* The **SO PIN is never stored**: there is no function that would store it.
* A remembered PIN is used **at most once per login the user started**, and only while the token
  reports its PIN state as plain OK: if it says a wrong PIN was entered before (COUNT_LOW,
  FINAL_TRY, LOCKED) the user is asked instead.
* The moment a remembered PIN produces a wrong-PIN (or locked) answer it is **deleted**, and the
  token is first struck off the index, so even a keyring that refuses the deletion cannot get the
  stale PIN tried again: it costs one try, never two.
* Only a real, protected keyring is used (Secret Service: GNOME Keyring, KWallet 6, KeePassXC;
  KWallet over its own D-Bus API; macOS Keychain; Windows Credential Locker). Plain-text or "null"
  backends are refused. When there is none, :func:`keyring_status` says why, in words.

Every function may block (a locked keyring may show the desktop's unlock prompt), so callers
run them off the GUI thread. Nothing here logs or raises with a PIN in it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cert_desk import errors as E
from cert_desk.secrets.secret import Secret

log = logging.getLogger(__name__)

SERVICE = "cert-desk"
SOURCE = "the keyring"
"""The :attr:`Secret.source` of a remembered PIN: how callers tell it from a typed one."""

_INSECURE = ("fail.Keyring", "null.Keyring", "PlaintextKeyring", "chainer.ChainerBackend")
_NONE_REASON = ("No keyring service is running (GNOME Keyring, KWallet or another Secret Service "
                "provider), so PINs cannot be remembered.")


@dataclass(frozen=True)
class KeyringStatus:
    """Whether PINs can be remembered here.

    Attributes:
        available: A protected keyring answers.
        backend: Its name in words ("Secret Service (GNOME Keyring, KWallet, ...)"), or "".
        reason: Why remembering is unavailable (empty when available).
    """

    available: bool
    backend: str
    reason: str


def _username(serial: str, label: str) -> str:
    serial = serial.strip()
    if not serial:
        raise E.InputError("This token reports no serial number, so cert-desk cannot remember its PIN.",
                           "A remembered PIN is tied to the serial number; without one it could be tried on "
                           "another token.")
    return f"token:{serial}:{label.strip()}"


def _index_path() -> Path:
    from cert_desk.paths import state_dir

    return state_dir() / "remembered-pins.json"


def _index() -> set[str]:
    """The keys of the tokens whose PIN the user asked to remember (no PIN is in this file)."""
    try:
        data = json.loads(_index_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return {k for k in data if isinstance(k, str)} if isinstance(data, list) else set()


def _set_index(user: str, present: bool) -> None:
    keys = _index()
    if (user in keys) == present:
        return
    (keys.add if present else keys.discard)(user)
    path = _index_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(sorted(keys), indent=1), encoding="utf-8")
    os.replace(tmp, path)


_PROTECTED = (("SecretService", "Keyring"), ("kwallet", "DBusKeyring"), ("macOS", "Keyring"),
              ("Windows", "WinVaultKeyring"))


def _candidates() -> list[type[Any]]:
    """Backend classes that protect what they store (a platform's own are importable only there)."""
    import importlib

    classes: list[type[Any]] = []
    for module, name in _PROTECTED:
        try:
            classes.append(getattr(importlib.import_module(f"keyring.backends.{module}"), name))
        except Exception as e:  # python-dbus missing, not macOS, ...: only that backend is out
            log.debug("keyring backend %s.%s unusable: %s", module, name, type(e).__name__)
    return classes


def _backend() -> tuple[Any | None, str]:
    """The keyring to use (or ``None``) and, when none, why. Chosen afresh each time: the
    keyring daemon may start or stop while cert-desk runs."""
    try:
        import keyring.core
    except ImportError:
        return None, "The Python 'keyring' package is not installed, so PINs cannot be remembered."
    if os.environ.get("PYTHON_KEYRING_BACKEND"):
        try:
            chosen = keyring.core.load_env()
        except Exception as e:  # a misspelt backend name
            return None, f"PYTHON_KEYRING_BACKEND names a keyring that cannot be loaded ({type(e).__name__})."
        if chosen is None:
            return None, "PYTHON_KEYRING_BACKEND names no keyring."
        name = f"{type(chosen).__module__}.{type(chosen).__name__}"
        if any(name.endswith(bad) for bad in _INSECURE):
            return None, f"The keyring set by PYTHON_KEYRING_BACKEND ({name}) does not protect what it stores."
        return chosen, ""
    reasons: list[str] = []
    best: tuple[float, Any] | None = None
    for cls in _candidates():
        try:
            priority = float(cls.priority)
        except Exception as e:  # each backend says why it cannot run by raising
            reasons.append(str(e))
            continue
        if priority > 0 and (best is None or priority > best[0]):
            best = (priority, cls)
    if best is None:
        log.debug("no keyring backend: %s", "; ".join(reasons))
        return None, _NONE_REASON
    return best[1](), ""


def _describe(backend: Any) -> str:
    module = type(backend).__module__
    if module.endswith("SecretService"):
        return "Secret Service (GNOME Keyring, KWallet, KeePassXC ...)"
    if module.endswith("kwallet"):
        return "KWallet"
    if module.endswith("macOS"):
        return "macOS Keychain"
    if module.endswith("Windows"):
        return "Windows Credential Locker"
    return f"{module}.{type(backend).__name__}"


def keyring_status() -> KeyringStatus:
    """Whether a protected keyring answers now, and which."""
    backend, reason = _backend()
    if backend is None:
        return KeyringStatus(False, "", reason)
    return KeyringStatus(True, _describe(backend), "")


def _require() -> Any:
    backend, reason = _backend()
    if backend is None:
        raise E.KeyringError(reason, "Install and start GNOME Keyring or KWallet, or type the PIN each time.")
    return backend


def _translate(e: Exception, doing: str) -> E.KeyringError:
    from keyring import errors as K

    if isinstance(e, K.KeyringLocked):
        return E.KeyringError(f"The keyring is locked, so cert-desk could not {doing}.",
                              "Unlock it (it unlocks when you log in to the desktop, or from the Passwords and "
                              "Keys application), then try again. Nothing was changed.")
    # The exception text comes from the keyring library or D-Bus: it never holds the PIN
    return E.KeyringError(f"The keyring refused to {doing}: {type(e).__name__}: {e}".rstrip(": "),
                          "Nothing was changed.")


def remember(serial: str, label: str, pin: Secret) -> None:
    """Store the user PIN of the token with ``serial`` and ``label`` (replacing a remembered one).

    Call it only after the token accepted ``pin`` in a C_Login that really checked it: a PIN is
    never remembered unchecked.

    Raises:
        InputError: no serial number, or an empty PIN.
        KeyringError: no keyring, locked, or it refused (nothing stored).
    """
    user = _username(serial, label)
    if not pin:
        raise E.InputError("An empty PIN is not remembered.")
    backend = _require()
    try:
        backend.set_password(SERVICE, user, pin.reveal())
    except Exception as e:  # every keyring failure becomes one clear error
        raise _translate(e, "remember the PIN") from None
    _set_index(user, True)
    log.info("remembered the PIN of token %s (%r) in the keyring", serial, label)


def recall(serial: str, label: str) -> Secret | None:
    """The remembered PIN of the token, or ``None`` when none is stored. A token the user never
    opted in for is answered without asking the keyring.

    Raises:
        KeyringError: the keyring is absent, locked or refused.
    """
    user = _username(serial, label)
    if user not in _index():
        return None
    backend = _require()
    try:
        value = backend.get_password(SERVICE, user)
    except Exception as e:
        raise _translate(e, "read the remembered PIN") from None
    if not value:
        return None
    return Secret(value, SOURCE)


def forget(serial: str, label: str) -> bool:
    """Delete the remembered PIN of the token. True when one was deleted. The token is struck off
    the index first, so it is not looked up again even when the keyring refuses the deletion.

    Raises:
        KeyringError: the keyring is locked or refused the deletion (the token is off the index).
    """
    try:
        user = _username(serial, label)
    except E.InputError:
        return False
    if user not in _index():
        return False
    _set_index(user, False)
    from keyring import errors as K

    backend, _ = _backend()
    if backend is None:
        return False
    try:
        if backend.get_password(SERVICE, user) is None:
            return False
        backend.delete_password(SERVICE, user)
    except K.PasswordDeleteError:
        return False
    except Exception as e:
        raise _translate(e, "delete the remembered PIN") from None
    log.info("deleted the remembered PIN of token %s (%r) from the keyring", serial, label)
    return True


def is_remembered(serial: str, label: str) -> bool:
    """True when the user opted in for this token (its PIN is, or should be, in the keyring)."""
    try:
        return _username(serial, label) in _index()
    except E.InputError:
        return False


def usable_for(state: E.PinState) -> bool:
    """A remembered PIN may be tried only while the token reports no earlier wrong PIN (and does not
    want the PIN changed: the change comes first)."""
    return state is E.PinState.OK


def on_login_result(serial: str, label: str, pin: Secret | None, error: BaseException | None) -> bool:
    """After a login with ``pin``: a remembered PIN that was refused is deleted at once (also
    one the token's length rules reject: it can never work).

    Returns:
        True when a remembered PIN was deleted (callers say so to the user).
    """
    if pin is None or pin.source != SOURCE or error is None:
        return False
    if not isinstance(error, (E.PinIncorrectError, E.PinLockedError, E.PinPolicyError)):
        return False
    try:
        return forget(serial, label)
    except E.KeyringError:  # off the index already: it is not tried again, only left in the keyring
        log.warning("the remembered PIN of token %s was refused; the keyring did not delete it", serial)
        return True
