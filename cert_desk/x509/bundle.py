"""Certificate and certificate-request files as users pick them, read safely.

A file that reaches the import code has passed every check here, so later code can use each
certificate without guarding against half-parsed input: cryptography parses public keys,
extensions and names lazily, which would otherwise turn a damaged file into a ValueError deep
inside an import job. The loader therefore touches all of them and reports the first problem as
an :class:`InputError` naming the file and the certificate.

Accepted: PEM (one or more ``CERTIFICATE`` / ``X509 CERTIFICATE`` blocks, human text before and
between them as ``openssl x509 -text`` and ``openssl s_client -showcerts`` write it), DER, and
PKCS#7 / CMS certificate bundles (``.p7b``/``.p7c``, DER or PEM ``PKCS7`` / ``CMS``). Anything else
is refused with the reason, including private keys (cert-desk keeps keys on the token and never
imports one), files larger than :data:`MAX_CERT_FILE_BYTES` (refused from ``stat`` before a byte is
read) and junk after the last PEM block (a sign of a damaged or concatenated file).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.utils import CryptographyDeprecationWarning

from cert_desk.errors import InputError

MAX_CERT_FILE_BYTES = 4 * 1024 * 1024
"""Certificate files are kilobytes; a bigger file is the wrong file, and is never read."""

FORMATS_HINT = (
    "cert-desk reads certificates as PEM (-----BEGIN CERTIFICATE-----, one or more), DER (.der, .cer) "
    "or PKCS#7 (.p7b, .p7c)."
)
_CSR_HINT = "Give a certificate request (CSR) as PEM (-----BEGIN CERTIFICATE REQUEST-----) or DER."

_CERT_LABELS = frozenset({"CERTIFICATE", "X509 CERTIFICATE"})
_PKCS7_LABELS = frozenset({"PKCS7", "CMS"})
_CSR_LABELS = frozenset({"CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"})
_BEGIN = re.compile(rb"-----BEGIN ([\x20-\x2c\x2e-\x7e]*)-----")

_PKCS7_OID = bytes.fromhex("06092a864886f70d0107")  # 1.2.840.113549.1.7, ContentInfo types
_SIGNED_DATA_OID = _PKCS7_OID + b"\x02"
_PKCS12_START = b"\x02\x01\x03\x30"  # PFX: version 3, then authSafe
_PRIVATE_KEY_STARTS = (b"\x02\x01\x00", b"\x02\x01\x01")  # PKCS#8 / PKCS#1 version 0, SEC 1 version 1

# What cryptography raises for malformed input, lazily parsed parts included.
_BAD = (ValueError, TypeError, UnsupportedAlgorithm, CryptographyDeprecationWarning,
        x509.DuplicateExtension, x509.UnsupportedGeneralNameType, x509.InvalidVersion)

CERTIFICATE = "certificate"
REQUEST = "certificate request"


@dataclass(frozen=True)
class CertificateFile:
    """The certificates of one file, in file order (at least one), each fully parsed."""

    certificates: tuple[x509.Certificate, ...]
    format: str  # "PEM", "DER", "PKCS#7 (DER)", "PKCS#7 (PEM)"
    source: str  # the file name, or "" for bytes


@dataclass(frozen=True)
class _PemBlock:
    number: int  # position in the file, from 1
    label: str
    body: bytes


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB ({n:,} bytes)" if n >= 1024 * 1024 else f"{n:,} bytes"


def _check_size(n: int, where: str) -> None:
    if n > MAX_CERT_FILE_BYTES:
        raise InputError(
            f"{where} is {_size(n)}; cert-desk reads certificate files of at most {_size(MAX_CERT_FILE_BYTES)}.",
            "A certificate file is a few kilobytes: is this the right file?",
        )


def _read(path: str | os.PathLike[str]) -> tuple[bytes, str]:
    """The file's bytes and its name; its size is checked with ``stat`` before it is opened."""
    name = os.fspath(path)
    try:
        st = os.stat(name)
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{name} is a folder, not a file.")
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{name} is not a regular file (a device, socket or pipe).")
        _check_size(st.st_size, name)  # an empty st_size proves nothing (/proc, /sys): the bytes read decide
        with open(name, "rb") as fh:
            data = fh.read(MAX_CERT_FILE_BYTES + 1)  # the file may have grown since stat
    except FileNotFoundError as e:
        raise InputError(f"{name} does not exist.") from e
    except OSError as e:
        raise InputError(f"Cannot read {name}: {e.strerror or e}.") from e
    return data, name


