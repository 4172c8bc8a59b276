"""Expiry watch: certificates that expire soon are announced when their token appears,
in the status bar and as a desktop notification, each with a way to the certificate."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from pytestqt.qtbot import QtBot

from cert_desk.models import TokenSelector
from cert_desk.notify import DesktopNotifier, Notification
from cert_desk.pkcs11.keygen import KeySpec, generate_key_pair, public_key_of, write_certificate
from cert_desk.pkcs11.module import LoadedModule
from cert_desk.secrets import Secret
from cert_desk.services.tokens import TokenService
from cert_desk.ui.app import make_context
from cert_desk.ui.main_window import MainWindow
from cert_desk.x509 import ca as local_ca
from tests.conftest import USER_PIN, SoftHsm, require_tool, wait_for


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@pytest.fixture
def expiring_token(softhsm: SoftHsm, token: str, service: TokenService) -> str:
    """A key pair whose certificate ends in 10 days, and one whose certificate ends in a year."""
    ca_key, ca_cert = local_ca.make_root(_name("Expiry CA"))
    now = datetime.now(UTC)

    def fill(m: LoadedModule) -> None:
        ref = m.resolve(TokenSelector(label=token))
        m.login(ref, Secret(USER_PIN, "test"))
        s = m.pkcs11_session(ref)
        for label, obj_id, days in (("soon", b"\x01", 10), ("later", b"\x02", 365)):
            pub, _ = generate_key_pair(s, KeySpec.parse("ec:prime256v1"), label=label, obj_id=obj_id)
            cert = local_ca.issue(ca_key, ca_cert, public_key_of(pub), _name(f"{label} user"),
                                  not_before=now - timedelta(days=300), not_after=now + timedelta(days=days))
            write_certificate(s, cert, label=label, obj_id=obj_id)
        m.logout(ref)

    service.run(softhsm.module, fill, "fill").result()
    return token


def test_expiring_certificate_is_announced_with_a_way_to_it(qtbot: QtBot, expiring_token: str,
                                                            service: TokenService, isolated_home: Path) -> None:
    from PySide6.QtCore import QSettings

    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(isolated_home / ".config"))
    ctx = make_context(service)
    window = MainWindow(ctx)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(window.expiry_button.isVisible, timeout=20000)
    text = window.expiry_label.text()
    assert "soon user: expires in 9 days" in text or "soon user: expires in 10 days" in text
    assert "later user" not in text
    window.expiry_button.click()
    pane = window.objects
    qtbot.waitUntil(lambda: pane.model.listing is not None and pane._current is not None, timeout=20000)
    assert window.stack.currentWidget() is pane
    current = pane._current
    assert current is not None and current.certificate is not None
    assert current.certificate.subject_cn == "soon user"
    assert "in 9 days" in pane.details.toPlainText() or "in 10 days" in pane.details.toPlainText()
    window.close()
    ctx.jobs.close()
    ctx.tasks.shutdown()


class FakeNotificationDaemon:
    """A stand-in for the desktop's notification daemon on a real D-Bus session bus (the tests
    have no desktop): it answers Notify, records it, and can press a notification's button."""

    def __init__(self, address: str) -> None:
        from jeepney.io.blocking import open_dbus_connection

        self.conn = open_dbus_connection(address)
        self.calls: list[tuple[object, ...]] = []
        self._stop = threading.Event()
        from jeepney.bus_messages import message_bus

        reply = self.conn.send_and_get_reply(message_bus.RequestName("org.freedesktop.Notifications"))
        assert reply.body[0] == 1  # primary owner
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        from jeepney import HeaderFields, new_method_return

        while not self._stop.is_set():
            try:
                msg = self.conn.receive(timeout=0.2)
            except TimeoutError:
                continue
            if msg.header.fields.get(HeaderFields.member) == "Notify":
                self.calls.append(tuple(msg.body))
                self.conn.send(new_method_return(msg, "u", (41,)))

    def press(self, nid: int, key: str) -> None:
        from jeepney import DBusAddress, new_signal

        emitter = DBusAddress("/org/freedesktop/Notifications", interface="org.freedesktop.Notifications")
        self.conn.send(new_signal(emitter, "ActionInvoked", "us", (nid, key)))

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.conn.close()


@pytest.fixture
def session_bus(tmp_path: Path) -> Iterator[str]:
    require_tool("dbus-daemon")
    proc = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    address = proc.stdout.readline().strip()
    try:
        yield address
    finally:
        proc.terminate()
        proc.wait(5)


def test_desktop_notification_and_its_button(session_bus: str) -> None:
    daemon = FakeNotificationDaemon(session_bus)
    clicks: list[tuple[str, str]] = []
    notifier = DesktopNotifier(lambda tag, key: clicks.append((tag, key)), session_bus)
    try:
        notifier.notify(Notification("1 certificate on 'x' expires soon", "Alice: expires in 3 days", "tag-1",
                                     (("show", "Show certificate"),)))
        wait_for(lambda: bool(daemon.calls) and notifier.sent == [41], 5, "the Notify call")
        app, _replaces, _icon, summary, _body, actions, _hints, _timeout = daemon.calls[0]
        assert app == "cert-desk" and summary.startswith("1 certificate") and actions == ["show", "Show certificate"]
        daemon.press(41, "show")
        wait_for(lambda: clicks == [("tag-1", "show")], 5, "the button press")
        daemon.press(99, "show")  # somebody else's notification: ignored
        time.sleep(0.5)
        assert clicks == [("tag-1", "show")]
    finally:
        notifier.close()
        daemon.close()


def test_no_session_bus_means_no_notification_and_no_error(tmp_path: Path) -> None:
    notifier = DesktopNotifier(lambda tag, key: None, f"unix:path={tmp_path / 'nothing'}")
    notifier.notify(Notification("s", "b", "t"))
    wait_for(lambda: notifier.available is False, 5, "the notifier to give up")
    notifier.close()
