"""Certificate verification and lints, every case judged by ``openssl verify -x509_strict`` too.

Each test makes its certificates (with cryptography, or with ``openssl`` where cryptography
refuses, as for SHA-1 signatures), asks cert-desk and asks OpenSSL, and asserts that
``report.ok`` equals OpenSSL's verdict (its exit code). Where the plain command
``openssl verify -x509_strict`` is not the right judge, the test says why and adds the option
that is: ``-purpose sslclient|sslserver`` (plain ``openssl verify`` checks no purpose at all,
a TLS server checks sslclient on client certificates) and ``-auth_level 2`` (plain ``openssl
verify`` checks no key size or hash strength; TLS servers run at OpenSSL's default security
level, 2 on Debian).
"""

from __future__ import annotations

import contextlib
import itertools
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from cert_desk.errors import InputError
from cert_desk.x509 import ca as local_ca
from cert_desk.x509.verify import VerifyReport, verify_certificate
from tests.conftest import require_tool

CLIENT, SERVER = ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH
NOW = datetime.now(UTC) - timedelta(minutes=5)
Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ec() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _make(subject: str, key: Key, issuer: x509.Certificate | None = None, issuer_key: Key | None = None, *,
          ca: bool = False, pathlen: int | None = None, bc_critical: bool = True, ku: Sequence[str] | None = None,
          eku: Sequence[x509.ObjectIdentifier] = (), ski: bool = True, aki: bool = True,
          not_before: datetime = NOW, not_after: datetime | None = None,
          sans: Sequence[x509.GeneralName] = ()) -> x509.Certificate:
    """Any certificate the tests need (self-signed without ``issuer``); defaults are a good profile."""
    signer = issuer_key or key
    issuer_name = issuer.subject if issuer else _name(subject)
    flags = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                           "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"), False)
    for usage in ku if ku is not None else (("key_cert_sign", "crl_sign") if ca else ("digital_signature",)):
        flags[usage] = True
    builder = (
        x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer_name)
        .public_key(key.public_key()).serial_number(local_ca.random_serial())
        .not_valid_before(not_before).not_valid_after(not_after or not_before + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=pathlen), critical=bc_critical)
    )
    if any(flags.values()):
        builder = builder.add_extension(x509.KeyUsage(**flags), critical=True)
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if ski:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if aki:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
    return builder.sign(signer, hashes.SHA256())


@dataclass(frozen=True)
class OpensslVerdict:
    ok: bool
    returncode: int
    errors: tuple[int, ...]  # the X509_V_ERR numbers it printed ("error 82 at 0 depth lookup: ...")
    output: str


def openssl_verify(tmp: Path, leaf: x509.Certificate, cas: Sequence[x509.Certificate],
                   intermediates: Sequence[x509.Certificate] = (), *options: str) -> OpensslVerdict:
    """``openssl verify -x509_strict [options] -CAfile ca.pem [-untrusted inter.pem] leaf.pem``."""
    require_tool("openssl")
    (tmp / "ca.pem").write_bytes(b"".join(_pem(c) for c in cas))
    (tmp / "leaf.pem").write_bytes(_pem(leaf))
    untrusted: list[str] = []
    if intermediates:
        (tmp / "inter.pem").write_bytes(b"".join(_pem(c) for c in intermediates))
        untrusted = ["-untrusted", str(tmp / "inter.pem")]
    proc = subprocess.run(["openssl", "verify", "-x509_strict", *options, "-CAfile", str(tmp / "ca.pem"),
                           *untrusted, str(tmp / "leaf.pem")], capture_output=True, text=True, timeout=30)
    output = proc.stdout + proc.stderr
    errors = tuple(int(n) for n in re.findall(r"^error (\d+) at \d+ depth", output, re.MULTILINE))
    return OpensslVerdict(proc.returncode == 0, proc.returncode, errors, output)


def _codes(report: VerifyReport) -> dict[str, str]:
    return {f.code: f.severity for f in report.findings}


def _message(report: VerifyReport, code: str) -> str:
    return next(f.message for f in report.findings if f.code == code)


@pytest.fixture(scope="module")
def root() -> tuple[Key, x509.Certificate]:
    """A root of cert-desk's local CA."""
    return local_ca.make_root(_name("Test CA"))


