"""The seed's flow from the command line: keygen, CSR, local CA, import, verify, doctor, delete.

Every step is checked by the reference tools: ``pkcs11-tool -O`` / ``--read-object`` for what is
on the token, ``openssl req -verify`` for requests, ``openssl verify -x509_strict`` for
certificates, and libp11's engine (configured through OPENSSL_CONF, as in the seed) making a
CSR with the key cert-desk generated, by ``label_NAME`` and by ``id_HEX``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from cert_desk.pkcs11.keygen import pkcs11_tool_id
from cert_desk.x509 import ca as local_ca
from tests.conftest import SO_PIN, USER_PIN, Cli, CliResult, SoftHsm, require_tool
from tests.reference import RefObject, parse_objects

PIN_ENV = {"CERT_DESK_PIN": USER_PIN}


def objects(softhsm: SoftHsm, token: str) -> list[RefObject]:
    """What pkcs11-tool -O sees (logged in), sorted: the judge of 'the token unchanged'."""
    return sorted(parse_objects(softhsm.tool("--token-label", token, "-O", pin=USER_PIN).stdout))


def run(cli: Cli, softhsm: SoftHsm, token: str, *args: str, ok: bool = True) -> CliResult:
    r = cli(*args, "--module", softhsm.module, "--token", token, env=PIN_ENV)
    if ok:
        assert r.returncode == 0, (r.stdout, r.stderr)
    else:
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    return r


def keygen(cli: Cli, softhsm: SoftHsm, token: str, spec: str, label: str, *extra: str) -> dict[str, object]:
    r = run(cli, softhsm, token, "keygen", "--type", spec, "--label", label, "--json", *extra)
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def public_key(softhsm: SoftHsm, token: str, key_id: str, tmp_path: Path) -> bytes:
    out = tmp_path / f"pub-{key_id}.der"
    softhsm.tool("--token-label", token, "--read-object", "--type", "pubkey", "--id", key_id, "-o", str(out))
    return out.read_bytes()


@pytest.fixture
def ca_dir(tmp_path: Path) -> tuple[Path, Path]:
    key, cert = local_ca.make_root(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")]))
    ca_key = tmp_path / "ca.key"
    ca_cert = tmp_path / "ca.crt"
    ca_key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return ca_cert, ca_key


# ------------------------------------------------------------------ keygen


@pytest.mark.parametrize("spec,ref_type", [("rsa:2048", "RSA"), ("ec:prime256v1", "EC")])
def test_keygen_is_listed_by_pkcs11_tool_with_our_label_and_id(cli: Cli, softhsm: SoftHsm, token: str, *,
                                                              spec: str, ref_type: str, tmp_path: Path) -> None:
    result = keygen(cli, softhsm, token, spec, "alice")
    key_id = str(result["id"])
    listed = objects(softhsm, token)
    assert RefObject("private_key", "alice", key_id) in listed and RefObject("public_key", "alice", key_id) in listed
    # the default ID is what pkcs11-tool itself gives: SHA-1 of the modulus / EC point
    pub = serialization.load_der_public_key(public_key(softhsm, token, key_id, tmp_path))
    assert isinstance(pub, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    assert pkcs11_tool_id(pub).hex() == key_id
    text = softhsm.tool("--token-label", token, "-O", pin=USER_PIN).stdout
    block = text[text.index(f"Private Key Object; {ref_type}"):]
    assert "sensitive" in block.split("\n\n")[0] and "never extractable" in block.split("\n\n")[0]
    assert "sign" in block.split("\n\n")[0]


def test_pkcs11_tool_without_id_leaves_a_key_browsers_cannot_pair(cli: Cli, softhsm: SoftHsm, token: str) -> None:
    """pkcs11-tool --keypairgen without --id sets no CKA_ID on SoftHSM2 (OpenSC's cards get the SHA-1
    of the public key from pkcs15-init, the default cert-desk gives everywhere): the doctor says so."""
    softhsm.tool("--token-label", token, "--keypairgen", "--key-type", "EC:prime256v1", "--label", "ref",
                 pin=USER_PIN)
    assert {o.id for o in objects(softhsm, token) if o.label == "ref"} == {""}
    r = run(cli, softhsm, token, "doctor", "--json")
    codes = {f["code"] for f in json.loads(r.stdout)["findings"]}
    assert "key-without-id" in codes


def test_keygen_refuses_a_used_label_and_changes_nothing(cli: Cli, softhsm: SoftHsm, token: str) -> None:
    keygen(cli, softhsm, token, "ec:prime256v1", "alice")
    before = objects(softhsm, token)
    r = run(cli, softhsm, token, "keygen", "--type", "ec:prime256v1", "--label", "alice", ok=False)
    assert "already use this label" in r.stderr and "--allow-duplicate" in r.stderr
    r = run(cli, softhsm, token, "keygen", "--type", "ec:prime256v1", "--label", "other", "--id", before[0].id,
            ok=False)
    assert "already use this ID or label" in r.stderr
    assert objects(softhsm, token) == before
    keygen(cli, softhsm, token, "ec:prime256v1", "alice", "--allow-duplicate")
    assert len(objects(softhsm, token)) == len(before) + 2


def test_keygen_offers_only_what_the_token_can(cli: Cli, softhsm: SoftHsm, token: str, tmp_path: Path) -> None:
    """A token with only RSA key generation and raw CKM_RSA_PKCS (SoftHSM2 2.6.1 restricted by its
    configuration; '-CKM_...' alone hides nothing there, an explicit list does): EC is refused with
    the reason, and a CSR is still signed, as PKCS#1 v1.5 over a DigestInfo made on the host."""
    softhsm.conf.write_text(softhsm.conf.read_text() + "slots.mechanisms = CKM_RSA_PKCS_KEY_PAIR_GEN,CKM_RSA_PKCS\n")
    r = run(cli, softhsm, token, "keygen", "--type", "ec:prime256v1", "--label", "x", ok=False)
    assert "cannot generate EC prime256v1 keys: the token has no CKM_EC_KEY_PAIR_GEN" in r.stderr
    assert objects(softhsm, token) == []
    r = run(cli, softhsm, token, "keygen", "--type", "rsa:1024", "--label", "x", ok=False)
    assert "too weak" in r.stderr
    keygen(cli, softhsm, token, "rsa:2048", "x")
    r = run(cli, softhsm, token, "csr", "--label", "x", "--subject", "/CN=x", "--json")
    data = json.loads(r.stdout)
    assert data["mechanism"] == "CKM_RSA_PKCS"
    path = tmp_path / "x.csr"
    path.write_text(data["pem"])
    check = subprocess.run(["openssl", "req", "-in", str(path), "-noout", "-verify"], capture_output=True, text=True,
                           check=False)
    assert "verify OK" in check.stdout + check.stderr


