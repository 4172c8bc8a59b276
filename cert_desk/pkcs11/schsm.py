"""SmartCard-HSM / Nitrokey HSM: device rules, and the administration PKCS#11 cannot do, through
OpenSC's ``sc-hsm-tool``.

Initialising with DKEK shares, creating and importing DKEK shares and wrapping / unwrapping keys
are not reachable through PKCS#11, so cert-desk drives the tool that does them. Everything here is
taken from OpenSC 0.23 (Debian 12: 0.23.0-0.3+deb12u2) and checked by the tests against the strings
in the installed ``/usr/bin/sc-hsm-tool`` and ``libopensc.so.8``:

- ``src/tools/sc-hsm-tool.c`` (``print_info``, ``initialize``, ``ask_for_password``,
  ``import_dkek_share``, ``wrap_key``, ``unwrap_key``, ``main``) and ``src/tools/util.c``
  (``util_getpass``, ``util_connect_reader``) give the prompts, the output formats and the errors;
- ``src/libopensc/card-sc-hsm.c`` gives the ATRs; ``pkcs15-sc-hsm.c`` the PIN rules and the token's
  manufacturer; ``src/pkcs11/framework-pkcs15.c`` the model ("PKCS#15 emulated").

Facts about the tool that shape this module:

- Secrets never go on its command line (``--so-pin``, ``--pin``, ``--password`` would put them in
  ``/proc/PID/cmdline``): they are typed at its prompts through a pseudo-terminal.
  ``util_getpass`` prints the prompt, then turns echo off on *stdout's* terminal with
  ``TCSAFLUSH``, which throws away anything typed before; so stdout must be a terminal, and a
  secret is written only once the prompt is there *and* echo is off. It reads at most 127 bytes
  up to ``\\n`` with the terminal in canonical mode (control characters edit the line or send
  signals), hence: printable ASCII only.
- Its exit status is 0 when no reader or card was found ("Failed to connect to card: Success"), and
  when the card refused to be initialised: the output decides, never the exit status alone.
- ``--reader N`` picks reader N in OpenSC's order (``opensc-tool --list-readers``, from 0); without it
  the tool takes the first reader with a card. The caller passes N.
- ``--label`` works, but ``-l`` (shown in its help and man page) is missing from its getopt string and
  gives the usage: the long options are used throughout.
- ``--create-dkek-share`` overwrites its file, and so does ``--wrap-key``: cert-desk refuses an
  existing file instead. Both need the card (its random numbers), so they take a reader too.
- A password shorter than 6 characters makes ``--create-dkek-share`` ask again forever; a second
  prompt is detected and stopped.
"""

from __future__ import annotations

import logging
import os
import re
import select
import shutil
import subprocess
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cert_desk import errors as E
from cert_desk.models import TokenInfo
from cert_desk.secrets import Secret

log = logging.getLogger(__name__)

TOOL = "sc-hsm-tool"
TIMEOUT = 60.0
"""Seconds the tool may take for each step (to show a prompt, or to finish after the last answer):
OpenSC may probe an unknown card for ~14 s, and a DKEK share's key derivation runs 10,000,000 MD5
rounds."""

_INSTALL_HINT = "sc-hsm-tool is part of OpenSC: sudo apt install opensc (Debian, Ubuntu) or sudo dnf install opensc."
_NOTHING_SENT = "Nothing was sent to the token, so no try was used."

# ------------------------------------------------------------------- the device

MIN_USER_PIN = 6
MAX_USER_PIN = 15
"""pkcs15-sc-hsm.c gives the user PIN min_length 6 and max_length 15: OpenSC's PKCS#11 module refuses
a longer PIN. sc-hsm-tool's ``initialize`` would accept 16 ("PIN must not be longer than 16
characters"), a PIN no PKCS#11 application could then log in with."""
MAX_TOOL_USER_PIN = 16
"""What sc-hsm-tool itself takes (a PIN set by another tool may be this long)."""
SO_PIN_HEX_DIGITS = 16
MAX_RETRY_COUNTER = 10
MAX_DKEK_SHARES = 127
"""sc-hsm-tool stores ``--dkek-shares`` in a (signed) char; 128 and more would silently mean "no DKEK"."""
MIN_SHARE_PASSWORD = 6
MAX_TYPED = 127
"""util_getpass reads at most MAX_PASS_SIZE - 1 = 127 bytes; the rest would go to the next prompt."""
MIN_KEY_REFERENCE = 1
MAX_KEY_REFERENCE = 255
DKEK_SHARE_SIZE = 64
"""A share file: "Salted__", an 8-byte salt, the 32-byte share AES-256-CBC enciphered (48 bytes)."""
DKEK_SHARE_MAGIC = b"Salted__"
MAX_WRAPPED_KEY = 4096 + 256 + 1500
"""sc-hsm-tool's MAX_CERT + MAX_PRKD + MAX_KEY: what ``--unwrap-key`` reads of a file."""

MANUFACTURER = "www.CardContact.de"
"""pkcs15-sc-hsm.c's manufacturer_id for a SmartCard-HSM (a GoID says "Bundesdruckerei GmbH")."""
DEFAULT_LABEL = "SmartCard-HSM"
EMULATED_MODEL = "PKCS#15 emulated"

# card-sc-hsm.c's sc_hsm_atrs in OpenSC 0.23 (the same as pcsc-tools' smartcard_list.txt names). They
# carry no mask, so _sc_match_atr compares them whole; the masked entries of that table are GoID cards
# (Bundesdruckerei, with a PIN pad and other PIN rules), left out like the SoC sample card's
# 3B:80:80:01:01, which OpenSC itself tells from other cards only by selecting the applet.
_ATRS: tuple[bytes, ...] = (
    bytes.fromhex("3BFE1800008131FE458031815448534D31738021408107FA"),  # "Smartcard-HSM"
    bytes.fromhex("3B8E80018031815448534D3173802140810718"),  # "Smartcard-HSM (Contactless Interface)"
    bytes.fromhex("3BDE18FF8191FE1FC38031815448534D317380214081071C"),  # "SmartCard-HSM 4K USB-Token"
    bytes.fromhex("3BDE96FF8191FE1FC38031815448534D3173802140810792"),  # "SmartCard HSM" (USB token)
)


