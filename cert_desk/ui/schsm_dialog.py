"""SmartCard-HSM / Nitrokey HSM: the DKEK state, key backup shares, key wrap and unwrap, and
initialisation with DKEK shares, by driving OpenSC's ``sc-hsm-tool``.

Shown only for a token that is one (by its ATR or the name OpenSC gives it). Every secret is
typed into a password field, handed to the tool's own prompt through a pseudo-terminal (never its
command line), and the field emptied at that moment. The Activity panel shows each command.
"""

from __future__ import annotations

import html
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Slot
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from cert_desk import errors as E
from cert_desk.cli_schsm import status_lines, tool
from cert_desk.pkcs11 import schsm
from cert_desk.secrets import Secret
from cert_desk.services.outcome import Outcome
from cert_desk.ui import style
from cert_desk.ui.app import AppContext


def _password() -> QLineEdit:
    edit = QLineEdit()
    edit.setEchoMode(QLineEdit.EchoMode.Password)
    return edit


def _file_row(edit: QLineEdit, save: bool, parent: QWidget) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit, 1)
    browse = QPushButton("Browse…")

    def pick() -> None:
        get = QFileDialog.getSaveFileName if save else QFileDialog.getOpenFileName
        path, _ = get(parent, "Choose a file", edit.text() or str(Path.home()))
        if path:
            edit.setText(path)

    browse.clicked.connect(pick)
    layout.addWidget(browse)
    return row


