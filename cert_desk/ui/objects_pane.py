"""The Objects pane: a token's key pairs and objects, their details, login, copy and export."""

from __future__ import annotations

import html
import os
from datetime import UTC, datetime

from PySide6.QtCore import QModelIndex, Qt, Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTableView,
    QTextBrowser,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from cert_desk import equivalents
from cert_desk import errors as E
from cert_desk.models import (
    KeyGroup,
    LoginPreparation,
    LoginResult,
    ObjectInfo,
    ObjectListing,
    SlotReport,
    TokenInfo,
    TokenRef,
    TokenSelector,
)
from cert_desk.services.outcome import Outcome
from cert_desk.ui import style
from cert_desk.ui.app import AppContext
from cert_desk.ui.details import group_html, object_html
from cert_desk.ui.objects_model import BrowserViewModel, ObjectsModel
from cert_desk.ui.pin_dialog import PinDialog
from cert_desk.ui.widgets import Banner, PaneHeader
from cert_desk.x509 import export

_COLUMN_WIDTHS = (150, 150, 50, 115, 140, 140, 120, 90)
# Expanding 1,000 key pairs costs the view a walk of every row: past this, pairs start folded.
EXPAND_LIMIT = 200


class ObjectsPane(QWidget):
    """The objects of the token chosen in the Devices pane.

    Signals:
        status(str): A message for the status bar.
        login_changed(TokenRef, bool): The user logged in to, or out of, a token.
        listing_changed(ObjectListing | None): The token's objects as now listed (None: no token,
            or it was removed). The Keys and Certificates panes work on this token.
    """

    status = Signal(str)
    login_changed = Signal(object, bool)
    listing_changed = Signal(object)
    unblock_requested = Signal(object)  # a TokenRef whose user PIN is locked
    change_pin_requested = Signal(object)  # a TokenRef whose token wants its user PIN changed first

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.ref: TokenRef | None = None
        self.token: TokenInfo | None = None
        self.logged_in = False
        self.removed = False
        self.dialog: PinDialog | None = None

        self.header = PaneHeader("Objects", ctx.jobs, self)
        self.login_button = QPushButton("Log in…")
        style.themed(self.login_button, "login")
        self.login_button.setToolTip("Log in to see private keys (Ctrl+L)")
        self.logout_button = QPushButton("Log out")
        style.themed(self.logout_button, "logout")
        self.browser_button = QToolButton()
        self.browser_button.setText("Browser view")
        self.browser_button.setCheckable(True)
        self.browser_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.browser_button.setToolTip("List the certificates the way a browser's certificate chooser does")
        style.themed(self.browser_button, "browserview")
        self.refresh_button = QPushButton("Refresh")
        style.themed(self.refresh_button, "refresh")
        for b in (self.login_button, self.logout_button, self.browser_button, self.refresh_button):
            self.header.buttons.addWidget(b)
        self.login_button.clicked.connect(self.login)
        self.logout_button.clicked.connect(self.logout)
        self.browser_button.toggled.connect(self._on_browser_view)
        self.refresh_button.clicked.connect(self.refresh)

        self.banner = Banner(self)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter by label, ID, subject, issuer, serial…  (Ctrl+F)")
        self.filter.setClearButtonEnabled(True)

        self.model = ObjectsModel(self)
        self.filter.textChanged.connect(self._on_filter)
        self.tree = QTreeView()
        self.tree.setObjectName("objectsTree")
        self.tree.setModel(self.model)
        self.tree.setUniformRowHeights(True)
        self.tree.setSortingEnabled(True)
        self.tree.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.tree.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.tree.setAlternatingRowColors(True)
        self.tree.setIconSize(style.ICON_SIZE)
        header = self.tree.header()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)  # ResizeToContents scans every row
        header.setStretchLastSection(False)
        header.setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)  # Subject takes what is left: Expires shows
        for col, width in enumerate(_COLUMN_WIDTHS):
            self.tree.setColumnWidth(col, width)
        self.tree.selectionModel().currentChanged.connect(self._on_current)
        self.tree.collapsed.connect(self._on_collapsed)
        self.tree.expanded.connect(self._on_expanded)

        self.browser_model = BrowserViewModel(self)
        self.browser = QTableView()
        self.browser.setModel(self.browser_model)
        self.browser.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.browser.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.browser.verticalHeader().setVisible(False)
        self.browser.horizontalHeader().setStretchLastSection(True)
        for col, width in enumerate((300, 300)):
            self.browser.setColumnWidth(col, width)
        self.browser.selectionModel().currentChanged.connect(self._on_browser_current)
        self.views = QStackedWidget()
        self.views.addWidget(self.tree)
        self.views.addWidget(self.browser)

        self.details = QTextBrowser()
        self.details.setObjectName("details")
        self.details.setOpenLinks(False)
        self.copy_uri = QPushButton("Copy URI")
        self.copy_openssl = QPushButton("Copy OpenSSL key")
        self.copy_pem = QPushButton("Copy PEM")
        self.export_cert = QPushButton("Export certificate…")
        self.export_key = QPushButton("Export public key…")
        for b, icon in ((self.copy_uri, "copy"), (self.copy_openssl, "copy"), (self.copy_pem, "copy"),
                        (self.export_cert, "export"), (self.export_key, "export")):
            style.themed(b, icon)
        self.copy_uri.setToolTip("Copy the RFC 7512 PKCS#11 URI")
        self.copy_openssl.setToolTip("Copy the libp11 engine key references, one per line (the first uses the "
                                     "real slot ID)")
        self.copy_uri.clicked.connect(self._copy_uri)
        self.copy_openssl.clicked.connect(self._copy_openssl)
        self.copy_pem.clicked.connect(self._copy_pem)
        self.export_cert.clicked.connect(self._export_certificate_dialog)
        self.export_key.clicked.connect(self._export_public_key_dialog)
        actions = QHBoxLayout()
        actions.setSpacing(style.SPACING)
        for b in (self.copy_uri, self.copy_openssl, self.copy_pem):
            actions.addWidget(b)
        actions.addStretch(1)
        actions.addWidget(self.export_cert)
        actions.addWidget(self.export_key)
        details_box = QWidget()
        dl = QVBoxLayout(details_box)
        dl.setContentsMargins(0, 0, 0, 0)
        dl.setSpacing(style.SPACING)
        dl.addLayout(actions)
        dl.addWidget(self.details, 1)

        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.setObjectName("objectsSplit")
        self.split.addWidget(self.views)
        self.split.addWidget(details_box)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 2)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(style.MARGIN, style.MARGIN, style.MARGIN, style.MARGIN)
        layout.setSpacing(style.SPACING)
        layout.addWidget(self.header)
        layout.addWidget(self.banner)
        layout.addWidget(self.filter)
        layout.addWidget(self.split, 1)


        self._current: ObjectInfo | None = None
        self._current_group: KeyGroup | None = None
        self._members: list[ObjectInfo] = []
        self._keep: tuple[str, int] | None = None
        self._login_pending = False
        self._select_next: int | None = None
        self._collapsed: set[int] = set()  # key pairs the user folded (by a member's handle)
        self.model.modelAboutToBeReset.connect(self._remember_selection)
        self.model.modelReset.connect(self._after_reset)
        self._update_buttons()
        self._show_empty()

    # ------------------------------------------------------------------ token

    def show_token(self, ref: TokenRef, token: TokenInfo | None = None, *, select: int | None = None) -> None:
        """Show ``ref``'s objects (the Devices pane calls this when the user picks a token);
        ``select``: the handle of the object to select once they are listed."""
        self._select_next = select
        if ref != self.ref:
            self.logged_in = False
            self.model.set_listing(None)
            self.browser_model.set_listing(None)
            self.listing_changed.emit(None)
            self.header.subtitle.setText("Reading the objects…")
            self.banner.clear()
            self._close_dialog()
        self.ref = ref
        self.token = token
        self.removed = False
        self.header.set_title(f"Objects — {ref.label}")
        self.refresh()

    @Slot(str, object)
    def tokens_changed(self, module: str, slots: tuple[SlotReport, ...]) -> None:
        """A module's tokens changed: if this pane's token left, say so and show nothing stale;
        when it comes back (anywhere on that module, by serial), list it again, logged out."""
        ref = self.ref
        if ref is None or ref.module != module:
            return
        here = next((r for r in slots if r.token is not None and r.token.initialized
                     and r.token.serial == ref.serial), None)
        if here is None:
            if not self.removed:
                self._show_error(E.TokenRemovedError(f"{ref.describe()} was removed.", operation="watch the token"))
            return
        assert here.token is not None
        if self.removed or here.slot.slot_id != ref.slot_id or here.token.label != ref.label:
            self.removed = False
            self.logged_in = False
            self.show_token(TokenRef(module, here.slot.slot_id, here.token.serial, here.token.label), here.token)

    def modules_reloaded(self) -> None:
        """Every module was initialised again: logins are gone; list again (or find the token gone)."""
        self.logged_in = False
        self._close_dialog()
        self.refresh()

    def _close_dialog(self) -> None:
        if self.dialog is not None:
            self.dialog.reject()

    def _show_empty(self) -> None:
        self.header.subtitle.setText("")
        self.details.setHtml("<p>Choose a token in the <b>Devices</b> pane (or open the demo token there).</p>")

    @Slot()
    def refresh(self) -> None:
        ref = self.ref
        if ref is None:
            return
        service = self.ctx.service
        if self.removed:
            # The token went away: find it again by serial (it may be back in another slot).
            def find_again() -> ObjectListing:
                again = service.find_token(TokenSelector(serial=ref.serial), [ref.module])
                return service.list_objects(again).result()

            future = self.ctx.tasks.submit(find_again)
        else:
            future = service.list_objects(ref)
        self.ctx.jobs.watch(future, lambda o: self._on_listing(ref, o), f"list the objects of {ref.label!r}",
                            command=equivalents.objects(ref, logged_in=self.logged_in), owner=self)
        self._update_buttons()

    def _on_listing(self, ref: TokenRef, outcome: Outcome[ObjectListing]) -> None:
        if ref != self.ref:
            return  # the user chose another token meanwhile
        if outcome.error is not None:
            self._show_error(outcome.error)
            return
        listing = outcome.value
        assert listing is not None
        self.apply_listing(listing)

    def apply_listing(self, listing: ObjectListing, *, select: int | None = None) -> None:
        """Show ``listing`` (a fresh one, or the one a lifecycle operation returned with its result)."""
        if select is not None:
            self._select_next = select
        ref = self.ref
        self.ref = listing.token
        self.token = listing.token_info
        self.removed = False
        self.header.set_title(f"Objects — {listing.token.label}")
        self.logged_in = listing.logged_in
        self.banner.clear()
        if listing.token != ref:
            self._collapsed.clear()
        self.model.set_listing(listing)
        self.browser_model.set_listing(listing)
        self._sync_details()
        n = len(listing.objects)
        hidden = listing.token_info.login_required and not listing.logged_in
        pairs = sum(1 for g in listing.groups if g.private_keys or (hidden and g.public_keys))
        text = f"{n} object{'s' if n != 1 else ''}, {pairs} key pair{'s' if pairs != 1 else ''}"
        if listing.logged_in:
            text += " — logged in"
        elif listing.token_info.login_required:
            text += " visible without login — log in to see the private keys"
        self.header.subtitle.setText(text)
        if listing.warnings:
            self.banner.show_message(f"{len(listing.warnings)} problem(s) on this token: "
                                     + " ".join(listing.warnings[:2])
                                     + (" …" if len(listing.warnings) > 2 else ""), "warn")
        self._update_buttons()
        self.listing_changed.emit(listing)

    def _show_error(self, err: E.CertDeskError) -> None:
        if isinstance(err, E.TokenRemovedError | E.NoTokenError):
            self.removed = True
            self.logged_in = False
            self.model.set_listing(None)  # no stale data
            self.browser_model.set_listing(None)
            self.listing_changed.emit(None)
            self._set_current(None, None)
            self.header.subtitle.setText("")
            self.banner.show_message(f"{err.message}\nInsert the token again and press Refresh.", "error")
        else:
            self.banner.show_message(str(err), "error")
        self.status.emit(err.message)
        self._update_buttons()

    # ------------------------------------------------------------------ login

    @Slot()
    def login(self) -> None:
        ref = self.ref
        if ref is None or self.logged_in or self.removed or self.dialog is not None or self._login_pending:
            return
        self._login_pending = True
        self.login_button.setEnabled(False)
        self.ctx.jobs.watch(self.ctx.service.prepare_login(ref), lambda o: self._open_pin_dialog(ref, o),
                            "read the PIN state", command=equivalents.slots(ref.module), owner=self)

    def _open_pin_dialog(self, ref: TokenRef, outcome: Outcome[LoginPreparation]) -> None:
        self._login_pending = False
        self._update_buttons()
        if ref != self.ref:  # the user chose another token meanwhile
            if outcome.value is not None and outcome.value.result is not None:  # no login nobody sees
                self.ctx.jobs.watch(self.ctx.service.logout(ref), lambda _o: None, f"log out of {ref.label!r}",
                                    owner=self)
            return
        if outcome.error is not None:
            self._show_error(outcome.error)
            return
        prep = outcome.value
        assert prep is not None
        if prep.result is not None:  # logged in with the PIN remembered in the keyring
            self._logged_in(ref, "with the PIN remembered in the keyring")
            return
        if prep.token.user_pin is E.PinState.TO_BE_CHANGED and not prep.token.protected_authentication_path:
            self.status.emit(f"{ref.label} wants its PIN changed first; log in with the new one afterwards.")
            self.change_pin_requested.emit(ref)
            return
        dialog = PinDialog(prep.token, parent=self, keyring=(prep.keyring_available, prep.keyring_reason),
                           remembered=prep.remembered)
        if prep.notice:
            dialog.show_message(prep.notice, "warn")
        dialog.submitted.connect(lambda pin: self._submit_pin(ref, dialog, pin))
        dialog.unblock_requested.connect(lambda: self.unblock_requested.emit(ref))
        dialog.finished.connect(self._dialog_closed)
        self.dialog = dialog
        self._update_buttons()
        dialog.open()

    def _logged_in(self, ref: TokenRef, how: str = "", notice: str = "") -> None:
        self.logged_in = True
        self.login_changed.emit(ref, True)
        self.status.emit(f"Logged in to {ref.label} {how}".rstrip() + (f". {notice}" if notice else ""))
        self.refresh()

    @Slot()
    def _dialog_closed(self) -> None:
        if self.dialog is not None:
            self.dialog.deleteLater()  # nothing of it (its line edit's undo history) outlives it
        self.dialog = None
        self._update_buttons()

    def _submit_pin(self, ref: TokenRef, dialog: PinDialog, pin: object) -> None:
        from cert_desk.secrets import Secret

        secret = pin if isinstance(pin, Secret) else None
        future = self.ctx.service.login(ref, secret, allow_final_try=dialog.allow_final_try,
                                        remember=dialog.remember_choice)
        del pin, secret  # the worker holds the only reference now; nothing here keeps the PIN
        self.ctx.jobs.watch(future, lambda o: self._on_login(ref, dialog, o), f"log in to {ref.label!r}",
                            command=equivalents.login(ref), owner=self)

    def _on_login(self, ref: TokenRef, dialog: PinDialog, outcome: Outcome[LoginResult]) -> None:
        if ref != self.ref or dialog is not self.dialog:
            return  # another token is shown now, or the dialog was closed: this answer is not for it
        err = outcome.error
        if err is None:
            dialog.accept()
            self._logged_in(ref, notice=outcome.value.notice if outcome.value else "")
            return
        if isinstance(err, E.PinError):
            # Read the token again: the dialog shows what the token now says about the PIN.
            self.ctx.jobs.watch(self.ctx.service.token_info(ref),
                                lambda o: dialog.show_refusal(str(err), o.value) if dialog is self.dialog else None,
                                "read the PIN state", command=equivalents.slots(ref.module), owner=self)
            return
        dialog.reject()
        self._show_error(err)

    @Slot()
    def logout(self) -> None:
        ref = self.ref
        if ref is None or not self.logged_in:
            return

        def done(outcome: Outcome[LoginResult]) -> None:
            self.logged_in = False
            self.login_changed.emit(ref, False)
            if outcome.error is not None:
                self._show_error(outcome.error)
                return
            self.status.emit(f"Logged out of {ref.label}")
            self.refresh()

        self.ctx.jobs.watch(self.ctx.service.logout(ref), done, f"log out of {ref.label!r}", owner=self)

    # -------------------------------------------------------------- selection

    @Slot(QModelIndex)
    def _on_collapsed(self, index: QModelIndex) -> None:
        if not self.model.filtering:
            self._collapsed.add(self.model.first_handle(index))

    @Slot(QModelIndex)
    def _on_expanded(self, index: QModelIndex) -> None:
        self._collapsed.discard(self.model.first_handle(index))

    @Slot(str)
    def _on_filter(self, text: str) -> None:
        self.model.set_filter(text)
        self.browser_model.set_filter(text)
        self._sync_details()

    @Slot(bool)
    def _on_browser_view(self, on: bool) -> None:
        self.views.setCurrentWidget(self.browser if on else self.tree)
        if on and self.browser_model.rowCount() and not self.browser.currentIndex().isValid():
            self.browser.selectRow(0)
        self._sync_details()

    def _sync_details(self) -> None:
        """The details (and what Copy and Export act on) are always the visible view's selection."""
        if self.views.currentWidget() is self.browser:
            self._on_browser_current()
            if not self.browser.currentIndex().isValid():
                self._set_current(None, None)
        else:
            self._on_current()

    @Slot()
    def _remember_selection(self) -> None:
        index = self.tree.currentIndex()
        obj = self.model.data(index, ObjectsModel.ObjectRole) if index.isValid() else None
        group = self.model.data(index, ObjectsModel.GroupRole) if index.isValid() else None
        if obj is not None:
            self._keep = ("object", obj.handle)
        elif group is not None:
            self._keep = ("group", (*group.private_keys, *group.public_keys, *group.certificates)[0])
        else:
            self._keep = None

    @Slot()
    def _after_reset(self) -> None:
        """Expand the key pairs (unless there are very many, or the user folded them), and select
        what was selected."""
        if self.model.filtering or self.model.group_count() <= EXPAND_LIMIT:
            for r in range(self.model.rowCount()):
                index = self.model.index(r, 0)
                if self.model.rowCount(index) and (self.model.filtering
                                                    or self.model.first_handle(index) not in self._collapsed):
                    self.tree.expand(index)
        index = QModelIndex()
        if self._select_next is not None and self.model.listing is not None:
            self._keep = ("object", self._select_next)
            self._select_next = None
        if self._keep is not None:
            kind, handle = self._keep
            index = self.model.find_handle(handle)
            if kind == "group" and index.isValid() and index.parent().isValid():
                index = index.parent()
        if not index.isValid() and self.model.rowCount():
            index = self.model.index(0, 0)
        if index.isValid():
            self.tree.setCurrentIndex(index)
        else:
            self._set_current(None, None)

    @Slot()
    def _on_current(self) -> None:
        if self.views.currentWidget() is not self.tree:
            return
        index = self.tree.currentIndex()
        obj = self.model.data(index, ObjectsModel.ObjectRole) if index.isValid() else None
        group = self.model.data(index, ObjectsModel.GroupRole) if index.isValid() else None
        if group is None and obj is not None:
            group = self._group_of(obj)
        self._set_current(obj, group, self.model.group_members(index) if index.isValid() else [])

    @Slot()
    def _on_browser_current(self) -> None:
        if self.views.currentWidget() is not self.browser:
            return
        obj = self.browser_model.data(self.browser.currentIndex(), BrowserViewModel.ObjectRole)
        if obj is not None:
            self._set_current(obj, self._group_of(obj))

    def _group_of(self, obj: ObjectInfo) -> KeyGroup | None:
        listing = self.model.listing
        if listing is None:
            return None
        for g in listing.groups:
            if obj.handle in (*g.private_keys, *g.public_keys, *g.certificates):
                return g
        return None

    def _set_current(self, obj: ObjectInfo | None, group: KeyGroup | None,
                     members: list[ObjectInfo] | None = None) -> None:
        self._current = obj
        self._current_group = group
        self._members = members or []
        now = datetime.now(UTC)
        if obj is not None:
            self.details.setHtml(object_html(obj, group, now))
        elif group is not None:
            self.details.setHtml(group_html(group, self._members, now))
        elif self.ref is None:
            self._show_empty()
        else:
            self.details.clear()
        self._update_buttons()

    def _selected_objects(self) -> list[ObjectInfo]:
        if self._current is not None:
            listing = self.model.listing
            if self._current_group is not None and listing is not None:
                by = {o.handle: o for o in listing.objects}
                g = self._current_group
                others = [by[h] for h in (*g.private_keys, *g.public_keys, *g.certificates)
                          if h in by and h != self._current.handle]
                return [self._current, *others]
            return [self._current]
        return list(self._members)

    def selected_certificate(self) -> ObjectInfo | None:
        if self._current is not None and self._current.certificate is not None:
            return self._current
        if self._current is None:
            return next((m for m in self._selected_objects() if m.certificate is not None), None)
        return None

    def selected_reference(self) -> ObjectInfo | None:
        """The object whose URI and OpenSSL references the Copy buttons give (a pair: its key)."""
        if self._current is not None:
            return self._current
        return next((m for m in self._members if m.openssl_key), None)

    def selected_public_key(self) -> ObjectInfo | None:
        return next((m for m in self._selected_objects() if m.public_key_der), None)

    def _update_buttons(self) -> None:
        has_token = self.ref is not None and not self.removed
        login_required = self.token.login_required if self.token is not None else True
        self.login_button.setVisible(not self.logged_in)
        self.login_button.setEnabled(has_token and login_required and self.dialog is None and not self._login_pending)
        self.logout_button.setVisible(self.logged_in)
        self.refresh_button.setEnabled(self.ref is not None)
        ref_obj = self.selected_reference()
        self.copy_uri.setEnabled(ref_obj is not None)
        self.copy_openssl.setEnabled(ref_obj is not None and bool(ref_obj.openssl_key))
        has_cert = self.selected_certificate() is not None
        self.copy_pem.setEnabled(has_cert)
        self.export_cert.setEnabled(has_cert)
        self.export_key.setEnabled(self.selected_public_key() is not None)

    # ---------------------------------------------------------- copy / export

    @Slot()
    def _copy_uri(self) -> None:
        o = self.selected_reference()
        if o is not None:
            QGuiApplication.clipboard().setText(o.uri)
            self.status.emit("Copied the PKCS#11 URI")

    @Slot()
    def _copy_openssl(self) -> None:
        o = self.selected_reference()
        if o is not None and o.openssl_key:
            QGuiApplication.clipboard().setText("\n".join(o.openssl_key))
            self.status.emit("Copied the OpenSSL key references")

    @Slot()
    def _copy_pem(self) -> None:
        o = self.selected_certificate()
        if o is not None and o.certificate is not None:
            QGuiApplication.clipboard().setText(o.certificate.pem())
            self.status.emit("Copied the certificate (PEM)")

    def _ask_path(self, title: str, name: str) -> tuple[str, str | None]:
        path, chosen = QFileDialog.getSaveFileName(
            self, title, os.path.join(os.path.expanduser("~"), name),
            "PEM (*.pem *.crt);;DER (*.der *.cer);;All files (*)")
        fmt = "pem" if chosen.startswith("PEM") else "der" if chosen.startswith("DER") else None
        return path, fmt

    @Slot()
    def _export_certificate_dialog(self) -> None:
        o = self.selected_certificate()
        if o is None:
            return
        path, fmt = self._ask_path("Export certificate", f"{o.label or 'certificate'}.pem")
        if path:
            self.export_certificate(path, export.format_for(path, fmt))

    @Slot()
    def _export_public_key_dialog(self) -> None:
        o = self.selected_public_key()
        if o is None:
            return
        path, fmt = self._ask_path("Export public key", f"{o.label or 'public-key'}.pub.pem")
        if path:
            self.export_public_key(path, export.format_for(path, fmt))

    def export_certificate(self, path: str, fmt: str) -> None:
        """Write the selected certificate to ``path`` (off the GUI thread)."""
        o = self.selected_certificate()
        if o is None or o.certificate is None or self.ref is None:
            return
        cert = o.certificate
        self._write(path, lambda: export.certificate_bytes(cert, fmt), "export the certificate",
                    equivalents.export_certificate(self.ref, o.id, o.label, path, fmt))

    def export_public_key(self, path: str, fmt: str) -> None:
        o = self.selected_public_key()
        if o is None or o.public_key_der is None or self.ref is None:
            return
        spki = o.public_key_der
        self._write(path, lambda: export.public_key_bytes(spki, fmt), "export the public key",
                    equivalents.export_public_key(self.ref, o.id, o.label, path, fmt))

    def _write(self, path: str, make: object, what: str, command: str) -> None:
        def task() -> str:
            return export.write_file(path, make())  # type: ignore[operator]

        def done(outcome: Outcome[str]) -> None:
            if outcome.error is not None:
                self.banner.show_message(str(outcome.error), "error")
                self.status.emit(outcome.error.message)
            else:
                self.status.emit(f"Wrote {outcome.value}")

        self.ctx.jobs.watch(self.ctx.tasks.submit(task), done, f"{what} to {path}", command=command, owner=self)

    def retheme(self) -> None:
        """The palette changed: redraw the details in its colours."""
        self._sync_details()

    def current_details_text(self) -> str:
        return html.unescape(self.details.toPlainText())