# ------------------------------------------------------------------ the cases


def test_good_client_certificate_from_the_local_ca(tmp_path: Path, root: tuple[Key, x509.Certificate]) -> None:
    ca_key, ca_cert = root
    for key in (_ec(), rsa.generate_private_key(65537, 2048)):
        leaf = local_ca.issue(ca_key, ca_cert, key.public_key(), _name("Alice"))
        report = verify_certificate(leaf, [ca_cert])
        assert openssl_verify(tmp_path, leaf, [ca_cert]).ok
        assert openssl_verify(tmp_path, leaf, [ca_cert], (), "-purpose", "sslclient", "-auth_level", "2").ok
        assert report.ok and report.findings == ()
        assert (report.purpose, report.chain_checked) == ("client", True)
        assert report.chain == ("CN=Alice", "CN=Test CA") and report.subject == "CN=Alice"
    lints_only = verify_certificate(leaf)
    assert lints_only.ok and not lints_only.chain_checked and lints_only.chain == ()


def test_end_entity_with_key_cert_sign(tmp_path: Path, root: tuple[Key, x509.Certificate]) -> None:
    ca_key, ca_cert = root
    leaf = _make("Bob", _ec(), ca_cert, ca_key, ku=("digital_signature", "key_cert_sign"), eku=(CLIENT,))
    verdict = openssl_verify(tmp_path, leaf, [ca_cert])
    assert verdict.returncode == 2 and verdict.errors == (82,), verdict.output
    assert "keyCertSign invalid for non-CA cert" in verdict.output
    # without -x509_strict OpenSSL accepts it: why the strict form is the judge (field notes)
    plain = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "leaf.pem")],
                           capture_output=True, text=True, timeout=30)
    assert plain.returncode == 0
    report = verify_certificate(leaf, [ca_cert])
    assert report.ok is verdict.ok is False
    assert _codes(report) == {"ee-key-cert-sign": "error"}
    message = _message(report, "ee-key-cert-sign")
    assert "NET::ERR_CERT_INVALID" in message and "certificate_unknown" in message and "keyCertSign" in message
    assert report.chain == ("CN=Bob", "CN=Test CA")  # the chain itself is fine: the leaf is the problem


VALIDITY = {  # case: (not before, not after, cert-desk's code, OpenSSL's error)
    "expired": (NOW - timedelta(days=60), NOW - timedelta(days=1), "expired", 10),
    "not yet valid": (NOW + timedelta(days=2), NOW + timedelta(days=60), "not-yet-valid", 9),
}


@pytest.mark.parametrize("case", VALIDITY)
def test_validity(tmp_path: Path, root: tuple[Key, x509.Certificate], case: str) -> None:
    start, end, code, openssl_error = VALIDITY[case]
    ca_key, ca_cert = root
    leaf = local_ca.issue(ca_key, ca_cert, _ec().public_key(), _name(case), not_before=start, not_after=end)
    verdict = openssl_verify(tmp_path, leaf, [ca_cert])
    assert verdict.errors == (openssl_error,), verdict.output
    report = verify_certificate(leaf, [ca_cert])
    assert report.ok is verdict.ok is False
    assert _codes(report) == {code: "error", "chain-not-checked": "info"} and report.chain == ()
    assert f"{(end if code == 'expired' else start):%Y-%m-%d}" in _message(report, code)
    # Judged at a moment inside its validity (``now``, naive is UTC; openssl -attime): for the certificate
    # that is not valid yet both accept it; the expired one was issued before the CA's certificate was
    # made (the module's root is minutes old), and both refuse the chain then.
    inside = start + timedelta(days=1)
    at_time = openssl_verify(tmp_path, leaf, [ca_cert], (), "-attime", str(int(inside.timestamp())))
    then = verify_certificate(leaf, [ca_cert], now=inside.replace(tzinfo=None))
    assert then.ok is at_time.ok is (code == "not-yet-valid"), at_time.output
    if code == "expired":
        assert at_time.errors == (9,) and "'CN=Test CA' is valid only from" in _message(then, "chain")


