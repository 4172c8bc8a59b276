"""The Certificates pane: the token's certificates, each checked as a browser would, and the
lifecycle around them: request (CSR), local CA, import (file dialog or drag-and-drop), verify,
renew. It works on the token the Objects pane shows."""

from __future__ import annotations

import dataclasses
import html
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cert_desk import equivalents
from cert_desk import errors as E
from cert_desk.models import ImportResult, ObjectInfo, ObjectListing, TokenRef
from cert_desk.pkcs11 import constants as C
from cert_desk.pkcs11.lifecycle import key_spkis
from cert_desk.services.outcome import Outcome
from cert_desk.ui import style
from cert_desk.ui.app import AppContext
from cert_desk.ui.ca_dialog import SignDialog
from cert_desk.ui.csr_dialog import CsrDialog
from cert_desk.ui.objects_pane import ObjectsPane
from cert_desk.ui.widgets import Banner, PaneHeader, ask
from cert_desk.x509.bundle import load_certificates, read_certificate_file
from cert_desk.x509.verify import VerifyReport, verify_certificate

log = logging.getLogger(__name__)

COLUMNS = ("Subject", "Issuer", "Expires", "Key on the token", "Check")
ROLE_OBJECT = Qt.ItemDataRole.UserRole + 1
#: What the Check column says for each finding (the details say it in full).
SHORT = {
    "ee-key-cert-sign": "keyCertSign on a non-CA", "expired": "expired", "not-yet-valid": "not yet valid",
    "weak-signature-hash": "weak signature hash", "rsa-too-small": "RSA key too small",
    "no-client-auth-eku": "no clientAuth usage", "no-server-auth-eku": "no serverAuth usage",
    "key-usage-no-digital-signature": "key usage lacks digitalSignature", "missing-aki": "no authority key ID",
    "no-token-key": "no key on the token", "key-mismatch": "not its key's certificate",
    "chain": "chain does not verify", "not-v3": "not X.509 v3",
}
#: A CA certificate on the token is not an end entity: only these checks apply to it.
CA_CODES = frozenset({"expired", "not-yet-valid", "weak-signature-hash", "rsa-too-small", "chain", "not-v3"})


@dataclass(frozen=True)
class Checked:
    """A certificate on the token and what the checks say about it (without a CA: lints only)."""

    obj: ObjectInfo
    key_label: str | None
    report: VerifyReport


def check_listing(listing: ObjectListing, cas: Sequence[x509.Certificate] = ()) -> tuple[Checked, ...]:
    """Verify every certificate on the token (CPU only: run it off the GUI thread)."""
    owners = key_spkis(listing)
    keys_by_id = {k.id: k for k in owners.values() if k.id}
    out = []
    for o in listing.objects:
        info = o.certificate
        if o.object_class != C.CKO_CERTIFICATE or info is None:
            continue
        key = owners.get(info.spki_sha256)
        # the key a browser pairs it with is the one with its CKA_ID: compare with that key's public key
        paired = keys_by_id.get(o.id) if o.id else None
        token_spki = info.spki if key is not None else None
        if paired is not None and paired is not key:
            token_spki = _spki_of(listing, paired)
        try:
            cert = x509.load_der_x509_certificate(info.der)
            report = verify_certificate(cert, cas, purpose="auto", token_spki=token_spki,
                                        check_token_key=not info.is_ca and listing.logged_in)
        except E.CertDeskError as err:
            log.info("cannot check %r: %s", o.label, err.message)
            continue
        if info.is_ca:
            report = dataclasses.replace(report, purpose="CA",
                                         findings=tuple(f for f in report.findings if f.code in CA_CODES))
        out.append(Checked(o, key.label if key is not None else None, report))
    return tuple(sorted(out, key=_expires))


def _spki_of(listing: ObjectListing, key: ObjectInfo) -> bytes | None:
    from cert_desk.pkcs11.lifecycle import public_key_der

    try:
        return public_key_der(listing, key)
    except E.InputError:
        return None


def _expires(c: Checked) -> datetime:
    return c.obj.certificate.not_after if c.obj.certificate is not None else datetime.max.replace(tzinfo=UTC)


