"""Fuzzing the parsers of everything cert-desk reads from outside: a value or a CertDeskError, in time.

Each target is a public entry point that reads what a user, a token, a card or another program hands
over: certificate, request and PKCS#7 files (:mod:`cert_desk.x509.bundle`), a token's CKA_VALUE
(:func:`certinfo.parse_der_certificate`) and public key attributes (:func:`keys.public_key_spki`,
:func:`export.public_key_bytes`), what a token signs (:func:`csr.build_csr`), certificates checked
against a CA (:func:`verify.verify_certificate`), the local CA's files, requests and end dates
(:mod:`cert_desk.x509.ca`), subjects and subject alternative names as typed (:mod:`cert_desk.x509.names`),
ATRs (:func:`cert_desk.pcsc.atr.parse_atr`), NSS's pkcs11.txt (:mod:`cert_desk.nss.pkcs11txt`) and
Firefox's profiles.ini / installs.ini (:mod:`cert_desk.nss.discovery`).

The property: for any input the target returns a value or raises a :class:`CertDeskError` (no
ValueError, UnicodeError, OverflowError, RecursionError, no warning on stderr), within
:data:`TIME_LIMIT` per call. Where a target promises more (an ATR is always described, an ini file
never refused), that is checked too, and a parsed subject or SAN must read back the same.

Inputs are random bytes and text, and real inputs mutated: bits flipped, bytes and lines inserted,
deleted or duplicated, and DER edited as a tree (nodes dropped, duplicated, swapped, grafted, retagged,
integers and lengths changed) and encoded again with consistent lengths, so the damage reaches deep
into the structure. The real inputs are certificates, requests and PKCS#7 bundles made with
cryptography (keys and signatures deterministic, so every run sees the same seeds), a pkcs11.txt
made by ``certutil -N`` and ``modutil -add``, profiles.ini / installs.ini as Firefox writes them, and
ATRs of real cards. A mutated certificate or request is also signed again, so the checks behind the
signature (chain verification, the local CA issuing for a request) are reached.

Runs are reproducible (``derandomize``); for long local runs ``CERT_DESK_FUZZ_EXAMPLES`` sets the
examples per target (default 200) and ``CERT_DESK_FUZZ_RANDOM=1`` draws new ones. Every crash found is
a file ``tests/data/fuzz/<target>-<name>.bin`` that :func:`test_regression_inputs` replays through
:data:`TARGETS` (``tests/fuzz_atheris.py`` runs the same targets under atheris when it is installed).
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import ipaddress
import math
import os
import random
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cert_desk.errors import CertDeskError
from cert_desk.nss import discovery, pkcs11txt
from cert_desk.pcsc.atr import AtrInfo, parse_atr, parse_atr_hex
from cert_desk.x509 import bundle, ca, certinfo, csr, export, keys, names, verify
from tests.conftest import require_tool

DATA = Path(__file__).parent / "data" / "fuzz"
EXAMPLES = int(os.environ.get("CERT_DESK_FUZZ_EXAMPLES", "200"))
TIME_LIMIT = 2.0
"""Seconds one call may take: every input here is at most a few hundred KiB."""
NOW = datetime(2026, 6, 1, tzinfo=UTC)
"""The clock for verification and issuing: the seeds are valid then, and the results repeat."""

FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("CERT_DESK_FUZZ_RANDOM"),
                database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
"""Reproducible (the same examples every run) unless CERT_DESK_FUZZ_RANDOM=1 asks for fresh ones."""


# ----------------------------------------------------------------------------- the contract


def check(target: str, data: bytes) -> object:
    """Run ``target`` on ``data``: its result, or the CertDeskError it raised. Anything else fails the test."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning is text on the user's stderr, out of any context
        # but for cryptography's note on a name attribute of the wrong length (C=USA) in a certificate it reads
        # all the same: cert-desk shows such certificates, as browsers do
        warnings.filterwarnings("ignore", "Attribute's length must be", UserWarning)
        try:
            result = TARGETS[target](data)
        except CertDeskError as e:
            assert e.message.strip(), f"{target}: {type(e).__name__} without a message"
            result = e
    elapsed = time.perf_counter() - start
    assert elapsed < TIME_LIMIT, f"{target} took {elapsed:.2f} s on {len(data):,} bytes"
    return result


def _text(data: bytes) -> str:
    """The text a file or command line holds: regression files keep lone surrogates (surrogatepass);
    other bytes come as Python reads an undecodable argv or file name (surrogateescape)."""
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return data.decode("utf-8", "surrogateescape")


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


# ----------------------------------------------------------------------------- seeds


def _rsa_key(seed: bytes, bits: int = 2048) -> rsa.RSAPrivateKey:
    """An RSA key that is the same in every run (cryptography generates only random ones)."""
    rng = random.Random(seed)

    small = math.prod(p for p in range(3, 3000, 2) if all(p % q for q in range(3, math.isqrt(p) + 1, 2)))

    def probable_prime(size: int) -> int:
        while True:
            n = rng.getrandbits(size) | (3 << (size - 2)) | 1
            if math.gcd(n, small) != 1 or n % 65537 == 1:
                continue
            d, r = n - 1, 0
            while d % 2 == 0:
                d, r = d // 2, r + 1
            for _ in range(16):
                x = pow(rng.randrange(2, n - 2), d, n)
                if x in (1, n - 1):
                    continue
                for _ in range(r - 1):
                    x = pow(x, 2, n)
                    if x == n - 1:
                        break
                else:
                    break
            else:
                return n

    p, q = probable_prime(bits // 2), probable_prime(bits // 2)
    e = 65537
    d = pow(e, -1, (p - 1) * (q - 1))
    public = rsa.RSAPublicNumbers(e, p * q)
    return rsa.RSAPrivateNumbers(p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q),
                                 rsa.rsa_crt_iqmp(p, q), public).private_key()


def _ec_key(curve: ec.EllipticCurve, label: str) -> ec.EllipticCurvePrivateKey:
    secret = int.from_bytes(hashlib.sha512(label.encode()).digest(), "big")
    return ec.derive_private_key(secret % (1 << (curve.key_size - 1)) + 1, curve)


