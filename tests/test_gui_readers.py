"""The Devices pane's readers and hot-plug, against a real pcscd with virtual cards (tests/pcsc_bed.py)."""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from cert_desk.services.tokens import TokenService
from cert_desk.ui.app import AppContext, make_context
from cert_desk.ui.main_window import MainWindow
from tests.conftest import PcscBed, opensc_module

TIMEOUT = 30000
PGP_TOKEN = "OpenPGP card (User PIN)"


@pytest.fixture(autouse=True)
def private_qsettings(isolated_home: Path) -> None:
    from PySide6.QtCore import QSettings

    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(isolated_home / ".config"))


@pytest.fixture
def window(qtbot: QtBot, pcsc_bed: PcscBed, service: TokenService) -> Iterator[MainWindow]:
    opensc_module()
    ctx: AppContext = make_context(service)
    w = MainWindow(ctx)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()
    ctx.jobs.close()
    ctx.tasks.shutdown()


def reader_rows(w: MainWindow) -> list[tuple[str, ...]]:
    return w.devices.readers.rows()


def test_reader_card_device_and_slot_are_shown(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: any(r[0] == "Virtual PCD 00 00" and r[1].startswith("card present")
                                for r in reader_rows(window)), timeout=TIMEOUT)
    # OpenSC made a slot of the reader and says it does not know vicc's plain ISO 7816 card
    qtbot.waitUntil(lambda: "not recognise" in reader_rows(window)[0][4], timeout=TIMEOUT)
    row = reader_rows(window)[0]
    assert row[3] == "3B:95:13:81:01:80:73:FF:01:00:0B" and "vsmartcard" in row[2]
    assert "pcscd is running" in window.devices.readers.state.text()


def test_card_removal_and_insertion_within_two_seconds(qtbot: QtBot, window: MainWindow, pcsc_bed: PcscBed) -> None:
    qtbot.waitUntil(lambda: bool(reader_rows(window)) and reader_rows(window)[0][1].startswith("card present"),
                    timeout=TIMEOUT)
    t0 = time.monotonic()
    pcsc_bed.stop_vicc()
    qtbot.waitUntil(lambda: reader_rows(window)[0][1] == "no card", timeout=5000)
    assert time.monotonic() - t0 <= 2.0
    pcsc_bed.start_vicc()
    qtbot.waitUntil(lambda: reader_rows(window)[0][1].startswith("card present"), timeout=10000)


def test_pcscd_down_is_explained_and_recovered(qtbot: QtBot, window: MainWindow, pcsc_bed: PcscBed) -> None:
    qtbot.waitUntil(lambda: bool(reader_rows(window)), timeout=TIMEOUT)
    pcsc_bed.stop_pcscd()
    qtbot.waitUntil(lambda: "not running" in window.devices.readers.state.text(), timeout=5000)
    assert "systemctl start pcscd.socket" in window.devices.readers.state.text()
    assert window.devices.readers.view.isHidden()  # nothing stale on screen
    pcsc_bed.start_pcscd()
    pcsc_bed.start_vicc()
    qtbot.waitUntil(lambda: "pcscd is running" in window.devices.readers.state.text() and bool(reader_rows(window))
                    and reader_rows(window)[0][1].startswith("card present"), timeout=15000)


def test_openpgp_token_listed_removed_and_back(qtbot: QtBot, window: MainWindow, pcsc_bed: PcscBed,
                                               tmp_path: Path) -> None:
    """jcecard's OpenPGP card: OpenSC makes tokens of it; pulling it clears the pane, putting it back lists it."""
    pcsc_bed.start_jcecard(tmp_path / "jcecard")
    qtbot.waitUntil(lambda: any(r[0] == "Virtual PCD 00 01" and PGP_TOKEN in r[4] for r in reader_rows(window)),
                    timeout=TIMEOUT)
    qtbot.waitUntil(lambda: window.devices.select_token(PGP_TOKEN), timeout=TIMEOUT)
    pane = window.objects
    qtbot.waitUntil(lambda: pane.model.listing is not None and pane.model.listing.token.label == PGP_TOKEN,
                    timeout=TIMEOUT)
    t0 = time.monotonic()
    pcsc_bed.stop_jcecard()
    qtbot.waitUntil(lambda: not pane.banner.isHidden() and "removed" in pane.banner.text(), timeout=5000)
    assert time.monotonic() - t0 <= 3.0
    assert pane.model.rowCount() == 0 and pane.model.listing is None
    pcsc_bed.start_jcecard(tmp_path / "jcecard")
    qtbot.waitUntil(lambda: pane.model.listing is not None and pane.banner.isHidden(), timeout=TIMEOUT)
    assert not pane.logged_in