class ScHsmDialog(QDialog):
    """SmartCard-HSM administration for the card in one reader (OpenSC's reader number)."""

    def __init__(self, ctx: AppContext, reader: int, reader_name: str, label: str,
                 parent: QWidget | None = None, *, serial: str = "") -> None:
        """``label``/``serial``: the token as OpenSC's PKCS#11 module shows it (a PIN remembered for it
        is deleted when the token is initialised)."""
        super().__init__(parent)
        self.serial = serial
        self.ctx, self.reader = ctx, reader
        self.setObjectName("schsmDialog")
        self.setWindowTitle(f"SmartCard-HSM — {label}")
        self.setMinimumWidth(560)
        intro = QLabel(f"<b>{html.escape(label)}</b> in reader {reader} ({html.escape(reader_name)}). These "
                       "actions run OpenSC's <code>sc-hsm-tool</code>; PINs and passwords are typed at its "
                       "prompts, never put on its command line.")
        intro.setWordWrap(True)
        self.status = QLabel("Reading the DKEK state…")
        self.status.setObjectName("schsmStatus")
        self.status.setWordWrap(True)
        self.message = QLabel()
        self.message.setObjectName("schsmMessage")
        self.message.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setFixedHeight(8)
        self.progress.setTextVisible(False)
        self.progress.setVisible(False)
        self.tabs = QTabWidget()
        self.tabs.addTab(self._shares_tab(), "DKEK shares")
        self.tabs.addTab(self._wrap_tab(), "Wrap / unwrap")
        self.tabs.addTab(self._init_tab(), "Initialise")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        self.refresh_button = buttons.addButton("Read the state", QDialogButtonBox.ButtonRole.ActionRole)
        self.refresh_button.clicked.connect(lambda _checked=False: self.read_state(say=True))
        self.label = label
        layout = QVBoxLayout(self)
        layout.setSpacing(style.SPACING)
        layout.addWidget(intro)
        layout.addWidget(self.status)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.message)
        layout.addWidget(self.progress)
        layout.addWidget(buttons)
        self.read_state()

    # ------------------------------------------------------------------ tabs

    def _shares_tab(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        note = QLabel("A DKEK share is a password-protected file; the token's key encryption key (DKEK) is made "
                      "from its shares, and keys wrapped under it can be restored into any SmartCard-HSM that has "
                      "the same shares. Keep each share and its password apart.")
        note.setWordWrap(True)
        form.addRow(note)
        self.share_file = QLineEdit()
        self.share_file.setObjectName("shareFile")
        form.addRow("Share file:", _file_row(self.share_file, True, self))
        self.share_password = _password()
        self.share_password.setObjectName("sharePassword")
        self.share_repeat = _password()
        form.addRow("Password:", self.share_password)
        form.addRow("Password again (new share):", self.share_repeat)
        row = QHBoxLayout()
        self.create_button = QPushButton("Create share file")
        self.create_button.clicked.connect(self.create_share)
        self.import_button = QPushButton("Import share into the token")
        self.import_button.clicked.connect(self.import_share)
        row.addWidget(self.create_button)
        row.addWidget(self.import_button)
        row.addStretch(1)
        form.addRow(row)
        return page

    def _wrap_tab(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.key_ref = QSpinBox()
        self.key_ref.setRange(1, 255)
        form.addRow("Key reference:", self.key_ref)
        self.wrap_file = QLineEdit()
        form.addRow("Wrapped key file:", _file_row(self.wrap_file, True, self))
        self.wrap_pin = _password()
        form.addRow("User PIN:", self.wrap_pin)
        row = QHBoxLayout()
        self.wrap_button = QPushButton("Wrap key to file")
        self.wrap_button.clicked.connect(self.wrap)
        self.unwrap_button = QPushButton("Unwrap file into the token")
        self.unwrap_button.clicked.connect(self.unwrap)
        row.addWidget(self.wrap_button)
        row.addWidget(self.unwrap_button)
        row.addStretch(1)
        form.addRow(row)
        return page

    def _init_tab(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        warn = QLabel(f"<span style='color:{style.state_hex('error')}'>Initialising erases every key and "
                      "certificate on the token.</span> The SO PIN is 16 hex digits; the user PIN 6 to 15 "
                      "characters.")
        warn.setWordWrap(True)
        form.addRow(warn)
        self.init_label = QLineEdit()
        form.addRow("Label:", self.init_label)
        self.init_shares = QSpinBox()
        self.init_shares.setRange(-1, 127)  # -1: no --dkek-shares at all; 0: a random DKEK the token keeps
        self.init_shares.setSpecialValueText("none: no DKEK (keys cannot be backed up)")
        self.init_shares.setValue(1)
        self.init_shares.setToolTip("0: a random DKEK the token keeps to itself; 1 or more: DKEK shares to import "
                                    "afterwards, from which the DKEK can be restored on another device")
        form.addRow("DKEK shares:", self.init_shares)
        self.init_so = _password()
        self.init_so_repeat = _password()
        self.init_pin = _password()
        self.init_pin_repeat = _password()
        form.addRow("SO PIN:", self.init_so)
        form.addRow("SO PIN again:", self.init_so_repeat)
        form.addRow("User PIN:", self.init_pin)
        form.addRow("User PIN again:", self.init_pin_repeat)
        self.init_confirm = QLineEdit()
        self.init_confirm.setPlaceholderText("the token's label, as shown above")
        form.addRow("Type the token's label to confirm:", self.init_confirm)
        self.init_button = QPushButton("Initialise")
        self.init_button.clicked.connect(self.initialise)
        form.addRow(self.init_button)
        return page

    # --------------------------------------------------------------- running

    def _say(self, text: str, kind: str) -> None:
        self.message.setText(f"<span style='color:{style.state_hex(kind)}'>{html.escape(text)}</span>")

    def _run(self, what: str, argv: list[str], fn: Callable[[], Any], done: Callable[[Any], str], *,
             say: bool = True) -> None:
        self.progress.setVisible(True)
        self.tabs.setEnabled(False)
        self.refresh_button.setEnabled(False)  # one sc-hsm-tool at a time on a card
        if say:
            self.message.clear()

        def finished(outcome: Outcome[Any]) -> None:
            self.progress.setVisible(False)
            self.tabs.setEnabled(True)
            self.refresh_button.setEnabled(True)
            if outcome.error is not None:
                self._say(str(outcome.error), "error")
                return
            text = done(outcome.value)
            if say:
                self._say(text, "ok")
            if what != "read the SmartCard-HSM state":
                self.read_state(say=False)  # show what the action changed; keep its message

        self.ctx.jobs.watch(self.ctx.tasks.submit(fn), finished, what, command=shlex.join(argv), owner=self)

    def _checked(self, check: Callable[[], None]) -> bool:
        try:
            check()
        except E.CertDeskError as err:
            self._say(err.message, "error")
            return False
        return True

    def read_state(self, say: bool = True) -> None:
        reader = self.reader

        def shown(status: schsm.ScHsmStatus) -> str:
            warn = status.dkek is not None and status.dkek.all_zero_kcv
            rows = []
            for line in status_lines(status):
                name, _, value = line.strip().partition(":")
                kind = "error" if "WARNING" in name else "warn" if "warning" in name else ""
                colour = f" style='color:{style.state_hex(kind)}'" if kind else ""
                rows.append(f"<tr><td style='padding-right:12px'>{html.escape(name.strip())}</td>"
                            f"<td{colour}>{html.escape(value.strip())}</td></tr>")
            self.status.setText(f"<table>{''.join(rows)}</table>")
            return "The DKEK check value is all zero: no DKEK is set." if warn else "State read."

        self._run("read the SmartCard-HSM state", schsm.status_command(reader, tool=tool()),
                  lambda: schsm.dkek_state(reader, tool=tool()), shown, say=say)

    @Slot()
    def create_share(self) -> None:
        path, password, repeat = self.share_file.text().strip(), self.share_password.text(), self.share_repeat.text()
        if not path:
            self._say("Choose the file for the new share.", "error")
            return
        if password != repeat:
            self._say("The two passwords differ.", "error")
            return
        secret = Secret(password, "dialog")
        if not self._checked(lambda: schsm.check_share_password(secret)):
            return
        self._clear(self.share_password, self.share_repeat)
        reader = self.reader
        self._run("create a DKEK share", schsm.create_dkek_share_command(path, reader, tool=tool()),
                  lambda: schsm.create_dkek_share(Path(path), secret, reader=reader, tool=tool()),
                  lambda _out: f"Wrote the DKEK share {path}.")

    @Slot()
    def import_share(self) -> None:
        path, password = self.share_file.text().strip(), self.share_password.text()
        if not path or not password:
            self._say("Choose the share file and type its password.", "error")
            return
        secret = Secret(password, "dialog")
        self._clear(self.share_password, self.share_repeat)
        reader = self.reader

        def done(state: schsm.DkekState) -> str:
            if state.outstanding:
                return f"Imported the share; {state.outstanding} more to import."
            kcv = state.kcv.hex(":").upper() if state.kcv is not None else "?"
            return f"Imported the last share. DKEK check value {kcv}: compare it with the one noted at creation."

        self._run("import a DKEK share", schsm.import_dkek_share_command(path, reader, tool=tool()),
                  lambda: schsm.import_dkek_share(reader, Path(path), secret, tool=tool()), done)

    def _wrap_args(self) -> tuple[int, str, Secret] | None:
        path, pin = self.wrap_file.text().strip(), self.wrap_pin.text()
        if not path or not pin:
            self._say("Choose the file and type the user PIN.", "error")
            return None
        secret = Secret(pin, "dialog")
        self._clear(self.wrap_pin)
        return self.key_ref.value(), path, secret

    @Slot()
    def wrap(self) -> None:
        args = self._wrap_args()
        if args is None:
            return
        key_ref, path, pin = args
        reader = self.reader
        self._run("wrap a key", schsm.wrap_key_command(reader, key_ref, path, tool=tool()),
                  lambda: schsm.wrap_key(reader, key_ref, Path(path), pin, tool=tool()),
                  lambda _out: f"Wrapped key {key_ref} into {path}.")

    @Slot()
    def unwrap(self) -> None:
        args = self._wrap_args()
        if args is None:
            return
        key_ref, path, pin = args
        reader = self.reader
        self._run("unwrap a key", schsm.unwrap_key_command(reader, key_ref, path, tool=tool()),
                  lambda: schsm.unwrap_key(reader, key_ref, Path(path), pin, tool=tool()),
                  lambda _out: f"Unwrapped {path} into key reference {key_ref}.")

    @Slot()
    def initialise(self) -> None:
        if self.init_confirm.text() != self.label:
            self._say(f"Type the token's label, {self.label!r}, to confirm: everything on it is erased.", "error")
            return
        if self.init_so.text() != self.init_so_repeat.text() or self.init_pin.text() != self.init_pin_repeat.text():
            self._say("The two entries of a PIN differ.", "error")
            return
        so, pin = Secret(self.init_so.text(), "dialog"), Secret(self.init_pin.text(), "dialog")
        label = self.init_label.text().strip() or None
        shares = None if self.init_shares.value() < 0 else self.init_shares.value()
        def check() -> None:
            schsm.check_so_pin(so)
            schsm.check_user_pin(pin)
            schsm.check_label(label)
            schsm.check_dkek_shares(shares)

        if not self._checked(check):
            return
        self._clear(self.init_so, self.init_so_repeat, self.init_pin, self.init_pin_repeat, self.init_confirm)
        reader, serial, old_label = self.reader, self.serial, self.label

        def run() -> str:
            from cert_desk.services.admin import forget_stale

            schsm.initialize(reader, so_pin=so, user_pin=pin, label=label, dkek_shares=shares, tool=tool())
            return forget_stale(serial, old_label) if serial else ""

        self._run("initialise the SmartCard-HSM",
                  schsm.initialize_command(reader, label=label, dkek_shares=shares, pin_retry=None, tool=tool()),
                  run, lambda notice: " ".join(filter(None, (
                      "Initialised." + (f" Import its {shares} DKEK share(s) next." if shares else ""), notice))))

    @staticmethod
    def _clear(*edits: QLineEdit) -> None:
        for e in edits:
            e.setText("")  # the secret went to the job once; no copy stays in the field
