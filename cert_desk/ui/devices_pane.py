"""The Devices pane: modules, their slots and tokens; a token's information as pkcs11-tool -L shows it."""

from __future__ import annotations

import functools
import html
import logging
import os
import time

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from cert_desk import equivalents
from cert_desk import errors as E
from cert_desk.models import LibraryInfo, ModuleEntry, ModuleState, SlotReport, TokenInfo, TokenRef, TokenSelector
from cert_desk.pcsc.readers import PcscSnapshot, ReaderEvent
from cert_desk.services.outcome import Outcome
from cert_desk.ui import style
from cert_desk.ui.app import AppContext
from cert_desk.ui.pin_dialog import state_html
from cert_desk.ui.readers_view import ReadersView
from cert_desk.ui.widgets import Banner, PaneHeader

log = logging.getLogger(__name__)

ROLE_KIND = Qt.ItemDataRole.UserRole + 1
ROLE_DATA = Qt.ItemDataRole.UserRole + 2
ROLE_LIBRARY = Qt.ItemDataRole.UserRole + 3


def _row(key: str, value: str) -> str:
    return (f"<tr><td style='padding:1px 14px 1px 0; white-space:nowrap' valign='top'><b>{key}</b></td>"
            f"<td>{value}</td></tr>")


def token_html(report: SlotReport) -> str:
    """A slot and its token, as ``pkcs11-tool -L`` shows them, with the mechanisms after."""
    s = report.slot
    t: TokenInfo | None = report.token
    e = html.escape
    rows = [
        _row("Slot", f"{s.slot_id} ({s.slot_id:#x}) — {e(s.description)}"),
        _row("Slot manufacturer", e(s.manufacturer)) if s.manufacturer else "",
        _row("Slot flags", e(", ".join(s.flag_words) or "none")),
    ]
    if t is not None and t.initialized:
        lo = "?" if t.min_pin_len is None else str(t.min_pin_len)
        hi = "?" if t.max_pin_len is None else str(t.max_pin_len)
        rows += [
            _row("Token label", f"<b>{e(t.label)}</b>"),
            _row("Manufacturer", e(t.manufacturer)),
            _row("Model", e(t.model)),
            _row("Serial number", f"<tt>{e(t.serial)}</tt>"),
            _row("Token flags", e(", ".join(t.flag_words))),
            _row("Hardware version", t.hardware_version),
            _row("Firmware version", t.firmware_version),
            _row("PIN length", f"{lo} to {hi} characters"),
            _row("User PIN", state_html(t.user_pin)),
            _row("SO PIN", state_html(t.so_pin)),
        ]
        if t.protected_authentication_path:
            rows.append(_row("PIN entry", "on the reader's PIN pad"))
        if t.free_public_memory is not None and t.total_public_memory is not None:
            rows.append(_row("Free memory", f"{t.free_public_memory:,} of {t.total_public_memory:,} bytes (public)"))
        if t.sessions is not None:
            rows.append(_row("Sessions", f"{t.sessions} open ({t.rw_sessions or 0} read/write)"))
        title = t.label
    elif t is not None:
        rows.append(_row("Token", "<i>present, not initialised</i>"))
        title = s.description
    elif report.error:
        rows.append(_row("Token", f"<span style='color:{style.state_hex('error')}'>{e(report.error)}</span>"))
        title = s.description
    else:
        rows.append(_row("Token", "<i>no token in this slot</i>"))
        title = s.description
    out = f"<h3>{e(title)}</h3><table cellspacing='0'>{''.join(rows)}</table>"
    if report.mechanisms:
        mech_rows = "".join(
            f"<tr><td style='white-space:nowrap; padding-right:12px'><tt>{e(m.name)}</tt></td>"
            f"<td align='right' style='padding-right:8px'>{m.min_key_size or ''}</td>"
            f"<td align='right' style='padding-right:12px'>{m.max_key_size or ''}</td>"
            f"<td style='white-space:nowrap'>{e(', '.join(w for w in m.flag_words if w != 'hw'))}</td></tr>"
            for m in report.mechanisms
        )
        out += (f"<h4>Mechanisms ({len(report.mechanisms)})</h4><table cellspacing='0'>"
                "<tr><th align='left' style='padding-right:12px'>Mechanism</th>"
                "<th align='right' style='padding-right:8px'>Min key</th>"
                "<th align='right' style='padding-right:12px'>Max key</th>"
                f"<th align='left'>Use</th></tr>{mech_rows}</table>")
    return out


