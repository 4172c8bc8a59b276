"""Key pair generation and certificate objects on a token (worker-thread code).

The private key is generated on the token: sensitive, never extractable, private, for
signing (and decryption, for RSA). The public key object carries the same CKA_ID and
label, so browsers, OpenSSL and ``pkcs11-tool`` pair them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import pkcs11
from asn1crypto import core as asn1_core
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from cert_desk.errors import InputError
from cert_desk.x509.keys import curve_from_ec_params, rsa_exponent, unwrap_ec_point

# names users type (pkcs11-tool and OpenSSL spellings) -> asn1crypto curve name
CURVE_ALIASES = {
    "prime256v1": "secp256r1", "secp256r1": "secp256r1", "p-256": "secp256r1", "p256": "secp256r1",
    "secp384r1": "secp384r1", "p-384": "secp384r1", "p384": "secp384r1",
    "secp521r1": "secp521r1", "p-521": "secp521r1", "p521": "secp521r1",
}
_CRYPTO_CURVES: dict[str, ec.EllipticCurve] = {
    "secp256r1": ec.SECP256R1(), "secp384r1": ec.SECP384R1(), "secp521r1": ec.SECP521R1(),
}


@dataclass(frozen=True)
class KeySpec:
    """A key type as users write it: ``rsa:2048`` or ``ec:prime256v1``."""

    kind: str  # "rsa" | "ec"
    bits: int
    curve: str | None = None  # asn1crypto name for EC

    @classmethod
    def parse(cls, text: str) -> KeySpec:
        m = re.fullmatch(r"(?i)\s*(rsa|ec)\s*:\s*([A-Za-z0-9-]+)\s*", text)
        if not m:
            raise InputError(f"Unknown key type {text!r}.",
                             "Use rsa:2048, rsa:3072, rsa:4096, ec:prime256v1, ec:secp384r1 or ec:secp521r1.")
        kind, arg = m.group(1).lower(), m.group(2)
        if kind == "rsa":
            if not arg.isdigit() or int(arg) > 16384:
                raise InputError(f"RSA key size {arg!r} is not a number of bits between 2048 and 16384.")
            if int(arg) < 2048:
                raise InputError(f"RSA keys of {arg} bits are too weak: browsers, CAs and OpenSSL's default "
                                 "security level refuse them.", "Use rsa:2048 or more, or an EC key.")
            return cls("rsa", int(arg))
        curve = CURVE_ALIASES.get(arg.lower())
        if curve is None:
            raise InputError(f"Unknown curve {arg!r}.", "Use prime256v1, secp384r1 or secp521r1.")
        return cls("ec", _CRYPTO_CURVES[curve].key_size, curve)

    @property
    def canonical(self) -> str:
        """As ``--type`` and the Keys pane spell it (``ec:p-256`` is ``ec:prime256v1``)."""
        if self.kind == "rsa":
            return f"rsa:{self.bits}"
        return "ec:prime256v1" if self.curve == "secp256r1" else f"ec:{self.curve}"

    def describe(self) -> str:
        if self.kind == "rsa":
            return f"RSA {self.bits}"
        shown = "prime256v1" if self.curve == "secp256r1" else self.curve
        return f"EC {shown}"


def generate_key_pair(
    session: pkcs11.Session, spec: KeySpec, *, label: str, obj_id: bytes | None
) -> tuple[pkcs11.PublicKey, pkcs11.PrivateKey]:
    """Generate a token key pair as described in the module docstring."""
    private_template = {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
    }
    public_template = {Attribute.TOKEN: True, Attribute.PRIVATE: False}
    if spec.kind == "rsa":
        caps = MechanismFlag.SIGN | MechanismFlag.VERIFY | MechanismFlag.DECRYPT | MechanismFlag.ENCRYPT
        return session.generate_keypair(
            KeyType.RSA, spec.bits, id=obj_id, label=label, store=True, capabilities=caps,
            public_template={**public_template, Attribute.PUBLIC_EXPONENT: b"\x01\x00\x01"},
            private_template=private_template,
        )
    assert spec.curve is not None
    params = session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(spec.curve)}, local=True
    )
    return params.generate_keypair(
        id=obj_id, label=label, store=True, capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
        public_template=public_template, private_template=private_template,
    )


def public_key_of(pub: pkcs11.PublicKey) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """The public key object's key, for cryptography (one batched attribute read)."""
    attrs = pub.get_attributes([Attribute.KEY_TYPE, Attribute.MODULUS, Attribute.PUBLIC_EXPONENT,
                                Attribute.EC_PARAMS, Attribute.EC_POINT])
    if attrs.get(Attribute.MODULUS):
        n = int.from_bytes(attrs[Attribute.MODULUS], "big")
        e = rsa_exponent(attrs[Attribute.PUBLIC_EXPONENT])
        return rsa.RSAPublicNumbers(e, n).public_key()
    params = attrs.get(Attribute.EC_PARAMS)
    point = attrs.get(Attribute.EC_POINT)
    if params and point:
        name = curve_from_ec_params(params)
        curve = _CRYPTO_CURVES.get(CURVE_ALIASES.get((name or "").lower(), ""))
        if curve is None:
            raise InputError(f"Curve {name} is not supported here.")
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, unwrap_ec_point(point))
    raise InputError("The public key object reveals no key material.")


def pkcs11_tool_id(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> bytes:
    """The CKA_ID OpenSC gives a key it generates on a card when none is asked for (pkcs15-init's
    intrinsic ID, which ``pkcs11-tool --keypairgen`` shows there): SHA-1 of the RSA modulus, or of
    the X coordinate of the EC point (PKCS#15 v1.1; OpenSC's select_intrinsic_id)."""
    if isinstance(public_key, rsa.RSAPublicKey):
        n = public_key.public_numbers().n
        data = n.to_bytes((n.bit_length() + 7) // 8, "big")
    else:
        point = public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        data = point[1: 1 + (len(point) - 1) // 2]
    return hashlib.sha1(data).digest()  # noqa: S324 - an identifier, as OpenSC makes it


def certificate_template(cert: x509.Certificate, *, label: str, obj_id: bytes) -> dict[Attribute, object]:
    """The attributes ``pkcs11-tool --write-object --type cert`` writes (CKA_ID only when there is one)."""
    der = cert.public_bytes(serialization.Encoding.DER)
    serial = asn1_core.Integer(cert.serial_number).dump()
    template: dict[Attribute, object] = {
        Attribute.CLASS: ObjectClass.CERTIFICATE,
        Attribute.CERTIFICATE_TYPE: pkcs11.CertificateType.X_509,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: False,
        Attribute.LABEL: label,
        Attribute.SUBJECT: cert.subject.public_bytes(),
        Attribute.ISSUER: cert.issuer.public_bytes(),
        Attribute.SERIAL_NUMBER: serial,
        Attribute.VALUE: der,
    }
    if obj_id:
        template[Attribute.ID] = obj_id
    return template


def write_certificate(session: pkcs11.Session, cert: x509.Certificate, *, label: str, obj_id: bytes
                      ) -> pkcs11.Object:
    """Store ``cert`` on the token as ``pkcs11-tool --write-object --type cert`` does."""
    return session.create_object(certificate_template(cert, label=label, obj_id=obj_id))
