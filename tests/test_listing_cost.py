"""What a listing costs the token, and what it never reads, counted by OpenSC's pkcs11-spy.

A USB token pays a round trip (and APDUs) per call, so the budget is in calls: at most 4
C_GetAttributeValue per object on average (cert-desk makes 1). And a listing must never
read CKA_VALUE of a key: a careless token would hand out the key itself.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from tests.conftest import USER_PIN, Cli, SoftHsm, require

SPY = "/usr/lib/x86_64-linux-gnu/pkcs11-spy.so"


def _calls(log: str) -> list[tuple[int, list[str]]]:
    """(hObject, [(attribute, buffer given?)]) of every C_GetAttributeValue in a spy log."""
    out = []
    for block in re.split(r"^\d+: ", log, flags=re.M):
        if not block.startswith("C_GetAttributeValue"):
            continue
        m = re.search(r"\[in\] hObject = (0x[0-9a-f]+)", block)
        assert m
        head = block.split("[out]", 1)[0]
        attrs = re.findall(r"^\s+(CKA_\w+)\s+(\S+)", head, re.M)
        out.append((int(m.group(1), 16), [f"{name}:{'null' if ptr.startswith('0000000000000000') else 'buf'}"
                                          for name, ptr in attrs]))
    return out


def test_listing_costs_one_call_per_object_and_reads_no_key_value(
        cli: Cli, softhsm: SoftHsm, token: str, tmp_path: Path) -> None:
    require(os.path.exists(SPY), "OpenSC's pkcs11-spy.so (opensc-pkcs11)")
    for i in range(4):
        softhsm.keypair(token, f"ec{i}", f"0{i}", "EC:prime256v1")
    softhsm.keypair(token, "rsa", "10", "rsa:2048")
    data = tmp_path / "d.bin"
    data.write_bytes(b"x" * 100)
    softhsm.tool("--token-label", token, "--write-object", str(data), "--type", "data", "--label", "d", pin=USER_PIN)
    softhsm.tool("--token-label", token, "--keygen", "--key-type", "AES:32", "--label", "aes", "--id", "aa",
                 pin=USER_PIN)
    pub = tmp_path / "pub.der"
    softhsm.tool("--token-label", token, "--read-object", "--type", "pubkey", "--id", "10", "-o", str(pub))
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    from cert_desk.x509 import ca as local_ca

    ca_key, ca_cert = local_ca.make_root(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA")]))
    cert = local_ca.issue(ca_key, ca_cert, serialization.load_der_public_key(pub.read_bytes()),  # type: ignore[arg-type]
                          x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "user")]))
    der = tmp_path / "c.der"
    der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    softhsm.tool("--token-label", token, "--write-object", str(der), "--type", "cert", "--id", "10", "--label", "rsa",
                 pin=USER_PIN)

    log = tmp_path / "spy.log"
    r = cli("objects", "--module", SPY, "--token", token, "--login", "--json",
            env={"PKCS11SPY": softhsm.module, "PKCS11SPY_OUTPUT": str(log), "CERT_DESK_PIN": USER_PIN})
    assert r.returncode == 0, r.stderr
    objects = json.loads(r.stdout)
    assert len(objects) == 4 * 2 + 2 + 1 + 1 + 1
    calls = _calls(log.read_text(errors="replace"))
    per_object = len(calls) / len(objects)
    assert per_object <= 4.0
    assert per_object <= 1.2, f"{per_object:.2f} calls per object: the single batched read regressed"
    certificates = {o["handle"] for o in objects if o["class"] == "certificate"}
    for handle, attrs in calls:
        if "CKA_VALUE:buf" in attrs:
            assert handle in certificates, f"read CKA_VALUE of object {handle:#x}, which is not a certificate"
    # every certificate still came with its DER, in that one call
    assert all(o["sha256_fingerprint"] for o in objects if o["class"] == "certificate")
    data_obj = next(o for o in objects if o["class"] == "data")
    assert data_obj["value_length"] == 100
