"""Values larger than the listing's buffers (long labels and IDs, big certificates) come back whole.

SoftHSM2 answers a template that holds both an attribute the object lacks and a value too
big for its buffer with CKR_ATTRIBUTE_TYPE_INVALID, not CKR_BUFFER_TOO_SMALL: both look
"unavailable". The listing must still get the big value.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from cert_desk.models import TokenSelector
from cert_desk.pkcs11.keygen import KeySpec, generate_key_pair, public_key_of, write_certificate
from cert_desk.pkcs11.module import LoadedModule
from cert_desk.secrets import Secret
from cert_desk.services.tokens import TokenService
from cert_desk.x509 import ca as local_ca
from tests.conftest import USER_PIN, SoftHsm, require_tool
from tests.reference import parse_objects

LONG_LABEL = "Ä" * 150  # 300 bytes of UTF-8
LONG_ID = bytes(range(256)) + bytes(44)  # 300 bytes


def test_long_label_long_id_and_big_certificate(softhsm: SoftHsm, token: str, service: TokenService) -> None:
    ca_key, ca_cert = local_ca.make_root(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Big CA")]))
    sans: list[x509.GeneralName] = [x509.DNSName(f"h{i:04d}.an-example-of-a-long-name.example") for i in range(150)]

    def fill(m: LoadedModule) -> int:
        ref = m.resolve(TokenSelector(label=token))
        m.login(ref, Secret(USER_PIN, "test"))
        session = m.pkcs11_session(ref)
        pub, _ = generate_key_pair(session, KeySpec.parse("ec:prime256v1"), label=LONG_LABEL, obj_id=LONG_ID)
        cert = local_ca.issue(ca_key, ca_cert, public_key_of(pub),
                              x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Big")]), sans=sans)
        write_certificate(session, cert, label=LONG_LABEL, obj_id=LONG_ID)
        m.logout(ref)
        return len(cert.public_bytes(serialization.Encoding.DER))

    size = service.run(softhsm.module, fill, "fill").result()
    assert size > 5000
    ref = service.find_token(TokenSelector(label=token), [softhsm.module])
    service.login(ref, Secret(USER_PIN, "test")).result()
    listing = service.list_objects(ref).result()
    assert len(listing.objects) == 3
    for o in listing.objects:
        assert o.label == LONG_LABEL, o.class_name
        assert o.id == LONG_ID, o.class_name
        assert f"id={'%' + LONG_ID.hex('%').upper()}" in o.uri
    cert = next(o for o in listing.objects if o.certificate is not None)
    assert cert.certificate is not None and cert.value_length == size
    assert len(cert.certificate.subject_alt_names) == 150
    group = listing.groups[0]
    assert group.key_matches is True and not listing.warnings
    theirs = {(r.cls, r.id) for r in parse_objects(softhsm.tool("--token-label", token, "-O", pin=USER_PIN).stdout)}
    assert theirs == {(o.class_name, o.id_hex) for o in listing.objects}


def test_unsupported_public_key_algorithm_does_not_break_the_listing(softhsm: SoftHsm, token: str,
                                                                     service: TokenService, tmp_path: Path) -> None:
    """A certificate whose key cryptography cannot load (SM2, made by openssl) is listed, not fatal."""
    from pkcs11 import Attribute, CertificateType, ObjectClass

    from cert_desk.x509.certinfo import parse_der_certificate

    require_tool("openssl")
    key = tmp_path / "sm2.pem"
    der_path = tmp_path / "sm2.der"
    subprocess.run(["openssl", "genpkey", "-algorithm", "SM2", "-out", str(key)], check=True, capture_output=True)
    subprocess.run(["openssl", "req", "-x509", "-key", str(key), "-sm3", "-subj", "/CN=odd curve", "-days", "10",
                    "-outform", "DER", "-out", str(der_path)], check=True, capture_output=True)
    der = der_path.read_bytes()
    info = parse_der_certificate(der)
    assert info.subject_cn == "odd curve" and info.public_key_type == "unknown" and info.spki

    def put(m: LoadedModule) -> None:
        ref = m.resolve(TokenSelector(label=token))
        m.login(ref, Secret(USER_PIN, "test"))
        m.pkcs11_session(ref).create_object({
            Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
            Attribute.TOKEN: True, Attribute.VALUE: der, Attribute.LABEL: "odd", Attribute.ID: b"\x07",
            Attribute.SUBJECT: x509.load_der_x509_certificate(der).subject.public_bytes()})
        m.logout(ref)

    service.run(softhsm.module, put, "put").result()
    ref = service.find_token(TokenSelector(label=token), [softhsm.module])
    listing = service.list_objects(ref).result()
    assert [o.certificate.subject_cn for o in listing.objects if o.certificate] == ["odd curve"]
