"""cert_desk.pkcs11.schsm: SmartCard-HSM rules and sc-hsm-tool, checked against the real tool.

No SmartCard-HSM (and no emulator of one) exists on the test machines, so:

- every prompt and output format cert-desk relies on is checked to be in the real
  ``/usr/bin/sc-hsm-tool`` (OpenSC 0.23), the ATRs in ``libopensc.so.8``, the token's manufacturer
  and model in OpenSC's libraries;
- every command line cert-desk builds is given to the real tool, which must take it (it then finds
  no reader);
- the pseudo-terminal driver runs the real tool to its real "no reader", "no such reader", "no card",
  "unknown card" and "not a SmartCard-HSM" answers (the tests' pcscd with vsmartcard's and
  jcecard's virtual cards), and runs tests/data/sc-hsm-tool/fake-sc-hsm-tool, a STAND-IN that shows
  the real prompts and reads them as the real tool does (echo off with TCSAFLUSH), to prove each
  secret reaches its own prompt and never a command line, an environment or the output;
- the recorded and reconstructed transcripts in tests/data/sc-hsm-tool parse to the right values.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cert_desk import errors as E
from cert_desk.models import TokenInfo
from cert_desk.pkcs11 import schsm
from cert_desk.secrets import Secret
from tests.conftest import require, require_tool, wait_for
from tests.pcsc_bed import PcscBed

DATA = Path(__file__).resolve().parent / "data" / "sc-hsm-tool"
STAND_IN = DATA / "fake-sc-hsm-tool"
LIBOPENSC = Path("/usr/lib/x86_64-linux-gnu/libopensc.so.8")
OPENSC_PKCS11 = Path("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so")

SO_PIN = "3537363231383830"
USER_PIN = "648219"
NEW_USER_PIN = "Xy7-pin-215"
SHARE_PASSWORD = "correct horse battery"
SECRETS = (SO_PIN, USER_PIN, NEW_USER_PIN, SHARE_PASSWORD)
KCV = bytes.fromhex("2B3F81C4A5D60E97")


def transcript(name: str) -> tuple[str, dict[str, str]]:
    """A transcript's body and its header fields ('# key: value')."""
    lines = (DATA / name).read_text(encoding="utf-8").split("\n")
    header: dict[str, str] = {}
    while lines and lines[0].startswith("#"):
        key, _, value = lines.pop(0)[2:].partition(": ")
        header[key] = value
    return "\n".join(lines), header


def run_of(name: str) -> schsm.ToolRun:
    body, header = transcript(name)
    code = int(header["exit"]) if header["exit"].isdigit() else -9
    return schsm.ToolRun(("sc-hsm-tool",), body, code)


@pytest.fixture
def no_pcscd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real tool finds no reader: PC/SC's socket names nothing."""
    monkeypatch.setenv("PCSCLITE_CSOCK_NAME", str(tmp_path / "no-pcscd.comm"))


@pytest.fixture
def real_tool() -> str:
    return require_tool("sc-hsm-tool")


# ------------------------------------------------------------------- the real tool's own strings


def test_prompts_and_formats_are_the_real_tools(real_tool: str) -> None:
    binary = Path(real_tool).read_bytes()
    prompts = (schsm.PROMPT_SO_PIN, schsm.PROMPT_INITIAL_USER_PIN, schsm.PROMPT_USER_PIN,
               schsm.PROMPT_NEW_SHARE_PASSWORD, schsm.PROMPT_CONFIRM_SHARE_PASSWORD, schsm.PROMPT_SHARE_PASSWORD)
    formats = (
        # print_info / print_dkek_info, as the parser's patterns spell them
        "Version              : %d.%d\n", "Config options       :\n", "  User PIN reset with SO-PIN enabled\n",
        "  Transport-PIN mode enabled\n", "SO-PIN locked\n", "SO-PIN tries left    : %d\n", "User PIN locked\n",
        "User PIN tries left  : %d\n", "Public key authentication active.\n",
        "Transport-PIN active. Please change to user selected PIN first.\n",
        "SmartCard-HSM has never been initialized. Please use --initialize to set SO-PIN and user PIN.\n",
        "DKEK shares          : %d\n", "DKEK import pending, %d share(s) still missing\n", "DKEK key check value : ",
        "sc_card_ctl(*, SC_CARDCTL_SC_HSM_IMPORT_DKEK_SHARE, *) failed with %s\n",
        # the errors check_output knows
        "No smart card readers found.\n", "Reader \"%s\" not found (%d reader(s) detected)\n", "Card not present.\n",
        "Failed to connect to card: %s\n", "Failed to select application: %s\n", "PIN verification failed with %s\n",
        "sc_card_ctl(*, SC_CARDCTL_SC_HSM_INITIALIZE, *) failed with %s\n",
        "SO-PIN must be a hexadecimal string of 16 characters\n", "PIN must not be longer than 16 characters\n",
        "Password way to short. Please retry.\n", "Passwords do not match. Please retry.\n",
        "Error decrypting DKEK share. Password correct ?\n", "File %s is not a DKEK share\n",
        "Not supported by card or card not initialized for key share usage\n", "DKEK share imported\n",
        "Card not initialized for key wrap\n", "Wrapped key does not match DKEK\n",
        "Invalid wrapped key format (Outer sequence).\n", "Key successfully imported\n",
        "Found existing private key description in EF with fid %02x%02x. Please remove key first, select unused key "
        "reference or use --force.\n",
        "Invalid key reference (must be 0 < keyid <= 255)\n", "DKEK share created and saved to %s\n",
    )
    for text in (*prompts, *formats):
        # GCC makes printf("text\n") puts("text"): such a string is stored without its newline
        stored = (text.encode() + b"\0", text.removesuffix("\n").encode() + b"\0")
        assert any(s in binary for s in stored), f"{text!r} is not in {real_tool}"
    # -l is in the help but not in the getopt string: cert-desk uses --label
    assert b"XC:I:P:W:U:K:n:e:g:Ss:i:fr:wv\0" in binary


