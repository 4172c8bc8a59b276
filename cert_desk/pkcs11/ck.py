"""The few PKCS#11 functions python-pkcs11 does not expose, called through ctypes.

python-pkcs11 0.10 has no C_Login on an existing session (only ``Token.open(user_pin=...)``,
which leaks the session when the PIN is wrong), no C_Logout without closing, no
C_CloseAllSessions, no C_GetSessionInfo, no C_InitToken, and its ``Token`` drops most of
CK_TOKEN_INFO (PIN min/max, session counts, memory, clock). These are reached here
through the *same* function list the module gave python-pkcs11: ``dlopen`` of a path
that is already loaded returns the loaded library, and ``C_GetFunctionList`` returns its
one static table. No second ``C_Initialize`` happens.

Every call here must run on the module's worker thread, like every python-pkcs11 call;
:class:`cert_desk.pkcs11.module.LoadedModule` is the only user and checks the thread.
ctypes releases the GIL during each call, as python-pkcs11 does.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Iterable, Sequence
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    byref,
    c_char,
    c_ubyte,
    c_ulong,
    c_void_p,
)
from dataclasses import dataclass
from typing import Any

from cert_desk.pkcs11.constants import ckr_name

log = logging.getLogger(__name__)

CK_ULONG = c_ulong
CK_RV = c_ulong


class CK_VERSION(Structure):
    _fields_ = (("major", c_ubyte), ("minor", c_ubyte))


class CK_TOKEN_INFO(Structure):
    _fields_ = (
        ("label", c_char * 32),
        ("manufacturerID", c_char * 32),
        ("model", c_char * 16),
        ("serialNumber", c_char * 16),
        ("flags", CK_ULONG),
        ("ulMaxSessionCount", CK_ULONG),
        ("ulSessionCount", CK_ULONG),
        ("ulMaxRwSessionCount", CK_ULONG),
        ("ulRwSessionCount", CK_ULONG),
        ("ulMaxPinLen", CK_ULONG),
        ("ulMinPinLen", CK_ULONG),
        ("ulTotalPublicMemory", CK_ULONG),
        ("ulFreePublicMemory", CK_ULONG),
        ("ulTotalPrivateMemory", CK_ULONG),
        ("ulFreePrivateMemory", CK_ULONG),
        ("hardwareVersion", CK_VERSION),
        ("firmwareVersion", CK_VERSION),
        ("utcTime", c_char * 16),
    )


class CK_SLOT_INFO(Structure):
    _fields_ = (
        ("slotDescription", c_char * 64),
        ("manufacturerID", c_char * 32),
        ("flags", CK_ULONG),
        ("hardwareVersion", CK_VERSION),
        ("firmwareVersion", CK_VERSION),
    )


class CK_SESSION_INFO(Structure):
    _fields_ = (
        ("slotID", CK_ULONG),
        ("state", CK_ULONG),
        ("flags", CK_ULONG),
        ("ulDeviceError", CK_ULONG),
    )


# CK_FUNCTION_LIST up to the last entry we use; the table is only read through a pointer,
# so the entries after C_Sign need not be declared.
_FUNCTION_NAMES = (
    "C_Initialize",
    "C_Finalize",
    "C_GetInfo",
    "C_GetFunctionList",
    "C_GetSlotList",
    "C_GetSlotInfo",
    "C_GetTokenInfo",
    "C_GetMechanismList",
    "C_GetMechanismInfo",
    "C_InitToken",
    "C_InitPIN",
    "C_SetPIN",
    "C_OpenSession",
    "C_CloseSession",
    "C_CloseAllSessions",
    "C_GetSessionInfo",
    "C_GetOperationState",
    "C_SetOperationState",
    "C_Login",
    "C_Logout",
    "C_CreateObject",
    "C_CopyObject",
    "C_DestroyObject",
    "C_GetObjectSize",
    "C_GetAttributeValue",
    "C_SetAttributeValue",
    "C_FindObjectsInit",
    "C_FindObjects",
    "C_FindObjectsFinal",
    "C_EncryptInit",
    "C_Encrypt",
    "C_EncryptUpdate",
    "C_EncryptFinal",
    "C_DecryptInit",
    "C_Decrypt",
    "C_DecryptUpdate",
    "C_DecryptFinal",
    "C_DigestInit",
    "C_Digest",
    "C_DigestUpdate",
    "C_DigestKey",
    "C_DigestFinal",
    "C_SignInit",
    "C_Sign",
)


class CK_ATTRIBUTE(Structure):
    _fields_ = (("type", CK_ULONG), ("pValue", c_void_p), ("ulValueLen", CK_ULONG))


class CK_MECHANISM(Structure):
    _fields_ = (("mechanism", CK_ULONG), ("pParameter", c_void_p), ("ulParameterLen", CK_ULONG))


class CK_FUNCTION_LIST(Structure):
    _fields_ = (("version", CK_VERSION), *((name, c_void_p) for name in _FUNCTION_NAMES))


_PROTOTYPES: dict[str, Any] = {
    "C_GetSlotList": CFUNCTYPE(CK_RV, c_ubyte, POINTER(CK_ULONG), POINTER(CK_ULONG)),
    "C_GetSlotInfo": CFUNCTYPE(CK_RV, CK_ULONG, POINTER(CK_SLOT_INFO)),
    "C_GetTokenInfo": CFUNCTYPE(CK_RV, CK_ULONG, POINTER(CK_TOKEN_INFO)),
    "C_GetSessionInfo": CFUNCTYPE(CK_RV, CK_ULONG, POINTER(CK_SESSION_INFO)),
    "C_CloseAllSessions": CFUNCTYPE(CK_RV, CK_ULONG),
    "C_CloseSession": CFUNCTYPE(CK_RV, CK_ULONG),
    "C_Login": CFUNCTYPE(CK_RV, CK_ULONG, CK_ULONG, c_void_p, CK_ULONG),
    "C_Logout": CFUNCTYPE(CK_RV, CK_ULONG),
    "C_InitToken": CFUNCTYPE(CK_RV, CK_ULONG, c_void_p, CK_ULONG, c_void_p),
    "C_InitPIN": CFUNCTYPE(CK_RV, CK_ULONG, c_void_p, CK_ULONG),
    "C_SetPIN": CFUNCTYPE(CK_RV, CK_ULONG, c_void_p, CK_ULONG, c_void_p, CK_ULONG),
    "C_GetAttributeValue": CFUNCTYPE(CK_RV, CK_ULONG, CK_ULONG, POINTER(CK_ATTRIBUTE), CK_ULONG),
    "C_FindObjectsInit": CFUNCTYPE(CK_RV, CK_ULONG, POINTER(CK_ATTRIBUTE), CK_ULONG),
    "C_FindObjects": CFUNCTYPE(CK_RV, CK_ULONG, POINTER(CK_ULONG), CK_ULONG, POINTER(CK_ULONG)),
    "C_FindObjectsFinal": CFUNCTYPE(CK_RV, CK_ULONG),
    "C_CreateObject": CFUNCTYPE(CK_RV, CK_ULONG, POINTER(CK_ATTRIBUTE), CK_ULONG, POINTER(CK_ULONG)),
    "C_DestroyObject": CFUNCTYPE(CK_RV, CK_ULONG, CK_ULONG),
    "C_SetAttributeValue": CFUNCTYPE(CK_RV, CK_ULONG, CK_ULONG, POINTER(CK_ATTRIBUTE), CK_ULONG),
    "C_SignInit": CFUNCTYPE(CK_RV, CK_ULONG, POINTER(CK_MECHANISM), CK_ULONG),
    "C_Sign": CFUNCTYPE(CK_RV, CK_ULONG, c_void_p, CK_ULONG, c_void_p, POINTER(CK_ULONG)),
}

CK_UNAVAILABLE = 0xFFFFFFFFFFFFFFFF if ctypes.sizeof(CK_ULONG) == 8 else 0xFFFFFFFF
CKR_ATTRIBUTE_SENSITIVE = 0x11
CKR_ATTRIBUTE_TYPE_INVALID = 0x12
CKR_BUFFER_TOO_SMALL = 0x150
_NOT_FATAL = (0, CKR_ATTRIBUTE_SENSITIVE, CKR_ATTRIBUTE_TYPE_INVALID)


class CkError(Exception):
    """A raw CKR code from a ctypes call; translated by :mod:`cert_desk.pkcs11.translate`.

    Attributes:
        ckr: The return value.
        function: The PKCS#11 function that returned it.
    """

    def __init__(self, ckr: int, function: str) -> None:
        self.ckr = ckr
        self.function = function
        super().__init__(f"{function} returned {ckr_name(ckr)}")


class NoFunctionListError(Exception):
    """The library has no C_GetFunctionList, or it failed."""


@dataclass(frozen=True)
class RawTokenInfo:
    """CK_TOKEN_INFO as Python values (strings unpadded, counters as the module gave them)."""

    label: str
    manufacturer: str
    model: str
    serial: str
    flags: int
    max_sessions: int
    sessions: int
    max_rw_sessions: int
    rw_sessions: int
    max_pin_len: int
    min_pin_len: int
    total_public_memory: int
    free_public_memory: int
    total_private_memory: int
    free_private_memory: int
    hardware_version: tuple[int, int]
    firmware_version: tuple[int, int]
    utc_time: str


@dataclass(frozen=True)
class RawSlotInfo:
    """CK_SLOT_INFO as Python values."""

    description: str
    manufacturer: str
    flags: int
    hardware_version: tuple[int, int]
    firmware_version: tuple[int, int]


def _text(raw: bytes) -> str:
    # Fixed-width, blank-padded UTF-8 fields; some modules pad with NULs instead.
    return raw.decode("utf-8", errors="replace").rstrip(" \x00")


class CkFunctions:
    """Typed access to one loaded module's function table."""

    def __init__(self, path: str) -> None:
        try:
            self._dll = ctypes.CDLL(path)
        except OSError as e:
            raise NoFunctionListError(str(e)) from e
        try:
            get_function_list = self._dll.C_GetFunctionList
        except AttributeError as e:
            raise NoFunctionListError(f"{path} does not export C_GetFunctionList") from e
        get_function_list.restype = CK_RV
        get_function_list.argtypes = (POINTER(POINTER(CK_FUNCTION_LIST)),)
        table = POINTER(CK_FUNCTION_LIST)()
        rv = get_function_list(byref(table))
        if rv != 0 or not table:
            raise NoFunctionListError(f"C_GetFunctionList returned {ckr_name(rv)}")
        self._table = table.contents
        self._funcs: dict[str, Any] = {}
        for name, proto in _PROTOTYPES.items():
            address = getattr(self._table, name)
            self._funcs[name] = proto(address) if address else None

    def _call(self, name: str, *args: Any) -> int:
        func = self._funcs[name]
        if func is None:
            return 0x54  # CKR_FUNCTION_NOT_SUPPORTED: the table has a NULL entry
        rv: int = func(*args)
        return rv

    def _check(self, name: str, *args: Any) -> None:
        rv = self._call(name, *args)
        if rv != 0:
            raise CkError(rv, name)

    def get_token_info(self, slot_id: int) -> RawTokenInfo:
        info = CK_TOKEN_INFO()
        self._check("C_GetTokenInfo", slot_id, byref(info))
        return RawTokenInfo(
            label=_text(info.label),
            manufacturer=_text(info.manufacturerID),
            model=_text(info.model),
            serial=_text(info.serialNumber),
            flags=int(info.flags),
            max_sessions=int(info.ulMaxSessionCount),
            sessions=int(info.ulSessionCount),
            max_rw_sessions=int(info.ulMaxRwSessionCount),
            rw_sessions=int(info.ulRwSessionCount),
            max_pin_len=int(info.ulMaxPinLen),
            min_pin_len=int(info.ulMinPinLen),
            total_public_memory=int(info.ulTotalPublicMemory),
            free_public_memory=int(info.ulFreePublicMemory),
            total_private_memory=int(info.ulTotalPrivateMemory),
            free_private_memory=int(info.ulFreePrivateMemory),
            hardware_version=(info.hardwareVersion.major, info.hardwareVersion.minor),
            firmware_version=(info.firmwareVersion.major, info.firmwareVersion.minor),
            utc_time=_text(info.utcTime),
        )

    def slot_list(self, token_present: bool = False) -> list[int]:
        """C_GetSlotList, retried while the list grows between the two calls (a reader plugged in)."""
        for _ in range(5):
            count = CK_ULONG(0)
            self._check("C_GetSlotList", 1 if token_present else 0, None, byref(count))
            if count.value == 0:
                return []
            ids = (CK_ULONG * count.value)()
            rv = self._call("C_GetSlotList", 1 if token_present else 0, ids, byref(count))
            if rv == CKR_BUFFER_TOO_SMALL:
                continue
            if rv != 0:
                raise CkError(rv, "C_GetSlotList")
            return [int(ids[i]) for i in range(count.value)]
        raise CkError(CKR_BUFFER_TOO_SMALL, "C_GetSlotList")

    def slot_info(self, slot_id: int) -> RawSlotInfo:
        """C_GetSlotInfo for one slot (python-pkcs11's ``get_slots`` fails for all when one fails)."""
        info = CK_SLOT_INFO()
        self._check("C_GetSlotInfo", slot_id, byref(info))
        return RawSlotInfo(
            description=_text(info.slotDescription),
            manufacturer=_text(info.manufacturerID),
            flags=int(info.flags),
            hardware_version=(info.hardwareVersion.major, info.hardwareVersion.minor),
            firmware_version=(info.firmwareVersion.major, info.firmwareVersion.minor),
        )

    def slot_flags(self, slot_id: int) -> int:
        """CK_SLOT_INFO.flags, fresh: OpenSC looks at the reader again (at most once a second) only when
        asked for slot information, so this is how a pulled card is noticed before a job trusts its caches."""
        info = CK_SLOT_INFO()
        self._check("C_GetSlotInfo", slot_id, byref(info))
        return int(info.flags)

    def session_info(self, handle: int) -> tuple[int, int, int] | None:
        """(slot ID, state, flags) of an open session, or ``None`` when the handle is not open."""
        info = CK_SESSION_INFO()
        rv = self._call("C_GetSessionInfo", handle, byref(info))
        if rv == 0xB3:  # CKR_SESSION_HANDLE_INVALID
            return None
        if rv != 0:
            raise CkError(rv, "C_GetSessionInfo")
        return int(info.slotID), int(info.state), int(info.flags)

    def close_session(self, handle: int) -> None:
        self._check("C_CloseSession", handle)

    def close_all_sessions(self, slot_id: int) -> None:
        self._check("C_CloseAllSessions", slot_id)

    def login(self, handle: int, user_type: int, pin: bytes | None) -> None:
        """C_Login; ``pin=None`` means the protected authentication path (PIN pad)."""
        if pin is None:
            self._check("C_Login", handle, user_type, None, 0)
            return
        buf = ctypes.create_string_buffer(pin, len(pin))
        try:
            self._check("C_Login", handle, user_type, ctypes.cast(buf, c_void_p), len(pin))
        finally:
            ctypes.memset(buf, 0, len(pin))

    def logout(self, handle: int) -> None:
        self._check("C_Logout", handle)

    def init_token(self, slot_id: int, so_pin: bytes, label: str) -> None:
        padded = label.encode("utf-8")
        if len(padded) > 32:
            raise ValueError("a token label is at most 32 bytes of UTF-8")
        label_buf = ctypes.create_string_buffer(padded.ljust(32, b" "), 32)
        pin_buf = ctypes.create_string_buffer(so_pin, len(so_pin))
        try:
            self._check(
                "C_InitToken", slot_id, ctypes.cast(pin_buf, c_void_p), len(so_pin),
                ctypes.cast(label_buf, c_void_p),
            )
        finally:
            ctypes.memset(pin_buf, 0, len(so_pin))

    def init_pin(self, handle: int, pin: bytes) -> None:
        buf = ctypes.create_string_buffer(pin, len(pin))
        try:
            self._check("C_InitPIN", handle, ctypes.cast(buf, c_void_p), len(pin))
        finally:
            ctypes.memset(buf, 0, len(pin))

    def find_objects(self, session: int, batch: int = 256, *, object_class: int | None = None) -> list[int]:
        """Every object handle the session can see, or those of one CKA_CLASS."""
        if object_class is None:
            self._check("C_FindObjectsInit", session, None, 0)
        else:
            value = CK_ULONG(object_class)
            tpl = (CK_ATTRIBUTE * 1)()
            tpl[0].type = 0  # CKA_CLASS
            tpl[0].pValue = ctypes.addressof(value)
            tpl[0].ulValueLen = ctypes.sizeof(value)
            self._check("C_FindObjectsInit", session, tpl, 1)
        handles: list[int] = []
        buf = (CK_ULONG * batch)()
        count = CK_ULONG()
        try:
            while True:
                self._check("C_FindObjects", session, buf, batch, byref(count))
                if count.value == 0:
                    break
                handles.extend(buf[: count.value])
        finally:
            rv = self._call("C_FindObjectsFinal", session)
            if rv != 0:
                log.debug("C_FindObjectsFinal: %s", ckr_name(rv))
        return handles

    def attribute_sizes(self, session: int, obj: int, types: tuple[int, ...]) -> dict[int, int]:
        """The sizes of the attributes ``obj`` has (one call; no value is read)."""
        tpl = (CK_ATTRIBUTE * len(types))()
        for i, t in enumerate(types):
            tpl[i].type = t
        rv = self._call("C_GetAttributeValue", session, obj, tpl, len(types))
        if rv not in _NOT_FATAL:
            raise CkError(rv, "C_GetAttributeValue")
        return {t: int(tpl[i].ulValueLen) for i, t in enumerate(types) if tpl[i].ulValueLen != CK_UNAVAILABLE}

    def read_attributes(self, session: int, obj: int, sizes: dict[int, int]) -> dict[int, bytes]:
        """The values of attributes whose sizes are known (one call)."""
        if not sizes:
            return {}
        items = list(sizes.items())
        tpl = (CK_ATTRIBUTE * len(items))()
        buffers = []
        for i, (t, n) in enumerate(items):
            b = ctypes.create_string_buffer(max(n, 1))
            buffers.append(b)
            tpl[i].type = t
            tpl[i].pValue = ctypes.addressof(b)
            tpl[i].ulValueLen = n
        rv = self._call("C_GetAttributeValue", session, obj, tpl, len(items))
        if rv not in _NOT_FATAL:
            raise CkError(rv, "C_GetAttributeValue")
        return {t: buffers[i].raw[: tpl[i].ulValueLen] for i, (t, _n) in enumerate(items)
                if tpl[i].ulValueLen != CK_UNAVAILABLE}

    @staticmethod
    def _template(values: Sequence[tuple[int, bytes]]) -> tuple[Any, list[Any]]:
        """A CK_ATTRIBUTE array for already-encoded values (and the buffers it points into)."""
        tpl = (CK_ATTRIBUTE * len(values))()
        buffers = []
        for i, (t, v) in enumerate(values):
            b = ctypes.create_string_buffer(v, max(len(v), 1))
            buffers.append(b)
            tpl[i].type = t
            tpl[i].pValue = ctypes.addressof(b)
            tpl[i].ulValueLen = len(v)
        return tpl, buffers

    def create_object(self, session: int, values: Sequence[tuple[int, bytes]]) -> int:
        """C_CreateObject from encoded attribute values (python-pkcs11's AttributeMapper encodes them)."""
        tpl, _buffers = self._template(values)
        handle = CK_ULONG()
        self._check("C_CreateObject", session, tpl, len(values), byref(handle))
        return int(handle.value)

    def destroy_object(self, session: int, obj: int) -> None:
        self._check("C_DestroyObject", session, obj)

    def set_attributes(self, session: int, obj: int, values: Sequence[tuple[int, bytes]]) -> None:
        tpl, _buffers = self._template(values)
        self._check("C_SetAttributeValue", session, obj, tpl, len(values))

    def sign(self, session: int, key: int, mechanism: int, data: bytes) -> bytes:
        """C_SignInit + C_Sign (single part), with the size probe the standard prescribes."""
        mech = CK_MECHANISM(mechanism, None, 0)
        self._check("C_SignInit", session, byref(mech), key)
        buf = ctypes.create_string_buffer(data, max(len(data), 1))
        size = CK_ULONG(0)
        rv = self._call("C_Sign", session, ctypes.cast(buf, c_void_p), len(data), None, byref(size))
        if rv != 0:
            raise CkError(rv, "C_Sign")
        out = ctypes.create_string_buffer(max(int(size.value), 1))
        self._check("C_Sign", session, ctypes.cast(buf, c_void_p), len(data), ctypes.cast(out, c_void_p),
                    byref(size))
        return out.raw[: size.value]

    def set_pin(self, handle: int, old: bytes, new: bytes) -> None:
        old_buf = ctypes.create_string_buffer(old, len(old))
        new_buf = ctypes.create_string_buffer(new, len(new))
        try:
            self._check(
                "C_SetPIN", handle, ctypes.cast(old_buf, c_void_p), len(old),
                ctypes.cast(new_buf, c_void_p), len(new),
            )
        finally:
            ctypes.memset(old_buf, 0, len(old))
            ctypes.memset(new_buf, 0, len(new))


