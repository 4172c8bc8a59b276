"""The Qt item model of a token's objects (a table over :class:`cert_desk.models.ObjectListing`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor

from cert_desk.models import ObjectInfo, ObjectListing
from cert_desk.pkcs11.constants import OBJECT_CLASS_WORDS

Index = QModelIndex | QPersistentModelIndex
EXPIRY_WARNING = timedelta(days=30)
RED = QColor("#c0392b")
AMBER = QColor("#b26a00")
# Sort keys: keep a key pair's objects together, private key first
_CLASS_ORDER = {3: 0, 2: 1, 1: 2, 4: 3, 0: 4}


def key_text(o: ObjectInfo) -> str:
    if not o.key_type:
        return ""
    if o.curve:
        return f"{o.key_type} {o.curve}"
    if o.bits:
        return f"{o.key_type} {o.bits}"
    return o.key_type


class ObjectsModel(QAbstractTableModel):
    """Columns: Type, Label, ID, Key, Subject CN, Issuer CN, Serial, Expires."""

    COLUMNS = ("Type", "Label", "ID", "Key", "Subject CN", "Issuer CN", "Serial", "Expires")
    ObjectRole = Qt.ItemDataRole.UserRole + 1
    SortRole = Qt.ItemDataRole.UserRole + 2

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._listing: ObjectListing | None = None
        self._rows: tuple[ObjectInfo, ...] = ()
        self.now = datetime.now(UTC)

    @property
    def listing(self) -> ObjectListing | None:
        return self._listing

    def set_listing(self, listing: ObjectListing | None) -> None:
        self.beginResetModel()
        self._listing = listing
        self._rows = listing.objects if listing is not None else ()
        self.now = datetime.now(UTC)
        self.endResetModel()

    def object_at(self, row: int) -> ObjectInfo | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

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
        o = self._rows[index.row()]
        col = index.column()
        cert = o.certificate
        if role == self.ObjectRole:
            return o
        if role in (Qt.ItemDataRole.DisplayRole, self.SortRole):
            if col == 0:
                text = OBJECT_CLASS_WORDS.get(o.object_class, o.class_name)
                if role == self.SortRole:
                    return f"{o.id_hex}/{_CLASS_ORDER.get(o.object_class, 9)}"
                return text
            if col == 1:
                return o.label
            if col == 2:
                return o.id_hex
            if col == 3:
                return key_text(o)
            if col == 4:
                return cert.subject_cn if cert else ""
            if col == 5:
                return cert.issuer_cn if cert else ""
            if col == 6:
                return cert.serial if cert else ""
            if col == 7:
                if cert is None:
                    return ""
                if role == self.SortRole:
                    return cert.not_after.isoformat()
                return cert.not_after.strftime("%Y-%m-%d")
        if role == Qt.ItemDataRole.ForegroundRole and cert is not None and col == 7:
            if cert.not_after < self.now:
                return RED
            if cert.not_after < self.now + EXPIRY_WARNING:
                return AMBER
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == 7 and cert is not None and cert.not_after < self.now:
                return "This certificate has expired."
            if o.problems:
                return "\n".join(o.problems)
        if role == Qt.ItemDataRole.FontRole and col == 2:
            from PySide6.QtGui import QFontDatabase

            return QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        return None
