"""Token and PIN administration through the CLI on a real SoftHSM2, judged by pkcs11-tool."""

from __future__ import annotations

import re

import pytest

from tests.conftest import SO_PIN, USER_PIN, Cli, SoftHsm

NEW_PIN = "246813"
NEW_SO = "87654321"


def _free_slot_id(softhsm: SoftHsm) -> int:
    out = softhsm.tool("-L").stdout
    for block in re.split(r"^(?=Slot \d+)", out, flags=re.M):
        m = re.match(r"Slot \d+ \(0x([0-9a-f]+)\)", block)
        if m and "uninitialized" in block:
            return int(m.group(1), 16)
    raise AssertionError(out)


def _slot_id_of(softhsm: SoftHsm, label: str) -> int:
    out = softhsm.tool("-L").stdout
    for block in re.split(r"^(?=Slot \d+)", out, flags=re.M):
        m = re.match(r"Slot \d+ \(0x([0-9a-f]+)\)", block)
        if m and re.search(rf"token label\s*:\s*{re.escape(label)}\s*$", block, re.M):
            return int(m.group(1), 16)
    raise AssertionError(out)


def _pin_works(softhsm: SoftHsm, label: str, pin: str) -> bool:
    return softhsm.tool("--token-label", label, "-O", pin=pin, check=False).returncode == 0


def _so_pin_works(softhsm: SoftHsm, label: str, so_pin: str) -> bool:
    """Judged by pkcs11-tool: an SO login (setting the user PIN to the one it already is)."""
    import subprocess

    proc = subprocess.run(["pkcs11-tool", "--module", softhsm.module, "--token-label", label, "--login",
                           "--login-type", "so", "--so-pin", "env:P11_SO_PIN", "--init-pin",
                           "--new-pin", "env:P11_PIN"],
                          env=softhsm.env(P11_SO_PIN=so_pin, P11_PIN=USER_PIN), capture_output=True, text=True,
                          timeout=60)
    return proc.returncode == 0


def _token_flags(softhsm: SoftHsm, label: str) -> str:
    out = softhsm.tool("--token-label", label, "-I", check=False).stdout + softhsm.tool("-L").stdout
    m = re.search(rf"token label\s*:\s*{re.escape(label)}\s*\n(?:.*\n)*?\s*token flags\s*:\s*(.*)", out)
    assert m, out
    return m.group(1)


def test_init_a_free_slot_then_set_the_first_pin(cli: Cli, softhsm: SoftHsm) -> None:
    slot = _free_slot_id(softhsm)
    r = cli("token", "init", "--module", softhsm.module, "--slot", str(slot), "--label", "fresh",
            env={"CERT_DESK_SO_PIN": SO_PIN})
    assert r.returncode == 0, r.stderr
    assert "Initialised token 'fresh'" in r.stdout
    flags = _token_flags(softhsm, "fresh")
    assert "token initialized" in flags and "PIN initialized" not in flags  # pkcs11-tool agrees: no user PIN yet

    r = cli("pin", "unblock", "--module", softhsm.module, "--token", "fresh",
            env={"CERT_DESK_SO_PIN": SO_PIN, "CERT_DESK_NEW_PIN": NEW_PIN})
    assert r.returncode == 0, r.stderr
    assert "PIN initialized" in _token_flags(softhsm, "fresh")
    assert _pin_works(softhsm, "fresh", NEW_PIN)


def test_reinitialising_needs_the_label_typed_back(cli: Cli, softhsm: SoftHsm) -> None:
    softhsm.init_token("keep", pin=USER_PIN)
    softhsm.keypair("keep", "precious", "01")
    slot = _slot_id_of(softhsm, "keep")
    base = ("token", "init", "--module", softhsm.module, "--slot", str(slot), "--label", "wiped")
    env = {"CERT_DESK_SO_PIN": SO_PIN}

    r = cli(*base, env=env)
    assert r.returncode != 0 and "erases every key and certificate" in r.stderr and "--confirm" in r.stderr
    r = cli(*base, "--confirm", "kep", env=env)  # mistyped
    assert r.returncode != 0 and "Type its label" in r.stderr
    r = cli(*base, "--confirm", "keep", env={"CERT_DESK_SO_PIN": "11112222"})  # wrong SO PIN
    assert r.returncode != 0 and "SO PIN" in r.stderr
    assert "precious" in softhsm.tool("--token-label", "keep", "-O", pin=USER_PIN).stdout  # nothing changed

    r = cli(*base, "--confirm", "keep", env=env)
    assert r.returncode == 0, r.stderr
    assert "keep" not in softhsm.tool("-L").stdout
    r = cli("pin", "unblock", "--module", softhsm.module, "--token", "wiped",
            env={"CERT_DESK_SO_PIN": SO_PIN, "CERT_DESK_NEW_PIN": NEW_PIN})
    assert r.returncode == 0, r.stderr
    assert "precious" not in softhsm.tool("--token-label", "wiped", "-O", pin=NEW_PIN).stdout


@pytest.mark.parametrize("label, message", [
    ("x" * 33, "longer than 32 bytes"),
    ("   ", "needs a label"),
    ("tab\there", "control characters"),
])
def test_bad_labels_are_refused_before_the_token_is_touched(cli: Cli, softhsm: SoftHsm, label: str,
                                                              message: str) -> None:
    slot = _free_slot_id(softhsm)
    r = cli("token", "init", "--module", softhsm.module, "--slot", str(slot), "--label", label,
            env={"CERT_DESK_SO_PIN": SO_PIN})
    assert r.returncode != 0 and message in r.stderr
    assert _free_slot_id(softhsm) == slot


