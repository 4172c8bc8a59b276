"""The Devices pane: modules, their slots and tokens; a token's information as pkcs11-tool -L shows it."""

from __future__ import annotations

import functools
import html
import logging
import os

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QColor, QIcon, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from cert_desk import errors as E
from cert_desk.models import LibraryInfo, ModuleEntry, SlotReport, TokenInfo, TokenRef, TokenSelector
from cert_desk.services.outcome import Outcome
from cert_desk.ui.app import AppContext

log = logging.getLogger(__name__)

ROLE_KIND = Qt.ItemDataRole.UserRole + 1
ROLE_DATA = Qt.ItemDataRole.UserRole + 2

PIN_COLOURS = {
    E.PinState.OK: "#1b7f3b",
    E.PinState.COUNT_LOW: "#b26a00",
    E.PinState.FINAL_TRY: "#c0392b",
    E.PinState.LOCKED: "#c0392b",
    E.PinState.TO_BE_CHANGED: "#b26a00",
    E.PinState.NOT_INITIALIZED: "#666666",
}


def pin_html(state: E.PinState) -> str:
    return f'<span style="color:{PIN_COLOURS[state]}; font-weight:bold">{html.escape(state.words)}</span>'


def token_html(report: SlotReport) -> str:
    s = report.slot
    rows: list[tuple[str, str]] = [
        ("Slot", f"{s.slot_id} ({s.slot_id:#x}): {html.escape(s.description)}"),
        ("Slot flags", html.escape(", ".join(s.flag_words) or "none")),
    ]
    t: TokenInfo | None = report.token
    if t is not None and t.initialized:
        lo = "?" if t.min_pin_len is None else str(t.min_pin_len)
        hi = "?" if t.max_pin_len is None else str(t.max_pin_len)
        rows += [
            ("Token label", f"<b>{html.escape(t.label)}</b>"),
            ("Manufacturer", html.escape(t.manufacturer)),
            ("Model", html.escape(t.model)),
            ("Serial number", html.escape(t.serial)),
            ("Token flags", html.escape(", ".join(t.flag_words))),
            ("Hardware version", t.hardware_version),
            ("Firmware version", t.firmware_version),
            ("PIN length", f"{lo} to {hi} characters"),
            ("User PIN", pin_html(t.user_pin)),
            ("SO PIN", pin_html(t.so_pin)),
        ]
        if t.protected_authentication_path:
            rows.append(("PIN entry", "on the reader's PIN pad"))
        if t.free_public_memory is not None:
            rows.append(("Free memory", f"{t.free_public_memory} of {t.total_public_memory} bytes (public)"))
    elif t is not None:
        rows.append(("Token", "<i>not initialised</i>"))
    elif report.error:
        rows.append(("Token", f'<span style="color:#c0392b">{html.escape(report.error)}</span>'))
    else:
        rows.append(("Token", "<i>no token in this slot</i>"))
    body = "".join(f"<tr><td style='padding-right:12px'><b>{k}</b></td><td>{v}</td></tr>" for k, v in rows)
    out = f"<h3>{html.escape(t.label if t and t.initialized else s.description)}</h3><table>{body}</table>"
    if report.mechanisms:
        mech_rows = "".join(
            f"<tr><td style='white-space:nowrap'>{html.escape(m.name)}</td><td align='right'>{m.min_key_size}</td>"
            f"<td align='right'>{m.max_key_size}</td><td>{html.escape(', '.join(m.flag_words))}</td></tr>"
            for m in report.mechanisms
        )
        out += (f"<h4>Mechanisms ({len(report.mechanisms)})</h4><table cellspacing='0' cellpadding='2'>"
                "<tr><th align='left'>Mechanism</th><th>Min key</th><th>Max key</th><th align='left'>Use</th></tr>"
                f"{mech_rows}</table>")
    return out


