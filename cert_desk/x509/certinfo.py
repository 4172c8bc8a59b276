"""Parse certificates into :class:`cert_desk.models.CertificateInfo`.

Built on cryptography; every malformed input ends in :class:`cert_desk.errors.InputError`,
never in a cryptography exception.
"""

from __future__ import annotations

import hashlib
from datetime import UTC

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
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
    return ":".join(f"{b:02X}" for b in data)


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


def _key_usage(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return ()
    words = [word for attr, word in _KU_FIELDS if getattr(ku, attr)]
    if ku.key_agreement:
        if ku.encipher_only:
            words.append("encipherOnly")
        if ku.decipher_only:
            words.append("decipherOnly")
    return tuple(words)


def _eku(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(_EKU_NAMES.get(oid, oid.dotted_string) for oid in eku)


def _sans(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    out: list[str] = []
    for gn in san:
        if isinstance(gn, x509.DNSName):
            out.append(f"DNS:{gn.value}")
        elif isinstance(gn, x509.RFC822Name):
            out.append(f"email:{gn.value}")
        elif isinstance(gn, x509.IPAddress):
            out.append(f"IP:{gn.value}")
        elif isinstance(gn, x509.UniformResourceIdentifier):
            out.append(f"URI:{gn.value}")
        elif isinstance(gn, x509.DirectoryName):
            out.append(f"dirName:{gn.value.rfc4514_string()}")
        elif isinstance(gn, x509.RegisteredID):
            out.append(f"RID:{gn.value.dotted_string}")
        elif isinstance(gn, x509.OtherName):
            out.append(f"othername:{gn.type_id.dotted_string}")
    return tuple(out)


def _basic_constraints(cert: x509.Certificate) -> tuple[bool | None, int | None]:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None, None
    return bc.ca, bc.path_length


def _key_id(cert: x509.Certificate, cls: type[x509.SubjectKeyIdentifier] | type[x509.AuthorityKeyIdentifier]
            ) -> str | None:
    try:
        ext = cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None
    if isinstance(ext, x509.SubjectKeyIdentifier):
        return colon_hex(ext.digest)
    if isinstance(ext, x509.AuthorityKeyIdentifier) and ext.key_identifier is not None:
        return colon_hex(ext.key_identifier)
    return None


def _public_key_facts(cert: x509.Certificate) -> tuple[str, int | None, str | None]:
    try:
        key = cert.public_key()
    except (ValueError, TypeError):
        return "unknown", None, None
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


def certificate_info(cert: x509.Certificate) -> CertificateInfo:
    """Describe a parsed certificate.

    Raises:
        InputError: an extension is malformed (cryptography parses extensions lazily).
    """
    try:
        der = cert.public_bytes(serialization.Encoding.DER)
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (ValueError, TypeError) as e:
        raise InputError(f"The certificate's public key cannot be read: {e}") from e
    try:
        key_type, bits, curve = _public_key_facts(cert)
        is_ca, path_len = _basic_constraints(cert)
        try:
            sig_alg = cert.signature_algorithm_oid._name
        except AttributeError:
            sig_alg = cert.signature_algorithm_oid.dotted_string
        return CertificateInfo(
            der=der,
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            subject_cn=_common_name(cert.subject),
            issuer_cn=_common_name(cert.issuer),
            serial=f"{cert.serial_number:X}" if cert.serial_number >= 0 else f"-{-cert.serial_number:X}",
            not_before=cert.not_valid_before_utc.astimezone(UTC),
            not_after=cert.not_valid_after_utc.astimezone(UTC),
            version=cert.version.value + 1,
            signature_algorithm=str(sig_alg),
            public_key_type=key_type,
            public_key_bits=bits,
            curve=curve,
            key_usage=_key_usage(cert),
            extended_key_usage=_eku(cert),
            subject_alt_names=_sans(cert),
            is_ca=is_ca,
            path_length=path_len,
            subject_key_identifier=_key_id(cert, x509.SubjectKeyIdentifier),
            authority_key_identifier=_key_id(cert, x509.AuthorityKeyIdentifier),
            self_signed=cert.subject == cert.issuer,
            sha256_fingerprint=colon_hex(hashlib.sha256(der).digest()),
            sha1_fingerprint=colon_hex(hashlib.sha1(der).digest()),  # noqa: S324 - a fingerprint, not security
            spki_sha256=spki_sha256(spki),
        )
    except (ValueError, TypeError) as e:
        raise InputError(f"The certificate has a malformed extension: {e}") from e


def parse_der_certificate(der: bytes) -> CertificateInfo:
    """Parse one DER certificate (as CKA_VALUE holds it).

    Raises:
        InputError: not a certificate, or larger than :data:`MAX_CERTIFICATE_BYTES`.
    """
    if len(der) > MAX_CERTIFICATE_BYTES:
        raise InputError(f"The certificate is {len(der)} bytes; more than {MAX_CERTIFICATE_BYTES} is refused.")
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as e:
        raise InputError(f"Not a DER X.509 certificate: {e}") from e
    return certificate_info(cert)