def module_html(entry: ModuleEntry, library: LibraryInfo | None, error: str | None) -> str:
    e = html.escape
    rows = [_row("Path", f"<tt>{e(entry.path)}</tt>")]
    if entry.realpath != entry.path:
        rows.append(_row("Real path", f"<tt>{e(entry.realpath)}</tt>"))
    rows += [_row("Also at", f"<tt>{e(a)}</tt>") for a in entry.aliases]
    rows += [_row("Found in", e(s)) for s in entry.sources]
    if library is not None:
        rows += [
            _row("Library", e(f"{library.manufacturer} — {library.description}")),
            _row("Version", e(f"{library.library_version} (PKCS#11 {library.cryptoki_version})")),
        ]
    if error:
        rows.append(_row("Error", f"<span style='color:{style.state_hex('error')}'>{e(error)}</span>"))
    if entry.note:
        rows.append(_row("Note", e(entry.note)))
    return f"<h3>{e(entry.name)}</h3><table cellspacing='0'>{''.join(rows)}</table>"


POLL_MS = 1000
STUCK_S = 4.0  # a module whose poll has not come back after this long is shown as busy


def _presence(slots: tuple[SlotReport, ...]) -> tuple[tuple[object, ...], ...]:
    """What a change of tokens changes: slots, their tokens and the tokens' PIN state."""
    return tuple(
        (r.slot.slot_id, r.slot.token_present, r.error,
         *((r.token.serial, r.token.label, r.token.initialized, r.token.flags) if r.token else ()))
        for r in slots)


def _slot_icon(r: SlotReport) -> str:
    if r.token is not None and r.token.initialized:
        return "token"
    if r.error:
        return "warning"
    return "slot"