def test_wrong_ca(tmp_path: Path, root: tuple[Key, x509.Certificate]) -> None:
    ca_key, ca_cert = root
    leaf = local_ca.issue(ca_key, ca_cert, _ec().public_key(), _name("Carol"))
    _other_key, other = local_ca.make_root(_name("Other CA"))
    verdict = openssl_verify(tmp_path, leaf, [other])
    assert verdict.errors == (20,), verdict.output  # unable to get local issuer certificate
    report = verify_certificate(leaf, [other])
    assert report.ok is verdict.ok is False
    assert _codes(report) == {"chain": "error"} and report.chain == ()
    message = _message(report, "chain")
    assert "issuer is unknown" in message and "'CN=Test CA'" in message and "'CN=Other CA'" in message
    assert message.endswith(")") and "(cryptography: validation failed" in message  # the original text


def test_ca_with_the_same_name_but_another_key(tmp_path: Path, root: tuple[Key, x509.Certificate]) -> None:
    ca_key, ca_cert = root
    leaf = local_ca.issue(ca_key, ca_cert, _ec().public_key(), _name("Dave"))
    _new_key, rekeyed = local_ca.make_root(_name("Test CA"))
    verdict = openssl_verify(tmp_path, leaf, [rekeyed])
    report = verify_certificate(leaf, [rekeyed])
    assert report.ok is verdict.ok is False
    assert "did not sign this certificate" in _message(report, "chain")


def test_sha1_signed_leaf(tmp_path: Path) -> None:
    """cryptography 50 no longer signs with SHA-1, so OpenSSL issues this one."""
    require_tool("openssl")
    ca_key = rsa.generate_private_key(65537, 2048)
    ca_cert = _make("SHA1 Test CA", ca_key, ca=True)
    (tmp_path / "ca.key").write_bytes(ca_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (tmp_path / "issuer.pem").write_bytes(_pem(ca_cert))
    (tmp_path / "ext.cnf").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n", encoding="utf-8")
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tmp_path / "leaf.key"), "-subj", "/CN=Sha1 Leaf",
                    "-out", str(tmp_path / "leaf.csr")], check=True, capture_output=True, timeout=30)
    subprocess.run(["openssl", "x509", "-req", "-sha1", "-in", str(tmp_path / "leaf.csr"), "-CA",
                    str(tmp_path / "issuer.pem"), "-CAkey", str(tmp_path / "ca.key"), "-set_serial", "4660",
                    "-days", "30", "-extfile", str(tmp_path / "ext.cnf"), "-out", str(tmp_path / "sha1.pem")],
                   check=True, capture_output=True, timeout=30)
    leaf = x509.load_pem_x509_certificate((tmp_path / "sha1.pem").read_bytes())
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA1)
    # Plain -x509_strict checks no hash strength and accepts it; a TLS server at the default security
    # level refuses it ("CA signature digest algorithm too weak"), and so does cert-desk.
    assert openssl_verify(tmp_path, leaf, [ca_cert]).ok
    verdict = openssl_verify(tmp_path, leaf, [ca_cert], (), "-auth_level", "2")
    assert verdict.errors == (68,), verdict.output
    report = verify_certificate(leaf, [ca_cert])
    assert report.ok is verdict.ok is False
    assert _codes(report) == {"weak-signature-hash": "error", "chain": "error"}
    assert "SHA-1" in _message(report, "weak-signature-hash")
    assert "algorithm the verifier refuses" in _message(report, "chain")


def test_rsa_1024_leaf(tmp_path: Path, root: tuple[Key, x509.Certificate]) -> None:
    ca_key, ca_cert = root
    weak_key = rsa.generate_private_key(65537, 1024)  # noqa: S505 - the weak key is the point
    leaf = local_ca.issue(ca_key, ca_cert, weak_key.public_key(), _name("Weak"))
    # plain -x509_strict checks no key size; at security level 2 (TLS servers' default) it is refused
    assert openssl_verify(tmp_path, leaf, [ca_cert]).ok
    verdict = openssl_verify(tmp_path, leaf, [ca_cert], (), "-auth_level", "2")
    assert verdict.errors == (66,), verdict.output  # EE certificate key too weak
    report = verify_certificate(leaf, [ca_cert])
    assert report.ok is verdict.ok is False
    assert _codes(report) == {"rsa-too-small": "error"}
    assert "1024 bits" in _message(report, "rsa-too-small")


