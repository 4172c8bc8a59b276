"""Parsers for the reference tools' output (OpenSC's pkcs11-tool), used by the parity tests."""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADERS = (
    ("Private Key Object", "private_key"),
    ("Public Key Object", "public_key"),
    ("Secret Key Object", "secret_key"),
    ("Certificate Object", "certificate"),
    ("Data object", "data"),
    ("Profile object", "profile"),
)


@dataclass(frozen=True, order=True)
class RefObject:
    cls: str
    label: str
    id: str


def parse_objects(text: str) -> list[RefObject]:
    """``pkcs11-tool -O`` output as (class, label, id hex) per object."""
    out: list[RefObject] = []
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if line and not line[0].isspace():
            cls = next((name for prefix, name in _HEADERS if line.startswith(prefix)), None)
            if current is not None:
                out.append(RefObject(current["cls"], current.get("label", ""), current.get("id", "")))
            current = {"cls": cls} if cls else None
            continue
        if current is None:
            continue
        m = re.match(r"\s+(label|ID):\s*(.*)$", line)
        if m:
            value = m.group(2).strip()
            if m.group(1) == "label":
                if len(value) >= 2 and value[0] == value[-1] == "'":
                    value = value[1:-1]
                current["label"] = value
            else:
                current["id"] = value.lower()
    if current is not None:
        out.append(RefObject(current["cls"], current.get("label", ""), current.get("id", "")))
    return out


@dataclass(frozen=True)
class RefToken:
    slot_id: int
    label: str
    manufacturer: str
    model: str
    serial: str
    flags: frozenset[str]
    pin_min: int
    pin_max: int


def parse_slots(text: str) -> list[RefToken]:
    """``pkcs11-tool -L`` output: the initialised tokens."""
    out = []
    for block in re.split(r"^(?=Slot \d+)", text, flags=re.M):
        m = re.match(r"Slot \d+ \((0x[0-9a-f]+)\)", block)
        if not m or "token label" not in block:
            continue

        def field(name: str, block: str = block) -> str:
            fm = re.search(rf"^\s+{name}\s*:\s*(.*)$", block, re.M)
            return fm.group(1).strip() if fm else ""

        lo, _, hi = field("pin min/max").partition("/")
        flags = frozenset(f.strip() for f in field("token flags").split(",") if f.strip()
                          and not f.strip().startswith("other flags"))
        out.append(RefToken(int(m.group(1), 16), field("token label"), field("token manufacturer"),
                            field("token model"), field("serial num"), flags, int(lo), int(hi)))
    return out


def parse_mechanisms(text: str) -> dict[str, tuple[int, int] | None]:
    """``pkcs11-tool -M``: mechanism name -> (min, max) key size, or None when not printed."""
    out: dict[str, tuple[int, int] | None] = {}
    for line in text.splitlines():
        m = re.match(r"\s+([A-Za-z0-9_-]+(?:-0x[0-9A-Fa-f]+)?)(?:, keySize=\{(\d+),(\d+)\})?", line)
        if m:
            out[m.group(1)] = (int(m.group(2)), int(m.group(3))) if m.group(2) else None
    return out
