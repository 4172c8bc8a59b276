"""The subject builder: C, ST, L, O, OU, CN, emailAddress and the subject alternative names,
checked as the user types (a country code that does not exist, a value too long for RFC 5280),
with the resulting ``-subj`` string shown, as ``openssl req`` would take it."""

from __future__ import annotations

import html

from cryptography import x509
from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QFormLayout, QLabel, QLineEdit, QPlainTextEdit, QVBoxLayout, QWidget

from cert_desk import errors as E
from cert_desk.ui import style
from cert_desk.x509.names import FIELDS, build_subject, parse_san, parse_subject, san_text, subject_text, validate_field

PLACEHOLDERS = {"C": "two letters, e.g. GB", "ST": "", "L": "e.g. London", "O": "e.g. Example Ltd", "OU": "",
                "CN": "e.g. Jane Doe, or the host name", "emailAddress": "e.g. jane@example.org"}


class DnEditor(QWidget):
    """Subject fields and SANs with live checks.

    Signals:
        changed(): A field changed (``valid`` and ``subject_text`` are up to date).
    """

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edits: dict[str, QLineEdit] = {}
        form = QFormLayout()
        for attr, label, max_len in FIELDS:
            edit = QLineEdit()
            edit.setObjectName(f"dn_{attr}")
            edit.setMaxLength(max_len + 16)  # longer than allowed is shown as an error, not cut silently
            edit.setPlaceholderText(PLACEHOLDERS.get(attr, ""))
            edit.textChanged.connect(self._check)
            self.edits[attr] = edit
            form.addRow(f"{label} ({attr})", edit)
        self.sans = QPlainTextEdit()
        self.sans.setObjectName("sans")
        self.sans.setPlaceholderText("One per line: DNS:host.example.org, email:jane@example.org, IP:192.0.2.1")
        self.sans.setFixedHeight(self.fontMetrics().lineSpacing() * 4 + 12)
        self.sans.textChanged.connect(self._check)
        form.addRow("Alternative names", self.sans)
        self.preview = QLabel()
        self.preview.setObjectName("subjectPreview")
        self.preview.setWordWrap(True)
        self.preview.setTextFormat(self.preview.textFormat().RichText)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.preview)
        self.problems: list[str] = []
        self.dropped: list[str] = []  # attributes of a subject set_subject() had no field for
        self._check()

    # ------------------------------------------------------------------ values

    def fields(self) -> list[tuple[str, str]]:
        return [(attr, self.edits[attr].text().strip()) for attr, _label, _n in FIELDS]

    def san_lines(self) -> list[str]:
        return [line.strip() for line in self.sans.toPlainText().splitlines() if line.strip()]

    @property
    def valid(self) -> bool:
        return not self.problems

    def subject(self) -> x509.Name:
        return build_subject(self.fields())

    def subject_text(self) -> str:
        return subject_text(self.subject())

    def set_subject(self, name: x509.Name | str, sans: list[str] | None = None) -> None:
        """Fill the form from an existing subject (a renewal keeps the old one); attributes the
        form has no field for are dropped and said so."""
        if isinstance(name, str):
            name = parse_subject(name)
        values: dict[str, str] = {}
        dropped: list[str] = []
        text = subject_text(name)
        known = {attr for attr, _l, _n in FIELDS}
        for part in _split_subject(text):
            attr, _, value = part.partition("=")
            if attr in known and attr not in values:
                values[attr] = value.replace("\\/", "/").replace("\\+", "+").replace("\\\\", "\\")
            else:
                dropped.append(part)
        for attr, edit in self.edits.items():
            edit.setText(values.get(attr, ""))
        self.sans.setPlainText("\n".join(sans or []))
        self.dropped = dropped
        self._check()

    # ------------------------------------------------------------------ checks

    @Slot()
    def _check(self) -> None:
        problems: list[str] = []
        for attr, edit in self.edits.items():
            value = edit.text().strip()
            error = validate_field(attr, value) if value else None
            edit.setToolTip(error or "")
            edit.setStyleSheet(f"QLineEdit {{ border: 1px solid {style.state_hex('error')}; }}" if error else "")
            if error:
                problems.append(error)
        for line in self.san_lines():
            try:
                parse_san(line)
            except E.InputError as err:
                problems.append(err.message)
        if not any(v for _a, v in self.fields()):
            problems.append("The subject is empty: fill in at least the common name (CN).")
        self.problems = problems
        if problems:
            self.preview.setText(f"<span style='color:{style.state_hex('error')}'>"
                                 + "<br>".join(html.escape(p) for p in problems) + "</span>")
        else:
            sans = ", ".join(san_text(parse_san(s)) for s in self.san_lines())
            self.preview.setText(f"Subject: <tt>{html.escape(self.subject_text())}</tt>"
                                 + (f"<br>Alternative names: <tt>{html.escape(sans)}</tt>" if sans else ""))
        self.changed.emit()


def _split_subject(text: str) -> list[str]:
    """``/C=GB/O=A\\/B/CN=x`` -> ["C=GB", "O=A\\/B", "CN=x"] (multi-valued RDNs stay joined)."""
    parts: list[str] = []
    current = ""
    escaped = False
    for ch in text[1:] if text.startswith("/") else text:
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            current += ch
            escaped = True
        elif ch == "/":
            parts.append(current)
            current = ""
        else:
            current += ch
    if current:
        parts.append(current)
    return parts
