"""The Qt item models of a token's objects.

:class:`ObjectsModel` is a two-level tree over an :class:`~cert_desk.models.ObjectListing`:
a key pair (grouped by CKA_ID, checked by public key) with its private key, public key
and certificates under it; objects that belong to no pair (a CA certificate, data objects,
secret keys) at the top. :class:`BrowserViewModel` lists the certificates the way Chrome's
certificate chooser does (Subject, Issuer, Serial).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from PySide6.QtCore import QAbstractItemModel, QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QFont, QFontDatabase

from cert_desk.models import CertificateInfo, KeyGroup, ObjectInfo, ObjectListing
from cert_desk.pkcs11.constants import CKO_CERTIFICATE, CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, OBJECT_CLASS_WORDS
from cert_desk.ui import style

Index = QModelIndex | QPersistentModelIndex
EXPIRY_WARNING = timedelta(days=30)
_CLASS_ORDER = {CKO_PRIVATE_KEY: 0, CKO_PUBLIC_KEY: 1, CKO_CERTIFICATE: 2}
_ICONS = {
    CKO_PRIVATE_KEY: "privkey", CKO_PUBLIC_KEY: "pubkey", CKO_CERTIFICATE: "certificates", 0: "data", 4: "secretkey",
}


def key_text(o: ObjectInfo) -> str:
    if not o.key_type:
        return ""
    if o.curve:
        return f"{o.key_type} {o.curve}"
    if o.bits:
        return f"{o.key_type} {o.bits}"
    return o.key_type


def expiry_kind(cert: CertificateInfo | None, now: datetime) -> str | None:
    if cert is None:
        return None
    if cert.not_after < now:
        return "error"
    if cert.not_after < now + EXPIRY_WARNING:
        return "warn"
    return None


@dataclass(eq=False)
class Node:
    """A row: a key pair (``group``) or an object (``obj``)."""

    parent: Node | None
    row: int
    obj: ObjectInfo | None = None
    group: KeyGroup | None = None
    children: list[Node] = field(default_factory=list)
    # for a group: its first certificate and a representative key
    cert: ObjectInfo | None = None
    key: ObjectInfo | None = None
    # what the filter searches (lower case) and the sort keys: computed when first needed
    haystack: str | None = None
    keys: dict[int, str] = field(default_factory=dict)


class ObjectsModel(QAbstractItemModel):
    """Columns: Type, Label, ID, Key, Subject CN, Issuer CN, Serial, Expires.

    Sorting and filtering happen here, on data computed once per listing, rather than in a
    QSortFilterProxyModel: that proxy asks ``data()`` for every row on every reset, which
    for 3,000 objects kept the GUI thread busy for longer than a frame budget allows.
    Sorting orders the top-level rows; a key pair's members keep their order (private key,
    public key, certificates).
    """

    COLUMNS = ("Type", "Label", "ID", "Key", "Subject CN", "Issuer CN", "Serial", "Expires")
    ObjectRole = Qt.ItemDataRole.UserRole + 1
    GroupRole = Qt.ItemDataRole.UserRole + 2
    SortRole = Qt.ItemDataRole.UserRole + 3

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._listing: ObjectListing | None = None
        self._all: list[Node] = []  # every top-level node of the listing, unfiltered
        self._root = Node(None, 0)
        self._filter = ""
        self._sort_column = 0
        self._sort_order = Qt.SortOrder.AscendingOrder
        self.now = datetime.now(UTC)
        self._fixed = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self._bold = QFont()
        self._bold.setBold(True)

    @property
    def listing(self) -> ObjectListing | None:
        return self._listing

    @property
    def logged_in(self) -> bool:
        return self._listing is not None and (self._listing.logged_in or not self._listing.token_info.login_required)

    def set_listing(self, listing: ObjectListing | None) -> None:
        self.now = datetime.now(UTC)
        self._listing = listing
        self._all = self._build(listing)
        self._rebuild()

    def set_filter(self, text: str) -> None:
        self._filter = text.strip().lower()
        self._rebuild()

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self._sort_column, self._sort_order = column, order
        self._rebuild()

    def _rebuild(self) -> None:
        self.beginResetModel()
        root = Node(None, 0)
        needle = self._filter
        if not needle:
            # no filter: the built nodes serve as they are (their children's rows stay right)
            root.children = list(self._all)
            for top in root.children:
                top.parent = root
        for top in self._all if needle else ():
            if needle and needle not in self._haystack(top):
                kept = [c for c in top.children if needle in self._haystack(c)]
                if not kept:
                    continue
            else:
                kept = top.children
            node = Node(root, 0, obj=top.obj, group=top.group, cert=top.cert, key=top.key,
                        haystack=top.haystack, keys=top.keys)
            node.children = [Node(node, i, obj=c.obj, haystack=c.haystack, keys=c.keys) for i, c in enumerate(kept)]
            root.children.append(node)
        col = self._sort_column
        root.children.sort(key=lambda n: self._sort_key(n, col),
                           reverse=self._sort_order == Qt.SortOrder.DescendingOrder)
        for i, n in enumerate(root.children):
            n.row = i
        self._root = root
        self.endResetModel()

    def _build(self, listing: ObjectListing | None) -> list[Node]:
        if listing is None:
            return []
        root = Node(None, 0)
        by_handle = {o.handle: o for o in listing.objects}
        grouped: set[int] = set()
        for g in listing.groups:
            handles = (*g.private_keys, *g.public_keys, *g.certificates)
            if not g.private_keys and not g.public_keys:
                continue  # certificates with no key on the token stand alone
            node = Node(root, len(root.children), group=g)
            members = sorted((by_handle[h] for h in handles if h in by_handle),
                             key=lambda o: (_CLASS_ORDER.get(o.object_class, 9), o.label))
            node.cert = next((m for m in members if m.object_class == CKO_CERTIFICATE), None)
            node.key = next((m for m in members if m.object_class in (CKO_PRIVATE_KEY, CKO_PUBLIC_KEY)), None)
            for m in members:
                node.children.append(Node(node, len(node.children), obj=m))
                grouped.add(m.handle)
            root.children.append(node)
        for o in listing.objects:
            if o.handle not in grouped:
                root.children.append(Node(root, len(root.children), obj=o))
        return root.children

    def _haystack(self, node: Node) -> str:
        if node.haystack is None:
            cert = self._cert(node)
            text = "\n".join(str(self._text(node, c, cert, False)) for c in range(len(self.COLUMNS))).lower()
            if node.group is not None:
                text += "\n" + "\n".join(self._haystack(c) for c in node.children)
            node.haystack = text
        return node.haystack

    def _sort_key(self, node: Node, col: int) -> str:
        key = node.keys.get(col)
        if key is None:
            key = str(self._text(node, col, self._cert(node), True)).lower()
            node.keys[col] = key
        return key

    # ----------------------------------------------------------- structure

    def _node(self, index: Index) -> Node:
        return index.internalPointer() if index.isValid() else self._root

    def index(self, row: int, column: int, parent: Index = QModelIndex()) -> QModelIndex:  # noqa: B008
        node = parent.internalPointer() if parent.isValid() else self._root
        children = node.children
        if 0 <= row < len(children) and 0 <= column < 8:
            return self.createIndex(row, column, children[row])
        return QModelIndex()

    def parent(self, index: Index = QModelIndex()) -> QModelIndex:  # type: ignore[override]  # noqa: B008
        if not index.isValid():
            return QModelIndex()
        p = index.internalPointer().parent
        if p is None or p is self._root:
            return QModelIndex()
        return self.createIndex(p.row, 0, p)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt API
        if parent.isValid():
            return 0 if parent.column() != 0 else len(parent.internalPointer().children)
        return len(self._root.children)

    def hasChildren(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        return self.rowCount(parent) > 0

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        return None

    # ------------------------------------------------------------------ data

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        node: Node = index.internalPointer()
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 7:
                cert = self._cert(node)
                return cert.not_after.strftime("%Y-%m-%d") if cert is not None else ""
            return self._text(node, col, self._cert(node), False)
        if role == self.ObjectRole:
            return node.obj
        if role == self.GroupRole:
            return node.group
        if role == self.SortRole:
            return self._sort_key(node, col)
        o = node.obj
        g = node.group
        if role == Qt.ItemDataRole.ForegroundRole:
            if col == 7:
                kind = expiry_kind(self._cert(node), self.now)
                return style.state_colour(kind) if kind else None
            if col == 0 and g is not None and g.key_matches is False:
                return style.state_colour("error")
            return None
        if role == Qt.ItemDataRole.DecorationRole and col == 0:
            if g is not None:
                return style.icon("warning") if g.warnings else style.icon("keypair")
            if o is not None:
                return style.icon(_ICONS.get(o.object_class, "data"))
        if role == Qt.ItemDataRole.ToolTipRole:
            if g is not None and g.warnings:
                return "\n".join(g.warnings)
            cert = self._cert(node)
            if col == 7 and cert is not None:
                kind = expiry_kind(cert, self.now)
                if kind == "error":
                    return "This certificate has expired."
                if kind == "warn":
                    return "This certificate expires within 30 days."
            if o is not None and o.problems:
                return "\n".join(o.problems)
        if role == Qt.ItemDataRole.FontRole:
            if col == 2:
                return self._fixed
            if g is not None and col == 1:
                return self._bold
        return None

    @staticmethod
    def _cert(node: Node) -> CertificateInfo | None:
        cert_obj = node.cert if node.group is not None else node.obj
        return cert_obj.certificate if cert_obj is not None else None

    def _text(self, node: Node, col: int, cert: CertificateInfo | None, sort: bool) -> Any:
        o, g = node.obj, node.group
        if col == 0:
            if g is not None:
                if sort:
                    return "0"
                if g.private_keys or not self.logged_in:
                    return "Key pair"  # not logged in: the private key is there, just hidden
                return "Public key only"
            assert o is not None
            if sort:
                return f"{_CLASS_ORDER.get(o.object_class, 9)}"
            return OBJECT_CLASS_WORDS.get(o.object_class, o.class_name)
        if col == 1:
            return g.label if g is not None else (o.label if o is not None else "")
        if col == 2:
            return g.id_hex if g is not None else (o.id_hex if o is not None else "")
        if col == 3:
            target = (node.key or node.cert) if g is not None else o
            return key_text(target) if target is not None else ""
        if cert is None:
            return ""
        if col == 4:
            return cert.subject_cn
        if col == 5:
            return cert.issuer_cn
        if col == 6:
            return cert.serial.rjust(42, "0") if sort else cert.serial
        if col == 7:
            return cert.not_after.isoformat() if sort else cert.not_after.strftime("%Y-%m-%d")
        return ""

    # ----------------------------------------------------------- for panes

    def group_members(self, index: Index) -> list[ObjectInfo]:
        node = self._node(index)
        return [c.obj for c in node.children if c.obj is not None]

    def find_handle(self, handle: int) -> QModelIndex:
        for top in self._root.children:
            if top.obj is not None and top.obj.handle == handle:
                return self.createIndex(top.row, 0, top)
            for child in top.children:
                if child.obj is not None and child.obj.handle == handle:
                    return self.createIndex(child.row, 0, child)
        return QModelIndex()

    @property
    def filtering(self) -> bool:
        return bool(self._filter)

    def first_handle(self, index: Index) -> int:
        """A stable name for a row across resets: its object's handle, or its pair's first member's."""
        node = self._node(index)
        if node.obj is not None:
            return node.obj.handle
        return node.children[0].obj.handle if node.children and node.children[0].obj is not None else -1

    def group_count(self) -> int:
        return sum(1 for n in self._root.children if n.group is not None)