def report_html(c: Checked) -> str:
    info = c.obj.certificate
    assert info is not None
    e = html.escape
    r = c.report
    verdict = ("<b style='color:{}'>{}</b>".format(style.state_hex("ok" if r.ok else "error"),
                                                     "OK" if r.ok else "NOT OK"))
    rows = [f"<h3>{e(info.subject_cn or info.subject)}</h3>",
            f"<p>{verdict} — {e(r.purpose)} certificate; "
            + ("chain: " + " → ".join(e(s) for s in r.chain) if r.chain else
               "the chain is not checked here: use <i>Verify against CA…</i>") + "</p>",
            f"<p>Subject <tt>{e(info.subject)}</tt><br>Issuer <tt>{e(info.issuer)}</tt><br>"
            f"Valid {info.not_before:%Y-%m-%d %H:%M} to {info.not_after:%Y-%m-%d %H:%M} UTC<br>"
            f"Key on the token: {e(c.key_label) if c.key_label else 'none'} (label {e(c.obj.label)!s}, ID "
            f"{e(c.obj.id_hex or 'none')})</p>"]
    kinds = {"error": "error", "warning": "warn", "info": "muted"}
    for f in r.findings:
        rows.append(f"<p><b style='color:{style.state_hex(kinds.get(f.severity, 'muted'))}'>{e(f.severity)}</b> "
                    f"{e(f.message)}" + (f"<br><i>{e(f.hint)}</i>" if f.hint else "") + "</p>")
    return "".join(rows)


