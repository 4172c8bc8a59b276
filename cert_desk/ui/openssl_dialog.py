"""Use an on-token key with OpenSSL: the OPENSSL_CONF file and the commands that work with it.

The configuration is written for libp11's engine (OpenSSL 1.1 and 3) or pkcs11-provider
(OpenSSL 3); the PIN is only ever a reference to a file. The dialog explains the seed's trap:
``-config`` with ``-engine`` loads the engine twice; ``OPENSSL_CONF`` works.
"""

from __future__ import annotations

import html
import os

from PySide6.QtCore import Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QRadioButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from cert_desk import errors as E
from cert_desk.models import ObjectInfo, ObjectListing
from cert_desk.paths import config_dir
from cert_desk.pkcs11 import constants as C
from cert_desk.pkcs11.openssl_config import OpensslKeyRef, OpensslSetup, engine_setup, provider_setup, write_config
from cert_desk.services.outcome import Outcome
from cert_desk.ui import style
from cert_desk.ui.app import AppContext
from cert_desk.ui.ca_dialog import PathField
from cert_desk.ui.widgets import Banner, ask


class OpensslDialog(QDialog):
    """The OpenSSL configuration for one private key."""

    def __init__(self, ctx: AppContext, listing: ObjectListing, key: ObjectInfo,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("opensslDialog")
        self.setWindowTitle(f"Use {key.label!r} with OpenSSL")
        self.resize(820, 640)
        t = listing.token
        self.ref = OpensslKeyRef(
            module=t.module, token_label=t.label, token_serial=t.serial, slot_id=t.slot_id, key_label=key.label,
            key_id=key.id, uri=key.uri,
            has_certificate=bool(key.id) and any(o.object_class == C.CKO_CERTIFICATE and o.id == key.id
                                                 for o in listing.objects))
        self.engine = QRadioButton("libp11 engine (OpenSSL 1.1 and 3)")
        self.provider = QRadioButton("pkcs11-provider (OpenSSL 3)")
        self.engine.setChecked(True)
        kinds = QButtonGroup(self)
        kinds.addButton(self.engine)
        kinds.addButton(self.provider)
        row = QHBoxLayout()
        row.addWidget(self.engine)
        row.addWidget(self.provider)
        row.addStretch(1)
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key.label) or key.id_hex
        self.conf = PathField("The configuration file to write", save=True, name_filter="Config (*.cnf)")
        self.conf.setText(os.path.join(config_dir(), "openssl", f"{safe}.cnf"))
        self.pin_file = PathField("A file holding the token's PIN (optional)")
        self.pin_file.edit.setPlaceholderText("optional: without it, openssl asks for the PIN")
        form = QFormLayout()
        form.addRow("For", row)
        form.addRow("Configuration file", self.conf)
        form.addRow("PIN file", self.pin_file)
        self.banner = Banner(self)
        self.view = QTextBrowser()
        self.view.setObjectName("opensslSetup")
        buttons = QDialogButtonBox()
        self.write_button = buttons.addButton("Write configuration", QDialogButtonBox.ButtonRole.ActionRole)
        style.themed(self.write_button, "export")
        self.copy_button = buttons.addButton("Copy commands", QDialogButtonBox.ButtonRole.ActionRole)
        style.themed(self.copy_button, "copy")
        buttons.addButton(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        self.write_button.clicked.connect(lambda _checked=False: self.write())
        self.copy_button.clicked.connect(self._copy)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.banner)
        layout.addWidget(self.view, 1)
        layout.addWidget(buttons)
        self.setup: OpensslSetup | None = None
        for w in (self.engine, self.provider):
            w.toggled.connect(self.preview)
        self.conf.edit.editingFinished.connect(self.preview)
        self.pin_file.edit.editingFinished.connect(self.preview)
        self.preview()

    # ------------------------------------------------------------------ preview

    def _make(self) -> OpensslSetup:
        pin = self.pin_file.text() or None
        conf = os.path.abspath(self.conf.text())
        make = provider_setup if self.provider.isChecked() else engine_setup
        return make(self.ref, pin_file=pin, conf_path=conf)

    @Slot()
    def preview(self) -> None:
        make = self._make
        self.ctx.jobs.watch(self.ctx.tasks.submit(make), self._show, "prepare the OpenSSL configuration",
                            owner=self, quiet=True)

    def _show(self, outcome: Outcome[OpensslSetup]) -> None:
        self.setup = outcome.value
        self.write_button.setEnabled(self.setup is not None)
        self.copy_button.setEnabled(self.setup is not None)
        if outcome.error is not None:
            self.banner.show_message(str(outcome.error), "error")
            self.view.clear()
            return
        self.banner.clear()
        s = outcome.value
        assert s is not None
        parts = [f"<h4>Commands</h4><p>Use the file through the environment (<tt>OPENSSL_CONF=…</tt>), not with "
                 f"<tt>-config</tt>. The key is <tt>{html.escape(s.key_argument)}</tt>.</p>"]
        for what, command in s.commands:
            parts.append(f"<p><b>{html.escape(what)}</b></p><pre>{html.escape(command)}</pre>")
        parts.append("<h4>Notes</h4>" + "".join(f"<p>{html.escape(n)}</p>" for n in s.notes))
        parts.append(f"<h4>{html.escape(os.path.basename(self.conf.text()))}</h4>"
                     f"<pre>{html.escape(s.config_text)}</pre>")
        self.view.setHtml("".join(parts))

    # ------------------------------------------------------------------ write

    def write(self, *, overwrite: bool = False) -> None:
        setup, path = self.setup, os.path.abspath(self.conf.text())
        if setup is None:
            return

        def task() -> str:
            write_config(setup, path, overwrite=overwrite)
            return path

        def done(outcome: Outcome[str]) -> None:
            err = outcome.error
            if err is not None:
                if not overwrite and isinstance(err, E.InputError) and "not written by cert-desk" in err.message:
                    if ask(self, "Replace the file", err.message, "Replace", destructive=True):
                        self.write(overwrite=True)
                    return
                self.banner.show_message(str(err), "error")
                return
            self.banner.show_message(f"Wrote {outcome.value} (readable by you only). Run the commands below.", "ok")

        self.ctx.jobs.watch(self.ctx.tasks.submit(task), done, "write the OpenSSL configuration", owner=self)

    def _copy(self) -> None:
        if self.setup is not None:
            QGuiApplication.clipboard().setText("\n".join(c for _w, c in self.setup.commands))
            self.banner.show_message("Copied the commands.", "ok")
