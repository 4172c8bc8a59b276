"""cert-desk and OpenSC's pkcs11-tool must see the same tokens and objects.

Both directions: a token populated by pkcs11-tool is listed by cert-desk as pkcs11-tool
lists it, and a token populated by cert-desk (the demo token) is listed by pkcs11-tool as
cert-desk lists it. The OpenSSL key references cert-desk prints are fed to OpenSSL's
libp11 engine, which must find the same public key.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from cert_desk.models import TokenSelector
from cert_desk.services.tokens import TokenService
from cert_desk.x509 import ca as local_ca
from cert_desk.x509.keys import spki_sha256
from tests.conftest import USER_PIN, Cli, SoftHsm, require, require_tool
from tests.reference import RefObject, parse_mechanisms, parse_objects, parse_slots

ENGINE = "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so"


def _issue_for(softhsm: SoftHsm, token: str, key_id: str, cn: str, tmp: Path) -> Path:
    """A certificate for the public key pkcs11-tool reads off the token, as DER."""
    pub_der = tmp / f"pub-{key_id}.der"
    softhsm.tool("--token-label", token, "--read-object", "--type", "pubkey", "--id", key_id, "-o", str(pub_der))
    pub = serialization.load_der_public_key(pub_der.read_bytes())
    ca_key, ca_cert = local_ca.make_root(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Parity CA")]))
    cert = local_ca.issue(ca_key, ca_cert, pub, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))  # type: ignore[arg-type]
    out = tmp / f"cert-{key_id}.der"
    out.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return out


@pytest.fixture
def populated(softhsm: SoftHsm, token: str, tmp_path: Path) -> SoftHsm:
    """A token filled by pkcs11-tool: EC and RSA pairs (IDs 0100 and 01, as in the seed), a key
    pair with pkcs11-tool's default ID, certificates, a data object and an AES key."""
    softhsm.keypair(token, "my key", "0100", "EC:prime256v1")
    softhsm.keypair(token, "rsakey", "01", "rsa:2048")
    softhsm.keypair(token, "noid", "", "EC:secp384r1")
    for key_id, label, cn in (("0100", "my key", "Parity EC"), ("01", "rsakey", "Parity RSA")):
        der = _issue_for(softhsm, token, key_id, cn, tmp_path)
        softhsm.tool("--token-label", token, "--write-object", str(der), "--type", "cert", "--label", label,
                     "--id", key_id, pin=USER_PIN)
    data = tmp_path / "data.bin"
    data.write_bytes(b"some application data")
    softhsm.tool("--token-label", token, "--write-object", str(data), "--type", "data", "--label", "blob",
                 "--application-label", "parity-app", pin=USER_PIN)
    softhsm.tool("--token-label", token, "--keygen", "--key-type", "AES:16", "--label", "aeskey", "--id", "aa",
                 pin=USER_PIN)
    return softhsm


def _ours(svc: TokenService, label: str, login: bool) -> list[RefObject]:
    ref = svc.find_token(TokenSelector(label=label), [svc_module(svc)])
    if login:
        from cert_desk.secrets import Secret

        svc.login(ref, Secret(USER_PIN, "test")).result()
    listing = svc.list_objects(ref).result()
    return sorted(RefObject(o.class_name, o.label, o.id_hex) for o in listing.objects)


def svc_module(_svc: object) -> str:
    from cert_desk.pkcs11.discovery import softhsm_module_path

    path = softhsm_module_path()
    assert path
    return path


@pytest.mark.parametrize("login", [False, True], ids=["public", "logged-in"])
def test_objects_populated_by_pkcs11_tool(populated: SoftHsm, token: str, service: TokenService, login: bool) -> None:
    args = ["--token-label", token, "-O"]
    ref = populated.tool(*args, pin=USER_PIN if login else None).stdout
    theirs = sorted(parse_objects(ref))
    ours = _ours(service, token, login)
    assert ours == theirs
    classes = {o.cls for o in ours}
    assert ("private_key" in classes) == login
    assert {"public_key", "certificate", "data"} <= classes


def test_id_0100_is_not_100(populated: SoftHsm, token: str, service: TokenService) -> None:
    ours = _ours(service, token, login=True)
    ids = {o.id for o in ours if o.label == "my key"}
    assert ids == {"0100"}


