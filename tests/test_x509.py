"""Certificate parsing and public-key identities."""

from __future__ import annotations

import contextlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from cert_desk.errors import InputError
from cert_desk.x509 import ca as local_ca
from cert_desk.x509.certinfo import parse_der_certificate
from cert_desk.x509.keys import curve_from_ec_params, public_key_spki, spki_sha256


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def test_end_entity_profile() -> None:
    ca_key, ca_cert = local_ca.make_root(_name("Test CA"))
    key = rsa.generate_private_key(65537, 2048)
    cert = local_ca.issue(ca_key, ca_cert, key.public_key(), _name("Alice"), sans=[x509.RFC822Name("a@b.c")])
    info = parse_der_certificate(cert.public_bytes(serialization.Encoding.DER))
    assert info.subject == "CN=Alice" and info.issuer_cn == "Test CA"
    assert info.key_usage == ("digitalSignature", "keyEncipherment")
    assert "keyCertSign" not in info.key_usage
    assert info.extended_key_usage == ("clientAuth",)
    assert info.is_ca is False and info.subject_alt_names == ("email:a@b.c",)
    assert (info.public_key_type, info.public_key_bits) == ("RSA", 2048)
    assert info.subject_key_identifier and info.authority_key_identifier
    assert len(info.sha256_fingerprint.split(":")) == 32
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert info.spki_sha256 == spki_sha256(spki)
    assert info.pem().startswith("-----BEGIN CERTIFICATE-----\n")
    ca_info = parse_der_certificate(ca_cert.public_bytes(serialization.Encoding.DER))
    assert ca_info.is_ca and ca_info.self_signed and "keyCertSign" in ca_info.key_usage
    assert ca_info.curve == "prime256v1"


def test_pkcs11_attributes_give_the_same_identity_as_the_certificate() -> None:
    rkey = rsa.generate_private_key(65537, 2048).public_key()
    n = rkey.public_numbers()
    spki = public_key_spki(modulus=n.n.to_bytes(256, "big"), exponent=n.e.to_bytes(3, "big"))
    assert spki == rkey.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ekey = ec.generate_private_key(ec.SECP384R1()).public_key()
    point = ekey.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    params = bytes.fromhex("06052b81040022")  # secp384r1
    der_point = bytes([0x04, 0x61]) + point  # CKA_EC_POINT is a DER OCTET STRING
    want = ekey.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert public_key_spki(ec_params=params, ec_point=der_point) == want
    assert public_key_spki(ec_params=params, ec_point=point) == want  # some tokens send the raw point
    assert curve_from_ec_params(params) == "secp384r1"
    assert curve_from_ec_params(bytes.fromhex("06082a8648ce3d030107")) == "prime256v1"
    assert public_key_spki(ec_params=b"\x00", ec_point=b"\x04junk") is None


@pytest.mark.parametrize("blob", [b"", b"\x30\x03\x02\x01\x01", b"not a cert", b"\x30" * 100])
def test_malformed_certificates_are_input_errors(blob: bytes) -> None:
    with pytest.raises(InputError):
        parse_der_certificate(blob)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_certificate_parser_never_raises_anything_else(blob: bytes) -> None:
    with contextlib.suppress(InputError):
        parse_der_certificate(blob)


def test_a_zero_padded_rsa_exponent_is_read_as_opensc_meant_it() -> None:
    """OpenSC 0.23 pads CKA_PUBLIC_EXPONENT of a key it just generated on an OpenPGP card."""
    from cert_desk.x509.keys import rsa_exponent

    assert rsa_exponent(b"\x01\x00\x01") == 65537
    assert rsa_exponent(b"\x00\x01\x00\x01") == 65537
    assert rsa_exponent(b"\x01\x00\x01" + b"\x00" * 17) == 65537
    assert rsa_exponent(b"\x03") == 3
    assert rsa_exponent(b"\x02\x00") == 512  # no odd value under the padding: left as it is (and refused later)