def _seed32(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


@dataclass(frozen=True)
class Seeds:
    """Real, deterministic inputs for the x509 targets."""

    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate
    leaf: x509.Certificate
    certs: tuple[bytes, ...]  # DER certificates
    cert_files: tuple[bytes, ...]  # every file form load_certificates takes
    csr_key: ec.EllipticCurvePrivateKey
    csrs: tuple[bytes, ...]  # DER requests
    csr_files: tuple[bytes, ...]
    ca_key_files: tuple[bytes, ...]  # the CA's key as PEM, DER and encrypted PEM
    spkis: tuple[bytes, ...]
    ec_params: tuple[bytes, ...]
    ec_points: tuple[bytes, ...]
    rsa_key: rsa.RSAPrivateKey = field(repr=False)


CA_KEY_PASSPHRASE = b"fuzz-ca-key-passphrase"
"""Protects a throwaway key made in memory for the tests; the functions under test take it as bytes."""


def _tlv(tag: int, *content: bytes) -> bytes:
    body = b"".join(content)
    return bytes([tag]) + _length(len(body)) + body


def _integer(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


_SALT = b"\x01" * 16


@functools.cache
def _key_encryption_key(scrypt: bool) -> bytes:
    if scrypt:
        return Scrypt(_SALT, 32, 16384, 8, 1).derive(CA_KEY_PASSPHRASE)
    return PBKDF2HMAC(hashes.SHA256(), 32, _SALT, 2048).derive(CA_KEY_PASSPHRASE)


def _encrypted_pkcs8(pkcs8: bytes, *, scrypt: bool, declared: tuple[int, ...] = ()) -> bytes:
    """``pkcs8`` encrypted as OpenSSL does it (PBES2, AES-256-CBC; PBKDF2-SHA256 with 2048 rounds, or scrypt
    N=16384, r=8, p=1), with a fixed salt and IV where cryptography would choose random ones.

    ``declared``: other KDF parameters to write in the file ((rounds,) or (N, r, p)); the key is still
    encrypted with the usual ones, so only the work its reader is asked to do changes.
    """
    salt, iv = _SALT, b"\x02" * 16
    kek = _key_encryption_key(scrypt)
    if scrypt:
        n, r, p = declared or (16384, 8, 1)
        kdf = _tlv(0x30, bytes.fromhex("06092b06010401da47040b"),
                   _tlv(0x30, _tlv(0x04, salt), _integer(n), _integer(r), _integer(p)))
    else:
        (rounds,) = declared or (2048,)
        kdf = _tlv(0x30, bytes.fromhex("06092a864886f70d01050c"),
                   _tlv(0x30, _tlv(0x04, salt), _integer(rounds), bytes.fromhex("300c06082a864886f70d02090500")))
    padder = sym_padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(kek), modes.CBC(iv)).encryptor()
    encrypted = encryptor.update(padder.update(pkcs8) + padder.finalize()) + encryptor.finalize()
    pbes2 = _tlv(0x30, bytes.fromhex("06092a864886f70d01050d"),
                 _tlv(0x30, kdf, _tlv(0x30, bytes.fromhex("060960864801650304012a"), _tlv(0x04, iv))))
    return _tlv(0x30, pbes2, _tlv(0x04, encrypted))


def _name(*pairs: tuple[ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in pairs])


def _builder(subject: x509.Name, issuer: x509.Name, key: object, serial: int) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key)  # type: ignore[arg-type]
            .serial_number(serial).not_valid_before(datetime(2025, 1, 1, tzinfo=UTC))
            .not_valid_after(datetime(2035, 1, 1, tzinfo=UTC)))