def test_missing_client_auth_eku(tmp_path: Path, root: tuple[Key, x509.Certificate]) -> None:
    ca_key, ca_cert = root
    leaf = local_ca.issue(ca_key, ca_cert, _ec().public_key(), _name("www.example.org"), profile="server",
                          sans=[x509.DNSName("www.example.org")])
    # plain openssl verify checks no purpose; -purpose sslclient is what a TLS server checks
    assert openssl_verify(tmp_path, leaf, [ca_cert]).ok
    verdict = openssl_verify(tmp_path, leaf, [ca_cert], (), "-purpose", "sslclient")
    assert verdict.errors == (26,), verdict.output  # unsupported certificate purpose
    report = verify_certificate(leaf, [ca_cert], purpose="client")
    assert report.ok is verdict.ok is False
    assert _codes(report) == {"no-client-auth-eku": "error"}
    assert "serverAuth" in _message(report, "no-client-auth-eku")
    # "auto" sees a server certificate, and as one it is fine
    auto = verify_certificate(leaf, [ca_cert])
    assert auto.purpose == "server" and auto.findings == ()
    assert auto.ok is openssl_verify(tmp_path, leaf, [ca_cert], (), "-purpose", "sslserver").ok is True


def test_server_certificate_without_san_is_a_warning(tmp_path: Path, root: tuple[Key, x509.Certificate]) -> None:
    ca_key, ca_cert = root
    leaf = local_ca.issue(ca_key, ca_cert, _ec().public_key(), _name("intranet"), profile="server")
    # OpenSSL accepts it; Chrome does not (it needs the host name in a SAN): a warning, so ok stays True
    verdict = openssl_verify(tmp_path, leaf, [ca_cert], (), "-purpose", "sslserver")
    report = verify_certificate(leaf, [ca_cert])
    assert report.ok is verdict.ok is True
    assert _codes(report) == {"server-no-san": "warning"}
    assert "NET::ERR_CERT_COMMON_NAME_INVALID" in _message(report, "server-no-san")


def test_intermediate_chain(tmp_path: Path) -> None:
    root_key = _ec()
    root = _make("Root CA", root_key, ca=True, aki=False)
    inter_key = _ec()
    inter = _make("Issuing CA", inter_key, root, root_key, ca=True, pathlen=0)
    leaf = _make("Erin", _ec(), inter, inter_key, eku=(CLIENT,))
    verdict = openssl_verify(tmp_path, leaf, [root], [inter])
    report = verify_certificate(leaf, [root], [inter])
    assert report.ok is verdict.ok is True
    assert report.chain == ("CN=Erin", "CN=Issuing CA", "CN=Root CA") and report.findings == ()
    # without the intermediate neither finds the issuer; cert-desk says to give it
    verdict = openssl_verify(tmp_path, leaf, [root])
    assert verdict.errors == (20,), verdict.output
    report = verify_certificate(leaf, [root])
    assert report.ok is verdict.ok is False
    assert "issuer is unknown" in _message(report, "chain")
    assert "intermediate" in report.findings[0].hint


def test_path_length(tmp_path: Path) -> None:
    root_key = _ec()
    root = _make("Root CA", root_key, ca=True, pathlen=0, aki=False)  # may issue no intermediate CA
    inter_key = _ec()
    inter = _make("Sub CA", inter_key, root, root_key, ca=True)
    leaf = _make("Frank", _ec(), inter, inter_key, eku=(CLIENT,))
    verdict = openssl_verify(tmp_path, leaf, [root], [inter])
    assert verdict.errors == (25,), verdict.output  # path length constraint exceeded
    report = verify_certificate(leaf, [root], [inter])
    assert report.ok is verdict.ok is False
    assert "pathlen" in _message(report, "chain")


