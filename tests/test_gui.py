"""The window on a real Qt event loop (offscreen), over the real services and real SoftHSM2 tokens.

Qt warnings fail these tests (pytest-qt's qt_log_level_fail). Fakes appear only where
SoftHSM2 cannot produce the state (a locked PIN, a final try, a PIN pad), and say so.
"""

from __future__ import annotations

import dataclasses
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QGuiApplication
from pytestqt.qtbot import QtBot

from cert_desk import errors as E
from cert_desk.models import TokenInfo, TokenSelector
from cert_desk.pkcs11.ck import CkFunctions
from cert_desk.pkcs11.module import LoadedModule, ThreadGuard
from cert_desk.services.outcome import Outcome
from cert_desk.services.tokens import TokenService
from cert_desk.ui.app import AppContext, make_context
from cert_desk.ui.main_window import MainWindow
from cert_desk.ui.objects_model import BrowserViewModel, ObjectsModel
from cert_desk.ui.pin_dialog import FINAL_TRY_TEXT, PinDialog
from tests.conftest import USER_PIN, SoftHsm, require_tool

TIMEOUT = 20000


@pytest.fixture(autouse=True)
def private_qsettings(isolated_home: Path) -> None:
    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(isolated_home / ".config"))


@pytest.fixture
def ctx(service: TokenService) -> Iterator[AppContext]:
    context = make_context(service)
    yield context
    context.jobs.close()
    context.tasks.shutdown()


@pytest.fixture
def window(qtbot: QtBot, ctx: AppContext) -> MainWindow:
    w = MainWindow(ctx)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w


def open_token(qtbot: QtBot, window: MainWindow, label: str) -> None:
    qtbot.waitUntil(lambda: window.devices.select_token(label), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: window.objects.model.listing is not None
                    and window.objects.model.listing.token.label == label, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: window.ctx.jobs.pending() == 0, timeout=TIMEOUT)


def idle(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: window.ctx.jobs.pending() == 0, timeout=TIMEOUT)