def _der(cert: x509.Certificate | x509.CertificateSigningRequest) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _pem(cert: x509.Certificate | x509.CertificateSigningRequest) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@functools.cache
def seeds() -> Seeds:
    """Certificates of every key type and extension cert-desk meets, a CA, requests, bundles."""
    ca_key = _ec_key(ec.SECP256R1(), "fuzz CA")
    ca_name = _name((NameOID.COUNTRY_NAME, "GB"), (NameOID.ORGANIZATION_NAME, "cert-desk fuzz"),
                    (NameOID.COMMON_NAME, "Fuzz Root CA"))
    ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (_builder(ca_name, ca_name, ca_key.public_key(), 1)
               .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
               .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
               .add_extension(ski, critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
               .sign(ca_key, hashes.SHA256(), ecdsa_deterministic=True))
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)

    def issued(subject: x509.Name, public_key: object, serial: int,
               extra: Sequence[tuple[x509.ExtensionType, bool]] = ()) -> x509.Certificate:
        b = _builder(subject, ca_name, public_key, serial).add_extension(aki, critical=False)
        for ext, critical in extra:
            b = b.add_extension(ext, critical=critical)
        return b.sign(ca_key, hashes.SHA256(), ecdsa_deterministic=True)

    leaf_key = _ec_key(ec.SECP384R1(), "fuzz leaf")
    rich_subject = x509.Name([
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE")]),
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "org"),
                                        x509.NameAttribute(NameOID.USER_ID, "jdoe")]),
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Zürich / R+D, \"lab\"")]),
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "jane@example.org")]),
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.SERIAL_NUMBER, "1234")]),
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "Jane Doe")]),
    ])
    sans = x509.SubjectAlternativeName([
        x509.DNSName("host.example.org"), x509.DNSName("*.example.org"), x509.RFC822Name("jane@example.org"),
        x509.IPAddress(ipaddress.ip_address("192.0.2.1")),
        x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
        x509.UniformResourceIdentifier("https://example.org/"), x509.DirectoryName(ca_name),
        x509.RegisteredID(ObjectIdentifier("1.2.3.4")),
        x509.OtherName(ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), bytes.fromhex("0c0a6a616e65406578616d70")),
    ])
    leaf = issued(rich_subject, leaf_key.public_key(), 0x1F2E3D4C5B6A, [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.KeyUsage(True, True, False, False, True, False, False, False, False), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), False),
        (sans, False),
        (x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier("http://crl.example.org/ca.crl")], None, None, None)]), False),
        (x509.AuthorityInformationAccess([x509.AccessDescription(
            x509.oid.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier("http://ocsp.example.org"))]),
         False),
        (x509.CertificatePolicies([x509.PolicyInformation(ObjectIdentifier("2.23.140.1.2.1"), [
            "https://example.org/cps", x509.UserNotice(x509.NoticeReference("Org", [1, 2]), "explicit")])]), False),
        (x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x04\x03abc"), False),
    ])
    rsa_key = _rsa_key(b"fuzz RSA")
    client = [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)]
    others = [
        issued(_name((NameOID.COMMON_NAME, "rsa")), rsa_key.public_key(), 2, client),
        issued(_name((NameOID.COMMON_NAME, "k1")), _ec_key(ec.SECP256K1(), "k1").public_key(), 3),
        issued(_name((NameOID.COMMON_NAME, "bp")), _ec_key(ec.BrainpoolP256R1(), "bp").public_key(), 4),
        issued(_name((NameOID.COMMON_NAME, "x25519")),
               x25519.X25519PrivateKey.from_private_bytes(_seed32("x")).public_key(), 5),
        issued(_name((NameOID.COMMON_NAME, "ed448")),
               ed448.Ed448PrivateKey.from_private_bytes(_seed32("ed448") + _seed32("b")[:25]).public_key(), 6),
    ]
    ed_key = ed25519.Ed25519PrivateKey.from_private_bytes(_seed32("ed25519"))
    ed_name = _name((NameOID.COMMON_NAME, "ed25519 self-signed"))
    others.append(_builder(ed_name, ed_name, ed_key.public_key(), 7).sign(ed_key, None))
    pss_name = _name((NameOID.COMMON_NAME, "rsa-pss self-signed"))
    others.append(_builder(pss_name, pss_name, rsa_key.public_key(), 8).sign(
        rsa_key, hashes.SHA256(), rsa_padding=padding.PSS(padding.MGF1(hashes.SHA256()), 0)))
    certs = (ca_cert, leaf, *others)

    csr_key = _ec_key(ec.SECP256R1(), "fuzz CSR")
    request = x509.CertificateSigningRequestBuilder().subject_name(rich_subject)
    csrs = (
        request.add_extension(sans, critical=False).add_attribute(
            x509.oid.AttributeOID.CHALLENGE_PASSWORD, b"not a secret").sign(
            csr_key, hashes.SHA256(), ecdsa_deterministic=True),
        x509.CertificateSigningRequestBuilder().subject_name(_name((NameOID.COMMON_NAME, "rsa"))).sign(
            rsa_key, hashes.SHA256()),
        x509.CertificateSigningRequestBuilder().subject_name(ed_name).sign(ed_key, None),
    )
    text = b"subject=/CN=Jane Doe\nissuer=/CN=Fuzz Root CA\n"
    cert_files = (
        *(_der(c) for c in certs), _pem(leaf), text + _pem(leaf) + b"Bag Attributes\n" + _pem(ca_cert),
        pkcs7.serialize_certificates([leaf, ca_cert], serialization.Encoding.DER),
        pkcs7.serialize_certificates([leaf, ca_cert], serialization.Encoding.PEM),
        _pem(csrs[0]),
    )
    pkcs8 = ca_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    ca_key_files = (
        _pem_wrap(pkcs8, b"PRIVATE KEY"),
        pkcs8,
        ca_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()),
        _encrypted_pkcs8(pkcs8, scrypt=False),
        _encrypted_pkcs8(pkcs8, scrypt=True),
    )
    spkis = tuple(c.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo) for c in certs)
    ec_params = tuple(bytes.fromhex(h) for h in (
        "06082a8648ce3d030107", "06052b81040022", "06052b81040023", "06052b8104000a", "06092b2403030208010107",
        "06032b6570", "130c656477617264733235353139", "06032b6571"))
    p256_point = ca_key.public_key().public_bytes(serialization.Encoding.X962,
                                                  serialization.PublicFormat.UncompressedPoint)
    ec_points = (
        b"\x04\x41" + p256_point,
        p256_point,
        b"\x04\x20" + ed_key.public_key().public_bytes_raw(),
        ca_key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint),
    )
    return Seeds(ca_key, ca_cert, leaf, tuple(_der(c) for c in certs), cert_files, csr_key,
                 tuple(_der(r) for r in csrs), (*(_der(r) for r in csrs), *(_pem(r) for r in csrs)),
                 ca_key_files, spkis, ec_params, ec_points, rsa_key)


SUBJECT_SEEDS = (
    "/C=GB/O=HW/CN=colinpaice", "CN=colinpaice,O=HW,C=GB", "/DC=org/DC=example/CN=Jane Doe+UID=jdoe",
    "CN=Jane\\, Doe\\+x,OU=R\\2BD,emailAddress=jane@example.org", "/CN=a\\/b\\+c/serialNumber=12 34",
    "2.5.4.3=x, 2.5.4.12=Dr, GN=Jane, SN=Doe", "CN=\\E2\\82\\AC uro,O=\\#hash", "/E=a@b.example/street=1 Road",
)
SAN_SEEDS = ("DNS:host.example.org", "DNS:*.bücher.example", "email:jane@example.org", "IP:192.0.2.1",
             "IP:fe80::1%eth0", "URI:https://example.org/a?b=c", "ip: ::1 ", "dns:xn--bcher-kva.example")
NOT_AFTER_SEEDS = ("20301231235959Z", "301231235959Z", "2030-12-31", "2030-12-31T23:59:59Z",
                   "2030-12-31 23:59:59+02:00", "0001-01-01T00:00:00-01:00", "991231235959Z")
ATR_SEEDS = tuple(bytes.fromhex(h) for h in (
    "3BFE1800008131FE458031815448534D31738021408107FA", "3BDE18FF8191FE1FC38031815448534D317380214081071C",
    "3BDA18FF81B1FE751F030031C573C001400090000C", "3B7D96000080318065B0831117E583009000",
    "3B8F80018073CC91CBF9A0000003080000100029", "3B88800100730000E00590000F", "3B951381018073FF01000B",
    "3F", "3B00", "3BFF"))

FIREFOX_PROFILES = b"""[Install4F96D1932A9F858E]
Default=Profiles/abcd1234.default-release
Locked=1

[Profile1]
Name=default
IsRelative=1
Path=Profiles/wxyz9876.default
Default=1

[Profile0]
Name=default-release
IsRelative=1
Path=Profiles/abcd1234.default-release

[Profile2]
Name=work
IsRelative=0
Path=/home/jane/work-profile

[General]
StartWithLastProfile=1
Version=2
"""
FIREFOX_INSTALLS = b"""[4F96D1932A9F858E]
Default=Profiles/abcd1234.default-release
Locked=1

[6AFDA46A1A8AD48]
Default=/home/jane/work-profile
Locked=1
"""
INI_SEEDS = (FIREFOX_PROFILES, FIREFOX_INSTALLS, FIREFOX_PROFILES.replace(b"\n", b"\r\n"),
             b"[Profile0]\nName=only\nIsRelative=1\nPath=../x\nDefault=1\n")


