"""Self-tests of libcdfault.so, the fault-injecting PKCS#11 module (tests/faultmod/README.md).

Each fault is checked through a real consumer: OpenSC's pkcs11-tool (what the flags look like,
what a failed login prints), python-pkcs11 (cert-desk's own path: removal and reinsertion), NSS's
modutil (loads it as a module), and ctypes on the exported C_* functions (exact return codes,
threads).
"""

from __future__ import annotations

import ctypes
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pkcs11
import pkcs11.exceptions as p11x
import pytest
from pkcs11.constants import Attribute, ObjectClass, SlotFlag

from cert_desk import errors as E
from cert_desk.errors import InputError
from cert_desk.models import TokenSelector
from cert_desk.pkcs11.ck import CK_SLOT_INFO, CK_TOKEN_INFO
from cert_desk.pkcs11.constants import CKF_TOKEN_PRESENT
from cert_desk.secrets import Secret
from cert_desk.services.tokens import TokenService
from tests.conftest import USER_PIN, SoftHsm, require_tool

if TYPE_CHECKING:  # imported by pytest_plugins (importing it here first would skip pytest's assert rewriting)
    from pkcs11._pkcs11 import lib as pkcs11_lib

    from tests.faultmod import FaultModule

pytest_plugins = ("tests.faultmod",)


def token_block(listing: str, label: str) -> str:
    """The lines pkcs11-tool -L prints for the slot holding ``label``."""
    for block in re.split(r"^(?=Slot \d+)", listing, flags=re.M):
        if re.search(rf"token label\s*:\s*{re.escape(label)}\s*$", block, flags=re.M):
            return block
    raise AssertionError(f"no token {label!r} in:\n{listing}")


@contextmanager
def p11(faulty: FaultModule) -> Iterator[pkcs11_lib]:
    """python-pkcs11 on the fault module, finalized afterwards (the next test's SoftHSM2 config is read
    at the next C_Initialize)."""
    lib = pkcs11.lib(faulty.module)
    try:
        yield lib
    finally:
        lib.finalize()


def private_key_labels(session: pkcs11.Session) -> list[str]:
    return [str(key[Attribute.LABEL]) for key in session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})]


class Raw:
    """The module's exported C_* functions through ctypes: exact return codes, and the GIL released
    during each call, as python-pkcs11 and cert-desk's ctypes layer do."""

    def __init__(self, path: str) -> None:
        self.lib = ctypes.CDLL(path)

    def __call__(self, name: str, *args: object) -> int:
        function = getattr(self.lib, name)
        function.restype = ctypes.c_ulong
        return int(function(*args))

    def slots(self, token_present: bool = True) -> list[int]:
        count = ctypes.c_ulong(0)
        assert self("C_GetSlotList", ctypes.c_ubyte(token_present), None, ctypes.byref(count)) == 0
        slots = (ctypes.c_ulong * max(count.value, 1))()
        assert self("C_GetSlotList", ctypes.c_ubyte(token_present), slots, ctypes.byref(count)) == 0
        return list(slots[: count.value])

    def token_info(self, slot: int) -> tuple[int, CK_TOKEN_INFO]:
        info = CK_TOKEN_INFO()
        return self("C_GetTokenInfo", ctypes.c_ulong(slot), ctypes.byref(info)), info


@contextmanager
def raw(faulty: FaultModule) -> Iterator[Raw]:
    module = Raw(faulty.module)
    assert module("C_Initialize", None) == 0
    try:
        yield module
    finally:
        module("C_Finalize", None)


def slot_of(raw_module: Raw, label: str) -> int:
    for slot in raw_module.slots():
        rv, info = raw_module.token_info(slot)
        if rv == 0 and info.label.decode().rstrip() == label:
            return slot
    raise AssertionError(f"no token {label!r}")


