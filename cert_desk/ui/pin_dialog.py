"""The PIN dialog: says what the token says about its PIN, and never wastes a try.

The dialog collects the PIN on the GUI thread and hands it over once, as a
:class:`~cert_desk.secrets.Secret`; its text field is cleared at that moment. It stays open
while the token checks the PIN, so a wrong PIN is answered in place with what the token
now reports (few tries left, one try left, locked).
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from cert_desk.errors import PinState
from cert_desk.models import TokenInfo
from cert_desk.secrets import Secret
from cert_desk.ui import style

_STATE_KIND = {
    PinState.OK: "ok",
    PinState.COUNT_LOW: "warn",
    PinState.FINAL_TRY: "error",
    PinState.LOCKED: "error",
    PinState.TO_BE_CHANGED: "warn",
    PinState.NOT_INITIALIZED: "muted",
}
_STATE_TEXT = {
    PinState.OK: "ok",
    PinState.COUNT_LOW: "a wrong PIN was entered before: the token has few tries left",
    PinState.FINAL_TRY: "one try left: one more wrong PIN locks the token",
    PinState.LOCKED: "locked: too many wrong PINs",
    PinState.TO_BE_CHANGED: "must be changed: the token asks for a new PIN",
    PinState.NOT_INITIALIZED: "not set",
}
FINAL_TRY_TEXT = "I understand one more wrong PIN locks the token"


def state_html(state: PinState) -> str:
    colour = style.state_hex(_STATE_KIND[state])
    return f"<span style='color:{colour}; font-weight:600'>{html.escape(_STATE_TEXT[state])}</span>"


class PinDialog(QDialog):
    """Log in to one token.

    Signals:
        submitted(object): The user pressed Log in: a ``Secret``, or ``None`` for a PIN pad.
        unblock_requested(): The PIN is locked and the user wants to set a new one with the SO PIN.
    """

    submitted = Signal(object)
    unblock_requested = Signal()

    def __init__(self, token: TokenInfo, *, so: bool = False, parent: QWidget | None = None,
                 keyring: tuple[bool, str] | None = None, remembered: bool = False) -> None:
        """``keyring``: (available, reason why not) shows the "Remember this PIN" box (user PIN
        only, never the SO PIN); ``remembered`` ticks it, since a PIN is stored already."""
        super().__init__(parent)
        self.so = so
        self.who = "SO PIN" if so else "PIN"
        self.setWindowTitle(f"Log in to {token.label}")
        self.setModal(True)
        self.setMinimumWidth(420)

        self.intro = QLabel()
        self.intro.setWordWrap(True)
        self.state_label = QLabel()
        self.state_label.setWordWrap(True)
        self.state_label.setMinimumWidth(300)
        self.pin = QLineEdit()
        self.pin.setEchoMode(QLineEdit.EchoMode.Password)
        self.pin.setObjectName("pin")
        self.limits = QLabel()
        self.limits.setObjectName("limits")
        self.final_try = QCheckBox(FINAL_TRY_TEXT)
        self.final_try.setVisible(False)
        self.remember = QCheckBox("Remember this PIN in the keyring for this token")
        self.remember.setObjectName("remember")
        self.remember_note = QLabel()
        self.remember_note.setObjectName("remember_note")
        self.remember_note.setWordWrap(True)
        self.was_remembered = remembered
        self._remember_shown = keyring is not None and not so
        self._remember_offered = self._remember_shown and keyring is not None and keyring[0]
        if keyring is None or so:
            self.remember.setVisible(False)
            self.remember_note.setVisible(False)
        elif keyring[0]:
            self.remember.setChecked(remembered)
            self.remember.setToolTip("Stored in your desktop keyring under this token's serial number. A remembered "
                                     "PIN that the token refuses is deleted at once and never tried again.")
            self.remember_note.setVisible(False)
        else:
            self.remember.setEnabled(False)
            self.remember_note.setText(f"<span style='color:{style.state_hex('muted')}'>"
                                       f"{html.escape(keyring[1])}</span>")
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setVisible(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(8)
        self.progress.setVisible(False)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Log in")
        self.unblock_button = self.buttons.addButton("Unblock with the SO PIN…",
                                                     QDialogButtonBox.ButtonRole.ActionRole)
        self.unblock_button.setObjectName("unblock")
        self.unblock_button.clicked.connect(self._unblock)
        self.buttons.accepted.connect(self._submit)
        self.buttons.rejected.connect(self.reject)

        form = QFormLayout()
        form.setSpacing(style.SPACING)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.addRow(f"{self.who} state:", self.state_label)
        self.pin_row_label = QLabel(f"{self.who}:")
        form.addRow(self.pin_row_label, self.pin)
        form.addRow("", self.limits)
        layout = QVBoxLayout(self)
        layout.setSpacing(style.SPACING)
        layout.setContentsMargins(style.MARGIN * 2, style.MARGIN * 2, style.MARGIN * 2, style.MARGIN)
        layout.addWidget(self.intro)
        layout.addLayout(form)
        layout.addWidget(self.final_try)
        layout.addWidget(self.remember)
        layout.addWidget(self.remember_note)
        layout.addWidget(self.message)
        layout.addWidget(self.progress)
        layout.addWidget(self.buttons)

        self.pin.textChanged.connect(self._update)
        self.final_try.toggled.connect(self._update)
        self.token = token
        self.set_token(token)

    # ------------------------------------------------------------------ state

    def set_token(self, token: TokenInfo) -> None:
        """Show the token's (fresh) PIN state and limits."""
        self.token = token
        state = token.so_pin if self.so else token.user_pin
        self.state = state
        self.state_label.setText(state_html(state))
        self.pad = token.protected_authentication_path
        serial = html.escape(token.serial)
        if self.pad:
            self.intro.setText(f"<b>{html.escape(token.label)}</b> (serial {serial}) has a PIN pad.<br>"
                               f"Press <i>Log in</i>, then enter the {self.who} on the reader.")
        else:
            self.intro.setText(f"Enter the {self.who} of <b>{html.escape(token.label)}</b> (serial {serial}).")
        for w in (self.pin, self.pin_row_label, self.limits):
            w.setVisible(not self.pad)
        self.remember.setVisible(self._remember_shown and not self.pad)  # a PIN pad's PIN is never seen
        lo, hi = token.min_pin_len, token.max_pin_len
        if hi:
            self.pin.setMaxLength(hi)
        if lo is not None and hi:
            self.limits.setText(f"{lo} to {hi} characters")
        elif lo is not None:
            self.limits.setText(f"at least {lo} characters")
        else:
            self.limits.clear()
        self.final_try.setVisible(state is PinState.FINAL_TRY)
        self.unblock_button.setVisible(state is PinState.LOCKED and not self.so)
        if state is not PinState.FINAL_TRY:
            self.final_try.setChecked(False)
        if state is PinState.LOCKED:
            self.show_message(f"The {self.who} is locked, so cert-desk will not try it. "
                              + ("Unblock it: set a new PIN with the SO PIN." if not self.so else
                                 "A locked SO PIN cannot be unblocked: only re-initialising the token (if the "
                                 "device allows it) makes it usable again."), "error")
            self.pin.setEnabled(False)
        elif state is PinState.NOT_INITIALIZED and not self.so:
            self.show_message("This token has no user PIN yet: set it with the SO PIN first.", "error")
            self.pin.setEnabled(False)
        elif state is PinState.COUNT_LOW:
            self.show_message("Careful: a wrong PIN was entered before and the token has few tries left.", "warn")
        elif state is PinState.TO_BE_CHANGED:
            self.show_message(f"The token wants this {self.who} changed; you can log in, but change it soon.", "warn")
        self._update()

    def show_message(self, text: str, kind: str) -> None:
        self.message.setText(f"<span style='color:{style.state_hex(kind)}'>{html.escape(text)}</span>")
        self.message.setVisible(True)

    def show_refusal(self, text: str, token: TokenInfo | None) -> None:
        """The token refused the PIN: say so, with what it now reports."""
        self.set_busy(False)
        if token is not None:
            self.set_token(token)
        kind = "error" if self.state in (PinState.FINAL_TRY, PinState.LOCKED) else "warn"
        self.show_message(text, kind)
        self.pin.setFocus()

    def set_busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        cancel = self.buttons.button(QDialogButtonBox.StandardButton.Cancel)
        cancel.setEnabled(not busy)  # the token is checking the PIN: its answer must reach this dialog
        self.pin.setEnabled(not busy and self.state not in (PinState.LOCKED,))
        self.final_try.setEnabled(not busy)
        self.remember.setEnabled(not busy and self._remember_offered)
        self._update()
        if busy:
            self.ok_button.setEnabled(False)

    @Slot()
    def _update(self) -> None:
        ok = self.state is not PinState.LOCKED and not (self.state is PinState.NOT_INITIALIZED and not self.so)
        if not self.pad:
            n = len(self.pin.text().encode("utf-8"))
            lo, hi = self.token.min_pin_len, self.token.max_pin_len
            ok = ok and n > 0 and (lo is None or n >= lo) and (not hi or n <= hi)
        if self.state is PinState.FINAL_TRY:
            ok = ok and self.final_try.isChecked()
        self.ok_button.setEnabled(ok and not self.progress.isVisible())

    @property
    def remember_choice(self) -> bool | None:
        """True: store the PIN once accepted; False: delete the remembered one; None: no change."""
        if not self._remember_offered or self.pad:
            return None
        if self.remember.isChecked():
            return True
        return False if self.was_remembered else None

    @property
    def allow_final_try(self) -> bool:
        return self.state is PinState.FINAL_TRY and self.final_try.isChecked()

    @Slot()
    def _unblock(self) -> None:
        self.reject()
        self.unblock_requested.emit()

    @Slot()
    def _submit(self) -> None:
        if not self.ok_button.isEnabled():
            return
        secret: Secret | None = None
        if not self.pad:
            secret = Secret(self.pin.text(), "PIN dialog")
            self.pin.setText("")  # unlike clear(), this also empties the field's undo history
        self.message.setVisible(False)
        self.set_busy(True)
        self.submitted.emit(secret)

    def keyPressEvent(self, event: object) -> None:
        # Enter submits only through the button's rules (length, final-try box).
        from PySide6.QtGui import QKeyEvent

        if isinstance(event, QKeyEvent) and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self._submit()
            return
        super().keyPressEvent(event)  # type: ignore[arg-type]
