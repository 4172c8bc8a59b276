"""Certificate input: subjects and SANs as users type them, certificate and CSR files as users pick them.

Cross-checked with the real ``openssl``: the subject DER that ``openssl req -subj`` writes equals
ours byte for byte, so does the SAN extension ``openssl req -addext`` writes, and every accepted
file format is made by openssl itself. Hypothesis feeds random and mutated files and names: the
result is usable certificates or a CertDeskError, never a library exception.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import csr as asn1_csr
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from cert_desk.errors import CertDeskError, InputError
from cert_desk.x509 import bundle, names
from tests.conftest import require, require_tool

# OpenSSL's own default string mask; certificates with the extensions a CA certificate has
REQ_CONFIG = """[req]
distinguished_name = dn
string_mask = utf8only
x509_extensions = ca
[dn]
[ca]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""
PASS_ENV = "X509_INPUT_TEST_PASS"


def _openssl(cwd: Path, *args: str) -> None:
    env = dict(os.environ, **{PASS_ENV: "not-a-secret"})
    env.pop("OPENSSL_CONF", None)
    proc = subprocess.run(["openssl", *args], cwd=cwd, env=env, capture_output=True, timeout=60)
    assert proc.returncode == 0, f"openssl {' '.join(args)}: {proc.stderr.decode(errors='replace')}"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keys, certificates and files of every kind, all made by openssl."""
    require_tool("openssl")
    d = tmp_path_factory.mktemp("x509-input")
    (d / "req.cnf").write_text(REQ_CONFIG, encoding="ascii")

    def run(*args: str) -> None:
        _openssl(d, *args)

    run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "key.pem")
    run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", "key2.pem")
    for name, key, subj in (("c1", "key.pem", "/C=GB/O=HW/CN=one"), ("c2", "key2.pem", "/CN=two"),
                            ("c3", "key.pem", "/CN=three")):
        run("req", "-config", "req.cnf", "-x509", "-new", "-key", key, "-subj", subj, "-days", "30",
            "-out", f"{name}.pem")
    run("x509", "-in", "c1.pem", "-outform", "DER", "-out", "c1.der")
    for n in ("c2", "c3"):
        run("x509", "-in", f"{n}.pem", "-outform", "DER", "-out", f"{n}.der")
    (d / "chain.pem").write_bytes(b"".join((d / f"{n}.pem").read_bytes() for n in ("c1", "c2", "c3")))
    certfiles = ("-certfile", "c1.pem", "-certfile", "c2.pem", "-certfile", "c3.pem")
    run("crl2pkcs7", "-nocrl", *certfiles, "-out", "chain.p7b")
    run("crl2pkcs7", "-nocrl", *certfiles, "-outform", "DER", "-out", "chain.p7c")
    run("crl2pkcs7", "-nocrl", "-out", "empty.p7b")
    run("crl2pkcs7", "-nocrl", "-outform", "DER", "-out", "empty.p7c")
    run("x509", "-in", "c1.pem", "-text", "-out", "text.pem")
    run("x509", "-in", "c2.pem", "-text", "-out", "text2.pem")
    run("x509", "-in", "c1.pem", "-trustout", "-addtrust", "clientAuth", "-out", "trusted.pem")
    run("pkcs8", "-topk8", "-in", "key.pem", "-passout", f"env:{PASS_ENV}", "-out", "encrypted-key.pem")
    run("genrsa", "-traditional", "-out", "rsa-key.pem", "1024")
    run("req", "-config", "req.cnf", "-new", "-key", "key.pem", "-subj", "/CN=request", "-out", "csr.pem")
    run("req", "-in", "csr.pem", "-outform", "DER", "-out", "csr.der")
    run("pkcs12", "-export", "-in", "c1.pem", "-inkey", "key.pem", "-passout", f"env:{PASS_ENV}", "-out", "c1.p12")
    run("req", "-config", "req.cnf", "-x509", "-new", "-key", "key.pem", "-subj", "/CN=negative", "-days", "30",
        "-set_serial", "-5", "-out", "negative-serial.pem")
    return d


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _message(excinfo: pytest.ExceptionInfo[InputError]) -> str:
    return excinfo.value.message


# ---------------------------------------------------------------------------------------- subjects

OPENSSL_SUBJECTS = [
    ("/C=GB/ST=Hampshire/L=Winchester/O=HW/OU=Dev/CN=colinpaice/emailAddress=colin@example.org",
     "emailAddress=colin@example.org,CN=colinpaice,OU=Dev,O=HW,L=Winchester,ST=Hampshire,C=GB"),
    ("/CN=a\\/b\\+c\\\\d/O=x=y,z", "O=x\\=y\\,z,CN=a/b\\+c\\\\d"),
    ("/C=GB/O=HW+OU=Dev/CN=colin+UID=cp", "CN=colin+UID=cp,O=HW+OU=Dev,C=GB"),
    ("/C=DE/L=København/O=Bücher GmbH/CN=Zoë Ångström 李", "CN=Zoë Ångström 李,O=Bücher GmbH,L=København,C=DE"),
    ("/DC=org/DC=example/serialNumber=12345/title=Dr/GN=Jane/SN=Doe/street=1 High St/UID=jdoe",
     "UID=jdoe,street=1 High St,SN=Doe,GN=Jane,title=Dr,serialNumber=12345,DC=example,DC=org"),
]


@pytest.mark.parametrize(("subj", "rfc4514"), OPENSSL_SUBJECTS)
def test_subject_der_equals_what_openssl_req_writes(work: Path, tmp_path: Path, subj: str, rfc4514: str) -> None:
    out = tmp_path / "req.der"
    _openssl(work, "req", "-config", "req.cnf", "-new", "-key", "key.pem", "-utf8", "-subj", subj,
             "-outform", "DER", "-out", str(out))
    info = asn1_csr.CertificationRequest.load(out.read_bytes())["certification_request_info"]
    want = info["subject"].dump()
    assert names.parse_subject(subj).public_bytes() == want
    assert names.parse_subject(rfc4514).public_bytes() == want
    assert names.subject_text(names.parse_subject(rfc4514)) == subj


def test_encodings_are_openssls() -> None:
    name = names.parse_subject("/C=GB/serialNumber=1/emailAddress=a@example.org/DC=org/CN=x/O=y/title=t")
    types = {a.oid: a._type for a in name}
    assert types[NameOID.COUNTRY_NAME] == _ASN1Type.PrintableString
    assert types[NameOID.SERIAL_NUMBER] == _ASN1Type.PrintableString
    assert types[NameOID.EMAIL_ADDRESS] == _ASN1Type.IA5String
    assert types[NameOID.DOMAIN_COMPONENT] == _ASN1Type.IA5String
    assert {types[o] for o in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.TITLE)} == {_ASN1Type.UTF8String}


@pytest.mark.parametrize(("subj", "rfc4514"), [
    ("/C=GB/O=HW/CN=colinpaice", "CN=colinpaice,O=HW,C=GB"),
    ("/C=GB/O=HW/CN=colinpaice", "cn=colinpaice, o=HW, c=gb"),  # case and spaces as people type them
    ("/C=GB/emailAddress=a@example.org", "E=a@example.org,C=GB"),
    ("/emailAddress=a@example.org/GN=Jane/SN=Doe/street=x", "STREET=x,surname=Doe,givenName=Jane,email=a@example.org"),
    ("/CN=a\\+b", "CN=a\\+b"),
    ("/CN=Zoë", "CN=Zo\\c3\\ab"),  # RFC 4514 hex escapes of UTF-8
    ("/CN=x/title=Dr", "2.5.4.12=Dr,2.5.4.3=x"),
])
def test_subj_and_rfc4514_forms_give_the_same_name(subj: str, rfc4514: str) -> None:
    assert names.parse_subject(subj).public_bytes() == names.parse_subject(rfc4514).public_bytes()


@pytest.mark.parametrize("subj", [
    "/C=GB/O=HW/CN=colinpaice", "/CN=a\\/b/O=c\\\\d", "/CN=a+UID=b/O=x", "/CN=x=y", "/emailAddress=a@b.example",
])
def test_subject_text_round_trips(subj: str) -> None:
    name = names.parse_subject(subj)
    assert names.subject_text(name) == subj
    assert names.parse_subject(names.subject_text(name)).public_bytes() == name.public_bytes()


def test_lower_case_country_is_normalised() -> None:
    assert names.parse_subject("/C=gb/CN=x").public_bytes() == names.parse_subject("/C=GB/CN=x").public_bytes()
    assert names.validate_field("C", "de") is None


@pytest.mark.parametrize(("text", "fragments"), [
    ("/C=UK/CN=x", ("Country (C) 'UK' is not an ISO 3166 country code; the United Kingdom is GB",)),
    ("/C=GBR", ("Country (C) 'GBR'",)),
    ("/C=XX", ("Country (C) 'XX'",)),
    ("/CN=", ("Common name (CN) is empty",)),
    ("/CN=" + "x" * 65, ("Common name (CN) is 65 characters long; at most 64",)),
    ("/O=" + "x" * 65, ("Organization (O)", "64")),
    ("/OU=" + "x" * 65, ("Organizational unit (OU)", "64")),
    ("/L=" + "x" * 129, ("Locality (L)", "128")),
    ("/ST=" + "x" * 129, ("State or province (ST)", "128")),
    ("/title=" + "x" * 65, ("Title (title)", "64")),
    ("/serialNumber=" + "1" * 65, ("Serial number (serialNumber)", "64")),
    ("/emailAddress=" + "a" * 120 + "@example.org", ("Email address (emailAddress)", "128")),
    ("/emailAddress=nobody", ("Email address (emailAddress) 'nobody' is not an email address",)),
    ("/emailAddress=a@-bad-.example", ("Email address (emailAddress)",)),
    ("/emailAddress=jö@example.org", ("Email address (emailAddress)", "ASCII")),
    ("/serialNumber=a_b", ("Serial number (serialNumber)", "'_'")),
    ("/DC=example.org", ("Domain component (DC)", "dot")),
    ("/DC=exämple", ("Domain component (DC)", "ASCII")),
    ("/CN=a\x07b", ("Common name (CN) contains a control character (U+0007)",)),
    ("CN=a\nb", ("Common name (CN) contains a control character (U+000A)",)),
    ("/CN= x", ("Common name (CN)", "space")),
    ("/CN=x/XY=z", ("Unknown subject attribute 'XY'", "C, ST, L, O, OU, CN, emailAddress")),
    ("/cn=x/uniqueIdentifier=y", ("Unknown subject attribute 'uniqueIdentifier'",)),
    ("/CN=a\\", ("lone '\\'",)),
    ("CN=a\\", ("lone '\\'",)),
    ("/CN", ("no '='",)),
    ("CN=x,O", ("'O'", "TYPE=value")),
    ("CN=#0c0161", ("hex-encoded",)),
    ("CN=\\ff", ("not UTF-8",)),
    ("/CN=a+CN=a", ("same attribute twice",)),
    ("", ("empty",)),
    ("/", ("empty",)),
    ("  \t ", ("empty",)),
])
def test_bad_subjects_say_what_is_wrong(text: str, fragments: tuple[str, ...]) -> None:
    with pytest.raises(InputError) as excinfo:
        names.parse_subject(text)
    for fragment in fragments:
        assert fragment in _message(excinfo)
    assert excinfo.value.hint


def test_validate_field_and_build_subject_agree() -> None:
    assert names.validate_field("CN", "Jane Doe") is None
    assert names.validate_field("emailAddress", "jane@example.org") is None
    uk = "Country (C) 'UK' is not an ISO 3166 country code; the United Kingdom is GB."
    assert names.validate_field("C", "UK") == uk
    assert "Unknown subject attribute 'Foo'" in (names.validate_field("Foo", "x") or "")
    fields = [("C", "gb"), ("ST", ""), ("O", "HW"), ("OU", "  "), ("CN", "colinpaice")]
    assert names.build_subject(fields).public_bytes() == names.parse_subject("/C=GB/O=HW/CN=colinpaice").public_bytes()
    with pytest.raises(InputError, match=r"Common name \(CN\)"):
        names.build_subject([("CN", "x" * 65)])
    with pytest.raises(InputError, match="empty"):
        names.build_subject([("CN", ""), ("O", " ")])


def test_fields_of_the_gui_builder() -> None:
    assert [f[0] for f in names.FIELDS] == ["C", "ST", "L", "O", "OU", "CN", "emailAddress"]
    for attr, label, max_len in names.FIELDS:
        assert label
        if attr == "C":
            continue
        ok = "a" * (max_len - 12) + "@example.org" if attr == "emailAddress" else "x" * max_len
        assert names.validate_field(attr, ok) is None, attr
        assert f"({attr}) is {max_len + 1} characters" in (names.validate_field(attr, ok + "x") or ""), attr


def test_country_codes_are_iso_3166() -> None:
    tab = Path("/usr/share/zoneinfo/iso3166.tab")
    require(tab.is_file(), "tzdata's iso3166.tab")
    codes = {line.split("\t")[0] for line in tab.read_text(encoding="utf-8").splitlines()
             if line and not line.startswith("#")}
    assert codes == names.COUNTRY_CODES


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=12)
_VALUE = _TEXT.filter(lambda v: v == v.strip())
_OIDS = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
         "L": NameOID.LOCALITY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME, "street": NameOID.STREET_ADDRESS,
         "UID": NameOID.USER_ID, "title": NameOID.TITLE, "GN": NameOID.GIVEN_NAME, "SN": NameOID.SURNAME}
_RDN = st.lists(st.tuples(st.sampled_from(sorted(_OIDS)), _VALUE), min_size=1, max_size=3, unique_by=lambda t: t[0])


@settings(max_examples=200, deadline=None)
@given(st.lists(_RDN, min_size=1, max_size=4))
def test_any_valid_name_round_trips_through_both_forms(rdns: list[list[tuple[str, str]]]) -> None:
    name = x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(_OIDS[a], v) for a, v in rdn])
                      for rdn in rdns])
    assert names.parse_subject(names.subject_text(name)).public_bytes() == name.public_bytes()
    assert names.parse_subject(name.rfc4514_string()).public_bytes() == name.public_bytes()


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=60), st.text(alphabet="/+=\\,#CNOUL ab\u00e9", max_size=40)))
def test_any_subject_text_gives_a_name_or_an_input_error(text: str) -> None:
    with contextlib.suppress(InputError):
        names.parse_subject(text)


# ---------------------------------------------------------------------------------------- SANs


def test_sans_equal_what_openssl_writes(work: Path, tmp_path: Path) -> None:
    sans = ["DNS:host.example.org", "DNS:*.example.org", "DNS:xn--bcher-kva.example", "email:jane@example.org",
            "IP:192.0.2.1", "IP:2001:db8::1", "URI:https://example.org/a?b=c"]
    out = tmp_path / "san.der"
    _openssl(work, "req", "-config", "req.cnf", "-new", "-key", "key.pem", "-subj", "/CN=x",
             "-addext", "subjectAltName=" + ",".join(sans), "-outform", "DER", "-out", str(out))
    info = asn1_csr.CertificationRequest.load(out.read_bytes())["certification_request_info"]
    (request,) = [a for a in info["attributes"] if a["type"].native == "extension_request"]
    (ext,) = [e for e in request["values"][0] if e["extn_id"].native == "subject_alt_name"]
    ours = x509.SubjectAlternativeName([names.parse_san(s) for s in sans])
    assert ours.public_bytes() == ext["extn_value"].contents
    parsed = x509.load_der_x509_csr(out.read_bytes()).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert [names.san_text(gn) for gn in parsed.value] == sans


@pytest.mark.parametrize(("text", "want"), [
    ("DNS:host.example.org", "DNS:host.example.org"),
    ("dns: Host.Example.ORG ", "DNS:host.example.org"),
    ("DNS:*.example.org", "DNS:*.example.org"),
    ("DNS:bücher.example", "DNS:xn--bcher-kva.example"),
    ("DNS:*.bücher.example", "DNS:*.xn--bcher-kva.example"),
    ("DNS:localhost", "DNS:localhost"),
    ("email:jane@example.org", "email:jane@example.org"),
    ("email:jane@bücher.example", "email:jane@xn--bcher-kva.example"),
    ("IP:10.0.0.1", "IP:10.0.0.1"),
    ("IP:::1", "IP:::1"),
    ("IP:2001:DB8::1", "IP:2001:db8::1"),
    ("URI:https://example.org/", "URI:https://example.org/"),
    ("URI:urn:uuid:0d1c6a2e-3a5e-4c7d-9a8b-1f2e3d4c5b6a", "URI:urn:uuid:0d1c6a2e-3a5e-4c7d-9a8b-1f2e3d4c5b6a"),
])
def test_san_forms(text: str, want: str) -> None:
    assert names.san_text(names.parse_san(text)) == want
    assert names.san_text(names.parse_san(want)) == want


@pytest.mark.parametrize(("text", "fragment"), [
    ("DNS:a.*.example.org", "wildcard"),
    ("DNS:*", "wildcard"),
    ("DNS:f*o.example.org", "wildcard"),
    ("DNS:host name.example", "space"),
    ("DNS:-bad.example", "'-bad'"),
    ("DNS:a_b.example", "'a_b'"),
    ("DNS:a..example", "label ''"),
    ("DNS:" + "a" * 64 + ".example", "63"),
    ("DNS:example.org.", "dot"),
    ("DNS:10.0.0.1", "is an IP address"),
    ("email:nobody", "not an email address"),
    ("email:jö@example.org", "before '@'"),
    ("IP:300.1.1.1", "not an IPv4 or IPv6 address"),
    ("IP:fe80::1%eth0", "zone"),
    ("URI:example.org", "no scheme"),
    ("URI:https://exämple.org/", "non-ASCII"),
    ("URI:https://example.org/a b", "spaces"),
    ("host.example.org", "DNS:, email:, IP: or URI:"),
    ("otherName:1.2.3;UTF8:x", "DNS:, email:, IP: or URI:"),
    ("DNS:", "no value"),
])
def test_bad_sans_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(InputError) as excinfo:
        names.parse_san(text)
    assert fragment in _message(excinfo)


@settings(max_examples=200, deadline=None)
@given(st.tuples(st.sampled_from(["DNS:", "email:", "IP:", "URI:", "dns:*.", ""]), st.text(max_size=40)))
def test_any_san_text_gives_a_name_or_an_input_error(parts: tuple[str, str]) -> None:
    try:
        gn = names.parse_san("".join(parts))
    except InputError:
        return
    assert names.san_text(names.parse_san(names.san_text(gn))) == names.san_text(gn)


# ------------------------------------------------------------------------------ certificate files


def _openssl_der(work: Path, *names_: str) -> list[bytes]:
    return [(work / f"{n}.der").read_bytes() for n in names_]


@pytest.mark.parametrize(("file", "fmt", "certs"), [
    ("c1.pem", "PEM", ("c1",)),
    ("c1.der", "DER", ("c1",)),
    ("chain.pem", "PEM", ("c1", "c2", "c3")),
    ("chain.p7b", "PKCS#7 (PEM)", ("c1", "c2", "c3")),
    ("chain.p7c", "PKCS#7 (DER)", ("c1", "c2", "c3")),
    ("text.pem", "PEM", ("c1",)),
])
def test_openssl_formats_are_read(work: Path, file: str, fmt: str, certs: tuple[str, ...]) -> None:
    result = bundle.read_certificate_file(work / file)
    assert result.format == fmt
    assert result.source == str(work / file)
    assert [_der(c) for c in result.certificates] == _openssl_der(work, *certs)


def test_pem_variants_are_read(work: Path) -> None:
    c1, c2 = (work / "c1.pem").read_bytes(), (work / "c2.pem").read_bytes()
    text_between = (work / "text.pem").read_bytes() + (work / "text2.pem").read_bytes()  # openssl x509 -text twice
    showcerts = b" 0 s:CN = one\n   i:CN = one\n" + c1 + b" 1 s:CN = two\n" + c2 + b"---\n\n"
    for data in (text_between, c1.replace(b"\n", b"\r\n"), c1.replace(b"CERTIFICATE", b"X509 CERTIFICATE") + c2,
                 c1 + b"\n\n  \t\n"):
        result = bundle.load_certificates(data)
        assert result.source == "" and result.format == "PEM"
        assert [_der(c) for c in result.certificates][:1] == _openssl_der(work, "c1")
    with pytest.raises(InputError, match="after its last block"):
        bundle.load_certificates(showcerts)  # s_client's trailing "---" is junk after the last block
    assert len(bundle.load_certificates(showcerts[:-6]).certificates) == 2


def _junk_after(work: Path) -> bytes:
    return (work / "chain.pem").read_bytes() + b"junk\n"


def _damaged_base64(work: Path) -> bytes:
    lines = (work / "c1.pem").read_bytes().splitlines(keepends=True)
    lines[3] = b"*" + lines[3][1:]
    return b"".join(lines)


def _truncated_pem(work: Path) -> bytes:
    data = (work / "chain.pem").read_bytes()
    return data[: len(data) - 100]


def _unknown_version(work: Path) -> bytes:
    der = (work / "c1.der").read_bytes()
    v3 = bytes.fromhex("a003020102")  # [0] EXPLICIT INTEGER 2
    assert der[8:13] == v3
    return der.replace(v3, bytes.fromhex("a00302010a"), 1)


REFUSED = [
    ("empty", lambda w: b"", "is empty"),
    ("garbage", lambda w: bytes(range(256)) * 4, "neither PEM text nor DER"),
    ("text", lambda w: b"hello, this is not a certificate\n", "neither PEM text nor DER"),
    ("truncated DER", lambda w: (w / "c1.der").read_bytes()[:200], "truncated"),
    ("DER with a tail", lambda w: (w / "c1.der").read_bytes() + b"\n", "after its DER structure"),
    ("unknown X.509 version", _unknown_version, "not a valid DER certificate"),
    ("truncated PEM", _truncated_pem, "no END line"),
    ("damaged base64", _damaged_base64, "base64"),
    ("junk after the last block", _junk_after, "after its last block"),
    ("private key", lambda w: (w / "key.pem").read_bytes(), "does not import private keys"),
    ("encrypted private key", lambda w: (w / "encrypted-key.pem").read_bytes(), "does not import private keys"),
    ("RSA private key", lambda w: (w / "rsa-key.pem").read_bytes(), "does not import private keys"),
    ("key and certificate", lambda w: (w / "c1.pem").read_bytes() + (w / "key.pem").read_bytes(), "private key"),
    ("CSR", lambda w: (w / "csr.pem").read_bytes(), "(CSR), not a certificate"),
    ("DER CSR", lambda w: (w / "csr.der").read_bytes(), "(CSR), not a certificate"),
    ("PKCS#12", lambda w: (w / "c1.p12").read_bytes(), "PKCS#12 is not supported here"),
    ("PKCS#7 without certificates", lambda w: (w / "empty.p7b").read_bytes(), "no certificates"),
    ("DER PKCS#7 without certificates", lambda w: (w / "empty.p7c").read_bytes(), "no certificates"),
    ("trusted certificate", lambda w: (w / "trusted.pem").read_bytes(), "trusted-certificate form"),
    ("negative serial", lambda w: (w / "negative-serial.pem").read_bytes(), "serial number"),
]


@pytest.mark.parametrize(("what", "make", "fragment"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_files_say_why(work: Path, tmp_path: Path, what: str, make: object, fragment: str) -> None:
    assert callable(make)
    path = tmp_path / "input"
    path.write_bytes(make(work))
    with pytest.raises(InputError) as excinfo:
        bundle.read_certificate_file(path)
    assert fragment in _message(excinfo), what
    assert str(path) in _message(excinfo)


def test_unusable_certificate_is_named_by_its_position(work: Path, tmp_path: Path) -> None:
    """An SM2 key (openssl makes one; cryptography cannot use it) as the second of two certificates."""
    try:
        _openssl(work, "genpkey", "-algorithm", "SM2", "-out", str(tmp_path / "sm2.pem"))
        _openssl(work, "req", "-config", "req.cnf", "-x509", "-new", "-key", str(tmp_path / "sm2.pem"),
                 "-subj", "/CN=sm2", "-sm3", "-days", "3", "-out", str(tmp_path / "sm2-cert.pem"))
    except AssertionError:
        pytest.skip("this openssl has no SM2")
    data = (work / "c1.pem").read_bytes() + (tmp_path / "sm2-cert.pem").read_bytes()
    with pytest.raises(InputError, match=r"^Certificate 2 of 2 in sm2\.pem cannot be used: .*not supported"):
        bundle.load_certificates(data, "sm2.pem")


def test_folders_missing_and_unreadable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a folder"):
        bundle.read_certificate_file(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        bundle.read_certificate_file(tmp_path / "nothing.pem")
    # Readable by nobody, root included: reading /proc/self/mem from its start fails with EIO.
    with pytest.raises(InputError, match="Cannot read /proc/self/mem"):
        bundle.read_certificate_file("/proc/self/mem")
    with pytest.raises(InputError, match="not a regular file"):
        bundle.read_certificate_file("/dev/null")


def _bytes_read() -> int:
    for line in Path("/proc/self/io").read_text(encoding="ascii").splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_a_huge_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.pem"
    with open(path, "wb") as fh:
        fh.truncate(50 * 1024 * 1024)  # sparse: costs no disk
    before, start = _bytes_read(), time.monotonic()
    with pytest.raises(InputError) as excinfo:
        bundle.read_certificate_file(path)
    elapsed, read = time.monotonic() - start, _bytes_read() - before
    assert elapsed < 0.5
    assert read < 64 * 1024, f"{read} bytes were read"
    assert "50.0 MiB (52,428,800 bytes)" in _message(excinfo)
    assert "at most 4.0 MiB" in _message(excinfo)
    with pytest.raises(InputError, match="52,428,800 bytes"):
        bundle.load_certificates(bytes(50 * 1024 * 1024))


# ------------------------------------------------------------------------------ certificate requests


def test_csr_files(work: Path, tmp_path: Path) -> None:
    want = (work / "csr.der").read_bytes()
    for file in ("csr.pem", "csr.der"):
        csr = bundle.read_csr_file(work / file)
        assert csr.public_bytes(serialization.Encoding.DER) == want
        assert csr.subject.rfc4514_string() == "CN=request"
    for file, fragment in (("c1.pem", "is a certificate, not a certificate request"),
                           ("c1.der", "is a certificate, not a certificate request"),
                           ("key.pem", "does not import private keys"),
                           ("c1.p12", "PKCS#12")):
        with pytest.raises(InputError, match=fragment):
            bundle.read_csr_file(work / file)
    two = tmp_path / "two.pem"
    two.write_bytes((work / "csr.pem").read_bytes() * 2)
    with pytest.raises(InputError, match="has 2 certificate requests"):
        bundle.read_csr_file(two)
    damaged = bytearray(want)
    damaged[-1] ^= 0x01  # the last byte of the signature's s: still DER, no longer a valid signature
    with pytest.raises(InputError, match="does not verify"):
        bundle.load_csr(bytes(damaged), "damaged.der")
    with pytest.raises(InputError, match="empty"):
        bundle.load_csr(b"")


# ------------------------------------------------------------------------------ hypothesis


def _usable_or_refused(data: bytes) -> None:
    try:
        result = bundle.load_certificates(data)
    except CertDeskError:
        return
    assert result.certificates
    for cert in result.certificates:
        x509.load_der_x509_certificate(_der(cert))


@pytest.fixture(scope="module")
def samples(work: Path) -> list[bytes]:
    return [(work / f).read_bytes() for f in ("c1.der", "c1.pem", "chain.pem", "chain.p7c", "chain.p7b", "text.pem")]


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=4096),
                 st.binary(max_size=2048).map(lambda b: b"-----BEGIN CERTIFICATE-----\n" + b),
                 st.binary(max_size=2048).map(lambda b: b"\x30\x82" + b)))
def test_random_bytes_are_refused_cleanly(data: bytes) -> None:
    _usable_or_refused(data)
    with contextlib.suppress(CertDeskError):
        bundle.load_csr(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_certificates_load_or_are_refused(samples: list[bytes], data: st.DataObject) -> None:
    blob = bytearray(data.draw(st.sampled_from(samples)))
    for _ in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "append", "append text"]))
        pos = data.draw(st.integers(0, max(len(blob) - 1, 0)))
        if kind == "flip" and blob:
            blob[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "truncate":
            del blob[pos:]
        elif kind == "insert":
            blob[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
        elif kind == "append":
            blob += data.draw(st.binary(min_size=1, max_size=64))
        else:
            blob += data.draw(st.text(min_size=1, max_size=64)).encode("utf-8", "surrogatepass")
    _usable_or_refused(bytes(blob))


def test_a_damaged_begin_line_between_blocks_is_refused(tmp_path: Path) -> None:
    """leaf + intermediate (its BEGIN line one dash short) + root: never two certificates without a word."""
    from cryptography.hazmat.primitives.asymmetric import ec as _ec

    pems = []
    for cn in ("leaf", "inter", "root"):
        key = _ec.generate_private_key(_ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        now = datetime.now(UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now)
                .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))
        pems.append(cert.public_bytes(serialization.Encoding.PEM))
    pems[1] = pems[1].replace(b"-----BEGIN CERTIFICATE-----", b"-----BEGIN CERTIFICATE----", 1)
    with pytest.raises(InputError, match="damaged PEM line between blocks 1 and 2"):
        bundle.load_certificates(b"".join(pems))