def test_generated_wrappers_are_current() -> None:
    generator = Path(__file__).with_name("faultmod") / "gen_wrappers.py"
    proc = subprocess.run([sys.executable, str(generator), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_without_faults_pkcs11_tool_sees_softhsm(faulty: FaultModule, softhsm: SoftHsm, token: str) -> None:
    softhsm.keypair(token, "signing key", "01")
    assert faulty.tool("-L").stdout == softhsm.tool("-L").stdout
    direct = softhsm.tool("--token-label", token, "-O", pin=USER_PIN).stdout
    assert "signing key" in direct
    assert faulty.tool("--token-label", token, "-O", pin=USER_PIN).stdout == direct
    # it went through the module: every call logged, none faulted
    assert faulty.calls("C_Login") and faulty.calls("C_FindObjects")
    assert all(line.endswith(": forward") for line in faulty.log() if line.startswith("C_"))


def test_token_flags_show_in_pkcs11_tool(faulty: FaultModule, softhsm: SoftHsm, token: str) -> None:
    faulty.set("flags=COUNT_LOW|TO_BE_CHANGED|SO_FINAL_TRY|PROTECTED_AUTHENTICATION_PATH|WRITE_PROTECTED")
    block = token_block(faulty.tool("-L").stdout, token)
    for words in ("user PIN count low", "user PIN to be changed", "final SO PIN try", "PIN pad present", "readonly"):
        assert words in block, block
    assert "user PIN locked" not in block

    # a locked PIN shows no tries left, and C_Login never reaches SoftHSM2
    faulty.set("flags=LOCKED|COUNT_LOW")
    block = token_block(faulty.tool("-L").stdout, token)
    assert "user PIN locked" in block
    assert "count low" not in block and "final user PIN try" not in block
    proc = faulty.tool("--token-label", token, "-O", pin=USER_PIN, check=False)
    assert proc.returncode != 0 and "CKR_PIN_LOCKED" in proc.stderr
    assert [line.split(": ", 1)[1] for line in faulty.calls("C_Login")] == ["PIN locked -> CKR_PIN_LOCKED"]

    # SoftHSM2 sets COUNT_LOW after a wrong PIN; a final try replaces it, as on a real token
    softhsm.tool("--token-label", token, "-O", pin="000000", check=False)
    assert "user PIN count low" in token_block(softhsm.tool("-L").stdout, token)
    faulty.set("flags=FINAL_TRY")
    block = token_block(faulty.tool("-L").stdout, token)
    assert "final user PIN try" in block and "count low" not in block


def test_login_fault_counts_across_processes(faulty: FaultModule, token: str) -> None:
    faulty.set("C_Login:CKR_PIN_INCORRECT@1")
    first = faulty.tool("--token-label", token, "-O", pin=USER_PIN, check=False)
    assert first.returncode != 0 and "CKR_PIN_INCORRECT" in first.stderr
    faulty.tool("--token-label", token, "-O", pin=USER_PIN)  # the second login goes through
    logins = faulty.calls("C_Login")
    assert len(logins) == 2
    assert logins[0].startswith("C_Login #1 ") and logins[0].endswith("fault -> CKR_PIN_INCORRECT")
    assert logins[1].startswith("C_Login #2 ") and logins[1].endswith(": forward")


def test_pin_pad_logs_in_without_a_pin(faulty: FaultModule, token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    faulty.set("flags=PROTECTED_AUTHENTICATION_PATH")
    with p11(faulty) as lib:
        tok = lib.get_token(token_label=token)
        assert tok.flags & pkcs11.TokenFlag.PROTECTED_AUTHENTICATION_PATH
        with pytest.raises(p11x.FunctionCancelled):  # nobody at the pad
            tok.open(user_pin=pkcs11.PROTECTED_AUTH)
        monkeypatch.setenv("CD_FAULT_PAD_PIN", USER_PIN)
        with tok.open(user_pin=pkcs11.PROTECTED_AUTH) as session:
            assert list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})) == []
    assert [line.split(": ", 1)[1] for line in faulty.calls("C_Login")] == [
        "PIN pad without CD_FAULT_PAD_PIN -> CKR_FUNCTION_CANCELED", "forward, PIN pad, with CD_FAULT_PAD_PIN"]
    assert USER_PIN not in "\n".join(faulty.log())


def test_write_protected_refuses_new_objects(faulty: FaultModule, softhsm: SoftHsm, token: str) -> None:
    faulty.set("flags=WRITE_PROTECTED")
    proc = faulty.tool("--token-label", token, "--keypairgen", "--key-type", "EC:prime256v1", "--label", "k",
                       pin=USER_PIN, check=False)
    assert proc.returncode != 0 and "CKR_TOKEN_WRITE_PROTECTED" in proc.stderr
    assert "Private Key Object" not in softhsm.tool("--token-label", token, "-O", pin=USER_PIN).stdout


def test_removal_and_reinsertion(faulty: FaultModule, softhsm: SoftHsm, token: str) -> None:
    softhsm.keypair(token, "before", "01")
    with p11(faulty) as lib:
        tok = lib.get_token(token_label=token)
        slot = tok.slot
        session = tok.open(user_pin=USER_PIN)
        assert private_key_labels(session) == ["before"]

        faulty.set("removed")
        assert lib.get_slots(token_present=True) == []
        (listed,) = [s for s in lib.get_slots() if s.slot_id == slot.slot_id]
        assert not listed.flags & SlotFlag.TOKEN_PRESENT
        with pytest.raises(p11x.TokenNotPresent):
            slot.get_token()
        # (C_GenerateRandom: python-pkcs11's object search, failing in C_FindObjectsInit, stays
        # "active" and raises again from C_FindObjectsFinal when garbage-collected)
        with pytest.raises(p11x.DeviceRemoved):  # the first call on a session from before
            session.generate_random(64)
        with pytest.raises(p11x.SessionHandleInvalid):  # and it is gone
            session.generate_random(64)
        # other processes see it gone too (the counters, and so the removal, are shared)
        assert token not in faulty.tool("-L").stdout

        faulty.clear()
        tok = lib.get_token(token_label=token)
        with tok.open(user_pin=USER_PIN) as fresh:  # a new login is needed and works
            assert private_key_labels(fresh) == ["before"]
            # the old handle stays dead though SoftHSM2 reuses handle numbers
            with pytest.raises(p11x.SessionHandleInvalid):
                session.generate_random(64)


