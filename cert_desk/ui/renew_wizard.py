"""The renewal wizard: an expiring certificate to a new one on the token, step by step.

Certificate (expiring first) -> key (keep it, or a new one on the token) -> request (the old
subject and alternative names, editable) -> signing (a local CA now, or the request saved for
an external CA, whose answer is imported later on the Certificates pane) -> the work, each step
with the command that does the same -> clean-up (the old certificate, and the old key when a
new one replaced it, deleted only when asked).
"""

from __future__ import annotations

import html
import os
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QRadioButton,
    QSpinBox,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from cert_desk import equivalents
from cert_desk import errors as E
from cert_desk.models import (
    CsrResult,
    DeleteResult,
    GeneratedKey,
    ImportResult,
    KeyChoice,
    ObjectInfo,
    ObjectListing,
)
from cert_desk.pkcs11 import constants as C
from cert_desk.pkcs11.lifecycle import key_spkis
from cert_desk.services.outcome import Outcome
from cert_desk.ui import style
from cert_desk.ui.app import AppContext
from cert_desk.ui.ca_dialog import PathField, default_validity
from cert_desk.ui.dn_editor import DnEditor
from cert_desk.x509.bundle import load_csr
from cert_desk.x509.ca import load_ca, sign_csr
from cert_desk.x509.names import parse_san
from cert_desk.x509.verify import verify_certificate

ROLE = Qt.ItemDataRole.UserRole + 1


def renewable(listing: ObjectListing) -> list[tuple[ObjectInfo, ObjectInfo]]:
    """(certificate, its private key) on the token, the soonest to expire first."""
    owners = key_spkis(listing)
    pairs = []
    for o in listing.objects:
        if o.object_class == C.CKO_CERTIFICATE and o.certificate is not None and not o.certificate.is_ca:
            key = owners.get(o.certificate.spki_sha256)
            if key is not None:
                pairs.append((o, key))
    pairs.sort(key=lambda p: p[0].certificate.not_after if p[0].certificate else datetime.max.replace(tzinfo=UTC))
    return pairs


class RenewWizard(QWizard):
    """Renew one certificate on the token.

    Signals:
        listing_changed(ObjectListing): The token changed (new key, new certificate, deletions).
    """

    listing_changed = Signal(object)

    def __init__(self, ctx: AppContext, listing: ObjectListing, certificate: ObjectInfo | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.listing = listing
        self.setObjectName("renewWizard")
        self.setWindowTitle(f"Renew a certificate — {listing.token.label}")
        self.setWizardStyle(QWizard.WizardStyle.ClassicStyle)
        self.resize(760, 640)
        self.pick = PickPage(listing, certificate)
        self.key = KeyPage(ctx, listing)
        self.request = RequestPage()
        self.signing = SigningPage()
        self.run_page = RunPage(self)
        self.cleanup = CleanupPage(self)
        for page in (self.pick, self.key, self.request, self.signing, self.run_page, self.cleanup):
            self.addPage(page)

    # what the steps produced
    old: tuple[ObjectInfo, ObjectInfo] | None = None
    new_key_id: bytes | None = None
    imported: ImportResult | None = None


class PickPage(QWizardPage):
    def __init__(self, listing: ObjectListing, certificate: ObjectInfo | None) -> None:
        super().__init__()
        self.setTitle("Which certificate?")
        self.setSubTitle("The certificates on the token that belong to one of its keys; the soonest to expire first.")
        self.tree = QTreeWidget()
        self.tree.setObjectName("renewPick")
        self.tree.setHeaderLabels(["Subject", "Expires", "Key"])
        self.tree.setRootIsDecorated(False)
        self.tree.setColumnWidth(0, 320)
        now = datetime.now(UTC)
        for cert, key in renewable(listing):
            info = cert.certificate
            assert info is not None
            days = (info.not_after - now).days
            when = f"{info.not_after:%Y-%m-%d}" + (" (expired)" if days < 0 else f" (in {days} days)")
            item = QTreeWidgetItem([info.subject_cn or info.subject, when, key.label])
            item.setData(0, ROLE, (cert, key))
            if days < 30:
                item.setForeground(1, style.state_colour("error" if days < 0 else "warn"))
            self.tree.addTopLevelItem(item)
            if certificate is not None and cert.handle == certificate.handle:
                self.tree.setCurrentItem(item)
        first = self.tree.topLevelItem(0)
        if self.tree.currentItem() is None and first is not None:
            self.tree.setCurrentItem(first)
        self.tree.currentItemChanged.connect(self.completeChanged)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tree)
        if not self.tree.topLevelItemCount():
            empty = QLabel("No certificate on this token belongs to one of its keys (are you logged in?).")
            empty.setWordWrap(True)
            layout.addWidget(empty)

    def chosen(self) -> tuple[ObjectInfo, ObjectInfo] | None:
        item = self.tree.currentItem()
        return item.data(0, ROLE) if item is not None else None

    def isComplete(self) -> bool:
        return self.chosen() is not None

    def validatePage(self) -> bool:
        wizard = self.wizard()
        assert isinstance(wizard, RenewWizard)
        wizard.old = self.chosen()
        return wizard.old is not None