def test_expired_ca(tmp_path: Path) -> None:
    root_key = _ec()
    root = _make("Old CA", root_key, ca=True, aki=False, not_before=NOW - timedelta(days=400),
                 not_after=NOW - timedelta(days=1))
    leaf = _make("Grace", _ec(), root, root_key, eku=(CLIENT,))
    verdict = openssl_verify(tmp_path, leaf, [root])
    assert verdict.errors == (10,) and "at 1 depth" in verdict.output, verdict.output
    report = verify_certificate(leaf, [root])
    assert report.ok is verdict.ok is False
    assert _codes(report) == {"chain": "error"}
    assert "'CN=Old CA' expired on" in _message(report, "chain")


@pytest.mark.parametrize(("case", "inter_options", "openssl_error", "words"), [
    ("no SKI", {"ski": False}, 86, "no subject key identifier"),
    ("no AKI", {"aki": False}, 85, "no authority key identifier"),
    ("server-only EKU", {"eku": (SERVER,)}, 26, "without clientAuth"),
    ("anyExtendedKeyUsage", {"eku": (ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,)}, 26, "without clientAuth"),
    ("basicConstraints not critical", {"bc_critical": False}, 89, "basicConstraints extension"),
    ("not a CA", {"ca": False, "ku": ("key_cert_sign",)}, 79, "is not a CA"),
    ("no keyCertSign", {"ku": ("digital_signature",)}, 79, "lacks keyCertSign"),
])
def test_what_strict_mode_asks_of_a_ca(tmp_path: Path, case: str, inter_options: dict[str, Any],
                                       openssl_error: int, words: str) -> None:
    root_key = _ec()
    root = _make("Root CA", root_key, ca=True, aki=False)
    inter_key = _ec()
    inter = _make("Issuing CA", inter_key, root, root_key, **{"ca": True, **inter_options})
    leaf = _make("Heidi", _ec(), inter, inter_key, eku=(CLIENT,))
    verdict = openssl_verify(tmp_path, leaf, [root], [inter], "-purpose", "sslclient")
    assert verdict.errors[:1] == (openssl_error,), verdict.output
    report = verify_certificate(leaf, [root], [inter])
    assert report.ok is verdict.ok is False, case
    assert _codes(report) == {"chain": "error"}
    assert words in _message(report, "chain")


def test_leaf_without_authority_key_identifier(tmp_path: Path, root: tuple[Key, x509.Certificate]) -> None:
    ca_key, ca_cert = root
    leaf = _make("Ivan", _ec(), ca_cert, ca_key, eku=(CLIENT,), aki=False)
    verdict = openssl_verify(tmp_path, leaf, [ca_cert])
    assert verdict.errors == (85,), verdict.output  # Missing Authority Key Identifier
    report = verify_certificate(leaf, [ca_cert])
    assert report.ok is verdict.ok is False
    assert _codes(report) == {"missing-aki": "error"}
    assert not verify_certificate(leaf).ok  # a lint: said without a CA too


def test_self_signed_certificate_from_openssl_req_as_its_own_ca(tmp_path: Path) -> None:
    """``openssl req -x509`` makes CA:TRUE certificates that people use as client certificates."""
    require_tool("openssl")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tmp_path / "self.key"), "-subj", "/CN=Judy", "-days", "30",
                    "-out", str(tmp_path / "self.pem")], check=True, capture_output=True, timeout=30)
    cert = x509.load_pem_x509_certificate((tmp_path / "self.pem").read_bytes())
    verdict = openssl_verify(tmp_path, cert, [cert], (), "-purpose", "sslclient")
    report = verify_certificate(cert, [cert])
    assert report.ok is verdict.ok is True
    assert report.chain == ("CN=Judy",)


def _as_version_1(cert: x509.Certificate, ca_key: Key, *, keep_extensions: bool) -> x509.Certificate:
    """The same certificate as X.509 version 1, signed again (no tool issues these any more)."""
    from asn1crypto import x509 as asn1_x509

    parsed = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    tbs = parsed["tbs_certificate"]
    tbs["version"] = "v1"
    if not keep_extensions:
        del tbs["extensions"]
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    parsed["signature_value"] = ca_key.sign(tbs.dump(force=True), ec.ECDSA(hashes.SHA256()))
    return x509.load_der_x509_certificate(parsed.dump(force=True))