# ----------------------------------------------------------------------------- mutations


@dataclass
class _Node:
    """One DER TLV; ``children`` for constructed values and for DER wrapped in an OCTET or BIT STRING."""

    tag: int
    content: bytes = b""
    children: list[_Node] | None = None
    prefix: bytes = b""  # the unused-bits byte of a BIT STRING that holds DER


def parse_der(data: bytes, depth: int = 0) -> list[_Node] | None:
    """The TLVs that make up ``data`` exactly (low tag numbers, definite lengths), else None."""
    nodes: list[_Node] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data) or data[pos] & 0x1F == 0x1F:
            return None
        tag, first = data[pos], data[pos + 1]
        pos += 2
        length = first
        if first & 0x80:
            count = first & 0x7F
            if not 0 < count <= 3 or pos + count > len(data):
                return None
            length = int.from_bytes(data[pos:pos + count], "big")
            pos += count
        if pos + length > len(data):
            return None
        node = _Node(tag, data[pos:pos + length])
        pos += length
        if depth < 16:
            if tag & 0x20:
                node.children = parse_der(node.content, depth + 1)
                if node.children is None:
                    return None
            elif tag == 0x04 and node.content[:1] in (b"\x30", b"\x31", b"\x04", b"\x03", b"\x06", b"\x02"):
                node.children = parse_der(node.content, depth + 1) or None
            elif tag == 0x03 and node.content[:2] in (b"\x00\x30", b"\x00\x02"):
                inner = parse_der(node.content[1:], depth + 1)
                if inner:
                    node.children, node.prefix = inner, node.content[:1]
        nodes.append(node)
    return nodes


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def encode_der(nodes: Sequence[_Node]) -> bytes:
    out = bytearray()
    for node in nodes:
        body = node.prefix + encode_der(node.children) if node.children is not None else node.content
        out.append(node.tag)
        out += _length(len(body))
        out += body
    return bytes(out)


def _all_nodes(nodes: list[_Node]) -> list[tuple[list[_Node], int]]:
    """Every node as (the list holding it, its index), depth first."""
    out: list[tuple[list[_Node], int]] = []
    for i, node in enumerate(nodes):
        out.append((nodes, i))
        if node.children is not None:
            out += _all_nodes(node.children)
    return out


_TAGS = (0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0C, 0x13, 0x14, 0x16, 0x17, 0x18, 0x1A, 0x1C, 0x1E, 0x30, 0x31,
         0x80, 0x81, 0x82, 0x86, 0x87, 0x88, 0xA0, 0xA3, 0xA4)
_INTERESTING_BYTES = (0x00, 0x01, 0x0A, 0x20, 0x22, 0x2B, 0x2D, 0x2F, 0x3A, 0x3D, 0x5C, 0x7F, 0x80, 0x81, 0x82, 0x83,
                      0x84, 0xFE, 0xFF)
_INTEGERS = (b"", b"\x00", b"\x00\x00", b"\xff", b"\x80", b"\x7f" + b"\xff" * 40, b"\x01" * 129,
             b"\x00\x00\x00\x01", b"\x01\x00\x01\x00\x00", b"\x10\x00\x00", b"\x01\x00\x00\x00",
             b"\x7f\xff\xff\xff", b"\x00\xff\xff\xff\xff")
_DER_OPS = ("node-delete", "node-duplicate", "node-swap", "node-graft", "node-content", "node-tag", "node-int",
            "node-truncate", "node-wrap", "node-nest")
_BYTE_OPS = ("flip", "set", "insert", "delete", "truncate", "duplicate", "token", "line-duplicate",
             "line-delete", "line-swap")
OPS = st.lists(st.tuples(st.sampled_from(_DER_OPS + _BYTE_OPS), st.integers(0, 1 << 16), st.integers(0, 1 << 16),
                         st.binary(max_size=24)), min_size=1, max_size=6)
"""A list of mutations, each (kind, a, b, payload); a and b are taken modulo whatever they index."""
Op = tuple[str, int, int, bytes]


def _der_op(nodes: list[_Node], kind: str, a: int, b: int, payload: bytes) -> None:
    spots = _all_nodes(nodes)
    holder, i = spots[a % len(spots)]
    node = holder[i]
    if kind == "node-delete" and len(spots) > 1:
        del holder[i]
    elif kind == "node-duplicate":
        holder.insert(i, copy.deepcopy(node))
    elif kind == "node-swap":
        j = b % len(holder)
        holder[i], holder[j] = holder[j], holder[i]
    elif kind == "node-graft":
        other_holder, j = spots[b % len(spots)]
        holder[i] = copy.deepcopy(other_holder[j])
    elif kind == "node-content":
        node.children, node.prefix = None, b""
        node.content = payload if payload or b % 2 else node.content[::-1]
    elif kind == "node-tag":
        node.tag = _TAGS[b % len(_TAGS)]
        if node.children is not None and not node.tag & 0x20:
            node.content, node.children, node.prefix = encode_der(node.children), None, b""
    elif kind == "node-int":
        node.tag, node.children, node.prefix = 0x02, None, b""
        node.content = _INTEGERS[b % len(_INTEGERS)]
    elif kind == "node-truncate":
        flat = node.prefix + encode_der(node.children) if node.children is not None else node.content
        node.children, node.prefix = None, b""
        node.content = flat[:b % (len(flat) + 1)]
    elif kind == "node-wrap":
        holder[i] = _Node(_TAGS[b % len(_TAGS)] | 0x20, children=[node])
    elif kind == "node-nest":  # thousands of SEQUENCEs deep: recursion in whatever parses it
        inner = encode_der([node])
        for _ in range(b % 5000):
            inner = b"\x30" + _length(len(inner)) + inner
        holder[i] = _Node(0x30, inner)