class KeyPage(QWizardPage):
    def __init__(self, ctx: AppContext, listing: ObjectListing) -> None:
        super().__init__()
        self.ctx = ctx
        self.setTitle("Keep the key, or a new one?")
        self.setSubTitle("A new key on the token is the safer choice; the old one is kept until you delete it.")
        self.keep = QRadioButton("Keep the key: the new certificate is for the same key")
        self.fresh = QRadioButton("Generate a new key on the token")
        self.fresh.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.keep)
        group.addButton(self.fresh)
        self.type_combo = QComboBox()
        self.type_combo.setObjectName("renewKeyType")
        self.label_edit = QLineEdit()
        form = QFormLayout()
        form.addRow("Type", self.type_combo)
        form.addRow("Label", self.label_edit)
        self.new_box = QGroupBox()
        self.new_box.setLayout(form)
        self.fresh.toggled.connect(self.new_box.setEnabled)
        layout = QVBoxLayout(self)
        layout.addWidget(self.fresh)
        layout.addWidget(self.new_box)
        layout.addWidget(self.keep)
        layout.addStretch(1)
        ctx.jobs.watch(ctx.lifecycle.key_choices(listing.token), self._on_choices, "read the key types", quiet=True)

    def _on_choices(self, outcome: Outcome[tuple[KeyChoice, ...]]) -> None:
        for c in outcome.value or ():
            if c.allowed:
                self.type_combo.addItem(c.description, c.spec)

    def initializePage(self) -> None:
        wizard = self.wizard()
        assert isinstance(wizard, RenewWizard) and wizard.old is not None
        _cert, key = wizard.old
        self.label_edit.setText(f"{key.label}-{datetime.now(UTC):%Y}")
        spec = _spec_of(key)
        if spec and self.type_combo.findData(spec) >= 0:
            self.type_combo.setCurrentIndex(self.type_combo.findData(spec))

    def new_key(self) -> tuple[str, str] | None:
        if self.keep.isChecked():
            return None
        return str(self.type_combo.currentData()), self.label_edit.text().strip()

    def validatePage(self) -> bool:
        return self.keep.isChecked() or (self.type_combo.currentData() is not None and bool(self.label_edit.text()))


class RequestPage(QWizardPage):
    def __init__(self) -> None:
        super().__init__()
        self.setTitle("The request")
        self.setSubTitle("The old certificate's subject and alternative names; change what has changed.")
        self.editor = DnEditor()
        self.editor.changed.connect(self.completeChanged)
        layout = QVBoxLayout(self)
        layout.addWidget(self.editor)
        layout.addStretch(1)

    def initializePage(self) -> None:
        wizard = self.wizard()
        assert isinstance(wizard, RenewWizard) and wizard.old is not None
        info = wizard.old[0].certificate
        assert info is not None
        cert = x509.load_der_x509_certificate(info.der)
        sans = []
        for s in info.subject_alt_names:
            try:
                parse_san(s)
                sans.append(s)
            except E.InputError:
                continue
        self.editor.set_subject(cert.subject, sans)

    def isComplete(self) -> bool:
        return self.editor.valid