def test_change_the_user_pin(cli: Cli, softhsm: SoftHsm, token: str) -> None:
    r = cli("pin", "change", "--module", softhsm.module, "--token", token,
            env={"CERT_DESK_PIN": USER_PIN, "CERT_DESK_NEW_PIN": NEW_PIN})
    assert r.returncode == 0, r.stderr
    assert _pin_works(softhsm, token, NEW_PIN)
    assert not _pin_works(softhsm, token, USER_PIN)


@pytest.mark.parametrize("new, message", [("12", "at least 4"), ("9" * 300, "at most")])
def test_a_new_pin_outside_the_limits_is_refused_without_a_try(cli: Cli, softhsm: SoftHsm, token: str,
                                                               new: str, message: str) -> None:
    r = cli("pin", "change", "--module", softhsm.module, "--token", token,
            env={"CERT_DESK_PIN": USER_PIN, "CERT_DESK_NEW_PIN": new})
    assert r.returncode != 0 and message in r.stderr
    assert new not in r.stderr + r.stdout
    assert _pin_works(softhsm, token, USER_PIN)
    assert "user PIN count low" not in _token_flags(softhsm, token)


def test_a_wrong_current_pin_changes_nothing(cli: Cli, softhsm: SoftHsm, token: str) -> None:
    r = cli("pin", "change", "--module", softhsm.module, "--token", token,
            env={"CERT_DESK_PIN": "999999", "CERT_DESK_NEW_PIN": NEW_PIN})
    assert r.returncode != 0 and "Wrong PIN" in r.stderr
    assert _pin_works(softhsm, token, USER_PIN)
    assert not _pin_works(softhsm, token, NEW_PIN)


def test_unblock_with_a_wrong_so_pin_changes_nothing(cli: Cli, softhsm: SoftHsm, token: str) -> None:
    r = cli("pin", "unblock", "--module", softhsm.module, "--token", token,
            env={"CERT_DESK_SO_PIN": "11112222", "CERT_DESK_NEW_PIN": NEW_PIN})
    assert r.returncode != 0 and "SO PIN" in r.stderr
    assert _pin_works(softhsm, token, USER_PIN)


def test_unblock_sets_a_new_user_pin_with_the_so_pin(cli: Cli, softhsm: SoftHsm, token: str) -> None:
    r = cli("pin", "unblock", "--module", softhsm.module, "--token", token,
            env={"CERT_DESK_SO_PIN": SO_PIN, "CERT_DESK_NEW_PIN": NEW_PIN})
    assert r.returncode == 0, r.stderr
    assert _pin_works(softhsm, token, NEW_PIN)
    assert not _pin_works(softhsm, token, USER_PIN)


def test_change_the_so_pin(cli: Cli, softhsm: SoftHsm, token: str) -> None:
    r = cli("pin", "change-so", "--module", softhsm.module, "--token", token,
            env={"CERT_DESK_SO_PIN": SO_PIN, "CERT_DESK_NEW_PIN": NEW_SO})
    assert r.returncode == 0, r.stderr
    assert _so_pin_works(softhsm, token, NEW_SO)
    assert not _so_pin_works(softhsm, token, SO_PIN)


def test_new_pin_files_and_the_repeat_check(cli: Cli, softhsm: SoftHsm, token: str, tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_text(USER_PIN + "\n")
    new.write_text(NEW_PIN + "\n")
    r = cli("pin", "change", "--module", softhsm.module, "--token", token, "--pin-file", str(old),
            "--new-pin-file", str(new))
    assert r.returncode == 0, r.stderr
    assert _pin_works(softhsm, token, NEW_PIN)
    # without a terminal and without a file or variable, the new PIN is asked for, not invented
    r = cli("pin", "change", "--module", softhsm.module, "--token", token, env={"CERT_DESK_PIN": NEW_PIN})
    assert r.returncode != 0 and "CERT_DESK_NEW_PIN" in r.stderr


def test_smartcard_hsm_pin_rules_come_before_the_tokens_limits() -> None:
    """OpenSC reports the user PIN's limits (6-15) for a SmartCard-HSM; its SO PIN is 16 hex digits.
    (A TokenInfo as OpenSC gives it for one: no SmartCard-HSM is attached here.)"""
    from cert_desk import errors as E
    from cert_desk.pkcs11.admin import check_new_pin
    from cert_desk.pkcs11.module import check_pin_length
    from cert_desk.secrets import Secret
    from tests.test_schsm import _info

    hsm = _info("UserPIN (SmartCard-HSM)", "www.CardContact.de", "PKCS#15 emulated")
    check_new_pin(Secret("0123456789ABCDEF"), hsm, so=True)
    check_pin_length(Secret("0123456789abcdef"), hsm, so=True)  # what C_Login(SO) is checked with
    for bad in ("0123456789ABCDE", "0123456789ABCDEG", "12345678"):
        with pytest.raises(E.PinPolicyError) as info:
            check_new_pin(Secret(bad), hsm, so=True)
        assert bad not in str(info.value)
    check_new_pin(Secret("123456"), hsm, so=False)
    for bad in ("12345", "1234567890123456"):
        with pytest.raises(E.PinPolicyError):
            check_new_pin(Secret(bad), hsm, so=False)
