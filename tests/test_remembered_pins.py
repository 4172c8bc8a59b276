"""Remembered PINs in a real OS keyring (GNOME Keyring's daemon on a private D-Bus session bus),
read back with libsecret's ``secret-tool``; logins judged on a real SoftHSM2 token."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from cert_desk import errors as E
from cert_desk.secrets import Secret
from cert_desk.secrets import remembered as R
from cert_desk.ui.main_window import MainWindow
from tests.conftest import SO_PIN, USER_PIN, Cli, SoftHsm
from tests.keyring_bed import KeyringBed, keyring_bed  # noqa: F401 - the fixture
from tests.test_gui import TIMEOUT, ctx, open_token, private_qsettings, window  # noqa: F401 - fixtures

NEW_PIN = "246813"


def _serial(softhsm: SoftHsm, label: str) -> str:
    import re

    out = softhsm.tool("-L").stdout
    m = re.search(rf"token label\s*:\s*{re.escape(label)}\s*\n(?:.*\n)*?\s*serial num\s*:\s*(\S+)", out)
    assert m, out
    return m.group(1)


# ------------------------------------------------------------------ the module


def test_remember_recall_forget(keyring_bed: KeyringBed) -> None:
    status = R.keyring_status()
    assert status.available and status.backend.startswith("Secret Service") and not status.reason
    assert R.recall("0123", "alice") is None and not R.is_remembered("0123", "alice")
    R.remember("0123", "alice", Secret(USER_PIN, "test"))
    assert keyring_bed.lookup("0123", "alice") == USER_PIN  # libsecret's own client finds it
    assert R.is_remembered("0123", "alice")
    pin = R.recall("0123", "alice")
    assert pin is not None and pin.reveal() == USER_PIN and pin.source == R.SOURCE
    assert USER_PIN not in repr(pin)
    # OpenSC shows one slot per PIN of a card, with the same serial: each has its own entry
    assert R.recall("0123", "alice (sig)") is None
    assert R.forget("0123", "alice") and not R.forget("0123", "alice")
    assert keyring_bed.lookup("0123", "alice") is None


def test_a_refused_remembered_pin_is_deleted_and_a_typed_one_is_not(keyring_bed: KeyringBed) -> None:
    R.remember("77", "t", Secret(USER_PIN, "test"))
    wrong = E.PinIncorrectError("Wrong PIN.", E.PinState.COUNT_LOW, None)
    assert not R.on_login_result("77", "t", Secret(USER_PIN, "prompt"), wrong)  # typed: the keyring is left alone
    assert keyring_bed.lookup("77", "t") == USER_PIN
    assert not R.on_login_result("77", "t", R.recall("77", "t"), E.TokenRemovedError("gone"))  # not a PIN answer
    assert R.on_login_result("77", "t", R.recall("77", "t"), wrong)
    assert keyring_bed.lookup("77", "t") is None


def test_a_refused_pin_is_never_tried_again_even_when_the_keyring_will_not_delete_it(
        keyring_bed: KeyringBed) -> None:
    R.remember("78", "t", Secret(USER_PIN, "test"))
    pin = R.recall("78", "t")
    keyring_bed.lock()  # the deletion fails now
    wrong = E.PinIncorrectError("Wrong PIN.", E.PinState.COUNT_LOW, None)
    assert R.on_login_result("78", "t", pin, wrong)
    assert not R.is_remembered("78", "t") and R.recall("78", "t") is None  # struck off before the keyring


def test_only_a_clean_pin_state_lets_a_remembered_pin_be_tried() -> None:
    assert R.usable_for(E.PinState.OK)
    for state in (E.PinState.COUNT_LOW, E.PinState.FINAL_TRY, E.PinState.LOCKED, E.PinState.NOT_INITIALIZED,
                  E.PinState.TO_BE_CHANGED):
        assert not R.usable_for(state)


def test_no_keyring_is_said_in_words_and_stores_nothing() -> None:
    # the autouse isolation points D-Bus at a socket that does not exist: no Secret Service, no KWallet
    status = R.keyring_status()
    assert not status.available and "No keyring service is running" in status.reason
    with pytest.raises(E.KeyringError, match="No keyring service"):
        R.remember("1", "t", Secret(USER_PIN, "test"))
    assert R.forget("1", "t") is False and R.is_remembered("1", "t") is False


def test_a_plaintext_or_null_keyring_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    status = R.keyring_status()
    assert not status.available and "does not protect" in status.reason
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "no.such.Backend")
    assert "cannot be loaded" in R.keyring_status().reason


def test_a_locked_keyring_changes_nothing(keyring_bed: KeyringBed) -> None:
    R.remember("5", "t", Secret(USER_PIN, "test"))
    keyring_bed.lock()  # no desktop runs, so GNOME's unlock prompt cannot appear: it stays locked
    with pytest.raises(E.KeyringError, match="locked") as info:
        R.remember("5", "t", Secret(NEW_PIN, "test"))
    assert NEW_PIN not in str(info.value)
    with pytest.raises(E.KeyringError, match="locked"):
        R.recall("5", "t")
    with pytest.raises(E.KeyringError, match="locked"):
        R.forget("5", "t")
    assert not R.is_remembered("5", "t")  # off the index: not looked up again


def test_no_serial_no_remembering(keyring_bed: KeyringBed) -> None:
    with pytest.raises(E.InputError, match="no serial number"):
        R.remember("  ", "t", Secret(USER_PIN, "test"))


# --------------------------------------------------------------------- the CLI


def test_cli_remember_use_and_forget_on_a_stale_pin(cli: Cli, softhsm: SoftHsm, token: str,
                                                   keyring_bed: KeyringBed) -> None:
    serial = _serial(softhsm, token)
    sel = ("--module", softhsm.module, "--token", token)
    r = cli("pin", "keyring")
    assert r.returncode == 0 and "Secret Service" in r.stdout

    r = cli("pin", "remember", *sel, env={"CERT_DESK_PIN": "999999"})  # a wrong PIN is never remembered
    assert r.returncode != 0 and "Wrong PIN" in r.stderr
    assert keyring_bed.lookup(serial, token) is None
    r = cli("pin", "remember", *sel, env={"CERT_DESK_PIN": USER_PIN})
    assert r.returncode == 0, r.stderr
    assert keyring_bed.lookup(serial, token) == USER_PIN

    # no file, no variable, no terminal: the remembered PIN logs in
    r = cli("objects", *sel, "--login", "--json")
    assert r.returncode == 0, r.stderr
    assert "remembered in the keyring" in r.stderr

    # the PIN is changed behind cert-desk's back: the remembered one is stale
    _change_pin_with_pkcs11_tool(softhsm, token)
    r = cli("objects", *sel, "--login")
    assert r.returncode != 0 and "Wrong PIN" in r.stderr and "deleted from the keyring" in r.stderr
    assert keyring_bed.lookup(serial, token) is None
    # ... and it is not tried a second time: the next run has no PIN at all
    r = cli("objects", *sel, "--login")
    assert r.returncode != 0 and "needs its PIN" in r.stderr and "Wrong PIN" not in r.stderr


def _change_pin_with_pkcs11_tool(softhsm: SoftHsm, token: str) -> None:
    import subprocess

    proc = subprocess.run(["pkcs11-tool", "--module", softhsm.module, "--token-label", token, "--login", "--pin",
                           "env:P11_PIN", "--change-pin", "--new-pin", "env:P11_NEW"],
                          env=softhsm.env(P11_PIN=USER_PIN, P11_NEW=NEW_PIN), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_cli_changing_the_pin_forgets_the_remembered_one(cli: Cli, softhsm: SoftHsm, token: str,
                                                        keyring_bed: KeyringBed) -> None:
    serial = _serial(softhsm, token)
    sel = ("--module", softhsm.module, "--token", token)
    assert cli("pin", "remember", *sel, env={"CERT_DESK_PIN": USER_PIN}).returncode == 0
    r = cli("pin", "change", *sel, env={"CERT_DESK_PIN": USER_PIN, "CERT_DESK_NEW_PIN": NEW_PIN})
    assert r.returncode == 0, r.stderr
    assert "was deleted" in r.stderr and keyring_bed.lookup(serial, token) is None


def test_cli_the_so_pin_is_never_stored(cli: Cli, softhsm: SoftHsm, token: str, keyring_bed: KeyringBed) -> None:
    sel = ("--module", softhsm.module, "--token", token)
    assert cli("pin", "remember", *sel, env={"CERT_DESK_PIN": USER_PIN}).returncode == 0
    assert cli("pin", "unblock", *sel, env={"CERT_DESK_SO_PIN": SO_PIN, "CERT_DESK_NEW_PIN": NEW_PIN}
               ).returncode == 0
    assert cli("pin", "change-so", *sel, env={"CERT_DESK_SO_PIN": SO_PIN, "CERT_DESK_NEW_PIN": "11223344"}
               ).returncode == 0
    assert cli("pin", "remember", *sel, env={"CERT_DESK_PIN": NEW_PIN}).returncode == 0
    secrets = keyring_bed.all_secrets()
    assert secrets == [NEW_PIN]
    assert SO_PIN not in secrets and "11223344" not in secrets


def test_cli_locked_or_absent_keyring(cli: Cli, softhsm: SoftHsm, token: str, keyring_bed: KeyringBed) -> None:
    sel = ("--module", softhsm.module, "--token", token)
    r = cli("objects", *sel, "--login")  # a token nobody opted in for: the keyring is not even asked
    assert r.returncode != 0 and "keyring" not in r.stderr and "needs its PIN" in r.stderr
    assert cli("pin", "remember", *sel, env={"CERT_DESK_PIN": USER_PIN}).returncode == 0
    keyring_bed.lock()
    r = cli("pin", "remember", *sel, env={"CERT_DESK_PIN": USER_PIN})
    assert r.returncode != 0 and "keyring is locked" in r.stderr
    r = cli("objects", *sel, "--login")  # the login does not break: it says why no remembered PIN was used
    assert r.returncode != 0 and "keyring is locked" in r.stderr and "needs its PIN" in r.stderr
    r = cli("pin", "keyring", env={"DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent"})
    assert r.returncode == 1 and "cannot be remembered" in r.stdout
    r = cli("pin", "remember", *sel, env={"CERT_DESK_PIN": USER_PIN,
                                          "DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent"})
    assert r.returncode != 0 and "No keyring service" in r.stderr


# --------------------------------------------------------------------- the GUI


def _open_dialog(qtbot: QtBot, window: MainWindow) -> object:
    pane = window.objects
    pane.login_button.click()
    qtbot.waitUntil(lambda: pane.dialog is not None and pane.dialog.isVisible(), timeout=TIMEOUT)
    return pane.dialog


def test_gui_remember_then_log_in_without_the_dialog(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm, token: str,
                                                     keyring_bed: KeyringBed) -> None:
    from cert_desk.ui.pin_dialog import PinDialog

    serial = _serial(softhsm, token)
    pane = window.objects
    window.devices.reload()
    open_token(qtbot, window, token)
    dialog = _open_dialog(qtbot, window)
    assert isinstance(dialog, PinDialog)
    assert dialog.remember.isVisible() and dialog.remember.isEnabled() and not dialog.remember.isChecked()
    dialog.remember.setChecked(True)
    qtbot.keyClicks(dialog.pin, USER_PIN)
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: pane.logged_in and pane.dialog is None, timeout=TIMEOUT)
    assert keyring_bed.lookup(serial, token) == USER_PIN
    pane.logout_button.click()
    qtbot.waitUntil(lambda: not pane.logged_in, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: window.ctx.jobs.pending() == 0, timeout=TIMEOUT)

    pane.login_button.click()  # the remembered PIN logs in: no dialog
    qtbot.waitUntil(lambda: pane.logged_in, timeout=TIMEOUT)
    assert pane.dialog is None
    pane.logout_button.click()
    qtbot.waitUntil(lambda: not pane.logged_in, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: window.ctx.jobs.pending() == 0, timeout=TIMEOUT)

    # A PIN changed elsewhere. (SoftHSM2 keeps a token's PIN in memory per process, so a change
    # by pkcs11-tool is not seen by this process: the stale PIN is put in the keyring instead.)
    R.remember(serial, token, Secret("999999", "test"))
    dialog = _open_dialog(qtbot, window)  # tried once, refused, deleted: the dialog asks
    assert isinstance(dialog, PinDialog)
    assert "refused and has been deleted" in dialog.message.text()
    assert "few tries left" in dialog.state_label.text()  # one wrong try, no more
    assert keyring_bed.lookup(serial, token) is None and not dialog.remember.isChecked()
    qtbot.keyClicks(dialog.pin, USER_PIN)
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: pane.logged_in and pane.dialog is None, timeout=TIMEOUT)
    assert keyring_bed.lookup(serial, token) is None  # not ticked: not remembered
    # the Activity panel never shows a PIN
    assert not any(p in (r.command or "") for r in window.activity.model.records() for p in (USER_PIN, "999999"))


def test_gui_without_a_keyring_the_box_is_disabled_with_the_reason(qtbot: QtBot, window: MainWindow,
                                                                   token: str) -> None:
    from cert_desk.ui.pin_dialog import PinDialog

    window.devices.reload()
    open_token(qtbot, window, token)
    dialog = _open_dialog(qtbot, window)
    assert isinstance(dialog, PinDialog)
    assert dialog.remember.isVisible() and not dialog.remember.isEnabled()
    assert "No keyring service is running" in dialog.remember_note.text() and dialog.remember_note.isVisible()
    assert dialog.remember_choice is None
    dialog.reject()


def test_gui_untick_forgets(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm, token: str,
                            keyring_bed: KeyringBed, tmp_path: Path) -> None:
    from cert_desk.ui.pin_dialog import PinDialog

    serial = _serial(softhsm, token)
    R.remember(serial, token, Secret(USER_PIN, "test"))
    softhsm.tool("--token-label", token, "-O", pin="999999", check=False)  # a wrong PIN: SoftHSM says COUNT_LOW
    pane = window.objects
    window.devices.reload()
    open_token(qtbot, window, token)
    dialog = _open_dialog(qtbot, window)  # COUNT_LOW: the remembered PIN is not tried, the user is asked
    assert isinstance(dialog, PinDialog)
    assert "is not tried" in dialog.message.text() or "does not try it" in dialog.message.text()
    assert dialog.remember.isChecked()
    dialog.remember.setChecked(False)
    qtbot.keyClicks(dialog.pin, USER_PIN)
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: pane.logged_in and pane.dialog is None, timeout=TIMEOUT)
    assert keyring_bed.lookup(serial, token) is None