def test_reader_held_by_another_program_shows_busy_without_freezing(qtbot: QtBot, window: MainWindow,
                                                                    pcsc_bed: PcscBed) -> None:
    from PySide6.QtCore import QTimer

    qtbot.waitUntil(lambda: "not recognise" in (reader_rows(window) or [("",) * 5])[0][4], timeout=TIMEOUT)
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)
    holder = pcsc_bed.hold_exclusively("Virtual PCD 00 00")
    try:
        t0 = time.monotonic()
        qtbot.waitUntil(lambda: reader_rows(window)[0][1].startswith("busy"), timeout=5000)
        assert time.monotonic() - t0 <= 2.0
        row = reader_rows(window)[0]
        assert row[1] == "busy" and row[4] == "unreadable while busy"
        assert "another program holds the card exclusively; close it" in window.devices.readers.state.text()
        qtbot.wait(3000)  # a few module polls meet the held reader
        assert reader_rows(window)[0][1].startswith("busy")
    finally:
        holder.kill()
        holder.wait(5)
    qtbot.waitUntil(lambda: reader_rows(window)[0][1].startswith("card present")
                    and "not recognise" in reader_rows(window)[0][4], timeout=10000)
    timer.stop()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert max(gaps) < 0.5, f"the GUI thread stalled for {max(gaps):.2f} s"


def test_unknown_and_malformed_atrs_are_shown_for_what_they_are(qtbot: QtBot) -> None:
    """Data, not a fake: ATRs come from cards, and vicc cannot present a broken one; the view must
    still say what it can (no device name, the problem in the ATR's tooltip), and never crash."""
    from cert_desk.pcsc.atr import parse_atr
    from cert_desk.pcsc.known import identify
    from cert_desk.pcsc.readers import PcscSnapshot, PcscStatus, ReaderState
    from cert_desk.ui.readers_view import ReadersView

    def reader(name: str, atr: bytes) -> ReaderState:
        return ReaderState(name=name, card_present=True, atr=atr, atr_info=parse_atr(atr), device=identify(atr))

    view = ReadersView()
    qtbot.addWidget(view)
    unknown = bytes.fromhex("3B020102")  # well formed, nobody's card
    truncated = bytes.fromhex("3BFF1300FF81")  # T0 promises more interface and historical bytes than follow
    view.show_snapshot(PcscSnapshot(PcscStatus.OK, (reader("Reader A", unknown), reader("Reader B", truncated))))
    rows = view.rows()
    assert [r[2] for r in rows] == ["unknown card", "unknown card"]
    assert rows[0][3] == "3B:02:01:02" and rows[1][3] == "3B:FF:13:00:FF:81"
    tip_a = view.model.item(0, 3).toolTip()
    tip_b = view.model.item(1, 3).toolTip()
    assert "Problem" not in tip_a and "Historical bytes" in tip_a
    assert "Problem: the ATR ends inside its interface bytes" in tip_b
    assert view.model.item(0, 2).toolTip() == "cert-desk does not know this ATR"


def module_rows(w: MainWindow) -> list[str]:
    return [w.devices.model.item(r).text() for r in range(w.devices.model.rowCount())]


def test_pcscd_hanging_is_shown_not_waited_for(qtbot: QtBot, window: MainWindow, pcsc_bed: PcscBed) -> None:
    """A real hung pcscd (SIGSTOP): every PC/SC client, OpenSC's module too, blocks inside it without
    an error. The window keeps running, says so within 5 s, hides what it can no longer vouch for,
    and comes back by itself when pcscd does."""
    from PySide6.QtCore import QTimer

    qtbot.waitUntil(lambda: "not recognise" in (reader_rows(window) or [("",) * 5])[0][4], timeout=TIMEOUT)
    assert pcsc_bed.pcscd is not None
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)
    os.kill(pcsc_bed.pcscd.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        qtbot.waitUntil(lambda: "does not answer" in window.devices.readers.state.text(), timeout=8000)
        assert time.monotonic() - t0 <= 5.0
        assert "systemctl restart pcscd" in window.devices.readers.state.text()
        assert window.devices.readers.view.isHidden()  # nothing stale on screen
        qtbot.waitUntil(lambda: any(r.startswith("opensc-pkcs11 — busy: no answer for") for r in module_rows(window)),
                        timeout=8000)
    finally:
        os.kill(pcsc_bed.pcscd.pid, signal.SIGCONT)
    qtbot.waitUntil(lambda: "pcscd is running" in window.devices.readers.state.text() and bool(reader_rows(window))
                    and reader_rows(window)[0][1].startswith("card present"), timeout=15000)
    qtbot.waitUntil(lambda: "opensc-pkcs11" in module_rows(window), timeout=15000)
    timer.stop()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert max(gaps) < 0.5, f"the GUI thread stalled for {max(gaps):.2f} s"