class DevicesPane(QWidget):
    """Modules, slots and tokens.

    Signals:
        token_selected(TokenRef): The user picked an initialised token.
        demo_ready(TokenRef): The demo token was opened and selected.
        status(str): A message for the status bar.
    """

    token_selected = Signal(object)
    demo_ready = Signal(object)
    status = Signal(str)

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._pending_select: TokenSelector | None = None

        self.add_button = QPushButton(QIcon.fromTheme("list-add"), "Add module…")
        self.demo_button = QPushButton(QIcon.fromTheme("applications-science"), "Open demo token")
        self.refresh_button = QPushButton(QIcon.fromTheme("view-refresh"), "Refresh")
        self.add_button.clicked.connect(self.add_module)
        self.demo_button.clicked.connect(self.open_demo)
        self.refresh_button.clicked.connect(self.reload)
        self.refresh_button.setToolTip("Load every module again, so tokens created by other programs appear "
                                       "(you will have to log in again)")
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.demo_button)
        buttons.addStretch(1)
        buttons.addWidget(self.refresh_button)

        readers = QGroupBox("Smart card readers")
        readers_layout = QVBoxLayout(readers)
        self.readers_label = QLabel("Reader and card detection (PC/SC) comes in a later release. Tokens behind "
                                    "OpenSC's module already appear below.")
        self.readers_label.setWordWrap(True)
        readers_layout.addWidget(self.readers_label)

        self.model = QStandardItemModel(self)
        self.model.setHorizontalHeaderLabels(["Module / slot / token"])
        self.tree = QTreeView()
        self.tree.setModel(self.model)
        self.tree.setHeaderHidden(True)
        self.tree.setUniformRowHeights(True)
        self.tree.selectionModel().currentChanged.connect(self._on_current)
        self.details = QTextBrowser()
        self.details.setOpenLinks(False)
        self.details.setHtml("<p>Select a module or token.</p>")
        split = QSplitter()
        split.addWidget(self.tree)
        split.addWidget(self.details)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)

        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(readers)
        layout.addWidget(split, 1)

    # --------------------------------------------------------------- loading

    @Slot()
    def reload(self) -> None:
        """Finalize and re-initialise every loaded module, then list again.

        Some modules (SoftHSM2) only see tokens other programs created after they are
        initialised again. Stopping a worker waits for its queued jobs, so it happens off the
        GUI thread.
        """
        pool = self.ctx.service.pool
        paths = [e.realpath for e in self.ctx.service.modules()]

        def restart_all() -> bool:
            stopped = [pool.restart(p) for p in paths]  # every one, even after one is stuck
            return all(stopped)

        self.refresh_button.setEnabled(False)

        def done(outcome: Outcome[bool]) -> None:
            self.refresh_button.setEnabled(True)
            if outcome.value is False:
                self.status.emit("A module is still busy; it will be reloaded when it finishes.")
            self.refresh()

        self.ctx.jobs.watch(self.ctx.tasks.submit(restart_all), done, "reload the modules")

    @Slot()
    def refresh(self) -> None:
        """List the modules and their slots again (modules stay loaded)."""
        self.model.removeRows(0, self.model.rowCount())
        entries = self.ctx.service.modules()
        if not entries:
            item = QStandardItem("No PKCS#11 module found: install OpenSC, or use Add module…")
            item.setEditable(False)
            self.model.appendRow(item)
        for entry in entries:
            item = QStandardItem(QIcon.fromTheme("application-x-sharedlib"), entry.name)
            item.setEditable(False)
            item.setData("module", ROLE_KIND)
            item.setData(entry, ROLE_DATA)
            item.setToolTip("\n".join((entry.path, *entry.sources, entry.note)).strip())
            self.model.appendRow(item)
            if not entry.exists:
                self._add_child(item, "The file does not exist", None, error=True)
                continue
            loading = self._add_child(item, "Loading…", None)
            loading.setData("loading", ROLE_KIND)
            self.ctx.jobs.watch(
                self.ctx.service.slots(entry.realpath),
                functools.partial(self._on_slots, item),
                f"list the slots of {entry.name}",
            )
        self.tree.expandAll()

    def _add_child(self, parent: QStandardItem, text: str, data: object, *, error: bool = False) -> QStandardItem:
        child = QStandardItem(text)
        child.setEditable(False)
        if data is not None:
            child.setData(data, ROLE_DATA)
        if error:
            child.setForeground(QColor("#c0392b"))
        parent.appendRow(child)
        return child

    def _on_slots(self, item: QStandardItem, outcome: Outcome[tuple[SlotReport, ...]]) -> None:
        if item.model() is None:  # refreshed meanwhile
            return
        item.removeRows(0, item.rowCount())
        if outcome.error is not None:
            self._add_child(item, outcome.error.message, None, error=True)
            return
        reports = outcome.value or ()
        if not reports:
            self._add_child(item, "No slots (is the reader connected?)", None)
        for r in reports:
            if r.token is not None and r.token.initialized:
                text = f"{r.token.label}  —  slot {r.slot.slot_id}"
                icon = "security-high"
            elif r.token is not None:
                text = f"Uninitialised token  —  slot {r.slot.slot_id}"
                icon = "security-low"
            elif r.error:
                text = f"{r.slot.description}: {r.error}"
                icon = "dialog-warning"
            else:
                text = f"{r.slot.description} (empty)"
                icon = "media-eject"
            child = self._add_child(item, text, r)
            child.setIcon(QIcon.fromTheme(icon))
            child.setData("slot", ROLE_KIND)
            if r.token is not None and r.token.user_pin in (E.PinState.LOCKED, E.PinState.FINAL_TRY):
                child.setForeground(QColor(PIN_COLOURS[r.token.user_pin]))
            sel = self._pending_select
            if sel is not None and r.token is not None and r.token.label == sel.label and r.token.initialized:
                self._pending_select = None
                self.tree.setCurrentIndex(child.index())
                self.demo_ready.emit(TokenRef(r.module, r.slot.slot_id, r.token.serial, r.token.label))
        self.tree.expand(item.index())

    # ------------------------------------------------------------- selection

    @Slot()
    def _on_current(self) -> None:
        index = self.tree.currentIndex()
        item = self.model.itemFromIndex(index) if index.isValid() else None
        if item is None:
            return
        data = item.data(ROLE_DATA)
        if isinstance(data, ModuleEntry):
            self.details.setHtml(self._module_html(data))
        elif isinstance(data, SlotReport):
            self.details.setHtml(token_html(data))
            if data.token is not None and data.token.initialized:
                self.token_selected.emit(
                    TokenRef(data.module, data.slot.slot_id, data.token.serial, data.token.label))

    @staticmethod
    def _module_html(e: ModuleEntry) -> str:
        rows = [("Path", e.path), ("Real path", e.realpath)]
        rows += [("Also at", a) for a in e.aliases]
        rows += [("Found in", s) for s in e.sources]
        if e.note:
            rows.append(("Note", e.note))
        body = "".join(f"<tr><td style='padding-right:12px'><b>{k}</b></td><td>{html.escape(v)}</td></tr>"
                       for k, v in rows)
        return f"<h3>{html.escape(e.name)}</h3><table>{body}</table>"

    # --------------------------------------------------------------- actions

    @Slot()
    def add_module(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add a PKCS#11 module", "/usr/lib",
                                              "PKCS#11 modules (*.so *.so.* *.dylib);;All files (*)")
        if not path:
            return
        self.add_module_path(path)

    def add_module_path(self, path: str) -> None:
        """Load ``path`` once to prove it is a PKCS#11 module, then remember it."""
        def done(outcome: Outcome[LibraryInfo]) -> None:
            if outcome.error is not None:
                self.status.emit(f"Not added: {outcome.error.message}")
                self.details.setHtml(f"<h3>Not added</h3><p>{html.escape(str(outcome.error))}</p>")
                return
            settings = self.ctx.service.settings
            if settings.add_module(path):
                try:
                    settings.save()
                except E.CertDeskError as err:
                    self.status.emit(err.message)
            self.status.emit(f"Added {os.path.basename(path)}")
            self.refresh()

        self.ctx.jobs.watch(self.ctx.service.library_info(path), done, f"load {os.path.basename(path)}")

    @Slot()
    def open_demo(self) -> None:
        """Create the SoftHSM2 demo token if needed, then show it."""
        from cert_desk import demo

        service = self.ctx.service

        def task() -> TokenRef:
            module = demo.module_path()
            if os.environ.get("SOFTHSM2_CONF") != str(demo.conf_path()):
                demo.activate()
                service.pool.restart(module)  # SoftHSM2 reads SOFTHSM2_CONF when it initialises
            demo.ensure(service)
            return service.find_token(TokenSelector(label=demo.DEMO_LABEL), [module])

        def done(outcome: Outcome[TokenRef]) -> None:
            if outcome.error is not None:
                self.status.emit(outcome.error.message)
                self.details.setHtml(f"<h3>No demo token</h3><p>{html.escape(str(outcome.error))}</p>")
                return
            self._pending_select = TokenSelector(label=demo.DEMO_LABEL)
            self.status.emit("Opened the demo token (user PIN: see 'cert-desk demo')")
            self.refresh()

        self.ctx.jobs.watch(self.ctx.tasks.submit(task), done, "open the demo token")
