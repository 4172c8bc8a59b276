"""Names and display of PKCS#11 attribute values (pure functions, no token calls)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from pkcs11 import Attribute

from cert_desk.pkcs11 import constants as C

CKA_PUBLIC_KEY_INFO = 0x129
CKA_CERTIFICATE_CATEGORY = 0x87

_ATTR_NAMES: dict[int, str] = {
    **{int(a): "CKA_" + str(a.name) for a in Attribute},
    CKA_PUBLIC_KEY_INFO: "CKA_PUBLIC_KEY_INFO",
    CKA_CERTIFICATE_CATEGORY: "CKA_CERTIFICATE_CATEGORY",
}


def attribute_name(key: int) -> str:
    """``CKA_LABEL`` for 3; ``CKA_0x...`` for vendor attributes."""
    return _ATTR_NAMES.get(key) or f"CKA_{key:#x}"


_CKA_VALUE = int(Attribute.VALUE)
_DISPLAY_TABLES: dict[int, Callable[[int], str]] = {
    int(Attribute.CLASS): lambda v: C.OBJECT_CLASS_WORDS.get(v, f"{v:#x}"),
    int(Attribute.KEY_TYPE): C.key_type_name,
    int(Attribute.CERTIFICATE_TYPE): lambda v: C.CERTIFICATE_TYPE_NAMES.get(v, f"{v:#x}"),
    int(Attribute.KEY_GEN_MECHANISM): lambda v: "unavailable" if v == C.CK_UNAVAILABLE_INFORMATION
    else C.mechanism_name(v),
}


def attribute_text(key: int, value: Any) -> str:
    """``true``, ``RSA``, ``0100``, ``(812 bytes) 3082...``: a value as the details panel shows it."""
    kind = type(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is bytes:
        if not value:
            return "(empty)"
        if key == _CKA_VALUE or len(value) > 64:
            return f"({len(value)} bytes) {value[:32].hex()}{'...' if len(value) > 32 else ''}"
        return str(value.hex())
    if kind is int:
        table = _DISPLAY_TABLES.get(key)
        return table(value) if table is not None else str(value)
    if kind is str:
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def attribute_json(value: Any) -> Any:
    """A JSON value: bools, ints and text as they are, bytes as hex, dates as ISO 8601."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, date):
        return value.isoformat()
    return value
