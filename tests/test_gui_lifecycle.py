"""The seed's flow in the window: Keys pane, certificate request, local CA, import (drag-and-drop),
verification, the pairing doctor, OpenSSL, renewal. A real Qt event loop (offscreen), real
SoftHSM2 tokens, and pkcs11-tool / openssl as the judges of what landed on the token.

Questions (QMessageBox) are answered by clicking their buttons, as a user would.
"""

from __future__ import annotations

import html
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QAbstractButton, QApplication, QMessageBox, QWidget, QWizard
from pytestqt.qtbot import QtBot

from cert_desk.services.tokens import TokenService
from cert_desk.ui.app import AppContext, make_context
from cert_desk.ui.ca_dialog import SignDialog
from cert_desk.ui.csr_dialog import CsrDialog
from cert_desk.ui.main_window import MainWindow
from cert_desk.x509 import ca as local_ca
from tests.conftest import USER_PIN, SoftHsm
from tests.reference import RefObject, parse_objects

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
def window(qtbot: QtBot, ctx: AppContext, softhsm: SoftHsm, token: str) -> MainWindow:
    """The window on 'test token', logged in through the PIN dialog."""
    w = MainWindow(ctx)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.devices.select_token(token), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: w.objects.model.listing is not None, timeout=TIMEOUT)
    idle(qtbot, w)
    w.objects.login()
    qtbot.waitUntil(lambda: w.objects.dialog is not None and w.objects.dialog.isVisible(), timeout=TIMEOUT)
    dialog = w.objects.dialog
    assert dialog is not None
    qtbot.keyClicks(dialog.pin, USER_PIN)
    dialog.ok_button.click()
    qtbot.waitUntil(lambda: w.keys.listing is not None and w.keys.listing.logged_in, timeout=TIMEOUT)
    idle(qtbot, w)
    return w


def idle(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: window.ctx.jobs.pending() == 0, timeout=TIMEOUT)


def objects(softhsm: SoftHsm, token: str) -> list[RefObject]:
    return sorted(parse_objects(softhsm.tool("--token-label", token, "-O", pin=USER_PIN).stdout))


class Answer:
    """Click ``button`` in the next question box that shows up (a user answering it)."""

    def __init__(self, button: str) -> None:
        self.button = button
        self.text = ""
        self.timer = QTimer()
        self.timer.setInterval(30)
        self.timer.timeout.connect(self._look)
        self.timer.start()

    def _look(self) -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            return
        for b in box.findChildren(QAbstractButton):
            if b.text() == self.button:
                self.text = html.unescape(box.text() + " " + box.informativeText())
                self.timer.stop()
                b.click()
                return

    @property
    def answered(self) -> bool:
        return not self.timer.isActive()


def generate(qtbot: QtBot, w: MainWindow, label: str, spec: str = "ec:prime256v1") -> None:
    keys = w.keys
    w.show_pane("Keys")
    qtbot.waitUntil(lambda: keys.type_combo.findData(spec) >= 0, timeout=TIMEOUT)
    keys.type_combo.setCurrentIndex(keys.type_combo.findData(spec))
    keys.label_edit.setText(label)
    keys.generate_button.click()
    qtbot.waitUntil(lambda: any(r.group.label == label for r in _rows(w)), timeout=TIMEOUT)
    idle(qtbot, w)


def _rows(w: MainWindow) -> list[object]:
    from cert_desk.ui.keys_pane import key_rows

    return key_rows(w.keys.listing) if w.keys.listing is not None else []  # type: ignore[return-value]


@pytest.fixture
def ca_files(tmp_path: Path) -> tuple[Path, Path]:
    key, cert = local_ca.make_root(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "GUI CA")]))
    ca_key, ca_cert = tmp_path / "ca.key", tmp_path / "ca.crt"
    ca_key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(b"ca pass")))
    ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return ca_cert, ca_key


# ------------------------------------------------------------------ Keys pane


def test_generate_in_the_keys_pane(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm, token: str) -> None:
    generate(qtbot, window, "alice")
    listed = [o for o in objects(softhsm, token) if o.label == "alice"]
    assert {o.cls for o in listed} == {"private_key", "public_key"} and len({o.id for o in listed}) == 1
    assert "Generated 'alice'" in window.keys.banner.text() and listed[0].id in window.keys.banner.text()
    # the Objects pane shows it too: one listing for all panes
    assert window.objects.model.listing is window.keys.listing