def test_version_1(tmp_path: Path, root: tuple[Key, x509.Certificate]) -> None:
    ca_key, ca_cert = root
    v3 = local_ca.issue(ca_key, ca_cert, _ec().public_key(), _name("Oscar"))
    with_extensions = _as_version_1(v3, ca_key, keep_extensions=True)
    verdict = openssl_verify(tmp_path, with_extensions, [ca_cert])
    assert verdict.errors == (93,), verdict.output  # Using cert extension requires at least X509v3
    report = verify_certificate(with_extensions, [ca_cert])
    assert report.ok is verdict.ok is False and _codes(report)["not-v3"] == "error"
    # A known difference: OpenSSL accepts a version 1 leaf without extensions; cryptography's verifier
    # refuses every certificate that is not version 3 (as the web PKI's rules do), so cert-desk does too.
    bare = _as_version_1(v3, ca_key, keep_extensions=False)
    assert bare.version == x509.Version.v1 and openssl_verify(tmp_path, bare, [ca_cert]).ok
    report = verify_certificate(bare, [ca_cert])
    assert not report.ok and _codes(report)["not-v3"] == "warning"
    assert "not X.509 version 3" in _message(report, "chain")
    assert verify_certificate(bare).ok  # without a CA only the lint speaks: a warning


KEY_USAGES = {
    "absent": (),
    "digitalSignature": ("digital_signature",),
    "keyEncipherment": ("key_encipherment",),
    "digitalSignature+keyCertSign": ("digital_signature", "key_cert_sign"),
    "keyEncipherment+cRLSign": ("key_encipherment", "crl_sign"),
}
EKUS = {"absent": (), "clientAuth": (CLIENT,), "serverAuth": (SERVER,), "both": (CLIENT, SERVER)}


@pytest.mark.parametrize("purpose", ["client", "server"])
def test_every_combination_agrees_with_openssl(tmp_path: Path, root: tuple[Key, x509.Certificate],
                                               purpose: str) -> None:
    """Key usage x extended key usage x authority key id: cert-desk's verdict is OpenSSL's, each time.

    Judged as a TLS peer judges the certificate (``-purpose sslclient`` / ``sslserver``). Not among the
    key usages: keyAgreement alone, which OpenSSL's sslclient purpose accepts and cert-desk refuses
    (TLS 1.3 client authentication needs a signature). The server certificates have no DNS name: a
    warning for cert-desk (Chrome refuses them), nothing for OpenSSL.
    """
    ca_key, ca_cert = root
    key = _ec()
    for (ku_name, ku), (eku_name, eku), aki in itertools.product(KEY_USAGES.items(), EKUS.items(), (True, False)):
        leaf = _make("Mallory", key, ca_cert, ca_key, ku=ku, eku=eku, aki=aki)
        verdict = openssl_verify(tmp_path, leaf, [ca_cert], (), "-purpose", f"ssl{purpose}")
        report = verify_certificate(leaf, [ca_cert], purpose=purpose)
        assert report.ok is verdict.ok, (ku_name, eku_name, aki, report.findings, verdict.output)


def test_token_key(tmp_path: Path, root: tuple[Key, x509.Certificate]) -> None:
    ca_key, ca_cert = root
    key = _ec()
    leaf = local_ca.issue(ca_key, ca_cert, key.public_key(), _name("Niaj"))
    (tmp_path / "leaf.pem").write_bytes(_pem(leaf))
    # the key as OpenSSL extracts it from the certificate, and as a token may report it (compressed point)
    require_tool("openssl")
    pem = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "leaf.pem"), "-noout", "-pubkey"],
                         check=True, capture_output=True, timeout=30).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pem, check=True,
                         capture_output=True, timeout=30).stdout
    compressed = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER", "-ec_conv_form", "compressed"],
                                input=pem, check=True, capture_output=True, timeout=30).stdout
    assert compressed != der
    for spki in (der, compressed):
        assert verify_certificate(leaf, token_spki=spki, check_token_key=True).findings == ()
    other = _ec().public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    assert _codes(verify_certificate(leaf, token_spki=other, check_token_key=True)) == {"key-mismatch": "error"}
    missing = verify_certificate(leaf, [ca_cert], token_spki=None, check_token_key=True)
    assert _codes(missing) == {"no-token-key": "error"} and not missing.ok
    assert verify_certificate(leaf, token_spki=other).ok  # not asked to compare


