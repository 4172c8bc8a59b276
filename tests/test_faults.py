"""Faults a real token produces, through the CLI, with the fault-injecting module (tests/faultmod)
in front of a real SoftHSM2 token. Each test names the row of docs/reliability.md it proves."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import USER_PIN, Cli, CliResult
from tests.faultmod import FaultModule, faultmod_library, faulty  # noqa: F401 - fixtures

ENV = {"CERT_DESK_PIN": USER_PIN}


def run(cli: Cli, faulty: FaultModule, command: str, *args: str, env: dict[str, str] | None = None) -> CliResult:
    """``cert-desk COMMAND --module libcdfault.so --token 'test token' ARGS`` (COMMAND may be two words)."""
    return cli(*command.split(), "--module", faulty.module, "--token", "test token", *args,
               env=faulty.env(**(env if env is not None else ENV)))


def logins(faulty: FaultModule) -> int:
    return len(faulty.calls("C_Login"))


# ------------------------------------------------------------------ PIN states


def test_pin_incorrect(cli: Cli, faulty: FaultModule, token: str) -> None:
    faulty.set("C_Login:CKR_PIN_INCORRECT@1")
    r = run(cli, faulty, "objects", "--login")
    assert r.returncode == 1 and "Wrong PIN" in r.stderr and USER_PIN not in r.stderr
    assert logins(faulty) == 1  # tried once, not again
    assert run(cli, faulty, "objects", "--login").returncode == 0  # the next (2nd) login goes through


def test_count_low_warns_and_logs_in(cli: Cli, faulty: FaultModule, token: str) -> None:
    faulty.set("flags=COUNT_LOW")
    r = run(cli, faulty, "objects", "--login")
    assert r.returncode == 0, r.stderr
    assert "few tries" in r.stderr.lower() or "count low" in r.stderr.lower()


def test_final_try_needs_the_confirmation(cli: Cli, faulty: FaultModule, token: str) -> None:
    faulty.set("flags=FINAL_TRY")
    r = run(cli, faulty, "objects", "--login")
    assert r.returncode == 1 and "one try left" in r.stderr.lower()
    assert logins(faulty) == 0  # no terminal to ask, no --allow-final-try: nothing tried
    r = run(cli, faulty, "objects", "--login", "--allow-final-try")
    assert r.returncode == 0, r.stderr
    assert logins(faulty) == 1


def test_locked_offers_the_unblock_and_tries_nothing(cli: Cli, faulty: FaultModule, token: str) -> None:
    faulty.set("flags=LOCKED")
    r = run(cli, faulty, "objects", "--login")
    assert r.returncode == 1 and "locked" in r.stderr and "cert-desk pin unblock" in r.stderr
    r = run(cli, faulty, "pin change", env={"CERT_DESK_PIN": USER_PIN, "CERT_DESK_NEW_PIN": "654321"})
    assert r.returncode == 1 and "locked" in r.stderr
    assert logins(faulty) == 0


def test_expired_pin_points_to_the_change(cli: Cli, faulty: FaultModule, token: str) -> None:
    faulty.set("flags=TO_BE_CHANGED")
    r = run(cli, faulty, "objects", "--login")
    assert r.returncode == 0 and "wants this PIN changed" in r.stderr and "cert-desk pin change" in r.stderr
    faulty.set("flags=TO_BE_CHANGED,C_Login:CKR_PIN_EXPIRED@1")
    r = run(cli, faulty, "objects", "--login")
    assert r.returncode == 1 and "cert-desk pin change" in r.stderr


def test_pin_pad(cli: Cli, faulty: FaultModule, token: str) -> None:
    faulty.set("flags=PROTECTED_AUTHENTICATION_PATH")
    r = run(cli, faulty, "objects", "--login", env={"CD_FAULT_PAD_PIN": USER_PIN})
    assert r.returncode == 0, r.stderr
    assert "PIN pad" in r.stderr
    assert "C_Login" in "".join(faulty.log()) and USER_PIN not in "".join(faulty.log())


# --------------------------------------------------------------------- removal


def _objects(faulty: FaultModule) -> str:
    return faulty.softhsm.tool("--token-label", "test token", "-O", pin=USER_PIN).stdout


def test_removed_during_a_listing(cli: Cli, faulty: FaultModule, token: str) -> None:
    faulty.softhsm.keypair("test token", "k", "01")
    faulty.set("removed@C_GetAttributeValue")
    r = run(cli, faulty, "objects", "--login")
    assert r.returncode == 1 and "removed" in r.stderr.lower()
    faulty.clear()  # put back
    r = run(cli, faulty, "objects", "--login")
    assert r.returncode == 0 and "k" in r.stdout


def test_removed_during_keygen_leaves_no_object(cli: Cli, faulty: FaultModule, token: str) -> None:
    faulty.set("removed@C_GenerateKeyPair")
    r = run(cli, faulty, "keygen", "--login", "--type", "ec:prime256v1", "--label", "half")
    assert r.returncode == 1 and "removed" in r.stderr.lower()
    faulty.clear()
    assert "half" not in _objects(faulty)


def test_removed_during_import_leaves_no_object(cli: Cli, faulty: FaultModule, token: str,
                                                tmp_path: Path) -> None:
    cert = _certificate_for_a_new_key(cli, faulty, tmp_path)
    faulty.set("removed@C_CreateObject")
    r = run(cli, faulty, "import", "--login", "--in", str(cert))
    assert r.returncode == 1 and "removed" in r.stderr.lower()
    faulty.clear()
    assert "Certificate Object" not in _objects(faulty)
    assert run(cli, faulty, "import", "--login", "--in", str(cert)).returncode == 0  # and it works once back


def _certificate_for_a_new_key(cli: Cli, faulty: FaultModule, tmp_path: Path) -> Path:
    assert run(cli, faulty, "keygen", "--login", "--type", "ec:prime256v1", "--label", "alice",
               "--id", "a1").returncode == 0
    csr = tmp_path / "a.csr"
    assert run(cli, faulty, "csr", "--login", "--id", "a1", "--subject", "/CN=Alice", "--out", str(csr)).returncode == 0
    pw = tmp_path / "pw"
    pw.write_text("capass-1\n")
    assert cli("ca", "init", "--dir", str(tmp_path / "ca"), "--subject", "/CN=CA", "--passphrase-file",
               str(pw)).returncode == 0
    pem = tmp_path / "a.pem"
    assert cli("ca", "sign", "--ca-cert", str(tmp_path / "ca" / "ca.crt"), "--ca-key", str(tmp_path / "ca" / "ca.key"),
               "--in", str(csr), "--out", str(pem), "--passphrase-file", str(pw)).returncode == 0
    return pem


# ------------------------------------------------------------- what the token refuses


@pytest.mark.parametrize(("fault", "words"), [
    ("C_GenerateKeyPair:CKR_DEVICE_MEMORY@1", "full"),
    ("C_GenerateKeyPair:CKR_KEY_SIZE_RANGE@1", "size"),
    ("C_GenerateKeyPair:CKR_GENERAL_ERROR@1", "CKR_GENERAL_ERROR"),
    ("C_GenerateKeyPair:CKR_MECHANISM_INVALID@1", "mechanism"),
    ("C_GenerateKeyPair:0x80001234@1", "CKR_VENDOR_DEFINED+0x1234 (0x80001234)"),
    ("C_GenerateKeyPair:CKR_FUNCTION_REJECTED@1", "CKR_FUNCTION_REJECTED (0x00000200)"),
])
def test_keygen_refused(cli: Cli, faulty: FaultModule, token: str, fault: str, words: str) -> None:
    faulty.set(fault)
    r = run(cli, faulty, "keygen", "--login", "--type", "ec:prime256v1", "--label", "refused")
    assert r.returncode == 1, r.stdout
    assert words.lower() in r.stderr.lower(), r.stderr
    assert "Traceback" not in r.stderr
    faulty.clear()
    assert "refused" not in _objects(faulty)


def test_token_full_on_import(cli: Cli, faulty: FaultModule, token: str, tmp_path: Path) -> None:
    cert = _certificate_for_a_new_key(cli, faulty, tmp_path)
    faulty.set("C_CreateObject:CKR_DEVICE_MEMORY@1")
    r = run(cli, faulty, "import", "--login", "--in", str(cert))
    assert r.returncode == 1 and "full" in r.stderr.lower()
    faulty.clear()
    assert "Certificate Object" not in _objects(faulty)


def test_write_protected(cli: Cli, faulty: FaultModule, token: str) -> None:
    faulty.set("flags=WRITE_PROTECTED")
    r = cli("slots", "--module", faulty.module, env=faulty.env())
    assert r.returncode == 0 and "readonly" in r.stdout, r.stdout  # pkcs11-tool -L words it so too
    r = run(cli, faulty, "keygen", "--login", "--type", "ec:prime256v1", "--label", "nope")
    assert r.returncode == 1 and "write-protected" in r.stderr
    faulty.clear()
    assert "nope" not in _objects(faulty)
