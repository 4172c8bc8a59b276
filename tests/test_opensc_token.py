"""A token OpenSC recognises, in a virtual reader: jcecard's OpenPGP card behind vsmartcard's vpcd.

cert-desk lists it through ``opensc-pkcs11.so`` as ``pkcs11-tool`` does, logs in to it, and
reports its removal in the middle of work as a removed token, quickly, without hanging.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cert_desk import errors as E
from cert_desk.models import TokenRef, TokenSelector
from cert_desk.secrets import Secret
from cert_desk.services.tokens import TokenService
from tests.conftest import PcscBed, opensc_module, require_tool, wait_for
from tests.reference import parse_objects

TOKEN = "OpenPGP card (User PIN)"
PGP_PIN = "123456"  # jcecard's defaults
PGP_ADMIN_PIN = "12345678"


@pytest.fixture
def openpgp(pcsc_bed: PcscBed, tmp_path: Path) -> Iterator[PcscBed]:
    require_tool("openpgp-tool")
    pcsc_bed.start_jcecard(tmp_path / "jcecard")
    env = dict(os.environ, PGP_ADMIN=PGP_ADMIN_PIN)

    def card_ready() -> bool:
        proc = subprocess.run(["opensc-tool", "--list-readers"], capture_output=True, text=True, env=env)
        return any(line.startswith("1") and "Yes" in line for line in proc.stdout.splitlines())

    wait_for(card_ready, 15, "jcecard's card in Virtual PCD 00 01")
    # an RSA key generated on the card, as the reference tool does it (the admin PIN through the environment);
    # the emulator may still be settling in the reader right after it connects: a few tries
    for _ in range(5):
        proc = subprocess.run(["openpgp-tool", "--reader", "1", "--verify", "CHV3", "--pin", "env:PGP_ADMIN",
                               "--gen-key", "3", "--key-type", "rsa2048"], capture_output=True, text=True, env=env,
                              timeout=120)
        if proc.returncode == 0:
            break
        time.sleep(1)
    assert proc.returncode == 0, proc.stderr
    yield pcsc_bed


def _card_in_reader_1() -> bool:
    from cert_desk.pcsc.readers import PcscClient

    client = PcscClient()
    try:
        snap = client.snapshot()
    finally:
        client.close()
    return len(snap.readers) > 1 and snap.readers[1].card_present


def _ref(service: TokenService) -> TokenRef:
    return service.find_token(TokenSelector(label=TOKEN), [opensc_module()])


def test_opensc_token_listed_like_pkcs11_tool(openpgp: PcscBed, service: TokenService) -> None:
    ref = _ref(service)
    service.login(ref, Secret(PGP_PIN, "test")).result()
    listing = service.list_objects(ref).result()
    ours = sorted((o.class_name, o.label, o.id_hex) for o in listing.objects)
    env = dict(os.environ, P11_PIN=PGP_PIN)
    out = subprocess.run(["pkcs11-tool", "--module", opensc_module(), "--token-label", TOKEN, "-O", "--login",
                          "--pin", "env:P11_PIN"], capture_output=True, text=True, env=env, timeout=120).stdout
    theirs = sorted((r.cls, r.label, r.id) for r in parse_objects(out))
    assert ours == theirs
    keys = [o for o in listing.objects if o.id_hex == "03"]
    assert {o.class_name for o in keys} >= {"private_key", "public_key"}
    priv = next(o for o in keys if o.class_name == "private_key")
    assert priv.key_type == "RSA" and priv.bits == 2048 and "sign" in priv.usage
    assert listing.token_info.manufacturer and listing.token_info.min_pin_len == 6


def test_removal_mid_operation_is_a_removed_token(openpgp: PcscBed, service: TokenService,
                                                   tmp_path: Path) -> None:
    ref = _ref(service)
    service.login(ref, Secret(PGP_PIN, "test")).result()
    assert service.list_objects(ref).result().logged_in
    openpgp.stop_jcecard()
    wait_for(lambda: not _card_in_reader_1(), 5, "pcscd to see the card gone")
    # OpenSC re-reads a reader's state at most once a second and serves listings from its cache in
    # between, as it does for pkcs11-tool: the first job that asks after that second is refused
    t0 = time.monotonic()
    outcomes: list[object] = []
    while time.monotonic() - t0 < 5:
        try:
            outcomes.append(service.list_objects(ref).result(timeout=10))
        except E.TokenRemovedError as err:
            outcomes.append(err)
            break
        time.sleep(0.2)
    assert isinstance(outcomes[-1], E.TokenRemovedError), outcomes
    assert time.monotonic() - t0 < 2.5
    assert "removed" in str(outcomes[-1])
    # every session and login on that slot is gone: when the card is back, a fresh login is needed
    assert service.logged_in_as(ref).result() is None
    openpgp.start_jcecard(tmp_path / "jcecard")
    wait_for(_card_in_reader_1, 15, "the card back in Virtual PCD 00 01")

    found: list[TokenRef] = []

    def back() -> bool:
        try:
            found.append(_ref(service))
        except E.CertDeskError:
            return False
        return True

    wait_for(back, 10, "the OpenPGP token back")
    listing = service.list_objects(found[-1]).result()
    assert not listing.logged_in
    assert service.logged_in_as(found[-1]).result() is None
