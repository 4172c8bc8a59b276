"""Desktop notifications (the freedesktop.org Notifications service on the session bus), Qt-free.

One thread of its own owns a D-Bus connection (jeepney): it sends the notifications it is
given and listens for the user's click on one of their buttons (``ActionInvoked``), which
it hands to a callback on that thread. Without a session bus or a notification service,
notifications are dropped with a log line: the status bar says the same thing.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

SERVICE = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"


@dataclass(frozen=True)
class Notification:
    """What to show; ``tag`` comes back to the callback when one of ``actions`` is clicked."""

    summary: str
    body: str
    tag: str
    actions: tuple[tuple[str, str], ...] = ()  # (key, label)
    icon: str = "dialog-warning"


class DesktopNotifier:
    """Args:
        on_action: ``on_action(tag, key)`` runs on the notifier's thread when a button is clicked.
        address: The D-Bus address (default: the session bus of the environment).
    """

    def __init__(self, on_action: Callable[[str, str], None], address: str | None = None,
                 app_name: str = "cert-desk") -> None:
        self._on_action = on_action
        self._address = address
        self._app_name = app_name
        self._requests: queue.SimpleQueue[Notification | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.available: bool | None = None  # unknown until the first notification
        self.sent: list[int] = []

    def notify(self, note: Notification) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="notifications", daemon=True)
                self._thread.start()
        self._requests.put(note)

    def _send(self, conn: Any, target: Any, note: Notification, tags: dict[int, str], new_method_call: Any) -> None:
        actions: list[str] = []
        for key, label in note.actions:
            actions += [key, label]
        msg = new_method_call(target, "Notify", "susssasa{sv}i",
                              (self._app_name, 0, note.icon, note.summary, note.body, actions, {}, -1))
        try:
            reply = conn.send_and_get_reply(msg, timeout=5)
            (nid,) = reply.body
        except Exception as e:  # no notification service on the bus
            self.available = False
            log.info("desktop notification not shown: %s", e)
            return
        tags[int(nid)] = note.tag
        self.sent.append(int(nid))
        self.available = True

    def close(self, timeout: float = 2.0) -> None:
        self._requests.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            from jeepney import DBusAddress, MatchRule, new_method_call
            from jeepney.bus_messages import message_bus
            from jeepney.io.blocking import Proxy, open_dbus_connection
        except ImportError:
            self.available = False
            log.info("no jeepney: desktop notifications are off")
            return
        try:
            conn = open_dbus_connection(self._address or "SESSION")
        except Exception as e:  # no session bus: a headless machine, a bare X server
            self.available = False
            log.info("no D-Bus session bus (%s): desktop notifications are off", e)
            return
        tags: dict[int, str] = {}
        rule = MatchRule(type="signal", interface=SERVICE, member="ActionInvoked", path=PATH)
        try:
            Proxy(message_bus, conn).AddMatch(rule)
            target = DBusAddress(PATH, bus_name=SERVICE, interface=SERVICE)
            with conn.filter(rule) as signals:
                while True:
                    while True:  # send what is queued
                        try:
                            note = self._requests.get_nowait()
                        except queue.Empty:
                            break
                        if note is None:
                            return
                        self._send(conn, target, note, tags, new_method_call)
                    try:  # then listen a moment for a click
                        signal = conn.recv_until_filtered(signals, timeout=0.2)
                    except TimeoutError:
                        continue
                    nid, key = signal.body
                    tag = tags.get(int(nid))
                    if tag is not None:
                        try:
                            self._on_action(tag, str(key))
                        except Exception:
                            log.exception("notification action callback failed")
        finally:
            conn.close()
