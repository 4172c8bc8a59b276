"""The main window: a navigation list of panes, a status bar that says what the workers do,
and the Activity panel. Geometry, the last pane and the panel layout are remembered."""

from __future__ import annotations

import html

from PySide6.QtCore import QEvent, QSettings, QSize, Qt, Slot
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QWidget,
)

from cert_desk import APP_NAME
from cert_desk.models import ObjectInfo, TokenInfo, TokenRef
from cert_desk.services.qt import QtReaderWatcher
from cert_desk.ui import style
from cert_desk.ui.activity import ActivityDock
from cert_desk.ui.app import AppContext
from cert_desk.ui.browsers_pane import BrowsersPane
from cert_desk.ui.certificates_pane import CertificatesPane
from cert_desk.ui.devices_pane import DevicesPane
from cert_desk.ui.expiry import ExpiryWatch
from cert_desk.ui.expiry import summary as expiry_summary
from cert_desk.ui.keys_pane import KeysPane
from cert_desk.ui.objects_pane import ObjectsPane


def settings() -> QSettings:
    return QSettings(APP_NAME, APP_NAME)


class MainWindow(QMainWindow):
    """Devices, Objects, Keys, Certificates, Browsers."""

    PANES = ("Devices", "Objects", "Keys", "Certificates", "Browsers")

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.setObjectName("mainWindow")
        self.setWindowTitle(APP_NAME)
        self.setWindowIcon(style.app_icon())
        self.resize(1200, 780)

        self.nav = QListWidget()
        self.nav.setObjectName("navigation")
        self.nav.setFixedWidth(180)
        self.nav.setIconSize(QSize(22, 22))
        self.nav.setSpacing(2)
        self.stack = QStackedWidget()
        self.devices = DevicesPane(ctx)
        self.objects = ObjectsPane(ctx)
        self.keys = KeysPane(ctx, self.objects)
        self.certificates = CertificatesPane(ctx, self.objects)
        self.browsers = BrowsersPane(ctx, self.objects)
        self.dialog: QWidget | None = None  # the lifecycle dialog open now (one at a time)
        panes: list[tuple[str, str, QWidget]] = [
            ("Devices", "devices", self.devices),
            ("Objects", "objects", self.objects),
            ("Keys", "keys", self.keys),
            ("Certificates", "certificates", self.certificates),
            ("Browsers", "browsers", self.browsers),
        ]
        for i, (name, icon, widget) in enumerate(panes):
            item = QListWidgetItem(name)
            item.setSizeHint(QSize(0, 36))
            item.setToolTip(f"{name} (Ctrl+{i + 1})")
            style.themed(item, icon)
            self.nav.addItem(item)
            self.stack.addWidget(widget)
            QShortcut(QKeySequence(f"Ctrl+{i + 1}"), self, lambda row=i: self.nav.setCurrentRow(row))
        self.nav.currentRowChanged.connect(self.stack.setCurrentIndex)

        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(style.SPACING, style.SPACING, style.SPACING, style.SPACING)
        layout.setSpacing(style.SPACING)
        layout.addWidget(self.nav)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        self.activity = ActivityDock(ctx.jobs, self)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.activity)
        self.activity_action = self.activity.toggleViewAction()
        self.activity_action.setShortcut(QKeySequence("Ctrl+Shift+A"))
        self.addAction(self.activity_action)

        self.busy_label = QLabel("Ready")
        self.busy_bar = QProgressBar()
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setMaximumWidth(120)
        self.busy_bar.setFixedHeight(12)
        self.busy_bar.setTextVisible(False)
        self.busy_bar.setVisible(False)
        self.statusBar().addWidget(self.busy_label, 1)
        self.expiry_label = QLabel()
        self.expiry_button = QPushButton("Show certificate")
        self.expiry_button.clicked.connect(self._show_expiring)
        for w in (self.expiry_label, self.expiry_button):
            w.setVisible(False)
            self.statusBar().addPermanentWidget(w)
        self.statusBar().addPermanentWidget(self.busy_bar)
        self._expiring: tuple[TokenRef, int] | None = None
        ctx.jobs.busy_changed.connect(self._on_busy)

        self.devices.token_selected.connect(self._on_token_selected)
        self.devices.tokens_changed.connect(self.objects.tokens_changed)
        self.expiry = ExpiryWatch(ctx, parent=self)
        self.devices.tokens_changed.connect(self.expiry.on_tokens)
        self.expiry.found.connect(self._on_expiring)
        self.expiry.show.connect(self.show_certificate)
        self.pcsc = QtReaderWatcher(self)
        self.pcsc.changed.connect(self.devices.on_pcsc)
        self.devices.modules_reloaded.connect(self.objects.modules_reloaded)
        self.devices.demo_ready.connect(self._on_demo_ready)
        for pane in (self.devices, self.objects, self.keys, self.certificates, self.browsers):
            pane.status.connect(self._on_status)
        self.keys.csr_requested.connect(self._request_csr)
        self.keys.openssl_requested.connect(self._use_with_openssl)
        self.certificates.renew_requested.connect(self.renew)
        self.objects.unblock_requested.connect(self.unblock)
        self.objects.change_pin_requested.connect(lambda ref: self.administer(ref, "change"))

        QShortcut(QKeySequence.StandardKey.Quit, self, self.close)
        QShortcut(QKeySequence.StandardKey.Refresh, self, self._refresh_current)
        QShortcut(QKeySequence.StandardKey.Find, self, self._find)
        QShortcut(QKeySequence("Ctrl+L"), self, self._login)

        self._restore()
        self.devices.refresh()
        self.pcsc.start()
        self.devices.poll_timer.start()

    # ----------------------------------------------------------------- state

    def _restore(self) -> None:
        s = settings()
        geometry = s.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        state = s.value("window/state")
        if state is not None:
            self.restoreState(state)
        else:
            self.activity.setVisible(False)
        for key, splitter in (("devices/split", self.devices.split), ("objects/split", self.objects.split)):
            value = s.value(key)
            if value is not None:
                splitter.restoreState(value)
        pane = s.value("window/pane", "Devices")
        self.show_pane(str(pane) if str(pane) in self.PANES else "Devices")

    def save_state(self) -> None:
        s = settings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("window/pane", self.PANES[self.nav.currentRow()])
        s.setValue("devices/split", self.devices.split.saveState())
        s.setValue("objects/split", self.objects.split.saveState())
        s.sync()

    # ------------------------------------------------------------------ slots

    @Slot(str)
    def _on_busy(self, text: str) -> None:
        self.busy_bar.setVisible(bool(text))
        self.busy_label.setText(f"Working: {text}…" if text else "Ready")

    @Slot(str)
    def _on_status(self, text: str) -> None:
        self.statusBar().showMessage(text, 8000)

    @Slot(object, object)
    def _on_token_selected(self, ref: TokenRef, token: TokenInfo) -> None:
        self.objects.show_token(ref, token)

    @Slot(object)
    def _on_demo_ready(self, _ref: TokenRef) -> None:
        self.show_pane("Objects")

    @Slot(object, object)
    def _on_expiring(self, ref: TokenRef, certs: tuple[ObjectInfo, ...]) -> None:
        self.expiry_label.setText(f"<span style='color:{style.state_hex('warn')}'>⚠ "
                                  f"{html.escape(expiry_summary(ref, certs))}</span>")
        self._expiring = (ref, certs[0].handle)
        self.expiry_label.setVisible(True)
        self.expiry_button.setVisible(True)

    @Slot()
    def _show_expiring(self) -> None:
        if self._expiring is not None:
            self.show_certificate(*self._expiring)
        self.expiry_label.setVisible(False)
        self.expiry_button.setVisible(False)

    @Slot(object, int)
    def show_certificate(self, ref: TokenRef, handle: int) -> None:
        """Show the Objects pane on ``ref`` with the object ``handle`` selected."""
        self.show_pane("Objects")
        self.objects.show_token(ref, select=handle)
        self.raise_()
        self.activateWindow()

    @Slot(object)
    def _request_csr(self, key: ObjectInfo) -> None:
        self.show_pane("Certificates")
        self.dialog = self.certificates.new_request(key)

    @Slot(object)
    def _use_with_openssl(self, key: ObjectInfo) -> None:
        from cert_desk.ui.openssl_dialog import OpensslDialog

        listing = self.keys.listing
        if listing is not None:
            dialog = OpensslDialog(self.ctx, listing, key, self)
            self.dialog = dialog
            dialog.open()

    @Slot(object)
    def renew(self, certificate: ObjectInfo | None = None) -> None:
        from cert_desk.ui.renew_wizard import RenewWizard

        listing = self.certificates.listing
        if listing is None:
            return
        wizard = RenewWizard(self.ctx, listing, certificate, self)
        wizard.listing_changed.connect(self.objects.apply_listing)
        self.dialog = wizard
        wizard.open()

    @Slot()
    def _find(self) -> None:
        self.show_pane("Objects")
        self.objects.filter.setFocus()
        self.objects.filter.selectAll()

    @Slot()
    def _login(self) -> None:
        self.show_pane("Objects")
        self.objects.login()

    @Slot()
    def _refresh_current(self) -> None:
        pane = self.stack.currentWidget()
        if pane is self.devices:
            self.devices.reload()
        elif pane in (self.objects, self.keys, self.certificates):
            self.objects.refresh()

    def unblock(self, ref: object) -> None:
        """A locked user PIN: the Devices pane's "Unblock PIN" for that token."""
        self.administer(ref, "unblock")

    def administer(self, ref: object, action: str) -> None:
        """Open the Devices pane's administration dialog ``action`` for a token."""
        if not isinstance(ref, TokenRef):
            return
        self.show_pane("Devices")
        if self.devices.select_slot(ref.module, ref.slot_id):
            self.devices.administer(action)

    def show_pane(self, name: str) -> None:
        self.nav.setCurrentRow(self.PANES.index(name))

    def changeEvent(self, event: QEvent) -> None:
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            style.retheme()
            self.devices.retheme()
            self.objects.retheme()
            for pane in (self.keys, self.certificates):  # their icons and colours are set per row: rebuild
                pane.on_listing(pane.listing)
        super().changeEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_state()
        self.devices.poll_timer.stop()
        self.pcsc.stop()
        self.expiry.close()
        self.browsers.shutdown()
        self.ctx.jobs.close()
        super().closeEvent(event)