def test_a_used_label_asks_first(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm, token: str) -> None:
    generate(qtbot, window, "alice")
    before = objects(softhsm, token)
    answer = Answer("Cancel")
    window.keys.label_edit.setText("alice")
    window.keys.generate_button.click()
    qtbot.waitUntil(lambda: answer.answered, timeout=TIMEOUT)
    idle(qtbot, window)
    assert "already use this label" in answer.text and objects(softhsm, token) == before
    answer = Answer("Generate anyway")
    window.keys.label_edit.setText("alice")
    window.keys.generate_button.click()
    qtbot.waitUntil(lambda: answer.answered, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: len(objects(softhsm, token)) == len(before) + 2, timeout=TIMEOUT)


def test_key_types_the_token_lacks_are_shown_disabled(qtbot: QtBot, ctx: AppContext, softhsm: SoftHsm,
                                                      token: str) -> None:
    softhsm.conf.write_text(softhsm.conf.read_text() + "slots.mechanisms = CKM_RSA_PKCS_KEY_PAIR_GEN,CKM_RSA_PKCS\n")
    w = MainWindow(ctx)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.devices.select_token(token), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: w.keys.type_combo.count() == 6, timeout=TIMEOUT)
    model = w.keys.type_combo.model()
    ec = w.keys.type_combo.findData("ec:prime256v1")
    assert not model.item(ec).isEnabled()  # type: ignore[attr-defined]
    assert "CKM_EC_KEY_PAIR_GEN" in model.item(ec).toolTip()  # type: ignore[attr-defined]
    assert w.keys.type_combo.currentData() == "rsa:2048"


def test_delete_names_what_goes(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm, token: str) -> None:
    generate(qtbot, window, "keep")
    generate(qtbot, window, "drop")
    keys = window.keys
    drop = next(r for r in _rows(window) if r.group.label == "drop")  # type: ignore[attr-defined]
    assert keys.select_key(drop.group.id)
    answer = Answer("Delete")
    keys.delete_button.click()
    qtbot.waitUntil(lambda: answer.answered, timeout=TIMEOUT)
    assert "private key 'drop'" in answer.text and "public key 'drop'" in answer.text and "keep" not in answer.text
    qtbot.waitUntil(lambda: not any(o.label == "drop" for o in objects(softhsm, token)), timeout=TIMEOUT)
    assert {o.label for o in objects(softhsm, token)} == {"keep"}


# ------------------------------------------------------------------ CSR, local CA, import, verify


def make_request(qtbot: QtBot, w: MainWindow, key_label: str, fields: dict[str, str]) -> CsrDialog:
    w.show_pane("Keys")
    row = next(r for r in _rows(w) if r.group.label == key_label)  # type: ignore[attr-defined]
    w.keys.select_key(row.group.id)
    w.keys.csr_button.click()
    qtbot.waitUntil(lambda: isinstance(w.certificates.dialog, CsrDialog), timeout=TIMEOUT)
    dialog = w.certificates.dialog
    assert isinstance(dialog, CsrDialog)
    assert dialog.selected_key() is not None and dialog.selected_key().label == key_label  # type: ignore[union-attr]
    for attr, value in fields.items():
        dialog.editor.edits[attr].setText(value)
    return dialog


