"""A stateful property test: cert-desk's token services driven at random against a real SoftHSM2 token.

A hypothesis ``RuleBasedStateMachine`` drives :class:`TokenService` and :class:`LifecycleService`
on one SoftHSM2 token: key generation (EC P-256, now and then RSA 2048, with and without an
explicit CKA_ID, with labels and IDs that clash), certificate import for a key on the token
(issued by a local CA for the key's on-token public key), a certificate written by "another
tool" under a wrong ID and label, then put right by the doctor (the product's only relabelling:
``doctor --fix`` gives a mis-filed certificate its key's ID and label; cert-desk has no free
relabel), delete by ID, login with the right PIN, a wrong PIN and a PIN too short to try,
logout and close. Every rule is also tried in the state where it must be refused (not logged
in, a clashing label, an absent ID), and the refusal must leave the token as it was. At the end
of every example OpenSC's ``pkcs11-tool -O`` (its own process, logged in) must list exactly the
model's objects: the reference, not cert-desk's own listing, has the last word.

The model is the multiset of ``(class, CKA_ID, label)`` on the token, whether the service's
session is open, whether it is logged in, and the user PIN state. SoftHSM2 never locks a PIN:
a wrong one sets ``CKF_USER_PIN_COUNT_LOW``, which stays (across logout) until a right login
clears it. A login while already logged in is answered from the session without asking the
token (see ``LoadedModule.login``), so a wrong PIN then neither fails nor counts.

Invariants, after every step:

- ``list_objects`` equals the model: everything when logged in, only the public objects
  (public keys, certificates) when not; ``logged_in_as`` and the listing's flag agree.
- Sessions: the service keeps at most one session per token, and none after logout or close.
  SoftHSM2 reports ``ulSessionCount`` as unavailable, so sessions are counted with
  ``C_GetSessionInfo`` on every handle up to the current high-water mark (a short-lived probe
  session's handle; SoftHSM2 hands out handles from one rising counter): exactly one on the
  token's slot, in ``CKS_RW_USER_FUNCTIONS`` when logged in, else ``CKS_RW_PUBLIC_SESSION``,
  whenever the model says it is open (anything that used the token opens it: a listing, a login,
  even a refused one), and none after logout/close; none on any other slot.
- The user PIN state in a fresh ``token_info`` is the model's.
- No PKCS#11 call ran off the module's worker thread. Proven by observation, not by trusting
  the code: before the worker thread exists, a profile hook is installed for every new thread
  (``threading.setprofile``) and for the test thread (``sys.setprofile``). It records the
  thread of every entry into ``CkFunctions._call`` (the one door through which every ctypes
  call into the module passes) and into python-pkcs11's Python code (its attribute mapper and
  types, which many of its Cython calls go through). Every recorded entry must come from the worker
  thread, and the worker must have made some (so the hook is not blind). Calls python-pkcs11
  makes from Cython without touching Python code are not seen by the hook; they are reachable
  only through python-pkcs11 objects that ``LoadedModule`` hands out on its own thread and that
  cannot leave it (``check_crossable``). Besides, every future's outcome is collected and a
  ``WrongThreadError`` (the product's own guard) fails the run, and a rule smuggles the
  ``LoadedModule`` out to the test thread and checks that its methods refuse there, before any
  PKCS#11 call (the hook sees none from the test thread).

Settings: 30 derandomized examples of up to 20 steps (about 15 s on two cores, a third of it the
profile hook). With 15 x 15 from an empty, logged-out token, hypothesis's derandomized examples were
mostly repetitions of one rule and rarely reached an import or the doctor; so an example starts
logged in or not, with up to two keys and perhaps a mis-filed certificate, and the test ends by
asserting that every important rule ran at least once, so a change in how hypothesis generates
cannot make it pass vacuously. Rules that pick an object pick it by position in creation order:
generated IDs are random, and the pick must be the same when hypothesis replays an example.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import types
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import pkcs11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from cert_desk import errors as E
from cert_desk.models import ObjectListing, TokenRef, TokenSelector
from cert_desk.pkcs11 import constants as C
from cert_desk.pkcs11.ck import CkFunctions
from cert_desk.pkcs11.keygen import write_certificate
from cert_desk.pkcs11.module import LoadedModule, session_handle
from cert_desk.secrets import Secret
from cert_desk.services.lifecycle import LifecycleService
from cert_desk.services.tokens import TokenService
from cert_desk.x509 import ca as local_ca
from tests.conftest import USER_PIN, SoftHsm
from tests.reference import RefObject, parse_objects

T = TypeVar("T")

WRONG_PIN = "654321"
SHORT_PIN = "12"  # below SoftHSM2's minimum of 4: refused before the token sees it
CKS_RW_PUBLIC_SESSION = 2
CKS_RW_USER_FUNCTIONS = 3
LABELS = ("alice", "bob", "carol")
EXPLICIT_IDS = (b"\x01", b"\x02")
TIMEOUT = 120.0

Row = tuple[int, bytes, str]  # (CKA_CLASS, CKA_ID, CKA_LABEL)


# ------------------------------------------------------------------ the thread observer


class PkcsCallObserver:
    """Which threads entered the PKCS#11 binding layer (see the module docstring)."""

    def __init__(self) -> None:
        self._door = CkFunctions._call.__code__
        self._binding = os.path.dirname(pkcs11.__file__) + os.sep
        self.calls: dict[int, int] = {}  # thread ident -> entries (each thread writes only its own key)
        self.names: dict[int, str] = {}

    def hook(self, frame: types.FrameType, event: str, _arg: Any) -> None:
        if event != "call":
            return
        code = frame.f_code
        if code is self._door or code.co_filename.startswith(self._binding):
            ident = threading.get_ident()
            self.calls[ident] = self.calls.get(ident, 0) + 1
            if ident not in self.names:
                self.names[ident] = threading.current_thread().name

    def install(self) -> None:
        threading.setprofile(self.hook)
        sys.setprofile(self.hook)

    def remove(self) -> None:
        sys.setprofile(None)
        threading.setprofile(None)


