"""Smart card readers through PC/SC (pcscd), with pyscard confined to this module.

cert-desk never connects to a card here: ``SCardGetStatusChange`` reports each reader's
state and its card's ATR without taking the card from another program (OpenSC, inside or
outside cert-desk, does the talking). So listing readers cannot hang on a busy card, and a
reader held exclusively by another program is reported as busy instead.

pcscd's own socket is found by libpcsclite (``PCSCLITE_CSOCK_NAME`` overrides it; a wrong one
looks like "pcscd is not running").
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from enum import Enum

from smartcard import scard

from cert_desk.pcsc.atr import AtrInfo, parse_atr
from cert_desk.pcsc.known import KnownDevice, identify

log = logging.getLogger(__name__)

PNP_READER = "\\\\?PnP?\\Notification"
SCARD_E_NO_SERVICE = 0x8010001D
SCARD_E_SERVICE_STOPPED = 0x8010001E
SCARD_E_NO_READERS_AVAILABLE = 0x8010002E
SCARD_E_TIMEOUT = 0x8010000A
SCARD_E_CANCELLED = 0x80100002
SCARD_E_UNKNOWN_READER = 0x80100009
SCARD_E_READER_UNAVAILABLE = 0x80100017
SCARD_E_INVALID_HANDLE = 0x80100003
SCARD_E_NO_MEMORY = 0x80100006
SCARD_F_COMM_ERROR = 0x80100013
_SERVICE_GONE = frozenset({SCARD_E_NO_SERVICE, SCARD_E_SERVICE_STOPPED, SCARD_E_INVALID_HANDLE, SCARD_F_COMM_ERROR})


class PcscStatus(Enum):
    OK = "ok"
    NO_SERVICE = "no_service"
    NO_READERS = "no_readers"
    ERROR = "error"
    NOT_ANSWERING = "not_answering"


def pcscd_installed() -> bool:
    from cert_desk.paths import in_flatpak

    if in_flatpak():  # the host's pcscd, through the forwarded socket: its binary is not in the sandbox
        return True
    return any(os.path.exists(p) for p in ("/usr/sbin/pcscd", "/usr/bin/pcscd", "/sbin/pcscd"))


def status_text(status: PcscStatus) -> tuple[str, str]:
    """(what is wrong, what to do) for a PC/SC status, in words."""
    if status is PcscStatus.OK:
        return "pcscd is running.", ""
    if status is PcscStatus.NO_READERS:
        return ("pcscd is running, but no smart card reader is connected.",
                "Plug in the token or reader. A USB token is its own reader.")
    if status is PcscStatus.NO_SERVICE:
        if not pcscd_installed():
            return ("The smart card service (pcscd) is not installed.",
                    "Install it: sudo apt install pcscd (Fedora: sudo dnf install pcsc-lite). cert-desk will find it "
                    "by itself once it runs.")
        return ("The smart card service (pcscd) is not running.",
                "Start it: sudo systemctl start pcscd.socket. cert-desk keeps trying and recovers by itself.")
    if status is PcscStatus.NOT_ANSWERING:
        return ("The smart card service (pcscd) does not answer.",
                "A reader or its driver may be stuck: unplug the reader you connected last, or restart the service: "
                "sudo systemctl restart pcscd. cert-desk keeps waiting and recovers by itself.")
    return ("The smart card service (pcscd) answered with an error.", "cert-desk keeps trying.")


@dataclass(frozen=True)
class ReaderState:
    """One reader and the card in it, as pcscd reports it.

    Attributes:
        name: The reader's name (OpenSC names its PKCS#11 slot after it).
        card_present: A card (or a USB token's chip) is in the reader.
        atr: The card's Answer-to-Reset, when present.
        atr_info: The ATR, parsed.
        device: The device the ATR names, if known.
        exclusive: Another program holds the card exclusively (the reader is busy).
        in_use: A program uses the card (shared).
        mute: The card does not answer.
    """

    name: str
    card_present: bool
    atr: bytes = b""
    atr_info: AtrInfo | None = None
    device: KnownDevice | None = None
    exclusive: bool = False
    in_use: bool = False
    mute: bool = False
    pcsc_state: int = field(default=0, repr=False, compare=False)

    def state_words(self) -> str:
        if not self.card_present:
            return "no card"
        if self.mute:
            return "card does not answer"
        if self.exclusive:
            return "busy: another program holds the card exclusively; close it"
        return "card present" + (" (in use)" if self.in_use else "")


@dataclass(frozen=True)
class PcscSnapshot:
    """Everything PC/SC says at one moment."""

    status: PcscStatus
    readers: tuple[ReaderState, ...] = ()
    message: str = ""
    hint: str = ""
    code: int | None = None

    def reader(self, name: str) -> ReaderState | None:
        return next((r for r in self.readers if r.name == name), None)


@dataclass(frozen=True)
class ReaderEvent:
    """A change between two snapshots: ``kind`` is reader-added, reader-removed, card-inserted,
    card-removed, reader-busy, reader-free, pcscd-stopped or pcscd-started (and, from the
    watcher's callers, pcscd-not-answering and pcscd-answering)."""

    kind: str
    reader: str = ""
    atr: bytes = b""

    def describe(self) -> str:
        what = self.kind.replace("-", " ")
        if self.reader:
            what += f": {self.reader}"
        if self.atr:
            what += f" ATR {self.atr.hex(':').upper()}"
        return what


def diff(old: PcscSnapshot | None, new: PcscSnapshot) -> tuple[ReaderEvent, ...]:
    """The events that lead from ``old`` to ``new``."""
    events: list[ReaderEvent] = []
    old_up = old is not None and old.status in (PcscStatus.OK, PcscStatus.NO_READERS)
    new_up = new.status in (PcscStatus.OK, PcscStatus.NO_READERS)
    if old is not None and old_up and not new_up:
        events.append(ReaderEvent("pcscd-stopped"))
    if new_up and (old is None or not old_up):
        events.append(ReaderEvent("pcscd-started"))
    before = {r.name: r for r in old.readers} if old is not None else {}
    after = {r.name: r for r in new.readers}
    for name, r in before.items():
        if name not in after:
            if r.card_present:
                events.append(ReaderEvent("card-removed", name))
            events.append(ReaderEvent("reader-removed", name))
    for name, r in after.items():
        prev = before.get(name)
        if prev is None:
            events.append(ReaderEvent("reader-added", name))
            if r.card_present:
                events.append(ReaderEvent("card-inserted", name, r.atr))
            continue
        if prev.card_present and (not r.card_present or prev.atr != r.atr):
            events.append(ReaderEvent("card-removed", name))
        if r.card_present and (not prev.card_present or prev.atr != r.atr):
            events.append(ReaderEvent("card-inserted", name, r.atr))
        if r.exclusive and not prev.exclusive:
            events.append(ReaderEvent("reader-busy", name))
        elif prev.exclusive and not r.exclusive and r.card_present:
            events.append(ReaderEvent("reader-free", name))
    return tuple(events)


class PcscClient:
    """A PC/SC context: one per thread, re-established when pcscd comes back.

    Not thread-safe: the watcher owns one, a CLI command owns one.
    """

    def __init__(self) -> None:
        self._context: int | None = None
        self._pnp_state: int | None = None

    def _establish(self) -> int:
        if self._context is None:
            rv, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if rv != 0:
                raise PcscError(rv)
            self._context = ctx
        return self._context

    def close(self) -> None:
        self._pnp_state = None
        if self._context is not None:
            try:
                scard.SCardReleaseContext(self._context)
            except Exception as e:  # pcscd gone: nothing to release
                log.debug("SCardReleaseContext: %s", e)
            self._context = None

    def cancel(self) -> None:
        """Wake a :meth:`wait` in another thread (SCardCancel is the one call meant for that)."""
        if self._context is not None:
            try:
                scard.SCardCancel(self._context)
            except Exception as e:
                log.debug("SCardCancel: %s", e)

    def snapshot(self) -> PcscSnapshot:
        """The readers and cards now; never raises."""
        try:
            ctx = self._establish()
            rv, names = scard.SCardListReaders(ctx, [])
            if rv == SCARD_E_NO_READERS_AVAILABLE or (rv == 0 and not names):
                return _snap(PcscStatus.NO_READERS)
            if rv != 0:
                raise PcscError(rv)
            states = [(name, scard.SCARD_STATE_UNAWARE) for name in names]
            rv, new_states = scard.SCardGetStatusChange(ctx, 0, states)
            if rv == SCARD_E_TIMEOUT:  # nothing to report differs from "unaware": read again
                rv, new_states = scard.SCardGetStatusChange(ctx, 0, states)
            if rv != 0:
                raise PcscError(rv)
            return PcscSnapshot(PcscStatus.OK, tuple(_reader_state(s) for s in new_states))
        except PcscError as e:
            if e.code in _SERVICE_GONE:
                self.close()
                return _snap(PcscStatus.NO_SERVICE, e.code)
            if e.code == SCARD_E_NO_READERS_AVAILABLE:
                return _snap(PcscStatus.NO_READERS)
            log.debug("PC/SC: %s", e)
            self.close()
            return _snap(PcscStatus.ERROR, e.code)

    def wait(self, known: PcscSnapshot, timeout_ms: int) -> bool:
        """Block until a reader or card differs from ``known`` (or ``timeout_ms`` passes).

        Watches ``known``'s readers (with the exact states pcscd gave them, so nothing
        reads as a change that is not one) and the PnP pseudo-reader, which changes when a
        reader is added or removed. True when something changed (or pcscd went away).
        """
        try:
            ctx = self._establish()
        except PcscError:
            return False
        try:
            if self._pnp_state is None:
                rv, pnp = scard.SCardGetStatusChange(ctx, 0, [(PNP_READER, scard.SCARD_STATE_UNAWARE)])
                self._pnp_state = pnp[0][1] & ~scard.SCARD_STATE_CHANGED if rv == 0 and pnp else 0
            states = [(PNP_READER, self._pnp_state)]
            states += [(r.name, r.pcsc_state & ~scard.SCARD_STATE_CHANGED) for r in known.readers]
            rv, new_states = scard.SCardGetStatusChange(ctx, timeout_ms, states)
        except Exception as e:  # a reader vanished mid-call, pcscd died: report it as a change
            log.debug("SCardGetStatusChange: %s", e)
            self.close()
            return True
        if rv in (SCARD_E_TIMEOUT, SCARD_E_CANCELLED):
            return False
        if rv != 0:
            self.close()
            return True
        for name, event, _atr in new_states:
            if name == PNP_READER:
                self._pnp_state = event & ~scard.SCARD_STATE_CHANGED
        return True


def snapshot_within(seconds: float) -> PcscSnapshot:
    """A snapshot from a fresh client, or a NOT_ANSWERING one when pcscd has not answered within
    ``seconds`` (a hung pcscd blocks its clients without an error; the call is left behind on a
    daemon thread)."""
    import threading

    box: list[PcscSnapshot] = []

    def run() -> None:
        client = PcscClient()
        try:
            box.append(client.snapshot())
        finally:
            client.close()

    thread = threading.Thread(target=run, name="pcsc-snapshot", daemon=True)
    thread.start()
    thread.join(seconds)
    return box[0] if box else not_answering()


def not_answering() -> PcscSnapshot:
    return _snap(PcscStatus.NOT_ANSWERING)


class PcscError(Exception):
    def __init__(self, code: int) -> None:
        self.code = code & 0xFFFFFFFF
        super().__init__(f"PC/SC error {self.code:#010x}")


def _snap(status: PcscStatus, code: int | None = None) -> PcscSnapshot:
    message, hint = status_text(status)
    return PcscSnapshot(status, (), message, hint, code)


def _reader_state(state: tuple[str, int, list[int]]) -> ReaderState:
    name, event, atr_list = state
    present = bool(event & scard.SCARD_STATE_PRESENT)
    atr = bytes(atr_list) if present and atr_list else b""
    return ReaderState(
        name=name,
        card_present=present,
        atr=atr,
        atr_info=parse_atr(atr) if atr else None,
        device=identify(atr) if atr else None,
        exclusive=bool(event & scard.SCARD_STATE_EXCLUSIVE),
        in_use=bool(event & scard.SCARD_STATE_INUSE),
        mute=bool(event & scard.SCARD_STATE_MUTE),
        pcsc_state=int(event),
    )


__all__ = [
    "PcscClient", "PcscError", "PcscSnapshot", "PcscStatus", "ReaderEvent", "ReaderState", "diff",
    "not_answering", "snapshot_within", "status_text",
]