def test_atrs_manufacturer_and_model_are_opensc_s() -> None:
    require(LIBOPENSC.exists() and OPENSC_PKCS11.exists(), "OpenSC's libopensc.so.8 and opensc-pkcs11.so")
    lib = LIBOPENSC.read_bytes()
    for atr in schsm._ATRS:
        assert ":".join(f"{b:02X}" for b in atr).encode() + b"\0" in lib
    assert schsm.MANUFACTURER.encode() + b"\0" in lib
    assert schsm.EMULATED_MODEL.encode() + b"\0" in OPENSC_PKCS11.read_bytes()


# ------------------------------------------------------------------- parsing


def test_status_of_an_initialised_token() -> None:
    status = schsm.parse_status(transcript("status-initialized.txt")[0])
    assert status.version == "3.5"
    assert status.config_options == ("User PIN reset with SO-PIN enabled",)
    assert status.user_pin_reset_with_so_pin and not status.transport_pin_mode
    assert status.initialized
    assert (status.so_pin_tries, status.user_pin_tries) == (15, 3)
    assert status.user_pin_state is E.PinState.OK and status.so_pin_state is E.PinState.OK
    assert status.dkek == schsm.DkekState(1, 0, KCV)
    assert status.dkek.complete and not status.dkek.all_zero_kcv
    assert status.warnings == () and status.unknown_lines == ()


def test_all_zero_kcv_is_flagged() -> None:
    dkek = schsm.parse_status(transcript("status-zero-kcv.txt")[0]).dkek
    assert dkek == schsm.DkekState(0, 0, bytes(8))
    assert dkek.all_zero_kcv


def test_import_pending() -> None:
    dkek = schsm.parse_status(transcript("status-import-pending.txt")[0]).dkek
    assert dkek == schsm.DkekState(3, 2, None)
    assert not dkek.complete and not dkek.all_zero_kcv


@pytest.mark.parametrize(("name", "expected"), [
    ("status-never-initialized.txt", {"initialized": False, "so_pin_tries": None, "user_pin_tries": None, "dkek": None,
                                          "user_pin_state": E.PinState.NOT_INITIALIZED}),
    ("status-user-pin-locked.txt", {"so_pin_tries": 14, "user_pin_tries": 0, "user_pin_locked": True,
                                        "user_pin_state": E.PinState.LOCKED, "dkek": schsm.DkekState(1, 0, KCV)}),
    ("status-so-pin-locked.txt", {"so_pin_locked": True, "so_pin_state": E.PinState.LOCKED, "user_pin_tries": 1,
                                      "user_pin_state": E.PinState.FINAL_TRY, "dkek": None}),
    ("status-transport-pin.txt", {"transport_pin_mode": True, "transport_pin_active": True, "user_pin_tries": None,
                                      "user_pin_state": E.PinState.TO_BE_CHANGED,
                                      "config_options": ("User PIN reset with SO-PIN enabled",
                                                      "Transport-PIN mode enabled")}),
    ("status-public-key-auth.txt", {"public_key_auth_active": True, "so_pin_tries": 15, "user_pin_tries": None}),
    ("status-v1.txt", {"version": "1.2", "config_options": (), "so_pin_tries": None, "user_pin_tries": 2,
                       "dkek": None}),
])
def test_status_variants(name: str, expected: dict[str, Any]) -> None:
    status = schsm.parse_status(transcript(name)[0])
    for field, value in expected.items():
        assert getattr(status, field) == value, field


def test_a_failed_dkek_query_is_not_read_as_a_zero_kcv() -> None:
    status = schsm.parse_status(transcript("status-dkek-query-failed.txt")[0])
    assert status.dkek is None
    assert status.warnings == ("The token did not say how its DKEK stands: Card command failed.",)
    assert status.user_pin_tries == 3


def test_unknown_lines_are_kept() -> None:
    status = schsm.parse_status(transcript("status-unknown-line.txt")[0])
    assert status.unknown_lines == ("Key domains          : 2",)
    assert status.dkek == schsm.DkekState(1, 0, KCV)


def test_status_as_a_terminal_shows_it() -> None:
    """The pty turns \\n into \\r\\n; run_tool gives \\n back, parse_status takes either."""
    text = transcript("status-initialized.txt")[0]
    assert schsm.parse_status(text.replace("\n", "\r\n")) == schsm.parse_status(text)


@pytest.mark.parametrize(("name", "error"), [
    ("no-reader.txt", E.NoTokenError), ("reader-not-found.txt", E.NoTokenError),
    ("card-not-present.txt", E.NoTokenError), ("card-not-recognised.txt", E.TokenNotRecognizedError),
    ("not-a-smartcard-hsm.txt", E.TokenNotRecognizedError),
])
def test_recorded_connection_failures(name: str, error: type[E.CertDeskError]) -> None:
    with pytest.raises(error):
        schsm.parse_status(transcript(name)[0])
    with pytest.raises(error):
        schsm.check_output(run_of(name), "test")


