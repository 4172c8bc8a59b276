"""Public keys from PKCS#11 attributes, as SubjectPublicKeyInfo, for pairing keys with certificates.

A certificate and a key belong together when their SubjectPublicKeyInfo DER is equal;
cert-desk compares SHA-256 digests of it (``spki_sha256``). Tokens reveal the public key
through CKA_MODULUS/CKA_PUBLIC_EXPONENT (RSA, also on most private keys), CKA_EC_PARAMS/
CKA_EC_POINT (EC public keys) or CKA_PUBLIC_KEY_INFO (PKCS#11 2.40, some tokens).
"""

from __future__ import annotations

import functools
import hashlib
import logging

from asn1crypto import core as asn1_core
from asn1crypto import keys as asn1_keys
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

log = logging.getLogger(__name__)

# asn1crypto's curve names -> (OpenSSL short name shown to users, cryptography curve or None)
_CURVES: dict[str, tuple[str, type[ec.EllipticCurve] | None]] = {
    "secp256r1": ("prime256v1", ec.SECP256R1),
    "secp384r1": ("secp384r1", ec.SECP384R1),
    "secp521r1": ("secp521r1", ec.SECP521R1),
    "secp256k1": ("secp256k1", ec.SECP256K1),
    "secp224r1": ("secp224r1", ec.SECP224R1),
    "secp192r1": ("prime192v1", ec.SECP192R1),
    "brainpoolp256r1": ("brainpoolP256r1", ec.BrainpoolP256R1),
    "brainpoolp384r1": ("brainpoolP384r1", ec.BrainpoolP384R1),
    "brainpoolp512r1": ("brainpoolP512r1", ec.BrainpoolP512R1),
}
_CURVE_BITS = {
    "prime256v1": 256, "secp384r1": 384, "secp521r1": 521, "secp256k1": 256, "secp224r1": 224,
    "prime192v1": 192, "brainpoolP256r1": 256, "brainpoolP384r1": 384, "brainpoolP512r1": 512,
    "ed25519": 255, "ed448": 448, "x25519": 255, "x448": 448,
}
_EDWARDS = {
    "1.3.101.112": "ed25519", "1.3.101.113": "ed448", "edwards25519": "ed25519", "edwards448": "ed448",
    "1.3.101.110": "x25519", "1.3.101.111": "x448", "curve25519": "x25519", "curve448": "x448",
}
# cryptography's curve names (certificates) -> names shown
_CRYPTOGRAPHY_CURVE_NAMES = {"secp256r1": "prime256v1", "secp192r1": "prime192v1"}


def curve_display_name(cryptography_name: str) -> str:
    """``prime256v1`` for cryptography's ``secp256r1``; other names unchanged."""
    return _CRYPTOGRAPHY_CURVE_NAMES.get(cryptography_name, cryptography_name)


def curve_bits(name: str) -> int | None:
    return _CURVE_BITS.get(name)


@functools.lru_cache(maxsize=64)
def curve_from_ec_params(params: bytes) -> str | None:
    """The curve named by CKA_EC_PARAMS (a DER OID, or a PrintableString for Edwards curves)."""
    try:
        value = asn1_core.load(params)
    except (ValueError, TypeError):
        return None
    if isinstance(value, asn1_core.ObjectIdentifier):
        dotted = value.dotted
        dotted = str(dotted)
        if dotted in _EDWARDS:
            return _EDWARDS[dotted]
        try:
            name = str(asn1_keys.NamedCurve.map(dotted))
        except (ValueError, KeyError):
            return dotted
        return _CURVES.get(name, (name, None))[0]
    if isinstance(value, asn1_core.PrintableString):
        text = str(value.native)
        return _EDWARDS.get(text, text)
    return None


def unwrap_ec_point(point: bytes) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING per the standard; some tokens give the raw point."""
    if point[:1] == b"\x04" and len(point) > 2:
        try:
            parsed = asn1_core.OctetString.load(point)
        except (ValueError, TypeError):
            return point
        inner = bytes(parsed.native)
        if len(parsed.dump()) == len(point):
            return inner
    return point


def rsa_exponent(raw: bytes) -> int:
    """CKA_PUBLIC_EXPONENT as a number.

    OpenSC 0.23 returns the exponent of an RSA key it has just generated on an OpenPGP card
    zero-padded on the right (``01 00 01 00 00 ...``: 65537 shifted by whole bytes), which no
    RSA key can have (the exponent must be odd). Such a value is read without its padding; the
    signature check of every CSR cert-desk makes proves the result right (tests/test_opensc_token.py).
    """
    value = int.from_bytes(raw, "big")
    if value and not value & 1:
        stripped = raw.rstrip(b"\x00")
        if stripped and stripped[-1] & 1:
            return int.from_bytes(stripped, "big")
    return value


def spki_from_rsa(modulus: bytes, exponent: bytes) -> bytes:
    key = rsa.RSAPublicNumbers(rsa_exponent(exponent), int.from_bytes(modulus, "big")).public_key()
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def spki_from_ec(params: bytes, point: bytes) -> bytes | None:
    """SubjectPublicKeyInfo DER for an EC or Edwards public key, or ``None`` when the curve is unknown."""
    curve = curve_from_ec_params(params)
    raw = unwrap_ec_point(point)
    if curve == "ed25519":
        pub = ed25519.Ed25519PublicKey.from_public_bytes(raw)
        return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if curve == "ed448":
        pub448 = ed448.Ed448PublicKey.from_public_bytes(raw)
        return pub448.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    for _name, (shown, cls) in _CURVES.items():
        if shown == curve and cls is not None:
            ec_pub = ec.EllipticCurvePublicKey.from_encoded_point(cls(), raw)
            return ec_pub.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
    return None


def spki_sha256(spki: bytes) -> str:
    return hashlib.sha256(spki).hexdigest()


def public_key_spki(
    *,
    modulus: bytes | None = None,
    exponent: bytes | None = None,
    ec_params: bytes | None = None,
    ec_point: bytes | None = None,
    public_key_info: bytes | None = None,
) -> bytes | None:
    """The SubjectPublicKeyInfo DER the given attributes describe, or ``None``.

    Never raises on malformed token data: a key whose attributes make no sense simply has
    no known public key.
    """
    try:
        if public_key_info:
            # re-encode: a token may store a valid but non-canonical encoding
            key = serialization.load_der_public_key(public_key_info)
            return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if modulus and exponent:
            return spki_from_rsa(modulus, exponent)
        if ec_params and ec_point:
            return spki_from_ec(ec_params, ec_point)
    except (ValueError, TypeError, OverflowError, UnsupportedAlgorithm) as e:
        log.debug("public key attributes do not make a key: %s", e)
    return None
