"""The Browsers pane: every NSS database of the user's browsers and mail client, a tick where the
token's module is registered, and the proof: read back with NSS's tools, and a TLS login test.

Ticking and unticking only plans; *Apply* makes the changes, one database at a time, each refused
while its application runs (and named), each read back afterwards.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
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
from cert_desk.models import ObjectListing
from cert_desk.nss.tls import TlsLogin, parse_url
from cert_desk.pkcs11 import constants as C
from cert_desk.secrets import Secret
from cert_desk.services.browsers import BrowserService, Change, DatabaseState, Readback, creatable, where
from cert_desk.services.outcome import Outcome
from cert_desk.ui import style
from cert_desk.ui.app import AppContext
from cert_desk.ui.objects_pane import ObjectsPane
from cert_desk.ui.widgets import Banner, PaneHeader, ask

COLUMNS = ("Application", "Profile", "Database", "State")
ROLE_STATE = Qt.ItemDataRole.UserRole + 1


@dataclass(frozen=True)
class Plan:
    """What Apply will do to one database, with the name and module the user confirmed."""

    state: DatabaseState
    add: bool  # False: remove
    name: str = ""
    module: str = ""


def state_words(s: DatabaseState) -> tuple[str, str]:
    """(what the State column says, its colour kind)."""
    if s.running is not None:
        return f"{s.running.application} is running: close it to change this", "warn"
    if s.via_proxy:
        return f"available through p11-kit's proxy ({s.via_proxy!r})", "ok"
    if creatable(s.db):
        return "not created yet (tick to create it)", "muted"
    if not s.db.supported:
        return s.db.reason or "not supported", "muted"
    if s.problem:
        return s.problem, "error"
    if s.conflicts:
        return "; ".join(s.conflicts), "warn"
    if s.registered:
        return f"registered as {', '.join(repr(m.name) for m in s.registered)}", "ok"
    return "not registered", ""


class BrowsersPane(QWidget):
    """The token's module in the browsers' NSS databases.

    Signals:
        status(str): A message for the status bar.
    """

    status = Signal(str)

    def __init__(self, ctx: AppContext, objects: ObjectsPane, parent: QWidget | None = None,
                 service: BrowserService | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.objects = objects
        self.service = service or BrowserService()
        self.listing: ObjectListing | None = None
        self.states: tuple[DatabaseState, ...] = ()
        self._pending: list[Plan] = []
        self._busy = False  # an Apply is running: the plan, name and module are frozen
        self._ticks: dict[str, bool] = {}  # the user's ticks, by database directory, kept across rescans
        self.pin_dialog: QWidget | None = None

        self.header = PaneHeader("Browsers", ctx.jobs, self)
        self.header.subtitle.setText("The token's module in your browsers' and mail client's certificate stores")
        self.rescan_button = QPushButton("Rescan")
        style.themed(self.rescan_button, "refresh")
        self.rescan_button.clicked.connect(self.rescan)
        self.apply_button = QPushButton("Apply")
        style.themed(self.apply_button, "check")
        self.apply_button.clicked.connect(self.apply)
        for b in (self.rescan_button, self.apply_button):
            self.header.buttons.addWidget(b)
        self.banner = Banner(self)

        self.module = QComboBox()
        self.module.setObjectName("nssModule")
        self.module.setEditable(True)
        self.module.setMinimumWidth(420)
        self.module.activated.connect(lambda _i: self._on_module(self.module.currentText()))
        edit = self.module.lineEdit()
        assert edit is not None
        edit.editingFinished.connect(lambda: self._on_module(self.module.currentText()))
        self.name = QLineEdit()
        self.name.setObjectName("nssName")
        self.name.setMaximumWidth(320)
        self.url = QLineEdit("https://")
        self.url.setObjectName("testUrl")
        self.url.setPlaceholderText("https://host:port/ of a site that asks for a client certificate")
        self.nickname = QComboBox()
        self.nickname.setObjectName("testNickname")
        self.nickname.setMinimumWidth(260)
        self.test_button = QPushButton("Test login")
        style.themed(self.test_button, "verify")
        self.test_button.clicked.connect(self.test_login)
        self.readback_button = QPushButton("Read back")
        style.themed(self.readback_button, "objects")
        self.readback_button.setToolTip("What NSS itself loads from the selected database (modutil -list), and "
                                        "the token's certificates it sees (certutil -L)")
        self.readback_button.clicked.connect(self.read_back)
        test_row = QHBoxLayout()
        test_row.addWidget(self.url, 1)
        test_row.addWidget(self.nickname)
        test_row.addWidget(self.test_button)
        test_row.addWidget(self.readback_button)
        form = QFormLayout()
        form.addRow("PKCS#11 module", self.module)
        form.addRow("Name in the databases", self.name)
        form.addRow("Proof", test_row)

        self.table = QTreeWidget()
        self.table.setObjectName("nssTable")
        self.table.setHeaderLabels(list(COLUMNS))
        self.table.setRootIsDecorated(False)
        self.table.setUniformRowHeights(True)
        self.table.setAlternatingRowColors(True)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.table.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for col, width in enumerate((200, 150, 380)):
            self.table.setColumnWidth(col, width)
        self.table.itemChanged.connect(self._on_item_changed)
        self.table.currentItemChanged.connect(self._on_current)
        self.details = QTextBrowser()
        self.details.setObjectName("nssDetails")
        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.addWidget(self.table)
        self.split.addWidget(self.details)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 2)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(style.MARGIN, style.MARGIN, style.MARGIN, style.MARGIN)
        layout.setSpacing(style.SPACING)
        layout.addWidget(self.header)
        layout.addWidget(self.banner)
        layout.addLayout(form)
        layout.addWidget(self.split, 1)
        objects.listing_changed.connect(self.on_listing)
        self._fill_modules()
        self._update_buttons()

    # ------------------------------------------------------------------ module and token

    def _fill_modules(self) -> None:
        current = self.module.currentText()
        self.module.blockSignals(True)
        self.module.clear()
        for entry in self.ctx.service.modules():
            if entry.exists:
                self.module.addItem(entry.path)
        self.module.blockSignals(False)
        if current:
            self.module.setCurrentText(current)

    @Slot(object)
    def on_listing(self, listing: ObjectListing | None) -> None:
        """The token the other panes show: its module is the one to register, its certificates the test's."""
        previous = self.listing
        self.listing = listing
        self.nickname.clear()
        if listing is not None:
            for o in listing.objects:
                if o.object_class == C.CKO_CERTIFICATE and o.certificate is not None and not o.certificate.is_ca:
                    self.nickname.addItem(f"{listing.token.label}:{o.label}")
            if previous is None or previous.token.module != listing.token.module:
                self.set_module(listing.token.module)
        self._update_buttons()

    def set_module(self, path: str) -> None:
        """Show ``path`` (a real path, as tokens name their module) as the user knows the module: the
        path that is registered is the stable one (a symlink), not a versioned real file."""
        for entry in self.ctx.service.modules():
            if entry.realpath == os.path.realpath(path):
                path = entry.path
                break
        if path != self.module.currentText():
            self.module.setCurrentText(path)
            self._on_module(path)

    def _on_module(self, text: str) -> None:
        if self._busy:
            return
        if text and not self.name.isModified():
            self.name.setText(default_name(text))
        self._ticks.clear()  # another module: another plan
        self.rescan()

    def module_path(self) -> str:
        return os.path.expanduser(self.module.currentText().strip())

    # ------------------------------------------------------------------ the databases

    @Slot()
    def rescan(self) -> None:
        module = self.module_path() or None
        self.ctx.jobs.watch(self.service.scan(module), self._on_scan, "find the browsers' NSS databases",
                            command="cert-desk nss list" + (f" --module {module}" if module else ""), owner=self)

    def _on_scan(self, outcome: Outcome[tuple[DatabaseState, ...]]) -> None:
        if outcome.error is not None:
            self.banner.show_message(str(outcome.error), "error")
            return
        self.states = outcome.value or ()
        used = [m.name for s in self.states for m in s.registered]
        if used and not self.name.isModified():
            self.name.setText(used[0])  # one name in every database: the one already in use
        keep = self.selected()
        self.table.blockSignals(True)
        self.table.clear()
        for s in self.states:
            words, kind = state_words(s)
            db = s.db
            item = QTreeWidgetItem([db.application, db.profile + (" (default)" if db.default else ""), db.spec, words])
            item.setData(0, ROLE_STATE, s)
            changeable = (s.running is None and (db.supported or creatable(db)) and not s.problem
                          and not s.via_proxy)
            flags = item.flags() | Qt.ItemFlag.ItemIsUserCheckable
            if not changeable:
                flags &= ~Qt.ItemFlag.ItemIsEnabled
            item.setFlags(flags)
            on = bool(s.registered or s.via_proxy)
            if changeable and db.directory in self._ticks:  # a tick the user made before this rescan
                on = self._ticks[db.directory]
            item.setCheckState(0, Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
            item.setIcon(0, style.icon("browsers"))
            if kind:
                item.setForeground(3, style.state_colour(kind))
            for col in range(len(COLUMNS)):
                item.setToolTip(col, item.text(col))
            self.table.addTopLevelItem(item)
            if keep is not None and keep.db.directory == db.directory:
                self.table.setCurrentItem(item)
        self.table.blockSignals(False)
        n = len(self.states)
        registered = sum(1 for s in self.states if s.registered)
        self.header.subtitle.setText(f"{n} database{'s' if n != 1 else ''} found, the module registered in "
                                     f"{registered}")
        self._update_buttons()

    def selected(self) -> DatabaseState | None:
        item = self.table.currentItem()
        return item.data(0, ROLE_STATE) if item is not None else None

    def plan(self) -> list[Plan]:
        """The changes the ticks ask for, with the name and module as they are now."""
        out = []
        name, module = self.name.text().strip(), self.module_path()
        for i in range(self.table.topLevelItemCount()):
            item = self.table.topLevelItem(i)
            if item is None or not item.flags() & Qt.ItemFlag.ItemIsEnabled:
                continue
            s: DatabaseState = item.data(0, ROLE_STATE)
            ticked = item.checkState(0) == Qt.CheckState.Checked
            if ticked != bool(s.registered):
                out.append(Plan(s, ticked, name, module))
        return out

    def tick(self, directory: str, on: bool = True) -> bool:
        for i in range(self.table.topLevelItemCount()):
            item = self.table.topLevelItem(i)
            if item is not None and item.data(0, ROLE_STATE).db.directory == directory:
                item.setCheckState(0, Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
                return True
        return False

    @Slot(QTreeWidgetItem, int)
    def _on_item_changed(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        s: DatabaseState = item.data(0, ROLE_STATE)
        self._ticks[s.db.directory] = item.checkState(0) == Qt.CheckState.Checked
        self._update_buttons()

    @Slot()
    def _on_current(self) -> None:
        s = self.selected()
        if s is not None:
            self.details.setHtml(database_html(s))
        self._update_buttons()

    def _update_buttons(self) -> None:
        plan = self.plan()
        self.apply_button.setEnabled(bool(plan) and bool(self.name.text().strip()) and not self._busy)
        for w in (self.name, self.module, self.table, self.rescan_button):
            w.setEnabled(not self._busy)
        self.apply_button.setText(f"Apply {len(plan)} change{'s' if len(plan) != 1 else ''}" if plan else "Apply")
        s = self.selected()
        usable = s is not None and s.db.supported and s.problem == ""
        self.readback_button.setEnabled(usable)
        self.test_button.setEnabled(usable and self.nickname.count() > 0)

    # ------------------------------------------------------------------ apply

    @Slot()
    def apply(self) -> None:
        plan = self.plan()
        name = self.name.text().strip()
        if not plan or not name:
            return
        lines = "".join(f"<li>{'register' if p.add else 'remove'} {html.escape(name)} "
                        f"{'in' if p.add else 'from'} {html.escape(where(p.state.db))}"
                        + (" (the database is created first)" if p.add and p.state.db.format == "missing" else "")
                        + "</li>" for p in plan)
        if self._busy or not ask(
                self, "Change the browsers' module lists", f"<ul>{lines}</ul>", "Apply",
                details="Each database's module list is backed up first and restored if anything fails. A browser "
                        "reads the list when it starts."):
            return
        # one step per entry: a module registered under two names is removed under both
        self._pending = [step for p in plan for step in _steps(p)]
        self._busy = True
        self._update_buttons()
        self._next_change([])

    def _next_change(self, done: list[str]) -> None:
        if not self._pending:
            self._finish(" ".join(done) or "Nothing changed.", "ok")
            return
        p = self._pending.pop(0)
        if p.add:
            future = self.service.add(p.state.db, p.name, p.module, create=creatable(p.state.db))
            command = equivalents.modutil_add(p.state.db.spec, p.name, p.module)
        else:
            future = self.service.remove(p.state.db, p.name)
            command = equivalents.modutil_delete(p.state.db.spec, p.name)

        def finished(outcome: Outcome[Change]) -> None:
            if outcome.error is not None:
                self._pending.clear()
                self._finish(" ".join([*done, str(outcome.error)]), "error")
                return
            assert outcome.value is not None
            self._next_change([*done, outcome.value.words])

        self.ctx.jobs.watch(future, finished, f"{'register' if p.add else 'remove'} the module in "
                            f"{where(p.state.db)}", command=command, owner=self)

    def _finish(self, text: str, kind: str) -> None:
        self._busy = False
        self._ticks.clear()
        self.banner.show_message(text, kind)
        self._update_buttons()
        self.rescan()

    # ------------------------------------------------------------------ proof

    def _ask_pin(self) -> Secret | None:
        """The token's PIN, through the PIN dialog's rules (length, state); None when cancelled."""
        from cert_desk.ui.pin_dialog import PinDialog

        listing = self.listing
        if listing is None:
            return None
        dialog = PinDialog(listing.token_info, parent=self)
        got: list[object] = []
        dialog.submitted.connect(got.append)
        dialog.submitted.connect(lambda _pin: dialog.accept())
        self.pin_dialog = dialog
        dialog.exec()
        self.pin_dialog = None
        pin = got[0] if got else None
        return pin if isinstance(pin, Secret) else None

    @Slot()
    def read_back(self) -> None:
        s, listing = self.selected(), self.listing
        if s is None:
            return
        token = listing.token.label if listing is not None and self._module_is_token_module() else None
        pin = None
        if token and listing is not None and listing.token_info.login_required:
            pin = self._ask_pin()
            if pin is None:
                token = None  # the PIN was not given: the module list only
        self.ctx.jobs.watch(self.service.readback(s.db, token, pin), self._on_readback,
                            f"read back {where(s.db)}", command=equivalents.modutil_list(s.db.spec), owner=self)

    def _module_is_token_module(self) -> bool:
        return self.listing is not None and os.path.realpath(self.module_path()) == self.listing.token.module

    def _on_readback(self, outcome: Outcome[Readback]) -> None:
        if outcome.error is not None:
            self.banner.show_message(str(outcome.error), "error")
            return
        r = outcome.value
        assert r is not None
        self.details.setHtml(readback_html(r))

    @Slot()
    def test_login(self) -> None:
        s = self.selected()
        nickname, url = self.nickname.currentText(), self.url.text().strip()
        if s is None or not nickname:
            return
        try:
            parse_url(url)
        except E.InputError as err:
            self.banner.show_message(str(err), "error")
            return
        pin = self._ask_pin() if self.listing is not None and self.listing.token_info.login_required else None
        if pin is None and self.listing is not None and self.listing.token_info.login_required:
            return
        self.banner.show_message(f"Logging in to {url} with {nickname}, as a browser would…", "muted")
        host, port = parse_url(url)
        self.ctx.jobs.watch(self.service.test_login(s.db, nickname, url, pin), self._on_tested,
                            f"log in to {url} with {nickname}",
                            command=equivalents.tstclnt(s.db.spec, nickname, host, port), owner=self)

    def _on_tested(self, outcome: Outcome[TlsLogin]) -> None:
        if outcome.error is not None:
            self.banner.show_message(str(outcome.error), "error")
            return
        r = outcome.value
        assert r is not None
        self.banner.show_message(r.words + (f" The server saw: {r.server_saw}." if r.server_saw else ""),
                                 "ok" if r.ok else "error")
        self.details.setHtml(f"<h4>TLS login</h4><p>{html.escape(r.words)}</p><pre>{html.escape(r.output)}</pre>")
        self.status.emit("TLS login " + ("succeeded" if r.ok else "failed"))

    def showEvent(self, event: QShowEvent) -> None:
        """Look again each time the pane is shown: browsers start, stop and get installed meanwhile
        (the user's ticks are kept)."""
        super().showEvent(event)
        if not self._busy:
            self._fill_modules()
            self.rescan()

    def shutdown(self) -> None:
        self.service.shutdown()


def _steps(p: Plan) -> list[Plan]:
    if p.add or not p.state.registered:
        return [p]
    return [Plan(p.state, False, m.name, p.module) for m in p.state.registered]


def default_name(module_path: str) -> str:
    """The name a module gets in the databases when the user gives none (``softhsm2``, ``opensc-pkcs11``)."""
    from cert_desk.pkcs11.discovery import short_name

    return short_name(module_path)


def database_html(s: DatabaseState) -> str:
    e = html.escape
    db = s.db
    rows = [f"<h3>{e(where(db))}</h3>", f"<p><tt>{e(db.spec)}</tt> — format {e(db.format)}"
            + (f": {e(db.reason)}" if db.reason else "") + "</p>"]
    if s.running is not None:
        rows.append(f"<p style='color:{style.state_hex('warn')}'>{e(s.running.evidence)}</p>")
    if s.problem and s.problem != db.reason:
        rows.append(f"<p style='color:{style.state_hex('error')}'>{e(s.problem)}</p>")
    mods = [m for m in s.modules if not m.internal]
    if mods:
        rows.append("<p><b>Modules in pkcs11.txt</b></p><ul>" + "".join(
            f"<li>{e(m.name)}: <tt>{e(m.library)}</tt>" + (" (p11-kit proxy)" if m.p11_kit_proxy else "")
            + ("" if m.realpath else " — <i>the file does not exist</i>") + "</li>" for m in mods) + "</ul>")
    elif db.supported:
        rows.append("<p>No PKCS#11 module registered (only NSS's own).</p>")
    rows += [f"<p style='color:{style.state_hex('warn')}'>{e(c)}</p>" for c in s.conflicts]
    return "".join(rows)


def readback_html(r: Readback) -> str:
    e = html.escape
    rows = [f"<h3>{e(where(r.db))}, as NSS loads it</h3>"]
    for m in r.loaded:
        slots = "".join(f"<li>{e(sl.name)}: {e(sl.token) if sl.token else '<i>no token</i>'}</li>" for sl in m.slots)
        colour = style.state_hex("ok" if m.status.lower() == "loaded" else "error")
        rows.append(f"<p><b>{e(m.name)}</b> <tt>{e(m.library)}</tt> — <span style='color:{colour}'>{e(m.status)}"
                    f"</span></p><ul>{slots}</ul>")
    if r.note:
        rows.append(f"<p style='color:{style.state_hex('warn')}'>{e(r.note)}</p>")
    if r.certificates:
        rows.append("<p><b>Certificates NSS sees on the token</b></p><ul>"
                    + "".join(f"<li>{e(n)} ({e(t)})</li>" for n, t in r.certificates) + "</ul>")
    return "".join(rows)