def test_keygen_needs_a_sane_type_and_label(cli: Cli, softhsm: SoftHsm, token: str) -> None:
    r = run(cli, softhsm, token, "keygen", "--type", "dsa:1024", "--label", "x", ok=False)
    assert "Unknown key type 'dsa:1024'" in r.stderr
    r = run(cli, softhsm, token, "keygen", "--type", "ec:prime256v1", "--label", "  ", ok=False)
    assert "needs a label" in r.stderr
    assert objects(softhsm, token) == []


# ------------------------------------------------------------------ CSR, CA, import, verify: the seed's flow


def test_the_seed_flow(cli: Cli, softhsm: SoftHsm, token: str, tmp_path: Path, ca_dir: tuple[Path, Path]) -> None:
    """keygen -> CSR on the token -> local CA -> import -> verify, each judged by the reference tools."""
    require_tool("openssl")
    ca_cert, ca_key = ca_dir
    key_id = str(keygen(cli, softhsm, token, "rsa:2048", "colin")["id"])
    csr = tmp_path / "colin.csr"
    run(cli, softhsm, token, "csr", "--label", "colin", "--subject", "/C=GB/O=HW/CN=colinpaice",
        "--san", "DNS:colin.example", "--san", "email:colin@example.org", "--out", str(csr))
    check = subprocess.run(["openssl", "req", "-in", str(csr), "-noout", "-verify", "-text"], capture_output=True,
                           text=True, check=False)
    assert "verify OK" in check.stdout + check.stderr and check.returncode == 0
    assert "Subject: C = GB, O = HW, CN = colinpaice" in check.stdout
    assert "DNS:colin.example, email:colin@example.org" in check.stdout
    request = x509.load_pem_x509_csr(csr.read_bytes())
    assert request.is_signature_valid and isinstance(request.signature_hash_algorithm, hashes.SHA256)
    assert request.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo) == \
        public_key(softhsm, token, key_id, tmp_path)

    cert = tmp_path / "colin.pem"
    r = cli("ca", "sign", "--ca-cert", str(ca_cert), "--ca-key", str(ca_key), "--in", str(csr), "--out", str(cert),
            "--not-after", "20301231235959Z")
    assert r.returncode == 0, r.stderr
    strict = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", str(ca_cert), str(cert)],
                            capture_output=True, text=True, check=False)
    assert strict.returncode == 0, strict.stdout + strict.stderr

    before = objects(softhsm, token)
    run(cli, softhsm, token, "import", "--in", str(cert))
    after = objects(softhsm, token)
    assert RefObject("certificate", "colin", key_id) in after and len(after) == len(before) + 1
    back = tmp_path / "back.der"
    softhsm.tool("--token-label", token, "--read-object", "--type", "cert", "--id", key_id, "-o", str(back))
    assert back.read_bytes() == x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(
        serialization.Encoding.DER)
    # importing it again writes nothing, and says so
    r = run(cli, softhsm, token, "import", "--in", str(cert))
    assert "already on the token" in r.stdout and objects(softhsm, token) == after

    v = run(cli, softhsm, token, "verify", str(cert), "--ca", str(ca_cert))
    assert "Verdict: OK" in v.stdout and "colinpaice" in v.stdout
    d = run(cli, softhsm, token, "doctor")
    assert "pairs up" in d.stdout