def test_pairs_and_key_match(populated: SoftHsm, token: str, service: TokenService) -> None:
    from cert_desk.secrets import Secret

    ref = service.find_token(TokenSelector(label=token), [svc_module(service)])
    service.login(ref, Secret(USER_PIN, "test")).result()
    listing = service.list_objects(ref).result()
    groups = {g.id_hex: g for g in listing.groups}
    assert groups["01"].key_matches is True  # RSA: private key, public key and certificate agree
    assert len(groups["01"].certificates) == 1 and groups["01"].private_keys and groups["01"].public_keys
    # EC: the private key does not reveal its public key; the public key and certificate agree
    assert groups["0100"].key_matches is True
    # pkcs11-tool 0.23 sets no CKA_ID when --id is left out (on SoftHSM2): that key cannot be paired
    assert listing.warnings == (
        "The private key 'noid' has no CKA_ID: browsers and OpenSSL pair a certificate with its key by CKA_ID, so "
        "no certificate can be used with it.",
    )
    cert = next(o for o in listing.objects if o.class_name == "certificate" and o.id_hex == "01")
    pub = next(o for o in listing.objects if o.class_name == "public_key" and o.id_hex == "01")
    assert cert.public_key_sha256 == pub.public_key_sha256
    assert cert.certificate is not None and cert.certificate.subject_cn == "Parity RSA"
    assert cert.certificate.extended_key_usage == ("clientAuth",)
    aes = next(o for o in listing.objects if o.class_name == "secret_key")
    assert (aes.key_type, aes.bits) == ("AES", 128)
    # the access flags agree with what pkcs11-tool prints for the key
    text = populated.tool("--token-label", token, "-O", "--type", "secrkey", pin=USER_PIN).stdout
    access = next(line for line in text.splitlines() if "Access:" in line)
    assert aes.sensitive == (" sensitive" in access.replace("always sensitive", ""))
    assert aes.extractable == ("extractable" in access.replace("never extractable", ""))


def test_certificate_with_the_wrong_id_is_reported(softhsm: SoftHsm, token: str, service: TokenService,
                                                   tmp_path: Path) -> None:
    """The seed's classic mistake: the certificate of key 02 written with ID 01."""
    softhsm.keypair(token, "first", "01", "rsa:2048")
    softhsm.keypair(token, "second", "02", "rsa:2048")
    der = _issue_for(softhsm, token, "02", "Belongs to 02", tmp_path)
    softhsm.tool("--token-label", token, "--write-object", str(der), "--type", "cert", "--label", "first",
                 "--id", "01", pin=USER_PIN)
    ref = service.find_token(TokenSelector(label=token), [svc_module(service)])
    listing = service.list_objects(ref).result()
    g = next(g for g in listing.groups if g.id_hex == "01")
    assert g.key_matches is False
    assert any("does not belong to the key with the same ID" in w and "ID 02" in w for w in listing.warnings)


def test_slots_match_pkcs11_tool_L(softhsm: SoftHsm, service: TokenService) -> None:
    softhsm.init_token("alpha")
    softhsm.init_token("beta", pin="87654321")
    theirs = {t.label: t for t in parse_slots(softhsm.tool("-L").stdout)}
    reports = service.slots(svc_module(service)).result()
    ours = {r.token.label: r for r in reports if r.token is not None and r.token.initialized}
    assert set(ours) == set(theirs) == {"alpha", "beta"}
    for label, ref in theirs.items():
        r = ours[label]
        assert r.token is not None
        assert r.slot.slot_id == ref.slot_id
        assert (r.token.manufacturer, r.token.model, r.token.serial) == (ref.manufacturer, ref.model, ref.serial)
        assert (r.token.min_pin_len, r.token.max_pin_len) == (ref.pin_min, ref.pin_max)
        assert ref.flags <= set(r.token.flag_words), (ref.flags, r.token.flag_words)