def test_reader_not_found_says_which() -> None:
    with pytest.raises(E.NoTokenError, match=r"no reader number 7: 2 reader\(s\)"):
        schsm.parse_status(transcript("reader-not-found.txt")[0])


@pytest.mark.parametrize("text", ["", "\n\n", "garbage\x00\xff", "Version : three", "User PIN tries left  : 3\n",
                                  "DKEK shares          : 1\nDKEK key check value : 12"])
def test_garbage_is_a_cert_desk_error(text: str) -> None:
    with pytest.raises(E.TokenError, match="status could not be read"):
        schsm.parse_status(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=40), st.sampled_from([
    "Version              : 3.5", "DKEK shares          : 2", "DKEK import pending, 1 share(s) still missing",
    "DKEK key check value : 0000000000000000", "User PIN tries left  : -1", "SO-PIN locked", "Config options       :",
    "  anything", "Failed to connect to card: Success"])), max_size=12))
def test_any_output_parses_or_raises_a_cert_desk_error(lines: list[str]) -> None:
    try:
        status = schsm.parse_status("\n".join(lines))
    except E.CertDeskError:
        return
    assert status.version


@pytest.mark.parametrize(("name", "error"), [
    ("session-initialize-wrong-so-pin.txt", E.PinIncorrectError),
    ("session-initialize-so-pin-blocked.txt", E.PinLockedError),
    ("session-create-dkek-share-short-password.txt", E.InputError),
    ("session-import-dkek-share-wrong-password.txt", E.InputError),
    ("session-import-dkek-share-not-a-share.txt", E.InputError),
    ("session-import-dkek-share-no-dkek.txt", E.TokenError),
    ("session-wrap-key-wrong-pin.txt", E.PinIncorrectError),
    ("session-wrap-key-pin-blocked.txt", E.PinLockedError),
    ("session-wrap-key-no-dkek.txt", E.TokenError),
    ("session-unwrap-key-existing.txt", E.ConflictError),
    ("session-unwrap-key-other-dkek.txt", E.InputError),
    ("session-unwrap-key-bad-format.txt", E.InputError),
    ("usage-invalid-option.txt", E.InternalError),
])
def test_error_sessions(name: str, error: type[E.CertDeskError]) -> None:
    with pytest.raises(error) as caught:
        schsm.check_output(run_of(name), "test")
    if name.startswith("session-initialize"):
        assert isinstance(caught.value, E.PinError) and caught.value.so


def test_a_wrong_so_pin_is_an_error_though_the_tool_exits_0() -> None:
    run = run_of("session-initialize-wrong-so-pin.txt")
    assert run.returncode == 0
    with pytest.raises(E.PinIncorrectError, match="SO PIN is wrong"):
        schsm.check_output(run, "initialise")


def test_existing_key_names_the_reference() -> None:
    with pytest.raises(E.ConflictError, match="Key reference 10 holds a private key description"):
        schsm.check_output(run_of("session-unwrap-key-existing.txt"), "unwrap")


@pytest.mark.parametrize("name", ["session-initialize.txt", "session-create-dkek-share.txt",
                                  "session-import-dkek-share-pending.txt", "session-import-dkek-share-complete.txt",
                                  "session-wrap-key.txt", "session-unwrap-key.txt"])
def test_successful_sessions_raise_nothing(name: str) -> None:
    schsm.check_output(run_of(name), "test")


def test_dkek_after_an_import() -> None:
    pending = schsm.parse_dkek(transcript("session-import-dkek-share-pending.txt")[0])
    complete = schsm.parse_dkek(transcript("session-import-dkek-share-complete.txt")[0])
    assert pending == schsm.DkekState(2, 1, None)
    assert complete == schsm.DkekState(2, 0, KCV) and complete.complete


# ------------------------------------------------------------------- device rules


def _info(label: str, manufacturer: str, model: str) -> TokenInfo:
    return TokenInfo(label=label, manufacturer=manufacturer, model=model, serial="DENK0100000", flags=0,
                     flag_words=(), max_sessions=None, sessions=None, max_rw_sessions=None, rw_sessions=None,
                     min_pin_len=6, max_pin_len=15, total_public_memory=None, free_public_memory=None,
                     total_private_memory=None, free_private_memory=None, hardware_version="24.13",
                     firmware_version="3.5", utc_time=None, user_pin=E.PinState.OK, so_pin=E.PinState.OK,
                     initialized=True, login_required=True, protected_authentication_path=False,
                     write_protected=False)


def test_smartcard_hsm_by_token_info() -> None:
    # as OpenSC 0.23's PKCS#11 module reports a SmartCard-HSM (label: the PKCS#15 label and the PIN's)
    assert schsm.is_smartcard_hsm(_info("SmartCard-HSM (UserPIN)", "www.CardContact.de", "PKCS#15 emulated"), None)
    assert schsm.is_smartcard_hsm(_info("mytoken (UserPIN)", "www.CardContact.de", "PKCS#15 emulated"), None)
    assert schsm.is_smartcard_hsm(_info("SmartCard-HSM (UserPIN)", "", "PKCS#15 emulated"), None)
    assert not schsm.is_smartcard_hsm(_info("GoID (UserPIN)", "Bundesdruckerei GmbH", "PKCS#15 emulated"), None)
    assert not schsm.is_smartcard_hsm(_info("OpenPGP card (User PIN)", "OpenPGP project", "PKCS#15 emulated"),
                                      None)
    assert not schsm.is_smartcard_hsm(None, None)