def test_ec_csr_signed_with_raw_ecdsa(cli: Cli, softhsm: SoftHsm, token: str, tmp_path: Path) -> None:
    """SoftHSM2 has no CKM_ECDSA_SHA256: the digest is made on the host, r||s turned into DER."""
    keygen(cli, softhsm, token, "ec:secp384r1", "ec")
    r = run(cli, softhsm, token, "csr", "--label", "ec", "--subject", "CN=EC user,O=HW,C=GB", "--json")
    data = json.loads(r.stdout)
    assert data["mechanism"] == "CKM_ECDSA" and data["subject"] == "/C=GB/O=HW/CN=EC user"
    path = tmp_path / "ec.csr"
    path.write_text(data["pem"])
    check = subprocess.run(["openssl", "req", "-in", str(path), "-noout", "-verify"], capture_output=True, text=True,
                           check=False)
    assert "verify OK" in check.stdout + check.stderr


def test_openssl_engine_makes_a_csr_with_our_key_and_our_import_lands_on_its_id(
        cli: Cli, softhsm: SoftHsm, token: str, tmp_path: Path, ca_dir: tuple[Path, Path]) -> None:
    """The seed's way with the key cert-desk generated: OPENSSL_CONF + libp11, by label_ and by id_."""
    require_tool("openssl")
    from cert_desk.pkcs11.openssl_config import find_engine

    engine = find_engine()
    assert engine is not None, "libengine-pkcs11-openssl is installed by CI"
    key_id = str(keygen(cli, softhsm, token, "ec:prime256v1", "seed")["id"])
    conf = tmp_path / "engine.cnf"
    conf.write_text(
        "openssl_conf = openssl_init\n[openssl_init]\nengines = engine_section\n[engine_section]\n"
        "pkcs11 = pkcs11_section\n[pkcs11_section]\nengine_id = pkcs11\n"
        f"dynamic_path = {engine}\nMODULE_PATH = {softhsm.module}\ninit = 0\n")
    env = softhsm.env(OPENSSL_CONF=str(conf))
    for i, key in enumerate(("label_seed", f"id_{key_id}")):
        out = tmp_path / f"engine-{i}.csr"
        proc = subprocess.run(["openssl", "req", "-new", "-engine", "pkcs11", "-keyform", "engine", "-key", key,
                               "-subj", "/O=HW/CN=engine user", "-out", str(out), "-passin", "stdin"],
                              input=USER_PIN + "\n", capture_output=True, text=True, env=env, timeout=60, check=False)
        # SoftHSM2 + OpenSSL 3 may crash at exit after writing the file (field notes): judge the output
        assert out.exists() and out.stat().st_size > 0, proc.stderr
        assert x509.load_pem_x509_csr(out.read_bytes()).is_signature_valid
    cert = tmp_path / "seed.pem"
    r = cli("ca", "sign", "--ca-cert", str(ca_dir[0]), "--ca-key", str(ca_dir[1]), "--in",
            str(tmp_path / "engine-1.csr"), "--out", str(cert))
    assert r.returncode == 0, r.stderr
    run(cli, softhsm, token, "import", "--in", str(cert))
    assert RefObject("certificate", "seed", key_id) in objects(softhsm, token)


