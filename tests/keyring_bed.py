"""A private, real OS keyring for tests: a D-Bus session bus of its own and GNOME Keyring's
``gnome-keyring-daemon`` serving the Secret Service API on it, unlocked with a known password.

This is the same daemon a GNOME desktop runs; cert-desk reaches it through the ``keyring``
package's Secret Service backend, exactly as on a desktop. ``secret-tool`` (libsecret, the
reference client) reads back what was stored.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_tool

KEYRING_PASSWORD = "keyring-pw-5517"


@dataclass
class KeyringBed:
    address: str
    home: Path

    def lookup(self, serial: str, label: str) -> str | None:
        """What ``secret-tool`` finds for a token's remembered PIN (the reference reader)."""
        proc = subprocess.run(["secret-tool", "lookup", "service", "cert-desk", "username", f"token:{serial}:{label}"],
                              capture_output=True, text=True, timeout=20, env=self.env())
        return proc.stdout if proc.returncode == 0 and proc.stdout else None

    def all_secrets(self) -> list[str]:
        """Every secret in the default collection (to prove what is *not* stored)."""
        import secretstorage

        conn = secretstorage.dbus_init()
        try:
            collection = secretstorage.get_default_collection(conn)
            return [item.get_secret().decode("utf-8", "replace") for item in collection.get_all_items()]
        finally:
            conn.close()

    def ready(self) -> bool:
        """The login keyring exists and is unlocked: asked without creating anything, since creating a
        collection needs a prompt, which no desktop here can show."""
        import secretstorage

        conn = secretstorage.dbus_init()
        try:
            collection = secretstorage.Collection(conn, "/org/freedesktop/secrets/aliases/default")
            return not collection.is_locked()
        except secretstorage.exceptions.SecretStorageException:
            return False
        finally:
            conn.close()

    def lock(self) -> None:
        import secretstorage

        conn = secretstorage.dbus_init()
        try:
            collection = secretstorage.get_default_collection(conn)
            collection.lock()
            assert collection.is_locked()
        finally:
            conn.close()

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DBUS_SESSION_BUS_ADDRESS"] = self.address
        return env


@pytest.fixture
def keyring_bed(isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KeyringBed]:
    require_tool("dbus-daemon")
    require_tool("gnome-keyring-daemon")
    require_tool("secret-tool")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    # A bus without service activation: the system's org.freedesktop.secrets.service would otherwise
    # start a second gnome-keyring-daemon (locked, no login keyring) when the test asks before ours
    # has taken the name, and the test would wait on the wrong daemon.
    config = tmp_path / "session-bus.conf"
    config.write_text(
        "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
        " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
        f"<busconfig><type>session</type><listen>unix:dir={runtime}</listen>"
        "<policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/>"
        "<allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>\n")
    bus = subprocess.Popen(["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert bus.stdout is not None
    import select

    if not select.select([bus.stdout], [], [], 20)[0]:
        bus.kill()
        raise AssertionError("dbus-daemon printed no address")
    address = bus.stdout.readline().strip()
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
    daemon = subprocess.Popen(["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=dict(os.environ))
    assert daemon.stdin is not None
    daemon.stdin.write(KEYRING_PASSWORD.encode())
    daemon.stdin.close()
    bed = KeyringBed(address, isolated_home)
    try:
        deadline = time.monotonic() + 20
        while not bed.ready():
            assert daemon.poll() is None, "gnome-keyring-daemon exited"
            assert time.monotonic() < deadline, "gnome-keyring-daemon did not unlock its login keyring"
            time.sleep(0.05)
        yield bed
    finally:
        daemon.terminate()
        bus.terminate()
        daemon.wait(10)
        bus.wait(10)