def is_smartcard_hsm(info: TokenInfo | None, atr: bytes | None) -> bool:
    """A SmartCard-HSM or Nitrokey HSM (a SmartCard-HSM inside), by what OpenSC's PKCS#11 module
    reports or by the ATR.

    The manufacturer is decisive (OpenSC sets it; the label is the user's choice at initialisation);
    a token still labelled "SmartCard-HSM" with OpenSC's emulated model is one too.
    """
    if info is not None:
        if info.manufacturer.strip().lower() == MANUFACTURER.lower():
            return True
        if info.model.strip() == EMULATED_MODEL and info.label.strip().startswith(DEFAULT_LABEL):
            return True
    return atr is not None and bytes(atr) in _ATRS


def _check_typable(secret: Secret, what: str, *, lo: int, hi: int, so: bool | None) -> str:
    """The value, once it is printable ASCII of ``lo``..``hi`` characters; raises PinPolicyError for a PIN
    (``so`` says which), InputError for a password (``so`` None). Messages give lengths, never the value."""
    value = secret.reveal()

    def refuse(message: str, hint: str) -> E.CertDeskError:
        if so is None:
            return E.InputError(message, hint)
        return E.PinPolicyError(message, so=so, hint=hint)

    nothing_sent = _NOTHING_SENT if so is not None else "Nothing was sent to the token."
    if any(not (" " <= c <= "~") for c in value):
        raise refuse(f"The {what} contains characters other than printable ASCII (letters, digits, punctuation, "
                     "space).", "sc-hsm-tool reads it from a terminal, where control characters edit the line; "
                                "choose one without them. " + nothing_sent)
    if len(value) < lo:
        raise refuse(f"The {what} is too short: {len(value)} characters, at least {lo} are needed.", nothing_sent)
    if len(value) > hi:
        raise refuse(f"The {what} is too long: {len(value)} characters, at most {hi} are allowed.", nothing_sent)
    return value


def check_user_pin(pin: Secret) -> None:
    """A new user PIN the SmartCard-HSM takes and OpenSC's PKCS#11 module can log in with: 6-15
    printable ASCII characters (OpenSC does not enforce digits, though its PIN type says numeric)."""
    _check_typable(pin, "user PIN", lo=MIN_USER_PIN, hi=MAX_USER_PIN, so=False)


def check_so_pin(pin: Secret) -> None:
    """The SO PIN: exactly 16 hexadecimal digits (sc-hsm-tool decodes it to the 8-byte
    initialisation code)."""
    value = pin.reveal()
    if not re.fullmatch(r"[0-9A-Fa-f]*", value):
        wrong = "characters that are not hexadecimal digits"
    elif len(value) != SO_PIN_HEX_DIGITS:
        wrong = f"{len(value)} digits"
    else:
        return
    raise E.PinPolicyError(
        f"The SO PIN of a SmartCard-HSM is exactly {SO_PIN_HEX_DIGITS} hexadecimal digits (0-9, A-F); "
        f"this one has {wrong}.", so=True, hint=_NOTHING_SENT)


def check_share_password(password: Secret) -> None:
    """A password for a new DKEK share, as sc-hsm-tool takes it: at least 6 characters (it asks again
    forever for a shorter one), at most 127, printable ASCII."""
    _check_typable(password, "DKEK share password", lo=MIN_SHARE_PASSWORD, hi=MAX_TYPED, so=None)


def check_key_reference(key_ref: int) -> None:
    if not MIN_KEY_REFERENCE <= key_ref <= MAX_KEY_REFERENCE:
        raise E.InputError(f"Key reference {key_ref} does not exist on a SmartCard-HSM: key references are "
                           f"{MIN_KEY_REFERENCE} to {MAX_KEY_REFERENCE}.",
                           "'pkcs15-tool -D' shows a key's reference (its key ID on the card).")


def check_dkek_shares(dkek_shares: int | None) -> None:
    if dkek_shares is not None and not 0 <= dkek_shares <= MAX_DKEK_SHARES:
        raise E.InputError(f"{dkek_shares} DKEK shares cannot be set: from 0 (a random DKEK the token keeps to "
                           f"itself) to {MAX_DKEK_SHARES}.", "Leave it out for no DKEK (no key wrap).")


def check_pin_retry(pin_retry: int | None, user_pin_length: int) -> None:
    """sc-hsm-tool's rules for the user PIN retry counter: at most 10; at most 3 for a 6-character PIN
    and 5 for a 7-character one. Its default is 3."""
    if pin_retry is None:
        return
    if not 1 <= pin_retry <= MAX_RETRY_COUNTER:
        raise E.InputError(f"A PIN retry counter of {pin_retry} is not possible: 1 to {MAX_RETRY_COUNTER}.")
    for length, most in ((6, 3), (7, 5)):
        if user_pin_length == length and pin_retry > most:
            raise E.InputError(f"A {length}-character user PIN allows at most {most} tries, not {pin_retry}.",
                               "Choose a longer PIN for more tries.")


def check_label(label: str | None) -> str | None:
    if label is None:
        return None
    label = label.strip()
    if not label:
        raise E.InputError("The token label is empty.", "Leave it out for OpenSC's default, 'SmartCard-HSM'.")
    if len(label.encode("utf-8")) > 32:
        raise E.InputError(f"The label {label!r} is longer than 32 bytes, the most PKCS#11 shows.")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in label):
        raise E.InputError(f"The label {label!r} contains control characters.")
    return label


# ------------------------------------------------------------------- the output

# sc-hsm-tool.c's prompts, byte for byte.
PROMPT_SO_PIN = "Enter SO-PIN (16 hexadecimal characters) : "
PROMPT_INITIAL_USER_PIN = "Enter initial User-PIN (6 - 16 characters) : "
PROMPT_USER_PIN = "Enter User PIN : "
PROMPT_NEW_SHARE_PASSWORD = "Enter password to encrypt DKEK share : "  # noqa: S105 - a prompt
PROMPT_CONFIRM_SHARE_PASSWORD = "Please retype password to confirm : "  # noqa: S105 - a prompt
PROMPT_SHARE_PASSWORD = "Enter password to decrypt DKEK share : "  # noqa: S105 - a prompt