# ------------------------------------------------------------------------ PEM


def _pem_blocks(data: bytes, where: str) -> list[_PemBlock]:
    """Every PEM block, in order; text before and between blocks is allowed, anything after the last is not."""
    blocks: list[_PemBlock] = []
    pos = 0
    while (begin := _BEGIN.search(data, pos)) is not None:
        label = begin.group(1).decode("ascii")
        number = len(blocks) + 1
        between = data[pos:begin.start()]
        if blocks and (b"-----BEGIN" in between or b"-----END" in between):
            # a block whose BEGIN line is damaged: as 'text between blocks' a certificate would vanish silently
            raise InputError(f"{where} has a damaged PEM line between blocks {number - 1} and {number}.",
                             "Export or download the file again.")
        end_line = b"-----END " + begin.group(1) + b"-----"
        end = data.find(end_line, begin.end())
        following = data.find(b"-----BEGIN", begin.end())
        if end < 0 or 0 <= following < end:
            raise InputError(f"PEM block {number} ('{label}') of {where} has no END line: the file is truncated "
                             "or damaged.", "Export or download it again.")
        blocks.append(_PemBlock(number, label, data[begin.end():end]))
        pos = end + len(end_line)
    if not blocks:
        raise InputError(f"{where} has a '-----BEGIN' line that is not a complete PEM header.", FORMATS_HINT)
    junk = data[pos:].strip()
    if junk:
        raise InputError(f"{where} has {len(junk):,} bytes of something other than PEM after its last block.",
                         "The file is damaged or two files were joined; keep only the PEM blocks.")
    return blocks


def _decode(block: _PemBlock, where: str) -> bytes:
    try:
        return base64.b64decode(b"".join(block.body.split()), validate=True)
    except binascii.Error as e:
        raise InputError(f"PEM block {block.number} ('{block.label}') of {where} is damaged: its base64 text "
                         f"does not decode ({e}).", "Export or download it again.") from e


def _foreign(block: _PemBlock, where: str, wanted: str) -> InputError:
    what = f"PEM block {block.number} ('{block.label}') of {where}"
    if "PRIVATE KEY" in block.label:
        return InputError(f"{what} is a private key; cert-desk does not import private keys.",
                          "Keys are made on the token and never leave it. Give a file with only the certificates.")
    if block.label in _CSR_LABELS:
        return InputError(f"{what} is a certificate request (CSR), not a certificate.",
                          "Have it signed by your CA first, then import the certificate the CA sends back.")
    if wanted == REQUEST and block.label in _CERT_LABELS | _PKCS7_LABELS | {"TRUSTED CERTIFICATE"}:
        return InputError(f"{what} is a certificate, not a certificate request.", _CSR_HINT)
    if block.label == "TRUSTED CERTIFICATE":
        return InputError(
            f"{what} is in OpenSSL's trusted-certificate form: a certificate with trust settings that a token "
            "cannot keep and would silently lose.",
            "Convert it to a plain certificate: openssl x509 -in FILE -out cert.pem")
    return InputError(f"{what} is not a {wanted}.", FORMATS_HINT if wanted == CERTIFICATE else _CSR_HINT)


# ------------------------------------------------------------------------ DER


def _der_header(data: bytes) -> tuple[int, int | None] | None:
    """(header length, content length or None when indefinite) of a leading SEQUENCE, else None."""
    if len(data) < 2 or data[0] != 0x30:
        return None
    if data[1] < 0x80:
        return 2, data[1]
    if data[1] == 0x80:
        return 2, None
    count = data[1] & 0x7F
    if count > 4 or len(data) < 2 + count:
        return None
    return 2 + count, int.from_bytes(data[2:2 + count], "big")


