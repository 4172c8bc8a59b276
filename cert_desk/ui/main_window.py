"""The main window: a navigation list of panes, and a status bar that says what the workers do."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Slot
from PySide6.QtGui import QCloseEvent, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QProgressBar,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from cert_desk import APP_NAME
from cert_desk.models import TokenRef
from cert_desk.ui.app import AppContext
from cert_desk.ui.devices_pane import DevicesPane
from cert_desk.ui.objects_pane import ObjectsPane


class ComingSoonPane(QWidget):
    """The place of a pane a later release fills."""

    def __init__(self, title: str, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        heading = QLabel(f"<h2>{title}</h2>")
        body = QLabel(text)
        body.setWordWrap(True)
        body.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(heading)
        layout.addWidget(body)
        layout.addStretch(1)


class MainWindow(QMainWindow):
    """Devices, Objects, Keys, Certificates, Browsers."""

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.setWindowTitle(APP_NAME)
        self.resize(1180, 760)

        self.nav = QListWidget()
        self.nav.setObjectName("navigation")
        self.nav.setFixedWidth(170)
        self.nav.setIconSize(QSize(22, 22))
        self.stack = QStackedWidget()
        self.devices = DevicesPane(ctx)
        self.objects = ObjectsPane(ctx)
        panes: list[tuple[str, str, QWidget]] = [
            ("Devices", "drive-removable-media", self.devices),
            ("Objects", "view-list-details", self.objects),
            ("Keys", "dialog-password", ComingSoonPane(
                "Keys", "Generating key pairs on the token (RSA and EC, within the token's limits) comes "
                "with the certificate lifecycle release. Until then <tt>pkcs11-tool --keypairgen</tt> does it.")),
            ("Certificates", "application-certificate", ComingSoonPane(
                "Certificates", "Certificate requests signed on the token, a local CA, importing a certificate "
                "with the right CKA_ID, and checking it as a browser would, come in a later release.")),
            ("Browsers", "internet-web-browser", ComingSoonPane(
                "Browsers", "Registering the token with Firefox, Chrome and Thunderbird (their NSS databases), "
                "safely, while the browser is closed, comes in a later release.")),
        ]
        for name, icon, widget in panes:
            item = QListWidgetItem(QIcon.fromTheme(icon), name)
            self.nav.addItem(item)
            self.stack.addWidget(widget)
        self.nav.currentRowChanged.connect(self.stack.setCurrentIndex)
        self.nav.setCurrentRow(0)

        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.nav)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        self.busy_label = QLabel("Ready")
        self.busy_bar = QProgressBar()
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setMaximumWidth(120)
        self.busy_bar.setVisible(False)
        self.statusBar().addWidget(self.busy_label, 1)
        self.statusBar().addPermanentWidget(self.busy_bar)
        ctx.jobs.busy_changed.connect(self._on_busy)

        self.devices.token_selected.connect(self._on_token_selected)
        self.devices.demo_ready.connect(self._on_demo_ready)
        self.devices.status.connect(self._on_status)
        self.objects.status.connect(self._on_status)

        quit_action = self.addAction("Quit")
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        self.devices.refresh()

    @Slot(str)
    def _on_busy(self, text: str) -> None:
        self.busy_bar.setVisible(bool(text))
        self.busy_label.setText(f"Working: {text}…" if text else "Ready")

    @Slot(str)
    def _on_status(self, text: str) -> None:
        self.statusBar().showMessage(text, 8000)

    @Slot(object)
    def _on_token_selected(self, ref: TokenRef) -> None:
        self.objects.show_token(ref)

    @Slot(object)
    def _on_demo_ready(self, _ref: TokenRef) -> None:
        self.show_pane("Objects")

    def show_pane(self, name: str) -> None:
        for row in range(self.nav.count()):
            if self.nav.item(row).text() == name:
                self.nav.setCurrentRow(row)
                return

    def closeEvent(self, event: QCloseEvent) -> None:
        self.ctx.jobs.close()
        super().closeEvent(event)
