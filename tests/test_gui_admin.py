"""Token and PIN administration from the Devices pane (pytest-qt, offscreen), on a real SoftHSM2
token, judged by pkcs11-tool."""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from cert_desk import errors as E
from cert_desk.models import TokenRef
from cert_desk.ui.admin_dialog import AdminDialog
from cert_desk.ui.main_window import MainWindow
from cert_desk.ui.pin_dialog import PinDialog
from tests.conftest import SO_PIN, USER_PIN, SoftHsm
from tests.test_admin import _free_slot_id, _pin_works, _so_pin_works, _token_flags
from tests.test_gui import TIMEOUT, _token_info, ctx, idle, private_qsettings, window  # noqa: F401

NEW_PIN = "246813"


def _select(qtbot: QtBot, window: MainWindow, label: str) -> None:
    window.devices.reload()
    idle(qtbot, window)
    qtbot.waitUntil(lambda: window.devices.select_token(label), timeout=TIMEOUT)
    idle(qtbot, window)


def _open(qtbot: QtBot, window: MainWindow, action: str) -> AdminDialog:
    button = window.devices.admin_buttons[action]
    qtbot.waitUntil(button.isEnabled, timeout=TIMEOUT)
    button.click()
    dialog = window.devices.admin_dialog
    assert isinstance(dialog, AdminDialog)
    qtbot.waitUntil(dialog.isVisible, timeout=TIMEOUT)
    return dialog


def _finish(qtbot: QtBot, window: MainWindow, dialog: AdminDialog) -> None:
    assert dialog.ok_button.isEnabled(), dialog.message.text()
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert dialog.new.text() == "" and dialog.current.text() == ""  # no copy of a PIN stays in the fields
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=TIMEOUT)
    idle(qtbot, window)


def test_change_pin_checks_as_typed_then_changes_it(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm,
                                                    token: str) -> None:
    _select(qtbot, window, token)
    dialog = _open(qtbot, window, "change")
    qtbot.keyClicks(dialog.current, USER_PIN)
    qtbot.keyClicks(dialog.new, "12")
    assert not dialog.ok_button.isEnabled() and "at least 4" in dialog.message.text()
    dialog.new.setText(NEW_PIN)
    qtbot.keyClicks(dialog.repeat, "246814")
    assert not dialog.ok_button.isEnabled() and "differ" in dialog.message.text()
    dialog.repeat.setText(NEW_PIN)
    _finish(qtbot, window, dialog)
    assert "Changed the PIN" in window.devices.banner.text()
    assert _pin_works(softhsm, token, NEW_PIN) and not _pin_works(softhsm, token, USER_PIN)
    commands = [r.command or "" for r in window.activity.model.records()]
    assert any("--change-pin --new-pin env:NEW_PIN" in c for c in commands)
    assert not any(p in c for c in commands for p in (USER_PIN, NEW_PIN))


def test_a_wrong_current_pin_is_said_in_the_dialog(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm,
                                                   token: str) -> None:
    _select(qtbot, window, token)
    dialog = _open(qtbot, window, "change")
    qtbot.keyClicks(dialog.current, "999999")
    qtbot.keyClicks(dialog.new, NEW_PIN)
    qtbot.keyClicks(dialog.repeat, NEW_PIN)
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Wrong PIN" in dialog.message.text(), timeout=TIMEOUT)
    assert dialog.isVisible()
    assert _pin_works(softhsm, token, USER_PIN)
    dialog.reject()