def test_a_real_softhsm2_token_is_not_one(service: Any, softhsm: Any, token: str) -> None:
    reports = service.slots(softhsm.module, with_mechanisms=False).result(timeout=20)
    info = next(r.token for r in reports if r.token is not None and r.token.label == token)
    assert info.manufacturer.startswith("SoftHSM")
    assert not schsm.is_smartcard_hsm(info, None)


@pytest.mark.parametrize("atr", [
    "3B:FE:18:00:00:81:31:FE:45:80:31:81:54:48:53:4D:31:73:80:21:40:81:07:FA",
    "3B:8E:80:01:80:31:81:54:48:53:4D:31:73:80:21:40:81:07:18",
    "3B:DE:18:FF:81:91:FE:1F:C3:80:31:81:54:48:53:4D:31:73:80:21:40:81:07:1C",
    "3B:DE:96:FF:81:91:FE:1F:C3:80:31:81:54:48:53:4D:31:73:80:21:40:81:07:92",
])
def test_smartcard_hsm_atrs(atr: str) -> None:
    raw = bytes.fromhex(atr.replace(":", ""))
    assert schsm.is_smartcard_hsm(None, raw)
    assert not schsm.is_smartcard_hsm(None, raw[:-1])
    assert not schsm.is_smartcard_hsm(None, raw + b"\x00")


@pytest.mark.parametrize("atr", ["3B88800100730000E00590000F",  # jcecard's OpenPGP card
                                 "3B951381018073FF01000B",  # vsmartcard's ISO 7816 card
                                 "3B80800101",  # the SoC sample card: OpenSC itself must select the applet
                                 "3B8480014776494400"])  # a GoID
def test_other_atrs(atr: str) -> None:
    assert not schsm.is_smartcard_hsm(None, bytes.fromhex(atr))


# ------------------------------------------------------------------- input rules


@pytest.mark.parametrize(("pin", "words"), [("12345", "too short: 5"), ("1234567890123456", "too long: 16"),
                                            ("12345\x15678", "printable ASCII"), ("pïn-123456", "printable ASCII")])
def test_user_pin_rules(pin: str, words: str) -> None:
    with pytest.raises(E.PinPolicyError, match=words) as caught:
        schsm.check_user_pin(Secret(pin))
    assert pin not in str(caught.value) and not caught.value.so


def test_user_pin_limits_pass() -> None:
    for pin in ("123456", "a-b c!d~e:123", "123456789012345"):
        schsm.check_user_pin(Secret(pin))


@pytest.mark.parametrize(("pin", "words"), [("353736323138383", "15 digits"), ("35373632313838300", "17 digits"),
                                            ("353736323138383g", "not hexadecimal"), ("", "0 digits")])
def test_so_pin_rules(pin: str, words: str) -> None:
    with pytest.raises(E.PinPolicyError, match=words) as caught:
        schsm.check_so_pin(Secret(pin))
    assert caught.value.so
    assert not pin or pin not in str(caught.value)


def test_so_pin_any_case() -> None:
    schsm.check_so_pin(Secret("3537363231383830"))
    schsm.check_so_pin(Secret("abcdefABCDEF0123"))


def test_share_password_rules() -> None:
    for bad in ("abcde", "x" * 128, "tab\tinside"):
        with pytest.raises(E.InputError) as caught:
            schsm.check_share_password(Secret(bad))
        assert bad not in str(caught.value)
    schsm.check_share_password(Secret("x" * 127))
    schsm.check_share_password(Secret("six ch"))


def test_other_rules() -> None:
    for bad in (0, 256, -1):
        with pytest.raises(E.InputError, match="1 to 255"):
            schsm.check_key_reference(bad)
    for bad_shares in (-1, 128):
        with pytest.raises(E.InputError):
            schsm.check_dkek_shares(bad_shares)
    schsm.check_dkek_shares(0)
    schsm.check_dkek_shares(None)
    with pytest.raises(E.InputError, match="at most 3"):
        schsm.check_pin_retry(4, 6)
    with pytest.raises(E.InputError, match="at most 5"):
        schsm.check_pin_retry(6, 7)
    with pytest.raises(E.InputError):
        schsm.check_pin_retry(11, 12)
    schsm.check_pin_retry(10, 8)
    with pytest.raises(E.InputError, match="32 bytes"):
        schsm.check_label("x" * 33)
    assert schsm.check_label(" mytoken ") == "mytoken"