class CertificatesPane(QWidget):
    """Certificates of the current token.

    Signals:
        status(str): A message for the status bar.
        renew_requested(ObjectInfo): The user wants to renew this certificate.
    """

    status = Signal(str)
    renew_requested = Signal(object)

    def __init__(self, ctx: AppContext, objects: ObjectsPane, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.objects = objects
        self.listing: ObjectListing | None = None
        self.checked: tuple[Checked, ...] = ()
        self.dialog: QWidget | None = None
        self.setAcceptDrops(True)

        self.header = PaneHeader("Certificates", ctx.jobs, self)
        self.login_button = QPushButton("Log in…")
        style.themed(self.login_button, "login")
        self.login_button.clicked.connect(objects.login)
        self.csr_button = QPushButton("New request…")
        style.themed(self.csr_button, "request")
        self.csr_button.clicked.connect(lambda _checked=False: self.new_request())
        self.sign_button = QPushButton("Sign with local CA…")
        style.themed(self.sign_button, "sign")
        self.sign_button.clicked.connect(self.sign_file)
        self.import_button = QPushButton("Import…")
        style.themed(self.import_button, "upload")
        self.import_button.clicked.connect(self._import_dialog)
        self.renew_button = QPushButton("Renew…")
        style.themed(self.renew_button, "renew")
        self.renew_button.clicked.connect(self._renew)
        for b in (self.login_button, self.csr_button, self.sign_button, self.import_button, self.renew_button):
            self.header.buttons.addWidget(b)
        self.banner = Banner(self)
        self.hint = QLabel("Drop a certificate file (PEM, DER, PKCS#7) here to import it: cert-desk writes it with "
                           "its key's ID and label.")
        self.hint.setObjectName("dropHint")
        self.hint.setWordWrap(True)

        self.table = QTreeWidget()
        self.table.setObjectName("certificatesTable")
        self.table.setHeaderLabels(list(COLUMNS))
        self.table.setRootIsDecorated(False)
        self.table.setUniformRowHeights(True)
        self.table.setAlternatingRowColors(True)
        self.table.setIconSize(style.ICON_SIZE)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.table.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for col, width in enumerate((240, 200, 110, 150)):
            self.table.setColumnWidth(col, width)
        self.table.currentItemChanged.connect(self._on_current)
        self.details = QTextBrowser()
        self.details.setObjectName("certificateCheck")
        self.verify_button = QPushButton("Verify against CA…")
        style.themed(self.verify_button, "verify")
        self.verify_button.setToolTip("Check the chain to a CA certificate you trust, as openssl verify "
                                      "-x509_strict and browsers do")
        self.verify_button.clicked.connect(self._verify_against_ca)
        self.verify_file_button = QPushButton("Verify a file…")
        style.themed(self.verify_file_button, "verify")
        self.verify_file_button.clicked.connect(self._verify_file)
        actions = QHBoxLayout()
        actions.addWidget(self.verify_button)
        actions.addStretch(1)
        actions.addWidget(self.verify_file_button)
        details_box = QWidget()
        dl = QVBoxLayout(details_box)
        dl.setContentsMargins(0, 0, 0, 0)
        dl.addLayout(actions)
        dl.addWidget(self.details, 1)
        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.addWidget(self.table)
        self.split.addWidget(details_box)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 2)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(style.MARGIN, style.MARGIN, style.MARGIN, style.MARGIN)
        layout.setSpacing(style.SPACING)
        layout.addWidget(self.header)
        layout.addWidget(self.banner)
        layout.addWidget(self.hint)
        layout.addWidget(self.split, 1)
        objects.listing_changed.connect(self.on_listing)
        self.on_listing(None)

    # ------------------------------------------------------------------ state

    @property
    def ref(self) -> TokenRef | None:
        return self.listing.token if self.listing is not None else None

    @Slot(object)
    def on_listing(self, listing: ObjectListing | None) -> None:
        self.listing = listing
        if listing is None:
            self.header.set_title("Certificates")
            self.header.subtitle.setText("Choose a token in the Devices pane.")
            self._fill(())
            self._update_buttons()
            return
        self.header.set_title(f"Certificates — {listing.token.label}")
        self._update_buttons()

        def task() -> tuple[Checked, ...]:
            return check_listing(listing)

        self.ctx.jobs.watch(self.ctx.tasks.submit(task), lambda o: self._on_checked(listing, o),
                            "check the certificates", owner=self, quiet=True)

    def _on_checked(self, listing: ObjectListing, outcome: Outcome[tuple[Checked, ...]]) -> None:
        if listing is not self.listing:
            return
        if outcome.error is not None:
            self.banner.show_message(str(outcome.error), "error")
            return
        checked = outcome.value or ()
        self._fill(checked)
        bad = sum(1 for c in checked if not c.report.ok)
        text = f"{len(checked)} certificate{'s' if len(checked) != 1 else ''}"
        if bad:
            text += f", {bad} with problems"
        if not listing.logged_in and listing.token_info.login_required:
            text += " — log in to pair them with their keys and to import"
        self.header.subtitle.setText(text)

    def _fill(self, checked: tuple[Checked, ...]) -> None:
        keep = self.selected()
        self.checked = checked
        self.table.clear()
        for c in checked:
            info = c.obj.certificate
            assert info is not None
            errors = [f for f in c.report.findings if f.severity == "error"]
            check = "ok" if c.report.ok else ", ".join(dict.fromkeys(SHORT.get(f.code, f.code) for f in errors))
            item = QTreeWidgetItem([info.subject_cn or info.subject, info.issuer_cn or info.issuer,
                                    f"{info.not_after:%Y-%m-%d}", c.key_label or ("CA certificate" if info.is_ca
                                                                                  else "none"), check])
            item.setData(0, ROLE_OBJECT, c)
            item.setIcon(0, style.icon("certificates"))
            if not c.report.ok:
                item.setForeground(4, style.state_colour("error"))
                item.setIcon(4, style.icon("warning", style.state_colour("error")))
            codes = {f.code for f in c.report.findings}
            if "expired" in codes:
                item.setForeground(2, style.state_colour("error"))
            for col in range(len(COLUMNS) - 1):
                item.setToolTip(col, item.text(col))
            item.setToolTip(4, "\n".join(f.message for f in errors) or "Every check passed.")
            self.table.addTopLevelItem(item)
            if keep is not None and keep.obj.handle == c.obj.handle:
                self.table.setCurrentItem(item)
        if not checked:
            self.details.setHtml("<p>No certificate on this token yet. Make a request (<b>New request…</b>), have "
                                 "it signed, then import the answer (<b>Import…</b>, or drop the file here).</p>"
                                 if self.listing is not None else "")
        self._update_buttons()

    def selected(self) -> Checked | None:
        item = self.table.currentItem()
        return item.data(0, ROLE_OBJECT) if item is not None else None

    def select_handle(self, handle: int) -> bool:
        for i in range(self.table.topLevelItemCount()):
            item = self.table.topLevelItem(i)
            if item is not None and item.data(0, ROLE_OBJECT).obj.handle == handle:
                self.table.setCurrentItem(item)
                return True
        return False

    @Slot()
    def _on_current(self) -> None:
        c = self.selected()
        if c is not None:
            self.details.setHtml(report_html(c))
        self._update_buttons()

    def _update_buttons(self) -> None:
        listing = self.listing
        logged_in = listing is not None and listing.logged_in
        self.login_button.setVisible(listing is not None and not listing.logged_in
                                     and listing.token_info.login_required)
        writable = listing is None or not listing.token_info.write_protected  # CKF_WRITE_PROTECTED
        self.csr_button.setEnabled(logged_in)
        self.import_button.setEnabled(logged_in and writable)
        self.import_button.setToolTip("" if writable else "The token is write-protected: nothing can be written.")
        self.renew_button.setEnabled(logged_in and writable and self.selected() is not None)
        self.verify_button.setEnabled(self.selected() is not None)

    # ------------------------------------------------------------------ request and sign

    def new_request(self, key: ObjectInfo | None = None, *, subject: str | None = None,
                    sans: list[str] | None = None) -> CsrDialog | None:
        listing = self.listing
        if listing is None:
            return None
        dialog = CsrDialog(self.ctx, listing, key, subject=subject, sans=sans, parent=self)
        dialog.import_requested.connect(self.import_pem)
        self.dialog = dialog
        dialog.open()
        return dialog

    @Slot()
    def sign_file(self) -> SignDialog:
        dialog = SignDialog(self.ctx, can_import=self.listing is not None and self.listing.logged_in
                            and not self.listing.token_info.write_protected, parent=self)
        dialog.signed.connect(lambda pem, go: self.import_pem(pem) if go else None)
        self.dialog = dialog
        dialog.open()
        return dialog

    # ------------------------------------------------------------------ import

    def _import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a certificate", os.path.expanduser("~"),
                                              "Certificates (*.pem *.crt *.cer *.der *.p7b *.p7c);;All files (*)")
        if path:
            self.import_file(path)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and self.listing is not None and self.listing.logged_in:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile():
                self.import_file(url.toLocalFile())
                event.acceptProposedAction()
                return

    def import_file(self, path: str) -> None:
        """Read ``path`` (off the GUI thread, refused before parsing when too big) and import it."""
        self.ctx.jobs.watch(self.ctx.tasks.submit(lambda: read_certificate_file(path).certificates),
                            lambda o: self._on_read(o, os.path.basename(path)), f"read {os.path.basename(path)}",
                            owner=self)

    @Slot(bytes)
    def import_pem(self, pem: bytes) -> None:
        try:
            certs = load_certificates(pem).certificates
        except E.CertDeskError as err:
            self.banner.show_message(str(err), "error")
            return
        self.import_certificates(certs, "the signed certificate")

    def _on_read(self, outcome: Outcome[tuple[x509.Certificate, ...]], name: str) -> None:
        if outcome.error is not None:
            self.banner.show_message(str(outcome.error), "error")
            return
        self.import_certificates(outcome.value or (), name)

    def import_certificates(self, certs: Sequence[x509.Certificate], what: str, *, with_chain: bool | None = None,
                            allow_expired: bool = False) -> None:
        ref = self.ref
        if ref is None or not certs:
            return
        if with_chain is None:
            cas = [c for c in certs if _is_ca(c)]
            with_chain = False
            if cas and len(certs) > 1:
                with_chain = self._ask_chain(len(cas))
        future = self.ctx.lifecycle.import_certificates(ref, certs, with_chain=with_chain, allow_expired=allow_expired)
        self.ctx.jobs.watch(future, lambda o: self._on_imported(certs, what, with_chain, o), f"import {what}",
                            command=f"cert-desk import --token {ref.label!r} --in certificate.pem"
                                    + (" --with-chain" if with_chain else ""), owner=self)

    def _ask_chain(self, n: int) -> bool:
        box = QMessageBox(self)
        box.setObjectName("chainQuestion")
        box.setWindowTitle("CA certificates in the file")
        box.setText(f"The file also holds {n} CA certificate(s). Write them to the token too?")
        box.setInformativeText("Browsers do not need them on the token; some programs want the chain there.")
        only = box.addButton("Only my certificate", QMessageBox.ButtonRole.RejectRole)
        both = box.addButton("Write the CA certificates too", QMessageBox.ButtonRole.AcceptRole)
        box.setDefaultButton(only)
        box.exec()
        return box.clickedButton() is both

    def _on_imported(self, certs: Sequence[x509.Certificate], what: str, with_chain: bool,
                     outcome: Outcome[ImportResult]) -> None:
        err = outcome.error
        if isinstance(err, E.ConfirmationRequired):
            if ask(self, "Expired certificate", err.message.replace("nothing was written.", "import it anyway?"),
                   "Import anyway", details=err.hint):
                self.import_certificates(certs, what, with_chain=with_chain, allow_expired=True)
            return
        if err is not None:
            self.banner.show_message(str(err), "error")
            self.status.emit(err.message)
            return
        result = outcome.value
        assert result is not None
        first = result.written[0].handle if result.written else None
        self.objects.apply_listing(result.listing, select=first)
        parts = [f"Wrote the {o.certificate.subject_cn if o.certificate else o.label!r} certificate with the key's "
                 f"ID {o.id_hex or 'none'} and label {o.label!r}." for o in result.written]
        parts += list(result.already_present) + list(result.notes)
        self.banner.show_message(" ".join(parts) or "Nothing to write.", "ok" if result.written else "warn")
        if first is not None:
            self.select_handle(first)
        self.status.emit(f"Imported {len(result.written)} certificate(s)")

    # ------------------------------------------------------------------ verify

    def _verify_against_ca(self) -> None:
        c = self.selected()
        if c is None:
            return
        paths, _ = QFileDialog.getOpenFileNames(self, "The CA certificate(s) you trust", os.path.expanduser("~"),
                                                "Certificates (*.pem *.crt *.cer *.der *.p7b);;All files (*)")
        if paths:
            self.verify_selected(paths)

    def verify_selected(self, ca_paths: Sequence[str]) -> None:
        c, listing = self.selected(), self.listing
        if c is None or listing is None:
            return
        handle = c.obj.handle

        def task() -> tuple[Checked, ...]:
            cas = [cert for p in ca_paths for cert in read_certificate_file(p).certificates]
            return check_listing(listing, cas)

        def done(outcome: Outcome[tuple[Checked, ...]]) -> None:
            if outcome.error is not None:
                self.banner.show_message(str(outcome.error), "error")
                return
            again = next((x for x in outcome.value or () if x.obj.handle == handle), None)
            if again is not None:
                self.details.setHtml(report_html(again))
                self.banner.show_message("Chain " + ("verified" if again.report.ok else "NOT verified") + " against "
                                         + ", ".join(os.path.basename(p) for p in ca_paths) + ".",
                                         "ok" if again.report.ok else "error")

        self.ctx.jobs.watch(self.ctx.tasks.submit(task), done, "verify the certificate against the CA",
                            command=equivalents.verify("certificate.pem", ca_paths[0]), owner=self)

    def _verify_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "A certificate to verify", os.path.expanduser("~"),
                                              "Certificates (*.pem *.crt *.cer *.der *.p7b);;All files (*)")
        if not path:
            return

        def task() -> str:
            cert, *rest = read_certificate_file(path).certificates
            report = verify_certificate(cert, (), rest)
            return "".join(f"<p><b>{html.escape(f.severity)}</b> {html.escape(f.message)}</p>" for f in report.findings)

        self.ctx.jobs.watch(self.ctx.tasks.submit(task),
                            lambda o: self.details.setHtml(o.value or html.escape(str(o.error))),
                            f"check {os.path.basename(path)}", owner=self)

    # ------------------------------------------------------------------ renew

    def _renew(self) -> None:
        c = self.selected()
        if c is not None:
            self.renew_requested.emit(c.obj)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False
