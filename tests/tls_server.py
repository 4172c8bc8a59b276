"""A TLS server that demands a client certificate, for the login tests: OpenSSL's ``s_server``.

``openssl s_server -Verify 1 -verify_return_error -www`` refuses a handshake without a client
certificate from the test CA (without ``-verify_return_error`` it only logs a certificate from another
CA, and goes on), logs the certificate it got (``depth=0 O = ..., CN = ...``) and, with ``-www``, answers
``GET /`` with a page that shows it (``Client certificate`` and its text). It is the judge of the
NSS and Chromium login tests: what it logged is what a real server saw.

The client side is made with the reference tools, as a user would: the key pair and certificate
on the token with OpenSC's pkcs11-tool, the NSS database with certutil and modutil.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cert_desk.x509.ca import PrivateKey, PublicKey, issue, make_root
from tests.conftest import USER_PIN, SoftHsm, require_tool

TOKEN = "test token"  # the label of conftest's token fixture


def name(common_name: str, organization: str = "cert-desk tests") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass(frozen=True)
class Pki:
    """A test CA and a server certificate for 127.0.0.1 it issued, as PEM files in ``directory``."""

    directory: Path
    ca_key: PrivateKey
    ca_cert: x509.Certificate
    ca_pem: Path
    server_pem: Path
    server_key: Path

    def issue_client(self, public_key: PublicKey, common_name: str) -> x509.Certificate:
        """A client certificate from this CA (the profile browsers accept) for a key on a token."""
        return issue(self.ca_key, self.ca_cert, public_key, name(common_name), profile="client")


def make_test_pki(directory: Path, ca_name: str = "cert-desk test CA") -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = make_root(name(ca_name))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = issue(ca_key, ca_cert, server_key.public_key(), name("127.0.0.1"), profile="server",
                        sans=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    pki = Pki(directory, ca_key, ca_cert, directory / "ca.pem", directory / "server.pem", directory / "server.key")
    pki.ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.server_pem.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    pki.server_key.write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    pki.server_key.chmod(0o600)
    return pki


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (s_server may still lose a race: retried)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def tls_server(pki: Pki, *, extra_args: Sequence[str] = (), client_auth: bool = True, ready_timeout: float = 10
               ) -> Iterator[tuple[str, Path]]:
    """Run ``openssl s_server -Verify 1 -verify_return_error -www`` on a free port of 127.0.0.1; yield (url, log path).

    ``client_auth=False`` leaves out ``-Verify 1``: a server that asks for no client certificate.

    Ready means s_server printed ``ACCEPT`` (it listens). Stopped afterwards: only the process
    started here, terminated and then killed by its PID.
    """
    openssl = require_tool("openssl")
    log_path = pki.directory / "s_server.log"
    verify = ["-Verify", "1", "-verify_return_error", "-CAfile", str(pki.ca_pem)] if client_auth else []
    for _attempt in range(3):
        port = free_port()
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                [openssl, "s_server", "-accept", f"127.0.0.1:{port}", *verify, "-cert", str(pki.server_pem),
                 "-key", str(pki.server_key), "-www", *extra_args],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if _wait_ready(proc, log_path, ready_timeout):
                yield f"https://127.0.0.1:{port}/", log_path
                return
            if proc.poll() is None:
                raise AssertionError(f"s_server did not listen within {ready_timeout} s:\n{log_path.read_text()}")
            if "in use" not in log_path.read_text(errors="replace"):
                raise AssertionError(f"s_server exited ({proc.returncode}):\n{log_path.read_text()}")
        finally:
            _stop(proc)
    raise AssertionError("s_server found no free port in three tries")


def _wait_ready(proc: subprocess.Popen[bytes], log_path: Path, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if "ACCEPT" in log_path.read_text(errors="replace"):
            return True
        time.sleep(0.02)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextmanager
def silent_server() -> Iterator[str]:
    """A TCP listener on 127.0.0.1 that accepts connections and never answers: a TLS client
    talking to it waits until its own timeout. Yields its https URL."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(4)  # the kernel completes the TCP handshake; nobody ever reads or writes
        yield f"https://127.0.0.1:{s.getsockname()[1]}/"


# ------------------------------------------------ the client side: a token certificate, an NSS database


def nss(*argv: str) -> str:
    """Run an NSS tool with stdin closed (modutil would prompt) and a timeout; its output."""
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def make_nss_db(directory: Path, module: str, ca_pem: Path | None) -> str:
    """A fresh NSS database with ``module`` registered and, when given, the CA trusted for TLS servers.
    (tstclnt is required here too: every test that makes a database logs in through it.)"""
    for tool in ("certutil", "modutil", "tstclnt"):
        require_tool(tool)
    directory.mkdir(parents=True)
    db = f"sql:{directory}"
    nss("certutil", "-N", "-d", db, "--empty-password")
    nss("modutil", "-add", "token module", "-libfile", module, "-dbdir", db, "-force")
    if ca_pem is not None:
        nss("certutil", "-A", "-n", "test CA", "-t", "C,,", "-d", db, "-a", "-i", str(ca_pem))
    return db


def put_client_certificate(softhsm: SoftHsm, pki: Pki, label: str, key_id: str, key_type: str,
                           common_name: str, *, token: str = TOKEN, pin: str = USER_PIN) -> x509.Certificate:
    """A key pair generated on the token and a client certificate for it from the test CA, written to the
    token with the key's label and ID (as a browser needs them to pair)."""
    softhsm.keypair(token, label, key_id, key_type, pin=pin)
    pub = pki.directory / f"{label}.pub.der"
    softhsm.tool("--token-label", token, "--read-object", "--type", "pubkey", "--id", key_id, "-o", str(pub))
    public_key = serialization.load_der_public_key(pub.read_bytes())
    cert = pki.issue_client(public_key, common_name)  # type: ignore[arg-type]
    der = pki.directory / f"{label}.der"
    der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    softhsm.tool("--token-label", token, "--write-object", str(der), "--type", "cert", "--label", label,
                 "--id", key_id, pin=pin)
    return cert