class DevicesPane(QWidget):
    """Modules, slots and tokens.

    Signals:
        token_selected(TokenRef, TokenInfo): The user picked an initialised token.
        demo_ready(TokenRef): The demo token was opened and selected.
        modules_reloaded(): Every module was initialised again (logins are gone).
        tokens_changed(str, tuple[SlotReport, ...]): A module's tokens changed (inserted, removed,
            replaced): its real path and its slots now. Also once per module when first listed.
        status(str): A message for the status bar.
    """

    token_selected = Signal(object, object)
    demo_ready = Signal(object)
    modules_reloaded = Signal()
    tokens_changed = Signal(str, object)
    status = Signal(str)

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._pending_select: TokenSelector | None = None
        self._errors: dict[str, str] = {}
        self._generation = 0

        self.header = PaneHeader("Devices", ctx.jobs, self)
        self.add_button = QPushButton("Add module…")
        self.demo_button = QPushButton("Open demo token")
        self.refresh_button = QPushButton("Refresh")
        for b, icon in ((self.add_button, "add"), (self.demo_button, "demo"), (self.refresh_button, "refresh")):
            style.themed(b, icon)
            self.header.buttons.addWidget(b)
        self.add_button.setToolTip("Add a token's PKCS#11 module (a .so file from its vendor)")
        self.demo_button.setToolTip("Create (once) and show a SoftHSM2 token to try cert-desk with")
        self.refresh_button.setToolTip("Load every module again, so tokens plugged in or created by other "
                                       "programs appear (F5; you will have to log in again)")
        self.add_button.clicked.connect(self.add_module)
        self.demo_button.clicked.connect(self.open_demo)
        self.refresh_button.clicked.connect(self.reload)
        self.header.subtitle.setText("PKCS#11 modules, their slots and tokens")
        self.banner = Banner(self)

        self.readers_box = QGroupBox("Smart card readers")
        self.readers_box.setObjectName("readersBox")
        readers_layout = QVBoxLayout(self.readers_box)
        self.readers = ReadersView()
        readers_layout.addWidget(self.readers)
        self._poll_pending: dict[str, float] = {}  # real path -> when its poll was asked for
        self._stuck: dict[str, str] = {}  # real path -> the module row's tooltip before it was marked
        self._presence: dict[str, tuple[tuple[object, ...], ...]] = {}
        self._states: dict[str, ModuleState] = {}
        self.poll_timer = QTimer(self)
        self.poll_timer.setInterval(POLL_MS)
        self.poll_timer.timeout.connect(self.poll)

        self.model = QStandardItemModel(self)
        self.tree = QTreeView()
        self.tree.setObjectName("devicesTree")
        self.tree.setModel(self.model)
        self.tree.setHeaderHidden(True)
        self.tree.setUniformRowHeights(True)
        self.tree.setIconSize(style.ICON_SIZE)
        self.tree.selectionModel().currentChanged.connect(self._on_current)
        self.details = QTextBrowser()
        self.details.setObjectName("deviceDetails")
        self.details.setOpenLinks(False)
        self.details.setHtml("<p>Select a module or a token.</p>")
        self.admin_buttons: dict[str, QPushButton] = {}
        self._admin_tips: dict[str, str] = {}
        admin_row = QHBoxLayout()
        admin_row.setSpacing(style.SPACING)
        for action, text, tip in (
            ("change", "Change PIN…", "Change the user PIN (the current one is needed)"),
            ("unblock", "Unblock PIN…", "Set a new user PIN with the SO PIN: a locked PIN, or a fresh token's first"),
            ("change-so", "Change SO PIN…", "Change the SO PIN"),
            ("init", "Initialise…", "Erase the token and give it a new label and SO PIN"),
        ):
            b = QPushButton(text)
            b.setObjectName(f"admin-{action}")
            b.setToolTip(tip)
            b.clicked.connect(lambda _c=False, a=action: self.administer(a))
            self.admin_buttons[action] = b
            self._admin_tips[action] = tip
            if action == "init":
                admin_row.addStretch(1)
            admin_row.addWidget(b)
        self.schsm_button = QPushButton("SmartCard-HSM…")
        self.schsm_button.setObjectName("admin-schsm")
        self.schsm_button.setToolTip("DKEK state, key backup shares, wrap and unwrap, initialise (sc-hsm-tool)")
        self.schsm_button.setVisible(False)  # only for a SmartCard-HSM / Nitrokey HSM
        self.schsm_button.clicked.connect(self.open_schsm)
        admin_row.insertWidget(admin_row.count() - 2, self.schsm_button)
        details_box = QWidget()
        dl = QVBoxLayout(details_box)
        dl.setContentsMargins(0, 0, 0, 0)
        dl.setSpacing(style.SPACING)
        dl.addLayout(admin_row)
        dl.addWidget(self.details, 1)
        self.admin_dialog: QWidget | None = None
        self.split = QSplitter()
        self.split.setObjectName("devicesSplit")
        self.split.addWidget(self.tree)
        self.split.addWidget(details_box)
        self.split.setStretchFactor(0, 2)
        self.split.setStretchFactor(1, 3)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(style.MARGIN, style.MARGIN, style.MARGIN, style.MARGIN)
        layout.setSpacing(style.SPACING)
        layout.addWidget(self.header)
        layout.addWidget(self.banner)
        layout.addWidget(self.readers_box)
        layout.addWidget(self.split, 1)

    # --------------------------------------------------------------- loading

    @Slot()
    def reload(self) -> None:
        """Re-initialise every loaded module, then list again.

        Some modules (SoftHSM2) only see tokens other programs created after they are
        initialised again. Each module's worker does it after the jobs it has queued, and
        lists the slots after that; nothing waits on the GUI thread. Logins end with it.
        """
        for path in self.ctx.service.pool.loaded():
            self.ctx.service.pool.reload(path)
        self.modules_reloaded.emit()
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        """Find the modules (reading p11-kit's files off the GUI thread), then list their slots."""
        self._generation += 1
        generation = self._generation
        self.details.setHtml("<p>Select a module or a token.</p>")
        self.ctx.jobs.watch(self.ctx.tasks.submit(self.ctx.service.modules),
                            lambda o: self._on_modules(generation, o), "find the PKCS#11 modules", owner=self)

    def _on_modules(self, generation: int, outcome: Outcome[list[ModuleEntry]]) -> None:
        if generation != self._generation:
            return
        self.model.removeRows(0, self.model.rowCount())
        self._update_admin(None)
        self._errors.clear()
        listed = {e.realpath for e in (outcome.value or [])}
        for gone in set(self._states) - listed:
            del self._states[gone]
            self._presence.pop(gone, None)
        if outcome.error is not None:
            self.banner.show_message(str(outcome.error), "error")
            return
        entries = outcome.value or []
        if not entries:
            item = QStandardItem("No PKCS#11 module found: install OpenSC, or use Add module…")
            item.setEditable(False)
            self.model.appendRow(item)
        for entry in entries:
            item = QStandardItem(style.icon("module"), entry.name)
            item.setEditable(False)
            item.setData("module", ROLE_KIND)
            item.setData(entry, ROLE_DATA)
            item.setToolTip("\n".join((entry.path, *entry.sources, entry.note)).strip())
            self.model.appendRow(item)
            if not entry.exists:
                self._errors[entry.realpath] = "The file does not exist."
                self._add_child(item, "The file does not exist", entry, error=True)
                continue
            loading = self._add_child(item, "Loading…", None)
            loading.setData("loading", ROLE_KIND)
            self.ctx.jobs.watch(
                self.ctx.service.module_state(entry.realpath),
                functools.partial(self._on_module, generation, entry.realpath),
                f"list the slots of {entry.name}",
                command=equivalents.slots(entry.realpath),
                owner=self,
            )
        self.tree.expandAll()

    def _add_child(self, parent: QStandardItem, text: str, data: object, *, error: bool = False) -> QStandardItem:
        child = QStandardItem(text)
        child.setEditable(False)
        if data is not None:
            child.setData(data, ROLE_DATA)
        if error:
            child.setForeground(style.state_colour("error"))
            child.setIcon(style.icon("warning", style.state_colour("error")))
        parent.appendRow(child)
        return child

    def _module_item(self, realpath: str) -> QStandardItem | None:
        for r in range(self.model.rowCount()):
            item = self.model.item(r)
            entry = item.data(ROLE_DATA)
            if isinstance(entry, ModuleEntry) and entry.realpath == realpath:
                return item
        return None

    def _on_module(self, generation: int, realpath: str, outcome: Outcome[ModuleState]) -> None:
        # The tree may have been rebuilt since this job started: its items are gone then.
        item = self._module_item(realpath) if generation == self._generation else None
        if item is None:
            return
        item.removeRows(0, item.rowCount())
        entry = item.data(ROLE_DATA)
        if outcome.error is not None:
            if isinstance(entry, ModuleEntry):
                self._errors[entry.realpath] = outcome.error.message
            child = self._add_child(item, outcome.error.message, entry, error=True)
            child.setToolTip(str(outcome.error))
            item.setForeground(style.state_colour("error"))
            return
        state = outcome.value
        assert state is not None
        self._record(realpath, state)
        item.setData(state.library, ROLE_LIBRARY)
        item.setToolTip(f"{state.library.manufacturer} — {state.library.description} {state.library.library_version}"
                        f"\n{item.toolTip()}")
        if not state.slots:
            self._add_child(item, "No slots (no reader connected, or pcscd not running)", None)
        for r in state.slots:
            if r.token is not None and r.token.initialized:
                text = f"{r.token.label}  ·  slot {r.slot.slot_id}"
            elif r.token is not None:
                text = f"Uninitialised token  ·  slot {r.slot.slot_id}"
            elif r.error:
                text = f"{r.slot.description}: {r.error}"
            else:
                text = f"{r.slot.description} (empty)"
            child = self._add_child(item, text, r)
            child.setIcon(style.icon(_slot_icon(r)))
            child.setData("slot", ROLE_KIND)
            if r.token is not None and r.token.user_pin in (E.PinState.LOCKED, E.PinState.FINAL_TRY):
                child.setForeground(style.state_colour("error"))
                child.setToolTip(f"User PIN: {r.token.user_pin.words}")
            elif r.token is not None and r.token.user_pin is E.PinState.COUNT_LOW:
                child.setForeground(style.state_colour("warn"))
                child.setToolTip(f"User PIN: {r.token.user_pin.words}")
            sel = self._pending_select
            if sel is not None and r.token is not None and r.token.label == sel.label and r.token.initialized:
                self._pending_select = None
                self.tree.setCurrentIndex(child.index())
                self.demo_ready.emit(TokenRef(r.module, r.slot.slot_id, r.token.serial, r.token.label))
        self.tree.expand(item.index())

    # ------------------------------------------------------------- hot-plug

    def _record(self, realpath: str, state: ModuleState) -> None:
        self._states[realpath] = state
        presence = _presence(state.slots)
        if self._presence.get(realpath) != presence:
            self._presence[realpath] = presence
            self.tokens_changed.emit(realpath, state.slots)
        self._update_reader_slots()

    def _update_reader_slots(self) -> None:
        snap = self.readers.snapshot
        names = {r.name for r in snap.readers} if snap is not None else set()
        slots: dict[str, SlotReport] = {}
        for state in self._states.values():
            for r in state.slots:
                if r.slot.description in names and r.slot.description not in slots:
                    slots[r.slot.description] = r
        self.readers.set_slots(slots)

    @Slot(object, object)
    def on_pcsc(self, snap: PcscSnapshot, events: tuple[ReaderEvent, ...]) -> None:
        """PC/SC changed: show it, and ask every module for its slots at once (OpenSC's follow)."""
        self.readers.show_snapshot(snap)
        self._update_reader_slots()
        for e in events:
            words = e.describe()
            self.status.emit(words if words.startswith("pcscd") else words[:1].upper() + words[1:])
        if events:
            self.poll()

    @Slot()
    def poll(self) -> None:
        """Ask each listed module for its slots (on its worker); changes update the tree."""
        now = time.monotonic()
        for realpath in list(self._states):
            asked = self._poll_pending.get(realpath)
            if asked is not None:
                # the worker is still busy with the last one (or a long job): after a while, say so
                if now - asked >= STUCK_S:
                    self._mark_stuck(realpath, now - asked)
                continue
            self._poll_pending[realpath] = now
            self.ctx.jobs.watch(self.ctx.service.poll(realpath), functools.partial(self._on_poll, realpath),
                                "look for token changes", quiet=True)

    def _mark_stuck(self, realpath: str, seconds: float) -> None:
        item = self._module_item(realpath)
        entry = item.data(ROLE_DATA) if item is not None else None
        if item is None or not isinstance(entry, ModuleEntry):
            return
        self._stuck.setdefault(realpath, item.toolTip())
        item.setText(f"{entry.name} — busy: no answer for {seconds:.0f} s")
        item.setIcon(style.icon("warning", style.state_colour("warn")))
        item.setForeground(style.state_colour("warn"))
        item.setToolTip(f"{entry.name} has not answered for {seconds:.0f} s: a call into it is still running "
                        "(a reader or pcscd may be stuck, or the token is working on a long job). "
                        "cert-desk waits for it; nothing else is blocked.")

    def _unmark_stuck(self, realpath: str) -> None:
        tooltip = self._stuck.pop(realpath, None)
        if tooltip is None:
            return
        item = self._module_item(realpath)
        entry = item.data(ROLE_DATA) if item is not None else None
        if item is None or not isinstance(entry, ModuleEntry):
            return
        item.setText(entry.name)
        item.setIcon(style.icon("module"))
        item.setData(None, Qt.ItemDataRole.ForegroundRole)
        item.setToolTip(tooltip)

    def _on_poll(self, realpath: str, outcome: Outcome[tuple[SlotReport, ...]]) -> None:
        self._poll_pending.pop(realpath, None)
        self._unmark_stuck(realpath)
        if outcome.error is not None or outcome.value is None or realpath not in self._states:
            return
        if _presence(outcome.value) == self._presence.get(realpath):
            return
        # Something came or went: list the module again, with its mechanisms, and tell the panes.
        self.ctx.jobs.watch(self.ctx.service.module_state(realpath),
                            functools.partial(self._on_module, self._generation, realpath),
                            f"list the slots of {os.path.basename(realpath)}",
                            command=equivalents.slots(realpath), owner=self)

    # ------------------------------------------------------------- selection

    @Slot()
    def _on_current(self) -> None:
        index = self.tree.currentIndex()
        item = self.model.itemFromIndex(index) if index.isValid() else None
        data = item.data(ROLE_DATA) if item is not None else None
        self._update_admin(data if isinstance(data, SlotReport) else None)
        if item is None:
            return
        if isinstance(data, ModuleEntry):
            self.details.setHtml(module_html(data, item.data(ROLE_LIBRARY), self._errors.get(data.realpath)))
        elif isinstance(data, SlotReport):
            self.details.setHtml(token_html(data))
            t = data.token
            if t is not None and t.initialized and t.user_pin is E.PinState.LOCKED:
                self.banner.show_message(f"The user PIN of {t.label!r} is locked. Unblock PIN… sets a new one with "
                                         "the SO PIN.", "warn")
            elif t is not None and t.initialized and t.user_pin is E.PinState.NOT_INITIALIZED:
                self.banner.show_message(f"{t.label!r} has no user PIN yet. Unblock PIN… sets the first one with the "
                                         "SO PIN.", "warn")
            if data.token is not None and data.token.initialized:
                self.token_selected.emit(
                    TokenRef(data.module, data.slot.slot_id, data.token.serial, data.token.label), data.token)

    def selected_slot(self) -> SlotReport | None:
        index = self.tree.currentIndex()
        item = self.model.itemFromIndex(index) if index.isValid() else None
        data = item.data(ROLE_DATA) if item is not None else None
        return data if isinstance(data, SlotReport) else None

    def _reader_of(self, report: SlotReport) -> tuple[int, str, bytes | None] | None:
        """(OpenSC's reader number, reader name, ATR) of the reader a slot is (OpenSC names slots
        after readers and numbers them in PC/SC's order)."""
        snap = self.readers.snapshot
        if snap is None:
            return None
        for index, reader in enumerate(snap.readers):
            if reader.name == report.slot.description.strip():
                return index, reader.name, reader.atr or None
        return None

    def is_schsm(self, report: SlotReport | None) -> bool:
        from cert_desk.pkcs11.schsm import is_smartcard_hsm

        if report is None or report.token is None:
            return False
        reader = self._reader_of(report)
        return reader is not None and is_smartcard_hsm(report.token, reader[2])

    def open_schsm(self) -> None:
        from cert_desk.ui.schsm_dialog import ScHsmDialog

        report = self.selected_slot()
        reader = self._reader_of(report) if report is not None else None
        if report is None or report.token is None or reader is None:
            return
        dialog = ScHsmDialog(self.ctx, reader[0], reader[1], report.token.label or reader[1], parent=self,
                             serial=report.token.serial)
        self.admin_dialog = dialog
        dialog.open()

    def _update_admin(self, report: SlotReport | None) -> None:
        self.schsm_button.setVisible(self.is_schsm(report))
        token = report.token if report is not None else None
        initialized = token is not None and token.initialized
        pad = token is not None and token.protected_authentication_path
        so_locked = token is not None and token.so_pin is E.PinState.LOCKED
        for action, b in self.admin_buttons.items():
            ok = token is not None if action == "init" else initialized
            if action == "change":
                ok = ok and token is not None and token.user_pin not in (E.PinState.LOCKED, E.PinState.NOT_INITIALIZED)
            elif action in ("unblock", "change-so", "init"):
                ok = ok and not (so_locked and initialized)
            b.setEnabled(ok and not pad)
            b.setToolTip("This token has a PIN pad: use its vendor's tool to change PINs." if pad else
                         "The SO PIN is locked." if so_locked and initialized and action != "change" else
                         self._admin_tips[action])

    def administer(self, action: str) -> None:
        """Open the administration dialog for the selected slot's token."""
        from cert_desk.ui.admin_dialog import AdminDialog

        report = self.selected_slot()
        if report is None or report.token is None:
            return
        t = report.token
        ref = TokenRef(report.module, report.slot.slot_id, t.serial, t.label) if t.initialized else None
        dialog = AdminDialog(self.ctx, action, module=report.module, slot_id=report.slot.slot_id, info=t, ref=ref,
                             parent=self)
        dialog.succeeded.connect(lambda words, a=action: self._administered(a, words))
        dialog.attempted.connect(self.modules_reloaded)  # any attempt logged the token's sessions out
        self.admin_dialog = dialog
        dialog.open()

    def _administered(self, action: str, words: str) -> None:
        self.banner.show_message(words, "ok")
        self.status.emit(words)
        if action == "init":
            self.reload()  # SoftHSM2 gives a new token its slot only at the next initialisation
        else:
            self.refresh()

    def retheme(self) -> None:
        """The palette changed: redraw the icons and the details in its colours."""
        for r in range(self.model.rowCount()):
            module = self.model.item(r)
            module.setIcon(style.icon("module"))
            for c in range(module.rowCount()):
                child = module.child(c)
                data = child.data(ROLE_DATA)
                if isinstance(data, SlotReport):
                    child.setIcon(style.icon(_slot_icon(data)))
        self._on_current()

    def select_token(self, label: str) -> bool:
        """Select the first initialised token labelled ``label`` (for tests and the demo)."""
        for r in range(self.model.rowCount()):
            module = self.model.item(r)
            for c in range(module.rowCount()):
                child = module.child(c)
                data = child.data(ROLE_DATA)
                if isinstance(data, SlotReport) and data.token is not None and data.token.label == label:
                    self.tree.setCurrentIndex(child.index())
                    return True
        return False

    def select_slot(self, module: str, slot_id: int) -> bool:
        """Select the row of one slot of one module."""
        for r in range(self.model.rowCount()):
            item = self.model.item(r)
            for c in range(item.rowCount()):
                data = item.child(c).data(ROLE_DATA)
                if isinstance(data, SlotReport) and data.module == module and data.slot.slot_id == slot_id:
                    self.tree.setCurrentIndex(item.child(c).index())
                    return True
        return False

    def token_rows(self) -> list[str]:
        return [self.model.item(r).child(c).text() for r in range(self.model.rowCount())
                for c in range(self.model.item(r).rowCount())]

    # --------------------------------------------------------------- actions

    @Slot()
    def add_module(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add a PKCS#11 module", "/usr/lib",
                                              "PKCS#11 modules (*.so *.so.* *.dylib);;All files (*)")
        if path:
            self.add_module_path(path)

    def add_module_path(self, path: str) -> None:
        """Load ``path`` once to prove it is a PKCS#11 module, then remember it."""
        def done(outcome: Outcome[LibraryInfo]) -> None:
            if outcome.error is not None:
                self.banner.show_message(f"Not added: {outcome.error}", "error")
                self.status.emit(f"Not added: {outcome.error.message}")
                return
            self.banner.clear()
            settings = self.ctx.service.settings
            if not settings.add_module(path):
                self.status.emit(f"{os.path.basename(path)} was already in the list")
                return

            def saved(o: Outcome[None]) -> None:
                if o.error is not None:
                    self.banner.show_message(o.error.message, "error")
                self.status.emit(f"Added {os.path.basename(path)}")
                self.refresh()

            self.ctx.jobs.watch(self.ctx.tasks.submit(settings.save), saved, "save the settings", owner=self)

        self.ctx.jobs.watch(self.ctx.service.library_info(path), done, f"load {os.path.basename(path)}",
                            command=equivalents.library_info(path), owner=self)

    @Slot()
    def open_demo(self) -> None:
        """Create the SoftHSM2 demo token if needed, then show it."""
        from cert_desk import demo

        service = self.ctx.service
        self.demo_button.setEnabled(False)

        def task() -> TokenRef:
            module = demo.module_path()
            if os.environ.get("SOFTHSM2_CONF") != str(demo.conf_path()):
                demo.activate()
                service.pool.reload(module)  # SoftHSM2 reads SOFTHSM2_CONF when it initialises
            demo.ensure(service)
            return service.find_token(TokenSelector(label=demo.DEMO_LABEL), [module])

        def done(outcome: Outcome[TokenRef]) -> None:
            self.demo_button.setEnabled(True)
            if outcome.error is not None:
                self.banner.show_message(f"No demo token: {outcome.error}", "error")
                self.status.emit(outcome.error.message)
                return
            self._pending_select = TokenSelector(label=demo.DEMO_LABEL)
            self.status.emit("Opened the demo token (its PINs: run 'cert-desk demo')")
            self.refresh()

        self.ctx.jobs.watch(self.ctx.tasks.submit(task), done, "open the demo token", command="cert-desk demo",
                            owner=self)