# ------------------------------------------------------------------ the model


@dataclass
class Pair:
    key_id: bytes
    label: str
    spki: bytes  # the on-token public key, as the service reported it at generation


@dataclass
class Cert:
    key_id: bytes
    label: str
    owner_spki: bytes


@dataclass
class Model:
    pairs: list[Pair] = field(default_factory=list)
    certs: list[Cert] = field(default_factory=list)
    logged_in: bool = False
    session_open: bool = False
    pin_state: E.PinState = E.PinState.OK

    def rows(self, *, logged_in: bool) -> Counter[Row]:
        rows: Counter[Row] = Counter()
        for p in self.pairs:
            if logged_in:
                rows[(C.CKO_PRIVATE_KEY, p.key_id, p.label)] += 1
            rows[(C.CKO_PUBLIC_KEY, p.key_id, p.label)] += 1
        for c in self.certs:
            rows[(C.CKO_CERTIFICATE, c.key_id, c.label)] += 1
        return rows

    def ids(self) -> list[bytes]:
        """In the order they appeared, not sorted: generated IDs are random, and a rule that picks by
        position must pick the same object when hypothesis replays the example."""
        return list(dict.fromkeys([*(p.key_id for p in self.pairs), *(c.key_id for c in self.certs)]))

    def misfiled(self) -> list[tuple[Cert, Pair]]:
        """Certificates under another ID than their key's, the key being on the token (what the doctor fixes)."""
        keys = {p.spki: p for p in self.pairs}
        return [(c, keys[c.owner_spki]) for c in self.certs
                if c.owner_spki in keys and c.key_id != keys[c.owner_spki].key_id]

    def clashes(self, label: str, obj_id: bytes | None) -> bool:
        labels = {p.label for p in self.pairs} | {c.label for c in self.certs}
        return label in labels or (obj_id is not None and obj_id in self.ids())


def listed_rows(listing: ObjectListing) -> Counter[Row]:
    return Counter((o.object_class, o.id, o.label) for o in listing.objects)