# ------------------------------------------------------------------ import: bad input changes nothing


def _self_signed(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, cn: str, *, days: int = 30,
                 start: datetime | None = None, ca: bool = False) -> x509.Certificate:
    start = start or datetime.now(UTC) - timedelta(minutes=5)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(start)
               .not_valid_after(start + timedelta(days=days)))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return builder.sign(key, hashes.SHA256())


def test_import_refusals_leave_the_token_unchanged(cli: Cli, softhsm: SoftHsm, token: str, tmp_path: Path,
                                                   ca_dir: tuple[Path, Path]) -> None:
    keygen(cli, softhsm, token, "ec:prime256v1", "k")
    before = objects(softhsm, token)
    good = x509.load_pem_x509_certificate(ca_dir[0].read_bytes()).public_bytes(serialization.Encoding.DER)
    cases = {
        "empty.pem": (b"", "empty"),
        "garbage.der": (os.urandom(300), ""),
        "truncated.der": (good[:-20], ""),
        "junk.pem": (ca_dir[0].read_bytes() + b"junk after the end\n", "after"),
        "other-key.pem": (ca_dir[0].read_bytes(), "belongs to a key"),
        "key.pem": (ca_dir[1].read_bytes(), "private key"),
    }
    for name, (data, words) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        r = run(cli, softhsm, token, "import", "--in", str(path), ok=False)
        assert words in r.stderr, (name, r.stderr)
    empty_p7 = tmp_path / "empty.p7b"
    subprocess.run(["openssl", "crl2pkcs7", "-nocrl", "-out", str(empty_p7)], check=True, capture_output=True)
    r = run(cli, softhsm, token, "import", "--in", str(empty_p7), ok=False)
    assert "no certificate" in r.stderr.lower(), r.stderr
    big = tmp_path / "big.pem"
    with big.open("wb") as fh:
        fh.truncate(50 * 1024 * 1024)
    r = run(cli, softhsm, token, "import", "--in", str(big), ok=False)
    assert "MiB" in r.stderr
    assert objects(softhsm, token) == before


