"""Faults a real token produces, in the window (pytest-qt, offscreen): the fault-injecting module
(tests/faultmod) in front of a real SoftHSM2 token, and the only module the window sees."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from pytestqt.qtbot import QtBot

from cert_desk.models import ModuleEntry
from cert_desk.pkcs11.discovery import discover_modules
from cert_desk.services.tokens import TokenService
from cert_desk.services.worker import WorkerPool
from cert_desk.settings import Settings
from cert_desk.ui.admin_dialog import AdminDialog
from cert_desk.ui.app import AppContext, make_context
from cert_desk.ui.main_window import MainWindow
from cert_desk.ui.pin_dialog import PinDialog
from tests.conftest import USER_PIN
from tests.faultmod import FaultModule, faultmod_library, faulty  # noqa: F401 - fixtures
from tests.test_admin import _slot_id_of
from tests.test_gui import TIMEOUT, idle, private_qsettings  # noqa: F401 - fixture


class FaultyOnly(TokenService):
    """A TokenService whose only module is the fault module (SoftHSM2 itself is loaded only behind it)."""

    def __init__(self, module: str) -> None:
        super().__init__(WorkerPool(), Settings(path=Path(os.environ["XDG_CONFIG_HOME"]) / "cert-desk.json"))
        self.fault_module = module

    def modules(self) -> list[ModuleEntry]:
        return discover_modules([], registry_dirs=[], well_known=[], extra_paths=[self.fault_module])


@pytest.fixture
def fwindow(qtbot: QtBot, faulty: FaultModule, token: str) -> Iterator[MainWindow]:
    service = FaultyOnly(faulty.module)
    ctx: AppContext = make_context(service)
    w = MainWindow(ctx)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.devices.reload()
    slot = _slot_id_of(faulty.softhsm, token)
    qtbot.waitUntil(lambda: w.devices.select_slot(faulty.module, slot), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: w.objects.model.listing is not None, timeout=TIMEOUT)
    idle(qtbot, w)
    yield w
    w.close()
    ctx.jobs.close()
    ctx.tasks.shutdown()
    service.shutdown(timeout=40)


def _dialog(qtbot: QtBot, w: MainWindow) -> PinDialog:
    pane = w.objects
    pane.login_button.click()
    qtbot.waitUntil(lambda: pane.dialog is not None and pane.dialog.isVisible(), timeout=TIMEOUT)
    assert pane.dialog is not None
    return pane.dialog


def _refresh(qtbot: QtBot, w: MainWindow) -> None:
    w.objects.refresh()
    idle(qtbot, w)


def test_count_low_is_said_before_the_pin_is_typed(qtbot: QtBot, fwindow: MainWindow, faulty: FaultModule) -> None:
    faulty.set("flags=COUNT_LOW")
    dialog = _dialog(qtbot, fwindow)
    assert "few tries left" in dialog.state_label.text() and "Careful" in dialog.message.text()
    qtbot.keyClicks(dialog.pin, USER_PIN)
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: fwindow.objects.logged_in, timeout=TIMEOUT)


def test_final_try_demands_the_confirmation(qtbot: QtBot, fwindow: MainWindow, faulty: FaultModule) -> None:
    faulty.set("flags=FINAL_TRY")
    dialog = _dialog(qtbot, fwindow)
    qtbot.keyClicks(dialog.pin, USER_PIN)
    assert dialog.final_try.isVisible() and not dialog.ok_button.isEnabled()
    qtbot.keyClick(dialog.pin, Qt.Key.Key_Return)  # Enter does not get around the box
    qtbot.wait(300)
    assert not faulty.calls("C_Login")
    dialog.final_try.setChecked(True)
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: fwindow.objects.logged_in, timeout=TIMEOUT)
    assert len(faulty.calls("C_Login")) == 1


def test_locked_offers_the_unblock_and_tries_nothing(qtbot: QtBot, fwindow: MainWindow,
                                                     faulty: FaultModule) -> None:
    faulty.set("flags=LOCKED")
    dialog = _dialog(qtbot, fwindow)
    assert not dialog.pin.isEnabled() and not dialog.ok_button.isEnabled() and dialog.unblock_button.isVisible()
    dialog.unblock_button.click()
    admin = fwindow.devices.admin_dialog
    assert isinstance(admin, AdminDialog) and admin.action == "unblock"
    qtbot.waitUntil(admin.isVisible, timeout=TIMEOUT)
    admin.reject()
    assert not faulty.calls("C_Login")


def test_a_pin_to_be_changed_opens_change_pin_first(qtbot: QtBot, fwindow: MainWindow,
                                                    faulty: FaultModule) -> None:
    faulty.set("flags=TO_BE_CHANGED")
    fwindow.objects.login_button.click()
    qtbot.waitUntil(lambda: isinstance(fwindow.devices.admin_dialog, AdminDialog)
                    and fwindow.devices.admin_dialog.isVisible(), timeout=TIMEOUT)
    admin = fwindow.devices.admin_dialog
    assert isinstance(admin, AdminDialog) and admin.action == "change"
    assert fwindow.objects.dialog is None and not faulty.calls("C_Login")
    admin.reject()


def test_pin_pad(qtbot: QtBot, fwindow: MainWindow, faulty: FaultModule, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CD_FAULT_PAD_PIN", USER_PIN)
    faulty.set("flags=PROTECTED_AUTHENTICATION_PATH")
    dialog = _dialog(qtbot, fwindow)
    assert "PIN pad" in dialog.intro.text() and not dialog.pin.isVisible() and dialog.ok_button.isEnabled()
    assert not dialog.remember.isVisible()  # a PIN typed on the pad is never seen, so never remembered
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: fwindow.objects.logged_in, timeout=TIMEOUT)


def test_removed_during_a_listing_then_back(qtbot: QtBot, fwindow: MainWindow, faulty: FaultModule) -> None:
    faulty.softhsm.keypair("test token", "k", "01")
    faulty.set("removed@C_GetAttributeValue")
    fwindow.objects.refresh()
    qtbot.waitUntil(lambda: "removed" in fwindow.objects.banner.text().lower(), timeout=TIMEOUT)
    faulty.clear()
    fwindow.devices.refresh()
    idle(qtbot, fwindow)
    slot = _slot_id_of(faulty.softhsm, "test token")
    qtbot.waitUntil(lambda: fwindow.devices.select_slot(faulty.module, slot), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: fwindow.objects.model.listing is not None
                    and any(o.label == "k" for o in fwindow.objects.model.listing.objects), timeout=TIMEOUT)


def _login(qtbot: QtBot, w: MainWindow) -> None:
    dialog = _dialog(qtbot, w)
    qtbot.keyClicks(dialog.pin, USER_PIN)
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.objects.logged_in, timeout=TIMEOUT)
    idle(qtbot, w)


@pytest.mark.parametrize(("fault", "words"), [
    ("C_GenerateKeyPair:CKR_DEVICE_MEMORY@1", "full"),
    ("C_GenerateKeyPair:0x80001234@1", "0x80001234"),
    ("removed@C_GenerateKeyPair", "removed"),
])
def test_keygen_refused_in_the_keys_pane(qtbot: QtBot, fwindow: MainWindow, faulty: FaultModule, fault: str,
                                         words: str) -> None:
    _login(qtbot, fwindow)
    fwindow.show_pane("Keys")
    keys = fwindow.keys
    qtbot.waitUntil(keys.generate_button.isEnabled, timeout=TIMEOUT)
    keys.label_edit.setText("refused")
    faulty.set(fault)
    keys.generate_button.click()
    qtbot.waitUntil(lambda: words in keys.banner.text().lower() or words in keys.banner.text(), timeout=TIMEOUT)
    faulty.clear()
    assert "refused" not in faulty.softhsm.tool("--token-label", "test token", "-O", pin=USER_PIN).stdout


def test_write_protected_disables_writing(qtbot: QtBot, fwindow: MainWindow, faulty: FaultModule) -> None:
    faulty.set("flags=WRITE_PROTECTED")
    _refresh(qtbot, fwindow)
    _login(qtbot, fwindow)
    listing = fwindow.objects.model.listing
    assert listing is not None and listing.token_info.write_protected
    assert not fwindow.keys.generate_button.isEnabled() and "write-protected" in fwindow.keys.gen_box.title()
    assert not fwindow.certificates.import_button.isEnabled()
    assert fwindow.certificates.csr_button.isEnabled()  # reading and signing still work


def test_a_call_that_hangs_30_s_keeps_the_window_live(qtbot: QtBot, fwindow: MainWindow,
                                                      faulty: FaultModule) -> None:
    faulty.set("C_FindObjectsInit:sleep=30@1")
    started = time.monotonic()
    fwindow.objects.refresh()
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(100)
    # the module row says the module is busy (its poll has not come back), the window keeps painting
    qtbot.waitUntil(lambda: any("busy" in fwindow.devices.model.item(r).text()
                                for r in range(fwindow.devices.model.rowCount())), timeout=15000)
    assert "Working" in fwindow.busy_label.text()
    fwindow.show_pane("Certificates")  # the GUI answers while the worker waits
    fwindow.show_pane("Objects")
    busy_seen = time.monotonic() - started
    assert busy_seen < 12
    qtbot.waitUntil(lambda: fwindow.ctx.jobs.pending() == 0, timeout=45000)  # the job ends when the call returns
    timer.stop()
    assert time.monotonic() - started >= 29
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert len(ticks) > 200 and max(gaps) < 2.0  # the event loop never stalled
    assert fwindow.objects.model.listing is not None


def test_quitting_while_a_call_hangs_does_not_deadlock(faulty: FaultModule, token: str, tmp_path: Path) -> None:
    """The window closes while a module call sleeps 30 s: the process ends in seconds (its own process,
    so the sleeping worker is not left in the test's)."""
    script = tmp_path / "quit.py"
    script.write_text("\n".join([
        "import sys, time",
        "from PySide6.QtCore import QTimer",
        "from PySide6.QtWidgets import QApplication",
        "from cert_desk.pkcs11.discovery import discover_modules",
        "from cert_desk.services.tokens import TokenService",
        "from cert_desk.ui.app import make_context",
        "from cert_desk.ui.main_window import MainWindow",
        "class Only(TokenService):",
        "    def modules(self):",
        f"        return discover_modules([], registry_dirs=[], well_known=[], extra_paths=[{faulty.module!r}])",
        "app = QApplication(sys.argv[:1])",
        "ctx = make_context(Only())",
        "w = MainWindow(ctx)",
        "w.show()",
        "QTimer.singleShot(4000, w.close)",
        "app.exec()",
        "started = time.monotonic()",
        "ctx.shutdown()",
        "print(f'shutdown took {time.monotonic() - started:.1f} s', flush=True)",
        "",
    ]))
    faulty.set("C_GetSlotList:sleep=30@3")  # the Devices pane's listing hangs in the module
    env = faulty.env(QT_QPA_PLATFORM="offscreen")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert "shutdown took" in proc.stdout
    assert took < 20, (took, proc.stdout)  # well before the 30 s call returns
    assert any("sleep" in line for line in faulty.log())


def test_unknown_code_in_hex_in_the_objects_pane(qtbot: QtBot, fwindow: MainWindow, faulty: FaultModule) -> None:
    faulty.set("C_FindObjectsInit:0x80000042@1")
    fwindow.objects.refresh()
    qtbot.waitUntil(lambda: "0x80000042" in fwindow.objects.banner.text(), timeout=TIMEOUT)