class SigningPage(QWizardPage):
    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Who signs it?")
        self.local = QRadioButton("A local CA, now")
        self.external = QRadioButton("An external CA: save the request, import its answer later")
        self.local.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.local)
        group.addButton(self.external)
        self.ca_cert = PathField("The CA certificate")
        self.ca_key = PathField("The CA key")
        from cert_desk.ui.ca_dialog import _settings

        s = _settings()
        self.ca_cert.setText(str(s.value("ca/cert", "")))
        self.ca_key.setText(str(s.value("ca/key", "")))
        self.passphrase = QLineEdit()
        self.passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase.setPlaceholderText("only if the CA key is encrypted")
        self.days = QSpinBox()
        self.days.setRange(1, 3650)
        self.days.setSuffix(" days")
        local_form = QFormLayout()
        local_form.addRow("CA certificate", self.ca_cert)
        local_form.addRow("CA key", self.ca_key)
        local_form.addRow("Passphrase", self.passphrase)
        local_form.addRow("Valid for", self.days)
        self.local_box = QGroupBox()
        self.local_box.setLayout(local_form)
        self.csr_path = PathField("Save the request as", save=True, name_filter="Requests (*.csr)")
        external_form = QFormLayout()
        external_form.addRow("Request file", self.csr_path)
        self.external_box = QGroupBox()
        self.external_box.setLayout(external_form)
        self.local.toggled.connect(self._toggle)
        layout = QVBoxLayout(self)
        layout.addWidget(self.local)
        layout.addWidget(self.local_box)
        layout.addWidget(self.external)
        layout.addWidget(self.external_box)
        layout.addStretch(1)
        self._toggle()

    def _toggle(self) -> None:
        self.local_box.setEnabled(self.local.isChecked())
        self.external_box.setEnabled(self.external.isChecked())

    def initializePage(self) -> None:
        wizard = self.wizard()
        assert isinstance(wizard, RenewWizard) and wizard.old is not None
        info = wizard.old[0].certificate
        assert info is not None
        self.days.setValue(default_validity(x509.load_der_x509_certificate(info.der)))
        name = (info.subject_cn or "renewal").replace("/", "_")
        if not self.csr_path.text():
            self.csr_path.setText(os.path.join(os.path.expanduser("~"), f"{name}-{datetime.now(UTC):%Y%m%d}.csr"))

    def validatePage(self) -> bool:
        if self.local.isChecked():
            return bool(self.ca_cert.text() and self.ca_key.text())
        return bool(self.csr_path.text())