def mutate(blob: bytes, ops: Sequence[Op], tokens: Sequence[bytes] = ()) -> bytes:
    """``blob`` with ``ops`` applied in turn; DER edits keep every length consistent."""
    data = bytearray(blob)
    for op, a, b, payload in ops:
        kind = op
        if op.startswith("node-"):
            tree = parse_der(bytes(data))
            if tree:
                _der_op(tree, op, a, b, payload)
                data = bytearray(encode_der(tree))
                continue
            kind = "flip"  # not DER (any more): a plain byte edit instead
        n = len(data)
        pos = a % (n + 1)
        if kind == "flip" and n:
            data[pos % n] ^= 1 << (b % 8)
        elif kind == "set" and n:
            data[pos % n] = _INTERESTING_BYTES[b % len(_INTERESTING_BYTES)]
        elif kind == "insert":
            data[pos:pos] = payload or b"\x00"
        elif kind == "delete":
            del data[pos:pos + b % 64 + 1]
        elif kind == "truncate":
            del data[pos:]
        elif kind == "duplicate":
            chunk = data[pos:pos + b % 256 + 1]
            data[b % (n + 1):b % (n + 1)] = chunk
        elif kind == "token" and tokens:
            data[pos:pos] = tokens[b % len(tokens)]
        elif kind.startswith("line-"):
            lines = bytes(data).split(b"\n")
            i, j = a % len(lines), b % len(lines)
            if kind == "line-duplicate":
                lines.insert(j, lines[i])
            elif kind == "line-delete":
                del lines[i]
            else:
                lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\n".join(lines))
    return bytes(data)


def _pem_wrap(der: bytes, label: bytes = b"CERTIFICATE") -> bytes:
    body = base64.encodebytes(der)
    return b"-----BEGIN " + label + b"-----\n" + body + b"-----END " + label + b"-----\n"


_ECDSA_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")


def resign(der: bytes, ops: Sequence[Op], key: ec.EllipticCurvePrivateKey) -> bytes:
    """``der`` (a certificate or request) with its signed part mutated, signed again with ``key``."""
    tree = parse_der(der)
    assert tree and tree[0].children, "a seed that is not DER"
    signed_part = encode_der(tree[0].children[:1])
    mutated = mutate(signed_part, ops)
    signature = key.sign(mutated, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    bit_string = b"\x03" + _length(len(signature) + 1) + b"\x00" + signature
    body = mutated + _ECDSA_SHA256 + bit_string
    return b"\x30" + _length(len(body)) + body


# ----------------------------------------------------------------------------- the targets


def _certificates(data: bytes) -> object:
    loaded = bundle.load_certificates(data, "fuzz.pem")
    assert loaded.certificates
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "in.crt")
        path.write_bytes(data)
        assert bundle.read_certificate_file(path).certificates == loaded.certificates
    for cert in loaded.certificates:  # a loaded certificate is fully usable, as the module promises
        info = certinfo.certificate_info(cert)
        if info.spki:
            _public_key(info.spki)
    return loaded


def _public_key(spki: bytes) -> None:
    export.public_key_bytes(spki, "pem")


def _csr(data: bytes) -> object:
    return bundle.load_csr(data, "fuzz.csr")


def _certinfo(data: bytes) -> object:
    info = certinfo.parse_der_certificate(data)
    assert info.der == data
    _public_key(info.spki)
    return info


def _verify_leaf(data: bytes) -> object:
    """A certificate (any file form) checked against the seed CA, and as the CA of the seed leaf."""
    s = seeds()
    certs = bundle.load_certificates(data).certificates
    reports = [verify.verify_certificate(cert, [s.ca_cert], now=NOW, check_token_key=True,
                                         token_spki=s.spkis[1]) for cert in certs]
    reports.append(verify.verify_certificate(s.leaf, certs, certs, now=NOW))
    return reports


def _sign_csr(data: bytes) -> object:
    s = seeds()
    request = bundle.load_csr(data)
    return ca.sign_csr(ca.LoadedCa(s.ca_cert, s.ca_key), request, now=NOW)


def _load_ca(cert_data: bytes, key_data: bytes) -> object:
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = Path(tmp, "ca.crt"), Path(tmp, "ca.key")
        cert_path.write_bytes(cert_data)
        key_path.write_bytes(key_data)
        return ca.load_ca(cert_path, key_path, lambda: CA_KEY_PASSPHRASE)


def _ca_cert_file(data: bytes) -> object:
    return _load_ca(data, seeds().ca_key_files[0])


def _ca_key_file(data: bytes) -> object:
    return _load_ca(_pem(seeds().ca_cert), data)


def _build_csr(data: bytes) -> object:
    """What a token returns as the signature of a request."""
    s = seeds()
    return csr.build_csr(s.leaf.subject, s.spkis[0], [x509.DNSName("example.org")], "sha256_ecdsa", lambda _: data)


def _spki(data: bytes) -> object:
    """CKA_PUBLIC_KEY_INFO from a token, and a raw SubjectPublicKeyInfo exported as PEM."""
    result = keys.public_key_spki(public_key_info=data)
    if result is not None:
        _public_key(result)
    _public_key(data)
    return result


def _ec_params(data: bytes) -> object:
    keys.curve_from_ec_params(data)
    return [keys.public_key_spki(ec_params=data, ec_point=point) for point in seeds().ec_points]


def _ec_point(data: bytes) -> object:
    return [keys.public_key_spki(ec_params=params, ec_point=data) for params in seeds().ec_params]


def _rsa_attributes(data: bytes) -> object:
    cut = data[0] if data else 0
    return keys.public_key_spki(modulus=data[1:1 + cut], exponent=data[1 + cut:])


def _subject(data: bytes) -> object:
    name = names.parse_subject(_text(data))
    assert names.parse_subject(names.subject_text(name)) == name, names.subject_text(name)
    assert names.parse_subject(name.rfc4514_string()) == name, name.rfc4514_string()
    return name


def _san(data: bytes) -> object:
    general_name = names.parse_san(_text(data))
    assert names.parse_san(names.san_text(general_name)) == general_name
    return general_name


def _field(data: bytes) -> object:
    attr, _, value = _text(data).partition("=")
    verdict = names.validate_field(attr, value)  # never raises: it is asked at every key press
    assert verdict is None or isinstance(verdict, str)
    try:
        names.build_subject([(attr, value)])
    except CertDeskError:
        built = False
    else:
        built = True
    assert built == (verdict is None and bool(value.strip())), (attr, value, verdict)
    return verdict


def _not_after(data: bytes) -> object:
    moment = ca.parse_not_after(_text(data))
    assert moment.tzinfo is not None and moment.utcoffset() == UTC.utcoffset(None)
    return moment


def _atr(data: bytes) -> object:
    try:
        info = parse_atr(data)
    except CertDeskError as e:  # "never raises": not even a CertDeskError
        raise AssertionError(f"parse_atr raised {e!r}") from e
    assert isinstance(info, AtrInfo) and info.raw == data
    assert parse_atr_hex(info.hex) == data
    assert (info.protocols or not data) and (info.problems or len(data) <= 33)
    info.protocol_words()
    info.historical_text()
    return info