def test_import_an_expired_certificate_needs_confirmation(cli: Cli, softhsm: SoftHsm, token: str,
                                                          tmp_path: Path, ca_dir: tuple[Path, Path]) -> None:
    key_id = str(keygen(cli, softhsm, token, "ec:prime256v1", "old")["id"])
    csr = tmp_path / "old.csr"
    run(cli, softhsm, token, "csr", "--id", key_id, "--subject", "/CN=old", "--out", str(csr))
    ca_key = serialization.load_pem_private_key(ca_dir[1].read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(ca_dir[0].read_bytes())
    request = x509.load_pem_x509_csr(csr.read_bytes())
    expired = local_ca.issue(ca_key, ca_cert, request.public_key(), request.subject,  # type: ignore[arg-type]
                             not_before=datetime.now(UTC) - timedelta(days=40),
                             not_after=datetime.now(UTC) - timedelta(days=1))
    path = tmp_path / "expired.pem"
    path.write_bytes(expired.public_bytes(serialization.Encoding.PEM))
    before = objects(softhsm, token)
    r = run(cli, softhsm, token, "import", "--in", str(path), ok=False)
    assert "expired on" in r.stderr and "--allow-expired" in r.stderr
    assert objects(softhsm, token) == before
    run(cli, softhsm, token, "import", "--in", str(path), "--allow-expired")
    assert RefObject("certificate", "old", key_id) in objects(softhsm, token)


def test_import_with_chain_writes_the_ca_only_when_asked(cli: Cli, softhsm: SoftHsm, token: str, tmp_path: Path,
                                                        ca_dir: tuple[Path, Path]) -> None:
    key_id = str(keygen(cli, softhsm, token, "ec:prime256v1", "leaf")["id"])
    csr = tmp_path / "leaf.csr"
    run(cli, softhsm, token, "csr", "--id", key_id, "--subject", "/CN=leaf", "--out", str(csr))
    cert = tmp_path / "leaf.pem"
    assert cli("ca", "sign", "--ca-cert", str(ca_dir[0]), "--ca-key", str(ca_dir[1]), "--in", str(csr),
               "--out", str(cert)).returncode == 0
    p7 = tmp_path / "chain.p7b"
    subprocess.run(["openssl", "crl2pkcs7", "-nocrl", "-certfile", str(cert), "-certfile", str(ca_dir[0]),
                    "-outform", "DER", "-out", str(p7)], check=True)
    r = run(cli, softhsm, token, "import", "--in", str(p7))
    assert "--with-chain" in r.stdout
    assert [o.cls for o in objects(softhsm, token)].count("certificate") == 1
    r = run(cli, softhsm, token, "import", "--in", str(p7), "--with-chain")
    listed = objects(softhsm, token)
    assert RefObject("certificate", "Test CA", "") in listed and RefObject("certificate", "leaf", key_id) in listed


# ------------------------------------------------------------------ the doctor and delete


def test_doctor_finds_and_fixes_a_certificate_under_the_wrong_id(cli: Cli, softhsm: SoftHsm, token: str,
                                                                 tmp_path: Path, ca_dir: tuple[Path, Path]) -> None:
    """The seed's mistake: pkcs11-tool --write-object with an ID that is not the key's."""
    key_id = str(keygen(cli, softhsm, token, "rsa:2048", "bob")["id"])
    csr = tmp_path / "bob.csr"
    run(cli, softhsm, token, "csr", "--label", "bob", "--subject", "/CN=bob", "--out", str(csr))
    pem = tmp_path / "bob.pem"
    assert cli("ca", "sign", "--ca-cert", str(ca_dir[0]), "--ca-key", str(ca_dir[1]), "--in", str(csr),
               "--out", str(pem)).returncode == 0
    der = tmp_path / "bob.der"
    der.write_bytes(x509.load_pem_x509_certificate(pem.read_bytes()).public_bytes(serialization.Encoding.DER))
    softhsm.tool("--token-label", token, "--write-object", str(der), "--type", "cert", "--id", "ff", "--label",
                 "bob-cert", pin=USER_PIN)
    r = run(cli, softhsm, token, "doctor", "--json", ok=False)
    findings = json.loads(r.stdout)["findings"]
    mismatch = next(f for f in findings if f["code"] == "certificate-id-mismatch")
    assert mismatch["new_id"] == key_id and mismatch["new_label"] == "bob"
    run(cli, softhsm, token, "doctor", "--fix")
    listed = objects(softhsm, token)
    assert RefObject("certificate", "bob", key_id) in listed
    assert not any(o.id == "ff" for o in listed)
    assert "pairs up" in run(cli, softhsm, token, "doctor").stdout


def test_delete_asks_unless_told_and_removes_exactly_the_pair(cli: Cli, softhsm: SoftHsm, token: str) -> None:
    a = str(keygen(cli, softhsm, token, "ec:prime256v1", "keep")["id"])
    b = str(keygen(cli, softhsm, token, "ec:prime256v1", "drop")["id"])
    before = objects(softhsm, token)
    r = run(cli, softhsm, token, "delete", "--id", b, ok=False)
    assert "--yes" in r.stderr and objects(softhsm, token) == before
    r = run(cli, softhsm, token, "delete", "--id", b, "--type", "privkey", "--yes")
    assert "Deleted private key 'drop'" in r.stdout
    run(cli, softhsm, token, "delete", "--id", b, "--yes")
    assert sorted({o.id for o in objects(softhsm, token)}) == [a]
    r = run(cli, softhsm, token, "delete", "--id", b, "--yes", ok=False)
    assert "Nothing with ID" in r.stderr


def test_verify_explains_keycertsign_as_openssl_strict_refuses_it(cli: Cli, tmp_path: Path,
                                                                 ca_dir: tuple[Path, Path]) -> None:
    """The seed's Chrome ERR_CERT_INVALID: an end-entity certificate with keyCertSign."""
    ca_key = serialization.load_pem_private_key(ca_dir[1].read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(ca_dir[0].read_bytes())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC) - timedelta(minutes=5)
    bad = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bad")]))
           .issuer_name(ca_cert.subject).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
           .not_valid_before(now).not_valid_after(now + timedelta(days=30))
           .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
           .add_extension(x509.KeyUsage(True, False, False, False, False, True, False, False, False), critical=True)
           .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
           .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
                          critical=False)
           .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    path = tmp_path / "bad.pem"
    path.write_bytes(bad.public_bytes(serialization.Encoding.PEM))
    strict = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", str(ca_dir[0]), str(path)],
                            capture_output=True, text=True, check=False)
    assert strict.returncode != 0
    r = cli("verify", str(path), "--ca", str(ca_dir[0]))
    assert r.returncode == 1 and "keyCertSign" in r.stdout and "ERR_CERT_INVALID" in r.stdout
    assert "Verdict: NOT OK" in r.stdout


