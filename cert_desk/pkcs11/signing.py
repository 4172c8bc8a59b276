"""Signing with a private key that stays on the token (worker-thread code).

The signature cert-desk needs (a CSR's, later a TLS handshake test's) is always SHA-256 with
RSA PKCS#1 v1.5 or ECDSA. Tokens differ in what they offer for it: a SmartCard-HSM or OpenSC's
OpenPGP driver has CKM_SHA256_RSA_PKCS, SoftHSM2 has no CKM_ECDSA_SHA256, some cards only do
raw CKM_RSA_PKCS / CKM_ECDSA. :func:`plan_signature` picks the mechanism from the token's own
list (hashing on the host, and wrapping the digest in a DigestInfo for CKM_RSA_PKCS, when the
token does not hash), and :func:`sign` turns ECDSA's raw r||s into the DER that X.509 wants.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from asn1crypto import algos

from cert_desk import errors as E
from cert_desk.models import MechanismInfo
from cert_desk.pkcs11.ck import CkFunctions

CKM_RSA_PKCS = 0x1
CKM_SHA256_RSA_PKCS = 0x40
CKM_ECDSA = 0x1041
CKM_ECDSA_SHA256 = 0x1044
CKF_SIGN = 0x800

# DER of DigestInfo{ AlgorithmIdentifier{ sha256, NULL }, OCTET STRING (32) } without the digest
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


@dataclass(frozen=True)
class SigningPlan:
    """How to make a SHA-256 signature with one key on one token.

    Attributes:
        mechanism: The CKM_* code to call C_Sign with.
        mechanism_name: Its name, for the Activity panel.
        prehash: Hash on the host and sign the digest (the token's mechanism does not hash).
        digest_info: Wrap the digest in a DigestInfo first (raw CKM_RSA_PKCS).
        algorithm: The signature algorithm for X.509, as asn1crypto names it.
    """

    mechanism: int
    mechanism_name: str
    prehash: bool
    digest_info: bool
    algorithm: str


def _can_sign(mechanisms: Iterable[MechanismInfo]) -> set[int]:
    # A mechanism listed without any flags is taken at its word (some modules report none).
    return {m.code for m in mechanisms if not m.flags or m.flags & CKF_SIGN}


def plan_signature(key_type: str | None, mechanisms: Iterable[MechanismInfo]) -> SigningPlan:
    """The best way to sign with SHA-256 for a key of ``key_type`` (``RSA`` / ``EC``).

    Raises:
        UnsupportedMechanismError: the token offers no mechanism that can do it.
    """
    usable = _can_sign(mechanisms)
    if key_type == "RSA":
        if CKM_SHA256_RSA_PKCS in usable:
            return SigningPlan(CKM_SHA256_RSA_PKCS, "CKM_SHA256_RSA_PKCS", False, False, "sha256_rsa")
        if CKM_RSA_PKCS in usable:
            return SigningPlan(CKM_RSA_PKCS, "CKM_RSA_PKCS", True, True, "sha256_rsa")
        raise E.UnsupportedMechanismError(
            "The token offers no RSA signing mechanism (CKM_SHA256_RSA_PKCS or CKM_RSA_PKCS).",
            operation="sign", hint="This token cannot sign with its RSA keys through PKCS#11.")
    if key_type == "EC":
        if CKM_ECDSA_SHA256 in usable:
            return SigningPlan(CKM_ECDSA_SHA256, "CKM_ECDSA_SHA256", False, False, "sha256_ecdsa")
        if CKM_ECDSA in usable:
            return SigningPlan(CKM_ECDSA, "CKM_ECDSA", True, False, "sha256_ecdsa")
        raise E.UnsupportedMechanismError(
            "The token offers no ECDSA signing mechanism (CKM_ECDSA_SHA256 or CKM_ECDSA).",
            operation="sign", hint="This token cannot sign with its EC keys through PKCS#11.")
    raise E.InputError(f"cert-desk signs only with RSA and EC keys, not {key_type or 'this kind of'} key.")


def sign(ck: CkFunctions, session: int, key: int, plan: SigningPlan, data: bytes) -> bytes:
    """Sign ``data`` with the private key handle ``key``; the signature as X.509 carries it.

    Raises:
        CkError: the token refused (translated by the caller's ``operation`` context).
    """
    payload = data
    if plan.prehash:
        payload = hashlib.sha256(data).digest()
        if plan.digest_info:
            payload = _SHA256_DIGEST_INFO + payload
    raw = ck.sign(session, key, plan.mechanism, payload)
    if plan.algorithm.endswith("_ecdsa"):
        if not raw or len(raw) % 2:
            raise E.TokenError(f"The token returned a malformed ECDSA signature ({len(raw)} bytes).",
                               operation="sign")
        return bytes(algos.DSASignature.from_p1363(raw).dump())
    return raw
