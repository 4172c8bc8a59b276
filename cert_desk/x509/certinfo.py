"""Parse certificates into :class:`cert_desk.models.CertificateInfo`.

Built on cryptography; every malformed input ends in :class:`cert_desk.errors.InputError`,
never in a cryptography exception.
"""

from __future__ import annotations

import hashlib
import warnings
from datetime import UTC

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cert_desk.errors import InputError
from cert_desk.models import CertificateInfo
from cert_desk.x509.keys import curve_display_name, spki_sha256

MAX_CERTIFICATE_BYTES = 256 * 1024

_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
    ExtendedKeyUsageOID.SMARTCARD_LOGON: "msSmartcardLogin",
    ExtendedKeyUsageOID.KERBEROS_PKINIT_KDC: "pkInitKDC",
    ExtendedKeyUsageOID.IPSEC_IKE: "ipsecIKE",
}

_KU_FIELDS = (
    ("digital_signature", "digitalSignature"),
    ("content_commitment", "nonRepudiation"),
    ("key_encipherment", "keyEncipherment"),
    ("data_encipherment", "dataEncipherment"),
    ("key_agreement", "keyAgreement"),
    ("key_cert_sign", "keyCertSign"),
    ("crl_sign", "cRLSign"),
)


def colon_hex(data: bytes) -> str:
    return data.hex(":").upper()


