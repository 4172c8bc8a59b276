"""The local CA (the seed's ``openssl ca`` step), cross-checked with the real ``openssl``.

Passphrases reach openssl only through the environment (``-passin env:VAR``); every openssl
runs in its own session, so a prompt it might open on /dev/tty fails instead of waiting.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from cert_desk.errors import InputError
from cert_desk.x509 import ca as local_ca
from cert_desk.x509.ca import LoadedCa, init_ca, load_ca, parse_not_after, sign_csr
from tests.conftest import require_tool

PASS = b"correct horse battery staple"
WRONG_PASSPHRASE = "The passphrase for ca.key is wrong."
BAD_SIGNATURE = ("The CSR's signature does not verify: it was changed after signing, "
                 "or signed with another key.")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cert-desk tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def openssl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    require_tool("openssl")
    return subprocess.run(["openssl", *args], env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, start_new_session=True, timeout=60)


def openssl_ok(*args: str, env: dict[str, str] | None = None) -> str:
    proc = openssl(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def make_csr(tmp_path: Path, subj: str, *addext: str, key: str = "ec") -> x509.CertificateSigningRequest:
    """A request made by ``openssl req`` with a throwaway key (``ec`` is P-256, else ``rsa:BITS``)."""
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if key == "ec" else ["-newkey", key]
    req = tmp_path / "req.pem"
    extensions = [arg for ext in addext for arg in ("-addext", ext)]
    openssl_ok("req", "-new", *newkey, "-nodes", "-keyout", str(tmp_path / "req-key.pem"), "-subj", subj,
               *extensions, "-out", str(req))
    return x509.load_pem_x509_csr(req.read_bytes())


def write_pem(path: Path, cert: x509.Certificate) -> str:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


# ------------------------------------------------------------------------ init_ca / load_ca


def test_init_with_passphrase_writes_an_encrypted_key_openssl_reads(tmp_path: Path) -> None:
    paths = init_ca(tmp_path / "ca", _name("Test CA"), passphrase=PASS)
    directory = Path(paths.directory)
    assert (paths.cert, paths.key) == (str(directory / "ca.crt"), str(directory / "ca.key"))
    assert sorted(os.listdir(directory)) == ["ca.crt", "ca.key"]  # no temporary file left behind
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(paths.key).stat().st_mode) == 0o600
    assert Path(paths.key).read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")

    env = {"CA_PASS": PASS.decode()}
    text = openssl_ok("pkey", "-in", paths.key, "-passin", "env:CA_PASS", "-noout", "-text", env=env)
    assert "Private-Key: (256 bit)" in text
    assert openssl("pkey", "-in", paths.key, "-noout").returncode != 0  # no passphrase: openssl cannot read it
    wrong = openssl("pkey", "-in", paths.key, "-passin", "env:CA_PASS", "-noout", env={"CA_PASS": "nope"})
    assert wrong.returncode != 0

    calls: list[int] = []

    def ask() -> bytes:
        calls.append(1)
        return PASS

    assert load_ca(paths.cert, paths.key, PASS).cert.subject == _name("Test CA")
    loaded = load_ca(paths.cert, paths.key, ask)
    assert calls == [1]
    assert isinstance(loaded, LoadedCa)
    assert loaded.key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == loaded.cert.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)


def test_encrypted_key_refusals(tmp_path: Path) -> None:
    paths = init_ca(tmp_path / "ca", _name("Test CA"), passphrase=PASS)
    with pytest.raises(InputError) as wrong:
        load_ca(paths.cert, paths.key, b"not the passphrase")
    assert wrong.value.message == WRONG_PASSPHRASE
    assert "not the passphrase" not in str(wrong.value)
    with pytest.raises(InputError, match=re.escape(WRONG_PASSPHRASE)):
        load_ca(paths.cert, paths.key, lambda: b"also wrong")
    for missing in (None, lambda: None, b""):
        with pytest.raises(InputError, match=re.escape("ca.key is encrypted and no passphrase was given")):
            load_ca(paths.cert, paths.key, missing)


def test_plain_key_never_asks_for_a_passphrase(tmp_path: Path) -> None:
    paths = init_ca(tmp_path / "ca", _name("Plain CA"), key_type="rsa:2048")
    assert Path(paths.key).read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert stat.S_IMODE(Path(paths.key).stat().st_mode) == 0o600
    assert "Private-Key: (2048 bit" in openssl_ok("pkey", "-in", paths.key, "-noout", "-text")

    def ask() -> bytes:
        raise AssertionError("asked for a passphrase the key does not need")

    assert load_ca(paths.cert, paths.key, ask).cert.subject == _name("Plain CA")
    assert load_ca(paths.cert, paths.key).key.key_size == 2048


@pytest.mark.parametrize(("key_type", "shown"), [
    ("ec:prime256v1", "ASN1 OID: prime256v1"),
    ("ec:secp384r1", "ASN1 OID: secp384r1"),
    ("rsa:2048", "Public-Key: (2048 bit)"),
])
def test_ca_certificate_as_openssl_reads_it(tmp_path: Path, key_type: str, shown: str) -> None:
    paths = init_ca(tmp_path / "ca", _name("Text CA"), key_type=key_type, days=30)
    text = openssl_ok("x509", "-in", paths.cert, "-noout", "-text")
    assert shown in text
    assert "CA:TRUE" in text
    assert "Certificate Sign" in text
    assert "Subject: O = cert-desk tests, CN = Text CA" in text
    assert "Issuer: O = cert-desk tests, CN = Text CA" in text
    assert "Signature Algorithm: ecdsa-with-SHA256" in text or "sha256WithRSAEncryption" in text
    assert "OK" in openssl_ok("verify", "-x509_strict", "-CAfile", paths.cert, paths.cert)
    end = datetime.strptime(openssl_ok("x509", "-in", paths.cert, "-noout", "-enddate").strip(),
                            "notAfter=%b %d %H:%M:%S %Y GMT").replace(tzinfo=UTC)
    assert abs(end - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=10)


def test_init_refuses_an_existing_ca_and_bad_arguments(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    directory.mkdir()
    (directory / "ca.key").write_bytes(b"precious")
    with pytest.raises(InputError, match="already exists"):
        init_ca(directory, _name("Again"))
    assert (directory / "ca.key").read_bytes() == b"precious"
    assert sorted(os.listdir(directory)) == ["ca.key"]

    paths = init_ca(tmp_path / "other", _name("Other"))
    before = Path(paths.cert).read_bytes()
    with pytest.raises(InputError, match="already exists"):
        init_ca(paths.directory, _name("Other"))
    assert Path(paths.cert).read_bytes() == before

    fresh = tmp_path / "never"
    for kwargs, words in [
        ({"key_type": "rsa:1024"}, "Unknown CA key type 'rsa:1024'"),
        ({"key_type": "ed25519"}, "Unknown CA key type"),
        ({"days": 0}, "not a whole number"),
        ({"days": 10**6}, "not a whole number"),
        ({"passphrase": b""}, "passphrase is empty"),
    ]:
        with pytest.raises(InputError, match=words):
            init_ca(fresh, _name("X"), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="subject is empty"):
        init_ca(fresh, x509.Name([]))
    assert not fresh.exists()  # refused before anything was created
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(InputError, match="is not a directory"):
        init_ca(tmp_path / "a-file", _name("X"))


def test_load_refuses_a_key_of_another_ca(tmp_path: Path) -> None:
    one = init_ca(tmp_path / "one", _name("One"))
    two = init_ca(tmp_path / "two", _name("Two"))
    with pytest.raises(InputError, match=re.escape("does not belong to the CA certificate ca.crt")):
        load_ca(one.cert, two.key)


@pytest.mark.parametrize(("addext", "words"), [
    (["basicConstraints=critical,CA:FALSE"], "not a CA certificate"),
    (["basicConstraints=critical,CA:TRUE", "keyUsage=critical,digitalSignature,cRLSign"], "lacks keyCertSign"),
])
def test_load_refuses_a_certificate_that_is_not_a_ca(tmp_path: Path, addext: list[str], words: str) -> None:
    cert, key = tmp_path / "ca.crt", tmp_path / "ca.key"
    extensions = [arg for ext in addext for arg in ("-addext", ext)]
    openssl_ok("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
               "-subj", "/CN=Not a CA", "-days", "30", *extensions, "-out", str(cert))
    with pytest.raises(InputError, match=words):
        load_ca(cert, key)


def test_load_accepts_a_ca_made_by_openssl_and_chains_by_its_ski(tmp_path: Path) -> None:
    """A CA made by ``openssl req -x509`` with a key identifier of its own (not the SHA-1 of the key that
    cryptography computes) signs leaves that verify: the AKI repeats the CA's SKI."""
    cert, key, conf = tmp_path / "ca.crt", tmp_path / "ca.key", tmp_path / "ca.cnf"
    conf.write_text("[req]\ndistinguished_name = dn\nx509_extensions = v3\n[dn]\n[v3]\n"
                    "basicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
                    "subjectKeyIdentifier = 0102030405060708\nauthorityKeyIdentifier = keyid\n")
    openssl_ok("req", "-config", str(conf), "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
               "-subj", "/CN=OpenSSL CA", "-days", "30", "-out", str(cert))
    ca = load_ca(cert, key)
    leaf = sign_csr(ca, make_csr(tmp_path, "/CN=leaf"), days=7)
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == bytes.fromhex("0102030405060708")
    assert openssl_ok("verify", "-x509_strict", "-CAfile", str(cert), write_pem(tmp_path / "leaf.pem", leaf)
                      ).strip().endswith(": OK")


