"""Small widgets every pane uses: a header with a busy indicator, a banner for problems."""

from __future__ import annotations

import html

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QSizePolicy, QVBoxLayout, QWidget

from cert_desk.services.qt import QtJobs
from cert_desk.ui import style


class BusyIndicator(QProgressBar):
    """An indeterminate bar shown while its pane waits for a job."""

    def __init__(self, jobs: QtJobs, owner: QWidget) -> None:
        super().__init__(owner)
        self._owner = owner
        self.setRange(0, 0)
        self.setFixedWidth(90)
        self.setFixedHeight(10)
        self.setTextVisible(False)
        self.setVisible(False)
        self.setToolTip("Waiting for the token")
        jobs.owner_busy.connect(self._on_owner_busy)

    @Slot(object, bool)
    def _on_owner_busy(self, owner: object, busy: bool) -> None:
        if owner is self._owner:
            self.setVisible(busy)


class PaneHeader(QWidget):
    """A pane's title, a subtitle, its busy indicator and its buttons (added by the pane)."""

    def __init__(self, title: str, jobs: QtJobs, owner: QWidget) -> None:
        super().__init__(owner)
        self.title = QLabel()
        self.title.setObjectName("paneTitle")
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.35)
        font.setBold(True)
        self.title.setFont(font)
        self.subtitle = QLabel()
        self.subtitle.setObjectName("paneSubtitle")
        self.subtitle.setWordWrap(False)
        self.busy = BusyIndicator(jobs, owner)
        self.buttons = QHBoxLayout()
        self.buttons.setSpacing(style.SPACING)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(style.SPACING * 2)
        titles = QWidget()
        tl = QHBoxLayout(titles)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.setSpacing(style.SPACING)
        tl.addWidget(self.title)
        tl.addWidget(self.busy)
        column = QVBoxLayout()
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        column.addWidget(titles)
        column.addWidget(self.subtitle)
        layout.addLayout(column, 1)
        layout.addLayout(self.buttons)
        self.set_title(title)

    def set_title(self, text: str) -> None:
        self.title.setText(text)


class Banner(QFrame):
    """A coloured line that says what is wrong (or what to do), hidden when there is nothing to say."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(self.label.textFormat().RichText)
        self.label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(style.SPACING, style.SPACING // 2, style.SPACING, style.SPACING // 2)
        layout.addWidget(self.label)
        self.setVisible(False)
        self.kind = ""
        self._plain = ""

    def show_message(self, text: str, kind: str = "warn", *, rich: bool = False) -> None:
        self.kind = kind
        self._plain = text
        colour = style.state_hex(kind)
        body = text if rich else html.escape(text).replace("\n", "<br>")
        self.label.setText(f"<span style='color:{colour}'>{body}</span>")
        self.setStyleSheet(f"Banner {{ border: 1px solid {colour}; border-radius: 4px; }}")
        self.setVisible(True)

    def clear(self) -> None:
        self.kind = ""
        self._plain = ""
        self.label.clear()
        self.setVisible(False)

    def text(self) -> str:
        """The message as plain text."""
        return self._plain


def ask(parent: QWidget, title: str, text: str, yes: str, *, destructive: bool = False,
        details: str = "") -> bool:
    """A question with one way forward (``yes``) and Cancel, Cancel being the default."""
    from PySide6.QtWidgets import QMessageBox

    box = QMessageBox(parent)
    box.setObjectName("question")
    box.setIcon(QMessageBox.Icon.Warning if destructive else QMessageBox.Icon.Question)
    box.setWindowTitle(title)
    box.setText(text)
    if details:
        box.setInformativeText(details)
    role = QMessageBox.ButtonRole.DestructiveRole if destructive else QMessageBox.ButtonRole.AcceptRole
    go = box.addButton(yes, role)
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(cancel)
    box.exec()
    return box.clickedButton() is go

