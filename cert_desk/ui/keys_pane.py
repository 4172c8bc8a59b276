"""The Keys pane: the token's key pairs, key generation, deletion, the pairing doctor, OpenSSL.

It works on the token the Objects pane shows (and logs in through it): every change comes
back with the token's new listing, which the Objects pane shows too, so the panes never
disagree about what is on the token.
"""

from __future__ import annotations

import html
import logging
import time
from dataclasses import dataclass

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
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
from cert_desk.models import (
    DeleteResult,
    DoctorReport,
    GeneratedKey,
    KeyChoice,
    KeyGroup,
    ObjectInfo,
    ObjectListing,
    TokenRef,
)
from cert_desk.pkcs11 import constants as C
from cert_desk.services.outcome import Outcome
from cert_desk.ui import style
from cert_desk.ui.app import AppContext
from cert_desk.ui.objects_pane import ObjectsPane
from cert_desk.ui.widgets import Banner, PaneHeader, ask

log = logging.getLogger(__name__)

COLUMNS = ("Label", "ID", "Type", "Certificate", "Pairing")
ROLE_GROUP = Qt.ItemDataRole.UserRole + 1


@dataclass(frozen=True)
class KeyRow:
    """One key pair as the table shows it."""

    group: KeyGroup
    key: ObjectInfo | None  # the private key (None when not logged in: the public key stands in)
    public: ObjectInfo | None
    certificate: ObjectInfo | None


def key_rows(listing: ObjectListing) -> list[KeyRow]:
    rows = []
    for g in listing.groups:
        if not g.private_keys and not g.public_keys:
            continue
        key = listing.by_handle(g.private_keys[0]) if g.private_keys else None
        pub = listing.by_handle(g.public_keys[0]) if g.public_keys else None
        cert = listing.by_handle(g.certificates[0]) if g.certificates else None
        rows.append(KeyRow(g, key, pub, cert))
    return rows


def _type_words(o: ObjectInfo | None) -> str:
    if o is None or not o.key_type:
        return ""
    if o.curve:
        return f"{o.key_type} {o.curve}"
    return f"{o.key_type} {o.bits}" if o.bits else o.key_type


