"""One administration action on one token: initialise it, change the PIN, set a new user PIN with
the SO PIN (unblock), change the SO PIN.

Every field is checked as it is typed: the token's PIN lengths, a SmartCard-HSM's own rules, the
new PIN typed twice the same, the label typed back before an initialisation erases the token. The
PINs go to the worker once, as Secrets, and the fields are emptied at that moment.
"""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtCore import Signal, Slot
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

from cert_desk import errors as E
from cert_desk.models import TokenInfo, TokenRef
from cert_desk.pkcs11.admin import check_label, check_new_pin
from cert_desk.secrets import Secret
from cert_desk.services.admin import AdminService
from cert_desk.services.outcome import Outcome
from cert_desk.ui import style
from cert_desk.ui.app import AppContext
from cert_desk.ui.pin_dialog import state_html

TITLES = {
    "init": "Initialise the token",
    "change": "Change the PIN",
    "unblock": "Set a new user PIN",
    "change-so": "Change the SO PIN",
}


def _password() -> QLineEdit:
    edit = QLineEdit()
    edit.setEchoMode(QLineEdit.EchoMode.Password)
    return edit


class AdminDialog(QDialog):
    """Administration of one token.

    Signals:
        succeeded(str): The action succeeded; what happened, in words.
        attempted(): The action ran (either way): sessions on the token were logged out.
    """

    succeeded = Signal(str)
    attempted = Signal()

    def __init__(self, ctx: AppContext, action: str, *, module: str, slot_id: int, info: TokenInfo,
                 ref: TokenRef | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.action = action
        self.module, self.slot_id, self.info, self.ref = module, slot_id, info, ref
        self.service = AdminService(ctx.service)
        self.setObjectName("adminDialog")
        self.setWindowTitle(f"{TITLES[action]} — {info.label or f'slot {slot_id}'}")
        self.setMinimumWidth(480)
        self.intro = QLabel()
        self.intro.setWordWrap(True)
        self.label = QLineEdit()
        self.label.setMaxLength(32)
        self.confirm = QLineEdit()
        self.current = _password()
        self.new = _password()
        self.repeat = _password()
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setObjectName("adminMessage")
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setFixedHeight(8)
        self.progress.setTextVisible(False)
        self.progress.setVisible(False)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText({"init": "Initialise", "unblock": "Set PIN"}.get(action, "Change"))
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)

        form = QFormLayout()
        who = "SO PIN" if action in ("init", "unblock", "change-so") else "PIN"
        form.addRow("User PIN state:", QLabel(state_html(info.user_pin)))
        form.addRow("SO PIN state:", QLabel(state_html(info.so_pin)))
        self.reinit = action == "init" and info.initialized
        if action == "init":
            self.intro.setText(
                f"Initialising erases <b>every key and certificate</b> on {html.escape(info.label or 'this token')} "
                "and gives it a new label; it needs the token's current SO PIN. Then set its user PIN with "
                "<i>Unblock PIN…</i>."
                if info.initialized else "The token in this slot is empty: give it a label and an SO PIN.")
            self.label.setText(info.label if info.initialized else "")
            form.addRow("New label:", self.label)
            if info.initialized:
                form.addRow(f"Type {html.escape(info.label)!r} to confirm:", self.confirm)
                form.addRow("Current SO PIN:", self.current)
        else:
            self.intro.setText({
                "change": "Type the current PIN and the new one (twice).",
                "unblock": "The SO PIN sets a new user PIN: the first one of a fresh token, or a new one for a "
                           "locked PIN.",
                "change-so": "Type the current SO PIN and the new one (twice). Keep it safe: without it a locked "
                             "user PIN cannot be unblocked.",
            }[action])
            form.addRow(f"Current {who}:" if action != "unblock" else "SO PIN:", self.current)
        if not self.reinit:
            new_who = "SO PIN" if action in ("init", "change-so") else "user PIN"
            form.addRow(f"New {new_who}:", self.new)
            form.addRow(f"New {new_who} again:", self.repeat)
        tried = info.user_pin if action == "change" else info.so_pin
        who_tried = "PIN" if action == "change" else "SO PIN"
        self.final_try = QCheckBox(f"One try left: I understand one more wrong {who_tried} locks it")
        self.final_try_needed = (tried is E.PinState.FINAL_TRY and action != "init") or (
            self.reinit and info.so_pin is E.PinState.FINAL_TRY)
        self.final_try.setVisible(self.final_try_needed)
        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addLayout(form)
        layout.addWidget(self.final_try)
        layout.addWidget(self.message)
        layout.addWidget(self.progress)
        layout.addWidget(self.buttons)
        for w in (self.label, self.confirm, self.current, self.new, self.repeat):
            w.textChanged.connect(self._check)
        self.final_try.toggled.connect(self._check)
        self._check()

    # ------------------------------------------------------------------ checks

    def problems(self) -> list[str]:
        out: list[str] = []
        so_new = self.action in ("init", "change-so")
        if self.action == "init":
            try:
                check_label(self.label.text())
            except E.InputError as err:
                out.append(err.message)
            if self.info.initialized and self.confirm.text() != self.info.label:
                out.append(f"Type the current label, {self.info.label!r}, to confirm the erasure.")
            if self.reinit and self.info.so_pin is E.PinState.LOCKED:
                out.append("The SO PIN is locked: the token cannot be initialised with it.")
            if self.reinit and not self.current.text():
                out.append("Type the current SO PIN.")
        elif not self.current.text():
            out.append("Type the current " + ("PIN." if self.action == "change" else "SO PIN."))
        if self.final_try_needed and not self.final_try.isChecked():
            out.append("One try is left: tick the box to try anyway.")
        if self.reinit:
            return out
        new = self.new.text()
        if new:
            try:
                check_new_pin(Secret(new, "dialog"), self.info, so=so_new)
            except E.CertDeskError as err:
                out.append(err.message)
        else:
            out.append("Type the new PIN.")
        if new and self.repeat.text() != new:
            out.append("The two new PINs differ.")
        return out

    @Slot()
    def _check(self) -> None:
        problems = self.problems()
        self.ok_button.setEnabled(not problems and not self.progress.isVisible())
        self.message.setText(f"<span style='color:{style.state_hex('muted')}'>{html.escape(problems[0])}</span>"
                             if problems else "")

    # ------------------------------------------------------------------ submit

    @Slot()
    def submit(self) -> None:
        if self.problems():
            return
        current = Secret(self.current.text(), "dialog")
        new = current if self.reinit else Secret(self.new.text(), "dialog")
        allow = self.final_try_needed and self.final_try.isChecked()
        label, confirm = self.label.text().strip(), self.confirm.text() or None
        for w in (self.current, self.new, self.repeat):
            w.setText("")  # the PINs go to the worker once; no copy stays in the fields
        self.progress.setVisible(True)
        self.ok_button.setEnabled(False)
        if self.action == "init":
            module, slot_id = self.module, self.slot_id

            def init() -> tuple[TokenRef, str]:
                return self.service.init_token(module, slot_id, so_pin=new, label=label, confirm=confirm,
                                               allow_final_try=allow)

            self.ctx.jobs.watch(self.ctx.tasks.submit(init), self._on_done, f"initialise the token in slot {slot_id}",
                                command=f"pkcs11-tool --module {module} --slot {slot_id} --init-token --label "
                                        f"'{label}' --so-pin env:SO_PIN", owner=self)
            return
        ref = self.ref
        assert ref is not None
        if self.action == "unblock":
            future = self.service.set_user_pin(ref, so_pin=current, new_pin=new, allow_final_try=allow)
            command = (f"pkcs11-tool --module {ref.module} --token-label '{ref.label}' --login --login-type so "
                       "--so-pin env:SO_PIN --init-pin --new-pin env:NEW_PIN")
        else:
            so = self.action == "change-so"
            future = self.service.change_pin(ref, old=current, new=new, so=so, allow_final_try=allow)
            command = (f"pkcs11-tool --module {ref.module} --token-label '{ref.label}' --login "
                       + ("--login-type so --so-pin env:SO_PIN" if so else "--pin env:PIN")
                       + " --change-pin --new-pin env:NEW_PIN")
        self.ctx.jobs.watch(future, self._on_done, TITLES[self.action].lower(), command=command, owner=self)

    def _on_done(self, outcome: Outcome[Any]) -> None:
        self.progress.setVisible(False)
        self.attempted.emit()
        if outcome.error is not None:
            self._check()  # the fields were emptied: OK stays off until they are typed again
            self.message.setText(f"<span style='color:{style.state_hex('error')}'>"
                                 f"{html.escape(str(outcome.error))}</span>")
            return
        words = {
            "init": "Initialised the token. Next: set its user PIN (Unblock PIN…).",
            "change": "Changed the PIN.",
            "unblock": "Set a new user PIN.",
            "change-so": "Changed the SO PIN.",
        }[self.action]
        value = outcome.value
        notice = value[1] if isinstance(value, tuple) else getattr(value, "notice", "")
        self.succeeded.emit(f"{words} {notice}".strip())
        self.accept()