def _common_name(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if attrs:
        value = attrs[0].value
        return value if isinstance(value, str) else value.decode("utf-8", errors="replace")
    # No CN (common for some CAs): fall back to the most specific RDN
    for rdn in reversed(list(name.rdns)):
        for attr in rdn:
            value = attr.value
            return value if isinstance(value, str) else value.decode("utf-8", errors="replace")
    return ""


def _key_usage(ku: x509.KeyUsage) -> tuple[str, ...]:
    words = [word for attr, word in _KU_FIELDS if getattr(ku, attr)]
    if ku.key_agreement:
        if ku.encipher_only:
            words.append("encipherOnly")
        if ku.decipher_only:
            words.append("decipherOnly")
    return tuple(words)


def _general_name(gn: x509.GeneralName) -> str:
    if isinstance(gn, x509.DNSName):
        return f"DNS:{gn.value}"
    if isinstance(gn, x509.RFC822Name):
        return f"email:{gn.value}"
    if isinstance(gn, x509.IPAddress):
        return f"IP:{gn.value}"
    if isinstance(gn, x509.UniformResourceIdentifier):
        return f"URI:{gn.value}"
    if isinstance(gn, x509.DirectoryName):
        return f"dirName:{gn.value.rfc4514_string()}"
    if isinstance(gn, x509.RegisteredID):
        return f"RID:{gn.value.dotted_string}"
    if isinstance(gn, x509.OtherName):
        return f"othername:{gn.type_id.dotted_string}"
    return str(gn)


def _raw_spki(der: bytes) -> bytes:
    """The SubjectPublicKeyInfo of a certificate as it is encoded (for keys cryptography cannot load)."""
    from asn1crypto import x509 as asn1_x509

    try:
        return bytes(asn1_x509.Certificate.load(der)["tbs_certificate"]["subject_public_key_info"].dump())
    except (ValueError, TypeError, KeyError):
        return b""


def _public_key_facts(key: object) -> tuple[str, int | None, str | None]:
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size, None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size, curve_display_name(key.curve.name)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EC_EDWARDS", 255, "ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "EC_EDWARDS", 448, "ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size, None
    return type(key).__name__, None, None


def certificate_info(cert: x509.Certificate, der: bytes | None = None) -> CertificateInfo:
    """Describe a parsed certificate (``der``: its encoding, when the caller has it already).

    Raises:
        InputError: its public key or an extension is malformed (cryptography parses both lazily).
    """
    if der is None:
        der = cert.public_bytes(serialization.Encoding.DER)
    key: object | None
    try:
        key = cert.public_key()
        spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # A curve or algorithm cryptography does not know (SM2, secp112r1, ...): the certificate
        # is still shown; its public key is identified by the SubjectPublicKeyInfo as it is.
        key = None
        spki = _raw_spki(der)
    try:
        key_usage: tuple[str, ...] = ()
        eku: tuple[str, ...] = ()
        sans: tuple[str, ...] = ()
        is_ca: bool | None = None
        path_len: int | None = None
        ski: str | None = None
        aki: str | None = None
        for ext in cert.extensions:  # one pass: each get_extension_for_class() walks them all
            value = ext.value
            if isinstance(value, x509.KeyUsage):
                key_usage = _key_usage(value)
            elif isinstance(value, x509.ExtendedKeyUsage):
                eku = tuple(_EKU_NAMES.get(oid, oid.dotted_string) for oid in value)
            elif isinstance(value, x509.SubjectAlternativeName):
                sans = tuple(_general_name(gn) for gn in value)
            elif isinstance(value, x509.BasicConstraints):
                is_ca, path_len = value.ca, value.path_length
            elif isinstance(value, x509.SubjectKeyIdentifier):
                ski = colon_hex(value.digest)
            elif isinstance(value, x509.AuthorityKeyIdentifier) and value.key_identifier is not None:
                aki = colon_hex(value.key_identifier)
        key_type, bits, curve = _public_key_facts(key) if key is not None else ("unknown", None, None)
        oid = cert.signature_algorithm_oid
        sig_alg = getattr(oid, "_name", None) or oid.dotted_string
        subject, issuer = cert.subject, cert.issuer
        serial = cert.serial_number
        return CertificateInfo(
            der=der,
            subject=subject.rfc4514_string(),
            issuer=issuer.rfc4514_string(),
            subject_cn=_common_name(subject),
            issuer_cn=_common_name(issuer),
            serial=f"{serial:X}" if serial >= 0 else f"-{-serial:X}",
            not_before=cert.not_valid_before_utc.astimezone(UTC),
            not_after=cert.not_valid_after_utc.astimezone(UTC),
            version=cert.version.value + 1,
            signature_algorithm=str(sig_alg),
            public_key_type=key_type,
            public_key_bits=bits,
            curve=curve,
            key_usage=key_usage,
            extended_key_usage=eku,
            subject_alt_names=sans,
            is_ca=is_ca,
            path_length=path_len,
            subject_key_identifier=ski,
            authority_key_identifier=aki,
            self_signed=subject == issuer,
            sha256_fingerprint=colon_hex(hashlib.sha256(der).digest()),
            sha1_fingerprint=colon_hex(hashlib.sha1(der).digest()),  # noqa: S324 - a fingerprint, not security
            spki_sha256=spki_sha256(spki),
            spki=spki,
        )
    except x509.DuplicateExtension as e:  # not a ValueError: caught on its own
        raise InputError(f"The certificate has the extension {e.oid.dotted_string} twice.") from e
    except x509.UnsupportedGeneralNameType as e:  # not a ValueError either
        raise InputError(f"The certificate has a name of a kind cert-desk cannot read ({e}).") from e
    except (ValueError, TypeError) as e:
        raise InputError(f"The certificate has a malformed extension: {e}") from e


def parse_der_certificate(der: bytes) -> CertificateInfo:
    """Parse one DER certificate (as CKA_VALUE holds it).

    Raises:
        InputError: not a certificate, or larger than :data:`MAX_CERTIFICATE_BYTES`.
    """
    if len(der) > MAX_CERTIFICATE_BYTES:
        raise InputError(f"The certificate is {len(der)} bytes; more than {MAX_CERTIFICATE_BYTES} is refused.")
    with warnings.catch_warnings():
        # A serial that is not positive (RFC 5280 forbids it; old CA certificates have them) is
        # shown with its sign rather than warned about on stderr.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            cert = x509.load_der_x509_certificate(der)
        except (ValueError, x509.InvalidVersion) as e:  # InvalidVersion is no ValueError
            raise InputError(f"Not a DER X.509 certificate: {e}") from e
        return certificate_info(cert, bytes(der))
