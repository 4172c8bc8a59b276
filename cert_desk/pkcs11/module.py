"""One loaded PKCS#11 module, its sessions and its login state, bound to one thread.

python-pkcs11 calls ``C_Initialize`` without ``CKF_OS_LOCKING_OK`` and releases the GIL
in every call; OpenSC and SoftHSM2 then do no locking of their own. So every call into a
module must come from one thread. :class:`LoadedModule` is created on its module's
worker thread (:mod:`cert_desk.services.worker`) and refuses (``WrongThreadError``) to be
used from any other; it hands out only frozen dataclasses.

Sessions: at most one per token, opened on first use (read/write unless the token is
write-protected). Logging in happens on that session with ``C_Login`` through ctypes,
so a wrong PIN leaves nothing behind (python-pkcs11's ``Token.open(user_pin=...)`` would
leak the session it opened). PKCS#11 login state belongs to the application and
token, and ends when the token's last session closes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pkcs11
import pkcs11.exceptions as p11x

from cert_desk import errors as E
from cert_desk.models import (
    LibraryInfo,
    LoginResult,
    MechanismInfo,
    ObjectListing,
    SlotInfo,
    SlotReport,
    TokenInfo,
    TokenRef,
    TokenSelector,
)
from cert_desk.pkcs11 import constants as C
from cert_desk.pkcs11.ck import CkError, CkFunctions, NoFunctionListError, RawSlotInfo, RawTokenInfo
from cert_desk.pkcs11.objects import ObjectReader, TolerantAttributeMapper, group_objects
from cert_desk.pkcs11.translate import REMOVED_CODES, ckr_of, is_pkcs11_failure, module_init_error, translate
from cert_desk.secrets import Secret

log = logging.getLogger(__name__)


class ThreadGuard:
    """Remembers the thread that created it; :meth:`check` raises on any other."""

    def __init__(self) -> None:
        self.ident = threading.get_ident()
        self.name = threading.current_thread().name

    def check(self, what: str) -> None:
        if threading.get_ident() != self.ident:
            raise E.WrongThreadError(
                f"{what} must run on thread {self.name!r}, not on {threading.current_thread().name!r}"
            )


def session_handle(session: pkcs11.Session) -> int:
    """The CK_SESSION_HANDLE of a python-pkcs11 session (its type stubs do not declare it)."""
    return int(session.handle)  # type: ignore[attr-defined]


def _version(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def _counter(value: int) -> int | None:
    return None if value == C.CK_UNAVAILABLE_INFORMATION else value


def pin_states(flags: int) -> tuple[E.PinState, E.PinState]:
    """(user PIN state, SO PIN state) from CK_TOKEN_INFO flags, most severe first."""
    if not flags & C.CKF_TOKEN_INITIALIZED:
        return E.PinState.NOT_INITIALIZED, E.PinState.NOT_INITIALIZED

    def one(locked: int, final: int, low: int, change: int) -> E.PinState:
        if flags & locked:
            return E.PinState.LOCKED
        if flags & final:
            return E.PinState.FINAL_TRY
        if flags & low:
            return E.PinState.COUNT_LOW
        if flags & change:
            return E.PinState.TO_BE_CHANGED
        return E.PinState.OK

    user = one(C.CKF_USER_PIN_LOCKED, C.CKF_USER_PIN_FINAL_TRY, C.CKF_USER_PIN_COUNT_LOW,
               C.CKF_USER_PIN_TO_BE_CHANGED)
    if not flags & C.CKF_USER_PIN_INITIALIZED:
        user = E.PinState.NOT_INITIALIZED
    so = one(C.CKF_SO_PIN_LOCKED, C.CKF_SO_PIN_FINAL_TRY, C.CKF_SO_PIN_COUNT_LOW, C.CKF_SO_PIN_TO_BE_CHANGED)
    return user, so


#: How long a slot that failed C_GetSlotInfo stays "not answering" while it claims to be empty.
_UNANSWERED_MEMORY_S = 3.0


def _slot_info(slot_id: int, raw: RawSlotInfo) -> SlotInfo:
    flags = raw.flags
    return SlotInfo(
        slot_id=slot_id,
        description=raw.description,
        manufacturer=raw.manufacturer,
        flags=flags,
        flag_words=C.flag_words(flags, C.SLOT_FLAG_WORDS),
        hardware_version=_version(raw.hardware_version),
        firmware_version=_version(raw.firmware_version),
        token_present=bool(flags & C.CKF_TOKEN_PRESENT),
        removable=bool(flags & C.CKF_REMOVABLE_DEVICE),
        hardware_slot=bool(flags & C.CKF_HW_SLOT),
    )


def token_info_from_raw(raw: RawTokenInfo) -> TokenInfo:
    user, so = pin_states(raw.flags)
    max_pin = _counter(raw.max_pin_len)
    return TokenInfo(
        label=raw.label,
        manufacturer=raw.manufacturer,
        model=raw.model,
        serial=raw.serial,
        flags=raw.flags,
        flag_words=C.flag_words(raw.flags, C.TOKEN_FLAG_WORDS),
        max_sessions=_counter(raw.max_sessions),
        sessions=_counter(raw.sessions),
        max_rw_sessions=_counter(raw.max_rw_sessions),
        rw_sessions=_counter(raw.rw_sessions),
        min_pin_len=_counter(raw.min_pin_len),
        max_pin_len=max_pin if max_pin else None,
        total_public_memory=_counter(raw.total_public_memory),
        free_public_memory=_counter(raw.free_public_memory),
        total_private_memory=_counter(raw.total_private_memory),
        free_private_memory=_counter(raw.free_private_memory),
        hardware_version=_version(raw.hardware_version),
        firmware_version=_version(raw.firmware_version),
        utc_time=raw.utc_time or None if raw.flags & C.CKF_CLOCK_ON_TOKEN else None,
        user_pin=user,
        so_pin=so,
        initialized=bool(raw.flags & C.CKF_TOKEN_INITIALIZED),
        login_required=bool(raw.flags & C.CKF_LOGIN_REQUIRED),
        protected_authentication_path=bool(raw.flags & C.CKF_PROTECTED_AUTHENTICATION_PATH),
        write_protected=bool(raw.flags & C.CKF_WRITE_PROTECTED),
    )


_CKS_USER = (1, 3)  # CKS_RO_USER_FUNCTIONS, CKS_RW_USER_FUNCTIONS
_CKS_SO = (4,)  # CKS_RW_SO_FUNCTIONS
_LOGGED_IN_STATES = (*_CKS_USER, *_CKS_SO)


@dataclass
class _TokenSession:
    ref: TokenRef
    session: pkcs11.Session
    rw: bool
    logged_in: str | None = None  # "user" | "so"


class LoadedModule:
    """A PKCS#11 library loaded and initialised in this process, usable from one thread only."""

    def __init__(self, path: str) -> None:
        """Load and initialise the module at ``path`` (a real path).

        Raises:
            ModuleNotFoundError_: no such file.
            NotAPkcs11ModuleError: not a loadable library, or no C_GetFunctionList.
            ModuleInitError: C_Initialize or C_GetInfo failed.
        """
        self._guard = ThreadGuard()
        self.path = path
        if not os.path.exists(path):
            raise E.ModuleNotFoundError_(f"The PKCS#11 module {path} does not exist.", path)
        if not os.path.isfile(path):
            raise E.NotAPkcs11ModuleError(f"{path} is not a file.", path)
        try:
            self._ck = CkFunctions(path)
        except NoFunctionListError as e:
            raise E.NotAPkcs11ModuleError(f"{path} is not a PKCS#11 module: {e}", path) from e
        try:
            self._lib = pkcs11.lib(path)
        except p11x.PKCS11Error as e:
            raise module_init_error(path, e) from e
        self._mapper = TolerantAttributeMapper()
        self._reader = ObjectReader(self._ck)
        self._sessions: dict[int, _TokenSession] = {}
        self._p11_slots: dict[int, pkcs11.Slot] = {}
        self._descriptions: dict[int, str] = {}
        self._unanswered: dict[int, tuple[float, E.TokenError]] = {}
        log.debug("loaded %s: %s / %s", path, self._lib.manufacturer_id, self._lib.library_description)

    # -------------------------------------------------------------- basics

    def _check(self, what: str) -> None:
        self._guard.check(f"{what} on {os.path.basename(self.path)}")

    @contextmanager
    def _op(self, operation: str, slot_id: int | None = None, *, so: bool = False) -> Iterator[None]:
        """Translate PKCS#11 failures; drop the slot's session when the token went away."""
        try:
            yield
        except E.CertDeskError as ours:
            if slot_id is not None and isinstance(ours, E.TokenRemovedError):
                self.forget_slot(slot_id)
            raise
        except (p11x.PKCS11Error, CkError) as e:
            translated = translate(e, operation, so=so)
            if slot_id is not None and (ckr_of(e) in REMOVED_CODES or isinstance(translated, E.TokenRemovedError)):
                self.forget_slot(slot_id)
            raise translated from e

    def library_info(self) -> LibraryInfo:
        self._check("library_info")
        return LibraryInfo(
            path=self.path,
            realpath=os.path.realpath(self.path),
            manufacturer=self._lib.manufacturer_id,
            description=self._lib.library_description,
            library_version=_version(self._lib.library_version),
            cryptoki_version=_version(self._lib.cryptoki_version),
        )

    def _slot_table(self) -> list[tuple[int, SlotInfo | E.TokenError]]:
        """Every slot with its fresh CK_SLOT_INFO, or the error that slot gave.

        One slot failing must not hide the others: OpenSC answers CKR_DEVICE_ERROR for a reader
        whose card another program holds exclusively, and python-pkcs11's ``get_slots`` would
        then fail for every slot of the module. ``pkcs11-tool -L`` lists the others, so do we.
        """
        with self._op("list the slots"):
            ids = self._ck.slot_list()
        table: list[tuple[int, SlotInfo | E.TokenError]] = []
        for slot_id in ids:
            try:
                with self._op("read the slot information", slot_id):
                    raw = self._ck.slot_info(slot_id)
            except E.TokenError as err:
                self._unanswered[slot_id] = (time.monotonic(), err)
                table.append((slot_id, err))
                continue
            info = _slot_info(slot_id, raw)
            recent = self._unanswered.get(slot_id)
            if recent is not None:
                if not info.token_present and time.monotonic() - recent[0] < _UNANSWERED_MEMORY_S:
                    # OpenSC caches "no token" for a second after a failed look at the reader;
                    # that is not news, and reporting it would make the slot flicker
                    table.append((slot_id, recent[1]))
                    continue
                del self._unanswered[slot_id]
            self._descriptions[slot_id] = info.description
            table.append((slot_id, info))
        return table

    def _slot(self, slot_id: int) -> pkcs11.Slot:
        """python-pkcs11's Slot object for ``slot_id`` (only to open sessions with).

        python-pkcs11 makes Slot objects only through ``get_slots``, which fails for every slot
        when one slot fails C_GetSlotInfo; they carry nothing but the ID and the function list,
        so the ones from the last good listing are kept and reused.
        """
        slot = self._p11_slots.get(slot_id)
        if slot is not None:
            return slot
        if slot_id not in {sid for sid, _ in self._slot_table()}:
            raise E.NoSuchSlotError(f"Slot {slot_id} does not exist on {os.path.basename(self.path)}.")
        try:
            slots = self._lib.get_slots()
        except p11x.PKCS11Error as e:
            failing = [sid for sid, info in self._slot_table() if isinstance(info, E.TokenError)]
            raise E.TokenError(
                f"Cannot open a session on slot {slot_id}: another slot of {os.path.basename(self.path)} "
                f"(slot {', '.join(map(str, failing)) or '?'}) does not answer, and python-pkcs11 needs "
                "every slot to answer before it opens any.", ckr_of(e), None, "open a session",
                "Close the program that holds the other reader (or unplug it), then try again.") from e
        self._p11_slots = {s.slot_id: s for s in slots}
        slot = self._p11_slots.get(slot_id)
        if slot is None:
            raise E.NoSuchSlotError(f"Slot {slot_id} does not exist on {os.path.basename(self.path)}.")
        return slot

    def token_info(self, slot_id: int) -> TokenInfo:
        """A fresh CK_TOKEN_INFO (PIN flags change after every login attempt)."""
        self._check("token_info")
        with self._op("read the token information", slot_id):
            return token_info_from_raw(self._ck.get_token_info(slot_id))

    def mechanisms(self, slot_id: int) -> tuple[MechanismInfo, ...]:
        self._check("mechanisms")
        slot = self._slot(slot_id)
        out = []
        with self._op("list the mechanisms", slot_id):
            codes = sorted(int(m) for m in slot.get_mechanisms())
            for code in codes:
                try:
                    info = slot.get_mechanism_info(code)  # type: ignore[arg-type]
                except p11x.PKCS11Error as e:
                    if is_pkcs11_failure(e) and ckr_of(e) in REMOVED_CODES:
                        raise
                    log.debug("C_GetMechanismInfo(%#x) failed: %s", code, type(e).__name__)
                    out.append(MechanismInfo(code, C.mechanism_name(code), 0, 0, 0, ("(no information)",)))
                    continue
                flags = int(info.flags)
                out.append(MechanismInfo(
                    code=code,
                    name=C.mechanism_name(code),
                    min_key_size=int(info.min_key_length or 0),
                    max_key_size=int(info.max_key_length or 0),
                    flags=flags,
                    flag_words=C.flag_words(flags, C.MECHANISM_FLAG_WORDS),
                ))
        return tuple(out)

    def slot_reports(self, *, with_mechanisms: bool = True) -> tuple[SlotReport, ...]:
        """Every slot with its token and mechanisms, as ``pkcs11-tool -L`` (and ``-M``) show them."""
        self._check("slot_reports")
        reports = []
        for slot_id, info in self._slot_table():
            if isinstance(info, E.TokenError):
                # pkcs11-tool -L: "(GetSlotInfo failed, CKR_DEVICE_ERROR)"
                described = self._descriptions.get(slot_id, "(the slot does not answer)")
                blank = SlotInfo(
                    slot_id=slot_id, description=described, manufacturer="", flags=0, flag_words=(),
                    hardware_version="", firmware_version="", token_present=False, removable=False,
                    hardware_slot=False)
                reports.append(SlotReport(module=self.path, slot=blank, token=None, unanswered=True,
                                          error=(f"the slot does not answer ({info.ckr_name or info.message}); "
                                                 "if another program holds its reader, close that program")))
                continue
            token: TokenInfo | None = None
            error: str | None = None
            mechs: tuple[MechanismInfo, ...] = ()
            if info.token_present:
                try:
                    token = self.token_info(slot_id)
                    if with_mechanisms:
                        mechs = self.mechanisms(slot_id)
                except E.CertDeskError as err:
                    error = err.message
            reports.append(SlotReport(module=self.path, slot=info, token=token, mechanisms=mechs, error=error))
        return tuple(reports)

    def poll(self) -> tuple[SlotReport, ...]:
        """The slots and tokens now (no mechanisms), and drop the sessions of tokens that are gone.

        Run about once a second on the worker (python-pkcs11's ``wait_for_slot_event`` loses
        the event it reports with a TypeError, and blocks the worker): a token that vanished,
        or was replaced in its slot, loses its session, its object handles and its login, so
        when it comes back it wants a fresh login.
        """
        self._check("poll")
        reports = self.slot_reports(with_mechanisms=False)
        by_slot = {r.slot.slot_id: r for r in reports}
        for slot_id, ts in list(self._sessions.items()):
            r = by_slot.get(slot_id)
            if r is not None and r.unanswered:
                continue  # the slot did not answer (busy reader): whether the token is still there is unknown
            t = r.token if r is not None else None
            if t is None or t.serial != ts.ref.serial or t.label != ts.ref.label:
                log.info("%s is gone: dropping its session", ts.ref.describe())
                self.forget_slot(slot_id)
        return reports

    # ----------------------------------------------------------- selection

    def resolve(self, selector: TokenSelector) -> TokenRef:
        """The one token ``selector`` names on this module.

        Raises:
            NoSuchSlotError, NoTokenError, AmbiguousTokenError, TokenNotInitializedError.
        """
        self._check("resolve")
        name = os.path.basename(self.path)
        if selector.slot_id is not None:
            found = dict(self._slot_table()).get(selector.slot_id)
            if found is None:
                raise E.NoSuchSlotError(f"Slot {selector.slot_id} does not exist on {name}.")
            if isinstance(found, E.TokenError):
                raise found
            if not found.token_present:
                raise E.NoTokenError(f"Slot {selector.slot_id} on {name} has no token in it.")
            info = self.token_info(selector.slot_id)
            if not info.initialized:
                raise E.TokenNotInitializedError(f"The token in slot {selector.slot_id} is not initialised.")
            if selector.label is not None and info.label != selector.label:
                raise E.NoTokenError(f"The token in slot {selector.slot_id} is {info.label!r}, not {selector.label!r}.")
            if selector.serial is not None and info.serial != selector.serial:
                raise E.NoTokenError(
                    f"The token in slot {selector.slot_id} has serial {info.serial}, not {selector.serial}.")
            return TokenRef(self.path, selector.slot_id, info.serial, info.label)
        candidates = self.candidates(selector)
        if not candidates:
            raise E.NoTokenError(f"No initialised token with {selector.describe()} on {name}.")
        if len(candidates) > 1:
            listed = "; ".join(f"{r.label!r} serial {r.serial} in slot {r.slot_id}" for r in candidates)
            raise E.AmbiguousTokenError(f"{len(candidates)} tokens match {selector.describe()} on {name}: {listed}.")
        return candidates[0]

    def candidates(self, selector: TokenSelector) -> list[TokenRef]:
        """Initialised tokens matching the label/serial of ``selector`` (slot is ignored)."""
        self._check("candidates")
        out = []
        for slot_id, slot in self._slot_table():
            if isinstance(slot, E.TokenError) or not slot.token_present:
                continue
            try:
                info = self.token_info(slot_id)
            except E.CertDeskError as err:
                log.debug("slot %s: %s", slot_id, err.message)
                continue
            if not info.initialized:
                continue
            if selector.label is not None and info.label != selector.label:
                continue
            if selector.serial is not None and info.serial != selector.serial:
                continue
            out.append(TokenRef(self.path, slot_id, info.serial, info.label))
        return out

    def verify(self, ref: TokenRef) -> TokenInfo:
        """Fresh token info, after checking the slot still holds the token ``ref`` names."""
        self._check("verify")
        try:
            with self._op("read the slot information", ref.slot_id):
                flags = self._ck.slot_flags(ref.slot_id)
            if not flags & C.CKF_TOKEN_PRESENT:
                self.forget_slot(ref.slot_id)
                raise E.TokenRemovedError(f"{ref.describe()} was removed.", None, None, "find the token")
            info = self.token_info(ref.slot_id)
        except E.NoSuchSlotError as err:
            self.forget_slot(ref.slot_id)
            raise E.TokenRemovedError(f"The reader of {ref.describe()} is gone.", None, None,
                                      "find the token") from err
        except E.TokenError as err:
            if err.ckr in (0xE0, 0x32):
                self.forget_slot(ref.slot_id)
                raise E.TokenRemovedError(f"{ref.describe()} was removed.", err.ckr, err.ckr_name,
                                          "find the token") from err
            raise
        if info.serial != ref.serial or info.label != ref.label:
            self.forget_slot(ref.slot_id)
            raise E.TokenRemovedError(
                f"{ref.describe()} was removed; slot {ref.slot_id} now holds token {info.label!r} "
                f"(serial {info.serial}).", None, None, "find the token")
        return info

    # -------------------------------------------------------------- sessions

    def _session_state(self, ts: _TokenSession) -> int | None:
        """CKS_* state of our session, or ``None`` when the module no longer knows it (the token
        was pulled and put back: the session and its login are gone, whatever we remembered)."""
        try:
            info = self._ck.session_info(session_handle(ts.session))
        except CkError:
            return None
        return info[1] if info is not None else None

    def _session(self, ref: TokenRef, info: TokenInfo) -> _TokenSession:
        ts = self._sessions.get(ref.slot_id)
        if ts is not None and ts.ref == ref:
            state = self._session_state(ts)
            if state is not None:
                if state not in _LOGGED_IN_STATES:
                    ts.logged_in = None
                return ts
            log.debug("the session on slot %s is gone; opening a new one", ref.slot_id)
        if ts is not None:
            self.forget_slot(ref.slot_id)
        slot = self._slot(ref.slot_id)
        rw = not info.write_protected
        with self._op("open a session", ref.slot_id):
            token = slot.get_token()
            session = token.open(rw=rw, attribute_mapper=self._mapper)
        ts = _TokenSession(ref, session, rw)
        self._sessions[ref.slot_id] = ts
        log.debug("opened %s session on slot %s", "rw" if rw else "ro", ref.slot_id)
        return ts

    def logged_in_as(self, ref: TokenRef) -> str | None:
        self._check("logged_in_as")
        ts = self._sessions.get(ref.slot_id)
        return ts.logged_in if ts is not None and ts.ref == ref else None

    def login(self, ref: TokenRef, pin: Secret | None, *, so: bool = False,
              allow_final_try: bool = False) -> LoginResult:
        """Log in as user (or SO) with ``pin``; ``pin=None`` uses the PIN pad.

        PIN state and length are checked against the token's fresh info before C_Login:
        a locked PIN is never tried, a PIN of the wrong length never reaches the token,
        and the final try needs ``allow_final_try``. After a refused PIN the token info
        is read again and the error says what the token now reports.
        """
        self._check("login")
        who = "SO PIN" if so else "PIN"
        info = self.verify(ref)
        state = info.so_pin if so else info.user_pin
        wanted = "so" if so else "user"
        ts = self._sessions.get(ref.slot_id)
        if ts is not None and ts.ref == ref and ts.logged_in == wanted:
            session_state = self._session_state(ts)
            if session_state in (_CKS_SO if so else _CKS_USER):
                return LoginResult(info, wanted)
            ts.logged_in = None  # the token forgot the login (removed and re-inserted): log in again
        if state == E.PinState.LOCKED:
            raise E.PinLockedError(f"The {who} of {ref.describe()} is locked; no login was tried.", so=so)
        if state == E.PinState.NOT_INITIALIZED and not so:
            raise E.PinError(f"{ref.describe()} has no user PIN yet.", so=False,
                             hint="Set it with the SO PIN: cert-desk pin unblock, or Unblock PIN… (Devices).")
        if pin is None:
            if not info.protected_authentication_path:
                raise E.PinRequiredError(f"A {who} is needed to log in to {ref.describe()}.", so=so)
        else:
            check_pin_length(pin, info, so=so)
        if state == E.PinState.FINAL_TRY and not allow_final_try:
            raise E.PinFinalTryError(f"The {who} of {ref.describe()} has one try left.", so=so)
        ts = self._session(ref, info)
        if ts.logged_in is not None:
            self._logout(ts)
        user_type = C.CKU_SO if so else C.CKU_USER
        try:
            with self._op("log in", ref.slot_id, so=so):
                try:
                    self._ck.login(session_handle(ts.session), user_type, pin.reveal().encode("utf-8") if pin else None)
                except CkError as e:
                    if e.ckr != 0x100:  # CKR_USER_ALREADY_LOGGED_IN: someone in this process already did
                        raise
        except (E.PinIncorrectError, E.PinLockedError) as err:
            raise self._after_refusal(ref, err, so) from err
        ts.logged_in = wanted
        log.info("logged in to %s as %s", ref.describe(), wanted)
        return LoginResult(self.token_info(ref.slot_id), wanted)

    def _after_refusal(self, ref: TokenRef, err: E.PinError, so: bool) -> E.PinError:
        who = "SO PIN" if so else "PIN"
        try:
            fresh = self.token_info(ref.slot_id)
        except E.CertDeskError:
            return err
        state = fresh.so_pin if so else fresh.user_pin
        if isinstance(err, E.PinLockedError) or state == E.PinState.LOCKED:
            return E.PinLockedError(f"Wrong {who}: the {who} of {ref.describe()} is now locked.", so=so)
        attempts = 1 if state == E.PinState.FINAL_TRY else None
        if state == E.PinState.FINAL_TRY:
            text = f"Wrong {who}. One try is left: one more wrong {who} locks the token."
        elif state == E.PinState.COUNT_LOW:
            text = f"Wrong {who}. The token reports that few tries are left."
        else:
            text = f"Wrong {who}."
        return E.PinIncorrectError(text, state, attempts, so=so,
                                   hint="The token counted one wrong try. Check the PIN before you try again.")

    def _logout(self, ts: _TokenSession) -> None:
        try:
            self._ck.logout(session_handle(ts.session))
        except CkError as e:
            log.debug("C_Logout: %s", e)
        ts.logged_in = None

    def logout(self, ref: TokenRef) -> LoginResult:
        self._check("logout")
        ts = self._sessions.get(ref.slot_id)
        if ts is not None:
            self._logout(ts)
            self._close(ts)
            del self._sessions[ref.slot_id]
        return LoginResult(self.verify(ref), None)

    def _close(self, ts: _TokenSession) -> None:
        try:
            self._ck.close_session(session_handle(ts.session))
        except CkError as e:  # the token may be gone; never hide the real error behind this one
            log.debug("C_CloseSession after %s: %s", ts.ref.describe(), e)

    def forget_slot(self, slot_id: int) -> None:
        """Drop every session (and so every object handle and login) on ``slot_id``."""
        self._check("forget_slot")
        ts = self._sessions.pop(slot_id, None)
        if ts is not None:
            self._close(ts)
        try:
            self._ck.close_all_sessions(slot_id)
        except CkError as e:
            log.debug("C_CloseAllSessions(%s): %s", slot_id, e)

    def close_all(self) -> None:
        self._check("close_all")
        for slot_id in list(self._sessions):
            ts = self._sessions.pop(slot_id)
            if ts.logged_in:
                self._logout(ts)
            self._close(ts)

    def finalize(self) -> None:
        """Close every session and C_Finalize (the library stays loaded; a new LoadedModule re-initialises)."""
        self._check("finalize")
        self.close_all()
        try:
            self._lib.finalize()
        except p11x.PKCS11Error as e:
            log.debug("C_Finalize: %s", e)

    # --------------------------------------------------------------- objects

    def list_objects(self, ref: TokenRef) -> ObjectListing:
        self._check("list_objects")
        info = self.verify(ref)
        ts = self._session(ref, info)
        with self._op("list the objects", ref.slot_id):
            objects = self._reader.read(session_handle(ts.session), info, ref.slot_id)
        groups, warnings = group_objects(objects)
        return ObjectListing(
            token=ref, token_info=info, logged_in=ts.logged_in is not None,
            objects=objects, groups=groups, warnings=warnings,
        )

    # ------------------------------------------------ for the service layer

    def pkcs11_session(self, ref: TokenRef) -> pkcs11.Session:
        """The python-pkcs11 session for ``ref`` (worker-thread code only; never let it escape)."""
        self._check("pkcs11_session")
        return self._session(ref, self.verify(ref)).session

    @property
    def attribute_calls(self) -> int:
        """C_GetAttributeValue calls made by object listings so far."""
        self._check("attribute_calls")
        return self._reader.calls

    @property
    def ck(self) -> CkFunctions:
        self._check("ck")
        return self._ck

    def slot(self, slot_id: int) -> pkcs11.Slot:
        self._check("slot")
        return self._slot(slot_id)

    @contextmanager
    def operation(self, operation: str, slot_id: int | None = None, *, so: bool = False) -> Iterator[None]:
        """Run PKCS#11 calls with the module's error translation (for service jobs)."""
        self._check("operation")
        with self._op(operation, slot_id, so=so):
            yield


def check_pin_length(pin: Secret, info: TokenInfo, *, so: bool = False) -> None:
    """Refuse a PIN outside the token's length limits before the token sees it (bytes, as PKCS#11 counts).

    A SmartCard-HSM's SO PIN is always 16 hex digits, while OpenSC reports the user PIN's limits
    (6-15) for the token: its SO PIN is checked by the device's own rule instead.
    """
    if so:
        from cert_desk.pkcs11 import schsm

        if schsm.is_smartcard_hsm(info, None):
            schsm.check_so_pin(pin)
            return
    who = "SO PIN" if so else "PIN"
    n = len(pin.reveal().encode("utf-8"))
    lo, hi = info.min_pin_len, info.max_pin_len
    if lo is not None and n < lo:
        raise E.PinPolicyError(
            f"The {who} is too short: {info.label!r} needs at least {lo} characters"
            + (f" (at most {hi})." if hi else "."), so=so,
            hint="Nothing was sent to the token, so no try was used.")
    if hi is not None and n > hi:
        raise E.PinPolicyError(
            f"The {who} is too long: {info.label!r} takes at most {hi} characters.", so=so,
            hint="Nothing was sent to the token, so no try was used.")
