"""A certificate request for an on-token key: pick the key, build the subject, sign on the token.

The result can be saved for an external CA, copied, or signed at once by a local CA and then
imported to the token (the Certificates pane does the import).
"""

from __future__ import annotations

import html
import os
import shlex

from PySide6.QtCore import Signal, Slot
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QPlainTextEdit,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from cert_desk import equivalents
from cert_desk.models import CsrResult, ObjectInfo, ObjectListing
from cert_desk.pkcs11 import constants as C
from cert_desk.services.outcome import Outcome
from cert_desk.ui import style
from cert_desk.ui.app import AppContext
from cert_desk.ui.ca_dialog import SignDialog
from cert_desk.ui.dn_editor import DnEditor
from cert_desk.ui.widgets import Banner


def key_label(o: ObjectInfo) -> str:
    kind = f"{o.key_type} {o.curve or o.bits or ''}".strip() if o.key_type else "key"
    return f"{o.label or '(no label)'} — {kind}, ID {o.id_hex or 'none'}"


class CsrDialog(QDialog):
    """Make a CSR signed by a key on the token.

    Signals:
        import_requested(bytes): A local CA signed the request; import this PEM to the token.
    """

    import_requested = Signal(bytes)

    def __init__(self, ctx: AppContext, listing: ObjectListing, key: ObjectInfo | None = None, *,
                 subject: str | None = None, sans: list[str] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.listing = listing
        self.csr: CsrResult | None = None
        self.sign_dialog: SignDialog | None = None
        self.setObjectName("csrDialog")
        self.setWindowTitle(f"Certificate request — {listing.token.label}")
        self.resize(720, 760)
        self.keys = [o for o in listing.objects if o.object_class == C.CKO_PRIVATE_KEY]
        self.key_combo = QComboBox()
        self.key_combo.setObjectName("csrKey")
        for o in self.keys:
            self.key_combo.addItem(key_label(o), o.handle)
        if key is not None:
            self.key_combo.setCurrentIndex(self.key_combo.findData(key.handle))
        self.editor = DnEditor()
        if subject is not None:
            self.editor.set_subject(subject, sans)
        self.editor.changed.connect(self._update)
        form = QFormLayout()
        form.addRow("Key on the token", self.key_combo)
        subject_box = QGroupBox("Subject")
        sl = QVBoxLayout(subject_box)
        sl.addWidget(self.editor)
        self.banner = Banner(self)
        self.output = QTextBrowser()
        self.output.setObjectName("csrOutput")
        self.commands = QPlainTextEdit()
        self.commands.setObjectName("csrCommands")
        self.commands.setReadOnly(True)
        self.commands.setPlaceholderText("The same with OpenSSL appears here.")
        self.commands.setFixedHeight(self.fontMetrics().lineSpacing() * 5 + 12)
        self.commands.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.buttons = QDialogButtonBox()
        self.make_button = self.buttons.addButton("Make request", QDialogButtonBox.ButtonRole.ActionRole)
        style.themed(self.make_button, "request")
        self.sign_button = self.buttons.addButton("Sign with local CA…", QDialogButtonBox.ButtonRole.ActionRole)
        style.themed(self.sign_button, "sign")
        self.save_button = self.buttons.addButton("Save…", QDialogButtonBox.ButtonRole.ActionRole)
        style.themed(self.save_button, "export")
        self.copy_button = self.buttons.addButton("Copy", QDialogButtonBox.ButtonRole.ActionRole)
        style.themed(self.copy_button, "copy")
        self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.make_button.clicked.connect(self.make)
        self.sign_button.clicked.connect(self.sign)
        self.save_button.clicked.connect(self._save)
        self.copy_button.clicked.connect(self._copy)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(subject_box)
        layout.addWidget(self.banner)
        layout.addWidget(self.output, 1)
        layout.addWidget(self.commands)
        layout.addWidget(self.buttons)
        if not self.keys:
            self.banner.show_message("There is no private key on this token (are you logged in?). Generate one in "
                                     "the Keys pane first.", "warn")
        self._update()

    def selected_key(self) -> ObjectInfo | None:
        handle = self.key_combo.currentData()
        return next((o for o in self.keys if o.handle == handle), None)

    @Slot()
    def _update(self) -> None:
        done = self.csr is not None
        self.make_button.setEnabled(self.editor.valid and self.selected_key() is not None)
        for b in (self.sign_button, self.save_button, self.copy_button):
            b.setEnabled(done)

    # ------------------------------------------------------------------ make

    @Slot()
    def make(self) -> None:
        key = self.selected_key()
        if key is None or not self.editor.valid:
            return
        ref = self.listing.token
        subject = self.editor.subject_text()
        sans = tuple(self.editor.san_lines())
        obj_id = key.id or None
        label = None if obj_id else key.label
        self.csr = None
        self._update()
        self.make_button.setEnabled(False)
        self.banner.show_message("The token is signing the request…", "muted")
        future = self.ctx.lifecycle.csr(ref, label=label, obj_id=obj_id, subject=subject, sans=sans)
        self.ctx.jobs.watch(future, self._on_made, f"make a certificate request for {key.label!r}",
                            command=self._command(key, subject, sans), owner=self)

    def _command(self, key: ObjectInfo, subject: str, sans: tuple[str, ...]) -> str:
        ref = self.listing.token
        argv = ["cert-desk", "csr", "--module", ref.module, "--token", ref.label,
                *(["--id", key.id_hex] if key.id else ["--label", key.label]), "--subject", subject,
                *[a for s in sans for a in ("--san", s)], "--out", "request.csr"]
        return shlex.join(argv)

    def _on_made(self, outcome: Outcome[CsrResult]) -> None:
        self.make_button.setEnabled(True)
        if outcome.error is not None:
            self.banner.show_message(str(outcome.error), "error")
            return
        result = outcome.value
        assert result is not None
        self.csr = result
        self.banner.show_message(
            f"Request for {result.subject}, signed on the token by {result.key_label!r} with {result.mechanism}. "
            "Save it for your CA, or sign it with a local CA.", "ok")
        self.output.setHtml(f"<pre>{html.escape(result.pem.decode('ascii'))}</pre>")
        key = self.selected_key()
        if key is not None:
            self.commands.setPlainText("# Same with OpenSSL, the seed's way (engine.cnf: Keys pane, Use with OpenSSL)\n"
                                       + equivalents.csr(key.uri, result.subject, "request.csr")
                                       + "\nopenssl req -in request.csr -noout -verify")
        self._update()

    # ------------------------------------------------------------------ outputs

    def _save(self) -> None:
        if self.csr is None:
            return
        name = (self.csr.key_label or "request").replace("/", "_") + ".csr"
        path, _ = QFileDialog.getSaveFileName(self, "Save the request", os.path.join(os.path.expanduser("~"), name),
                                              "Requests (*.csr *.pem)")
        if path:
            self.save_to(path)

    def save_to(self, path: str) -> bool:
        assert self.csr is not None
        try:
            with open(path, "wb") as fh:
                fh.write(self.csr.pem)
        except OSError as e:
            self.banner.show_message(f"Cannot write {path}: {e.strerror}.", "error")
            return False
        self.banner.show_message(f"Saved {path}: send it to your CA, then import its answer on the Certificates "
                                 "pane.", "ok")
        return True

    def _copy(self) -> None:
        if self.csr is not None:
            QGuiApplication.clipboard().setText(self.csr.pem.decode("ascii"))
            self.banner.show_message("Copied the request (PEM).", "ok")

    @Slot()
    def sign(self) -> None:
        if self.csr is None:
            return
        dialog = SignDialog(self.ctx, csr_pem=self.csr.pem, parent=self)
        dialog.signed.connect(self._on_signed)
        self.sign_dialog = dialog
        dialog.open()

    @Slot(bytes, bool)
    def _on_signed(self, pem: bytes, import_it: bool) -> None:
        if import_it:
            self.import_requested.emit(pem)
            self.accept()