class RunPage(QWizardPage):
    """Does the work, one job after the other, and shows each step with its command."""

    def __init__(self, wizard: RenewWizard) -> None:
        super().__init__()
        self.w = wizard
        self.setTitle("Renewing")
        self.log = QTextBrowser()
        self.log.setObjectName("renewLog")
        layout = QVBoxLayout(self)
        layout.addWidget(self.log)
        self.done = False
        self.failed = False
        self.steps: list[str] = []

    def isComplete(self) -> bool:
        return self.done

    def initializePage(self) -> None:
        self.done = self.failed = False
        self.steps = []
        self.log.clear()
        self.setCommitPage(True)
        new = self.w.key.new_key()
        if new is not None:
            spec, label = new
            self._step(f"Generate a {spec} key pair {label!r} on the token",
                       equivalents.keygen(self.w.listing.token, spec, label, None))
            self.w.ctx.jobs.watch(self.w.ctx.lifecycle.generate(self.w.listing.token, spec, label=label),
                                  self._on_key, f"generate a key pair {label!r}", owner=self)
        else:
            assert self.w.old is not None
            self._csr(self.w.old[1].id)

    def _step(self, text: str, command: str = "") -> None:
        cmd = f"<br><tt style='color:{style.state_hex('muted')}'>{html.escape(command)}</tt>" if command else ""
        self.steps.append(f"<p>• {html.escape(text)}{cmd}</p>")
        self.log.setHtml("".join(self.steps))

    def _result(self, text: str, ok: bool = True) -> None:
        colour = style.state_hex("ok" if ok else "error")
        self.steps.append(f"<p style='color:{colour}; margin-left:16px'>{html.escape(text)}</p>")
        self.log.setHtml("".join(self.steps))

    def _fail(self, err: E.CertDeskError) -> None:
        self._result(str(err), ok=False)
        self._result("Nothing more was done. Go back to change something, or cancel.", ok=False)
        self.failed = True
        self.setCommitPage(False)

    def _on_key(self, outcome: Outcome[GeneratedKey]) -> None:
        if outcome.error is not None:
            self._fail(outcome.error)
            return
        key = outcome.value
        assert key is not None
        self.w.new_key_id = key.id
        self.w.listing = key.listing
        self.w.listing_changed.emit(key.listing)
        self._result(f"Generated in {key.seconds:.1f} s, ID {key.id.hex()}.")
        self._csr(key.id)

    def _csr(self, key_id: bytes) -> None:
        editor = self.w.request.editor
        subject, sans = editor.subject_text(), tuple(editor.san_lines())
        self._step(f"Make the request for {subject}, signed on the token", f"cert-desk csr --id {key_id.hex()} "
                   f"--subject '{subject}'")
        self.w.ctx.jobs.watch(self.w.ctx.lifecycle.csr(self.w.listing.token, label=None, obj_id=key_id,
                                                        subject=subject, sans=sans),
                              self._on_csr, "make the certificate request", owner=self)

    def _on_csr(self, outcome: Outcome[CsrResult]) -> None:
        if outcome.error is not None:
            self._fail(outcome.error)
            return
        csr = outcome.value
        assert csr is not None
        self._result(f"Signed on the token with {csr.mechanism}.")
        page = self.w.signing
        if page.external.isChecked():
            path = page.csr_path.text()
            self._step(f"Save the request as {path}")
            try:
                with open(path, "wb") as fh:
                    fh.write(csr.pem)
            except OSError as e:
                self._fail(E.InputError(f"Cannot write {path}: {e.strerror}."))
                return
            self._result("Saved. Send it to your CA; when it answers, import the certificate with Import… on the "
                         "Certificates pane (or drop the file there), then delete the old one.")
            self._finish()
            return
        cert_path, key_path = page.ca_cert.text(), page.ca_key.text()
        secret = page.passphrase.text().encode("utf-8") or None
        page.passphrase.clear()
        days = page.days.value()
        profile = "server" if self._server() else "client"

        def needs_passphrase() -> bytes | None:
            if secret is None:
                raise E.InputError(f"{os.path.basename(key_path)} is encrypted: go back and type its passphrase.")
            return secret

        def task() -> bytes:
            ca = load_ca(cert_path, key_path, needs_passphrase)
            cert = sign_csr(ca, load_csr(csr.pem), profile=profile, days=days)
            return cert.public_bytes(serialization.Encoding.DER)

        self._step(f"Sign it with the local CA ({profile} certificate, {days} days)",
                   equivalents.ca_sign(cert_path, key_path, "request.csr", "certificate.pem", profile))
        self.w.ctx.jobs.watch(self.w.ctx.tasks.submit(task), lambda o: self._on_signed(o, cert_path),
                              "sign with the local CA", owner=self)

    def _server(self) -> bool:
        assert self.w.old is not None
        info = self.w.old[0].certificate
        return info is not None and "serverAuth" in info.extended_key_usage and \
            "clientAuth" not in info.extended_key_usage

    def _on_signed(self, outcome: Outcome[bytes], ca_path: str) -> None:
        if outcome.error is not None:
            self._fail(outcome.error)
            return
        der = outcome.value
        assert der is not None
        cert = x509.load_der_x509_certificate(der)
        self._result(f"Valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC.")
        self._step("Import it to the token with its key's ID and label",
                   f"cert-desk import --token {self.w.listing.token.label!r} --in certificate.pem")
        self.w.ctx.jobs.watch(self.w.ctx.lifecycle.import_certificates(self.w.listing.token, [cert]),
                              lambda o: self._on_imported(o, cert, ca_path), "import the certificate", owner=self)

    def _on_imported(self, outcome: Outcome[ImportResult], cert: x509.Certificate, ca_path: str) -> None:
        if outcome.error is not None:
            self._fail(outcome.error)
            return
        result = outcome.value
        assert result is not None
        self.w.imported = result
        self.w.listing = result.listing
        self.w.listing_changed.emit(result.listing)
        self._result(f"Written with ID {result.key_id.hex()} and label {result.key_label!r}.")
        self._step("Verify it against the CA, as openssl verify -x509_strict does",
                   equivalents.verify("certificate.pem", ca_path))

        def task() -> tuple[bool, str]:
            from cert_desk.x509.bundle import read_certificate_file

            cas = read_certificate_file(ca_path).certificates
            report = verify_certificate(cert, cas)
            words = "; ".join(f.message for f in report.findings if f.severity == "error")
            return report.ok, words

        self.w.ctx.jobs.watch(self.w.ctx.tasks.submit(task), self._on_verified, "verify the certificate", owner=self)

    def _on_verified(self, outcome: Outcome[tuple[bool, str]]) -> None:
        if outcome.error is not None:
            self._fail(outcome.error)
            return
        ok, words = outcome.value or (False, "")
        self._result("The chain verifies." if ok else f"It does not verify: {words}", ok=ok)
        self._finish()

    def _finish(self) -> None:
        self.done = True
        self.completeChanged.emit()