def _parses(loader: Callable[[bytes], object], der: bytes) -> bool:
    try:
        loader(der)
    except _BAD:
        return False
    return True


def _der_problem(der: bytes, where: str, wanted: str, error: Exception) -> InputError:
    """Why ``der`` is not a ``wanted``, as precisely as its first bytes tell."""
    header = _der_header(der)
    hint = FORMATS_HINT if wanted == CERTIFICATE else _CSR_HINT
    if header is None:
        return InputError(f"{where} is not a {wanted} file: it is neither PEM text nor DER.", hint)
    start, length = header
    if length is not None and start + length > len(der):
        return InputError(f"{where} is truncated: its DER structure needs {start + length:,} bytes and there are "
                          f"only {len(der):,}.", "Export or download it again.")
    if length is not None and start + length < len(der):
        return InputError(f"{where} has {len(der) - start - length:,} bytes of something else after its DER "
                          "structure.", "The file is damaged or two files were joined.")
    content = der[start:start + 4]
    if content == _PKCS12_START:
        return InputError(f"{where} is a PKCS#12 (.p12/.pfx) file; PKCS#12 is not supported here.",
                          "It holds a private key too, which cert-desk does not import. Extract the certificates: "
                          "openssl pkcs12 -in FILE -nokeys -out certs.pem")
    if content[:3] in _PRIVATE_KEY_STARTS:
        return InputError(f"{where} looks like a private key (DER); cert-desk does not import private keys.",
                          "Keys are made on the token and never leave it.")
    if wanted == CERTIFICATE and _parses(x509.load_der_x509_csr, der):
        return InputError(f"{where} is a certificate request (CSR), not a certificate.",
                          "Have it signed by your CA first, then import the certificate the CA sends back.")
    if wanted == REQUEST and _parses(x509.load_der_x509_certificate, der):
        return InputError(f"{where} is a certificate, not a certificate request.", _CSR_HINT)
    return InputError(f"{where} is not a valid DER {wanted} ({error}).", hint)


# ------------------------------------------------------------------ certificates


def _pkcs7_certificates(der: bytes, where: str) -> list[x509.Certificate]:
    if _SIGNED_DATA_OID not in der[:20]:
        raise InputError(f"{where} is a PKCS#7/CMS file of another kind (encrypted or plain data), "
                         "with no certificates in it.", FORMATS_HINT)
    try:
        certs = pkcs7.load_der_pkcs7_certificates(der)
    except _BAD as e:
        if "no certificate" in str(e):
            certs = []
        else:
            raise InputError(f"{where} is a damaged PKCS#7 file ({e}).", "Export or download it again.") from e
    if not certs:
        raise InputError(f"{where} is a PKCS#7 file with no certificates in it.",
                         "Export the bundle again with its certificates (openssl crl2pkcs7 -nocrl -certfile ...).")
    return certs


def _forbidden(what: str, warning: CryptographyDeprecationWarning) -> InputError:
    """A certificate that parses but breaks a rule of RFC 5280 cryptography will soon enforce."""
    return InputError(f"{what}: the certificate cannot be used ({warning}).", "Ask its issuer for a corrected one.")