def test_unblock_and_change_so_pin(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm, token: str) -> None:
    _select(qtbot, window, token)
    dialog = _open(qtbot, window, "unblock")
    qtbot.keyClicks(dialog.current, SO_PIN)
    qtbot.keyClicks(dialog.new, NEW_PIN)
    qtbot.keyClicks(dialog.repeat, NEW_PIN)
    _finish(qtbot, window, dialog)
    assert "Set a new user PIN" in window.devices.banner.text()
    assert _pin_works(softhsm, token, NEW_PIN)

    _select(qtbot, window, token)
    dialog = _open(qtbot, window, "change-so")
    qtbot.keyClicks(dialog.current, SO_PIN)
    qtbot.keyClicks(dialog.new, "87654321")
    qtbot.keyClicks(dialog.repeat, "87654321")
    _finish(qtbot, window, dialog)
    assert _so_pin_works(softhsm, token, "87654321") and not _so_pin_works(softhsm, token, SO_PIN)


def test_initialise_a_free_slot_and_confirm_before_erasing(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm,
                                                           token: str) -> None:
    slot = _free_slot_id(softhsm)
    window.devices.reload()
    qtbot.waitUntil(lambda: window.devices.select_slot(softhsm.module, slot), timeout=TIMEOUT)
    idle(qtbot, window)
    for action in ("change", "unblock", "change-so"):
        assert not window.devices.admin_buttons[action].isEnabled()  # an empty slot has no PINs
    dialog = _open(qtbot, window, "init")
    qtbot.keyClicks(dialog.label, "gui-fresh")
    qtbot.keyClicks(dialog.new, SO_PIN)
    qtbot.keyClicks(dialog.repeat, SO_PIN)
    _finish(qtbot, window, dialog)
    qtbot.waitUntil(lambda: any("gui-fresh" in row for row in window.devices.token_rows()), timeout=TIMEOUT)
    assert "token initialized" in _token_flags(softhsm, "gui-fresh")

    _select(qtbot, window, token)  # an initialised token: its label must be typed back
    dialog = _open(qtbot, window, "init")
    dialog.label.setText("renamed")
    qtbot.keyClicks(dialog.confirm, "test tokn")
    qtbot.keyClicks(dialog.current, SO_PIN)  # the current SO PIN: C_InitToken checks it
    assert not dialog.ok_button.isEnabled() and "to confirm" in dialog.message.text()
    dialog.confirm.setText(token)
    assert dialog.ok_button.isEnabled(), dialog.message.text()
    _finish(qtbot, window, dialog)
    qtbot.waitUntil(lambda: any("renamed" in row for row in window.devices.token_rows()), timeout=TIMEOUT)
    assert not any(row.startswith(token) for row in window.devices.token_rows())


def test_a_locked_pin_offers_the_unblock(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm, token: str) -> None:
    """The locked state is a fake TokenInfo (SoftHSM2 never locks a PIN); the unblock it leads to
    runs on the real token."""
    locked = PinDialog(dataclasses.replace(_token_info(), user_pin=E.PinState.LOCKED))
    qtbot.addWidget(locked)
    locked.show()
    assert locked.unblock_button.isVisible() and not locked.pin.isEnabled() and not locked.ok_button.isEnabled()
    asked: list[bool] = []
    locked.unblock_requested.connect(lambda: asked.append(True))
    locked.unblock_button.click()
    assert asked == [True] and not locked.isVisible()
    ok = PinDialog(_token_info())
    qtbot.addWidget(ok)
    ok.show()
    assert not ok.unblock_button.isVisible()

    _select(qtbot, window, token)
    report = window.devices.selected_slot()
    assert report is not None and report.token is not None
    window.objects.unblock_requested.emit(TokenRef(report.module, report.slot.slot_id, report.token.serial, token))
    dialog = window.devices.admin_dialog
    assert isinstance(dialog, AdminDialog) and dialog.action == "unblock"
    qtbot.waitUntil(dialog.isVisible, timeout=TIMEOUT)
    qtbot.keyClicks(dialog.current, SO_PIN)
    qtbot.keyClicks(dialog.new, NEW_PIN)
    qtbot.keyClicks(dialog.repeat, NEW_PIN)
    _finish(qtbot, window, dialog)
    assert _pin_works(softhsm, token, NEW_PIN)
