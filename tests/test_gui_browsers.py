"""The Browsers pane on a real event loop: the test home's Chrome and Firefox databases, the token's
module ticked in and applied, read back, refused while Firefox runs, and a TLS login through it."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from pytestqt.qtbot import QtBot

from cert_desk.ui.main_window import MainWindow
from tests.conftest import USER_PIN, SoftHsm
from tests.test_gui_lifecycle import TIMEOUT, Answer, ca_files, ctx, idle, private_qsettings, window  # noqa: F401
from tests.test_nss_cli import browsers, firefox_running, modules  # noqa: F401
from tests.tls_server import make_test_pki, nss, put_client_certificate, tls_server


def rows(w: MainWindow) -> dict[str, tuple[str, bool, bool]]:
    """database directory -> (state text, ticked, enabled)."""
    t = w.browsers.table
    out = {}
    for i in range(t.topLevelItemCount()):
        item = t.topLevelItem(i)
        assert item is not None
        s = item.data(0, Qt.ItemDataRole.UserRole + 1)
        out[s.db.directory] = (item.text(3), item.checkState(0) == Qt.CheckState.Checked,
                               bool(item.flags() & Qt.ItemFlag.ItemIsEnabled))
    return out


def open_browsers(qtbot: QtBot, w: MainWindow, softhsm: SoftHsm) -> None:
    w.show_pane("Browsers")
    qtbot.waitUntil(lambda: w.browsers.module_path() == w.objects.ref.module if w.objects.ref else False,
                    timeout=TIMEOUT)
    qtbot.waitUntil(lambda: len(rows(w)) >= 2, timeout=TIMEOUT)
    idle(qtbot, w)


def test_tick_apply_and_read_back(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm,
                                  browsers: tuple[Path, Path]) -> None:
    chrome, firefox = browsers
    open_browsers(qtbot, window, softhsm)
    pane = window.browsers
    state = rows(window)
    assert "not created yet" in state[str(chrome)][0] and state[str(firefox)][0] == "not registered"
    pane.name.setText("Test HSM")
    assert pane.tick(str(chrome)) and pane.tick(str(firefox))
    assert pane.apply_button.text() == "Apply 2 changes"
    answer = Answer("Apply")
    pane.apply_button.click()
    qtbot.waitUntil(lambda: answer.answered, timeout=TIMEOUT)
    assert "the database is created first" in answer.text
    qtbot.waitUntil(lambda: all(r[0].startswith("registered") for r in rows(window).values()), timeout=TIMEOUT)
    assert "Registered 'Test HSM'" in pane.banner.text()
    for db in (chrome, firefox):
        assert "Test HSM" in modules(db) and "status: loaded" in modules(db)
    # read back: what NSS loads, and the token's certificates NSS sees (the PIN through the PIN dialog)
    pane.table.setCurrentItem(pane.table.topLevelItem(1))
    type_pin(qtbot, window)
    pane.readback_button.click()
    qtbot.waitUntil(lambda: "as NSS loads it" in pane.details.toPlainText(), timeout=TIMEOUT)
    assert "Test HSM" in pane.details.toPlainText() and "test token" in pane.details.toPlainText()
    # untick one: removed from that database only
    pane.tick(str(firefox), False)
    answer = Answer("Apply")
    pane.apply_button.click()
    qtbot.waitUntil(lambda: answer.answered, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: rows(window)[str(firefox)][0] == "not registered", timeout=TIMEOUT)
    assert "Test HSM" not in modules(firefox) and "Test HSM" in modules(chrome)


def type_pin(qtbot: QtBot, w: MainWindow) -> None:
    """Answer the next PIN dialog of the Browsers pane, as the user types it."""
    pane = w.browsers

    def look() -> None:
        d = pane.pin_dialog
        if d is not None and d.isVisible():
            timer.stop()
            d.pin.setText(USER_PIN)  # type: ignore[attr-defined]
            d.ok_button.click()  # type: ignore[attr-defined]

    timer = QTimer(pane)
    timer.setInterval(30)
    timer.timeout.connect(look)
    timer.start()


def test_a_running_firefox_cannot_be_ticked(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm,
                                            browsers: tuple[Path, Path], firefox_running: int) -> None:
    open_browsers(qtbot, window, softhsm)
    text, _ticked, enabled = rows(window)[str(browsers[1])]
    assert "Firefox is running" in text and not enabled


def test_tls_login_from_the_pane(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm, token: str,
                                 browsers: tuple[Path, Path], tmp_path: Path) -> None:
    chrome = browsers[0]
    pki = make_test_pki(tmp_path / "pki")
    put_client_certificate(softhsm, pki, "alice", "01", "EC:prime256v1", "alice in the pane")
    window.objects.refresh()
    idle(qtbot, window)
    open_browsers(qtbot, window, softhsm)
    pane = window.browsers
    pane.name.setText("Test HSM")
    pane.tick(str(chrome))
    answer = Answer("Apply")
    pane.apply_button.click()
    qtbot.waitUntil(lambda: answer.answered, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: rows(window)[str(chrome)][0].startswith("registered"), timeout=TIMEOUT)
    nss("certutil", "-A", "-n", "test CA", "-t", "C,,", "-d", f"sql:{chrome}", "-a", "-i", str(pki.ca_pem))
    for i in range(pane.table.topLevelItemCount()):
        item = pane.table.topLevelItem(i)
        if item is not None and item.text(2) == f"sql:{chrome}":
            pane.table.setCurrentItem(item)
    assert pane.nickname.findText(f"{token}:alice") >= 0
    pane.nickname.setCurrentText(f"{token}:alice")
    with tls_server(pki) as (url, log):
        pane.url.setText(url)
        type_pin(qtbot, window)
        pane.test_button.click()
        qtbot.waitUntil(lambda: pane.banner.kind in ("ok", "error"), timeout=30000)
        assert pane.banner.kind == "ok", pane.banner.text()
        assert "alice in the pane" in pane.banner.text() and "alice in the pane" in log.read_text(errors="replace")