# print_info / print_dkek_info's printf formats as patterns (%d is -?\d+; util_hex_dump prints %02X).
_VERSION = re.compile(r"Version              : (-?\d+)\.(-?\d+)")
_CONFIG = "Config options       :"
_OPT_RRC = "  User PIN reset with SO-PIN enabled"
_OPT_TRANSPORT = "  Transport-PIN mode enabled"
_NEVER_INITIALIZED = ("SmartCard-HSM has never been initialized. Please use --initialize to set SO-PIN and "
                      "user PIN.")
_SO_LOCKED = "SO-PIN locked"
_SO_TRIES = re.compile(r"SO-PIN tries left    : (-?\d+)")
_PKA_ACTIVE = "Public key authentication active."
_TRANSPORT_ACTIVE = "Transport-PIN active. Please change to user selected PIN first."
_USER_LOCKED = "User PIN locked"
_USER_TRIES = re.compile(r"User PIN tries left  : (-?\d+)")
_DKEK_SHARES = re.compile(r"DKEK shares          : (-?\d+)")
_DKEK_PENDING = re.compile(r"DKEK import pending, (-?\d+) share\(s\) still missing")
_DKEK_KCV = re.compile(r"DKEK key check value : ([0-9A-F]{16})")
_DKEK_QUERY_FAILED = re.compile(r"sc_card_ctl\(\*, SC_CARDCTL_SC_HSM_IMPORT_DKEK_SHARE, \*\) failed with (.*)")
_SHARE_IMPORTED = "DKEK share imported"
_KEY_IMPORTED = "Key successfully imported"


@dataclass(frozen=True)
class DkekState:
    """What ``print_dkek_info`` says about the Device Key Encryption Key.

    Attributes:
        shares: The number of shares the token was initialised for (0: a random DKEK of its own).
        outstanding: Shares still to import; while any are, no key can be generated or imported.
        kcv: The DKEK's 8-byte key check value, printed once every share is in.
    """

    shares: int | None
    outstanding: int
    kcv: bytes | None

    @property
    def all_zero_kcv(self) -> bool:
        """The KCV is known and all zero: no DKEK is set, so no key can be wrapped (backed up); worth a
        warning."""
        return self.kcv is not None and self.kcv == bytes(8)

    @property
    def complete(self) -> bool:
        """Every share is imported: the DKEK is usable for key wrap and unwrap."""
        return self.outstanding == 0 and self.kcv is not None


@dataclass(frozen=True)
class ScHsmStatus:
    """sc-hsm-tool's report with no action (``print_info``).

    Attributes:
        version: The applet's version, "major.minor".
        config_options: The lines under "Config options", as printed (stripped).
        user_pin_reset_with_so_pin: "User PIN reset with SO-PIN enabled".
        transport_pin_mode: "Transport-PIN mode enabled".
        initialized: False when the tool says the token was never initialised.
        so_pin_tries: SO PIN tries left, when printed (applet 2.0 and later); 0 when locked.
        user_pin_tries: User PIN tries left; 0 when locked; None when not printed or unknown.
        transport_pin_active: The user PIN is still the transport PIN and must be changed first.
        public_key_auth_active: Login needs M-of-N public key authentication.
        dkek: The DKEK state; None when the token has no DKEK support or the query failed.
        warnings: Errors the tool printed on the way (the DKEK query failing).
        unknown_lines: Lines cert-desk does not know, kept so nothing is lost.
    """

    version: str
    config_options: tuple[str, ...]
    user_pin_reset_with_so_pin: bool
    transport_pin_mode: bool
    initialized: bool
    so_pin_tries: int | None
    user_pin_tries: int | None
    transport_pin_active: bool
    public_key_auth_active: bool
    dkek: DkekState | None
    warnings: tuple[str, ...] = ()
    unknown_lines: tuple[str, ...] = ()

    @property
    def so_pin_locked(self) -> bool:
        return self.so_pin_tries == 0

    @property
    def user_pin_locked(self) -> bool:
        return self.user_pin_tries == 0

    @property
    def user_pin_state(self) -> E.PinState:
        """In cert-desk's words. COUNT_LOW is not knowable here: the tool prints no maximum."""
        if not self.initialized:
            return E.PinState.NOT_INITIALIZED
        if self.user_pin_tries == 0:
            return E.PinState.LOCKED
        if self.transport_pin_active:
            return E.PinState.TO_BE_CHANGED
        if self.user_pin_tries == 1:
            return E.PinState.FINAL_TRY
        return E.PinState.OK

    @property
    def so_pin_state(self) -> E.PinState:
        if not self.initialized:
            return E.PinState.NOT_INITIALIZED
        if self.so_pin_tries == 0:
            return E.PinState.LOCKED
        if self.so_pin_tries == 1:
            return E.PinState.FINAL_TRY
        return E.PinState.OK


