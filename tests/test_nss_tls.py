"""A TLS client login through an NSS database, as a browser does it, with the key on a SoftHSM2 token.

The NSS database is prepared with NSS's own tools (certutil, modutil), the token with OpenSC's
pkcs11-tool, and the judge is ``openssl s_server -Verify 1``: its log and its page say which client
certificate it saw. pkcs11-spy counts the C_Login calls a wrong PIN costs.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from cert_desk.errors import InputError
from cert_desk.nss.tls import TlsLogin, parse_url, tls_login
from cert_desk.secrets import Secret
from tests.conftest import USER_PIN, SoftHsm, require
from tests.tls_server import (
    TOKEN,
    Pki,
    free_port,
    make_nss_db,
    make_test_pki,
    put_client_certificate,
    silent_server,
    tls_server,
)

SPY = "/usr/lib/x86_64-linux-gnu/pkcs11-spy.so"


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_test_pki(tmp_path / "pki")


@dataclass
class Setup:
    pki: Pki
    db: str
    cert: x509.Certificate
    nickname: str = f"{TOKEN}:alice"


@pytest.fixture
def setup(softhsm: SoftHsm, token: str, pki: Pki, tmp_path: Path) -> Setup:
    """Token 'test token' with an EC key 'alice' and its certificate; an NSS DB with SoftHSM and the CA."""
    cert = put_client_certificate(softhsm, pki, "alice", "a1", "EC:prime256v1", "alice EC")
    return Setup(pki, make_nss_db(tmp_path / "nssdb", softhsm.module, pki.ca_pem), cert)


def openssl_oneline(name: x509.Name, sep: str = "=") -> str:
    """A name as OpenSSL prints it in s_server's log (``O = x, CN = y``) and page (``O=x, CN=y``)."""
    values = [(a.rfc4514_attribute_name, a.value) for a in name]
    return ", ".join(f"{key}{sep}{value}" for key, value in values if isinstance(value, str))


def assert_no_pin(result: TlsLogin, pin: str) -> None:
    assert pin not in result.output and pin not in result.words


# ------------------------------------------------------------------------------ logins


@pytest.mark.parametrize(("key_type", "protocol"), [("rsa:2048", "TLSv1.2"), ("rsa:2048", "TLSv1.3"),
                                                     ("EC:prime256v1", "TLSv1.2"), ("EC:prime256v1", "TLSv1.3")])
def test_login_with_the_token_key(softhsm: SoftHsm, token: str, pki: Pki, tmp_path: Path,
                                  key_type: str, protocol: str) -> None:
    cert = put_client_certificate(softhsm, pki, "alice", "c1", key_type, f"alice {key_type}")
    db = make_nss_db(tmp_path / "nssdb", softhsm.module, pki.ca_pem)
    server_option = {"TLSv1.2": "-tls1_2", "TLSv1.3": "-tls1_3"}[protocol]
    with tls_server(pki, extra_args=[server_option]) as (url, log):
        result = tls_login(db, f"{TOKEN}:alice", url, Secret(USER_PIN))
        server_log = log.read_text()
    assert result.ok, f"{result.words}\n{result.output}"
    assert result.protocol == protocol
    assert result.server_saw == openssl_oneline(cert.subject)
    assert f"depth=0 {openssl_oneline(cert.subject, ' = ')}" in server_log  # the server's own word
    assert "The server accepted the certificate 'alice' from token 'test token'" in result.words
    assert "Client certificate" in result.output
    assert_no_pin(result, USER_PIN)


