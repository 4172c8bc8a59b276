"""The command line a user could type for what the window just did.

The Activity panel shows one for every operation, so a helpdesk user can repeat or script it,
and learns the reference tools on the way. PINs are always written as ``env:PIN`` /
``env:SO_PIN`` (pkcs11-tool reads them from the environment), never as their value.
"""

from __future__ import annotations

import shlex

from cert_desk.models import TokenRef

PIN = "env:PIN"
SO_PIN = "env:SO_PIN"


def _join(argv: list[str]) -> str:
    return shlex.join(argv)


def _token(ref: TokenRef) -> list[str]:
    # A label survives SoftHSM2's slot renumbering; an empty label needs the slot ID.
    return ["--token-label", ref.label] if ref.label else ["--slot", str(ref.slot_id)]


def _login(so: bool) -> list[str]:
    # SO_PIN and PIN are "env:..." references, never a PIN value
    return ["--login", "--login-type", "so", "--so-pin", SO_PIN] if so else ["--login", "--pin", PIN]  # ok-pin


def library_info(module: str) -> str:
    return _join(["pkcs11-tool", "--module", module, "--show-info"])


def slots(module: str) -> str:
    return _join(["pkcs11-tool", "--module", module, "--list-slots"])


def mechanisms(module: str, slot_id: int) -> str:
    return _join(["pkcs11-tool", "--module", module, "--slot", str(slot_id), "--list-mechanisms"])


def objects(ref: TokenRef, *, logged_in: bool) -> str:
    argv = ["pkcs11-tool", "--module", ref.module, *_token(ref), "--list-objects"]
    if logged_in:
        argv += _login(False)
    return _join(argv)


def login(ref: TokenRef, *, so: bool = False) -> str:
    """pkcs11-tool logs in for one command; listing the objects shows that the PIN works."""
    return _join(["pkcs11-tool", "--module", ref.module, *_token(ref), *_login(so), "--list-objects"])


def read_object(ref: TokenRef, kind: str, object_id: bytes, label: str, path: str) -> str:
    """pkcs11-tool writes DER; ``kind`` is ``cert`` or ``pubkey``."""
    select = ["--id", object_id.hex()] if object_id else ["--label", label]
    return _join(["pkcs11-tool", "--module", ref.module, *_token(ref), "--read-object", "--type", kind, *select,
                  "--output-file", path])


def export_certificate(ref: TokenRef, object_id: bytes, label: str, path: str, fmt: str) -> str:
    if fmt == "der":
        return read_object(ref, "cert", object_id, label, path)
    der = path + ".der"
    return (read_object(ref, "cert", object_id, label, der) + " && "
            + _join(["openssl", "x509", "-inform", "DER", "-in", der, "-out", path]))


def export_public_key(ref: TokenRef, object_id: bytes, label: str, path: str, fmt: str) -> str:
    if fmt == "der":
        return read_object(ref, "pubkey", object_id, label, path)
    der = path + ".der"
    return (read_object(ref, "pubkey", object_id, label, der) + " && "
            + _join(["openssl", "pkey", "-pubin", "-inform", "DER", "-in", der, "-out", path]))


def keygen(ref: TokenRef, spec: str, label: str, object_id: bytes | None) -> str:
    """pkcs11-tool spells EC types ``EC:prime256v1`` and RSA ``rsa:2048``."""
    kind, _, arg = spec.partition(":")
    key_type = f"EC:{arg}" if kind.lower() == "ec" else f"rsa:{arg}"
    argv = ["pkcs11-tool", "--module", ref.module, *_token(ref), *_login(False), "--keypairgen",
            "--key-type", key_type, "--label", label]
    if object_id:
        argv += ["--id", object_id.hex()]
    return _join(argv)


def delete(ref: TokenRef, kind: str, object_id: bytes) -> str:
    """``kind``: privkey, pubkey or cert."""
    return _join(["pkcs11-tool", "--module", ref.module, *_token(ref), *_login(False), "--delete-object",
                  "--type", kind, "--id", object_id.hex()])


def write_certificate(ref: TokenRef, der_path: str, object_id: bytes, label: str) -> str:
    argv = ["pkcs11-tool", "--module", ref.module, *_token(ref), *_login(False), "--write-object", der_path,
            "--type", "cert", "--label", label]
    if object_id:
        argv += ["--id", object_id.hex()]
    return _join(argv)


def csr(key_uri: str, subject: str, out: str) -> str:
    """The seed's way: OpenSSL with libp11's engine, configured through OPENSSL_CONF."""
    # -utf8: openssl reads -subj as Latin-1 otherwise (cert-desk writes the subject as UTF-8)
    return "OPENSSL_CONF=engine.cnf " + _join(["openssl", "req", "-new", "-engine", "pkcs11", "-keyform", "engine",
                                               "-key", key_uri, "-utf8", "-subj", subject, "-sha256", "-out", out])


def ca_sign(ca_cert: str, ca_key: str, csr_path: str, out: str, profile: str) -> str:
    ext = "usr_cert" if profile == "client" else "server_cert"
    return _join(["openssl", "ca", "-batch", "-cert", ca_cert, "-keyfile", ca_key, "-passin", "env:CA_PASS",
                  "-in", csr_path, "-out", out, "-extensions", ext, "-notext"])


def verify(cert: str, ca: str) -> str:
    return _join(["openssl", "verify", "-x509_strict", "-CAfile", ca, cert])


def modutil_add(db_spec: str, name: str, library: str) -> str:
    return _join(["modutil", "-dbdir", db_spec, "-add", name, "-libfile", library, "-force"])


def modutil_delete(db_spec: str, name: str) -> str:
    return _join(["modutil", "-dbdir", db_spec, "-delete", name, "-force"])


def modutil_list(db_spec: str) -> str:
    return _join(["modutil", "-dbdir", db_spec, "-list"])


def certutil_token(db_spec: str, token: str) -> str:
    return _join(["certutil", "-L", "-d", db_spec, "-h", token, "-f", "PINFILE"])


def tstclnt(db_spec: str, nickname: str, host: str, port: int) -> str:
    return _join(["tstclnt", "-d", db_spec, "-n", nickname, "-W", "PINFILE", "-h", host, "-p", str(port),
                  "-A", "request.txt", "-O", "-v", "-v", "-b"])
