"""The Objects pane: a token's objects in a sortable, filterable table, and every attribute of one."""

from __future__ import annotations

import html

from PySide6.QtCore import QSortFilterProxyModel, Qt, Signal, Slot
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from cert_desk.models import ObjectInfo, ObjectListing, TokenRef
from cert_desk.pkcs11.attributes import attribute_name, attribute_text
from cert_desk.pkcs11.constants import OBJECT_CLASS_WORDS
from cert_desk.services.outcome import Outcome
from cert_desk.ui.app import AppContext
from cert_desk.ui.objects_model import ObjectsModel, key_text


def object_html(o: ObjectInfo, listing: ObjectListing | None) -> str:
    title = f"{OBJECT_CLASS_WORDS.get(o.object_class, o.class_name)}: {o.label or '(no label)'}"
    rows: list[tuple[str, str]] = [("ID", o.id_hex or "(none)")]
    if o.key_type:
        rows.append(("Key", key_text(o)))
    if o.usage:
        rows.append(("Usage", ", ".join(o.usage)))
    c = o.certificate
    if c is not None:
        rows += [
            ("Subject", c.subject), ("Issuer", c.issuer), ("Serial", c.serial),
            ("Valid from", f"{c.not_before:%Y-%m-%d %H:%M} UTC"), ("Valid until", f"{c.not_after:%Y-%m-%d %H:%M} UTC"),
            ("Key usage", ", ".join(c.key_usage) or "-"),
            ("Extended key usage", ", ".join(c.extended_key_usage) or "-"),
            ("Alternative names", ", ".join(c.subject_alt_names) or "-"),
            ("SHA-256", c.sha256_fingerprint), ("SHA-1", c.sha1_fingerprint),
        ]
    rows.append(("PKCS#11 URI", o.uri))
    if o.openssl_key:
        rows.append(("OpenSSL key", "   ".join(o.openssl_key)))
    out = f"<h3>{html.escape(title)}</h3>"
    for p in o.problems:
        out += f"<p style='color:#c0392b'>{html.escape(p)}</p>"
    if listing is not None:
        for g in listing.groups:
            if o.handle in (*g.private_keys, *g.public_keys, *g.certificates):
                for w in g.warnings:
                    out += f"<p style='color:#b26a00'>⚠ {html.escape(w)}</p>"
    out += "<table>" + "".join(
        f"<tr><td style='padding-right:12px' valign='top'><b>{html.escape(k)}</b></td>"
        f"<td style='font-family:monospace'>{html.escape(v)}</td></tr>" for k, v in rows) + "</table>"
    named = [(attribute_name(k), k, v) for k, v in o.attributes]
    out += "<h4>All attributes</h4><table>" + "".join(
        f"<tr><td style='padding-right:12px'>{html.escape(name)}</td><td style='font-family:monospace'>"
        f"{html.escape(attribute_text(k, v))}</td></tr>" for name, k, v in named) + "</table>"
    return out


class ObjectsPane(QWidget):
    """The objects of the token chosen in the Devices pane.

    Signals:
        status(str): A message for the status bar.
    """

    status = Signal(str)

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.ref: TokenRef | None = None

        self.title = QLabel("<h3>No token chosen</h3>")
        self.note = QLabel("Choose a token in the Devices pane.")
        self.note.setWordWrap(True)
        self.refresh_button = QPushButton(QIcon.fromTheme("view-refresh"), "Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.refresh_button.setEnabled(False)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter (label, ID, subject, …)")
        self.filter.setClearButtonEnabled(True)
        head = QHBoxLayout()
        head.addWidget(self.title, 1)
        head.addWidget(self.filter)
        head.addWidget(self.refresh_button)

        self.model = ObjectsModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setSortRole(ObjectsModel.SortRole)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.selectionModel().currentRowChanged.connect(self._on_current)
        self.details = QTextBrowser()
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.details)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)

        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addWidget(self.note)
        layout.addWidget(split, 1)

    def show_token(self, ref: TokenRef) -> None:
        self.ref = ref
        self.title.setText(f"<h3>{html.escape(ref.label)}</h3>")
        self.refresh_button.setEnabled(True)
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        if self.ref is None:
            return
        ref = self.ref
        self.note.setText("Reading the objects…")
        self.ctx.jobs.watch(self.ctx.service.list_objects(ref),
                            lambda outcome: self._on_listing(ref, outcome), f"list the objects of {ref.label}")

    def _on_listing(self, ref: TokenRef, outcome: Outcome[ObjectListing]) -> None:
        if ref != self.ref:
            return  # the user chose another token meanwhile
        if outcome.error is not None:
            self.model.set_listing(None)
            self.note.setText(f"<span style='color:#c0392b'>{html.escape(str(outcome.error))}</span>")
            self.status.emit(outcome.error.message)
            return
        listing = outcome.value
        assert listing is not None
        self.model.set_listing(listing)
        n = len(listing.objects)
        text = f"{n} object{'s' if n != 1 else ''}"
        if not listing.logged_in and listing.token_info.login_required:
            text += " visible without login; private keys appear after you log in."
        if listing.warnings:
            text += f" <span style='color:#b26a00'>{len(listing.warnings)} warning(s): select an object.</span>"
        self.note.setText(text)
        if n:
            self.table.selectRow(0)

    @Slot()
    def _on_current(self) -> None:
        index = self.proxy.mapToSource(self.table.currentIndex())
        o = self.model.object_at(index.row()) if index.isValid() else None
        self.details.setHtml(object_html(o, self.model.listing) if o is not None else "")
