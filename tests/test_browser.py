"""A real browser logs in with the token's key: Chromium, headful under Xvfb, answered by xdotool.

What a user does: Chromium's NSS database (``~/.pki/nssdb``) has the token's PKCS#11 module and
trusts the server's CA; Chromium opens an https page whose server demands a client certificate,
asks "Please unlock TOKEN ..." (window "Unlock Security Device"), and then offers the token's
certificate in its chooser. xdotool types the PIN (read from its standard input, never from argv)
and presses Enter in the chooser; ``openssl s_server`` logs which certificate it got.

Headless Chromium cannot be used: it waits for the PIN forever. Chromium asks the PIN of every
token that needs a login, so the database holds one token. Every wait is bounded; a step that
times out leaves a screenshot of the screen in the test's directory and names it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from cert_desk.nss.tls import parse_url, tls_login
from cert_desk.secrets import Secret
from tests.conftest import USER_PIN, SoftHsm, require_tool
from tests.tls_server import make_nss_db, make_test_pki, put_client_certificate, tls_server

CHROMIUM_FLAGS = ["--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
                  "--no-first-run", "--no-default-browser-check", "--disable-gpu", "--password-store=basic",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--lang=en-US"]
PIN_DIALOG = "^Unlock Security Device$"


def test_chromium_logs_in_with_the_token_certificate(softhsm: SoftHsm, token: str, isolated_home: Path,
                                                     tmp_path: Path) -> None:
    for tool in ("chromium", "xdotool", "Xvfb", "import"):
        require_tool(tool)
    pki = make_test_pki(tmp_path / "pki")
    cert = put_client_certificate(softhsm, pki, "browser", "b1", "EC:prime256v1", "alice in chromium")
    nssdb = isolated_home / ".pki" / "nssdb"  # where Chromium on Linux looks (it exists, so not ~/.local/share/pki)
    make_nss_db(nssdb, softhsm.module, pki.ca_pem)
    expected = "depth=0 O = cert-desk tests, CN = alice in chromium"
    assert cert.subject.rfc4514_string() == "CN=alice in chromium,O=cert-desk tests"

    with tls_server(pki) as (url, server_log), xvfb(tmp_path) as display:
        screen = Screen(display, tmp_path)
        _host, port = parse_url(url)
        with chromium(url, display, tmp_path):
            pin_window = screen.wait_for(lambda: screen.window(PIN_DIALOG), 60, "the 'Unlock Security Device' "
                                         "PIN dialog")
            screen.xdotool("windowfocus", "--sync", pin_window)
            screen.xdotool("type", "--file", "-", stdin=USER_PIN)  # the PIN goes through a pipe, not argv
            screen.xdotool("key", "Return")
            screen.wait_for(lambda: not screen.window(PIN_DIALOG), 20, "the PIN dialog to close")

            def chooser_answered() -> bool:  # Enter accepts the certificate the chooser preselects
                browser = screen.window(" - Chromium$")
                if browser:
                    screen.xdotool("windowfocus", "--sync", browser)
                    screen.xdotool("key", "Return")
                end = time.monotonic() + 3
                while time.monotonic() < end:
                    if expected in server_log.read_text(errors="replace"):
                        return True
                    time.sleep(0.1)
                return False

            screen.wait_for(chooser_answered, 30, f"the server to log '{expected}' (the certificate chooser)")
            screen.wait_for(lambda: screen.window(f"^127\\.0\\.0\\.1:{port}.* - Chromium$"), 30,
                            "the server's page in the browser")
        log = server_log.read_text(errors="replace")
        # cert-desk's own proof through the same database agrees with the browser
        proof = tls_login(f"sql:{nssdb}", "test token:browser", url, Secret(USER_PIN))
    assert expected in log
    assert "verify return:1" in log
    assert proof.ok, proof.words
    assert proof.server_saw == "O=cert-desk tests, CN=alice in chromium"


class Screen:
    """xdotool and screenshots on one X display."""

    def __init__(self, display: str, shots: Path) -> None:
        self.env = {**os.environ, "DISPLAY": display}
        self.shots = shots

    def xdotool(self, *args: str, stdin: str | None = None) -> str:
        proc = subprocess.run(["xdotool", *args], env=self.env, input=stdin, capture_output=True, text=True,
                              timeout=20, stdin=None if stdin is not None else subprocess.DEVNULL)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    def window(self, name_pattern: str) -> str:
        """The first window whose title matches (xdotool's regular expression), or ``""``."""
        found = self.xdotool("search", "--name", name_pattern)
        return found.splitlines()[0] if found else ""

    def wait_for(self, condition: Callable[[], object], seconds: float, what: str) -> str:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            value = condition()
            if value:
                return str(value)
            time.sleep(0.25)
        shot = self.shots / f"timeout-{len(list(self.shots.glob('timeout-*.png')))}.png"
        subprocess.run(["import", "-window", "root", str(shot)], env=self.env, capture_output=True, timeout=30,
                       stdin=subprocess.DEVNULL)
        raise AssertionError(f"timed out after {seconds} s waiting for {what}; the screen is in {shot}")


@contextlib.contextmanager
def xvfb(tmp_path: Path) -> Iterator[str]:
    """An Xvfb server on a free display number (it picks one and writes it to -displayfd); stopped by its PID."""
    read_end, write_end = os.pipe()
    with (tmp_path / "xvfb.log").open("wb") as log:
        proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1280x800x24", "-nolisten",
                                 "tcp"], pass_fds=(write_end,), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 20)
        number = os.read(read_end, 32).decode().strip() if ready else ""
        assert number.isdigit(), f"Xvfb did not start: {(tmp_path / 'xvfb.log').read_text(errors='replace')}"
        yield f":{number}"
    finally:
        os.close(read_end)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def chromium(url: str, display: str, tmp_path: Path) -> Iterator[None]:
    """Chromium with a fresh profile on ``display``, stopped afterwards with every process it started."""
    env = {**os.environ, "DISPLAY": display, "LANG": "C.UTF-8", "LANGUAGE": "en"}
    env.pop("WAYLAND_DISPLAY", None)
    profile = tmp_path / "chromium-profile"
    with (tmp_path / "chromium.log").open("wb") as log:
        proc = subprocess.Popen(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
                                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    try:
        yield
    finally:
        # the crash handlers' command lines name their database in the test's HOME, not the profile
        _stop(proc, (str(profile), str(Path.home() / ".config" / "chromium")))


def _stop(proc: subprocess.Popen[bytes], markers: tuple[str, ...]) -> None:
    """SIGTERM, then SIGKILL after 10 s, to the browser's process group and to the crash handlers it
    started in sessions of their own, found by ``markers`` (paths only this test uses) in their
    command lines: nothing else is touched."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        for pid in _ours(proc.pid, markers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            proc.poll()
            if not _ours(proc.pid, markers):
                return
            time.sleep(0.1)
    raise AssertionError(f"Chromium did not stop: {_ours(proc.pid, markers)}")


def _ours(group: int, markers: tuple[str, ...]) -> list[int]:
    """Running (not zombie) processes in ``group`` or with one of ``markers`` in their command line."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and (int(fields[2]) == group or any(m in cmdline for m in markers)):  # state, ppid, pgrp
            found.append(int(entry))
    return found