def test_mechanisms_match_pkcs11_tool_M(softhsm: SoftHsm, token: str, service: TokenService) -> None:
    theirs = parse_mechanisms(softhsm.tool("--token-label", token, "-M").stdout)
    reports = service.slots(svc_module(service)).result()
    r = next(r for r in reports if r.token is not None and r.token.label == token)
    assert len(r.mechanisms) == len(theirs)
    ours = {m.name: m for m in r.mechanisms}
    rsa = ours["CKM_RSA_PKCS_KEY_PAIR_GEN"]
    assert theirs["RSA-PKCS-KEY-PAIR-GEN"] == (rsa.min_key_size, rsa.max_key_size)
    assert "generate_key_pair" in rsa.flag_words
    ec = ours["CKM_EC_KEY_PAIR_GEN"]
    assert theirs["ECDSA-KEY-PAIR-GEN"] == (ec.min_key_size, ec.max_key_size)


def test_objects_created_by_cert_desk_seen_by_pkcs11_tool(cli: Cli, softhsm: SoftHsm) -> None:
    """The demo token is filled by cert-desk's own key generation and certificate writing."""
    r = cli("demo", "--json")
    assert r.returncode == 0, r.stderr
    demo = json.loads(r.stdout)
    env = {"SOFTHSM2_CONF": demo["softhsm2_conf"]}
    ours = cli("--demo", "objects", "--json", "--login", "--pin-file", demo["user_pin_file"])
    assert ours.returncode == 0, ours.stderr
    mine = sorted(RefObject(o["class"], o["label"], o["id"]) for o in json.loads(ours.stdout))
    proc = subprocess.run(
        ["pkcs11-tool", "--module", softhsm.module, "--token-label", "cert-desk demo", "-O", "--login", "--pin",
         "env:P11_PIN"], env={**os.environ, **env, "P11_PIN": demo["user_pin"]},
        capture_output=True, text=True, timeout=60, check=True)
    assert sorted(parse_objects(proc.stdout)) == mine
    assert len(mine) == 7  # two key pairs, their certificates, the CA certificate


def test_openssl_engine_finds_our_key_references(populated: SoftHsm, token: str, service: TokenService,
                                                 tmp_path: Path) -> None:
    """Every openssl_key reference of a public key loads that key through libp11's engine."""
    require_tool("openssl")
    require(Path(ENGINE).exists(), "libp11's OpenSSL engine (libengine-pkcs11-openssl)")
    conf = tmp_path / "engine.cnf"
    conf.write_text(
        "openssl_conf = openssl_init\n[openssl_init]\nengines = engine_section\n[engine_section]\n"
        "pkcs11 = pkcs11_section\n[pkcs11_section]\nengine_id = pkcs11\n"
        f"dynamic_path = {ENGINE}\nMODULE_PATH = {populated.module}\ninit = 0\n", encoding="utf-8")
    ref = service.find_token(TokenSelector(label=token), [svc_module(service)])
    listing = service.list_objects(ref).result()
    pub = next(o for o in listing.objects if o.class_name == "public_key" and o.id_hex == "0100")
    assert pub.openssl_key[0] == f"{ref.slot_id}:0100"
    for key_ref in pub.openssl_key:
        # libp11 with SoftHSM2 may crash at exit (rc 139) after writing its output: check the output.
        proc = subprocess.run(
            ["openssl", "pkey", "-engine", "pkcs11", "-inform", "engine", "-pubin", "-in", key_ref, "-pubout",
             "-outform", "DER", "-out", str(tmp_path / "out.der")],
            env={**populated.env(), "OPENSSL_CONF": str(conf)}, capture_output=True, timeout=60)
        out = tmp_path / "out.der"
        assert out.exists() and out.stat().st_size > 0, (key_ref, proc.stderr.decode(errors="replace"))
        assert spki_sha256(out.read_bytes()) == pub.public_key_sha256, key_ref
        out.unlink()
    wrong = "slot_0-id_0100"  # the seed's reference: slot 0 is not this token's slot ID
    proc = subprocess.run(
        ["openssl", "pkey", "-engine", "pkcs11", "-inform", "engine", "-pubin", "-in", wrong, "-pubout",
         "-out", str(tmp_path / "wrong.pem")],
        env={**populated.env(), "OPENSSL_CONF": str(conf)}, capture_output=True, timeout=60)
    assert not (tmp_path / "wrong.pem").exists() or (tmp_path / "wrong.pem").stat().st_size == 0
