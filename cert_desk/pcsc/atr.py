"""Answer-to-Reset parsing (ISO/IEC 7816-3, section 8), pure Python.

Gives the convention, the protocols the card offers (T=0, T=1, ...), the historical bytes
and whether the check byte TCK is right. A malformed ATR is still described as far as it
goes, with what is wrong in ``problems``: a card's ATR comes from the card, and cert-desk
shows it rather than failing.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_ATR = 33  # ISO 7816-3: at most 32 bytes after TS


@dataclass(frozen=True)
class AtrInfo:
    """What an ATR says.

    Attributes:
        raw: The ATR bytes.
        convention: ``direct`` (TS 3B), ``inverse`` (TS 3F) or ``unknown``.
        protocols: The protocols offered, e.g. (0, 1) for T=0 and T=1; T=0 when none is named.
        historical: The historical bytes (where card makers put names and versions).
        tck_ok: The check byte is right (``None`` when the ATR needs none, T=0 only).
        problems: What is malformed, in words (empty for a good ATR).
    """

    raw: bytes
    convention: str
    protocols: tuple[int, ...]
    historical: bytes
    tck_ok: bool | None
    problems: tuple[str, ...] = ()

    @property
    def hex(self) -> str:
        return self.raw.hex(" ").upper()

    def protocol_words(self) -> str:
        return ", ".join(f"T={p}" for p in self.protocols) if self.protocols else "unknown"

    def historical_text(self) -> str:
        """The historical bytes, with their printable ASCII runs shown (many cards spell their name)."""
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in self.historical)
        return f"{self.historical.hex(' ').upper()}  ({text})" if self.historical else "(none)"


def parse_atr(atr: bytes) -> AtrInfo:
    """Parse an ATR; never raises."""
    problems: list[str] = []
    if not atr:
        return AtrInfo(b"", "unknown", (), b"", None, ("the ATR is empty",))
    if len(atr) > MAX_ATR:
        problems.append(f"the ATR has {len(atr)} bytes; ISO 7816-3 allows at most {MAX_ATR}")
    convention = {0x3B: "direct", 0x3F: "inverse"}.get(atr[0], "unknown")
    if convention == "unknown":
        problems.append(f"TS is {atr[0]:02X}, not 3B or 3F")
    if len(atr) < 2:
        return AtrInfo(bytes(atr), convention, (0,), b"", None, (*problems, "the ATR ends after TS"))
    t0 = atr[1]
    n_hist = t0 & 0x0F
    y = t0 >> 4
    i = 2
    protocols: list[int] = []
    first_td = True
    truncated = False
    while True:
        for mask in (0x1, 0x2, 0x4):  # TA, TB, TC
            if y & mask:
                if i >= len(atr):
                    truncated = True
                    break
                i += 1
        if truncated:
            break
        if not y & 0x8:  # no TD: no more interface bytes
            break
        if i >= len(atr):
            truncated = True
            break
        td = atr[i]
        i += 1
        proto = td & 0x0F
        if first_td or proto not in protocols:
            protocols.append(proto)
        first_td = False
        y = td >> 4
    if truncated:
        problems.append("the ATR ends inside its interface bytes")
        return AtrInfo(bytes(atr), convention, tuple(protocols) or (0,), b"", None, tuple(problems))
    historical = bytes(atr[i:i + n_hist])
    if len(historical) < n_hist:
        problems.append(f"T0 announces {n_hist} historical bytes, the ATR has {len(historical)}")
    i += n_hist
    needs_tck = any(p != 0 for p in protocols)
    tck_ok: bool | None = None
    if needs_tck:
        if i >= len(atr):
            problems.append("the check byte TCK is missing")
            tck_ok = False
        else:
            x = 0
            for b in atr[1:i + 1]:
                x ^= b
            tck_ok = x == 0
            if not tck_ok:
                problems.append("the check byte TCK is wrong")
            i += 1
    if i < len(atr):
        problems.append(f"{len(atr) - i} byte(s) after the end of the ATR")
    return AtrInfo(bytes(atr), convention, tuple(protocols) or (0,), historical, tck_ok, tuple(problems))


def parse_atr_hex(text: str) -> bytes:
    """``3B:95:13 ...`` or ``3b9513...`` to bytes.

    Raises:
        ValueError: not hex.
    """
    cleaned = text.replace(":", "").replace(" ", "").replace("-", "")
    return bytes.fromhex(cleaned)
