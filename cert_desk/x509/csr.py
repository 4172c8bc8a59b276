"""Certificate signing requests for keys that never leave the token.

cryptography cannot sign with a key it does not hold, so the request is built with
asn1crypto (no hand-made ASN.1): the CertificationRequestInfo is assembled, its DER is handed
to a signer (the token), and the signed request is loaded back into cryptography and checked
with the public key it names: a token that signed with another key than the one the request
carries is caught here, not by the CA.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from asn1crypto import csr as asn1_csr
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cert_desk import errors as E

Signer = Callable[[bytes], bytes]


def _extension_request(sans: Sequence[x509.GeneralName]) -> list[dict[str, object]]:
    if not sans:
        return []
    value = x509.SubjectAlternativeName(list(sans)).public_bytes()
    extension = asn1_x509.Extension({
        "extn_id": "subject_alt_name",
        "critical": False,
        "extn_value": asn1_x509.GeneralNames.load(value),
    })
    return [{"type": "extension_request", "values": [asn1_x509.Extensions([extension])]}]


def build_csr(subject: x509.Name, spki_der: bytes, sans: Sequence[x509.GeneralName], algorithm: str,
              signer: Signer) -> x509.CertificateSigningRequest:
    """A PKCS#10 request for the key whose SubjectPublicKeyInfo is ``spki_der``, signed by ``signer``.

    Args:
        subject: The requested subject.
        spki_der: The key's SubjectPublicKeyInfo (DER).
        sans: Subject alternative names to request (an extensionRequest attribute).
        algorithm: ``sha256_rsa`` or ``sha256_ecdsa`` (what the signer produces).
        signer: Signs the DER of the CertificationRequestInfo; returns the signature as X.509
            carries it (PKCS#1 v1.5 bytes, or a DER ECDSA-Sig-Value).

    Raises:
        KeyMismatchError: the signature does not verify with ``spki_der``.
    """
    info = asn1_csr.CertificationRequestInfo({
        "version": "v1",
        "subject": asn1_x509.Name.load(subject.public_bytes()),
        "subject_pk_info": asn1_keys.PublicKeyInfo.load(spki_der),
        "attributes": _extension_request(sans),
    })
    signature = signer(info.dump())
    request = asn1_csr.CertificationRequest({
        "certification_request_info": info,
        "signature_algorithm": {"algorithm": algorithm},
        "signature": signature,
    })
    try:
        csr = x509.load_der_x509_csr(request.dump())
        valid = csr.is_signature_valid
    except ValueError as e:  # what the token returned does not even parse as a signature
        raise E.KeyMismatchError(f"The token's signature is not usable in a request: {e}", operation="sign") from e
    if not valid:
        raise E.KeyMismatchError(
            "The token signed the request, but the signature does not verify with the public key of that key "
            "pair: the public key (or certificate) with this ID belongs to another private key.",
            operation="sign")
    return csr


def csr_pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)