def _pkcs11txt(data: bytes) -> object:
    result = pkcs11txt.scan(data, "pkcs11.txt")
    assert len(result.warnings) <= 21
    assert pkcs11txt.scan(data.decode("utf-8", "surrogateescape"), "pkcs11.txt") == result
    pkcs11txt.parse(_text(data))
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "pkcs11.txt").write_bytes(data)
        from_file = pkcs11txt.read_scan(tmp)  # its warnings name the file
        assert (from_file.modules, from_file.dropped, from_file.at_risk) == (result.modules, result.dropped,
                                                                             result.at_risk)
    return result


def _ini(profiles: bytes, installs: bytes | None) -> object:
    base = "/home/jane/.mozilla/firefox"
    text = profiles.decode("utf-8", "replace")
    found = discovery.parse_profiles_ini(text, base, installs=(installs or b"").decode("utf-8", "replace"))
    discovery.parse_profiles_ini(_text(profiles), base)
    for name, directory, default in found:
        assert isinstance(name, str) and isinstance(default, bool)
        assert os.path.isabs(directory) and os.path.normpath(directory) == directory
    with tempfile.TemporaryDirectory() as home:
        root = Path(home, ".mozilla", "firefox")
        root.mkdir(parents=True)
        (root / "profiles.ini").write_bytes(profiles)
        if installs is not None:
            (root / "installs.ini").write_bytes(installs)
        return found, discovery.discover(home)


TARGETS: dict[str, Callable[[bytes], object]] = {
    "certs": _certificates,
    "csr": _csr,
    "certinfo": _certinfo,
    "verify": _verify_leaf,
    "signcsr": _sign_csr,
    "cacert": _ca_cert_file,
    "cakey": _ca_key_file,
    "buildcsr": _build_csr,
    "spki": _spki,
    "ecparams": _ec_params,
    "ecpoint": _ec_point,
    "rsa": _rsa_attributes,
    "subject": _subject,
    "san": _san,
    "field": _field,
    "notafter": _not_after,
    "atr": _atr,
    "pkcs11txt": _pkcs11txt,
    "profiles": lambda data: _ini(data, None),
    "installs": lambda data: _ini(FIREFOX_PROFILES, data),
}
"""Target name (the prefix of a regression file's name) -> the call with its checks."""


# ----------------------------------------------------------------------------- hypothesis: x509

_PEM_TOKENS = (b"-----BEGIN CERTIFICATE-----\n", b"-----END CERTIFICATE-----\n", b"-----BEGIN PKCS7-----",
               b"-----BEGIN ", b"-----END ", b"-----", b"\n", b"\r\n", b"=", b"\x00", b"\xff",
               b"-----BEGIN CERTIFICATE REQUEST-----\n", b"-----BEGIN PRIVATE KEY-----\n")
_BINARY = st.one_of(
    st.binary(max_size=4096),
    st.binary(max_size=512).map(lambda b: b"\x30\x82" + b),
    st.binary(max_size=512).map(lambda b: b"-----BEGIN CERTIFICATE-----\n" + b),
)


@FUZZ
@given(data=_BINARY)
def test_random_bytes(data: bytes) -> None:
    for target in ("certs", "csr", "certinfo", "spki", "ecparams", "ecpoint", "rsa", "atr", "buildcsr"):
        check(target, data)


@FUZZ
@given(index=st.integers(0, 1 << 8), ops=OPS, as_pem=st.booleans())
def test_mutated_certificate_files(index: int, ops: list[Op], as_pem: bool) -> None:
    s = seeds()
    blob = mutate(s.cert_files[index % len(s.cert_files)], ops, _PEM_TOKENS)
    if as_pem and not blob.startswith(b"-----"):
        blob = _pem_wrap(blob)
    check("certs", blob)
    check("certinfo", blob)
    check("verify", blob)


@FUZZ
@given(index=st.integers(0, 1 << 8), ops=OPS)
def test_resigned_certificates(index: int, ops: list[Op]) -> None:
    """The signed part mutated and signed again by the CA: the chain checks behind the signature are reached."""
    s = seeds()
    der = resign(s.certs[index % len(s.certs)], ops, s.ca_key)
    check("certs", der)
    check("certinfo", der)
    check("verify", der)
    check("cacert", der)


@FUZZ
@given(index=st.integers(0, 1 << 8), ops=OPS, resigned=st.booleans())
def test_mutated_requests(index: int, ops: list[Op], resigned: bool) -> None:
    s = seeds()
    if resigned:
        blob = resign(s.csrs[0], ops, s.csr_key)  # signed by the key it carries, unless the key was mutated
    else:
        blob = mutate(s.csr_files[index % len(s.csr_files)], ops, _PEM_TOKENS)
    check("csr", blob)
    check("signcsr", blob)


