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


class CK_SESSION_INFO(Structure):
    _fields_ = (
        ("slotID", CK_ULONG),
        ("state", CK_ULONG),
        ("flags", CK_ULONG),
        ("ulDeviceError", CK_ULONG),
    )


# CK_FUNCTION_LIST up to the last entry we use; the table is only read through a pointer,
# so the entries after C_Logout need not be declared.
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
)


class CK_FUNCTION_LIST(Structure):
    _fields_ = (("version", CK_VERSION), *((name, c_void_p) for name in _FUNCTION_NAMES))


_PROTOTYPES: dict[str, Any] = {
    "C_GetTokenInfo": CFUNCTYPE(CK_RV, CK_ULONG, POINTER(CK_TOKEN_INFO)),
    "C_GetSessionInfo": CFUNCTYPE(CK_RV, CK_ULONG, POINTER(CK_SESSION_INFO)),
    "C_CloseAllSessions": CFUNCTYPE(CK_RV, CK_ULONG),
    "C_CloseSession": CFUNCTYPE(CK_RV, CK_ULONG),
    "C_Login": CFUNCTYPE(CK_RV, CK_ULONG, CK_ULONG, c_void_p, CK_ULONG),
    "C_Logout": CFUNCTYPE(CK_RV, CK_ULONG),
    "C_InitToken": CFUNCTYPE(CK_RV, CK_ULONG, c_void_p, CK_ULONG, c_void_p),
    "C_InitPIN": CFUNCTYPE(CK_RV, CK_ULONG, c_void_p, CK_ULONG),
    "C_SetPIN": CFUNCTYPE(CK_RV, CK_ULONG, c_void_p, CK_ULONG, c_void_p, CK_ULONG),
}


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