def test_request_sign_import_and_verify(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm, token: str,
                                       tmp_path: Path, ca_files: tuple[Path, Path]) -> None:
    generate(qtbot, window, "colin", "rsa:2048")
    dialog = make_request(qtbot, window, "colin", {"C": "UK", "O": "HW", "CN": "colinpaice"})
    # the DN builder checks as the user types: 'UK' is not a country code
    assert not dialog.make_button.isEnabled() and "GB" in dialog.editor.preview.text()
    dialog.editor.edits["C"].setText("GB")
    dialog.editor.sans.setPlainText("DNS:colin.example\nemail:colin@example.org")
    assert dialog.make_button.isEnabled() and "/C=GB/O=HW/CN=colinpaice" in dialog.editor.preview.text()
    dialog.make_button.click()
    qtbot.waitUntil(lambda: dialog.csr is not None, timeout=TIMEOUT)
    saved = tmp_path / "colin.csr"
    assert dialog.save_to(str(saved))
    check = subprocess.run(["openssl", "req", "-in", str(saved), "-noout", "-verify", "-text"], capture_output=True,
                           text=True, check=False)
    assert "verify OK" in check.stdout + check.stderr and "DNS:colin.example" in check.stdout

    dialog.sign_button.click()
    qtbot.waitUntil(lambda: isinstance(dialog.sign_dialog, SignDialog) and dialog.sign_dialog.isVisible(),
                    timeout=TIMEOUT)
    sign = dialog.sign_dialog
    assert sign is not None
    sign.ca_cert.setText(str(ca_files[0]))
    sign.ca_key.setText(str(ca_files[1]))
    sign.sign_button.click()  # no passphrase: the encrypted key is refused with a reason
    qtbot.waitUntil(lambda: "encrypted" in sign.banner.text(), timeout=TIMEOUT)
    sign.passphrase.setText("ca pass")
    sign.sign_button.click()
    qtbot.waitUntil(lambda: sign.certificate is not None, timeout=TIMEOUT)
    assert sign.passphrase.text() == ""  # taken once, then cleared
    sign.import_button.click()
    certs = window.certificates
    qtbot.waitUntil(lambda: certs.table.topLevelItemCount() == 1, timeout=TIMEOUT)
    idle(qtbot, window)
    key_id = next(o.id for o in objects(softhsm, token) if o.label == "colin")
    assert RefObject("certificate", "colin", key_id) in objects(softhsm, token)
    assert "key's ID" in certs.banner.text()
    item = certs.table.topLevelItem(0)
    assert item is not None and item.text(0) == "colinpaice" and item.text(3) == "colin" and item.text(4) == "ok"
    certs.table.setCurrentItem(item)
    certs.verify_selected([str(ca_files[0])])
    qtbot.waitUntil(lambda: "Chain verified" in certs.banner.text(), timeout=TIMEOUT)
    assert "GUI CA" in certs.details.toPlainText()