class KeysPane(QWidget):
    """Key pairs of the current token.

    Signals:
        status(str): A message for the status bar.
        csr_requested(ObjectInfo): The user wants a certificate request for this private key.
        openssl_requested(ObjectInfo): The user wants to use this key with OpenSSL.
    """

    status = Signal(str)
    csr_requested = Signal(object)
    openssl_requested = Signal(object)

    def __init__(self, ctx: AppContext, objects: ObjectsPane, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.objects = objects
        self.listing: ObjectListing | None = None
        self.choices: tuple[KeyChoice, ...] = ()
        self._choices_for: TokenRef | None = None
        self._generating_since: float | None = None

        self.header = PaneHeader("Keys", ctx.jobs, self)
        self.login_button = QPushButton("Log in…")
        style.themed(self.login_button, "login")
        self.login_button.clicked.connect(objects.login)
        self.doctor_button = QPushButton("Check pairing")
        style.themed(self.doctor_button, "check")
        self.doctor_button.setToolTip("Find certificates whose CKA_ID is not their key's, keys without "
                                      "certificates, duplicated IDs")
        self.doctor_button.clicked.connect(self.run_doctor)
        for b in (self.login_button, self.doctor_button):
            self.header.buttons.addWidget(b)
        self.banner = Banner(self)

        # -- generate
        self.type_combo = QComboBox()
        self.type_combo.setObjectName("keyType")
        self.label_edit = QLineEdit()
        self.label_edit.setPlaceholderText("for example: alice-2026")
        self.id_edit = QLineEdit()
        self.id_edit.setPlaceholderText("optional, hex (default: SHA-1 of the public key, as OpenSC makes it)")
        self.generate_button = QPushButton("Generate")
        style.themed(self.generate_button, "add")
        self.generate_button.clicked.connect(self.generate)
        self.label_edit.returnPressed.connect(self.generate)
        self.progress = QLabel()
        self.progress.setObjectName("keygenProgress")
        form = QFormLayout()
        form.addRow("Type", self.type_combo)
        form.addRow("Label", self.label_edit)
        form.addRow("ID", self.id_edit)
        row = QHBoxLayout()
        row.addWidget(self.generate_button)
        row.addWidget(self.progress, 1)
        form.addRow("", row)
        for w, width in ((self.type_combo, 260), (self.label_edit, 360), (self.id_edit, 480)):
            w.setMinimumWidth(width)
            w.setMaximumWidth(width)
        self.gen_box = QGroupBox("Generate a key pair on the token")
        self.gen_box.setLayout(form)
        self._tick = QTimer(self)
        self._tick.setInterval(500)
        self._tick.timeout.connect(self._show_progress)

        # -- the key pairs
        self.table = QTreeWidget()
        self.table.setObjectName("keysTable")
        self.table.setHeaderLabels(list(COLUMNS))
        self.table.setRootIsDecorated(False)
        self.table.setUniformRowHeights(True)
        self.table.setAlternatingRowColors(True)
        self.table.setIconSize(style.ICON_SIZE)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.table.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for col, width in enumerate((200, 170, 130, 300)):
            self.table.setColumnWidth(col, width)
        self.table.currentItemChanged.connect(self._update_buttons)
        self.csr_button = QPushButton("Certificate request…")
        style.themed(self.csr_button, "request")
        self.csr_button.clicked.connect(self._request_csr)
        self.openssl_button = QPushButton("Use with OpenSSL…")
        style.themed(self.openssl_button, "terminal")
        self.openssl_button.clicked.connect(self._request_openssl)
        self.delete_button = QPushButton("Delete…")
        style.themed(self.delete_button, "delete")
        self.delete_button.clicked.connect(self.delete_selected)
        actions = QHBoxLayout()
        actions.setSpacing(style.SPACING)
        actions.addWidget(self.csr_button)
        actions.addWidget(self.openssl_button)
        actions.addStretch(1)
        actions.addWidget(self.delete_button)
        table_box = QWidget()
        tl = QVBoxLayout(table_box)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.setSpacing(style.SPACING)
        tl.addWidget(self.table, 1)
        tl.addLayout(actions)

        # -- the pairing doctor
        self.doctor_text = QTextBrowser()
        self.doctor_text.setObjectName("doctor")
        self.fix_button = QPushButton("Fix…")
        style.themed(self.fix_button, "check")
        self.fix_button.clicked.connect(self.fix_pairing)
        self.fix_button.setEnabled(False)
        self.doctor_box = QGroupBox("Pairing check")
        dl = QVBoxLayout(self.doctor_box)
        dl.addWidget(self.doctor_text, 1)
        fl = QHBoxLayout()
        fl.addStretch(1)
        fl.addWidget(self.fix_button)
        dl.addLayout(fl)
        self.doctor_box.setVisible(False)
        self.report: DoctorReport | None = None

        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.addWidget(table_box)
        self.split.addWidget(self.doctor_box)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(style.MARGIN, style.MARGIN, style.MARGIN, style.MARGIN)
        layout.setSpacing(style.SPACING)
        layout.addWidget(self.header)
        layout.addWidget(self.banner)
        layout.addWidget(self.gen_box)
        layout.addWidget(self.split, 1)
        objects.listing_changed.connect(self.on_listing)
        self.on_listing(None)

    # ------------------------------------------------------------------ state

    @property
    def ref(self) -> TokenRef | None:
        return self.listing.token if self.listing is not None else None

    @Slot(object)
    def on_listing(self, listing: ObjectListing | None) -> None:
        """The Objects pane listed (or lost) the token: show its key pairs."""
        previous = self.ref
        self.listing = listing
        keep = self._selected_id()
        self.table.clear()
        if listing is None:
            self.header.set_title("Keys")
            self.header.subtitle.setText("Choose a token in the Devices pane.")
            self.type_combo.clear()
            self._choices_for = None
            self._update_buttons()
            return
        t = listing.token
        self.header.set_title(f"Keys — {t.label}")
        rows = key_rows(listing)
        for r in rows:
            self.table.addTopLevelItem(self._item(r))
        if keep is not None:
            self.select_key(keep)
        n = len(rows)
        text = f"{n} key pair{'s' if n != 1 else ''}"
        if listing.logged_in:
            text += " — logged in"
        elif listing.token_info.login_required:
            text += " visible without login — log in to generate, delete or use keys"
        self.header.subtitle.setText(text)
        if t != previous or self._choices_for != t:
            self._load_choices(t)
        if self.report is not None and self.report.token != t:
            self._show_report(None)
        self._update_buttons()

    def _item(self, r: KeyRow) -> QTreeWidgetItem:
        lead = r.key or r.public
        assert lead is not None
        cert = r.certificate.certificate if r.certificate is not None else None
        cert_text = ""
        if cert is not None:
            cert_text = f"{cert.subject_cn or cert.subject} — until {cert.not_after:%Y-%m-%d}"
        elif r.key is not None:
            cert_text = "no certificate"
        pairing = {True: "public keys agree", False: "DO NOT PAIR", None: "paired by ID"}[r.group.key_matches]
        if r.group.warnings:
            pairing = r.group.warnings[0]
        item = QTreeWidgetItem([r.group.label or lead.label, r.group.id_hex or "(none)", _type_words(lead),
                                cert_text, pairing])
        item.setData(0, ROLE_GROUP, r)
        item.setIcon(0, style.icon("privkey" if r.key is not None else "pubkey"))
        item.setToolTip(4, "\n".join(r.group.warnings) or pairing)
        if r.group.key_matches is False or r.group.warnings:
            item.setForeground(4, style.state_colour("error"))
            item.setIcon(4, style.icon("warning", style.state_colour("error")))
        for col in range(len(COLUMNS)):
            if not item.toolTip(col):
                item.setToolTip(col, item.text(col))
        return item

    def _selected_id(self) -> bytes | None:
        row = self.selected_row()
        return row.group.id if row is not None else None

    def selected_row(self) -> KeyRow | None:
        item = self.table.currentItem()
        return item.data(0, ROLE_GROUP) if item is not None else None

    def select_key(self, obj_id: bytes) -> bool:
        for i in range(self.table.topLevelItemCount()):
            item = self.table.topLevelItem(i)
            if item is not None and item.data(0, ROLE_GROUP).group.id == obj_id:
                self.table.setCurrentItem(item)
                return True
        return False

    def _load_choices(self, ref: TokenRef) -> None:
        self._choices_for = ref

        def done(outcome: Outcome[tuple[KeyChoice, ...]]) -> None:
            if ref != self.ref:
                return
            if outcome.error is not None:
                self.banner.show_message(f"Cannot read the key types this token generates: {outcome.error.message}")
                return
            self.choices = outcome.value or ()
            self._fill_choices()

        self.ctx.jobs.watch(self.ctx.lifecycle.key_choices(ref), done, "read the key types the token can generate",
                            command=equivalents.mechanisms(ref.module, ref.slot_id), owner=self)

    def _fill_choices(self) -> None:
        current = self.type_combo.currentData()
        self.type_combo.clear()
        model = self.type_combo.model()
        for i, c in enumerate(self.choices):
            self.type_combo.addItem(c.description if c.allowed else f"{c.description} — not on this token", c.spec)
            if not c.allowed:
                item = model.item(i)  # type: ignore[attr-defined]  # a QStandardItemModel
                item.setEnabled(False)
                item.setToolTip(c.reason)
        allowed = [c.spec for c in self.choices if c.allowed]
        pick = current if current in allowed else ("ec:prime256v1" if "ec:prime256v1" in allowed else
                                                   (allowed[0] if allowed else None))
        if pick is not None:
            self.type_combo.setCurrentIndex(self.type_combo.findData(pick))
        self._update_buttons()

    @Slot()
    def _update_buttons(self) -> None:
        listing = self.listing
        logged_in = listing is not None and listing.logged_in
        busy = self._generating_since is not None
        row = self.selected_row()
        self.login_button.setVisible(listing is not None and not listing.logged_in
                                     and listing.token_info.login_required)
        # a write-protected token (CKF_WRITE_PROTECTED) takes no new, changed or deleted object
        writable = listing is None or not listing.token_info.write_protected
        self.doctor_button.setEnabled(logged_in)  # it shows the problems; its fix asks, and the token refuses
        self.gen_box.setEnabled(logged_in and writable and not busy and any(c.allowed for c in self.choices))
        self.generate_button.setEnabled(logged_in and writable and not busy)
        has_key = row is not None and row.key is not None
        self.csr_button.setEnabled(logged_in and has_key)
        self.openssl_button.setEnabled(logged_in and has_key)
        self.delete_button.setEnabled(logged_in and writable and row is not None and bool(row.group.id))
        if not writable:
            self.gen_box.setTitle("Generate a key pair on the token (the token is write-protected)")
            self.delete_button.setToolTip("The token is write-protected: nothing can be deleted.")
        elif listing is not None and not logged_in and listing.token_info.login_required:
            self.gen_box.setTitle("Generate a key pair on the token (log in first)")
        else:
            self.gen_box.setTitle("Generate a key pair on the token")

    # ------------------------------------------------------------------ generate

    @Slot()
    def generate(self, *, allow_duplicate: bool = False) -> None:
        ref = self.ref
        spec = self.type_combo.currentData()
        if ref is None or spec is None or self._generating_since is not None:
            return
        label = self.label_edit.text().strip()
        if not label:
            self.banner.show_message("Give the key a label (its name on the token; the certificate will carry it "
                                     "too).")
            self.label_edit.setFocus()
            return
        obj_id: bytes | None = None
        id_text = self.id_edit.text().strip().replace(":", "").replace(" ", "")
        if id_text:
            try:
                obj_id = bytes.fromhex(id_text)
            except ValueError:
                self.banner.show_message(f"The ID {self.id_edit.text()!r} is not hex (such as 01 or a1b2c3).")
                self.id_edit.setFocus()
                return
        self.banner.clear()
        self._generating_since = time.monotonic()
        self._tick.start()
        self._show_progress()
        self._update_buttons()
        future = self.ctx.lifecycle.generate(ref, spec, label=label, obj_id=obj_id, allow_duplicate=allow_duplicate)
        self.ctx.jobs.watch(future, lambda o: self._on_generated(ref, spec, o),
                            f"generate a {spec} key pair {label!r}",
                            command=equivalents.keygen(ref, spec, label, obj_id), owner=self)

    def _show_progress(self) -> None:
        if self._generating_since is None:
            return
        seconds = time.monotonic() - self._generating_since
        spec = str(self.type_combo.currentData() or "")
        slow = " — a smart card can take a minute for RSA" if spec.startswith("rsa") else ""
        self.progress.setText(f"The token is generating the key pair… {seconds:.0f} s{slow}")

    def _on_generated(self, ref: TokenRef, spec: str, outcome: Outcome[GeneratedKey]) -> None:
        seconds = time.monotonic() - (self._generating_since or time.monotonic())
        self._generating_since = None
        self._tick.stop()
        self.progress.clear()
        self._update_buttons()
        err = outcome.error
        if isinstance(err, E.ConflictError):
            if ask(self, "Label or ID in use", err.message, "Generate anyway", details=err.hint):
                self.generate(allow_duplicate=True)
            return
        if err is not None:
            self.banner.show_message(str(err), "error")
            self.status.emit(err.message)
            return
        result = outcome.value
        assert result is not None
        self.label_edit.clear()
        self.id_edit.clear()
        key = next((o for o in result.listing.objects
                    if o.id == result.id and o.object_class == C.CKO_PRIVATE_KEY), None)
        self.objects.apply_listing(result.listing, select=key.handle if key is not None else None)
        self.select_key(result.id)
        self.banner.show_message(
            f"Generated {result.label!r} ({spec}) in {seconds:.1f} s; its ID is {result.id.hex()} "
            f"({result.id_source}). Next: a certificate request for it.", "ok")
        self.status.emit(f"Generated key pair {result.label!r}")

    # ------------------------------------------------------------------ delete

    @Slot()
    def delete_selected(self) -> None:
        ref, row = self.ref, self.selected_row()
        if ref is None or row is None or not row.group.id:
            return
        obj_id = row.group.id

        def confirm(outcome: Outcome[tuple[ObjectInfo, ...]]) -> None:
            if outcome.error is not None:
                self.banner.show_message(str(outcome.error), "error")
                return
            targets = outcome.value or ()
            if not targets:
                return
            listed = "".join(f"<li>{html.escape(_object_words(o))}</li>" for o in targets)
            if not ask(self, "Delete from the token",
                       f"Delete these {len(targets)} object(s) from {html.escape(ref.describe())}?<ul>{listed}</ul>",
                       "Delete", destructive=True,
                       details="A deleted private key cannot be brought back: certificates issued for it become "
                               "useless."):
                return
            future = self.ctx.lifecycle.delete(ref, obj_id, None, expected=frozenset(o.handle for o in targets))
            self.ctx.jobs.watch(future, self._on_deleted, f"delete the objects with ID {obj_id.hex()}",
                                command=" && ".join(equivalents.delete(ref, k, obj_id) for k in
                                                    _kinds(targets)), owner=self)

        self.ctx.jobs.watch(self.ctx.lifecycle.delete_preview(ref, obj_id), confirm, "find the objects to delete",
                            owner=self)

    def _on_deleted(self, outcome: Outcome[DeleteResult]) -> None:
        if outcome.error is not None:
            self.banner.show_message(str(outcome.error), "error")
            return
        result = outcome.value
        assert result is not None
        self.objects.apply_listing(result.listing)
        words = ", ".join(_object_words(o) for o in result.deleted)
        self.banner.show_message(f"Deleted {words}.", "ok")
        self.status.emit(f"Deleted {len(result.deleted)} object(s)")

    # ------------------------------------------------------------------ the doctor

    @Slot()
    def run_doctor(self) -> None:
        ref = self.ref
        if ref is None:
            return
        self.ctx.jobs.watch(self.ctx.lifecycle.doctor(ref), self._on_report, "check how keys and certificates pair "
                            "up", command=f"cert-desk doctor --token {ref.label!r}", owner=self)

    def _on_report(self, outcome: Outcome[DoctorReport]) -> None:
        if outcome.error is not None:
            self.banner.show_message(str(outcome.error), "error")
            return
        report = outcome.value
        assert report is not None
        if report.fixed:
            self.objects.apply_listing(report.listing)
        self._show_report(report)

    def _show_report(self, report: DoctorReport | None) -> None:
        self.report = report
        self.doctor_box.setVisible(report is not None)
        fixable = [f for f in report.findings if f.new_id is not None] if report is not None else []
        self.fix_button.setEnabled(bool(fixable))
        self.fix_button.setText(f"Fix {len(fixable)}…" if fixable else "Fix…")
        if report is None:
            self.doctor_text.clear()
            return
        parts = [f"<p style='color:{style.state_hex('ok')}'>✔ {html.escape(line)}</p>" for line in report.fixed]
        if not report.findings:
            parts.append(f"<p style='color:{style.state_hex('ok')}'>Every key and certificate on this token pairs "
                         "up.</p>")
        kinds = {"error": "error", "warning": "warn", "info": "muted"}
        for f in report.findings:
            colour = style.state_hex(kinds.get(f.severity, "muted"))
            fix = f"<br><i>Fix: {html.escape(f.fix)}</i>" if f.fix else ""
            parts.append(f"<p><b style='color:{colour}'>{f.severity}</b> {html.escape(f.message)}{fix}</p>")
        self.doctor_text.setHtml("".join(parts))

    @Slot()
    def fix_pairing(self) -> None:
        ref, report = self.ref, self.report
        if ref is None or report is None:
            return
        fixes = [f for f in report.findings if f.new_id is not None]
        if not fixes:
            return
        listed = "".join(f"<li>{html.escape(f.fix)}: {html.escape(f.message)}</li>" for f in fixes)
        if not ask(self, "Fix the pairing", f"cert-desk will change {len(fixes)} certificate(s):<ul>{listed}</ul>",
                   "Fix"):
            return
        self.ctx.jobs.watch(self.ctx.lifecycle.doctor(ref, fix=True), self._on_report,
                            "give certificates their key's ID", command=f"cert-desk doctor --token {ref.label!r} --fix",
                            owner=self)

    # ------------------------------------------------------------------ hand-offs

    def _request_csr(self) -> None:
        row = self.selected_row()
        if row is not None and row.key is not None:
            self.csr_requested.emit(row.key)

    def _request_openssl(self) -> None:
        row = self.selected_row()
        if row is not None and row.key is not None:
            self.openssl_requested.emit(row.key)


def _object_words(o: ObjectInfo) -> str:
    kind = C.OBJECT_CLASS_WORDS.get(o.object_class, o.class_name).lower()
    extra = ""
    if o.certificate is not None:
        extra = f", {o.certificate.subject_cn or o.certificate.subject}"
    elif o.key_type:
        extra = f", {_type_words(o)}"
    return f"{kind} {o.label!r} (ID {o.id_hex}{extra})"


def _kinds(objects: tuple[ObjectInfo, ...]) -> list[str]:
    names = {C.CKO_PRIVATE_KEY: "privkey", C.CKO_PUBLIC_KEY: "pubkey", C.CKO_CERTIFICATE: "cert"}
    return list(dict.fromkeys(names[o.object_class] for o in objects if o.object_class in names))