@FUZZ
@given(index=st.integers(0, 1 << 8), ops=OPS, as_pem=st.booleans())
def test_mutated_ca_key_files(index: int, ops: list[Op], as_pem: bool) -> None:
    """The CA's key, plain and encrypted (PBKDF2 and scrypt, whose work the file sets), as DER and PEM."""
    s = seeds()
    blob = mutate(s.ca_key_files[index % len(s.ca_key_files)], ops, (b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n",))
    if as_pem and not blob.startswith(b"-----"):
        blob = _pem_wrap(blob, b"ENCRYPTED PRIVATE KEY" if b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x05\x0d" in blob
                         else b"PRIVATE KEY")
    check("cakey", blob)


_CHEAP = st.integers(-2, 4096)
_HUGE = st.integers(1 << 24, 1 << 70)


@FUZZ
@given(rounds=st.one_of(_CHEAP, _HUGE, st.just(ca.MAX_PBKDF2_ITERATIONS + 1)),
       scrypt=st.one_of(
           st.tuples(st.sampled_from([0, 1, 2, 1024, 16384, 16385]), st.integers(-1, 8), st.integers(-1, 2)),
           st.tuples(st.sampled_from([1 << 20, 1 << 22, 1 << 40]), st.integers(8, 1 << 33), st.integers(1, 1 << 33)),
           st.tuples(_CHEAP, _HUGE, _HUGE)),
       as_pem=st.booleans())
def test_ca_key_work_factors(rounds: int, scrypt: tuple[int, int, int], as_pem: bool) -> None:
    """An encrypted key's file sets how much work decrypting it takes (PBKDF2 rounds; scrypt N, r, p):
    whatever it says, load_ca answers in time (a file cannot make it run for minutes or take GiBs)."""
    pkcs8 = seeds().ca_key_files[1]
    for blob in (_encrypted_pkcs8(pkcs8, scrypt=False, declared=(rounds,)),
                 _encrypted_pkcs8(pkcs8, scrypt=True, declared=scrypt)):
        check("cakey", _pem_wrap(blob, b"ENCRYPTED PRIVATE KEY") if as_pem else blob)


@FUZZ
@given(index=st.integers(0, 1 << 8), ops=OPS)
def test_mutated_token_public_keys(index: int, ops: list[Op]) -> None:
    s = seeds()
    check("spki", mutate(s.spkis[index % len(s.spkis)], ops))
    check("ecparams", mutate(s.ec_params[index % len(s.ec_params)], ops))
    check("ecpoint", mutate(s.ec_points[index % len(s.ec_points)], ops))
    modulus = s.rsa_key.public_key().public_numbers().n.to_bytes(256, "big")
    check("rsa", mutate(b"\xff" + modulus[:255] + b"\x01\x00\x01", ops))


@FUZZ
@given(signature=st.one_of(st.binary(max_size=200), st.just(b"\x30\x06\x02\x01\x01\x02\x01\x01")))
def test_token_signatures(signature: bytes) -> None:
    check("buildcsr", signature)


# ----------------------------------------------------------------------------- hypothesis: typed text

_SUBJECT_CHARS = st.sampled_from([*list('/\\+=,#"; <>aZ09.-_@é€\x00\n\t'), "�", "�", "𝄞", " "])
_ATTRIBUTE_NAMES = st.sampled_from(["C", "c", "CN", "cn", "O", "OU", "L", "ST", "emailAddress", "E", "email",
                                    "serialNumber", "DC", "UID", "uid", "title", "GN", "SN", "street", "2.5.4.3",
                                    "1.2.840.113549.1.9.1", "X", "", " CN "])
_VALUES = st.text(_SUBJECT_CHARS, max_size=12) | st.text(max_size=12)


@st.composite
def _slash_subject(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.tuples(_ATTRIBUTE_NAMES, _VALUES, st.sampled_from(["/", "+"])), min_size=1, max_size=5))
    return "".join(f"{sep if i else '/'}{a}={v}" for i, (a, v, sep) in enumerate(parts))


@st.composite
def _rfc4514_subject(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.tuples(_ATTRIBUTE_NAMES, _VALUES, st.sampled_from([",", "+", ", "])), min_size=1,
                          max_size=5))
    return "".join(f"{sep if i else ''}{a}={v}" for i, (a, v, sep) in enumerate(parts))


def _mutated_text(seed_texts: Sequence[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda i, ops: _text(mutate(_bytes(seed_texts[i % len(seed_texts)]), ops,
                                                 (b"\\", b"/", b"+", b",", b"=", b"#", b"\\2", b"\xc3"))),
                     st.integers(0, 1 << 8), OPS)


@FUZZ
@given(text=st.one_of(st.text(max_size=64), _slash_subject(), _rfc4514_subject(), _mutated_text(SUBJECT_SEEDS)))
def test_subjects(text: str) -> None:
    check("subject", _bytes(text))
    check("field", _bytes(text.lstrip("/")))


@FUZZ
@given(text=st.one_of(
    st.text(max_size=64),
    st.builds(lambda kind, value: f"{kind}:{value}",
              st.sampled_from(["DNS", "dns", "email", "IP", "URI", "uri", " DNS ", "RID", "dirName"]),
              st.lists(st.sampled_from([*"a-.*:/%@[]1 é\u3002\ufb01\ud800", "xn--", "::"]), max_size=12).map("".join)),
    _mutated_text(SAN_SEEDS)))
def test_subject_alternative_names(text: str) -> None:
    check("san", _bytes(text))


@FUZZ
@given(text=st.one_of(
    st.text(max_size=40),
    st.text(st.sampled_from(list("0123456789-:TZ+ .")), max_size=30),
    st.datetimes(timezones=st.timezones() | st.none()).map(lambda d: d.isoformat()),
    st.builds(lambda day, clock, zone: day + clock + zone,
              st.sampled_from(["0001-01-01", "9999-12-31", "2030-02-29", "0000-01-01", "2030-12-31"]),
              st.sampled_from(["", "T00:00:00", " 23:59:59", "T24:00:00", "T12:00", "T23:59:60"]),
              st.sampled_from(["", "Z", "+01:00", "-01:00", "+23:59", "-23:59", "+24:00", "+0100", "z"])),
    st.builds(lambda y, rest: f"{y:04d}{rest}", st.integers(0, 9999), st.sampled_from(
        ["-12-31", "-01-01T00:00:00-23:59", "-12-31T23:59:59+23:59", "1231235959Z", "-02-29 24:00"])),
    _mutated_text(NOT_AFTER_SEEDS)))
def test_end_dates(text: str) -> None:
    check("notafter", _bytes(text))


# ----------------------------------------------------------------------------- hypothesis: cards and files


@FUZZ
@given(data=st.one_of(st.binary(max_size=40), st.builds(
    lambda i, ops: mutate(ATR_SEEDS[i % len(ATR_SEEDS)], ops), st.integers(0, 1 << 8), OPS)))
def test_atrs(data: bytes) -> None:
    check("atr", data)


@FUZZ
@given(text=st.text(max_size=80))
def test_atr_hex_text(text: str) -> None:
    """parse_atr_hex is documented to raise ValueError (its callers say 'not hex'): nothing else."""
    try:
        raw = parse_atr_hex(text)
    except ValueError:
        return
    assert parse_atr_hex(raw.hex(":")) == raw


@pytest.fixture(scope="module")
def pkcs11_txt_seeds(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, ...]:
    """pkcs11.txt as NSS writes it: certutil -N, then modutil -add of the modules installed here, with a
    private HOME and an empty SoftHSM2 (its one slot has ID 0); the database's path is replaced by a
    fixed one, so every run mutates the same bytes."""
    certutil, modutil = require_tool("certutil"), require_tool("modutil")
    root = tmp_path_factory.mktemp("nss")
    db, tokens = root / "nssdb", root / "tokens"
    db.mkdir()
    tokens.mkdir()
    (root / "softhsm2.conf").write_text(f"directories.tokendir = {tokens}\n", encoding="utf-8")
    env = dict(os.environ, HOME=str(root), SOFTHSM2_CONF=str(root / "softhsm2.conf"))

    def run(*args: str) -> None:
        proc = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, env=env)
        assert proc.returncode == 0, f"{' '.join(args)}: {proc.stdout}{proc.stderr}"

    run(certutil, "-N", "-d", f"sql:{db}", "--empty-password")
    for name, library, extra in (("SoftHSM2", "/usr/lib/softhsm/libsofthsm2.so", ("-mechanisms", "RSA:ECC")),
                                 ("OpenSC smart card", "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so", ()),
                                 ("p11-kit-proxy", "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so", ())):
        if os.path.exists(library):
            run(modutil, "-dbdir", f"sql:{db}", "-add", name, "-libfile", library, *extra, "-force")
    real = (db / "pkcs11.txt").read_bytes().replace(str(db).encode(), b"/home/jane/.pki/nssdb")
    assert b"Flags=internal" in real, real
    blocks = real.split(b"\n\n")
    return (real, real.rstrip(b"\n") + b"\n", real.rstrip(b"\n"), blocks[0] + b"\n\n" + b"\n\n".join(blocks[1:][::-1]),
            real.replace(b"\n", b"\r\n"))