@pytest.fixture
def rsa_token(softhsm: SoftHsm, token: str, tmp_path: Path) -> str:
    """'test token' with an RSA key pair (ID 01) and its certificate, and an EC key pair (ID 02)."""
    from cryptography.x509.oid import NameOID

    from cert_desk.x509 import ca as local_ca

    softhsm.keypair(token, "alice", "01", "rsa:2048")
    softhsm.keypair(token, "bob", "02", "EC:prime256v1")
    pub = tmp_path / "pub.der"
    softhsm.tool("--token-label", token, "--read-object", "--type", "pubkey", "--id", "01", "-o", str(pub))
    ca_key, ca_cert = local_ca.make_root(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "GUI Test CA")]))
    cert = local_ca.issue(ca_key, ca_cert, serialization.load_der_public_key(pub.read_bytes()),  # type: ignore[arg-type]
                          x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Alice")]))
    der = tmp_path / "alice.der"
    der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    softhsm.tool("--token-label", token, "--write-object", str(der), "--type", "cert", "--id", "01",
                 "--label", "alice", pin=USER_PIN)
    return token


# ------------------------------------------------------------------ the adapter


def test_outcomes_arrive_on_the_gui_thread(qtbot: QtBot, ctx: AppContext, softhsm: SoftHsm, token: str) -> None:
    got: list[tuple[str, Outcome[object]]] = []

    def job(m: LoadedModule) -> str:
        return threading.current_thread().name

    ctx.jobs.watch(ctx.service.run(softhsm.module, job, "probe"),
                   lambda o: got.append((threading.current_thread().name, o)), "probe")
    ctx.jobs.watch(ctx.service.run(softhsm.module, lambda m: m.resolve(TokenSelector(label="nope")), "fail"),
                   lambda o: got.append((threading.current_thread().name, o)), "fail")
    qtbot.waitUntil(lambda: len(got) == 2, timeout=TIMEOUT)
    main = threading.main_thread().name
    assert [name for name, _ in got] == [main, main]
    assert got[0][1].value == "pkcs11:libsofthsm2.so"
    assert got[1][1].error is not None and "No initialised token" in got[1][1].error.message
    assert ctx.jobs.pending() == 0 and ctx.jobs.busy_text() == ""


# ------------------------------------------------------------------- the panes


def test_window_opens_on_the_demo_token(qtbot: QtBot, window: MainWindow) -> None:
    window.devices.open_demo()
    qtbot.waitUntil(lambda: window.objects.model.rowCount() == 3, timeout=30000)
    assert window.stack.currentWidget() is window.objects
    model = window.objects.model
    tops = {model.data(model.index(r, 1)): r for r in range(3)}
    assert set(tops) == {"demo-rsa", "demo-ec", "cert-desk Demo CA"}
    rsa = model.index(tops["demo-rsa"], 0)
    assert model.data(rsa) == "Key pair"  # not logged in: the private key is hidden, the pair is shown
    assert model.rowCount(rsa) == 2  # public key and certificate
    assert model.data(model.index(tops["demo-rsa"], 4)) == "Demo User RSA"
    assert "log in to see the private keys" in window.objects.header.subtitle.text()
    window.objects.filter.setText("Demo User EC")
    assert window.objects.model.rowCount() == 1
    window.objects.filter.clear()
    idle(qtbot, window)
    assert window.busy_label.text() == "Ready"


def test_devices_pane_shows_the_token_like_pkcs11_tool(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm,
                                                        rsa_token: str) -> None:
    window.devices.reload()
    open_token(qtbot, window, rsa_token)
    text = window.devices.details.toPlainText()
    for expected in ("Token label", rsa_token, "SoftHSM v2", "login required, rng, token initialized",
                     "4 to 255 characters", "User PIN", "CKM_RSA_PKCS_KEY_PAIR_GEN", "16384"):
        assert expected in text, expected
    assert "0x" not in text.split("Token flags")[1].split("\n")[0]  # flags in words, not hex
    module = window.devices.model.item(next(r for r in range(window.devices.model.rowCount())
                                            if window.devices.model.item(r).text() == "softhsm2"))
    window.devices.tree.setCurrentIndex(module.index())
    assert "Implementation of PKCS11" in window.devices.details.toPlainText()


def test_login_wrong_then_right_pin_then_logout(qtbot: QtBot, window: MainWindow, rsa_token: str) -> None:
    pane = window.objects
    window.devices.reload()
    open_token(qtbot, window, rsa_token)
    assert not any(o.class_name == "private_key" for o in pane.model.listing.objects)  # type: ignore[union-attr]
    pane.login_button.click()
    qtbot.waitUntil(lambda: pane.dialog is not None and pane.dialog.isVisible(), timeout=TIMEOUT)
    dialog = pane.dialog
    assert dialog is not None
    assert "ok" in dialog.state_label.text()
    qtbot.keyClicks(dialog.pin, "999999")
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert dialog.pin.text() == ""  # the dialog keeps no copy once the PIN is handed over
    qtbot.waitUntil(lambda: dialog.message.isVisible() and "Wrong PIN" in dialog.message.text(), timeout=TIMEOUT)
    # SoftHSM2 reports USER_PIN_COUNT_LOW after a wrong PIN: the dialog says what the token now says
    assert "few tries left" in dialog.state_label.text()
    assert dialog.isVisible() and not pane.logged_in
    qtbot.keyClicks(dialog.pin, USER_PIN)
    qtbot.keyClick(dialog.pin, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: pane.logged_in and pane.dialog is None, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: any(o.class_name == "private_key" for o in pane.model.listing.objects),  # type: ignore[union-attr]
                    timeout=TIMEOUT)
    assert not pane.logout_button.isHidden() and pane.login_button.isHidden()
    assert "logged in" in pane.header.subtitle.text()
    pane.logout_button.click()
    qtbot.waitUntil(lambda: not pane.logged_in and pane.model.listing is not None
                    and not any(o.class_name == "private_key" for o in pane.model.listing.objects), timeout=TIMEOUT)
    # the Activity panel has the commands, with the PIN as env:PIN and never its value
    records = window.activity.model.records()
    login = [r for r in records if r.description.startswith("log in")]
    assert len(login) == 2 and [r.ok for r in login] == [True, False]
    assert all("--pin env:PIN" in (r.command or "") for r in login)
    assert not any(USER_PIN in (r.command or "") or "999999" in (r.command or "") for r in records)


def _token_info(**changes: object) -> TokenInfo:
    base = TokenInfo(
        label="fake", manufacturer="m", model="x", serial="1", flags=0x40D, flag_words=(), max_sessions=None,
        sessions=None, max_rw_sessions=None, rw_sessions=None, min_pin_len=6, max_pin_len=15,
        total_public_memory=None, free_public_memory=None, total_private_memory=None, free_private_memory=None,
        hardware_version="1.0", firmware_version="1.0", utc_time=None, user_pin=E.PinState.OK,
        so_pin=E.PinState.OK, initialized=True, login_required=True, protected_authentication_path=False,
        write_protected=False)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_pin_dialog_rules(qtbot: QtBot) -> None:
    """A fake TokenInfo: SoftHSM2 never reports a final try, a locked PIN or a PIN pad."""
    d = PinDialog(_token_info())
    qtbot.addWidget(d)
    submitted: list[object] = []
    d.submitted.connect(submitted.append)
    assert d.limits.text() == "6 to 15 characters" and d.pin.maxLength() == 15
    qtbot.keyClicks(d.pin, "12345")
    assert not d.ok_button.isEnabled()
    qtbot.keyClicks(d.pin, "6")
    assert d.ok_button.isEnabled()
    d.ok_button.click()
    assert len(submitted) == 1 and "123456" not in repr(submitted[0]) and d.pin.text() == ""

    final = PinDialog(_token_info(user_pin=E.PinState.FINAL_TRY))
    qtbot.addWidget(final)
    qtbot.keyClicks(final.pin, "123456")
    assert final.final_try.isVisible() is False or final.final_try.text() == FINAL_TRY_TEXT
    assert not final.ok_button.isEnabled()
    final.final_try.setChecked(True)
    assert final.ok_button.isEnabled() and final.allow_final_try

    low = PinDialog(_token_info(user_pin=E.PinState.COUNT_LOW))
    qtbot.addWidget(low)
    assert "few tries left" in low.message.text()

    locked = PinDialog(_token_info(user_pin=E.PinState.LOCKED))
    qtbot.addWidget(locked)
    qtbot.keyClicks(locked.pin, "123456")
    assert not locked.pin.isEnabled() and not locked.ok_button.isEnabled() and "locked" in locked.message.text()

    pad = PinDialog(_token_info(protected_authentication_path=True))
    qtbot.addWidget(pad)
    pad.show()
    assert not pad.pin.isVisible() and "PIN pad" in pad.intro.text() and pad.ok_button.isEnabled()
    got: list[object] = []
    pad.submitted.connect(got.append)
    pad.ok_button.click()
    assert got == [None]


def _select(pane: object, label: str, cls: str | None = None) -> None:
    model: ObjectsModel = pane.model  # type: ignore[attr-defined]
    for r in range(model.rowCount()):
        top = model.index(r, 0)
        candidates = [top] + [model.index(c, 0, top) for c in range(model.rowCount(top))]
        for idx in candidates:
            obj = model.data(idx, ObjectsModel.ObjectRole)
            group = model.data(idx, ObjectsModel.GroupRole)
            if cls is None and group is not None and group.label == label:
                pane.tree.setCurrentIndex(idx)  # type: ignore[attr-defined]
                return
            if cls is not None and obj is not None and obj.label == label and obj.class_name == cls:
                pane.tree.setCurrentIndex(idx)  # type: ignore[attr-defined]
                return
    raise AssertionError(f"no {cls or 'group'} {label!r}")


def test_details_copy_and_export(qtbot: QtBot, window: MainWindow, rsa_token: str, tmp_path: Path) -> None:
    require_tool("openssl")
    pane = window.objects
    window.devices.reload()
    open_token(qtbot, window, rsa_token)
    listing = pane.model.listing
    assert listing is not None
    cert = next(o for o in listing.objects if o.class_name == "certificate")
    pub = next(o for o in listing.objects if o.class_name == "public_key" and o.id_hex == "01")
    _select(pane, "alice")  # the key pair row
    details = pane.details.toPlainText()
    assert "belong together" in details and "CN=Alice" in details and "-----BEGIN CERTIFICATE-----" in details
    clipboard = QGuiApplication.clipboard()
    pane.copy_uri.click()
    assert clipboard.text() == pub.uri and ";id=%01;" in clipboard.text()
    pane.copy_openssl.click()
    assert clipboard.text().splitlines() == list(pub.openssl_key)
    assert clipboard.text().splitlines()[0] == f"{listing.token.slot_id}:01"
    _select(pane, "alice", "certificate")
    assert "All attributes" in pane.details.toPlainText() and "CKA_CERTIFICATE_TYPE" in pane.details.toPlainText()
    pane.copy_pem.click()
    assert x509.load_pem_x509_certificate(clipboard.text().encode()).subject.rfc4514_string() == "CN=Alice"
    assert cert.certificate is not None
    for fmt in ("pem", "der"):
        path = tmp_path / f"alice.{fmt}"
        pane.export_certificate(str(path), fmt)
        qtbot.waitUntil(path.exists, timeout=TIMEOUT)
        out = subprocess.run(["openssl", "x509", "-inform", fmt.upper(), "-in", str(path), "-noout", "-subject",
                              "-fingerprint", "-sha256"], capture_output=True, text=True, check=True).stdout
        assert "CN = Alice" in out and cert.certificate.sha256_fingerprint in out
        key_path = tmp_path / f"alice.pub.{fmt}"
        pane.export_public_key(str(key_path), fmt)
        qtbot.waitUntil(key_path.exists, timeout=TIMEOUT)
        der = subprocess.run(["openssl", "pkey", "-pubin", "-inform", fmt.upper(), "-in", str(key_path),
                              "-outform", "DER"], capture_output=True, check=True).stdout
        assert der == pub.public_key_der
    idle(qtbot, window)
    exports = [r for r in window.activity.model.records() if r.description.startswith("export")]
    assert len(exports) == 4 and all(r.ok for r in exports)
    assert all("pkcs11-tool" in (r.command or "") and "--read-object" in (r.command or "") for r in exports)
    # a public key alone can be exported, a private EC key without its public object cannot be guessed
    _select(pane, "bob", "public_key")
    assert pane.export_key.isEnabled() and not pane.export_cert.isEnabled() and not pane.copy_pem.isEnabled()


def test_browser_view_lists_certificates_like_a_chooser(qtbot: QtBot, window: MainWindow) -> None:
    window.devices.open_demo()
    qtbot.waitUntil(lambda: window.objects.browser_model.rowCount() == 3, timeout=30000)
    pane = window.objects
    pane.browser_button.click()
    assert pane.views.currentWidget() is pane.browser
    m = pane.browser_model
    rows = [tuple(m.data(m.index(r, c)) for c in range(3)) for r in range(3)]
    assert [r[0] for r in rows] == ["Demo User EC", "Demo User RSA", "cert-desk Demo CA"]
    assert all(r[1] == "cert-desk Demo CA" for r in rows)
    # the CA certificate has no private key on the token: a browser would not offer it
    assert m.data(m.index(2, 0), Qt.ItemDataRole.ForegroundRole) is not None
    assert "will not offer" in m.data(m.index(2, 0), Qt.ItemDataRole.ToolTipRole)
    pane.browser.selectRow(1)
    assert "Demo User RSA" in pane.details.toPlainText()
    assert isinstance(m, BrowserViewModel)


def test_every_token_call_runs_on_a_module_worker(qtbot: QtBot, window: MainWindow, rsa_token: str,
                                                  monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    threads: set[str] = set()
    real_call = CkFunctions._call
    real_check = ThreadGuard.check

    def spy_call(self: CkFunctions, name: str, *args: object) -> int:
        threads.add(threading.current_thread().name)
        return real_call(self, name, *args)

    def spy_check(self: ThreadGuard, what: str) -> None:
        threads.add(threading.current_thread().name)
        real_check(self, what)

    monkeypatch.setattr(CkFunctions, "_call", spy_call)
    monkeypatch.setattr(ThreadGuard, "check", spy_check)
    pane = window.objects
    window.devices.reload()
    open_token(qtbot, window, rsa_token)
    pane.login_button.click()
    qtbot.waitUntil(lambda: pane.dialog is not None, timeout=TIMEOUT)
    assert pane.dialog is not None
    qtbot.keyClicks(pane.dialog.pin, USER_PIN)
    pane.dialog.ok_button.click()
    qtbot.waitUntil(lambda: pane.logged_in, timeout=TIMEOUT)
    idle(qtbot, window)
    _select(pane, "alice", "certificate")
    pane.export_certificate(str(tmp_path / "c.pem"), "pem")
    pane.logout_button.click()
    qtbot.waitUntil(lambda: not pane.logged_in, timeout=TIMEOUT)
    idle(qtbot, window)
    assert threads and all(t.startswith("pkcs11:") for t in threads), threads


def test_token_removed_while_shown(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm, rsa_token: str) -> None:
    """The token in the slot is replaced (re-initialised under another label): no stale data, a clear word."""
    pane = window.objects
    window.devices.reload()
    open_token(qtbot, window, rsa_token)
    assert pane.model.rowCount() > 0
    ref = pane.ref
    assert ref is not None

    def replace_token(m: LoadedModule) -> None:
        m.forget_slot(ref.slot_id)
        m.ck.init_token(ref.slot_id, b"12345678", "someone else")

    window.ctx.service.run(softhsm.module, replace_token, "replace").result()
    pane.refresh_button.click()
    qtbot.waitUntil(lambda: not pane.banner.isHidden() and "removed" in pane.banner.text(), timeout=TIMEOUT)
    assert "now holds token 'someone else'" in pane.banner.text()
    assert pane.model.rowCount() == 0 and pane.browser_model.rowCount() == 0
    assert not pane.login_button.isEnabled()
    # Refresh finds the device again by its serial: it is the same token, re-initialised, now empty
    pane.refresh_button.click()
    qtbot.waitUntil(lambda: pane.ref is not None and pane.ref.label == "someone else", timeout=TIMEOUT)
    idle(qtbot, window)
    assert pane.banner.isHidden() and pane.model.rowCount() == 0
    assert pane.header.title.text() == "Objects — someone else"


def test_a_module_that_fails_to_load_is_shown(qtbot: QtBot, ctx: AppContext, softhsm: SoftHsm, token: str,
                                              tmp_path: Path) -> None:
    bad = tmp_path / "broken-pkcs11.so"
    bad.write_text("not a library")
    ctx.service.settings.module_paths.append(str(bad))
    w = MainWindow(ctx)
    qtbot.addWidget(w)
    qtbot.waitUntil(lambda: any("is not a PKCS#11 module" in t for t in w.devices.token_rows()), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: any(t.startswith(token) for t in w.devices.token_rows()), timeout=TIMEOUT)


def test_odd_objects_are_shown(qtbot: QtBot, softhsm: SoftHsm, token: str, window: MainWindow,
                               tmp_path: Path) -> None:
    """Empty and non-UTF-8 labels, an empty CKA_ID, a certificate larger than the listing's buffer."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from pkcs11 import Attribute, CertificateType, ObjectClass

    from cert_desk.secrets import Secret
    from cert_desk.x509 import ca as local_ca

    key = ec.generate_private_key(ec.SECP256R1())
    ca_key, ca_cert = local_ca.make_root(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Odd CA")]))
    sans = [x509.DNSName(f"host{i:04d}.a-rather-long-domain-name.example") for i in range(200)]
    big = local_ca.issue(ca_key, ca_cert, key.public_key(), x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                         "Huge")]), sans=sans)
    big_der = big.public_bytes(serialization.Encoding.DER)
    assert len(big_der) > 8192

    def create(m: LoadedModule) -> None:
        ref = m.resolve(TokenSelector(label=token))
        m.login(ref, Secret(USER_PIN, "test"))
        s = m.pkcs11_session(ref)
        base = {Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                Attribute.TOKEN: True, Attribute.VALUE: big_der, Attribute.SUBJECT: big.subject.public_bytes()}
        s.create_object({**base, Attribute.LABEL: "", Attribute.ID: b""})
        s.create_object({Attribute.CLASS: ObjectClass.DATA, Attribute.TOKEN: True, Attribute.PRIVATE: False,
                         Attribute.LABEL: "x", Attribute.VALUE: b"1"})
        m.logout(ref)

    window.ctx.service.run(softhsm.module, create, "create odd objects").result()
    # a label that is not UTF-8, written by the reference tool
    data = tmp_path / "d.bin"
    data.write_bytes(b"odd")
    env = softhsm.env(P11_PIN=USER_PIN)
    subprocess.run([b"pkcs11-tool", b"--module", softhsm.module.encode(), b"--token-label", token.encode(),
                    b"--login", b"--pin", b"env:P11_PIN", b"--write-object", str(data).encode(), b"--type", b"data",
                    b"--label", b"caf\xe9 \xff"], env=env, check=True, capture_output=True)
    window.devices.reload()
    open_token(qtbot, window, token)
    listing = window.objects.model.listing
    assert listing is not None
    labels = {o.label for o in listing.objects}
    assert "" in labels and any("\ufffd" in label for label in labels)
    odd = next(o for o in listing.objects if "\ufffd" in o.label)
    assert "object=caf%E9%20%FF;" in odd.uri  # the URI names the token's bytes, not what is shown
    huge = next(o for o in listing.objects if o.certificate is not None)
    assert huge.certificate is not None and huge.certificate.subject_cn == "Huge" and huge.id == b""
    assert len(huge.certificate.subject_alt_names) == 200
    for r in range(window.objects.model.rowCount()):
        window.objects.tree.setCurrentIndex(window.objects.model.index(r, 0))
        assert window.objects.details.toPlainText()


def test_window_remembers_geometry_and_pane(qtbot: QtBot, ctx: AppContext, softhsm: SoftHsm) -> None:
    first = MainWindow(ctx)
    qtbot.addWidget(first)
    first.show()
    first.resize(770, 560)  # within the offscreen screen (800x600)
    from PySide6.QtWidgets import QApplication

    first.windowHandle().requestActivate()  # offscreen, nothing activates a new window by itself
    qtbot.waitUntil(lambda: QApplication.activeWindow() is first)
    qtbot.keyClick(first.nav, Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier)  # Ctrl+2: Objects
    assert first.stack.currentWidget() is first.objects
    size = (first.width(), first.height())
    first.close()
    second = MainWindow(ctx)
    qtbot.addWidget(second)
    assert second.stack.currentWidget() is second.objects
    assert second.height() == size[1] == 560  # (the offscreen screen is 800 wide: widths get clamped)


def test_state_colours_follow_a_dark_palette(qtbot: QtBot) -> None:
    from PySide6.QtGui import QColor, QPalette
    from PySide6.QtWidgets import QApplication

    from cert_desk.ui import style

    app = QApplication.instance()
    assert isinstance(app, QApplication)
    original = app.palette()
    light_ok = style.state_hex("ok")
    dark = QPalette(original)
    dark.setColor(QPalette.ColorRole.Window, QColor("#202124"))
    dark.setColor(QPalette.ColorRole.WindowText, QColor("#e8eaed"))
    try:
        app.setPalette(dark)
        assert style.is_dark() and style.state_hex("ok") != light_ok
        style.retheme()
        assert not style.icon("keys").isNull()
    finally:
        app.setPalette(original)
        style.retheme()


# ------------------------------------------------ regressions found in review


def test_pin_dialog_keeps_no_undo_history(qtbot: QtBot) -> None:
    d = PinDialog(_token_info())
    qtbot.addWidget(d)
    qtbot.keyClicks(d.pin, "654321")
    d.ok_button.click()
    assert d.pin.text() == "" and not d.pin.isUndoAvailable()


def test_login_twice_opens_one_dialog_for_the_token_shown(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm,
                                                          rsa_token: str) -> None:
    pane = window.objects
    window.devices.reload()
    open_token(qtbot, window, rsa_token)
    pane.login()
    pane.login()  # a double click while the PIN state is read
    qtbot.waitUntil(lambda: pane.dialog is not None, timeout=TIMEOUT)
    idle(qtbot, window)
    dialogs = [w for w in pane.findChildren(PinDialog) if w.isVisible()]
    assert len(dialogs) == 1
    dialogs[0].reject()
    qtbot.waitUntil(lambda: pane.dialog is None, timeout=TIMEOUT)
    # pressing Log in and choosing another token before the dialog appears: no dialog for the old token
    pane.login()
    window.devices.open_demo()
    qtbot.waitUntil(lambda: pane.ref is not None and pane.ref.label == "cert-desk demo", timeout=30000)
    idle(qtbot, window)
    assert pane.dialog is None


def test_devices_refresh_ends_the_objects_login(qtbot: QtBot, window: MainWindow, rsa_token: str) -> None:
    pane = window.objects
    window.devices.reload()
    open_token(qtbot, window, rsa_token)
    pane.login_button.click()
    qtbot.waitUntil(lambda: pane.dialog is not None, timeout=TIMEOUT)
    assert pane.dialog is not None
    qtbot.keyClicks(pane.dialog.pin, USER_PIN)
    pane.dialog.ok_button.click()
    qtbot.waitUntil(lambda: pane.logged_in, timeout=TIMEOUT)
    idle(qtbot, window)
    window.devices.refresh_button.click()
    qtbot.waitUntil(lambda: not pane.logged_in and pane.model.listing is not None
                    and not pane.model.listing.logged_in, timeout=TIMEOUT)
    assert "logged in" not in pane.header.subtitle.text()


def test_browser_view_and_tree_agree_and_both_filter(qtbot: QtBot, window: MainWindow) -> None:
    pane = window.objects
    window.devices.open_demo()
    qtbot.waitUntil(lambda: pane.browser_model.rowCount() == 3, timeout=30000)
    pane.browser_button.click()
    pane.browser.selectRow(2)  # the CA certificate
    assert "cert-desk Demo CA" in pane.details.toPlainText()
    pane.browser_button.click()  # back to the tree: the details follow the tree's selection
    index = pane.tree.currentIndex()
    shown = pane.model.data(index, ObjectsModel.GroupRole) or pane.model.data(index, ObjectsModel.ObjectRole)
    assert shown is not None and shown.label in pane.details.toPlainText().split("\n")[0]
    pane.browser_button.click()
    pane.filter.setText("Demo User EC")
    assert pane.browser_model.rowCount() == 1
    pane.filter.clear()


def test_folding_survives_sorting_and_serials_sort_as_numbers(qtbot: QtBot, window: MainWindow) -> None:
    pane = window.objects
    window.devices.open_demo()
    qtbot.waitUntil(lambda: pane.model.rowCount() == 3, timeout=30000)
    idle(qtbot, window)
    model = pane.model
    pair = next(model.index(r, 0) for r in range(3) if model.data(model.index(r, 1)) == "demo-rsa")
    pane.tree.collapse(pair)
    pane.tree.sortByColumn(1, Qt.SortOrder.DescendingOrder)
    pair = next(model.index(r, 0) for r in range(3) if model.data(model.index(r, 1)) == "demo-rsa")
    other = next(model.index(r, 0) for r in range(3) if model.data(model.index(r, 1)) == "demo-ec")
    assert not pane.tree.isExpanded(pair) and pane.tree.isExpanded(other)
    from cert_desk.ui.objects_model import Node

    short = Node(None, 0)
    long = Node(None, 1)
    cert = dataclasses.replace(pane.model.listing.objects[0].certificate or  # type: ignore[union-attr]
                               next(o.certificate for o in pane.model.listing.objects if o.certificate),  # type: ignore[union-attr,arg-type]
                               serial="A1AD")
    key_short = str(model._text(short, 6, cert, True))
    key_long = str(model._text(long, 6, dataclasses.replace(cert, serial="729D0"), True))
    assert key_short < key_long  # 0xA1AD < 0x729D0