def test_all_problems_are_reported_at_once(root: tuple[Key, x509.Certificate]) -> None:
    ca_key, ca_cert = root
    weak_key = rsa.generate_private_key(65537, 1024)  # noqa: S505 - the weak key is the point
    leaf = _make("Olivia", weak_key, ca_cert, ca_key,
                 ku=("key_encipherment", "key_cert_sign"), eku=(SERVER, ExtendedKeyUsageOID.CODE_SIGNING),
                 aki=False, not_before=NOW - timedelta(days=90), not_after=NOW - timedelta(days=60))
    report = verify_certificate(leaf, purpose="client")
    assert set(_codes(report)) == {"ee-key-cert-sign", "expired", "rsa-too-small", "no-client-auth-eku",
                                   "key-usage-no-digital-signature", "missing-aki"}
    assert all(f.message and f.hint for f in report.findings)


_FUZZ_CA_KEY, _FUZZ_CA = local_ca.make_root(_name("Fuzz CA"))
_FUZZ_LEAF = local_ca.issue(_FUZZ_CA_KEY, _FUZZ_CA, _ec().public_key(), _name("Peggy"),
                            sans=[x509.DNSName("p.example")])


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_damaged_certificates_give_a_report_or_an_input_error(data: st.DataObject) -> None:
    """Whatever cryptography still parses, cert-desk reports on or refuses with an InputError."""
    ca_cert, leaf = _FUZZ_CA, _FUZZ_LEAF
    damage_ca = data.draw(st.booleans())
    der = bytearray((ca_cert if damage_ca else leaf).public_bytes(serialization.Encoding.DER))
    for position, value in data.draw(st.lists(st.tuples(st.integers(0, len(der) - 1), st.integers(0, 255)),
                                              min_size=1, max_size=3)):
        der[position] = value
    try:
        damaged = x509.load_der_x509_certificate(bytes(der))
    except (ValueError, x509.InvalidVersion):  # not parsed at all: nothing for verify to see
        return
    with contextlib.suppress(InputError):
        if damage_ca:
            verify_certificate(leaf, [damaged], [damaged])
        else:
            verify_certificate(damaged, [ca_cert], purpose=data.draw(st.sampled_from(["auto", "client", "server"])),
                               token_spki=b"\x30\x00", check_token_key=True)


def test_unknown_purpose_is_an_input_error(root: tuple[Key, x509.Certificate]) -> None:
    with pytest.raises(InputError, match="purpose 'tls'"):
        verify_certificate(root[1], purpose="tls")


def test_an_intermediate_given_as_the_ca_is_not_enough(tmp_path: Path) -> None:
    """cryptography trusts whatever is in its store; openssl (without -partial_chain) wants a root."""
    root_key = _ec()
    now = datetime.now(UTC) - timedelta(minutes=5)
    root_cert = (x509.CertificateBuilder().subject_name(_name("Root")).issuer_name(_name("Root"))
                 .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
                 .not_valid_before(now).not_valid_after(now + timedelta(days=900))
                 .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                 .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                critical=True)
                 .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
                 .sign(root_key, hashes.SHA256()))
    inter_key = _ec()
    inter = (x509.CertificateBuilder().subject_name(_name("Inter")).issuer_name(root_cert.subject)
             .public_key(inter_key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now).not_valid_after(now + timedelta(days=300))
             .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
             .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(inter_key.public_key()), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),  # type: ignore[arg-type]
                            critical=False)
             .sign(root_key, hashes.SHA256()))
    leaf = local_ca.issue(inter_key, inter, _ec().public_key(), _name("leaf"), sans=[x509.DNSName("a.example")])
    theirs = openssl_verify(tmp_path, leaf, [inter])
    ours = verify_certificate(leaf, [inter])
    assert not theirs.ok and 2 in theirs.errors
    assert not ours.ok and "an intermediate CA, not at a root" in _message(ours, "chain")
    assert openssl_verify(tmp_path, leaf, [root_cert], [inter]).ok
    assert verify_certificate(leaf, [root_cert], [inter]).ok