def test_inputs_are_checked_before_anything_runs(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-tool")
    with pytest.raises(E.PinPolicyError):
        schsm.initialize(0, so_pin=Secret("12345678"), user_pin=Secret(USER_PIN), label=None, dkek_shares=1,
                         tool=missing)
    with pytest.raises(E.InputError, match="at most 3 tries"):
        schsm.initialize(0, so_pin=Secret(SO_PIN), user_pin=Secret(USER_PIN), label=None, dkek_shares=1,
                         pin_retry=5, tool=missing)
    with pytest.raises(E.InputError, match="1 to 255"):
        schsm.wrap_key(0, 0, tmp_path / "k.wky", Secret(USER_PIN), tool=missing)
    (tmp_path / "exists.pbe").write_bytes(b"x")
    with pytest.raises(E.ConflictError, match="exists already"):
        schsm.create_dkek_share(tmp_path / "exists.pbe", Secret(SHARE_PASSWORD), tool=missing)
    with pytest.raises(E.InputError, match="not a DKEK share file"):
        schsm.import_dkek_share(0, tmp_path / "exists.pbe", Secret(SHARE_PASSWORD), tool=missing)
    with pytest.raises(E.InputError, match="does not exist"):
        schsm.unwrap_key(0, 1, tmp_path / "none.wky", Secret(USER_PIN), tool=missing)
    with pytest.raises(E.InputError, match="not installed") as caught:
        schsm.dkek_state(0, tool=missing)
    assert "opensc" in caught.value.hint


# ------------------------------------------------------------------- command lines, taken by the real tool


def _commands(tmp_path: Path) -> list[list[str]]:
    return [
        schsm.status_command(99),
        schsm.initialize_command(99, label="my token", dkek_shares=2, pin_retry=5),
        schsm.initialize_command(99, label=None, dkek_shares=None, pin_retry=None),
        schsm.create_dkek_share_command(tmp_path / "share.pbe", 99),
        schsm.create_dkek_share_command(tmp_path / "share.pbe"),
        schsm.import_dkek_share_command(tmp_path / "share.pbe", 99),
        schsm.wrap_key_command(99, 3, tmp_path / "key.wky"),
        schsm.unwrap_key_command(99, 3, tmp_path / "key.wky", force=True),
        schsm.unwrap_key_command(99, 3, tmp_path / "key.wky"),
    ]


def test_command_lines(tmp_path: Path) -> None:
    assert schsm.status_command(2) == ["sc-hsm-tool", "--reader", "2"]
    assert schsm.initialize_command(0, label="my token", dkek_shares=2, pin_retry=5) == [
        "sc-hsm-tool", "--reader", "0", "--initialize", "--dkek-shares", "2", "--pin-retry", "5", "--label",
        "my token"]
    assert schsm.create_dkek_share_command("s.pbe") == ["sc-hsm-tool", "--create-dkek-share", "s.pbe"]
    assert schsm.import_dkek_share_command("s.pbe", 1) == ["sc-hsm-tool", "--reader", "1", "--import-dkek-share",
                                                           "s.pbe"]
    assert schsm.wrap_key_command(0, 7, "k") == ["sc-hsm-tool", "--reader", "0", "--wrap-key", "k",
                                                 "--key-reference", "7"]
    assert schsm.unwrap_key_command(0, 7, "k", force=True)[-1] == "--force"
    with pytest.raises(E.InputError):
        schsm.status_command(-1)
    for argv in _commands(tmp_path):
        assert not any(secret in arg for secret in SECRETS for arg in argv)
        assert not {"--pin", "--so-pin", "--password", "-l"} & set(argv)


def test_the_real_tool_takes_every_command_line(real_tool: str, tmp_path: Path, no_pcscd: None) -> None:
    for argv in _commands(tmp_path):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
        said = proc.stdout + proc.stderr
        assert "option" not in said and "Usage" not in said, (argv, said)
        assert said == "No smart card readers found.\nFailed to connect to card: Success\n", (argv, said)
        assert proc.returncode == 0
    # ... and refuses what cert-desk avoids: -l, though its help lists it
    proc = subprocess.run([real_tool, "--reader", "99", "--initialize", "-l", "x"], capture_output=True, text=True,
                          timeout=20, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and "invalid option -- 'l'" in proc.stderr


# ------------------------------------------------------------------- the driver and the real tool


def test_real_tool_without_a_reader(real_tool: str, no_pcscd: None, tmp_path: Path) -> None:
    with pytest.raises(E.NoTokenError, match="No smart card reader"):
        schsm.dkek_state(0)
    # prompts it never reaches: the reason is its own words, not a wait
    run = schsm.run_tool(schsm.wrap_key_command(0, 1, tmp_path / "k.wky"), [(schsm.PROMPT_USER_PIN,
                                                                             Secret(USER_PIN))], timeout=10)
    assert run.unanswered == (schsm.PROMPT_USER_PIN,) and run.returncode == 0
    with pytest.raises(E.NoTokenError):
        schsm.check_output(run, "wrap")
    # the high-level functions ask for the status first: nothing is typed
    with pytest.raises(E.NoTokenError):
        schsm.initialize(0, so_pin=Secret(SO_PIN), user_pin=Secret(USER_PIN), label="t", dkek_shares=1)
    wrapped = tmp_path / "k.wky"
    wrapped.write_bytes(bytes.fromhex("30020400"))
    with pytest.raises(E.NoTokenError):
        schsm.unwrap_key(0, 1, wrapped, Secret(USER_PIN))


def test_real_tool_with_readers_and_cards(real_tool: str, pcsc_bed: PcscBed, tmp_path: Path) -> None:
    """The tests' pcscd: reader 0 holds vsmartcard's ISO 7816 card, reader 1 is empty, then holds
    jcecard's OpenPGP card (a card OpenSC knows, without the SmartCard-HSM applet)."""
    with pytest.raises(E.NoTokenError, match="no reader number 7"):
        schsm.dkek_state(7)
    with pytest.raises(E.NoTokenError, match="no card"):
        schsm.dkek_state(1)
    with pytest.raises(E.TokenNotRecognizedError, match="not a SmartCard-HSM"):
        schsm.dkek_state(0)
    pcsc_bed.start_jcecard(tmp_path / "jcecard")
    wait_for(lambda: "not present" not in schsm.run_tool(schsm.status_command(1)).output, 10, "jcecard in reader 1")
    run = schsm.run_tool(schsm.status_command(1))
    assert run.output == transcript("not-a-smartcard-hsm.txt")[0] and run.returncode == 1
    with pytest.raises(E.TokenNotRecognizedError, match="no SmartCard-HSM application"):
        schsm.wrap_key(1, 1, tmp_path / "k.wky", Secret(USER_PIN))
    assert not (tmp_path / "k.wky").exists()


# ------------------------------------------------------------------- the driver and the STAND-IN


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    require(shutil.which("python3") is not None, "python3 (the stand-in's interpreter)")
    tool = tmp_path / "bin" / "fake-sc-hsm-tool"  # its own path, so /proc shows which process is ours
    tool.parent.mkdir()
    shutil.copy2(STAND_IN, tool)
    shutil.copy2(DATA / "usage-invalid-option.txt", tool.parent)
    for status in DATA.glob("status-*.txt"):
        shutil.copy2(status, tool.parent)
    card = tmp_path / "card.json"
    monkeypatch.setenv("FAKE_SC_HSM_TOOL_CARD", str(card))
    monkeypatch.setenv("CERT_DESK_PIN", USER_PIN)  # kept from the tool: no variable that may hold a PIN passes
    return StandIn(str(tool), card, tmp_path / "typed.jsonl")


class StandIn:
    def __init__(self, tool: str, card: Path, log: Path) -> None:
        self.tool, self.card_file, self.log = tool, card, log

    def card(self, *layers: dict[str, Any], **state: Any) -> None:
        """Write the stand-in's card: ``layers`` merged, then ``state``."""
        merged: dict[str, Any] = {"log": str(self.log), "echo_off_delay": 0.05}
        for layer in layers:
            merged.update(layer)
        self.card_file.write_text(json.dumps({**merged, **state}), encoding="utf-8")

    def state(self) -> dict[str, Any]:
        return dict(json.loads(self.card_file.read_text(encoding="utf-8")))

    def typed(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]


INITIALISED = {"so_pin": SO_PIN, "user_pin": USER_PIN, "keys": [1],
               "dkek": {"shares": 1, "outstanding": 0, "kcv": KCV.hex().upper()}}


def _assert_no_secret_in(record: dict[str, Any]) -> None:
    for secret in SECRETS:
        assert not any(secret in part for part in record["cmdline"]), record["cmdline"]
        assert not any(secret in part for part in record["environ"])


def test_initialise_types_each_pin_at_its_prompt(stand_in: StandIn, tmp_path: Path) -> None:
    stand_in.card(so_pin=None, dkek=None, echo_off_delay=0.3)
    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:  # the child's command line and environment, from outside, while it runs
        while not done.is_set():
            for proc in Path("/proc").glob("[0-9]*"):
                try:
                    cmdline = (proc / "cmdline").read_bytes()
                    if stand_in.tool.encode() in cmdline:
                        seen.append(cmdline.decode(errors="replace") + (proc / "environ").read_bytes().decode(
                            errors="replace"))
                except OSError:
                    continue
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        output = schsm.initialize(0, so_pin=Secret(SO_PIN), user_pin=Secret(NEW_USER_PIN), label="my token",
                                  dkek_shares=2, pin_retry=5, tool=stand_in.tool, timeout=10)
    finally:
        done.set()
        watcher.join()
    assert output == transcript("session-initialize.txt")[0]
    typed = stand_in.typed()
    assert [(t["prompt"], t["typed"], t["echo_off"]) for t in typed] == [
        (schsm.PROMPT_SO_PIN, SO_PIN, True), (schsm.PROMPT_INITIAL_USER_PIN, NEW_USER_PIN, True)]
    for record in typed:
        _assert_no_secret_in(record)
        assert "--label" in record["cmdline"] and "CERT_DESK_PIN" not in "".join(record["environ"])
    assert seen and not any(secret in text for secret in SECRETS for text in seen)
    state = stand_in.state()
    assert (state["so_pin"], state["user_pin"], state["label"]) == (SO_PIN, NEW_USER_PIN, "my token")
    assert state["dkek"] == {"shares": 2, "outstanding": 2, "kcv": None}
    assert schsm.dkek_state(0, tool=stand_in.tool).dkek == schsm.DkekState(2, 2, None)


def test_initialise_with_the_wrong_so_pin(stand_in: StandIn) -> None:
    stand_in.card(INITIALISED, so_pin="0011223344556677")
    with pytest.raises(E.PinIncorrectError, match="SO PIN is wrong") as caught:
        schsm.initialize(0, so_pin=Secret(SO_PIN), user_pin=Secret(USER_PIN), label=None, dkek_shares=None,
                         tool=stand_in.tool, timeout=10)
    assert caught.value.so and SO_PIN not in str(caught.value)
    assert stand_in.state()["so_tries"] == 14


def test_a_locked_so_pin_is_never_typed(stand_in: StandIn) -> None:
    stand_in.card(INITIALISED, so_tries=0)
    with pytest.raises(E.PinLockedError):
        schsm.initialize(0, so_pin=Secret(SO_PIN), user_pin=Secret(USER_PIN), label=None, dkek_shares=None,
                         tool=stand_in.tool, timeout=10)
    assert stand_in.typed() == []


def test_create_and_import_dkek_shares(stand_in: StandIn, tmp_path: Path) -> None:
    stand_in.card(INITIALISED, dkek={"shares": 2, "outstanding": 2, "kcv": None})
    shares = [tmp_path / "share-1.pbe", tmp_path / "share-2.pbe"]
    for share in shares:
        output = schsm.create_dkek_share(share, Secret(SHARE_PASSWORD), reader=0, tool=stand_in.tool, timeout=10)
        assert output.endswith(f"DKEK share created and saved to {share}\n")
        data = share.read_bytes()
        assert len(data) == 64 and data.startswith(b"Salted__")
        assert stat.S_IMODE(share.stat().st_mode) == 0o600
    assert [(t["prompt"], t["typed"]) for t in stand_in.typed()] == 2 * [
        (schsm.PROMPT_NEW_SHARE_PASSWORD, SHARE_PASSWORD), (schsm.PROMPT_CONFIRM_SHARE_PASSWORD, SHARE_PASSWORD)]
    with pytest.raises(E.ConflictError):  # never over an existing share
        schsm.create_dkek_share(shares[0], Secret(SHARE_PASSWORD), tool=stand_in.tool)

    with pytest.raises(E.InputError, match="does not decrypt"):
        schsm.import_dkek_share(0, shares[0], Secret("wrong password"), tool=stand_in.tool, timeout=10)
    first = schsm.import_dkek_share(0, shares[0], Secret(SHARE_PASSWORD), tool=stand_in.tool, timeout=10)
    assert first == schsm.DkekState(2, 1, None) and not first.complete
    last = schsm.import_dkek_share(0, shares[1], Secret(SHARE_PASSWORD), tool=stand_in.tool, timeout=10)
    assert last.complete and last.kcv is not None and not last.all_zero_kcv
    assert schsm.dkek_state(0, tool=stand_in.tool).dkek == last
    for record in stand_in.typed():
        _assert_no_secret_in(record)


def test_no_dkek_support(stand_in: StandIn, tmp_path: Path) -> None:
    stand_in.card(INITIALISED, dkek=None)
    share = tmp_path / "share.pbe"
    schsm.create_dkek_share(share, Secret(SHARE_PASSWORD), tool=stand_in.tool, timeout=10)
    with pytest.raises(E.TokenError, match="initialised without them"):
        schsm.import_dkek_share(0, share, Secret(SHARE_PASSWORD), tool=stand_in.tool, timeout=10)


def test_wrap_and_unwrap(stand_in: StandIn, tmp_path: Path) -> None:
    stand_in.card(INITIALISED)
    wrapped = tmp_path / "key-1.wky"
    assert schsm.wrap_key(0, 1, wrapped, Secret(USER_PIN), tool=stand_in.tool, timeout=10) == \
        transcript("session-wrap-key.txt")[0]
    assert wrapped.read_bytes()[0] == 0x30
    with pytest.raises(E.ConflictError):
        schsm.wrap_key(0, 1, wrapped, Secret(USER_PIN), tool=stand_in.tool)

    typed_before = len(stand_in.typed())
    with pytest.raises(E.ConflictError, match="Key reference 1 holds a private key description"):
        schsm.unwrap_key(0, 1, wrapped, Secret(USER_PIN), tool=stand_in.tool, timeout=10)
    assert len(stand_in.typed()) == typed_before  # refused before the PIN prompt
    output = schsm.unwrap_key(0, 1, wrapped, Secret(USER_PIN), force=True, tool=stand_in.tool, timeout=10)
    assert output == transcript("session-unwrap-key.txt")[0]
    schsm.unwrap_key(0, 9, wrapped, Secret(USER_PIN), tool=stand_in.tool, timeout=10)
    assert stand_in.state()["keys"] == [1, 9]
    assert {t["prompt"] for t in stand_in.typed()} == {schsm.PROMPT_USER_PIN}
    assert {t["typed"] for t in stand_in.typed()} == {USER_PIN}

    stand_in.card(INITIALISED, dkek={"shares": 1, "outstanding": 0, "kcv": "00" * 8})
    with pytest.raises(E.InputError, match="another DKEK"):
        schsm.unwrap_key(0, 5, wrapped, Secret(USER_PIN), tool=stand_in.tool, timeout=10)


def test_a_wrong_user_pin_then_the_final_try(stand_in: StandIn, tmp_path: Path) -> None:
    stand_in.card(INITIALISED, user_tries=2)
    with pytest.raises(E.PinIncorrectError, match="user PIN is wrong") as caught:
        schsm.wrap_key(0, 1, tmp_path / "a.wky", Secret("999999"), tool=stand_in.tool, timeout=10)
    assert "999999" not in str(caught.value)
    assert not (tmp_path / "a.wky").exists()
    assert stand_in.state()["user_tries"] == 1
    with pytest.raises(E.PinFinalTryError):
        schsm.wrap_key(0, 1, tmp_path / "a.wky", Secret("999999"), tool=stand_in.tool, timeout=10)
    assert len(stand_in.typed()) == 1
    with pytest.raises(E.PinLockedError):
        schsm.wrap_key(0, 1, tmp_path / "a.wky", Secret("999999"), allow_final_try=True, tool=stand_in.tool,
                       timeout=10)
    with pytest.raises(E.PinLockedError, match="was not tried"):
        schsm.wrap_key(0, 1, tmp_path / "a.wky", Secret(USER_PIN), tool=stand_in.tool, timeout=10)
    assert len(stand_in.typed()) == 2


def test_pending_dkek_refuses_key_wrap_before_the_pin(stand_in: StandIn, tmp_path: Path) -> None:
    stand_in.card(INITIALISED, dkek={"shares": 2, "outstanding": 1, "kcv": None})
    with pytest.raises(E.TokenError, match="1 more DKEK share"):
        schsm.wrap_key(0, 1, tmp_path / "a.wky", Secret(USER_PIN), tool=stand_in.tool, timeout=10)
    assert stand_in.typed() == []


def test_a_refused_value_asked_again_is_stopped(stand_in: StandIn, tmp_path: Path) -> None:
    """A 5-character password (past cert-desk's check): the tool asks again forever; the driver stops it
    at once, not after its timeout."""
    stand_in.card(INITIALISED)
    start = time.monotonic()
    run = schsm.run_tool(schsm.create_dkek_share_command(tmp_path / "s.pbe", tool=stand_in.tool),
                         [(schsm.PROMPT_NEW_SHARE_PASSWORD, Secret("abcde")),
                          (schsm.PROMPT_CONFIRM_SHARE_PASSWORD, Secret("abcde"))], timeout=30)
    assert time.monotonic() - start < 5
    assert run.asked_again == schsm.PROMPT_NEW_SHARE_PASSWORD
    assert run.unanswered == (schsm.PROMPT_CONFIRM_SHARE_PASSWORD,)
    with pytest.raises(E.InputError, match="at least 6 characters"):
        schsm.check_output(run, "create a DKEK share")
    assert "abcde" not in run.output
    assert [t["typed"] for t in stand_in.typed()] == ["abcde"]


def test_an_echo_would_be_masked() -> None:
    """sc-hsm-tool turns echo off, and cert-desk types only then; were a secret echoed anyway, it
    would follow its prompt on the same line, and that is masked."""
    echoed = b"Enter User PIN : 648219\r\n\r\nPIN verification failed with PIN code or key incorrect\r\n"
    assert schsm._scrub(echoed, [schsm.PROMPT_USER_PIN]) == (
        "Enter User PIN : ********\n\nPIN verification failed with PIN code or key incorrect\n")


def test_the_stand_in_punishes_typing_too_early(stand_in: StandIn, tmp_path: Path) -> None:
    """Why the driver waits for echo off: typed as soon as the prompt shows, a PIN is echoed into the
    output, then thrown away by util_getpass's TCSAFLUSH, and the tool waits on (the real tool does the
    same: tcsetattr(fileno(stdout), TCSAFLUSH, echo off) after printing its prompt)."""
    stand_in.card(INITIALISED, echo_off_delay=1.5)  # ample on a loaded machine: the PIN goes in well before
    master, slave = os.openpty()
    proc = subprocess.Popen([stand_in.tool, *schsm.wrap_key_command(0, 1, tmp_path / "k.wky")[1:]], stdin=slave,
                            stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        import select

        seen = b""
        deadline = time.monotonic() + 20
        while schsm.PROMPT_USER_PIN.encode() not in seen:
            assert time.monotonic() < deadline, seen
            if select.select([master], [], [], 0.5)[0]:
                seen += os.read(master, 4096)
        os.write(master, USER_PIN.encode() + b"\n")
        time.sleep(2.5)
        while select.select([master], [], [], 0.2)[0]:
            seen += os.read(master, 4096)
        assert USER_PIN.encode() in seen
        assert proc.poll() is None and stand_in.typed() == []
    finally:
        proc.kill()
        proc.wait()
        os.close(master)


def test_nothing_is_typed_before_echo_is_off(stand_in: StandIn) -> None:
    """The stand-in turns echo off (flushing earlier input) 8 s after its prompt: with a shorter
    timeout the driver has typed nothing and gives up."""
    stand_in.card(INITIALISED, echo_off_delay=8)
    start = time.monotonic()
    with pytest.raises(E.TokenBusyError, match="did not ask 'Enter User PIN :'"):
        schsm.run_tool(schsm.wrap_key_command(0, 1, "k.wky", tool=stand_in.tool),
                       [(schsm.PROMPT_USER_PIN, Secret(USER_PIN))], timeout=0.8)
    assert time.monotonic() - start < 7  # gave up at its timeout, not when echo went off
    assert stand_in.typed() == []


def test_replayed_status(stand_in: StandIn) -> None:
    stand_in.card(status="status-import-pending.txt")
    assert schsm.dkek_state(0, tool=stand_in.tool).dkek == schsm.DkekState(3, 2, None)
    stand_in.card(connect="card-not-present.txt")
    shutil.copy2(DATA / "card-not-present.txt", Path(stand_in.tool).parent)
    with pytest.raises(E.NoTokenError):
        schsm.dkek_state(0, tool=stand_in.tool)


def test_a_secret_never_goes_on_the_command_line(stand_in: StandIn) -> None:
    with pytest.raises(E.InternalError):
        schsm.run_tool([stand_in.tool, "--pin", USER_PIN], [(schsm.PROMPT_USER_PIN, Secret(USER_PIN))])
    # the stand-in itself would catch one
    proc = subprocess.run([stand_in.tool, "--pin", "env:X"], capture_output=True, text=True, timeout=20,
                          env={**os.environ, "FAKE_SC_HSM_TOOL_CARD": str(stand_in.card_file)})
    assert proc.returncode == 99