def test_load_refuses_an_expired_ca(tmp_path: Path) -> None:
    key, cert = local_ca.make_root(_name("Old CA"), days=0)
    key_file = tmp_path / "ca.key"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_file = write_pem(tmp_path / "ca.crt", cert)
    expired = openssl("verify", "-CAfile", cert_file, cert_file)
    assert expired.returncode != 0
    assert "certificate has expired" in expired.stderr
    with pytest.raises(InputError, match=re.escape("The CA certificate ca.crt expired on")):
        load_ca(cert_file, key_file)


def test_load_refuses_unreadable_files(tmp_path: Path) -> None:
    paths = init_ca(tmp_path / "ca", _name("Files CA"))
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    with pytest.raises(InputError, match="is not a usable CA certificate"):
        load_ca(garbage, paths.key)
    garbage.write_bytes(os.urandom(300))
    with pytest.raises(InputError, match="is not a usable CA certificate"):
        load_ca(garbage, paths.key)
    with pytest.raises(InputError, match="is not a private key"):
        load_ca(paths.cert, garbage)
    with pytest.raises(InputError, match="is not a private key"):
        load_ca(paths.cert, paths.cert)
    with pytest.raises(InputError, match="does not exist"):
        load_ca(tmp_path / "missing.crt", paths.key)
    with pytest.raises(InputError, match="Cannot read"):
        load_ca(tmp_path, paths.key)
    huge = tmp_path / "huge.crt"
    with huge.open("wb") as fh:  # sparse: refused by its size, never read
        fh.truncate(local_ca.MAX_FILE_BYTES + 1)
    with pytest.raises(InputError, match="bigger than 1 MiB"):
        load_ca(huge, paths.key)
    with pytest.raises(InputError, match="bigger than 1 MiB"):
        load_ca("/dev/zero", paths.key)  # size 0 by stat, endless when read

    der = tmp_path / "ca.der"  # DER works as well as PEM
    der.write_bytes(x509.load_pem_x509_certificate(Path(paths.cert).read_bytes()).public_bytes(
        serialization.Encoding.DER))
    assert load_ca(der, paths.key).cert.subject == _name("Files CA")