def test_ca_init_and_sign_with_a_passphrase_from_a_file(cli: Cli, tmp_path: Path) -> None:
    pass_file = tmp_path / "pass"
    pass_file.write_text("correct horse\n")
    d = tmp_path / "ca"
    r = cli("ca", "init", "--dir", str(d), "--subject", "/O=HW/CN=HW CA", "--passphrase-file", str(pass_file))
    assert r.returncode == 0, r.stderr
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "user")])).sign(key, hashes.SHA256()))
    (tmp_path / "u.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    bad = bytearray(csr.public_bytes(serialization.Encoding.DER))
    bad[-1] ^= 0x01  # inside the signature
    (tmp_path / "bad.csr").write_bytes(bytes(bad))
    r = cli("ca", "sign", "--ca-cert", str(d / "ca.crt"), "--ca-key", str(d / "ca.key"), "--in",
            str(tmp_path / "bad.csr"), "--passphrase-file", str(pass_file), "--out", str(tmp_path / "bad.pem"))
    assert r.returncode == 1 and "signature" in r.stderr and not (tmp_path / "bad.pem").exists(), r.stderr
    wrong = tmp_path / "wrong"
    wrong.write_text("wrong\n")
    r = cli("ca", "sign", "--ca-cert", str(d / "ca.crt"), "--ca-key", str(d / "ca.key"), "--in",
            str(tmp_path / "u.csr"), "--passphrase-file", str(wrong), "--out", str(tmp_path / "u.pem"))
    assert r.returncode == 1 and "passphrase for ca.key is wrong" in r.stderr and not (tmp_path / "u.pem").exists()
    r = cli("ca", "sign", "--ca-cert", str(d / "ca.crt"), "--ca-key", str(d / "ca.key"), "--in",
            str(tmp_path / "u.csr"), "--passphrase-file", str(pass_file), "--out", str(tmp_path / "u.pem"),
            "--profile", "server", "--days", "30")
    assert r.returncode == 0, r.stderr
    strict = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", str(d / "ca.crt"),
                             str(tmp_path / "u.pem")], capture_output=True, text=True, check=False)
    assert strict.returncode == 0, strict.stdout
    assert hashlib.sha256(pass_file.read_bytes()).hexdigest() not in r.stderr  # (nothing echoed)
    assert SO_PIN not in r.stderr