def _certificate(der: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except CryptographyDeprecationWarning as e:
        raise _forbidden(what, e) from e
    except _BAD as e:
        raise InputError(f"{what} is not a valid certificate ({e}).", "Export or download it again.") from e


def _from_pem(data: bytes, where: str) -> tuple[list[x509.Certificate], str]:
    certs: list[x509.Certificate] = []
    fmt = "PEM"
    for block in _pem_blocks(data, where):
        if block.label in _CERT_LABELS:
            certs.append(_certificate(_decode(block, where), f"PEM block {block.number} of {where}"))
        elif block.label in _PKCS7_LABELS:
            certs += _pkcs7_certificates(_decode(block, where), f"PEM block {block.number} of {where}")
            fmt = "PKCS#7 (PEM)"
        else:
            raise _foreign(block, where, CERTIFICATE)
    return certs, fmt


def _from_der(data: bytes, where: str) -> tuple[list[x509.Certificate], str]:
    try:
        return [x509.load_der_x509_certificate(data)], "DER"
    except CryptographyDeprecationWarning as e:
        raise _forbidden(where, e) from e
    except _BAD as e:
        error: Exception = e
    if _PKCS7_OID in data[:20]:
        return _pkcs7_certificates(data, where), "PKCS#7 (DER)"
    raise _der_problem(data, where, CERTIFICATE, error)


def _check_certificates(certs: Sequence[x509.Certificate], where: str) -> None:
    """Parse everything cryptography parses lazily, so later code meets no surprise."""
    for number, cert in enumerate(certs, 1):
        try:
            cert.public_key()
            for ext in cert.extensions:
                _ = ext.value
            _ = (cert.subject, cert.issuer, cert.serial_number, cert.not_valid_before_utc, cert.not_valid_after_utc,
                 cert.signature_algorithm_oid, cert.signature_hash_algorithm)
        except _BAD as e:
            raise InputError(f"Certificate {number} of {len(certs)} in {where} cannot be used: {e}",
                             "Its public key, an extension or its signature algorithm is malformed or unsupported.",
                             ) from e


def load_certificates(data: bytes, source: str = "") -> CertificateFile:
    """The certificates in ``data`` (PEM, DER or PKCS#7), each checked to be fully usable.

    Raises:
        InputError: anything but usable certificates, with the reason (see the module's docstring).
    """
    where = source or "the data"
    if not data:
        raise InputError(f"{where} is empty.", FORMATS_HINT)
    _check_size(len(data), where)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CryptographyDeprecationWarning)
        # cryptography reads BER-encoded PKCS#7 (Windows exports) after warning that it is not DER
        warnings.filterwarnings("ignore", message="PKCS#7 certificates could not be parsed as DER")
        certs, fmt = _from_pem(data, where) if b"-----BEGIN" in data else _from_der(data, where)
        _check_certificates(certs, where)
    return CertificateFile(tuple(certs), fmt, source)


def read_certificate_file(path: str | os.PathLike[str]) -> CertificateFile:
    """:func:`load_certificates` on a file; a directory, an unreadable or too large file is refused unread."""
    data, name = _read(path)
    return load_certificates(data, name)


# ------------------------------------------------------------ certificate requests


def load_csr(data: bytes, source: str = "") -> x509.CertificateSigningRequest:
    """One certificate request, PEM or DER, checked to be usable and signed by the key it carries.

    Raises:
        InputError: not exactly one usable CSR (the same refusals as :func:`load_certificates`).
    """
    where = source or "the data"
    if not data:
        raise InputError(f"{where} is empty.", FORMATS_HINT)
    _check_size(len(data), where)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CryptographyDeprecationWarning)
        der = data
        if b"-----BEGIN" in data:
            blocks = _pem_blocks(data, where)
            for block in blocks:
                if block.label not in _CSR_LABELS:
                    raise _foreign(block, where, REQUEST)
            if len(blocks) > 1:
                raise InputError(f"{where} has {len(blocks)} certificate requests; cert-desk takes one at a time.",
                                 "Give each request in its own file.")
            der = _decode(blocks[0], where)
        try:
            csr = x509.load_der_x509_csr(der)
        except _BAD as e:
            raise _der_problem(der, where, REQUEST, e) from e
        try:
            csr.public_key()
            for ext in csr.extensions:
                _ = ext.value
            _ = (csr.subject, csr.signature_hash_algorithm)
            signed = csr.is_signature_valid
        except _BAD as e:
            raise InputError(f"The certificate request in {where} cannot be used: {e}",
                             "Its public key, an extension or its signature algorithm is malformed or unsupported.",
                             ) from e
    if not signed:
        raise InputError(f"The signature of the certificate request in {where} does not verify: the request is "
                         "damaged or was not signed with the key it contains.", "Make the request again.")
    return csr


def read_csr_file(path: str | os.PathLike[str]) -> x509.CertificateSigningRequest:
    """:func:`load_csr` on a file, with the same checks as :func:`read_certificate_file`."""
    data, name = _read(path)
    return load_csr(data, name)