class CleanupPage(QWizardPage):
    def __init__(self, wizard: RenewWizard) -> None:
        super().__init__()
        self.w = wizard
        self.setTitle("Clean up")
        self.setFinalPage(True)
        self.delete_cert = QCheckBox("Delete the old certificate from the token")
        self.delete_key = QCheckBox("Delete the old key pair too (it has no other certificate)")
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.log = QTextBrowser()
        self.log.setObjectName("renewCleanup")
        layout = QVBoxLayout(self)
        layout.addWidget(self.note)
        layout.addWidget(self.delete_cert)
        layout.addWidget(self.delete_key)
        layout.addWidget(self.log, 1)
        self.finished_cleanup = False

    def initializePage(self) -> None:
        renewed = self.w.imported is not None
        self.delete_cert.setEnabled(renewed)
        self.delete_key.setEnabled(renewed and self.w.new_key_id is not None)
        self.delete_cert.setChecked(False)
        self.delete_key.setChecked(False)
        self.note.setText("The new certificate is on the token. Programs that still use the old one keep working "
                          "until you delete it." if renewed else
                          "Nothing to clean up until the CA's answer is imported.")

    def targets(self) -> list[ObjectInfo]:
        """What Finish deletes: the old certificate, and the old key pair when a new key replaced it."""
        assert self.w.old is not None
        cert, key = self.w.old
        out: list[ObjectInfo] = []
        if self.delete_cert.isChecked():
            out.append(cert)
        if self.delete_key.isChecked() and self.w.new_key_id is not None:
            out += [o for o in self.w.listing.objects if o.id == key.id and key.id
                    and o.object_class in (C.CKO_PRIVATE_KEY, C.CKO_PUBLIC_KEY)]
        return out

    def validatePage(self) -> bool:
        """Finish: delete what was asked (exactly those objects), then close."""
        targets = self.targets()
        if self.finished_cleanup or not targets:
            return True
        ref = self.w.listing.token

        def done(outcome: Outcome[DeleteResult]) -> None:
            if outcome.error is not None:
                self.log.setHtml(f"<p style='color:{style.state_hex('error')}'>{html.escape(str(outcome.error))}</p>")
                return
            result = outcome.value
            assert result is not None
            self.w.listing = result.listing
            self.w.listing_changed.emit(result.listing)
            self.finished_cleanup = True
            self.w.accept()

        self.log.setHtml("<p>Deleting " + html.escape(", ".join(f"{o.class_name.replace('_', ' ')} {o.label!r}"
                                                             for o in targets)) + "…</p>")
        kinds = {C.CKO_PRIVATE_KEY: "privkey", C.CKO_PUBLIC_KEY: "pubkey", C.CKO_CERTIFICATE: "cert"}
        self.w.ctx.jobs.watch(self.w.ctx.lifecycle.delete_objects(ref, targets), done, "delete the old objects",
                              command=" && ".join(equivalents.delete(ref, kinds[o.object_class], o.id)
                                                  for o in targets if o.id), owner=self)
        return False


def _spec_of(key: ObjectInfo) -> str | None:
    if key.key_type == "RSA" and key.bits:
        return f"rsa:{key.bits}"
    if key.key_type == "EC" and key.curve:
        return {"prime256v1": "ec:prime256v1", "secp256r1": "ec:prime256v1", "secp384r1": "ec:secp384r1",
                "secp521r1": "ec:secp521r1"}.get(key.curve)
    return None