class AttributeReader:
    """Batched C_GetAttributeValue with buffers allocated once: usually one call per object.

    PKCS#11 lets a caller pass buffers up front: the module fills every attribute that
    applies and fits, marks the others CK_UNAVAILABLE_INFORMATION, and processes the whole
    template even when it returns CKR_ATTRIBUTE_TYPE_INVALID or CKR_ATTRIBUTE_SENSITIVE.
    Only when it returns CKR_BUFFER_TOO_SMALL are the unavailable ones asked again (their
    sizes, then their values). So the usual cost is one call per object, where reading the
    sizes first, as python-pkcs11 does, always costs two.

    Args:
        ck: The module's functions.
        sizes: (attribute type, buffer size in bytes), in template order.

    Attributes:
        calls: C_GetAttributeValue calls made so far.
    """

    def __init__(self, ck: CkFunctions, sizes: tuple[tuple[int, int], ...]) -> None:
        self._ck = ck
        self._types = tuple(t for t, _ in sizes)
        self._sizes = tuple(n for _, n in sizes)
        self._offsets: list[int] = []
        total = 0
        for n in self._sizes:
            self._offsets.append(total)
            total += n
        self._buffer = ctypes.create_string_buffer(max(total, 1))
        self._template = (CK_ATTRIBUTE * len(sizes))()
        base = ctypes.addressof(self._buffer)
        for i, (t, off, n) in enumerate(zip(self._types, self._offsets, self._sizes, strict=True)):
            self._template[i].type = t
            self._template[i].pValue = base + off
            self._template[i].ulValueLen = n
        # Resetting every ulValueLen before a call is one memmove of this pristine copy, and
        # the lengths are read back through a memoryview: per-field ctypes access is slow.
        self._pristine = bytes(memoryview(self._template).cast("B"))
        self._words = memoryview(self._template).cast("B").cast("L" if ctypes.sizeof(CK_ULONG) == 8 else "I")
        self._stride = ctypes.sizeof(CK_ATTRIBUTE) // ctypes.sizeof(CK_ULONG)
        self.calls = 0
        self.last_rv = 0
        self.last_missing: frozenset[int] = frozenset()

    def read(self, session: int, obj: int) -> dict[int, bytes]:
        """The attributes ``obj`` has, of those this reader asks for (absent ones are left out).

        When the module returns CKR_BUFFER_TOO_SMALL, the values that did not fit are read
        again at their real size. But a module that also found an attribute the object lacks
        may return CKR_ATTRIBUTE_TYPE_INVALID instead (SoftHSM2 does): then an attribute that
        is too large looks the same as one that is absent. ``last_rv`` and ``last_missing``
        tell the caller, who knows which attributes the object should have, so it can
        :meth:`complete` them.

        Raises:
            CkError: the module failed in a way other than "not applicable" or "sensitive".
        """
        tpl = self._template
        ctypes.memmove(tpl, self._pristine, len(self._pristine))
        self.calls += 1
        rv = self._ck._call("C_GetAttributeValue", session, obj, tpl, len(self._sizes))
        if rv not in (*_NOT_FATAL, CKR_BUFFER_TOO_SMALL):
            raise CkError(rv, "C_GetAttributeValue")
        raw = self._buffer.raw
        lengths = self._words[2::self._stride]
        out: dict[int, bytes] = {}
        missing: list[int] = []
        for t, n, cap, off in zip(self._types, lengths, self._sizes, self._offsets, strict=True):
            if n > cap:  # CK_UNAVAILABLE_INFORMATION, or a module that wants more room
                missing.append(t)
            else:
                out[t] = raw[off:off + n]
        self.last_rv = rv
        self.last_missing = frozenset(missing)
        if rv == CKR_BUFFER_TOO_SMALL and missing:
            self.complete(session, obj, out, missing)
        return out

    def complete(self, session: int, obj: int, out: dict[int, bytes], wanted: Iterable[int]) -> None:
        """Read ``wanted`` attributes of unknown size into ``out`` (sizes first, then values)."""
        types = tuple(wanted)
        if not types:
            return
        self.calls += 1
        sizes = self._ck.attribute_sizes(session, obj, types)
        if sizes:
            self.calls += 1
            out.update(self._ck.read_attributes(session, obj, sizes))