# ------------------------------------------------------------------ the import path, fuzzed


def test_import_fuzzed_certificates_only_good_ones_land(softhsm: SoftHsm, token: str, service: object) -> None:
    """Random and mutated certificate files through the whole import path (file parser, pairing,
    write): each is refused with a CertDeskError and the token unchanged, or it is a certificate
    that parses and belongs to the token's key, written with that key's ID."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from cert_desk import errors as E
    from cert_desk.models import TokenSelector
    from cert_desk.secrets import Secret
    from cert_desk.services.lifecycle import LifecycleService
    from cert_desk.services.tokens import TokenService
    from cert_desk.x509.bundle import load_certificates

    assert isinstance(service, TokenService)
    ref = service.find_token(TokenSelector(label=token), [softhsm.module])
    service.login(ref, Secret(USER_PIN, "test")).result()
    life = LifecycleService(service)
    key = life.generate(ref, "ec:prime256v1", label="fuzz").result()
    ca_key, ca_cert = local_ca.make_root(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fuzz CA")]))
    good = local_ca.issue(ca_key, ca_cert, serialization.load_der_public_key(key.public_key_der),  # type: ignore[arg-type]
                          x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz")]))
    good_der = good.public_bytes(serialization.Encoding.DER)
    good_pem = good.public_bytes(serialization.Encoding.PEM)
    base = len(service.list_objects(ref).result().objects)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.sampled_from([good_der, good_pem]), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                                                           max_size=3), st.integers(0, 64), st.binary(max_size=16))
    def one(data: bytes, flips: list[tuple[int, int]], cut: int, tail: bytes) -> None:
        mutated = bytearray(data)
        for pos, value in flips:
            mutated[pos % len(mutated)] = value
        blob = bytes(mutated[: len(mutated) - cut]) + tail
        try:
            certs = load_certificates(blob).certificates
            result = life.import_certificates(ref, certs).result()
        except E.CertDeskError:
            assert len(service.list_objects(ref).result().objects) == base
            return
        listing = result.listing
        written = [o for o in listing.objects if o.certificate is not None]
        assert len(written) == 1 and written[0].id == key.id and written[0].label == "fuzz"
        spki = x509.load_der_x509_certificate(written[0].certificate.der).public_key().public_bytes(  # type: ignore[union-attr]
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        assert spki == key.public_key_der
        life.delete(ref, key.id, frozenset({"cert"})).result()

    one()


# ------------------------------------------------------------------ found in review


def test_a_certificate_twice_in_the_file_is_written_once(cli: Cli, softhsm: SoftHsm, token: str, tmp_path: Path,
                                                        ca_dir: tuple[Path, Path]) -> None:
    """'cat leaf.pem fullchain.pem > bundle.pem' holds the leaf twice."""
    key_id = str(keygen(cli, softhsm, token, "ec:prime256v1", "twice")["id"])
    csr = tmp_path / "twice.csr"
    run(cli, softhsm, token, "csr", "--id", key_id, "--subject", "/CN=twice", "--out", str(csr))
    leaf = tmp_path / "twice.pem"
    assert cli("ca", "sign", "--ca-cert", str(ca_dir[0]), "--ca-key", str(ca_dir[1]), "--in", str(csr),
               "--out", str(leaf)).returncode == 0
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes((leaf.read_bytes() + ca_dir[0].read_bytes()) * 2)
    run(cli, softhsm, token, "import", "--in", str(bundle), "--with-chain")
    certs = [o for o in objects(softhsm, token) if o.cls == "certificate"]
    assert sorted(certs) == sorted([RefObject("certificate", "twice", key_id), RefObject("certificate", "Test CA", "")])


def test_a_key_without_an_id_gets_no_automatic_fix(cli: Cli, softhsm: SoftHsm, token: str, tmp_path: Path,
                                                   ca_dir: tuple[Path, Path]) -> None:
    softhsm.tool("--token-label", token, "--keypairgen", "--key-type", "rsa:2048", "--label", "noid", pin=USER_PIN)
    pub = tmp_path / "noid.pub"
    softhsm.tool("--token-label", token, "--read-object", "--type", "pubkey", "--label", "noid", "-o", str(pub))
    ca_key = serialization.load_pem_private_key(ca_dir[1].read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(ca_dir[0].read_bytes())
    cert = local_ca.issue(ca_key, ca_cert, serialization.load_der_public_key(pub.read_bytes()),  # type: ignore[arg-type]
                          x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "noid")]))
    der = tmp_path / "noid.der"
    der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    softhsm.tool("--token-label", token, "--write-object", str(der), "--type", "cert", "--label", "noid",
                 pin=USER_PIN)
    before = objects(softhsm, token)
    r = run(cli, softhsm, token, "doctor", "--json", ok=False)
    finding = next(f for f in json.loads(r.stdout)["findings"] if f["code"] == "certificate-id-mismatch")
    assert finding["new_id"] is None and "has no CKA_ID" in finding["message"]
    run(cli, softhsm, token, "doctor", "--fix", ok=False)
    assert objects(softhsm, token) == before


def test_a_refused_fix_never_leaves_two_certificates(softhsm: SoftHsm, token: str, service: object) -> None:
    """A certificate the token will neither change nor destroy (CKA_MODIFIABLE and CKA_DESTROYABLE false,
    as some cards make them): the fix fails with a reason, and does not pile up copies."""
    from pkcs11 import Attribute
    from pkcs11.attributes import AttributeMapper

    from cert_desk import errors as E
    from cert_desk.models import TokenSelector
    from cert_desk.pkcs11 import lifecycle as L
    from cert_desk.pkcs11.module import LoadedModule, session_handle
    from cert_desk.secrets import Secret
    from cert_desk.services.lifecycle import LifecycleService
    from cert_desk.services.tokens import TokenService

    assert isinstance(service, TokenService)
    ref = service.find_token(TokenSelector(label=token), [softhsm.module])
    service.login(ref, Secret(USER_PIN, "test")).result()
    life = LifecycleService(service)
    key = life.generate(ref, "ec:prime256v1", label="k", obj_id=b"\x01").result()
    ca_key, ca_cert = local_ca.make_root(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA")]))
    leaf = local_ca.issue(ca_key, ca_cert, serialization.load_der_public_key(key.public_key_der),  # type: ignore[arg-type]
                          x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stuck")]))
    mapper = AttributeMapper()

    def write_stuck(m: LoadedModule) -> int:
        template = L._certificate_template(leaf, label="wrong", obj_id=b"\x99")
        template += [(int(a), mapper.pack_attribute(a, False)) for a in (Attribute.MODIFIABLE, Attribute.DESTROYABLE)]
        with m.operation("write a stuck certificate", ref.slot_id):
            return m.ck.create_object(session_handle(m.pkcs11_session(ref)), template)

    service.run(ref.module, write_stuck, "write").result()
    for _ in range(2):
        with pytest.raises(E.TokenError):
            life.doctor(ref, fix=True).result()
        assert [o.label for o in objects(softhsm, token) if o.cls == "certificate"] == ["wrong"]
