"""A small local CA with cryptography: the seed's ``openssl ca`` step, without a terminal.

A CA lives in a directory: ``ca.crt`` (the self-signed root, PEM) and ``ca.key`` (its key,
PEM PKCS#8, encrypted when a passphrase is given, mode 0600). :func:`init_ca` makes one,
:func:`load_ca` reads one back with every check ``openssl ca`` would leave to a failed
verify later (key matches certificate, the certificate is a usable CA), and
:func:`sign_csr` turns a certificate request into an end-entity certificate.

End-entity certificates follow the profile browsers accept: basicConstraints CA:FALSE,
keyUsage digitalSignature (and keyEncipherment for RSA), extendedKeyUsage clientAuth
(or serverAuth), SKI/AKI, a random positive 127-bit serial, and never keyCertSign:
``openssl verify`` accepts a leaf with keyCertSign but ``-x509_strict``, cryptography's
verifier and Chrome reject it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TypeVar

from asn1crypto import core as asn1_core
from asn1crypto import keys as asn1_keys
from cryptography import x509
from cryptography.exceptions import InternalError, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from cert_desk.errors import InputError

log = logging.getLogger(__name__)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

MAX_FILE_BYTES = 1 << 20
"""Certificates and keys are a few KiB; anything past 1 MiB is the wrong file and is refused unread."""

PROFILES = {"client": ExtendedKeyUsageOID.CLIENT_AUTH, "server": ExtendedKeyUsageOID.SERVER_AUTH}
CA_KEY_TYPES: dict[str, Callable[[], PrivateKey]] = {
    "rsa:2048": lambda: rsa.generate_private_key(65537, 2048),
    "rsa:3072": lambda: rsa.generate_private_key(65537, 3072),
    "rsa:4096": lambda: rsa.generate_private_key(65537, 4096),
    "ec:prime256v1": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ec:secp384r1": lambda: ec.generate_private_key(ec.SECP384R1()),
}
MIN_RSA_BITS = 2048
MIN_EC_BITS = 256
MAX_PBKDF2_ITERATIONS = 2_000_000
MAX_SCRYPT_COST = 1 << 21
"""The most work (PBKDF2 rounds; scrypt N·r·p) an encrypted CA key may demand before its passphrase can
even be checked. The file's author chooses it: OpenSSL and cryptography write 2048 rounds or N·r·p = 2**17,
while 2**31 rounds take minutes and scrypt with N = 2**20, r = 8 takes seconds and a GiB of memory."""
MAX_DAYS = 100 * 366  # keeps every end date inside what X.509 (and datetime) can write
_Ext = TypeVar("_Ext", bound=x509.ExtensionType)
BACKDATE = timedelta(minutes=5)  # notBefore slightly in the past: a verifier whose clock lags still accepts


def random_serial() -> int:
    """A positive serial of up to 127 random bits (RFC 5280: at most 20 octets, positive)."""
    return secrets.randbits(127) | (1 << 64)


def make_root(subject: x509.Name, *, days: int = 3650, key: PrivateKey | None = None
              ) -> tuple[PrivateKey, x509.Certificate]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC) - BACKDATE
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(random_serial())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    public_key: PublicKey,
    subject: x509.Name,
    *,
    profile: str = "client",
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    days: int = 365,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    """Issue an end-entity certificate for ``public_key``.

    The AKI repeats the CA certificate's own SKI when it has one: a CA made elsewhere may
    compute its key identifier another way, and a verifier looks the issuer up by it.
    """
    if profile not in PROFILES:
        raise InputError(f"Unknown certificate profile {profile!r}.", "Use 'client' or 'server'.")
    start = not_before or datetime.now(UTC) - BACKDATE
    end = not_after or start + timedelta(days=days)
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    ca_ski = _find(ca_cert.extensions, x509.SubjectKeyIdentifier)
    aki = (x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski) if ca_ski
           else x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(random_serial())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=is_rsa,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([PROFILES[profile]]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(aki, critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


# ------------------------------------------------------------------ the CA directory


@dataclass(frozen=True)
class CaPaths:
    """Where :func:`init_ca` put the CA.

    Attributes:
        directory: The CA directory (absolute).
        cert: ``DIR/ca.crt``, the CA certificate (PEM).
        key: ``DIR/ca.key``, its key (PEM PKCS#8, encrypted when a passphrase was given, mode 0600).
    """

    directory: str
    cert: str
    key: str


@dataclass(frozen=True)
class LoadedCa:
    """A CA certificate and its key, checked to belong together and to be a usable CA."""

    cert: x509.Certificate
    key: PrivateKey


def init_ca(directory: str | os.PathLike[str], subject: x509.Name, *, key_type: str = "ec:prime256v1",
            days: int = 3650, passphrase: bytes | None = None) -> CaPaths:
    """Create a CA in ``directory``: a new key and a self-signed CA certificate.

    An existing ``ca.crt`` or ``ca.key`` is never overwritten: a CA key that other
    certificates chain to cannot be made again. Both files are written to temporary names
    first and renamed at the end, so a failure leaves neither half-written.
    """
    new_key = CA_KEY_TYPES.get(key_type.strip().lower())
    if new_key is None:
        raise InputError(f"Unknown CA key type {key_type!r}.", f"Use one of {', '.join(CA_KEY_TYPES)}.")
    _check_days(days)
    if not list(subject):
        raise InputError("The CA subject is empty.", "Give the CA a name, at least a common name (CN).")
    if passphrase is not None and not passphrase:
        raise InputError("The CA key passphrase is empty.", "Give a passphrase, or none to leave ca.key unencrypted.")
    target = Path(directory).expanduser().absolute()
    paths = CaPaths(str(target), str(target / "ca.crt"), str(target / "ca.key"))
    for path in (paths.cert, paths.key):
        if os.path.lexists(path):
            raise InputError(f"{path} already exists; cert-desk does not overwrite a CA.",
                             "Choose an empty directory for the new CA, or use the CA that is there.")
    if target.exists() and not target.is_dir():
        raise InputError(f"{target} is not a directory.", "Choose a directory for the CA.")
    try:
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"Cannot create the CA directory {target}: {e.strerror or e}") from e

    key, cert = make_root(subject, days=days, key=new_key())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    _write_files(target, [(paths.key, key_pem, 0o600),
                          (paths.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)])
    log.info("created a CA in %s (%s, %s)", target, key_type, "encrypted key" if passphrase else "plain key")
    return paths


def _check_days(days: int) -> None:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise InputError(f"The validity of {days!r} days is not a whole number from 1 to {MAX_DAYS}.")


def _write_files(directory: Path, files: list[tuple[str, bytes, int]]) -> None:
    """Write every file to a temporary name in ``directory``, then rename them all into place.

    mkstemp creates each temporary file 0600, so the key is never readable by others, not
    even while it is written.
    """
    temps: list[tuple[str, str, int]] = []
    done: list[str] = []
    try:
        for path, data, mode in files:
            fd, tmp = tempfile.mkstemp(prefix=f".{Path(path).name}.", dir=directory)
            temps.append((tmp, path, mode))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)
        for tmp, path, _mode in temps:
            os.replace(tmp, path)
            done.append(path)
    except OSError as e:
        for tmp, _path, _mode in temps:
            Path(tmp).unlink(missing_ok=True)
        for path in done:
            Path(path).unlink(missing_ok=True)
        raise InputError(f"Cannot write the CA files in {directory}: {e.strerror or e}") from e


def load_ca(cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str],
            passphrase: Callable[[], bytes | None] | bytes | None = None) -> LoadedCa:
    """Read a CA certificate and its key, and check that they make a CA that can sign today.

    ``passphrase`` may be a callable (a prompt): it is called only when the key is
    encrypted, so nobody is asked for a passphrase a plain key does not need.
    """
    cert_file, key_file = Path(cert_path).expanduser(), Path(key_path).expanduser()
    cert = _parse_certificate(cert_file, _read_small(cert_file))
    key = _parse_key(key_file, _read_small(key_file), passphrase)

    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, spki) != cert.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ):
        raise InputError(f"The key {key_file.name} does not belong to the CA certificate {cert_file.name}: "
                         "their public keys differ.",
                         "Give the key that was made with this CA certificate.")
    _check_is_ca(cert, cert_file)
    end = cert.not_valid_after_utc
    if end <= datetime.now(UTC):
        raise InputError(f"The CA certificate {cert_file.name} expired on {end:%Y-%m-%d %H:%M} UTC.",
                         "Make a new CA (and issue new certificates with it), or renew this one.")
    return LoadedCa(cert, key)


def _read_small(path: Path) -> bytes:
    """The file's bytes; refused unread when it is bigger than :data:`MAX_FILE_BYTES`."""
    try:
        with path.open("rb") as fh:
            if os.fstat(fh.fileno()).st_size > MAX_FILE_BYTES:
                raise InputError(f"{path} is bigger than 1 MiB: it is not a certificate or a key.",
                                 "Check that you chose the right file.")
            data = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError as e:
        raise InputError(f"{path} does not exist.", "Check the path.") from e
    except OSError as e:
        raise InputError(f"Cannot read {path}: {e.strerror or e}") from e
    if len(data) > MAX_FILE_BYTES:  # a device or a file that grew while we looked
        raise InputError(f"{path} is bigger than 1 MiB: it is not a certificate or a key.",
                         "Check that you chose the right file.")
    return data


def _is_pem(data: bytes) -> bool:
    return b"-----BEGIN " in data


def _parse_certificate(path: Path, data: bytes) -> x509.Certificate:
    """The CA certificate: the first of the file, checked as every certificate file is (bundle.py:
    a duplicated extension or an unknown key algorithm is an InputError, not a crash)."""
    from cert_desk.x509.bundle import load_certificates

    try:
        return load_certificates(data, str(path)).certificates[0]
    except InputError as e:
        raise InputError(f"{path} is not a usable CA certificate: {e.message}",
                         "Give the CA certificate, for example DIR/ca.crt.") from e


def _parse_key(path: Path, data: bytes, passphrase: Callable[[], bytes | None] | bytes | None) -> PrivateKey:
    load = serialization.load_pem_private_key if _is_pem(data) else serialization.load_der_private_key
    not_a_key = InputError(f"{path} is not a private key (PEM or DER), or it is damaged.",
                           "Give the CA key, for example DIR/ca.key.")
    try:
        key = load(data, None)
    except TypeError:  # cryptography's way of saying "encrypted, and no password given"
        if work := _excessive_kdf(data):
            raise InputError(f"{path.name} is encrypted with {work}: more work than any key needs, so it is "
                             "not opened.", "Re-encrypt it: openssl pkcs8 -topk8 -v2 aes-256-cbc -passin env:OLD "
                             "-passout env:NEW.") from None
        secret = passphrase() if callable(passphrase) else passphrase
        if not secret:
            raise InputError(f"{path.name} is encrypted and no passphrase was given.",
                             "Give the passphrase of the CA key.") from None
        try:
            key = load(data, secret)
        except (ValueError, TypeError):
            raise InputError(f"The passphrase for {path.name} is wrong.",
                             "Type it again, minding the keyboard layout and Caps Lock.") from None
        except InternalError as e:  # OpenSSL refused the KDF's parameters (scrypt with N=0, ...)
            raise InputError(f"{path.name} cannot be decrypted: the parameters of its encryption are invalid.",
                             "The file is damaged; use a backup of the CA key.") from e
        except UnsupportedAlgorithm as e:
            raise InputError(f"{path.name} is encrypted with a cipher cert-desk cannot read.",
                             "Re-encrypt it: openssl pkcs8 -topk8 -v2 aes-256-cbc -passin env:OLD "
                             "-passout env:NEW.") from e
    except (ValueError, UnsupportedAlgorithm) as e:
        raise not_a_key from e
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise InputError(f"{path} holds a key that is neither RSA nor EC.", "Use an RSA or EC CA key.")
    return key


_SCRYPT = "1.3.6.1.4.1.11591.4.11"
_ENCRYPTED_PEM = re.compile(rb"-----BEGIN ENCRYPTED PRIVATE KEY-----(.*?)-----END ENCRYPTED PRIVATE KEY-----", re.S)


def _excessive_kdf(data: bytes) -> str | None:
    """The KDF of an encrypted PKCS#8 key, in words, when it demands more than the bounds above; else None.

    cryptography would run whatever the file asks for; what does not parse here is left to it to refuse.
    """
    try:
        ders = ([base64.b64decode(b"".join(m.group(1).split()), validate=True) for m in _ENCRYPTED_PEM.finditer(data)]
                if _is_pem(data) else [data])
    except binascii.Error:
        return None
    for der in ders:
        try:
            algorithm = asn1_keys.EncryptedPrivateKeyInfo.load(der)["encryption_algorithm"]
            kdf = algorithm["parameters"]["key_derivation_func"] if algorithm["algorithm"].native == "pbes2" else None
            if kdf is not None and kdf["algorithm"].dotted == _SCRYPT:
                # scrypt-params (RFC 7914), which asn1crypto does not know: salt, N, r, p [, key length]
                _salt, *values = asn1_core.load(kdf["parameters"].dump()).native.values()
                n, r, p = (int(v) for v in values[:3])
                if any(abs(v) > MAX_SCRYPT_COST for v in (n, r, p)) or abs(n * r * p) > MAX_SCRYPT_COST:
                    return f"scrypt N={n}, r={r}, p={p}"
            elif (rounds := int(algorithm.kdf_iterations)) > MAX_PBKDF2_ITERATIONS:
                return f"{rounds:,} rounds of {algorithm.kdf}"
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
    return None


def _check_is_ca(cert: x509.Certificate, path: Path) -> None:
    """basicConstraints CA:TRUE and keyUsage keyCertSign, as a strict verifier demands of an issuer."""
    hint = "Give a CA certificate (one made by init_ca, or with basicConstraints CA:TRUE and keyUsage keyCertSign)."
    try:
        extensions = cert.extensions
    except ValueError as e:
        raise InputError(f"{path.name} has damaged extensions: {e}", hint) from e
    constraints = _find(extensions, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        raise InputError(f"{path.name} is not a CA certificate: it lacks basicConstraints CA:TRUE.", hint)
    usage = _find(extensions, x509.KeyUsage)
    if usage is None or not usage.key_cert_sign:
        raise InputError(f"{path.name} may not sign certificates: its keyUsage lacks keyCertSign.", hint)


def _find(extensions: x509.Extensions, kind: type[_Ext]) -> _Ext | None:
    try:
        return extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


# ------------------------------------------------------------------ dates and signing


_ASN1_TIME = re.compile(r"(\d{2}|\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ].+")


def parse_not_after(text: str) -> datetime:
    """An end date as ``openssl ca -enddate`` or a person writes it, as an aware UTC datetime.

    Forms: ``YYYYMMDDHHMMSSZ`` (GeneralizedTime) and ``YYMMDDHHMMSSZ`` (UTCTime: years 50-99
    are 19xx, 00-49 are 20xx, as RFC 5280 reads them); ISO 8601 dates and datetimes. A bare
    date means the end of that day (``2030-12-31`` is valid through 23:59:59 UTC), since
    "valid until the 31st" includes the 31st. A datetime without an offset is UTC.
    """
    value = text.strip().upper()
    try:
        if m := _ASN1_TIME.fullmatch(value):
            year, month, day, hour, minute, second = (int(g) for g in m.groups())
            if len(m.group(1)) == 2:
                year += 1900 if year >= 50 else 2000
            return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        if _ISO_DATE.fullmatch(value):
            return datetime.combine(date.fromisoformat(value), time(23, 59, 59), tzinfo=UTC)
        if _ISO_DATETIME.fullmatch(value):
            return _utc(datetime.fromisoformat(value))
    except (ValueError, OverflowError) as e:  # OverflowError: an offset that moves year 1 or 9999 out of range
        raise InputError(f"The end date {text!r} is not a real date and time: {e}.") from e
    raise InputError(f"The end date {text!r} is not in a form cert-desk reads.",
                     "Write it as 20301231235959Z (openssl's form), 2030-12-31 or 2030-12-31T23:59:59Z.")


def _utc(moment: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def sign_csr(ca: LoadedCa, csr: x509.CertificateSigningRequest, *, profile: str = "client",
             days: int | None = None, not_after: datetime | None = None, now: datetime | None = None
             ) -> x509.Certificate:
    """Issue an end-entity certificate for a certificate request, as ``openssl ca`` would.

    Only the subject, the public key and the subjectAltName are taken from the request; any
    other extension it asks for (CA:TRUE, keyCertSign, ...) is ignored, and the certificate
    gets the ``client`` or ``server`` profile of :func:`issue`.

    The certificate ends ``days`` (default 365) after ``now``, or at ``not_after``. An end
    past the CA certificate's own end is **refused**, not clamped: the user would otherwise
    get a shorter certificate than asked for without noticing, and a certificate cannot
    outlive its issuer anyway (verification fails once the CA has expired). The message
    gives the CA's end date and the most days that still fit.
    """
    try:
        signature_ok = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as e:
        raise InputError(f"The CSR's signature cannot be checked: {e}",
                         "Make the request with an RSA or EC key and SHA-256.") from e
    if not signature_ok:
        raise InputError("The CSR's signature does not verify: it was changed after signing, "
                         "or signed with another key.", "Make the request again and send it unchanged.")
    if profile not in PROFILES:
        raise InputError(f"Unknown certificate profile {profile!r}.", "Use 'client' or 'server'.")
    public_key = _csr_public_key(csr)
    if not list(csr.subject):
        raise InputError("The CSR has an empty subject.", "Make the request with a subject, e.g. -subj '/CN=name'.")
    sans = _csr_sans(csr)

    start = _utc(now) if now is not None else datetime.now(UTC)
    if days is not None and not_after is not None:
        raise InputError("Both a number of days and an end date were given.", "Give one of them.")
    if not_after is None:
        days = 365 if days is None else days
        _check_days(days)
        end = start + timedelta(days=days)
    else:
        end = _utc(not_after)
    end = end.replace(microsecond=0)  # X.509 times have whole seconds: check what will be written
    if end <= start:
        raise InputError(f"The end date {end:%Y-%m-%d %H:%M:%S} UTC is in the past.", "Give a date in the future.")
    ca_end = ca.cert.not_valid_after_utc
    if end > ca_end:
        most = (ca_end - start).days
        raise InputError(
            f"The end date {end:%Y-%m-%d %H:%M:%S} UTC is after the CA certificate's own end, "
            f"{ca_end:%Y-%m-%d %H:%M:%S} UTC.",
            f"Give an end date up to the CA's, or at most {most} days." if most >= 1
            else "The CA expires within a day: make or renew the CA first.",
        )
    cert = issue(ca.key, ca.cert, public_key, csr.subject, profile=profile,
                 not_before=start - BACKDATE, not_after=end, sans=sans)
    log.info("issued a %s certificate for %s, serial %x, until %s", profile, csr.subject.rfc4514_string(),
             cert.serial_number, end.isoformat())
    return cert


def _csr_public_key(csr: x509.CertificateSigningRequest) -> PublicKey:
    try:
        key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as e:
        raise InputError(f"The CSR's public key cannot be read: {e}", "Make the request with an RSA or EC key.") from e
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise InputError(f"The CSR's RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are needed.",
                             "Make a new key of 2048 bits or more (or an EC key) and a new request.")
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.key_size < MIN_EC_BITS:
            raise InputError(f"The CSR's EC key is on {key.curve.name}, a curve too small to trust.",
                             "Make a new key on prime256v1 or secp384r1 and a new request.")
        return key
    raise InputError(f"The CSR's key is a {type(key).__name__}; cert-desk issues certificates for RSA and EC keys.",
                     "Make the request with an RSA or EC key.")


def _csr_sans(csr: x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    try:
        requested = _find(csr.extensions, x509.SubjectAlternativeName)
    except ValueError as e:
        raise InputError(f"The CSR's extension request is damaged: {e}", "Make the request again.") from e
    return list(requested or [])