def test_removed_during_key_generation(faulty: FaultModule, softhsm: SoftHsm, token: str) -> None:
    faulty.set("removed@C_GenerateKeyPair")
    with p11(faulty) as lib:
        tok = lib.get_token(token_label=token)
        session = tok.open(user_pin=USER_PIN, rw=True)
        with pytest.raises(p11x.DeviceRemoved):
            session.generate_keypair(pkcs11.KeyType.RSA, 1024, store=True, label="half done")
        assert lib.get_slots(token_present=True) == []
        with pytest.raises(p11x.SessionHandleInvalid):
            session.close()
    faulty.clear()
    assert "half done" not in softhsm.tool("--token-label", token, "-O", pin=USER_PIN).stdout
    (line,) = faulty.calls("C_GenerateKeyPair")
    assert line.endswith("removed -> CKR_DEVICE_REMOVED (the token is removed now)")


def test_removed_at_nth_call(faulty: FaultModule, token: str) -> None:
    faulty.set("removed@4")
    with raw(faulty) as module:  # C_Initialize is call 1
        slot = module.slots()[0]  # calls 2 and 3
        assert module.token_info(slot)[0] == 0x32  # call 4 pulls the token out: CKR_DEVICE_REMOVED
        assert module.token_info(slot)[0] == 0xE0  # CKR_TOKEN_NOT_PRESENT
        assert module.slots() == []
        info = CK_SLOT_INFO()
        assert module("C_GetSlotInfo", ctypes.c_ulong(slot), ctypes.byref(info)) == 0
        assert not info.flags & CKF_TOKEN_PRESENT
        faulty.clear()
        assert slot in module.slots()


def wait_for_log(faulty: FaultModule, name: str) -> None:
    deadline = time.monotonic() + 5
    while not faulty.calls(name):
        assert time.monotonic() < deadline, f"{name} was not called"
        time.sleep(0.01)


def test_sleeping_call_does_not_block_other_threads(faulty: FaultModule, token: str) -> None:
    faulty.set("C_GetTokenInfo:sleep=30@1")
    with raw(faulty) as module:
        slot = module.slots()[0]
        results: list[int] = []
        sleeper = threading.Thread(target=lambda: results.append(module.token_info(slot)[0]))
        sleeper.start()
        wait_for_log(faulty, "C_GetTokenInfo")  # logged before it sleeps
        info = CK_SLOT_INFO()
        before = time.monotonic()
        assert module("C_GetSlotInfo", ctypes.c_ulong(slot), ctypes.byref(info)) == 0
        assert time.monotonic() - before < 0.5  # not behind the sleeping call
        time.sleep(0.3)
        assert sleeper.is_alive()
        # the hang ends when the faults change
        faulty.clear()
        sleeper.join(5)
        assert not sleeper.is_alive() and results == [0]


def test_removal_ends_a_running_call(faulty: FaultModule, token: str) -> None:
    faulty.set("C_GenerateRandom:sleep=30@1")
    with raw(faulty) as module:
        session = ctypes.c_ulong()
        slot = module.slots()[0]
        assert module("C_OpenSession", ctypes.c_ulong(slot), ctypes.c_ulong(4), None, None,
                      ctypes.byref(session)) == 0
        buffer = ctypes.create_string_buffer(32)
        results: list[int] = []
        job = threading.Thread(target=lambda: results.append(module("C_GenerateRandom", session, buffer, 32)))
        job.start()
        wait_for_log(faulty, "C_GenerateRandom")
        faulty.set("removed")
        job.join(5)
        assert not job.is_alive() and results == [0x32]  # CKR_DEVICE_REMOVED, not a hang
        assert module("C_GenerateRandom", session, buffer, 32) == 0xB3  # CKR_SESSION_HANDLE_INVALID
    ended = "+ C_GenerateRandom #1 after the sleep: removed -> CKR_DEVICE_REMOVED (the token is removed now)"
    assert ended in faulty.log()


