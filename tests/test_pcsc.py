"""Readers through a real pcscd with vsmartcard's virtual reader and card."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from cert_desk.pcsc.atr import parse_atr, parse_atr_hex
from cert_desk.pcsc.known import identify
from cert_desk.pcsc.readers import PcscClient, PcscSnapshot, PcscStatus, ReaderEvent
from cert_desk.pcsc.watch import ReaderWatcher
from cert_desk.services.tokens import TokenService
from tests.conftest import Cli, PcscBed, opensc_module, wait_for

VICC_ATR = bytes.fromhex("3B951381018073FF01000B")


def test_readers_and_the_card_atr(pcsc_bed: PcscBed) -> None:
    client = PcscClient()
    try:
        snap = client.snapshot()
    finally:
        client.close()
    assert snap.status is PcscStatus.OK
    names = [r.name for r in snap.readers]
    assert names == ["Virtual PCD 00 00", "Virtual PCD 00 01"]
    first = snap.readers[0]
    assert first.card_present and first.atr == VICC_ATR
    assert first.atr_info is not None and first.atr_info.protocols == (1,) and first.atr_info.tck_ok
    assert first.device is not None and "vsmartcard" in first.device.name
    assert not snap.readers[1].card_present


class Recorder:
    def __init__(self) -> None:
        self.snaps: list[PcscSnapshot] = []
        self.events: list[tuple[float, ReaderEvent]] = []
        self.lock = threading.Lock()

    def __call__(self, snap: PcscSnapshot, events: tuple[ReaderEvent, ...]) -> None:
        with self.lock:
            self.snaps.append(snap)
            self.events.extend((time.monotonic(), e) for e in events)

    def kinds(self) -> list[str]:
        with self.lock:
            return [e.kind for _, e in self.events]

    def when(self, kind: str, after: float) -> float | None:
        with self.lock:
            return next((t for t, e in self.events if e.kind == kind and t >= after), None)


def test_watcher_sees_removal_and_insertion_within_two_seconds(pcsc_bed: PcscBed) -> None:
    rec = Recorder()
    watcher = ReaderWatcher(rec).start()
    try:
        wait_for(lambda: bool(rec.snaps), 5, "the first snapshot")
        t0 = time.monotonic()
        pcsc_bed.stop_vicc()
        wait_for(lambda: rec.when("card-removed", t0) is not None, 5, "card-removed")
        assert rec.when("card-removed", t0) - t0 <= 2.0  # type: ignore[operator]
        t1 = time.monotonic()
        pcsc_bed.start_vicc()
        wait_for(lambda: rec.when("card-inserted", t1) is not None, 10, "card-inserted")
        inserted = next(e for _, e in reversed(rec.events) if e.kind == "card-inserted")
        assert inserted.atr == VICC_ATR and inserted.reader == "Virtual PCD 00 00"
    finally:
        watcher.stop()


def test_pcscd_stopping_is_reported_and_recovered(pcsc_bed: PcscBed) -> None:
    rec = Recorder()
    watcher = ReaderWatcher(rec, retry_s=0.3).start()
    try:
        wait_for(lambda: bool(rec.snaps), 5, "the first snapshot")
        t0 = time.monotonic()
        pcsc_bed.stop_pcscd()
        wait_for(lambda: rec.when("pcscd-stopped", t0) is not None, 5, "pcscd-stopped")
        down = rec.snaps[-1]
        assert down.status is PcscStatus.NO_SERVICE and "not running" in down.message
        assert "systemctl start pcscd.socket" in down.hint
        t1 = time.monotonic()
        pcsc_bed.start_pcscd()
        pcsc_bed.start_vicc()
        wait_for(lambda: rec.when("card-inserted", t1) is not None, 15, "recovery with the card back")
        assert "pcscd-started" in rec.kinds()
        assert rec.snaps[-1].status is PcscStatus.OK
    finally:
        watcher.stop()


def test_no_pcscd_is_a_clear_state_not_a_hang(pcsc_bed: PcscBed) -> None:
    pcsc_bed.stop_pcscd()
    client = PcscClient()
    t0 = time.monotonic()
    snap = client.snapshot()
    client.close()
    assert time.monotonic() - t0 < 2
    assert snap.status is PcscStatus.NO_SERVICE and snap.hint


def test_atr_parsing() -> None:
    info = parse_atr(parse_atr_hex("3B:DE:18:FF:81:91:FE:1F:C3:80:31:81:54:48:53:4D:31:73:80:21:40:81:07:1C"))
    assert info.protocols == (1, 15) and info.tck_ok and info.convention == "direct"
    assert b"THSM1" in info.historical and not info.problems
    assert identify(info.raw) is not None and "Nitrokey HSM" in identify(info.raw).name  # type: ignore[union-attr]
    bad = parse_atr(bytes.fromhex("3B9513810180"))  # cut short
    assert bad.problems and bad.historical == b"\x80"
    assert parse_atr(b"").problems == ("the ATR is empty",)
    assert parse_atr(bytes.fromhex("3F00")).convention == "inverse"
    assert "TCK is wrong" in " ".join(parse_atr(bytes.fromhex("3B951381018073FF01000C")).problems)
    assert identify(bytes.fromhex("3B8C01805A4E6974726F6B657920337D")).name == "Nitrokey 3"  # type: ignore[union-attr]


def test_cli_readers_lists_the_reader_card_and_slot(cli: Cli, pcsc_bed: PcscBed) -> None:
    r = cli("readers", "--json", "--module", opensc_module())
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["status"] == "ok"
    first = data["readers"][0]
    assert first["name"] == "Virtual PCD 00 00" and first["card_present"]
    assert first["atr"] == "3B:95:13:81:01:80:73:FF:01:00:0B" and first["protocols"] == [1]
    assert "vsmartcard" in first["device"]
    # OpenSC made a slot of the reader, and does not recognise vicc's plain ISO 7816 card
    assert first["slot"] is not None and first["slot"]["token"] is None
    assert "not recognise" in first["slot"]["error"]
    text = cli("readers", "--module", opensc_module())
    assert "Reader 0: Virtual PCD 00 00" in text.stdout and "T=1 (TCK ok)" in text.stdout


def test_cli_watch_prints_removal_within_two_seconds(pcsc_bed: PcscBed) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "cert_desk", "readers", "--watch"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "Virtual PCD 00 00 (card)" in first, first
        t0 = time.monotonic()
        pcsc_bed.stop_vicc()
        line = proc.stdout.readline()
        assert "card removed: Virtual PCD 00 00" in line and time.monotonic() - t0 <= 2.0, line
        pcsc_bed.start_vicc()
        line = proc.stdout.readline()
        assert "card inserted: Virtual PCD 00 00 ATR 3B:95:13:81:01:80:73:FF:01:00:0B" in line, line
        pcsc_bed.stop_pcscd()
        line = proc.stdout.readline()
        assert "pcscd stopped" in line and "systemctl start pcscd.socket" in line, line
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0


def test_cli_readers_without_pcscd(cli: Cli, pcsc_bed: PcscBed) -> None:
    pcsc_bed.stop_pcscd()
    r = cli("readers", "--no-slots")
    assert r.returncode == 0 and "pcscd) is not running" in r.stdout and "systemctl start pcscd.socket" in r.stdout


def test_reader_held_by_another_program_is_busy_not_a_hang(cli: Cli, pcsc_bed: PcscBed, service: TokenService,
                                                           request: pytest.FixtureRequest) -> None:
    opensc = os.path.realpath(opensc_module())
    watch = subprocess.Popen([sys.executable, "-m", "cert_desk", "readers", "--watch"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    request.addfinalizer(watch.kill)
    assert watch.stdout is not None
    assert "Virtual PCD 00 00 (card)" in watch.stdout.readline()
    holder = pcsc_bed.hold_exclusively("Virtual PCD 00 00")
    try:
        t0 = time.monotonic()
        line = watch.stdout.readline()
        assert line.strip().endswith("reader busy: Virtual PCD 00 00") and time.monotonic() - t0 <= 2.0, line
        t0 = time.monotonic()
        r = cli("readers", "--json", "--module", opensc)
        assert r.returncode == 0 and time.monotonic() - t0 < 5, r.stderr
        first = json.loads(r.stdout)["readers"][0]
        assert first["exclusive"] and first["state"].startswith("busy") and "close it" in first["state"]
        text = cli("readers", "--no-slots").stdout
        assert "busy: another program holds the card exclusively" in text
        # pkcs11-tool and cert-desk agree on OpenSC's slots: the held reader's slot does not answer,
        # the other reader's slot is listed all the same
        ref = subprocess.run(["pkcs11-tool", "--module", opensc, "-L"], capture_output=True, text=True, timeout=30)
        failed = re.findall(r"Slot \d+ \(0x([0-9a-f]+)\): \(GetSlotInfo failed, (CKR_\w+)\)", ref.stdout)
        assert failed, ref.stdout
        t0 = time.monotonic()
        slots = service.slots(opensc, with_mechanisms=False).result(timeout=5)
        assert time.monotonic() - t0 < 5
        by_id = {s.slot.slot_id: s for s in slots}
        held = by_id[int(failed[0][0], 16)]
        assert held.unanswered and failed[0][1] in (held.error or "") and held.token is None
        assert any(s.slot.description == "Virtual PCD 00 01" and not s.unanswered for s in slots)
        # the wall cert-desk works around: python-pkcs11's get_slots fails for every slot when one
        # slot fails C_GetSlotInfo (so cert-desk lists slots itself and keeps Slot objects it got earlier)
        wall = subprocess.run([sys.executable, "-c", "import pkcs11, sys; pkcs11.lib(sys.argv[1]).get_slots()",
                               opensc], capture_output=True, text=True, timeout=30)
        assert wall.returncode != 0 and "DeviceError" in wall.stderr, wall.stderr
        # it stays "does not answer" while held, even though OpenSC says "no token" between its looks
        for _ in range(3):
            time.sleep(0.6)
            again = {s.slot.slot_id: s for s in service.poll(opensc).result(timeout=5)}
            assert again[held.slot.slot_id].unanswered
    finally:
        holder.kill()
        holder.wait(5)

    def answers_again() -> bool:
        s = {r.slot.slot_id: r for r in service.poll(opensc).result(timeout=5)}
        return not s[held.slot.slot_id].unanswered and s[held.slot.slot_id].slot.token_present

    line = watch.stdout.readline()
    assert line.strip().endswith("reader free: Virtual PCD 00 00"), line
    watch.send_signal(signal.SIGINT)
    assert watch.wait(10) == 0
    wait_for(answers_again, 8, "the slot to answer once the other program let go")
    snap = PcscClient()
    try:
        assert not snap.snapshot().readers[0].exclusive
    finally:
        snap.close()


def test_cli_with_a_hung_pcscd_says_so_and_does_not_hang(cli: Cli, pcsc_bed: PcscBed,
                                                        request: pytest.FixtureRequest) -> None:
    """SIGSTOP makes a real hung pcscd: its clients block without an error."""
    assert pcsc_bed.pcscd is not None
    pid = pcsc_bed.pcscd.pid
    watch = subprocess.Popen([sys.executable, "-m", "cert_desk", "readers", "--watch"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    request.addfinalizer(watch.kill)
    assert watch.stdout is not None
    assert "Virtual PCD 00 00 (card)" in watch.stdout.readline()
    os.kill(pid, signal.SIGSTOP)
    request.addfinalizer(lambda: os.kill(pid, signal.SIGCONT))
    try:
        t0 = time.monotonic()
        r = cli("readers", "--module", opensc_module())
        assert r.returncode == 0 and time.monotonic() - t0 < 8, r.stderr
        assert "does not answer" in r.stdout and "systemctl restart pcscd" in r.stdout
        data = json.loads(cli("readers", "--json").stdout)
        assert data["status"] == "not_answering" and data["readers"] == []
        line = watch.stdout.readline()
        assert "pcscd not answering" in line and "systemctl restart pcscd" in line, line
    finally:
        os.kill(pid, signal.SIGCONT)
    line = watch.stdout.readline()
    assert "pcscd answering" in line, line
    watch.send_signal(signal.SIGINT)
    assert watch.wait(10) == 0