# ------------------------------------------------------------------------ sign_csr


@pytest.mark.parametrize(("key_type", "profile", "csr_key"), [
    ("ec:prime256v1", "client", "ec"),
    ("rsa:2048", "server", "rsa:2048"),
])
def test_signed_csr_passes_openssl_verify(tmp_path: Path, key_type: str, profile: str, csr_key: str) -> None:
    eku = {"client": "TLS Web Client Authentication", "server": "TLS Web Server Authentication"}[profile]
    key_usage = "Digital Signature, Key Encipherment" if csr_key.startswith("rsa") else "Digital Signature\n"
    paths = init_ca(tmp_path / "ca", _name("Signing CA"), key_type=key_type, passphrase=PASS)
    ca = load_ca(paths.cert, paths.key, PASS)
    csr = make_csr(tmp_path, "/O=Example/CN=alice",
                   "subjectAltName=DNS:alice.example,email:alice@example.org,IP:192.0.2.7", key=csr_key)
    end = parse_not_after("20301231235959Z")
    leaf = sign_csr(ca, csr, profile=profile, not_after=end)
    leaf_pem = write_pem(tmp_path / "leaf.pem", leaf)

    assert openssl_ok("verify", "-x509_strict", "-CAfile", paths.cert, leaf_pem).strip() == f"{leaf_pem}: OK"
    purpose = "sslclient" if profile == "client" else "sslserver"
    assert openssl_ok("verify", "-x509_strict", "-purpose", purpose, "-CAfile", paths.cert, leaf_pem).endswith(
        ": OK\n")
    text = openssl_ok("x509", "-in", leaf_pem, "-noout", "-text")
    assert eku in text
    assert "Certificate Sign" not in text
    assert "CA:FALSE" in text
    assert key_usage in text
    assert "DNS:alice.example, email:alice@example.org, IP Address:192.0.2.7" in text
    assert "Subject: O = Example, CN = alice" in text
    assert "Issuer: O = cert-desk tests, CN = Signing CA" in text
    assert "Signature Algorithm: ecdsa-with-SHA256" in text or "Signature Algorithm: sha256WithRSAEncryption" in text
    assert openssl_ok("x509", "-in", leaf_pem, "-noout", "-enddate").strip() == "notAfter=Dec 31 23:59:59 2030 GMT"
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == ski
    assert 0 < leaf.serial_number < 2**127
    assert leaf.public_key() == csr.public_key()