def test_unknown_numeric_code_is_returned_as_is(faulty: FaultModule, token: str) -> None:
    faulty.set("C_GetTokenInfo:0x80000123@1,C_GetTokenInfo:CKR_DEVICE_MEMORY@2")
    with raw(faulty) as module:
        slot = module.slots()[0]
        assert module.token_info(slot)[0] == 0x80000123
        assert module.token_info(slot)[0] == 0x31
        assert module.token_info(slot)[0] == 0


def test_slot_filter_spares_other_slots(faulty: FaultModule, softhsm: SoftHsm, token: str) -> None:
    softhsm.init_token("other token")
    with raw(faulty) as module:
        ours, other = slot_of(module, token), slot_of(module, "other token")
        faulty.set(f"slot={ours},C_GetTokenInfo:CKR_DEVICE_ERROR@*,removed@C_OpenSession")
        assert module.token_info(other)[0] == 0
        assert module.token_info(ours)[0] == 0x30  # CKR_DEVICE_ERROR
        assert {ours, other} <= set(module.slots())
        session = ctypes.c_ulong()
        assert module("C_OpenSession", ctypes.c_ulong(ours), ctypes.c_ulong(4), None, None,
                      ctypes.byref(session)) == 0x32  # CKR_DEVICE_REMOVED
        assert ours not in module.slots() and other in module.slots()
    assert f"C_GetTokenInfo #- call=0 slot={other}: forward, not the slot= slot" in faulty.calls("C_GetTokenInfo")


def test_nss_loads_it(faulty: FaultModule, token: str, tmp_path: Path) -> None:
    require_tool("modutil")
    require_tool("certutil")
    db = f"sql:{tmp_path / 'nssdb'}"
    (tmp_path / "nssdb").mkdir()

    def nss(*args: str) -> str:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                              env=faulty.env())
        assert proc.returncode == 0, f"{args}: {proc.stderr}"
        return proc.stdout

    nss("certutil", "-N", "-d", db, "--empty-password")
    nss("modutil", "-dbdir", db, "-add", "cdfault", "-libfile", faulty.module, "-force")
    listing = nss("modutil", "-dbdir", db, "-list")
    block = listing[listing.index("cdfault"):]
    assert f"library name: {faulty.module}" in block and "status: loaded" in block, listing
    assert faulty.calls("C_Initialize")
    # NSS reads the token flags through it too
    faulty.set("flags=WRITE_PROTECTED")
    details = nss("modutil", "-dbdir", db, "-list", "cdfault")
    token_part = details[details.index(f"Token Name: {token}"):]
    assert "Access: Write Protected" in token_part.split("\n\n")[0], details


def test_bad_spec_is_refused(faulty: FaultModule, token: str) -> None:
    before = faulty.faults_file.read_text(encoding="utf-8")
    for spec in ("C_Login:CKR_NO_SUCH_CODE@1", "C_Nothing:CKR_OK", "flags=SHINY", "removed@0", "C_Login:sleep=x",
                 "C_Login:CKR_PIN_LOCKED@first", "C_GetFunctionList:CKR_OK"):
        with pytest.raises(InputError):
            faulty.set(spec)
    assert faulty.faults_file.read_text(encoding="utf-8") == before
    # a spec written behind its back makes every call fail loudly, not silently pass
    faulty.faults_file.write_text(f"flags=SHINY,log={faulty.log_file}", encoding="utf-8")
    proc = faulty.tool("-L", check=False)
    assert proc.returncode != 0 and "CKR_GENERAL_ERROR" in proc.stderr
    assert "unknown token flag 'SHINY'" in proc.stderr


def test_cert_desk_loads_it_in_process(faulty: FaultModule, softhsm: SoftHsm, token: str,
                                       service: TokenService) -> None:
    """cert-desk's own path (python-pkcs11 and its ctypes calls on one function list), next to
    SoftHSM2 loaded directly in the same process (libcdfault.so loads a private copy)."""
    direct = service.find_token(TokenSelector(label=token), [softhsm.module])
    ref = service.find_token(TokenSelector(label=token), [faulty.module])
    assert (ref.serial, ref.slot_id) == (direct.serial, direct.slot_id)
    faulty.set("flags=LOCKED")
    with pytest.raises(E.PinLockedError):
        service.login(ref, Secret(USER_PIN, "test")).result()
    assert all("CKR_PIN_LOCKED" in line for line in faulty.calls("C_Login"))
    service.login(direct, Secret(USER_PIN, "test")).result()  # SoftHSM2 itself is fine

    faulty.set("removed")
    with pytest.raises(E.TokenRemovedError):
        service.list_objects(ref).result()
    faulty.clear()
    service.login(ref, Secret(USER_PIN, "test")).result()
    assert service.list_objects(ref).result().logged_in