def default_id(spki: bytes) -> bytes:
    """The CKA_ID pkcs11-tool gives (SHA-1 of the RSA modulus, or of the EC point's X), computed here
    from the public key, independently of cert-desk's own pkcs11_tool_id."""
    key = serialization.load_der_public_key(spki)
    if isinstance(key, rsa.RSAPublicKey):
        n = key.public_numbers().n
        data = n.to_bytes((n.bit_length() + 7) // 8, "big")
    else:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        data = key.public_numbers().x.to_bytes((key.curve.key_size + 7) // 8, "big")
    return hashlib.sha1(data).digest()  # noqa: S324 - an identifier, as OpenSC makes it


# ------------------------------------------------------------------ the machine


@dataclass
class Context:
    """What the machine works on; set by the test before the run (hypothesis makes the instances)."""

    service: TokenService
    lifecycle: LifecycleService
    ref: TokenRef
    observer: PkcsCallObserver
    worker_ident: int
    ca_key: local_ca.PrivateKey
    ca_cert: x509.Certificate
    softhsm: SoftHsm
    wrong_thread: list[BaseException] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)
    max_handle: int = 0


class TokenMachine(RuleBasedStateMachine):
    ctx: ClassVar[Context]

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.misfiled = 0
        self.rsa_keys = 0
        self.smuggled = False
        self._reset_token()

    def teardown(self) -> None:
        """The reference judges the token as the example left it: ``pkcs11-tool -O``, logged in, in its
        own process (its right login also clears COUNT_LOW, which the next example resets anyway)."""
        ref = self.ctx.ref
        listed = self.ctx.softhsm.tool("--token-label", ref.label, "-O", pin=USER_PIN).stdout
        names = {C.CKO_PRIVATE_KEY: "private_key", C.CKO_PUBLIC_KEY: "public_key", C.CKO_CERTIFICATE: "certificate"}
        expected = sorted(RefObject(names[cls], label, key_id.hex())
                          for (cls, key_id, label), n in self.model.rows(logged_in=True).items() for _ in range(n))
        assert sorted(parse_objects(listed)) == expected
        self.ctx.stats["pkcs11-tool checks"] += 1

    @initialize(logged_in=st.booleans(), keys=st.integers(min_value=0, max_value=2), misfile=st.booleans())
    def start(self, logged_in: bool, keys: int, misfile: bool) -> None:
        """Begin logged in or not, with up to two EC keys (made by the service under test, checked by
        the invariants like any step) and perhaps a mis-filed certificate: the rules that need a key,
        a login or something for the doctor to fix are then a step away."""
        if logged_in or keys:
            self.login_right()
        for label in LABELS[:keys]:
            self._keygen("ec:prime256v1", label, None)
        if keys and misfile:
            self.misfile_certificate(0)
        if not logged_in and keys:
            self.logout(close=False)

    # ---------------------------------------------------------------- helpers

    def outcome(self, future: Future[T]) -> T | E.CertDeskError:
        """The job's value, or the CertDeskError it ended with; a WrongThreadError is collected and fails."""
        try:
            return future.result(timeout=TIMEOUT)
        except E.CertDeskError as err:
            return err
        except E.WrongThreadError as err:
            self.ctx.wrong_thread.append(err)
            raise

    def value(self, future: Future[T]) -> T:
        out = self.outcome(future)
        assert not isinstance(out, E.CertDeskError), f"{type(out).__name__}: {out}"
        return out

    def run_job(self, fn: Callable[[LoadedModule], T], what: str) -> T:
        return self.value(self.ctx.service.run(self.ctx.ref.module, fn, what))

    def _reset_token(self) -> None:
        """Every example starts on an empty token, logged out, no session, PIN state OK (a right login
        clears COUNT_LOW). The objects are removed with raw C_DestroyObject, not with the service under test."""
        ref = self.ctx.ref
        self.value(self.ctx.service.login(ref, Secret(USER_PIN, "test")))

        def wipe(m: LoadedModule) -> None:
            handle = session_handle(m.pkcs11_session(ref))
            with m.operation("wipe the token", ref.slot_id):
                for obj in m.ck.find_objects(handle):
                    m.ck.destroy_object(handle, obj)

        self.run_job(wipe, "wipe the token")
        self.value(self.ctx.service.close_token(ref))

    def issue(self, pair: Pair, cn: str) -> x509.Certificate:
        public_key = serialization.load_der_public_key(pair.spki)
        assert isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        return local_ca.issue(self.ctx.ca_key, self.ctx.ca_cert, public_key, subject)

    def expect_refused(self, out: object, kind: type[E.CertDeskError]) -> None:
        assert isinstance(out, kind), f"expected {kind.__name__}, got {out!r}"
        self.ctx.stats[f"refused {kind.__name__}"] += 1

    # ---------------------------------------------------------------- key generation

    def _keygen(self, spec: str, label: str, obj_id: bytes | None, duplicate: bool = False) -> None:
        out = self.outcome(self.ctx.lifecycle.generate(self.ctx.ref, spec, label=label, obj_id=obj_id,
                                                       allow_duplicate=duplicate))
        self.model.session_open = True
        if not self.model.logged_in:
            self.expect_refused(out, E.NotLoggedInError)
            return
        if self.model.clashes(label, obj_id) and not duplicate:
            self.expect_refused(out, E.ConflictError)
            return
        assert not isinstance(out, E.CertDeskError), f"keygen failed: {out}"
        expected_id = obj_id if obj_id is not None else default_id(out.public_key_der)
        assert out.id == expected_id
        self.model.pairs.append(Pair(out.id, label, out.public_key_der))
        self.ctx.stats[f"keygen {spec}"] += 1

    @rule(label=st.sampled_from(LABELS), obj_id=st.none() | st.sampled_from(EXPLICIT_IDS), duplicate=st.booleans())
    def keygen_ec(self, label: str, obj_id: bytes | None, duplicate: bool) -> None:
        """A clashing label (or explicit ID) is refused unless confirmed; a confirmed duplicate gets only
        a label clash here (its ID is the key's own), as two keys with one ID cannot be told apart by
        anyone pairing by ID."""
        self._keygen("ec:prime256v1", label, obj_id, duplicate and obj_id is None)

    @precondition(lambda self: self.rsa_keys == 0)
    @rule(label=st.sampled_from(LABELS))
    def keygen_rsa(self, label: str) -> None:
        """RSA 2048 takes a while on SoftHSM2: at most one try per example."""
        self.rsa_keys += 1
        self._keygen("rsa:2048", label, None)

    # ---------------------------------------------------------------- certificates

    @precondition(lambda self: bool(self.model.pairs))
    @rule(pick=st.integers(min_value=0, max_value=7))
    def import_certificate(self, pick: int) -> None:
        pair = self.model.pairs[pick % len(self.model.pairs)]
        cert = self.issue(pair, f"{pair.label} certificate")
        out = self.outcome(self.ctx.lifecycle.import_certificates(self.ctx.ref, [cert]))
        self.model.session_open = True
        if not self.model.logged_in:
            self.expect_refused(out, E.NotLoggedInError)
            return
        assert not isinstance(out, E.CertDeskError), f"import failed: {out}"
        assert [(o.id, o.label) for o in out.written] == [(pair.key_id, pair.label)]
        assert out.key_id == pair.key_id and out.already_present == ()
        self.model.certs.append(Cert(pair.key_id, pair.label, pair.spki))
        self.ctx.stats["import"] += 1

    @precondition(lambda self: bool(self.model.pairs))
    @rule(pick=st.integers(min_value=0, max_value=7))
    def misfile_certificate(self, pick: int) -> None:
        """Another tool writes a key's certificate under a wrong ID and label (as ``pkcs11-tool
        --write-object --type cert --id ...`` would): a public object, so no login is needed."""
        pair = self.model.pairs[pick % len(self.model.pairs)]
        self.misfiled += 1
        wrong_id, wrong_label = bytes([0xF0, self.misfiled]), f"misfiled {self.misfiled}"
        cert = self.issue(pair, wrong_label)
        ref = self.ctx.ref

        def write(m: LoadedModule) -> None:
            with m.operation("write a certificate", ref.slot_id):
                write_certificate(m.pkcs11_session(ref), cert, label=wrong_label, obj_id=wrong_id)

        self.run_job(write, "write a mis-filed certificate")
        self.model.session_open = True
        self.model.certs.append(Cert(wrong_id, wrong_label, pair.spki))
        self.ctx.stats["misfile"] += 1

    @precondition(lambda self: bool(self.model.misfiled()))
    @rule()
    def doctor_fix(self) -> None:
        """The product's relabel: a certificate whose key is on the token gets that key's ID and label
        (tried only when there is something to fix, so that it happens often)."""
        out = self.outcome(self.ctx.lifecycle.doctor(self.ctx.ref, fix=True))
        self.model.session_open = True
        if not self.model.logged_in:
            self.expect_refused(out, E.NotLoggedInError)
            return
        assert not isinstance(out, E.CertDeskError), f"doctor failed: {out}"
        relabelled = self.model.misfiled()
        for c, owner in relabelled:
            c.key_id, c.label = owner.key_id, owner.label
        assert len(out.fixed) == len(relabelled), out.fixed
        assert not [f for f in out.findings if f.code == "certificate-id-mismatch"], out.findings
        self.ctx.stats["doctor"] += 1
        self.ctx.stats["doctor relabel"] += len(relabelled)

    # ---------------------------------------------------------------- delete

    @precondition(lambda self: bool(self.model.ids()))
    @rule(pick=st.integers(min_value=0, max_value=8))
    def delete(self, pick: int) -> None:
        ids = [*self.model.ids(), b"\xee\xee"]  # the last one is on no object
        obj_id = ids[pick % len(ids)]
        out = self.outcome(self.ctx.lifecycle.delete(self.ctx.ref, obj_id))
        self.model.session_open = True
        if not self.model.logged_in:
            self.expect_refused(out, E.NotLoggedInError)
            return
        if obj_id not in self.model.ids():
            self.expect_refused(out, E.InputError)
            return
        assert not isinstance(out, E.CertDeskError), f"delete failed: {out}"
        expected = len([p for p in self.model.pairs if p.key_id == obj_id]) * 2 + len(
            [c for c in self.model.certs if c.key_id == obj_id])
        assert len(out.deleted) == expected
        self.model.pairs = [p for p in self.model.pairs if p.key_id != obj_id]
        self.model.certs = [c for c in self.model.certs if c.key_id != obj_id]
        self.ctx.stats["delete"] += 1

    # ---------------------------------------------------------------- login

    @precondition(lambda self: not self.model.logged_in)  # logged in, the PIN is not asked: login_refused
    @rule()
    def login_right(self) -> None:
        out = self.value(self.ctx.service.login(self.ctx.ref, Secret(USER_PIN, "test")))
        assert out.logged_in_as == "user"
        self.model.session_open = self.model.logged_in = True
        self.model.pin_state = E.PinState.OK
        self.ctx.stats["login"] += 1

    @rule(pin=st.sampled_from((WRONG_PIN, SHORT_PIN)))
    def login_refused(self, pin: str) -> None:
        """A wrong PIN is tried and counted (COUNT_LOW); a too short one is refused before the token
        sees it (had it been tried, the token would report COUNT_LOW). Either is answered from the
        session when already logged in."""
        out = self.outcome(self.ctx.service.login(self.ctx.ref, Secret(pin, "test")))
        if self.model.logged_in:  # the token is not asked, no try is used
            assert not isinstance(out, E.CertDeskError), f"login while logged in failed: {out}"
            return
        if pin == SHORT_PIN:
            self.expect_refused(out, E.PinPolicyError)
            return
        self.model.session_open = True  # the login opened the service's session before C_Login
        self.expect_refused(out, E.PinIncorrectError)
        assert isinstance(out, E.PinIncorrectError) and out.state == E.PinState.COUNT_LOW
        self.model.pin_state = E.PinState.COUNT_LOW

    @rule(close=st.booleans())
    def logout(self, close: bool) -> None:
        """Log out (the service closes its session), or close the token (every session on the slot)."""
        if close:
            self.value(self.ctx.service.close_token(self.ctx.ref))
        else:
            assert self.value(self.ctx.service.logout(self.ctx.ref)).logged_in_as is None
        self.model.session_open = self.model.logged_in = False

    # ---------------------------------------------------------------- the thread guard

    @precondition(lambda self: not self.smuggled)
    @rule()
    def smuggled_module_refuses_the_test_thread(self) -> None:
        """Once per example (it proves the guard, and changes nothing)."""
        self.smuggled = True
        smuggled: list[LoadedModule] = []
        self.run_job(smuggled.append, "smuggle the module out")
        m, ref = smuggled[0], self.ctx.ref
        before = dict(self.ctx.observer.calls)
        for call in (lambda: m.token_info(ref.slot_id), lambda: m.list_objects(ref), lambda: m.ck,
                     lambda: m.pkcs11_session(ref), lambda: m.login(ref, Secret(WRONG_PIN, "test"))):
            with pytest.raises(E.WrongThreadError):
                call()
        assert threading.get_ident() not in self.ctx.observer.calls
        assert self.ctx.observer.calls == before
        self.ctx.stats["off-thread refusals"] += 5

    # ---------------------------------------------------------------- invariants

    @invariant()
    def only_the_worker_called_pkcs11(self) -> None:
        calls = self.ctx.observer.calls
        strays = {self.ctx.observer.names.get(t, str(t)): n for t, n in calls.items() if t != self.ctx.worker_ident}
        assert not strays, f"PKCS#11 calls off the worker thread: {strays}"
        assert calls.get(self.ctx.worker_ident, 0) > 0, "the observer saw no PKCS#11 call at all"
        assert not self.ctx.wrong_thread, self.ctx.wrong_thread

    @invariant()
    def sessions_logins_pin_state_and_listing_match_the_model(self) -> None:
        ref = self.ctx.ref

        def probe(m: LoadedModule) -> tuple[int, tuple[tuple[int, int, int], ...]]:
            """(high-water handle, (handle, slot, state) of every open session but the probe itself)."""
            session = m.slot(ref.slot_id).get_token().open()
            try:
                high = session_handle(session)
                found = []
                for handle in range(1, high):
                    info = m.ck.session_info(handle)
                    if info is not None:
                        found.append((handle, info[0], info[1]))
                return high, tuple(found)
            finally:
                session.close()

        high, sessions = self.run_job(probe, "count the sessions")
        self.ctx.max_handle = max(self.ctx.max_handle, high)
        states = [state for _h, slot, state in sessions if slot == ref.slot_id]
        assert len(sessions) == len(states), f"sessions on another slot: {sessions}"
        if self.model.session_open:
            wanted = CKS_RW_USER_FUNCTIONS if self.model.logged_in else CKS_RW_PUBLIC_SESSION
            assert states == [wanted], f"expected one session in state {wanted}, found {sessions}"
        else:
            assert states == [], f"expected no session, found {sessions}"

        info = self.value(self.ctx.service.token_info(ref))
        assert info.user_pin == self.model.pin_state
        assert info.sessions is None or info.sessions == len(states)
        assert self.value(self.ctx.service.logged_in_as(ref)) == ("user" if self.model.logged_in else None)

        listing = self.value(self.ctx.service.list_objects(ref))
        self.model.session_open = True  # a listing needs a session: the service keeps it
        assert listing.logged_in == self.model.logged_in
        assert listed_rows(listing) == self.model.rows(logged_in=self.model.logged_in)


def test_token_services_keep_their_model(softhsm: SoftHsm, token: str, service: TokenService) -> None:
    assert service.pool.loaded() == [], "the worker must start after the observer is installed"
    observer = PkcsCallObserver()
    observer.install()
    try:
        ref = service.find_token(TokenSelector(label=token), [softhsm.module])
        worker = service.pool.worker(ref.module).thread
        assert worker.name == "pkcs11:libsofthsm2.so"
        ca_key, ca_cert = local_ca.make_root(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Stateful CA")]))
        ctx = Context(service, LifecycleService(service), ref, observer, worker.ident or 0, ca_key, ca_cert,
                      softhsm)
        TokenMachine.ctx = ctx
        run_state_machine_as_test(TokenMachine, settings=settings(
            max_examples=30, stateful_step_count=20, deadline=None, derandomize=True, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    finally:
        observer.remove()
    print(f"\nstateful: {dict(sorted(ctx.stats.items()))}; highest handle {ctx.max_handle}; "
          f"PKCS#11 entries seen on the worker: {observer.calls.get(ctx.worker_ident, 0)}")
    # the rules that matter were reached, not only the refusals
    for needed in ("keygen ec:prime256v1", "keygen rsa:2048", "import", "misfile", "doctor relabel", "delete",
                   "login", "refused NotLoggedInError", "refused ConflictError", "refused PinIncorrectError",
                   "refused PinPolicyError", "off-thread refusals", "pkcs11-tool checks"):
        assert ctx.stats[needed] > 0, f"no example reached {needed!r}: {dict(ctx.stats)}"