def _lines(text: str) -> list[str]:
    """The tool's lines as its terminal showed them (\\r\\n from the pty), without blank ones."""
    return [line for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n") if line.strip()]


def _count(match: re.Match[str]) -> int | None:
    """A %d the tool printed; a negative one is a count the card did not give."""
    value = int(match.group(1))
    return value if value >= 0 else None


def parse_dkek(text: str) -> DkekState | None:
    """The DKEK state in sc-hsm-tool's output (its status, or ``--import-dkek-share``), None when it
    printed none, or when its DKEK query failed (it then prints zeros that mean nothing)."""
    lines = _lines(text)
    if any(_DKEK_QUERY_FAILED.fullmatch(line) for line in lines):
        return None
    shares: int | None = None
    outstanding: int | None = None
    kcv: bytes | None = None
    for line in lines:
        if m := _DKEK_SHARES.fullmatch(line):
            shares = _count(m)
            outstanding, kcv = None, None  # the last report counts (an import prints it after the status)
        elif m := _DKEK_PENDING.fullmatch(line):
            outstanding = _count(m)
        elif m := _DKEK_KCV.fullmatch(line):
            kcv = bytes.fromhex(m.group(1))
            outstanding = 0
    if outstanding is None:
        return None
    return DkekState(shares, outstanding, kcv)


def parse_status(text: str) -> ScHsmStatus:
    """sc-hsm-tool's output with no action.

    Raises:
        NoTokenError, TokenNotRecognizedError, TokenError: the tool reached no SmartCard-HSM.
        TokenError: the output is not a status report.
    """
    _raise_for_lines(_lines(text), "read the SmartCard-HSM's status", _CONNECT_RULES)
    version: str | None = None
    options: list[str] = []
    initialized = True
    so_tries: int | None = None
    user_tries: int | None = None
    transport = pka = False
    warnings: list[str] = []
    unknown: list[str] = []
    in_options = False
    for line in _lines(text):
        if in_options and line.startswith("  "):
            options.append(line.strip())
            continue
        in_options = False
        if m := _VERSION.fullmatch(line):
            version = f"{m.group(1)}.{m.group(2)}"
        elif line == _CONFIG:
            in_options = True
        elif line == _NEVER_INITIALIZED:
            initialized = False
        elif line == _SO_LOCKED:
            so_tries = 0
        elif m := _SO_TRIES.fullmatch(line):
            so_tries = _count(m)
        elif line == _USER_LOCKED:
            user_tries = 0
        elif m := _USER_TRIES.fullmatch(line):
            user_tries = _count(m)
        elif line == _TRANSPORT_ACTIVE:
            transport = True
        elif line == _PKA_ACTIVE:
            pka = True
        elif m := _DKEK_QUERY_FAILED.fullmatch(line):
            warnings.append(f"The token did not say how its DKEK stands: {m.group(1)}.")
        elif _DKEK_SHARES.fullmatch(line) or _DKEK_PENDING.fullmatch(line) or _DKEK_KCV.fullmatch(line):
            pass  # parse_dkek
        else:
            unknown.append(line)
    if version is None:
        shown = " / ".join(_lines(text)[:3]) or "nothing"
        raise E.TokenError(f"sc-hsm-tool's status could not be read: it printed {shown!r}.",
                           operation="read the SmartCard-HSM's status",
                           hint="Check that the token is a SmartCard-HSM or Nitrokey HSM and that OpenSC is 0.23 or "
                                "newer.")
    if unknown:
        log.info("sc-hsm-tool printed lines cert-desk does not know: %s", unknown)
    return ScHsmStatus(
        version=version, config_options=tuple(options), user_pin_reset_with_so_pin=_OPT_RRC.strip() in options,
        transport_pin_mode=_OPT_TRANSPORT.strip() in options, initialized=initialized, so_pin_tries=so_tries,
        user_pin_tries=user_tries, transport_pin_active=transport, public_key_auth_active=pka,
        dkek=parse_dkek(text), warnings=tuple(warnings), unknown_lines=tuple(unknown))


# ------------------------------------------------------------------- errors the tool prints

_Raise = Callable[[re.Match[str], str], E.CertDeskError]

_CONNECT_RULES: tuple[tuple[re.Pattern[str], _Raise], ...] = (
    # util.c util_connect_reader
    (re.compile(r"No smart card readers found\."), lambda m, op: E.NoTokenError(
        "No smart card reader is connected.",
        hint="Plug in the token; if it is plugged in, check that pcscd runs (sudo systemctl start pcscd.socket).")),
    (re.compile(r'Reader "(.*)" not found \((\d+) reader\(s\) detected\)'), lambda m, op: E.NoTokenError(
        f"There is no reader number {m.group(1)}: {m.group(2)} reader(s) are connected.",
        hint="Readers are numbered from 0 in the order 'opensc-tool --list-readers' shows them.")),
    (re.compile(r"Card not present\."), lambda m, op: E.NoTokenError(
        "The reader has no card or token in it.", hint="Insert the SmartCard-HSM or plug in the Nitrokey HSM.")),
    (re.compile(r"Error while waiting for a (?:reader|card): (.*)"), lambda m, op: E.NoTokenError(
        f"No SmartCard-HSM appeared: {m.group(1)}.")),
    (re.compile(r"Failed to connect to card: Card is invalid or cannot be handled"), lambda m, op:
        E.TokenNotRecognizedError(
            "The card in the reader is not a SmartCard-HSM or Nitrokey HSM: OpenSC cannot handle it.", operation=op,
            hint="Pick the reader that holds the SmartCard-HSM.")),
    (re.compile(r"Failed to connect to card: (?!Success$)(.*)"), lambda m, op: E.TokenError(
        f"sc-hsm-tool could not connect to the card: {m.group(1)}.", operation=op)),
    # sc-hsm-tool.c main
    (re.compile(r"Failed to establish context: (.*)"), lambda m, op: E.TokenError(
        f"OpenSC could not start: {m.group(1)}.", operation=op, hint="Check OpenSC's configuration (OPENSC_CONF).")),
    (re.compile(r"Failed to select application: (.*)"), lambda m, op: E.TokenNotRecognizedError(
        f"The card in the reader is not a SmartCard-HSM or Nitrokey HSM: it has no SmartCard-HSM application "
        f"({m.group(1)}).", operation=op, hint="Pick the reader that holds the SmartCard-HSM.")),
    # its last words after any of the above: err is still 0 when it prints them
    (re.compile(r"Failed to connect to card: Success"), lambda m, op: E.NoTokenError(
        "sc-hsm-tool found no SmartCard-HSM to talk to.")),
)

_ACTION_RULES: tuple[tuple[re.Pattern[str], _Raise], ...] = (
    (re.compile(r"\S*: (?:unrecognized option|invalid option|option requires an argument) .*|"
                r"Usage: \S+ \[OPTIONS\].*|Option -\S+ \(--[\w-]+\) (?:requires|excludes) option -\S+"),
     lambda m, op: E.InternalError(f"sc-hsm-tool did not accept its command line: {m.group(0)}")),
    # wrap_key, unwrap_key
    (re.compile(r"PIN verification failed with PIN code or key incorrect"), lambda m, op: E.PinIncorrectError(
        "The user PIN is wrong.", E.PinState.COUNT_LOW, None,
        hint="The token counted the wrong try; its status shows how many are left.")),
    (re.compile(r"PIN verification failed with Authentication method blocked"), lambda m, op: E.PinLockedError(
        "The user PIN is locked.",
        hint="Unblock it with the SO PIN: cert-desk pin unblock, or Unblock PIN… in the Devices pane.")),
    (re.compile(r"PIN verification failed with (.*)"), lambda m, op: E.TokenError(
        f"The token could not check the user PIN: {m.group(1)}.", operation=op)),
    # initialize: the card answers a wrong SO PIN with "not allowed", which card-sc-hsm.c makes this
    (re.compile(r"sc_card_ctl\(\*, SC_CARDCTL_SC_HSM_INITIALIZE, \*\) failed with PIN code or key incorrect"),
     lambda m, op: E.PinIncorrectError(
         "The SO PIN is wrong: an initialised SmartCard-HSM keeps its SO PIN, and initialising it again needs it.",
         E.PinState.COUNT_LOW, None, so=True,
         hint="The token counted a wrong SO PIN try (it allows 15); its status says how many are left.")),
    (re.compile(r"sc_card_ctl\(\*, SC_CARDCTL_SC_HSM_INITIALIZE, \*\) failed with Authentication method blocked"),
     lambda m, op: E.PinLockedError(
         "The SO PIN is locked: this SmartCard-HSM cannot be initialised again.", so=True, hint="")),
    (re.compile(r"SO-PIN must be a hexadecimal string of 16 characters|Error decoding initialization code \(.*\)"),
     lambda m, op: E.PinPolicyError(f"sc-hsm-tool refused the SO PIN: {m.group(0)}.", so=True)),
    (re.compile(r"PIN must (?:be at least 6 characters long|not be longer than 16 characters)"),
     lambda m, op: E.PinPolicyError(f"sc-hsm-tool refused the user PIN: {m.group(0)}.")),
    (re.compile(r"Retry counter must not exceed .*"), lambda m, op: E.InputError(
        f"sc-hsm-tool refused the retry counter: {m.group(0)}")),
    # create / import a DKEK share
    (re.compile(r"Password way to short\. Please retry\."), lambda m, op: E.InputError(
        f"sc-hsm-tool refused the DKEK share password: it needs at least {MIN_SHARE_PASSWORD} characters.")),
    (re.compile(r"Passwords do not match\. Please retry\."), lambda m, op: E.InputError(
        "sc-hsm-tool says the two passwords differ.")),
    (re.compile(r"Error decrypting DKEK share\. Password correct \?"), lambda m, op: E.InputError(
        "The password does not decrypt the DKEK share.",
        "Type the password the share was created with; nothing was imported.")),
    (re.compile(r"File (.*) is not a DKEK share"), lambda m, op: E.InputError(
        f"{m.group(1)} is not a DKEK share file (it does not start with 'Salted__').")),
    (re.compile(r"Not supported by card or card not initialized for key share usage"), lambda m, op: E.TokenError(
        "This SmartCard-HSM takes no DKEK shares: it was initialised without them.", operation=op,
        hint="Initialising it again with DKEK shares erases every key on it.")),
    # wrap / unwrap
    (re.compile(r"Invalid key reference \(must be 0 < keyid <= 255\)"), lambda m, op: E.InputError(
        "sc-hsm-tool refused the key reference: it must be 1 to 255.")),
    (re.compile(r"Card not initialized for key wrap"), lambda m, op: E.TokenError(
        "This SmartCard-HSM has no DKEK for wrapping keys.", operation=op,
        hint="Key wrap needs a token initialised with DKEK shares, all of them imported.")),
    (re.compile(r"Wrapped key does not match DKEK"), lambda m, op: E.InputError(
        "The key was wrapped under another DKEK than this token's.",
        "Unwrap it on a token that holds the same DKEK shares.")),
    (re.compile(r"Invalid wrapped key format \((.*)\)\."), lambda m, op: E.InputError(
        f"The file is not a key wrapped by sc-hsm-tool ({m.group(1).lower()} is wrong).")),
    (re.compile(r"Found existing (private key description|certificate) in EF with fid ([0-9a-f]{2})([0-9a-f]{2})\..*"),
     lambda m, op: E.ConflictError(
         f"Key reference {int(m.group(3), 16)} holds a {m.group(1)} already.",
         "Choose an unused key reference, or replace what is there (force); nothing was changed.")),
    # any other card operation that failed
    (re.compile(r"sc_card_ctl\(\*, SC_CARDCTL_SC_HSM_(\w+), \*\) failed with (.*)"), lambda m, op: E.TokenError(
        f"The token refused to {op}: {m.group(2)}.", operation=op)),
    (re.compile(r"(?:Updating (?:private key description|certificate)|Error generating random number) "
                r"failed with (.*)"), lambda m, op: E.TokenError(f"{m.group(0)}.", operation=op)),
    (re.compile(r"Creating DKEK share failed|Error encrypting DKEK share"), lambda m, op: E.TokenError(
        f"{m.group(0)}.", operation=op)),
)


def _raise_for_lines(lines: Sequence[str], operation: str,
                     rules: Sequence[tuple[re.Pattern[str], _Raise]]) -> None:
    """Raise for the first line (in the order printed) that a rule knows."""
    for line in lines:
        for pattern, make in rules:
            if m := pattern.fullmatch(line):
                raise make(m, operation)


@dataclass(frozen=True)
class ToolRun:
    """One run of sc-hsm-tool.

    Attributes:
        argv: The command line (never a secret in it).
        output: What it printed on its terminal (stdout and stderr, in order); whatever follows a
            secret's prompt on its line (an echo) is masked.
        returncode: Its exit status (0 is no proof of success, see the module's notes).
        unanswered: The prompts it ended without showing.
        asked_again: A prompt it showed again after its answer (it refused the value), if it did.
    """

    argv: tuple[str, ...]
    output: str
    returncode: int
    unanswered: tuple[str, ...] = ()
    asked_again: str | None = None


def check_output(run: ToolRun, operation: str, files: Sequence[str | os.PathLike[str]] = ()) -> None:
    """Raise the error sc-hsm-tool's output shows, in cert-desk's words; return when it shows none.

    Args:
        operation: What was being done, in words ("wrap key 3").
        files: The files on its command line: its ``perror(file)`` lines name them.
    """
    lines = _lines(run.output)
    rules = _CONNECT_RULES + _ACTION_RULES
    names = [os.fspath(f) for f in files]
    for line in lines:
        for pattern, make in rules:
            if m := pattern.fullmatch(line):
                raise make(m, operation)
        for name in names:
            if line.startswith(f"{name}: "):
                raise E.InputError(f"sc-hsm-tool cannot use {name}: {line[len(name) + 2:]}.")
    said = " / ".join(lines[-3:]) or "nothing"
    if run.asked_again is not None:
        raise E.InputError(f"sc-hsm-tool refused a value and asked again ({run.asked_again.strip()!r}); it said "
                           f"{said!r}.")
    if run.unanswered:
        raise E.TokenError(f"sc-hsm-tool stopped before asking {run.unanswered[0].strip()!r}; it said {said!r}.",
                           operation=operation)
    if run.returncode != 0:
        raise E.TokenError(f"sc-hsm-tool failed (exit status {run.returncode}); it said {said!r}.",
                           operation=operation)


# ------------------------------------------------------------------- command lines


def _reader_args(reader: int | None) -> list[str]:
    if reader is None:
        return []
    if reader < 0:
        raise E.InputError(f"There is no reader number {reader}: readers are numbered from 0.")
    return ["--reader", str(reader)]


def status_command(reader: int, *, tool: str = TOOL) -> list[str]:
    """No action: the tool prints the token's status (``print_info``)."""
    return [tool, *_reader_args(reader)]


def initialize_command(reader: int, *, label: str | None, dkek_shares: int | None, pin_retry: int | None,
                       tool: str = TOOL) -> list[str]:
    """``--initialize``; the SO PIN and the user PIN are asked for at its prompts.

    ``dkek_shares`` None: no DKEK (no key wrap); 0: a random DKEK the token keeps to itself.
    ``pin_retry`` None: the tool's default, 3.
    """
    argv = [tool, *_reader_args(reader), "--initialize"]
    if dkek_shares is not None:
        argv += ["--dkek-shares", str(dkek_shares)]
    if pin_retry is not None:
        argv += ["--pin-retry", str(pin_retry)]
    if label is not None:
        argv += ["--label", label]  # never -l: sc-hsm-tool 0.23's getopt string lacks it
    return argv


def create_dkek_share_command(path: str | os.PathLike[str], reader: int | None = None, *,
                              tool: str = TOOL) -> list[str]:
    """``--create-dkek-share``; the password is asked for (twice). It needs a SmartCard-HSM too: the
    share and the salt are the card's random numbers. No reader: the first one with a card."""
    return [tool, *_reader_args(reader), "--create-dkek-share", os.fspath(path)]


def import_dkek_share_command(path: str | os.PathLike[str], reader: int, *, tool: str = TOOL) -> list[str]:
    return [tool, *_reader_args(reader), "--import-dkek-share", os.fspath(path)]


def wrap_key_command(reader: int, key_ref: int, path: str | os.PathLike[str], *, tool: str = TOOL) -> list[str]:
    """``--wrap-key``; the user PIN is asked for. (The tool's ``--force`` only matters to unwrap.)"""
    return [tool, *_reader_args(reader), "--wrap-key", os.fspath(path), "--key-reference", str(key_ref)]


def unwrap_key_command(reader: int, key_ref: int, path: str | os.PathLike[str], force: bool = False, *,
                       tool: str = TOOL) -> list[str]:
    """``--unwrap-key``; ``force`` lets it replace the key, description and certificate at that reference."""
    argv = [tool, *_reader_args(reader), "--unwrap-key", os.fspath(path), "--key-reference", str(key_ref)]
    return [*argv, "--force"] if force else argv


# ------------------------------------------------------------------- running it on a terminal

_SECRET_VARIABLE = re.compile(r"PIN|PASS|SECRET", re.IGNORECASE)
_MASK = "********"


def _tool_path(tool: str) -> str:
    path = tool if os.sep in tool else shutil.which(tool)
    if path is None or not os.access(path, os.X_OK) or os.path.isdir(path):
        raise E.InputError(f"The program {tool!r} is not installed.", _INSTALL_HINT)
    return path


def _child_env() -> dict[str, str]:
    """This process's environment without variables that may hold a PIN, and with untranslated messages
    (perror's words are matched)."""
    env = {k: v for k, v in os.environ.items() if not _SECRET_VARIABLE.search(k)}
    env["LC_ALL"] = "C"
    return env


def _scrub(data: bytes, prompts: Sequence[str]) -> str:
    """The output as text (\r\n as \n), with anything after a secret's prompt on its line masked: where a
    terminal that echoes would show what was typed. sc-hsm-tool never prints a secret itself, and
    masking every occurrence of a secret's value would also mask the tool's own words whenever a
    secret is one of them ("imported", "password")."""
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    for prompt in dict.fromkeys(prompts):
        text = re.sub(re.escape(prompt) + r"[^\n]+", prompt.replace("\\", "\\\\") + _MASK, text)
    return text


class _Terminal:
    """The tool on the slave side of a pseudo-terminal; cert-desk reads and types on the master."""

    def __init__(self, executable: str, argv: Sequence[str], timeout: float) -> None:
        self.timeout = timeout
        self.buffer = bytearray()
        self.eof = False
        master, slave = os.openpty()
        try:
            # its own session: a terminal signal (none is ever typed) could not reach cert-desk
            self.proc = subprocess.Popen(argv, executable=executable, stdin=slave, stdout=slave, stderr=slave,
                                         env=_child_env(), start_new_session=True, close_fds=True)
        except OSError as err:
            os.close(master)
            raise E.InputError(f"{argv[0]} could not be started: {err.strerror or err}.", _INSTALL_HINT) from err
        finally:
            os.close(slave)
        self.master = master

    def _read(self, wait: float) -> None:
        """Whatever arrives within ``wait`` seconds; EOF when every slave descriptor is closed (EIO)."""
        ready, _, _ = select.select([self.master], [], [], max(wait, 0.0))
        if not ready:
            return
        try:
            chunk = os.read(self.master, 4096)
        except OSError:
            chunk = b""
        if chunk:
            self.buffer += chunk
        else:
            self.eof = True

    def _echo_off(self) -> bool:
        """The slave's ECHO flag (tcgetattr on the master reports the slave's termios on Linux)."""
        try:
            return not termios.tcgetattr(self.master)[3] & termios.ECHO
        except termios.error:
            return False

    def _again(self, start: int, answered: Sequence[bytes]) -> bytes | None:
        return next((prompt for prompt in answered if self.buffer.find(prompt, start) >= 0), None)

    def _timed_out(self, what: str) -> E.TokenBusyError:
        return E.TokenBusyError(
            f"sc-hsm-tool did not {what} within {self.timeout:g} s.", operation=what,
            hint="The token or its reader does not answer: unplug it, plug it in again and retry.")

    def wait_for_prompt(self, prompt: bytes, start: int, answered: Sequence[bytes],
                        what: str) -> tuple[int | None, bytes | None]:
        """The position after ``prompt`` once it is shown and echo is off. (None, None) when the tool
        ended first; (None, p) when it showed an answered prompt p again (it refused that value and now
        waits for another)."""
        deadline = time.monotonic() + self.timeout
        while True:
            at = self.buffer.find(prompt, start)
            if at >= 0 and self._echo_off():
                return at + len(prompt), None
            again = self._again(start, answered)
            if again is not None or self.eof:
                return None, again
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._timed_out(what)
            self._read(min(left, 0.01 if at >= 0 else 0.2))

    def type_line(self, secret: Secret) -> None:
        os.write(self.master, secret.reveal().encode("ascii") + b"\n")

    def drain(self, start: int, answered: Sequence[bytes], what: str) -> bytes | None:
        """Read to the end; an answered prompt shown again after ``start`` is returned at once."""
        deadline = time.monotonic() + self.timeout
        while not self.eof:
            again = self._again(start, answered)
            if again is not None:
                return again
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._timed_out(what)
            self._read(min(left, 0.2))
        return self._again(start, answered)

    def close(self) -> int:
        """Its exit status; it is killed if it is still running."""
        try:
            return self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            os.close(self.master)


def run_tool(argv: Sequence[str], answers: Sequence[tuple[str, Secret]] = (), *, timeout: float = TIMEOUT,
             what: str = "finish") -> ToolRun:
    """Run sc-hsm-tool on a pseudo-terminal, answering each prompt in turn with its secret.

    Each secret is typed (followed by a newline) only once its exact prompt is shown and the tool has
    turned echo off. ``timeout`` applies to every step.

    Raises:
        InputError: the tool is not installed.
        TokenBusyError: it showed no prompt, or did not end, in time (it is killed).
        InternalError: a secret would be on its command line.
    """
    if any(secret and secret.reveal() in argv[1:] for _, secret in answers):
        raise E.InternalError("A secret was about to go on sc-hsm-tool's command line; nothing was run.")
    executable = _tool_path(argv[0])
    log.info("running %s", " ".join(argv))
    term = _Terminal(executable, argv, timeout)
    position = 0
    answered: list[bytes] = []
    unanswered: list[str] = []
    asked_again: bytes | None = None
    try:
        for i, (prompt, secret) in enumerate(answers):
            after, asked_again = term.wait_for_prompt(prompt.encode(), position, answered,
                                                      f"ask {prompt.strip()!r}")
            if after is None:
                unanswered = [p for p, _ in answers[i:]]
                break
            term.type_line(secret)
            answered.append(prompt.encode())
            position = after
        if asked_again is None:
            asked_again = term.drain(position, answered, what)
        if asked_again is not None:
            term.proc.kill()  # it waits for a value it will refuse again
    except BaseException:
        term.proc.kill()
        raise
    finally:
        returncode = term.close()
    output = _scrub(bytes(term.buffer), [prompt for prompt, _ in answers])
    log.debug("sc-hsm-tool exited with %s", returncode)
    return ToolRun(tuple(argv), output, returncode, tuple(unanswered),
                   asked_again.decode() if asked_again is not None else None)


# ------------------------------------------------------------------- what cert-desk does with it


def dkek_state(reader: int, *, tool: str = TOOL, timeout: float = TIMEOUT) -> ScHsmStatus:
    """The token's status as sc-hsm-tool reports it: version, PIN tries, DKEK shares and check value."""
    run = run_tool(status_command(reader, tool=tool), timeout=timeout, what="report the token's status")
    return parse_status(run.output)


def _refuse_pin(status: ScHsmStatus, *, so: bool, allow_final_try: bool) -> None:
    """Never type a PIN the token will not take: locked, still the transport PIN, or its last try
    without the user's say-so."""
    state = status.so_pin_state if so else status.user_pin_state
    who = "SO PIN" if so else "user PIN"
    if state is E.PinState.LOCKED:
        if so:
            raise E.PinLockedError("The SO PIN is locked: this SmartCard-HSM cannot be initialised again.", so=True,
                                   hint="")
        raise E.PinLockedError("The user PIN is locked; it was not tried.")
    if state is E.PinState.TO_BE_CHANGED and not so:
        raise E.PinExpiredError("The user PIN is still the transport PIN; it must be changed first.")
    if state is E.PinState.FINAL_TRY and not allow_final_try:
        raise E.PinFinalTryError(f"The {who} has one try left: a wrong one locks it.", so=so)


def _ready_for_keys(status: ScHsmStatus, operation: str, allow_final_try: bool) -> None:
    if not status.initialized:
        raise E.TokenNotInitializedError("This SmartCard-HSM was never initialised.",
                                         hint="Initialise it first (sc-hsm-tool --initialize).")
    if status.dkek is not None and status.dkek.outstanding > 0:
        raise E.TokenError(f"This SmartCard-HSM waits for {status.dkek.outstanding} more DKEK share(s); until "
                           "they are imported no key can be wrapped or unwrapped.", operation=operation,
                           hint="Import the remaining DKEK shares first.")
    _refuse_pin(status, so=False, allow_final_try=allow_final_try)


def _check_new_file(path: Path, what: str) -> None:
    if path.exists() or path.is_symlink():
        raise E.ConflictError(f"{path} exists already; a {what} is never written over another file.",
                              "Choose a new file name.")
    if not path.parent.is_dir():
        raise E.InputError(f"The folder {path.parent} does not exist.", "Create it first, or choose another one.")


def _check_existing_file(path: Path, what: str, *, lo: int, hi: int, starts: bytes) -> None:
    try:
        with path.open("rb") as f:
            head = f.read(hi + 1)
    except FileNotFoundError:
        raise E.InputError(f"{path} does not exist.", f"Choose the {what} file.") from None
    except IsADirectoryError:
        raise E.InputError(f"{path} is a folder, not a {what} file.") from None
    except OSError as err:
        raise E.InputError(f"{path} cannot be read: {err.strerror or err}.") from err
    if not lo <= len(head) <= hi or not head.startswith(starts):
        raise E.InputError(f"{path} is not a {what} file ({len(head)} bytes"
                           f"{', starting differently' if not head.startswith(starts) else ''}).",
                           f"Choose a file sc-hsm-tool wrote as a {what}.")


def _existing_user_pin(pin: Secret) -> None:
    """A PIN the token may hold: sc-hsm-tool takes up to 16 characters, printable ASCII through the terminal."""
    _check_typable(pin, "user PIN", lo=MIN_USER_PIN, hi=MAX_TOOL_USER_PIN, so=False)


def initialize(reader: int, *, so_pin: Secret, user_pin: Secret, label: str | None, dkek_shares: int | None,
               pin_retry: int | None = None, allow_final_try: bool = False, tool: str = TOOL,
               timeout: float = TIMEOUT) -> str:
    """Initialise the SmartCard-HSM in reader ``reader``: everything on it is erased.

    A token initialised before keeps its SO PIN: ``so_pin`` must be that one. A locked SO PIN is never
    tried, nor its last try without ``allow_final_try``. Returns what the tool printed.
    """
    check_so_pin(so_pin)
    check_user_pin(user_pin)
    check_pin_retry(pin_retry, len(user_pin))
    check_dkek_shares(dkek_shares)
    argv = initialize_command(reader, label=check_label(label), dkek_shares=dkek_shares, pin_retry=pin_retry,
                              tool=tool)
    before = dkek_state(reader, tool=tool, timeout=timeout)
    if before.initialized:
        _refuse_pin(before, so=True, allow_final_try=allow_final_try)
    operation = "initialise the SmartCard-HSM"
    run = run_tool(argv, [(PROMPT_SO_PIN, so_pin), (PROMPT_INITIAL_USER_PIN, user_pin)], timeout=timeout,
                   what="initialise the token")
    check_output(run, operation)
    log.info("initialised the SmartCard-HSM in reader %s", reader)
    return run.output


def create_dkek_share(path: Path, password: Secret, *, reader: int | None = None, tool: str = TOOL,
                      timeout: float = TIMEOUT) -> str:
    """A new DKEK share in ``path`` (refused if the file exists), enciphered under ``password``; the file
    is made readable by its owner only. Returns what the tool printed."""
    check_share_password(password)
    path = Path(path)
    _check_new_file(path, "DKEK share")
    run = run_tool(create_dkek_share_command(path, reader, tool=tool),
                   [(PROMPT_NEW_SHARE_PASSWORD, password), (PROMPT_CONFIRM_SHARE_PASSWORD, password)],
                   timeout=timeout, what="write the DKEK share")
    check_output(run, "create a DKEK share", [path])
    try:
        data = path.read_bytes()
        path.chmod(0o600)
    except OSError as err:
        raise E.TokenError(f"sc-hsm-tool wrote no DKEK share to {path}: {err.strerror or err}.",
                           operation="create a DKEK share") from err
    if len(data) != DKEK_SHARE_SIZE or not data.startswith(DKEK_SHARE_MAGIC):
        raise E.TokenError(f"{path} is not the {DKEK_SHARE_SIZE}-byte DKEK share sc-hsm-tool writes.",
                           operation="create a DKEK share")
    return run.output


def import_dkek_share(reader: int, path: Path, password: Secret, *, tool: str = TOOL,
                      timeout: float = TIMEOUT) -> DkekState:
    """Import one DKEK share into the token; returns the DKEK's state afterwards (shares outstanding,
    or the key check value once all are in).

    A wrong password is refused by the padding check, but about one in 256 wrong passwords passes it and
    imports a wrong share: compare the final key check value with the one written down at creation.
    """
    _check_typable(password, "DKEK share password", lo=1, hi=MAX_TYPED, so=None)
    path = Path(path)
    _check_existing_file(path, "DKEK share", lo=DKEK_SHARE_SIZE, hi=DKEK_SHARE_SIZE, starts=DKEK_SHARE_MAGIC)
    operation = "import a DKEK share"
    run = run_tool(import_dkek_share_command(path, reader, tool=tool), [(PROMPT_SHARE_PASSWORD, password)],
                   timeout=timeout, what="import the DKEK share")
    check_output(run, operation, [path])
    imported = run.output.split(_SHARE_IMPORTED, 1)
    state = parse_dkek(imported[1]) if len(imported) == 2 else None
    if state is None:
        raise E.TokenError("sc-hsm-tool did not report the share as imported.", operation=operation)
    return state


def wrap_key(reader: int, key_ref: int, path: Path, user_pin: Secret, *, allow_final_try: bool = False,
             tool: str = TOOL, timeout: float = TIMEOUT) -> str:
    """Wrap key ``key_ref`` under the DKEK, with its description and certificate, into ``path`` (refused
    if the file exists). Returns what the tool printed."""
    check_key_reference(key_ref)
    _existing_user_pin(user_pin)
    path = Path(path)
    _check_new_file(path, "wrapped key")
    operation = f"wrap key {key_ref}"
    _ready_for_keys(dkek_state(reader, tool=tool, timeout=timeout), operation, allow_final_try)
    run = run_tool(wrap_key_command(reader, key_ref, path, tool=tool), [(PROMPT_USER_PIN, user_pin)],
                   timeout=timeout, what="wrap the key")
    check_output(run, operation, [path])
    if not path.is_file() or path.stat().st_size == 0:
        raise E.TokenError(f"sc-hsm-tool wrote no wrapped key to {path}.", operation=operation)
    return run.output


def unwrap_key(reader: int, key_ref: int, path: Path, user_pin: Secret, force: bool = False, *,
               allow_final_try: bool = False, tool: str = TOOL, timeout: float = TIMEOUT) -> str:
    """Unwrap the key in ``path`` into key reference ``key_ref``; ``force`` replaces what is there.
    Returns what the tool printed."""
    check_key_reference(key_ref)
    _existing_user_pin(user_pin)
    path = Path(path)
    _check_existing_file(path, "wrapped key", lo=2, hi=MAX_WRAPPED_KEY, starts=b"\x30")
    operation = f"unwrap a key into key reference {key_ref}"
    _ready_for_keys(dkek_state(reader, tool=tool, timeout=timeout), operation, allow_final_try)
    run = run_tool(unwrap_key_command(reader, key_ref, path, force, tool=tool), [(PROMPT_USER_PIN, user_pin)],
                   timeout=timeout, what="unwrap the key")
    check_output(run, operation, [path])
    if _KEY_IMPORTED not in _lines(run.output):
        raise E.TokenError("sc-hsm-tool did not report the key as imported.", operation=operation)
    return run.output
