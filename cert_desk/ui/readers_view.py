"""The readers part of the Devices pane: pcscd's state, each reader, its card and the token it became."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontDatabase, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QTreeView, QVBoxLayout, QWidget

from cert_desk.models import SlotReport
from cert_desk.pcsc.readers import PcscSnapshot, PcscStatus, ReaderState
from cert_desk.ui import style

ROLE_READER = Qt.ItemDataRole.UserRole + 1


def slot_words(r: SlotReport | None) -> str:
    if r is None:
        return "—"
    if r.token is not None and r.token.initialized:
        return f"{r.token.label}  (slot {r.slot.slot_id})"
    if r.error:
        return f"slot {r.slot.slot_id}: {r.error}"
    if not r.slot.token_present:
        return f"slot {r.slot.slot_id}: no card"
    return f"slot {r.slot.slot_id}: not initialised"


class ReadersView(QWidget):
    """pcscd's state in words (with the fix), then one row per reader."""

    COLUMNS = ("Reader", "Card", "Device", "ATR", "Token")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = QLabel("Looking for smart card readers…")
        self.state.setObjectName("pcscState")
        self.state.setWordWrap(True)
        self.state.setTextFormat(Qt.TextFormat.RichText)
        self.model = QStandardItemModel(self)
        self.model.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.view = QTreeView()
        self.view.setObjectName("readers")
        self.view.setModel(self.model)
        self.view.setRootIsDecorated(False)
        self.view.setUniformRowHeights(True)
        self.view.setIconSize(style.ICON_SIZE)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.view.header()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for col, width in enumerate((170, 150, 220, 250)):
            self.view.setColumnWidth(col, width)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(style.SPACING // 2)
        layout.addWidget(self.state)
        layout.addWidget(self.view)
        self.snapshot: PcscSnapshot | None = None
        self._slots: dict[str, SlotReport] = {}

    def show_snapshot(self, snap: PcscSnapshot) -> None:
        self.snapshot = snap
        if snap.status is PcscStatus.OK:
            n = len(snap.readers)
            busy = [r.name for r in snap.readers if r.exclusive]
            text = f"<span style='color:{style.state_hex('ok')}'>pcscd is running</span> — {n} reader{'s' * (n != 1)}"
            if busy:
                text += (f". <span style='color:{style.state_hex('warn')}'>Busy: {html.escape(', '.join(busy))} "
                         "(another program holds the card exclusively; close it).</span>")
        else:
            kind = "warn" if snap.status is PcscStatus.NO_READERS else "error"
            text = (f"<span style='color:{style.state_hex(kind)}'>{html.escape(snap.message)}</span> "
                    f"{html.escape(snap.hint)}")
        self.state.setText(text)
        self._fill()

    def set_slots(self, slots: dict[str, SlotReport]) -> None:
        """Which PKCS#11 slot (and token) each reader became, by reader name."""
        if slots != self._slots:
            self._slots = slots
            self._fill()

    def _fill(self) -> None:
        self.model.removeRows(0, self.model.rowCount())
        snap = self.snapshot
        self.view.setVisible(snap is not None and bool(snap.readers))
        if snap is None:
            return
        for r in snap.readers:
            self.model.appendRow(self._row(r))
        self._fit()

    def _fit(self) -> None:
        """As tall as its rows (up to five; then it scrolls), so no empty box sits under two readers."""
        rows = min(max(self.model.rowCount(), 1), 5)
        row_height = self.view.sizeHintForRow(0) if self.model.rowCount() else self.view.fontMetrics().height() + 6
        frame = 2 * self.view.frameWidth()
        self.view.setFixedHeight(self.view.header().sizeHint().height() + rows * row_height + frame + 2)

    def _row(self, r: ReaderState) -> list[QStandardItem]:
        icon = "token" if r.card_present else "slot"
        if r.exclusive or r.mute:
            icon = "warning"
        name = QStandardItem(style.icon(icon), r.name)
        name.setData(r, ROLE_READER)
        words = r.state_words()
        card = QStandardItem(words.split(":")[0])  # "busy"; the line above the table says the rest
        card.setToolTip(words)
        if r.exclusive or r.mute:
            card.setForeground(style.state_colour("warn"))
        device = QStandardItem(r.device.name if r.device else ("unknown card" if r.card_present else ""))
        atr = QStandardItem(r.atr.hex(":").upper() if r.atr else "")
        if r.atr_info is not None:
            a = r.atr_info
            tip = [f"Protocols: {a.protocol_words()}", f"Historical bytes: {a.historical_text()}",
                   *(f"Problem: {p}" for p in a.problems)]
            atr.setToolTip("\n".join(tip))
            device.setToolTip(f"{r.device.kind}; module: {r.device.module_hint}\nsource: {r.device.source}"
                              if r.device else "cert-desk does not know this ATR")
            if a.problems:
                atr.setForeground(style.state_colour("warn"))
        atr.setFont(style_fixed())
        if r.exclusive:
            token = QStandardItem("unreadable while busy")
            token.setToolTip("Another program holds the card exclusively: no module can read it until that program "
                             "lets go.")
            token.setForeground(style.state_colour("warn"))
        else:
            token = QStandardItem(slot_words(self._slots.get(r.name)) if r.card_present else "")
        items = [name, card, device, atr, token]
        for it in items:
            it.setEditable(False)
            if not it.toolTip():
                it.setToolTip(it.text())  # the columns cut long texts short
        return items

    def rows(self) -> list[tuple[str, ...]]:
        """The table as text (for the tests)."""
        return [tuple(self.model.item(r, c).text() for c in range(len(self.COLUMNS)))
                for r in range(self.model.rowCount())]


def style_fixed() -> QFont:
    return QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
