"""Sign a certificate request with a local CA (the seed's ``openssl ca`` step), and create one.

The CA's files are read, and its key decrypted, on a background thread; the passphrase is
asked for only when the key is encrypted, taken from its field once and the field cleared.
The certificate comes out with the end-entity profile browsers accept (never keyCertSign), and
can go straight to the token (written with its key's ID) or to a file.
"""

from __future__ import annotations

import html
import os
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from PySide6.QtCore import QDateTime, QSettings, QTimeZone, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDateTimeEdit,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from cert_desk import APP_NAME, equivalents
from cert_desk import errors as E
from cert_desk.services.outcome import Outcome
from cert_desk.ui import style
from cert_desk.ui.app import AppContext
from cert_desk.ui.widgets import Banner
from cert_desk.x509.bundle import load_csr, read_csr_file
from cert_desk.x509.ca import CaPaths, init_ca, load_ca, sign_csr
from cert_desk.x509.names import parse_subject, subject_text


def _settings() -> QSettings:
    return QSettings(APP_NAME, APP_NAME)


class PathField(QWidget):
    """A file path with a Browse… button."""

    def __init__(self, title: str, *, save: bool = False, directory: bool = False, name_filter: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edit = QLineEdit()
        self.button = QPushButton("Browse…")
        self._title, self._save, self._directory, self._filter = title, save, directory, name_filter
        self.button.clicked.connect(self._browse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.button)

    def _browse(self) -> None:
        start = self.edit.text() or os.path.expanduser("~")
        if self._directory:
            path = QFileDialog.getExistingDirectory(self, self._title, start)
        elif self._save:
            path, _ = QFileDialog.getSaveFileName(self, self._title, start, self._filter)
        else:
            path, _ = QFileDialog.getOpenFileName(self, self._title, start, self._filter)
        if path:
            self.edit.setText(path)

    def text(self) -> str:
        return os.path.expanduser(self.edit.text().strip())

    def setText(self, text: str) -> None:
        self.edit.setText(text)


class SignDialog(QDialog):
    """Sign a CSR (given, or read from a file) with a local CA.

    Signals:
        signed(bytes, bool): The certificate's PEM, and whether the user asked to import it to the token.
    """

    signed = Signal(bytes, bool)

    def __init__(self, ctx: AppContext, *, csr_pem: bytes | None = None, can_import: bool = True,
                 profile: str = "client", days: int = 365, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setWindowTitle("Sign with a local CA")
        self.setObjectName("signDialog")
        self.resize(640, 560)
        self.csr_pem = csr_pem
        self.certificate: x509.Certificate | None = None
        self.pem = b""
        self.new_ca_dialog: NewCaDialog | None = None
        s = _settings()
        self.csr_file = PathField("The certificate request", name_filter="Requests (*.csr *.pem *.der *.req);;All (*)")
        self.ca_cert = PathField("The CA certificate", name_filter="Certificates (*.crt *.pem *.cer *.der);;All (*)")
        self.ca_key = PathField("The CA key", name_filter="Keys (*.key *.pem);;All (*)")
        self.ca_cert.setText(str(s.value("ca/cert", "")))
        self.ca_key.setText(str(s.value("ca/key", "")))
        self.passphrase = QLineEdit()
        self.passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase.setPlaceholderText("only if the CA key is encrypted")
        self.profile = QComboBox()
        self.profile.addItem("Client (TLS client authentication: browsers, VPN)", "client")
        self.profile.addItem("Server (a TLS server's certificate)", "server")
        self.profile.setCurrentIndex(self.profile.findData(profile))
        self.by_days = QRadioButton("for")
        self.days = QSpinBox()
        self.days.setRange(1, 3650)
        self.days.setValue(days)
        self.days.setSuffix(" days")
        self.by_date = QRadioButton("until")
        self.until = QDateTimeEdit(QDateTime.currentDateTimeUtc().addDays(days))
        self.until.setTimeZone(QTimeZone.utc())
        self.until.setDisplayFormat("yyyy-MM-dd HH:mm 'UTC'")
        self.until.setCalendarPopup(True)
        self.by_days.setChecked(True)
        validity = QHBoxLayout()
        validity.addWidget(self.by_days)
        validity.addWidget(self.days)
        validity.addSpacing(style.SPACING * 2)
        validity.addWidget(self.by_date)
        validity.addWidget(self.until)
        validity.addStretch(1)
        new_ca = QPushButton("Create a new CA…")
        new_ca.clicked.connect(self._new_ca)

        form = QFormLayout()
        if csr_pem is None:
            form.addRow("Request (CSR)", self.csr_file)
        form.addRow("CA certificate", self.ca_cert)
        form.addRow("CA key", self.ca_key)
        form.addRow("", new_ca)
        form.addRow("CA key passphrase", self.passphrase)
        form.addRow("Profile", self.profile)
        form.addRow("Valid", validity)
        self.banner = Banner(self)
        self.result_view = QTextBrowser()
        self.result_view.setObjectName("signResult")
        self.buttons = QDialogButtonBox()
        self.sign_button = self.buttons.addButton("Sign", QDialogButtonBox.ButtonRole.ActionRole)
        style.themed(self.sign_button, "sign")
        self.import_button = self.buttons.addButton("Import to the token", QDialogButtonBox.ButtonRole.AcceptRole)
        style.themed(self.import_button, "upload")
        self.import_button.setVisible(can_import)
        self.save_button = self.buttons.addButton("Save…", QDialogButtonBox.ButtonRole.ActionRole)
        style.themed(self.save_button, "export")
        self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.sign_button.clicked.connect(self.sign)
        self.import_button.clicked.connect(self._import)
        self.save_button.clicked.connect(self._save)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.banner)
        layout.addWidget(self.result_view, 1)
        layout.addWidget(self.buttons)
        self._update()

    def _update(self) -> None:
        done = self.certificate is not None
        self.import_button.setEnabled(done)
        self.save_button.setEnabled(done)
        self.sign_button.setEnabled(not done)

    # ------------------------------------------------------------------ sign

    @Slot()
    def sign(self) -> None:
        cert_path, key_path, csr_path = self.ca_cert.text(), self.ca_key.text(), self.csr_file.text()
        if not cert_path or not key_path:
            self.banner.show_message("Choose the CA certificate and its key (or create a new CA).")
            return
        csr_pem = self.csr_pem
        if csr_pem is None and not csr_path:
            self.banner.show_message("Choose the certificate request to sign.")
            return
        secret = self.passphrase.text().encode("utf-8") or None
        self.passphrase.clear()
        profile = str(self.profile.currentData())
        days = self.days.value() if self.by_days.isChecked() else None
        not_after = None if self.by_days.isChecked() else datetime.fromtimestamp(
            self.until.dateTime().toSecsSinceEpoch(), UTC)

        def needs_passphrase() -> bytes | None:
            if secret is None:
                raise E.InputError(f"{os.path.basename(key_path)} is encrypted: type its passphrase.")
            return secret

        def task() -> bytes:
            csr = load_csr(csr_pem) if csr_pem is not None else read_csr_file(csr_path)
            ca = load_ca(cert_path, key_path, needs_passphrase)
            cert = sign_csr(ca, csr, profile=profile, days=days, not_after=not_after)
            return cert.public_bytes(serialization.Encoding.PEM)

        self.sign_button.setEnabled(False)
        self.banner.show_message("Signing…", "muted")
        self.ctx.jobs.watch(self.ctx.tasks.submit(task), lambda o: self._on_signed(cert_path, key_path, o),
                            "sign the request with the local CA",
                            command=equivalents.ca_sign(cert_path, key_path, csr_path or "request.csr",
                                                        "certificate.pem", profile), owner=self)

    def _on_signed(self, cert_path: str, key_path: str, outcome: Outcome[bytes]) -> None:
        self.sign_button.setEnabled(True)
        if outcome.error is not None:
            self.banner.show_message(str(outcome.error), "error")
            if "passphrase" in outcome.error.message:
                self.passphrase.setFocus()
            return
        pem = outcome.value
        assert pem is not None
        s = _settings()
        s.setValue("ca/cert", cert_path)
        s.setValue("ca/key", key_path)
        cert = x509.load_pem_x509_certificate(pem)
        self.certificate = cert
        self.pem = pem
        self.banner.show_message(
            f"Signed: {subject_text(cert.subject)}, valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC.",
            "ok")
        self.result_view.setHtml(f"<pre>{html.escape(pem.decode('ascii'))}</pre>")
        self._update()

    # ------------------------------------------------------------------ outputs

    def _import(self) -> None:
        if self.certificate is not None:
            self.signed.emit(self.pem, True)
            self.accept()

    def _save(self) -> None:
        if self.certificate is None:
            return
        cn = self.certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        name = (str(cn[0].value) if cn else "certificate").replace("/", "_") + ".pem"
        path, _ = QFileDialog.getSaveFileName(self, "Save the certificate", os.path.join(os.path.expanduser("~"), name),
                                              "PEM (*.pem *.crt)")
        if path:
            self.save_to(path)

    def save_to(self, path: str) -> None:
        try:
            with open(path, "wb") as fh:
                fh.write(self.pem)
        except OSError as e:
            self.banner.show_message(f"Cannot write {path}: {e.strerror}.", "error")
            return
        self.signed.emit(self.pem, False)
        self.banner.show_message(f"Saved {path}.", "ok")

    # ------------------------------------------------------------------ a new CA

    def _new_ca(self) -> None:
        dialog = NewCaDialog(self.ctx, self)
        dialog.created.connect(self._on_ca_created)
        dialog.open()
        self.new_ca_dialog = dialog

    @Slot(object)
    def _on_ca_created(self, paths: CaPaths) -> None:
        self.ca_cert.setText(paths.cert)
        self.ca_key.setText(paths.key)
        self.banner.show_message(f"Created the CA in {paths.directory}.", "ok")


class NewCaDialog(QDialog):
    """Create a small local CA: a key (encrypted with a passphrase) and a self-signed certificate.

    Signals:
        created(CaPaths): The files were written.
    """

    created = Signal(object)

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setWindowTitle("Create a local CA")
        self.setObjectName("newCaDialog")
        self.directory = PathField("The CA's directory (new or empty)", directory=True)
        self.directory.setText(os.path.join(os.path.expanduser("~"), "cert-desk-ca"))
        self.subject = QLineEdit("/O=Example/CN=Example CA")
        self.key_type = QComboBox()
        for spec, words in (("ec:prime256v1", "EC P-256"), ("ec:secp384r1", "EC P-384"), ("rsa:3072", "RSA 3072"),
                            ("rsa:4096", "RSA 4096")):
            self.key_type.addItem(words, spec)
        self.days = QSpinBox()
        self.days.setRange(30, 36500)
        self.days.setValue(3650)
        self.days.setSuffix(" days")
        self.passphrase = QLineEdit()
        self.passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        self.again = QLineEdit()
        self.again.setEchoMode(QLineEdit.EchoMode.Password)
        form = QFormLayout()
        form.addRow("Directory", self.directory)
        form.addRow("Subject", self.subject)
        form.addRow("Key", self.key_type)
        form.addRow("Valid for", self.days)
        form.addRow("Key passphrase", self.passphrase)
        form.addRow("Passphrase again", self.again)
        note = QLabel("The CA key is written encrypted with the passphrase, readable by you only (mode 0600). "
                      "Keep the directory safe: whoever has the key and its passphrase can issue certificates "
                      "your servers trust.")
        note.setWordWrap(True)
        self.banner = Banner(self)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.create_button = buttons.addButton("Create", QDialogButtonBox.ButtonRole.AcceptRole)
        self.create_button.clicked.connect(self.create_ca)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(self.banner)
        layout.addWidget(buttons)

    @Slot()
    def create_ca(self) -> None:
        first, second = self.passphrase.text(), self.again.text()
        self.passphrase.clear()
        self.again.clear()
        if not first:
            self.banner.show_message("Give the CA key a passphrase.")
            return
        if first != second:
            self.banner.show_message("The two passphrases differ.")
            return
        try:
            subject = parse_subject(self.subject.text())
        except E.InputError as err:
            self.banner.show_message(str(err), "error")
            return
        directory, key_type, days = self.directory.text(), str(self.key_type.currentData()), self.days.value()
        secret = first.encode("utf-8")

        def task() -> CaPaths:
            return init_ca(directory, subject, key_type=key_type, days=days, passphrase=secret)

        self.create_button.setEnabled(False)
        self.ctx.jobs.watch(self.ctx.tasks.submit(task), self._on_created, "create a local CA",
                            command=f"cert-desk ca init --dir {directory} --subject '{self.subject.text()}'",
                            owner=self)

    def _on_created(self, outcome: Outcome[CaPaths]) -> None:
        self.create_button.setEnabled(True)
        if outcome.error is not None:
            self.banner.show_message(str(outcome.error), "error")
            return
        self.created.emit(outcome.value)
        self.accept()


def default_validity(cert: x509.Certificate | None) -> int:
    """A renewal keeps the old certificate's validity length (at least 30 days, at most 3 years)."""
    if cert is None:
        return 365
    span: timedelta = cert.not_valid_after_utc - cert.not_valid_before_utc
    return max(30, min(1095, span.days))