class BrowserViewModel(QAbstractTableModel):
    """Certificates as Chrome's certificate chooser lists them: Subject, Issuer, Serial.

    A browser offers only certificates whose private key is on the token (paired by CKA_ID);
    the others are listed greyed, with the reason.
    """

    COLUMNS = ("Subject", "Issuer", "Serial")
    ObjectRole = Qt.ItemDataRole.UserRole + 1

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[tuple[ObjectInfo, bool]] = []
        self._all: list[tuple[ObjectInfo, bool]] = []
        self._filter = ""

    def set_filter(self, text: str) -> None:
        self.beginResetModel()
        self._filter = text.strip().lower()
        self._rows = [r for r in self._all if self._matches(r[0])]
        self.endResetModel()

    def _matches(self, o: ObjectInfo) -> bool:
        if not self._filter:
            return True
        c = o.certificate
        text = f"{o.label}\n{o.id_hex}\n{c.subject}\n{c.issuer}\n{c.serial}" if c else o.label
        return self._filter in text.lower()

    def set_listing(self, listing: ObjectListing | None) -> None:
        self.beginResetModel()
        rows: list[tuple[ObjectInfo, bool]] = []
        if listing is not None:
            # Before login a token hides its private keys; a public key with the same ID stands for one.
            hidden = listing.token_info.login_required and not listing.logged_in
            usable = {h for g in listing.groups
                      if (g.private_keys or (hidden and g.public_keys)) and g.key_matches is not False
                      for h in g.certificates}
            for o in listing.objects:
                if o.certificate is not None:
                    rows.append((o, o.handle in usable))
        rows.sort(key=lambda r: (not r[1], r[0].certificate.subject_cn.lower() if r[0].certificate else ""))
        self._all = rows
        self._rows = [r for r in rows if self._matches(r[0])]
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
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
        o, usable = self._rows[index.row()]
        cert = o.certificate
        assert cert is not None
        if role == self.ObjectRole:
            return o
        if role == Qt.ItemDataRole.DisplayRole:
            return (cert.subject_cn or cert.subject, cert.issuer_cn or cert.issuer, cert.serial)[index.column()]
        if role == Qt.ItemDataRole.ForegroundRole and not usable:
            return style.state_colour("muted")
        if role == Qt.ItemDataRole.ToolTipRole:
            if not usable:
                return "No matching private key on the token (by CKA_ID): a browser will not offer this certificate."
            return f"{cert.subject}\nissued by {cert.issuer}\nvalid until {cert.not_after:%Y-%m-%d}"
        return None