def drop_file(widget: QWidget, path: Path) -> None:
    """Drag a file over ``widget`` and drop it, as the desktop's file manager does."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    with warnings.catch_warnings():  # PySide6 marks the only QDragEnterEvent constructor deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier)
    assert QApplication.sendEvent(widget, enter) and enter.isAccepted(), "the pane refused the drag"
    drop = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    assert QApplication.sendEvent(widget, drop)


def _issue(softhsm: SoftHsm, token: str, key_id: str, tmp_path: Path, ca_files: tuple[Path, Path],
           **kwargs: object) -> Path:
    pub = tmp_path / f"{key_id}.pub"
    softhsm.tool("--token-label", token, "--read-object", "--type", "pubkey", "--id", key_id, "-o", str(pub))
    ca_key = serialization.load_pem_private_key(ca_files[1].read_bytes(), b"ca pass")
    ca_cert = x509.load_pem_x509_certificate(ca_files[0].read_bytes())
    cert = local_ca.issue(ca_key, ca_cert, serialization.load_der_public_key(pub.read_bytes()),  # type: ignore[arg-type]
                          x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dropped")]), **kwargs)  # type: ignore[arg-type]
    out = tmp_path / f"{key_id}.pem"
    out.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + ca_files[0].read_bytes())
    return out


def test_drop_a_certificate_file_to_import_it(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm, token: str,
                                             tmp_path: Path, ca_files: tuple[Path, Path]) -> None:
    generate(qtbot, window, "dropper")
    key_id = next(o.id for o in objects(softhsm, token) if o.label == "dropper")
    bundle = _issue(softhsm, token, key_id, tmp_path, ca_files)  # the leaf and its CA
    window.show_pane("Certificates")
    answer = Answer("Only my certificate")
    drop_file(window.certificates, bundle)
    qtbot.waitUntil(lambda: answer.answered, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: window.certificates.table.topLevelItemCount() == 1, timeout=TIMEOUT)
    certs = [o for o in objects(softhsm, token) if o.cls == "certificate"]
    assert certs == [RefObject("certificate", "dropper", key_id)]
    # garbage dropped: a reason, nothing written
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    drop_file(window.certificates, junk)
    qtbot.waitUntil(lambda: window.certificates.banner.kind == "error", timeout=TIMEOUT)
    assert [o for o in objects(softhsm, token) if o.cls == "certificate"] == certs


def test_an_expired_certificate_needs_a_yes(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm, token: str,
                                           tmp_path: Path, ca_files: tuple[Path, Path]) -> None:
    from datetime import UTC, datetime, timedelta

    generate(qtbot, window, "late")
    key_id = next(o.id for o in objects(softhsm, token) if o.label == "late")
    now = datetime.now(UTC)
    expired = _issue(softhsm, token, key_id, tmp_path, ca_files, not_before=now - timedelta(days=30),
                     not_after=now - timedelta(days=1))
    window.show_pane("Certificates")
    answers = [Answer("Only my certificate"), Answer("Cancel")]
    window.certificates.import_file(str(expired))
    qtbot.waitUntil(lambda: all(a.answered for a in answers), timeout=TIMEOUT)
    idle(qtbot, window)
    assert "expired on" in answers[1].text
    assert not [o for o in objects(softhsm, token) if o.cls == "certificate"]
    answers = [Answer("Only my certificate"), Answer("Import anyway")]
    window.certificates.import_file(str(expired))
    qtbot.waitUntil(lambda: [o for o in objects(softhsm, token) if o.cls == "certificate"] != [], timeout=TIMEOUT)
    qtbot.waitUntil(lambda: window.certificates.table.topLevelItemCount() == 1, timeout=TIMEOUT)
    item = window.certificates.table.topLevelItem(0)
    assert item is not None and item.text(4) != "ok"  # the check says what is wrong: it expired


# ------------------------------------------------------------------ doctor, OpenSSL, renewal


def test_pairing_doctor_fixes_a_certificate_under_the_wrong_id(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm,
                                                               token: str, tmp_path: Path,
                                                               ca_files: tuple[Path, Path]) -> None:
    generate(qtbot, window, "eve")
    key_id = next(o.id for o in objects(softhsm, token) if o.label == "eve")
    pem = _issue(softhsm, token, key_id, tmp_path, ca_files)
    der = tmp_path / "eve.der"
    der.write_bytes(x509.load_pem_x509_certificate(pem.read_bytes()).public_bytes(serialization.Encoding.DER))
    softhsm.tool("--token-label", token, "--write-object", str(der), "--type", "cert", "--id", "ee", "--label",
                 "wrong", pin=USER_PIN)
    window.objects.refresh()
    idle(qtbot, window)
    keys = window.keys
    keys.doctor_button.click()
    qtbot.waitUntil(lambda: keys.report is not None, timeout=TIMEOUT)
    assert keys.fix_button.isEnabled() and "belongs to the private key 'eve'" in keys.doctor_text.toPlainText()
    answer = Answer("Fix")
    keys.fix_button.click()
    qtbot.waitUntil(lambda: answer.answered, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: keys.report is not None and bool(keys.report.fixed), timeout=TIMEOUT)
    assert RefObject("certificate", "eve", key_id) in objects(softhsm, token)
    assert "pairs up" in keys.doctor_text.toPlainText() or "no certificate" not in keys.doctor_text.toPlainText()


def test_use_with_openssl_writes_a_config(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm, token: str,
                                         isolated_home: Path) -> None:
    from cert_desk.pkcs11.openssl_config import MARKER
    from cert_desk.ui.openssl_dialog import OpensslDialog

    generate(qtbot, window, "ossl")
    row = next(r for r in _rows(window) if r.group.label == "ossl")  # type: ignore[attr-defined]
    window.keys.select_key(row.group.id)
    window.keys.openssl_button.click()
    dialog = window.dialog
    assert isinstance(dialog, OpensslDialog)
    qtbot.waitUntil(lambda: dialog.setup is not None, timeout=TIMEOUT)
    assert "OPENSSL_CONF=" in dialog.view.toPlainText() and "openssl req" in dialog.view.toPlainText()
    dialog.write()
    qtbot.waitUntil(lambda: dialog.banner.kind == "ok", timeout=TIMEOUT)
    written = Path(dialog.conf.text())
    assert written.read_text().startswith(MARKER) and USER_PIN not in written.read_text()


def test_renewal_wizard_new_key_local_ca_and_clean_up(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm,
                                                      token: str, tmp_path: Path, ca_files: tuple[Path, Path]) -> None:
    from cert_desk.ui.renew_wizard import RenewWizard

    generate(qtbot, window, "old")
    old_id = next(o.id for o in objects(softhsm, token) if o.label == "old")
    answer = Answer("Only my certificate")
    window.certificates.import_file(str(_issue(softhsm, token, old_id, tmp_path, ca_files)))
    qtbot.waitUntil(lambda: answer.answered, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: window.certificates.table.topLevelItemCount() == 1, timeout=TIMEOUT)
    window.show_pane("Certificates")
    window.certificates.table.setCurrentItem(window.certificates.table.topLevelItem(0))
    window.certificates.renew_button.click()
    wizard = window.dialog
    assert isinstance(wizard, RenewWizard)
    assert wizard.pick.chosen() is not None
    wizard.next()  # -> key
    qtbot.waitUntil(lambda: wizard.key.type_combo.count() > 0, timeout=TIMEOUT)
    assert wizard.key.fresh.isChecked() and wizard.key.label_edit.text().startswith("old-")
    wizard.key.label_edit.setText("new")
    wizard.next()  # -> request, prefilled from the old certificate
    assert wizard.request.editor.edits["CN"].text() == "dropped"
    wizard.next()  # -> signing
    wizard.signing.ca_cert.setText(str(ca_files[0]))
    wizard.signing.ca_key.setText(str(ca_files[1]))
    wizard.signing.passphrase.setText("ca pass")
    wizard.next()  # -> the work
    qtbot.waitUntil(lambda: wizard.run_page.done or wizard.run_page.failed, timeout=30000)
    log = wizard.run_page.log.toPlainText()
    assert wizard.run_page.done, log
    assert "The chain verifies." in log and "pkcs11-tool" in log
    new_id = next(o.id for o in objects(softhsm, token) if o.label == "new" and o.cls == "private_key")
    assert RefObject("certificate", "new", new_id) in objects(softhsm, token)
    wizard.next()  # -> clean up
    wizard.cleanup.delete_cert.setChecked(True)
    wizard.cleanup.delete_key.setChecked(True)
    wizard.button(QWizard.WizardButton.FinishButton).click()
    qtbot.waitUntil(lambda: not wizard.isVisible(), timeout=TIMEOUT)
    idle(qtbot, window)
    left = objects(softhsm, token)
    assert {o.label for o in left} == {"new"} and {o.id for o in left} == {new_id}
    assert len(left) == 3  # private key, public key, certificate



def test_renewal_for_an_external_ca_saves_the_request(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm,
                                                      token: str, tmp_path: Path, ca_files: tuple[Path, Path]) -> None:
    """Keep the key, save the request for an external CA; its answer is imported later (Import…)."""
    from cert_desk.ui.renew_wizard import RenewWizard

    generate(qtbot, window, "ext")
    key_id = next(o.id for o in objects(softhsm, token) if o.label == "ext")
    answer = Answer("Only my certificate")
    window.certificates.import_file(str(_issue(softhsm, token, key_id, tmp_path, ca_files)))
    qtbot.waitUntil(lambda: answer.answered, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: window.certificates.table.topLevelItemCount() == 1, timeout=TIMEOUT)
    window.renew(window.certificates.checked[0].obj)
    wizard = window.dialog
    assert isinstance(wizard, RenewWizard)
    wizard.next()
    wizard.key.keep.setChecked(True)
    wizard.next()
    wizard.request.editor.edits["O"].setText("Renewed Ltd")
    wizard.next()
    wizard.signing.external.setChecked(True)
    out = tmp_path / "renewal.csr"
    wizard.signing.csr_path.setText(str(out))
    before = objects(softhsm, token)
    wizard.next()
    qtbot.waitUntil(lambda: wizard.run_page.done or wizard.run_page.failed, timeout=30000)
    assert wizard.run_page.done, wizard.run_page.log.toPlainText()
    check = subprocess.run(["openssl", "req", "-in", str(out), "-noout", "-verify", "-subject"], capture_output=True,
                           text=True, check=False)
    assert "verify OK" in check.stdout + check.stderr and "O = Renewed Ltd, CN = dropped" in check.stdout
    request = x509.load_pem_x509_csr(out.read_bytes())
    pub = tmp_path / "ext.pub"
    softhsm.tool("--token-label", token, "--read-object", "--type", "pubkey", "--id", key_id, "-o", str(pub))
    assert request.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo) == pub.read_bytes()
    assert objects(softhsm, token) == before  # nothing written: the CA has not answered yet
    wizard.next()
    assert not wizard.cleanup.delete_cert.isEnabled()
    wizard.button(QWizard.WizardButton.FinishButton).click()
    qtbot.waitUntil(lambda: not wizard.isVisible(), timeout=TIMEOUT)