def test_a_csr_asking_for_ca_powers_gets_the_end_entity_profile(tmp_path: Path) -> None:
    paths = init_ca(tmp_path / "ca", _name("Careful CA"))
    csr = make_csr(tmp_path, "/CN=wannabe", "basicConstraints=critical,CA:TRUE",
                   "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
    leaf = sign_csr(load_ca(paths.cert, paths.key), csr)
    leaf_pem = write_pem(tmp_path / "leaf.pem", leaf)
    text = openssl_ok("x509", "-in", leaf_pem, "-noout", "-text")
    assert "CA:FALSE" in text
    assert "Certificate Sign" not in text
    assert "CRL Sign" not in text
    assert "Subject Alternative Name" not in text
    assert openssl_ok("verify", "-x509_strict", "-CAfile", paths.cert, leaf_pem).endswith(": OK\n")


def test_a_csr_with_a_corrupted_signature_is_refused(tmp_path: Path) -> None:
    paths = init_ca(tmp_path / "ca", _name("CA"))
    ca = load_ca(paths.cert, paths.key)
    der = bytearray(make_csr(tmp_path, "/CN=victim").public_bytes(serialization.Encoding.DER))
    # CertificationRequest ::= SEQUENCE { info, signatureAlgorithm, signature BIT STRING }: the DER ends
    # inside the signature, whose last byte is the last byte of the ECDSA s value.
    der[-1] ^= 0x01
    bad = tmp_path / "bad.der"
    bad.write_bytes(bytes(der))
    check = openssl("req", "-in", str(bad), "-inform", "DER", "-verify", "-noout")  # exits 0 all the same
    assert "self-signature verify failure" in check.stderr
    with pytest.raises(InputError) as refused:
        sign_csr(ca, x509.load_der_x509_csr(bytes(der)))
    assert refused.value.message == BAD_SIGNATURE


def test_sign_csr_validity_rules(tmp_path: Path) -> None:
    paths = init_ca(tmp_path / "ca", _name("CA"), days=400)
    ca = load_ca(paths.cert, paths.key)
    csr = make_csr(tmp_path, "/CN=bob")
    now = datetime.now(UTC).replace(microsecond=0)

    default = sign_csr(ca, csr, now=now)
    assert default.not_valid_after_utc == now + timedelta(days=365)
    assert default.not_valid_before_utc == now - timedelta(minutes=5)
    assert sign_csr(ca, csr, days=10, now=now).not_valid_after_utc == now + timedelta(days=10)
    in_ten_days = (now + timedelta(days=10)).astimezone(timezone(timedelta(hours=2)))
    assert sign_csr(ca, csr, not_after=in_ten_days).not_valid_after_utc == now + timedelta(days=10)

    with pytest.raises(InputError, match="Both a number of days and an end date"):
        sign_csr(ca, csr, days=10, not_after=now + timedelta(days=10))
    with pytest.raises(InputError, match="is in the past"):
        sign_csr(ca, csr, not_after=now - timedelta(days=1))
    with pytest.raises(InputError, match="is in the past"):
        sign_csr(ca, csr, not_after=now, now=now)
    with pytest.raises(InputError, match="after the CA certificate's own end") as beyond:
        sign_csr(ca, csr, days=500)
    assert "at most 399 days" in (beyond.value.hint or "")
    with pytest.raises(InputError, match="after the CA certificate's own end"):
        sign_csr(ca, csr, not_after=ca.cert.not_valid_after_utc + timedelta(seconds=1))
    at_ca_end = sign_csr(ca, csr, not_after=ca.cert.not_valid_after_utc)  # up to the CA's end is fine
    assert at_ca_end.not_valid_after_utc == ca.cert.not_valid_after_utc
    for days in (0, -5):
        with pytest.raises(InputError, match="not a whole number"):
            sign_csr(ca, csr, days=days)
    with pytest.raises(InputError, match="Unknown certificate profile 'email'"):
        sign_csr(ca, csr, profile="email")


def test_sign_csr_refuses_weak_keys_and_empty_subjects(tmp_path: Path) -> None:
    paths = init_ca(tmp_path / "ca", _name("CA"))
    ca = load_ca(paths.cert, paths.key)
    with pytest.raises(InputError, match="RSA key has 1024 bits; at least 2048"):
        sign_csr(ca, make_csr(tmp_path, "/CN=weak", key="rsa:1024"))
    with pytest.raises(InputError, match="empty subject"):
        sign_csr(ca, make_csr(tmp_path, "/", "subjectAltName=DNS:nameless.example"))


# ------------------------------------------------------------------------ parse_not_after


@pytest.mark.parametrize(("text", "expected"), [
    ("20240130164600Z", datetime(2024, 1, 30, 16, 46, 0, tzinfo=UTC)),
    ("240130164600Z", datetime(2024, 1, 30, 16, 46, 0, tzinfo=UTC)),
    ("491231235959Z", datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ("500101000000Z", datetime(1950, 1, 1, tzinfo=UTC)),
    (" 20301231235959z ", datetime(2030, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ("2030-12-31", datetime(2030, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ("2030-12-31T23:59:59Z", datetime(2030, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ("2030-12-31T12:00:00+02:00", datetime(2030, 12, 31, 10, 0, tzinfo=UTC)),
    ("2030-12-31T12:00:00", datetime(2030, 12, 31, 12, 0, tzinfo=UTC)),
    ("2030-12-31 12:00", datetime(2030, 12, 31, 12, 0, tzinfo=UTC)),
])
def test_parse_not_after(text: str, expected: datetime) -> None:
    parsed = parse_not_after(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(("text", "words"), [
    ("", "not in a form"),
    ("tomorrow", "not in a form"),
    ("20240130164600", "not in a form"),  # openssl's forms end in Z
    ("2024013016460Z", "not in a form"),
    ("31.12.2030", "not in a form"),
    ("20241301000000Z", "not a real date"),
    ("20240230000000Z", "not a real date"),
    ("2030-02-30", "not a real date"),
    ("2030-12-31T25:00:00Z", "not a real date"),
])
def test_parse_not_after_refusals(text: str, words: str) -> None:
    with pytest.raises(InputError, match=words):
        parse_not_after(text)


@settings(max_examples=60, deadline=None)
@given(st.datetimes(min_value=datetime(1950, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59),
                    timezones=st.just(UTC)))
def test_parse_not_after_round_trips(moment: datetime) -> None:
    moment = moment.replace(microsecond=0)
    assert parse_not_after(moment.strftime("%Y%m%d%H%M%SZ")) == moment
    assert parse_not_after(moment.isoformat()) == moment
    if moment.year < 2050:
        assert parse_not_after(moment.strftime("%y%m%d%H%M%SZ")) == moment
