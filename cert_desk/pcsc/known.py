"""Names for known devices, from their ATR.

cert-desk's own table covers the tokens its users have (sources in the comments: the
pcsc-tools ATR list ``smartcard_list.txt`` by Ludovic Rousseau, OpenSC's card drivers, and
the vendors). When pcsc-tools is installed, its list (thousands of ATRs) names the rest.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PCSC_TOOLS_LIST = Path("/usr/share/pcsc/smartcard_list.txt")


@dataclass(frozen=True)
class KnownDevice:
    """A device an ATR names.

    Attributes:
        name: What users call it.
        kind: What it is for cert-desk (``HSM``, ``PIV``, ``OpenPGP``, ``FIDO/PIV``, ``test``).
        module_hint: The PKCS#11 module that serves it, in words.
        source: Where the ATR came from.
    """

    name: str
    kind: str
    module_hint: str
    source: str


_H = bytes.fromhex
_OPENSC = "OpenSC (opensc-pkcs11.so)"

# Exact ATRs.
_EXACT: dict[bytes, KnownDevice] = {
    # pcsc-tools smartcard_list.txt "Smartcard-HSM"; OpenSC card-sc-hsm.c
    _H("3BFE1800008131FE458031815448534D31738021408107FA"): KnownDevice(
        "SmartCard-HSM", "HSM", _OPENSC, "pcsc-tools smartcard_list.txt; OpenSC card-sc-hsm.c"),
    # pcsc-tools "SmartCard-HSM 4K USB-Token": the chip of the Nitrokey HSM 2
    _H("3BDE18FF8191FE1FC38031815448534D317380214081071C"): KnownDevice(
        "Nitrokey HSM 2 / SmartCard-HSM 4K", "HSM", _OPENSC,
        "pcsc-tools smartcard_list.txt; nitrokey.com (Nitrokey HSM 2 is a SmartCard-HSM 4K)"),
    # pcsc-tools "OpenPGP Card V2"
    _H("3BDA18FF81B1FE751F030031C573C001400090000C"): KnownDevice(
        "OpenPGP card v2", "OpenPGP", _OPENSC, "pcsc-tools smartcard_list.txt"),
    # pcsc-tools "OpenPGP Card V3"
    _H("3BDA18FF81B1FE751F030031F573C001600090001C"): KnownDevice(
        "OpenPGP card v3", "OpenPGP", _OPENSC, "pcsc-tools smartcard_list.txt"),
    # pcsc-tools "Gnuk OpenPGP Token"
    _H("3BDA11FF81B1FE551F0300318473800180009000E4"): KnownDevice(
        "Gnuk OpenPGP token", "OpenPGP", _OPENSC, "pcsc-tools smartcard_list.txt"),
    # pcsc-tools "Nitrokey Start (Openpgp USB)"
    _H("3BDA11FF81B1FE551F0300318473800180059000E1"): KnownDevice(
        "Nitrokey Start", "OpenPGP", _OPENSC, "pcsc-tools smartcard_list.txt"),
    # pcsc-tools "Gemalto IDPrime PIV Card2.0"
    _H("3B7D96000080318065B0831117E583009000"): KnownDevice(
        "Gemalto IDPrime PIV card", "PIV", _OPENSC, "pcsc-tools smartcard_list.txt"),
    # pcsc-tools "NIST demo PIV card"
    _H("3B8F80018073CC91CBF9A0000003080000100029"): KnownDevice(
        "PIV card (NIST demo)", "PIV", _OPENSC, "pcsc-tools smartcard_list.txt"),
    # jcecard (PyPI) OpenPGP card emulator, as cert-desk's tests run it behind vsmartcard's vpcd
    _H("3B88800100730000E00590000F"): KnownDevice(
        "jcecard OpenPGP card emulator", "test", _OPENSC, "jcecard 0.1 OpenPGPCard.get_atr()"),
    # vsmartcard vicc --type iso7816 (virtualsmartcard, used by the tests)
    _H("3B951381018073FF01000B"): KnownDevice(
        "vsmartcard virtual ISO 7816 card", "test", "none (a plain ISO 7816 card)", "vsmartcard vicc 0.8"),
}

# Byte strings that name a family wherever they appear in the ATR (in the historical bytes).
_CONTAINS: tuple[tuple[bytes, KnownDevice], ...] = (
    # "THSM1" with the SmartCard-HSM version bytes: every SmartCard-HSM / Nitrokey HSM ATR in pcsc-tools'
    # list (contact, contactless, 4K) carries it
    (_H("5448534D3173802140"), KnownDevice(
        "SmartCard-HSM / Nitrokey HSM", "HSM", _OPENSC, "pcsc-tools smartcard_list.txt (SmartCard-HSM entries)")),
    # ASCII "Nitrokey 3" (pcsc-tools "Nitrokey 3C NFC"); PIV and OpenPGP through OpenSC
    (b"Nitrokey 3", KnownDevice("Nitrokey 3", "FIDO/PIV/OpenPGP", _OPENSC, "pcsc-tools smartcard_list.txt")),
    # ASCII "YubiKey" (pcsc-tools "Yubico YubiKey 5 NFC"); its PIV applet: OpenSC or Yubico's libykcs11
    (b"YubiKey", KnownDevice("YubiKey (PIV)", "PIV", f"{_OPENSC} or Yubico's libykcs11.so",
                             "pcsc-tools smartcard_list.txt; developers.yubico.com")),
    # the PIV registered application provider ID (NIST SP 800-73) in the historical bytes
    (_H("A000000308"), KnownDevice("PIV card", "PIV", _OPENSC, "NIST SP 800-73-4 (PIV RID A0 00 00 03 08)")),
)


def identify(atr: bytes) -> KnownDevice | None:
    """The device an ATR belongs to, if cert-desk's table or pcsc-tools' list knows it."""
    if not atr:
        return None
    known = _EXACT.get(bytes(atr))
    if known is not None:
        return known
    for needle, device in _CONTAINS:
        if needle in atr:
            return device
    name = _pcsc_tools_name(atr.hex(" ").upper())
    if name:
        return KnownDevice(name, "other", "see the card's vendor", str(PCSC_TOOLS_LIST))
    return None


@functools.lru_cache(maxsize=1)
def _pcsc_tools_patterns() -> tuple[tuple[re.Pattern[str], str], ...]:
    """pcsc-tools' list: an ATR pattern line (regular expression), then its description lines."""
    try:
        text = PCSC_TOOLS_LIST.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    out: list[tuple[re.Pattern[str], str]] = []
    pattern: str | None = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            pattern = None
            continue
        if line.startswith("\t"):
            if pattern is not None:
                try:
                    out.append((re.compile(pattern, re.IGNORECASE), line.strip()))
                except re.error:
                    log.debug("bad pattern in %s: %r", PCSC_TOOLS_LIST, pattern)
                pattern = None
            continue
        pattern = line.strip()
    return tuple(out)


@functools.lru_cache(maxsize=256)
def _pcsc_tools_name(atr_hex: str) -> str | None:
    for pattern, name in _pcsc_tools_patterns():
        if pattern.fullmatch(atr_hex):
            return name
    return None