_PKCS11_TOKENS = (b"library=", b"name=", b"parameters=", b"NSS=", b"Flags=internal", b"\n\n", b"\n", b"\r",
                  b"\x00", b'"', b"'", b"\\", b"{", b"(", b"[", b"#", b"=", b" ", b"\xff", b"p11-kit-proxy.so")


@FUZZ
@given(index=st.integers(0, 1 << 8), ops=OPS)
def test_mutated_pkcs11_txt(pkcs11_txt_seeds: tuple[bytes, ...], index: int, ops: list[Op]) -> None:
    check("pkcs11txt", mutate(pkcs11_txt_seeds[index % len(pkcs11_txt_seeds)], ops, _PKCS11_TOKENS))


@FUZZ
@given(data=st.one_of(st.binary(max_size=3000), st.text(max_size=300).map(_bytes),
                      st.lists(st.sampled_from((*_PKCS11_TOKENS, b"/x.so", b"a", b"Flags=")), max_size=40).map(
                          b"".join)))
def test_random_pkcs11_txt(data: bytes) -> None:
    check("pkcs11txt", data)


_INI_TOKENS = (b"[Profile0]\n", b"[Install", b"[General]", b"Path=", b"IsRelative=1\n", b"IsRelative=0\n",
               b"Default=1\n", b"Default=", b"Name=", b"\n", b"\r", b"\x00", b"\xff", b"=", b"[", b"]", b"/", b"..",
               b"\xef\xbf\xbd", b";", b"#")


@FUZZ
@given(index=st.integers(0, 1 << 8), ops=OPS, random_bytes=st.binary(max_size=600), which=st.integers(0, 2))
def test_profiles_and_installs_ini(index: int, ops: list[Op], random_bytes: bytes, which: int) -> None:
    blob = mutate(INI_SEEDS[index % len(INI_SEEDS)], ops, _INI_TOKENS) if which else random_bytes
    check("profiles" if which != 2 else "installs", blob)


# ----------------------------------------------------------------------------- regressions and tools


REGRESSIONS = sorted(DATA.glob("*.bin"))


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.stem for p in REGRESSIONS])
def test_regression_inputs(path: Path) -> None:
    """Every input a fuzzer once crashed on, replayed: now a value or a CertDeskError, in time."""
    target = path.stem.split("-", 1)[0]
    assert target in TARGETS, f"{path.name}: unknown target {target!r} (known: {', '.join(TARGETS)})"
    check(target, path.read_bytes())


def test_mutations_keep_der_consistent() -> None:
    """The fuzzer's own DER editing: parse and encode round-trip, and a tree edit stays parseable DER."""
    s = seeds()
    for der in (*s.certs, *s.csrs, *s.spkis):
        tree = parse_der(der)
        assert tree is not None and encode_der(tree) == der
        assert parse_der(mutate(der, [("node-duplicate", 7, 0, b""), ("node-int", 3, 1, b"")])) is not None
    assert bundle.load_certificates(resign(s.certs[1], [("flip", 0, 0, b"")] * 2, s.ca_key)).certificates


def test_seeds_are_accepted() -> None:
    """Unmutated, the seeds pass every target meant for them, so a mutation starts from a good input."""
    s = seeds()
    for blob in s.cert_files[:-1]:
        assert not isinstance(check("certs", blob), CertDeskError), blob[:40]
    leaf_reports, ca_reports = check("verify", _pem(s.leaf)), check("verify", _pem(s.ca_cert))
    assert isinstance(leaf_reports, list) and len(leaf_reports[0].chain) == 2, leaf_reports
    assert isinstance(ca_reports, list) and ca_reports[-1].ok, ca_reports
    assert isinstance(check("signcsr", s.csr_files[0]), x509.Certificate)
    for blob in s.ca_key_files:
        assert isinstance(check("cakey", blob), ca.LoadedCa)
    for text in SUBJECT_SEEDS:
        assert isinstance(check("subject", _bytes(text)), x509.Name), text
    for atr in ATR_SEEDS[:7]:
        assert not parse_atr(atr).problems, atr.hex()
    result = check("profiles", FIREFOX_PROFILES)
    assert isinstance(result, tuple)
    found, databases = result
    defaults = [d for _, d, default in found if default]
    assert defaults == ["/home/jane/.mozilla/firefox/Profiles/abcd1234.default-release"]
    assert len(databases) == 4  # Chrome's, and the three profiles


def test_atheris_script() -> None:
    """tests/fuzz_atheris.py runs the same targets under atheris; only where atheris is installed."""
    import importlib.util

    from tests.conftest import require

    require(importlib.util.find_spec("atheris") is not None, "atheris (the test extra, x86_64, Python < 3.13)")
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("fuzz_atheris.py")), "-runs=1000"],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_atheris_entry_point_without_atheris() -> None:
    """The atheris entry point takes the regression files (and so the targets) as this file does."""
    from tests import fuzz_atheris

    for path in REGRESSIONS:
        fuzz_atheris.one_input(fuzz_atheris.encode_input(path.stem.split("-", 1)[0], path.read_bytes()))