def test_wrong_pin_costs_the_token_one_try_and_no_time(softhsm: SoftHsm, token: str, pki: Pki, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """tstclnt alone tries a wrong PIN three times (a SmartCard-HSM would be blocked), then asks a
    terminal it does not have. Through pkcs11-spy: one C_Login, and no handshake at all."""
    require(os.path.exists(SPY), "OpenSC's pkcs11-spy.so (opensc-pkcs11)")
    put_client_certificate(softhsm, pki, "alice", "a1", "EC:prime256v1", "alice EC")
    spy_log = tmp_path / "spy.log"
    monkeypatch.setenv("PKCS11SPY", softhsm.module)
    monkeypatch.setenv("PKCS11SPY_OUTPUT", str(spy_log))
    db = make_nss_db(tmp_path / "nssdb", SPY, pki.ca_pem)
    spy_log.unlink(missing_ok=True)
    with tls_server(pki) as (url, log):
        start = time.monotonic()
        result = tls_login(db, f"{TOKEN}:alice", url, Secret("999999"))
        elapsed = time.monotonic() - start
        server_log = log.read_text()
    assert not result.ok
    assert "refused the PIN (that cost one try)" in result.words, result.words
    assert elapsed < 5
    logins = re.findall(r"C_Login\n(?:.*\n)*?Returned:\s+\d+ (\w+)", spy_log.read_text())
    assert logins == ["CKR_PIN_INCORRECT"]
    assert "depth=0" not in server_log
    assert_no_pin(result, "999999")


def test_no_pin_tries_no_login(softhsm: SoftHsm, token: str, pki: Pki, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    require(os.path.exists(SPY), "OpenSC's pkcs11-spy.so (opensc-pkcs11)")
    put_client_certificate(softhsm, pki, "alice", "a1", "EC:prime256v1", "alice EC")
    spy_log = tmp_path / "spy.log"
    monkeypatch.setenv("PKCS11SPY", softhsm.module)
    monkeypatch.setenv("PKCS11SPY_OUTPUT", str(spy_log))
    db = make_nss_db(tmp_path / "nssdb", SPY, pki.ca_pem)
    with tls_server(pki) as (url, _log):
        start = time.monotonic()
        result = tls_login(db, f"{TOKEN}:alice", url, None)
    assert not result.ok
    assert result.words == "Token 'test token' needs its PIN to be used, and no PIN was given."
    assert time.monotonic() - start < 5
    assert "C_Login" not in spy_log.read_text()


def test_nickname_that_names_no_certificate(setup: Setup) -> None:
    with tls_server(setup.pki) as (url, log):
        result = tls_login(setup.db, f"{TOKEN}:bob", url, Secret(USER_PIN))
    assert not result.ok
    assert "Token 'test token' has no certificate labelled 'bob'" in result.words
    assert "depth=0" not in log.read_text()


def test_token_that_is_not_in_the_database(setup: Setup) -> None:
    with tls_server(setup.pki) as (url, _log):
        result = tls_login(setup.db, "other token:alice", url, Secret(USER_PIN))
    assert not result.ok
    assert "has no token 'other token'" in result.words
    assert "'test token'" in result.words  # the tokens it does have


def test_server_that_does_not_run(setup: Setup) -> None:
    result = tls_login(setup.db, setup.nickname, f"https://127.0.0.1:{free_port()}/", Secret(USER_PIN))
    assert not result.ok
    assert result.words.startswith("Could not connect to 127.0.0.1:"), result.words
    assert "PR_CONNECT_REFUSED_ERROR" in result.words


def test_server_that_never_answers_is_given_up_on_in_time(softhsm: SoftHsm, pki: Pki, tmp_path: Path) -> None:
    """The tools never see the PIN in their argv; tstclnt reads it from a 0600 file that is gone
    afterwards, and is killed at the deadline."""
    pin = "pin-" + os.urandom(4).hex()
    softhsm.init_token("argv token", pin=pin)
    put_client_certificate(softhsm, pki, "alice", "a1", "EC:prime256v1", "alice EC", token="argv token", pin=pin)
    db = make_nss_db(tmp_path / "nssdb", softhsm.module, pki.ca_pem)
    seen: dict[str, object] = {}
    with silent_server() as url:
        worker = threading.Thread(target=lambda: seen.update(result=tls_login(
            db, "argv token:alice", url, Secret(pin), timeout=3)))
        start = time.monotonic()
        worker.start()
        pid, argv = _wait_for_process("tstclnt", 5)
        cmdlines = [_cmdline(p) for p in os.listdir("/proc") if p.isdigit()]
        pin_file = argv[argv.index("-W") + 1]
        mode = os.stat(pin_file).st_mode & 0o777
        worker.join(10)
    elapsed = time.monotonic() - start
    result = seen["result"]
    assert isinstance(result, TlsLogin)
    assert not result.ok
    assert "did not finish within 3 s" in result.words, result.words
    assert elapsed < 6
    assert not any(pin in " ".join(c) for c in cmdlines)
    assert mode == 0o600
    assert not os.path.exists(pin_file)
    assert "zombie" in _status(str(pid)), "tstclnt still runs after the deadline"
    assert_no_pin(result, pin)


def _cmdline(pid: str) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _wait_for_process(name: str, seconds: float) -> tuple[int, list[str]]:
    """A child of this process running ``name`` (tstclnt runs in its own session; its parent is us)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for entry in os.listdir("/proc"):
            argv = _cmdline(entry) if entry.isdigit() else []
            if argv and os.path.basename(argv[0]) == name and _parent(entry) == os.getpid():
                return int(entry), argv
        time.sleep(0.02)
    raise AssertionError(f"no {name} process within {seconds} s")


def test_server_certificate_not_trusted_by_the_database(softhsm: SoftHsm, token: str, pki: Pki,
                                                        tmp_path: Path) -> None:
    cert = put_client_certificate(softhsm, pki, "alice", "a1", "EC:prime256v1", "alice EC")
    db = make_nss_db(tmp_path / "nssdb", softhsm.module, None)  # the CA is not trusted
    other = make_test_pki(tmp_path / "other")
    with tls_server(pki) as (url, _log):
        untrusted = tls_login(db, f"{TOKEN}:alice", url, Secret(USER_PIN))
        with_ca = tls_login(db, f"{TOKEN}:alice", url, Secret(USER_PIN), ca_file=str(pki.ca_pem))
        with_other_ca = tls_login(db, f"{TOKEN}:alice", url, Secret(USER_PIN), ca_file=str(other.ca_pem))
    assert not untrusted.ok
    assert "The server's certificate was not accepted: its issuer is not trusted" in untrusted.words
    assert "No client certificate was sent" in untrusted.words
    assert with_ca.ok, with_ca.words
    assert with_ca.server_saw == openssl_oneline(cert.subject)
    assert f"verified against {pki.ca_pem}" in with_ca.words
    assert not with_other_ca.ok
    assert f"does not verify against {other.ca_pem}" in with_other_ca.words


def test_server_that_does_not_trust_the_certificate(softhsm: SoftHsm, token: str, pki: Pki, tmp_path: Path) -> None:
    """The token certificate comes from another CA than the one the server trusts."""
    other = make_test_pki(tmp_path / "other")
    put_client_certificate(softhsm, other, "alice", "a1", "EC:prime256v1", "alice EC")
    db = make_nss_db(tmp_path / "nssdb", softhsm.module, pki.ca_pem)
    with tls_server(pki) as (url, log):
        result = tls_login(db, f"{TOKEN}:alice", url, Secret(USER_PIN))
        server_log = log.read_text()
    assert not result.ok
    assert "The server did not accept the certificate 'alice' from token 'test token'" in result.words, result.words
    assert "unable to get local issuer certificate" in server_log


def test_certificate_without_its_private_key(softhsm: SoftHsm, token: str, pki: Pki, tmp_path: Path) -> None:
    """The certificate is on the token, its private key is not: NSS finds the certificate and no key."""
    put_client_certificate(softhsm, pki, "alice", "a1", "EC:prime256v1", "alice EC")
    softhsm.tool("--token-label", TOKEN, "--delete-object", "--type", "privkey", "--id", "a1", pin=USER_PIN)
    db = make_nss_db(tmp_path / "nssdb", softhsm.module, pki.ca_pem)
    with tls_server(pki) as (url, _log):
        result = tls_login(db, f"{TOKEN}:alice", url, Secret(USER_PIN))
    assert not result.ok
    assert "The server asked for a client certificate but none was sent" in result.words, result.words
    assert "could not use its private key" in result.words


def test_server_that_asks_for_no_certificate(setup: Setup) -> None:
    with tls_server(setup.pki, client_auth=False) as (url, _log):
        result = tls_login(setup.db, setup.nickname, url, Secret(USER_PIN))
    assert not result.ok
    assert "the server never asked for a client certificate" in result.words, result.words


# ------------------------------------------------------------------------------- input


@pytest.mark.parametrize(("url", "expected"), [
    ("https://127.0.0.1:8443/", ("127.0.0.1", 8443)),
    ("https://example.org", ("example.org", 443)),
    ("HTTPS://Example.org:443/login?x=1", ("example.org", 443)),
    ("  https://[::1]:4433/  ", ("::1", 4433)),
])
def test_parse_url(url: str, expected: tuple[str, int]) -> None:
    assert parse_url(url) == expected


@pytest.mark.parametrize("url", ["", "http://example.org/", "example.org:443", "https://", "https://:443/",
                                 "https://host:0/", "https://host:65536/", "https://host:port/",
                                 "https://user@host/", "https://ho st/", "https://host/\r\nX: y", "ftp://x/"])
def test_parse_url_refuses(url: str) -> None:
    with pytest.raises(InputError) as info:
        parse_url(url)
    assert info.value.hint


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60) | st.builds(lambda s: "https://" + s, st.text(max_size=40)))
def test_parse_url_raises_only_input_errors(url: str) -> None:
    try:
        host, port = parse_url(url)
    except InputError:
        return
    assert host and 0 < port < 65536


def test_bad_input_is_refused_before_anything_runs(setup: Setup, tmp_path: Path) -> None:
    url = "https://127.0.0.1:1/"
    cases = [
        ((setup.db, "alice", url, Secret(USER_PIN)), "does not name a token"),
        ((setup.db, ":alice", url, Secret(USER_PIN)), "does not name a token"),
        ((str(tmp_path / "nowhere"), setup.nickname, url, Secret(USER_PIN)), "does not exist"),
        ((str(tmp_path), setup.nickname, url, Secret(USER_PIN)), "no cert9.db"),
        (("dbm:" + str(tmp_path), setup.nickname, url, Secret(USER_PIN)), "dbm"),
        ((setup.db, setup.nickname, url, Secret("12\n34")), "line break"),
        ((setup.db, setup.nickname, "http://127.0.0.1/", Secret(USER_PIN)), "not an https"),
    ]
    for args, words in cases:
        with pytest.raises(InputError, match=words) as info:
            tls_login(*args)
        assert "12\n34" not in str(info.value)
    with pytest.raises(InputError, match="timeout"):
        tls_login(setup.db, setup.nickname, url, Secret(USER_PIN), timeout=0)
    with pytest.raises(InputError, match="does not exist"):
        tls_login(setup.db, setup.nickname, url, Secret(USER_PIN), ca_file=str(tmp_path / "no-ca.pem"))


@pytest.fixture(autouse=True)
def _no_stray_tstclnt() -> Iterator[None]:
    yield
    mine = [p for p in os.listdir("/proc") if p.isdigit() and os.path.basename((_cmdline(p) or [""])[0]) == "tstclnt"
            and "zombie" not in _status(p)]
    assert not [p for p in mine if _parent(p) == os.getpid()], "a tstclnt outlived its test"


def _status(pid: str) -> str:
    """/proc/PID/status; a process that is gone reads as a zombie (it cannot outlive anything)."""
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "State: Z (zombie)"


def _parent(pid: str) -> int:
    m = re.search(r"^PPid:\s+(\d+)", _status(pid), flags=re.M)
    return int(m.group(1)) if m else -1
