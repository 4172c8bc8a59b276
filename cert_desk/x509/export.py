"""Certificates and public keys to files, as PEM or DER (no token calls: the data is already read)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from cert_desk.errors import InputError
from cert_desk.models import CertificateInfo


def certificate_bytes(cert: CertificateInfo, fmt: str) -> bytes:
    return cert.pem().encode("ascii") if fmt == "pem" else cert.der


def public_key_bytes(spki_der: bytes, fmt: str) -> bytes:
    if fmt == "der":
        return spki_der
    try:
        key = serialization.load_der_public_key(spki_der)
    except (ValueError, TypeError) as e:
        raise InputError(f"The public key cannot be encoded: {e}") from e
    except UnsupportedAlgorithm as e:  # a certificate's key of an algorithm cryptography does not know (SM2, ...)
        raise InputError(f"The public key's algorithm is one cert-desk cannot write as PEM ({e}).",
                         "Export it as DER: that is the key exactly as the certificate holds it.") from e
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def format_for(path: str, chosen: str | None = None) -> str:
    """``pem`` or ``der``: what the user chose, else what the file name says (``.der``/``.cer`` are DER)."""
    if chosen in ("pem", "der"):
        return chosen
    return "der" if Path(path).suffix.lower() in (".der", ".cer") else "pem"


def write_file(path: str, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically (a temporary file, then rename); returns the path."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise InputError(f"{target} is a directory.")
    if not target.parent.is_dir():
        raise InputError(f"The folder {target.parent} does not exist.")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        raise InputError(f"Cannot write {target}: {e.strerror or e}") from e
    return str(target)
