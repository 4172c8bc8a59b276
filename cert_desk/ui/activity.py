"""The Activity panel: every operation, its result, and the command line that does the same."""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from cert_desk.services.qt import JobRecord, QtJobs
from cert_desk.ui import style

Index = QModelIndex | QPersistentModelIndex
MAX_ENTRIES = 500


class ActivityModel(QAbstractTableModel):
    """Newest first. Columns: Time, Operation, Result, Command."""

    COLUMNS = ("Time", "Operation", "Result", "Equivalent command")

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[JobRecord] = []

    def record(self, row: int) -> JobRecord | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def records(self) -> list[JobRecord]:
        return list(self._rows)

    @Slot(object)
    def on_started(self, rec: JobRecord) -> None:
        self.beginInsertRows(QModelIndex(), 0, 0)
        self._rows.insert(0, rec)
        self.endInsertRows()
        if len(self._rows) > MAX_ENTRIES:
            self.beginRemoveRows(QModelIndex(), MAX_ENTRIES, len(self._rows) - 1)
            del self._rows[MAX_ENTRIES:]
            self.endRemoveRows()

    @Slot(object)
    def on_finished(self, rec: JobRecord) -> None:
        for i, old in enumerate(self._rows):
            if old.id == rec.id:
                self._rows[i] = rec
                self.dataChanged.emit(self.index(i, 0), self.index(i, len(self.COLUMNS) - 1))
                return

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt API
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        rec = self._rows[index.row()]
        col = index.column()
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            if col == 0:
                return time.strftime("%H:%M:%S", time.localtime(rec.started))
            if col == 1:
                return rec.description[:1].upper() + rec.description[1:]
            if col == 2:
                if rec.ok is None:
                    return "running…"
                took = f" ({rec.duration:.2f} s)" if rec.duration is not None else ""
                return ("done" + took) if rec.ok else f"failed: {rec.message}"
            if col == 3:
                return rec.command or "—"
        if role == Qt.ItemDataRole.ForegroundRole and col == 2 and rec.ok is not None:
            return style.state_colour("ok" if rec.ok else "error")
        if role == Qt.ItemDataRole.FontRole and col == 3:
            from PySide6.QtGui import QFontDatabase

            return QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        return None


class ActivityDock(QDockWidget):
    """A dockable list of operations with their equivalent commands (double-click copies one)."""

    def __init__(self, jobs: QtJobs, parent: QWidget | None = None) -> None:
        super().__init__("Activity", parent)
        self.setObjectName("activityDock")
        self.model = ActivityModel(self)
        jobs.job_started.connect(self.model.on_started)
        jobs.job_finished.connect(self.model.on_finished)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for col, width in enumerate((70, 260, 220)):
            self.table.setColumnWidth(col, width)
        self.table.doubleClicked.connect(self._copy_row)
        self.copy_button = QPushButton("Copy command")
        style.themed(self.copy_button, "copy")
        self.copy_button.clicked.connect(self.copy_command)
        self.copy_button.setToolTip("Copy the selected operation's command line (PINs are written as env:PIN)")
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.copy_button)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(style.SPACING, style.SPACING, style.SPACING, style.SPACING)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        self.setWidget(body)

    @Slot()
    def copy_command(self) -> None:
        rec = self.model.record(self.table.currentIndex().row())
        if rec is not None and rec.command:
            QGuiApplication.clipboard().setText(rec.command)

    @Slot(QModelIndex)
    def _copy_row(self, index: QModelIndex) -> None:
        rec = self.model.record(index.row())
        if rec is not None and rec.command:
            QGuiApplication.clipboard().setText(rec.command)
