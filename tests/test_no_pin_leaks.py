"""A PIN never reaches a process's argv, a log line, an error message, the output, the Activity
panel or a settings file.

Every operation that takes a PIN runs here, through the CLI and the GUI, with distinctive PIN
values, while a sampler thread reads ``/proc/*/cmdline`` of every process on the machine every
few milliseconds (the tools cert-desk starts: certutil, tstclnt, ...). Afterwards the log file,
every file under the test home (settings, QSettings, NSS databases, cert-desk's state) and every
captured output are searched for the values.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from cert_desk.ui.admin_dialog import AdminDialog
from cert_desk.ui.main_window import MainWindow
from tests.conftest import Cli, CliResult, SoftHsm
from tests.keyring_bed import KeyringBed, keyring_bed  # noqa: F401
from tests.test_admin import _free_slot_id
from tests.test_gui import TIMEOUT, ctx, idle, private_qsettings, window  # noqa: F401
from tests.test_nss_cli import browsers  # noqa: F401
from tests.test_schsm import StandIn, stand_in  # noqa: F401
from tests.tls_server import make_test_pki, nss, put_client_certificate, tls_server

PIN = "471147"  # the token's PIN for this test: distinctive, so any copy of it is found
WRONG = "902209"
SO = "58315831"
NEW = "663366"
PASSPHRASE = "ca-pass-77123"
HSM_SO = "5A315C3D5E6F7081"  # a SmartCard-HSM SO PIN (16 hex digits), for the sc-hsm-tool stand-in
SECRETS = (PIN, WRONG, SO, NEW, PASSPHRASE, HSM_SO)


class ArgvSampler:
    """Reads every process's command line, over and over, while the operations run."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.seen: set[str] = set()
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="argv-sampler", daemon=True)

    def _run(self) -> None:
        needles = [s.encode() for s in SECRETS]
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                        argv = fh.read()
                except OSError:
                    continue  # gone meanwhile
                if not argv:
                    continue
                for part in argv.split(b"\0")[:2]:  # a script's own name is its interpreter's first argument
                    self.seen.add(os.path.basename(part).decode(errors="replace"))
                if any(n in argv for n in needles):
                    self.hits.append(argv.replace(b"\0", b" ").decode(errors="replace"))
            self.rounds += 1
            time.sleep(0.002)

    def __enter__(self) -> ArgvSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def sampler() -> Iterator[ArgvSampler]:
    with ArgvSampler() as s:
        yield s
    assert s.rounds > 10


def _clean(r: CliResult) -> CliResult:
    for secret in SECRETS:
        assert secret not in r.stdout and secret not in r.stderr, (secret, r)
    return r


def _all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def _assert_files_clean(root: Path) -> None:
    for f in _all_files(root):  # the PIN files this test wrote are outside the home
        data = f.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in data, (secret, f)


def test_cli_operations_leak_no_secret(cli: Cli, softhsm: SoftHsm, isolated_home: Path, tmp_path: Path,
                                       keyring_bed: KeyringBed, browsers: tuple[Path, Path], stand_in: StandIn,
                                       monkeypatch: pytest.MonkeyPatch, sampler: ArgvSampler) -> None:
    token = "leaks"
    monkeypatch.delenv("CERT_DESK_PIN")  # the stand-in's fixture sets one, to prove the tool never sees it
    softhsm.init_token(token, pin=PIN, so_pin=SO)
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    pin_file = secrets_dir / "pin"
    pin_file.write_text(PIN + "\n")
    passphrase = secrets_dir / "passphrase"
    passphrase.write_text(PASSPHRASE + "\n")
    sel = ("--module", softhsm.module, "--token", token)
    env = {"CERT_DESK_PIN": PIN}
    ok, bad = 0, 1

    runs: list[tuple[int, CliResult]] = [
        (ok, cli("-vv", "objects", *sel, "--login", env=env)),
        (ok, cli("-vv", "objects", *sel, "--login", "--pin-file", str(pin_file), "--json")),
        (bad, cli("-vv", "objects", *sel, "--login", env={"CERT_DESK_PIN": WRONG})),
        (bad, cli("-vv", "objects", *sel, "--login", "--json", env={"CERT_DESK_PIN": "12"})),
        (ok, cli("-vv", "keygen", *sel, "--login", "--type", "ec:prime256v1", "--label", "alice", "--id", "01",
                 env=env)),
        (ok, cli("-vv", "csr", *sel, "--login", "--id", "01", "--subject", "/CN=Alice", "--out",
                 str(tmp_path / "alice.csr"), env=env)),
        (ok, cli("-vv", "ca", "init", "--dir", str(tmp_path / "ca"), "--subject", "/CN=Leak CA", "--passphrase-file",
                 str(passphrase))),
        (ok, cli("-vv", "ca", "sign", "--ca-cert", str(tmp_path / "ca" / "ca.crt"), "--ca-key",
                 str(tmp_path / "ca" / "ca.key"), "--in", str(tmp_path / "alice.csr"), "--out",
                 str(tmp_path / "alice.pem"), "--passphrase-file", str(passphrase))),
        (ok, cli("-vv", "import", *sel, "--login", "--in", str(tmp_path / "alice.pem"), env=env)),
        (ok, cli("-vv", "openssl-config", *sel, "--login", "--id", "01", "--out", str(tmp_path / "engine.cnf"),
                 env=env)),
        (ok, cli("-vv", "pin", "remember", *sel, env=env)),
        (ok, cli("-vv", "objects", *sel, "--login")),  # the remembered PIN
        (ok, cli("-vv", "pin", "change", *sel, env={"CERT_DESK_PIN": PIN, "CERT_DESK_NEW_PIN": NEW})),
        (bad, cli("-vv", "pin", "change", *sel, env={"CERT_DESK_PIN": WRONG, "CERT_DESK_NEW_PIN": PIN})),
        (ok, cli("-vv", "pin", "unblock", *sel, env={"CERT_DESK_SO_PIN": SO, "CERT_DESK_NEW_PIN": PIN})),
        (ok, cli("-vv", "pin", "change-so", *sel, env={"CERT_DESK_SO_PIN": SO, "CERT_DESK_NEW_PIN": NEW})),
        (ok, cli("-vv", "pin", "change-so", *sel, env={"CERT_DESK_SO_PIN": NEW, "CERT_DESK_NEW_PIN": SO})),
        (ok, cli("-vv", "token", "init", "--module", softhsm.module, "--slot", str(_free_slot_id(softhsm)),
                 "--label", "second", env={"CERT_DESK_SO_PIN": SO})),
        (ok, cli("-vv", "pin", "unblock", "--module", softhsm.module, "--token", "second",
                 env={"CERT_DESK_SO_PIN": SO, "CERT_DESK_NEW_PIN": NEW})),
        (ok, cli("-vv", "delete", *sel, "--login", "--id", "01", "--yes", env=env)),
    ]

    # a TLS login through NSS: cert-desk runs certutil and tstclnt with the PIN
    chrome = browsers[0]
    pki = make_test_pki(tmp_path / "pki")
    put_client_certificate(softhsm, pki, "bob", "02", "EC:prime256v1", "bob via nss", pin=PIN, token=token)
    runs.append((ok, cli("nss", "add", "--db", f"sql:{chrome}", "--name", "Leak HSM", "--module", softhsm.module,
                         "--create")))
    nss("certutil", "-A", "-n", "test CA", "-t", "C,,", "-d", f"sql:{chrome}", "-a", "-i", str(pki.ca_pem))
    with tls_server(pki) as (url, _log):
        runs.append((ok, cli("-vv", "nss", "test", "--db", f"sql:{chrome}", "--url", url, "--nickname",
                             f"{token}:bob", env=env)))
        runs.append((bad, cli("-vv", "nss", "test", "--db", f"sql:{chrome}", "--url", url, "--nickname",
                              f"{token}:bob", env={"CERT_DESK_PIN": WRONG})))

    # a SmartCard-HSM through sc-hsm-tool (its STAND-IN: no device here), secrets typed at its prompts
    monkeypatch.setenv("CERT_DESK_SC_HSM_TOOL", stand_in.tool)
    stand_in.card(so_pin=HSM_SO, user_pin=PIN, keys=[1], dkek={"shares": 1, "outstanding": 1, "kcv": None})
    share = tmp_path / "share.pbe"
    hsm_env = {"CERT_DESK_SHARE_PASSWORD": PASSPHRASE, "CERT_DESK_PIN": PIN, "CERT_DESK_SO_PIN": HSM_SO}
    runs += [
        (ok, cli("-vv", "schsm", "create-share", "--out", str(share), env=hsm_env)),
        (ok, cli("-vv", "schsm", "import-share", "--share", str(share), env=hsm_env)),
        (ok, cli("-vv", "schsm", "wrap", "--key-ref", "1", "--out", str(tmp_path / "k.wky"), env=hsm_env)),
        (bad, cli("-vv", "schsm", "wrap", "--key-ref", "1", "--out", str(tmp_path / "k2.wky"),
                  env={**hsm_env, "CERT_DESK_PIN": WRONG})),
        (ok, cli("-vv", "schsm", "init", "--confirm", "ERASE", "--dkek-shares", "1", env=hsm_env)),
    ]
    assert [t["typed"] for t in stand_in.typed()][:3] == [PASSPHRASE, PASSPHRASE, PASSPHRASE]

    for i, (want, r) in enumerate(runs):
        assert (r.returncode == 0) == (want == ok), (i, r)
        _clean(r)
    assert {"certutil", "tstclnt", "fake-sc-hsm-tool"} <= sampler.seen, "the sampler must have seen the tools"
    assert not sampler.hits, sampler.hits
    log = Path(os.environ["XDG_STATE_HOME"]) / "cert-desk" / "cert-desk.log"
    text = log.read_text()
    assert "logged in to" in text and "changed the PIN" in text and "remembered the PIN" in text
    _assert_files_clean(isolated_home)


def test_gui_operations_leak_no_secret(qtbot: QtBot, window: MainWindow, softhsm: SoftHsm, isolated_home: Path,
                                       keyring_bed: KeyringBed, sampler: ArgvSampler) -> None:
    token = "gui leaks"
    softhsm.init_token(token, pin=PIN, so_pin=SO)
    window.devices.reload()
    qtbot.waitUntil(lambda: window.devices.select_token(token), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: window.objects.model.listing is not None
                    and window.objects.model.listing.token.label == token, timeout=TIMEOUT)
    idle(qtbot, window)
    pane = window.objects
    errors: list[str] = []

    pane.login_button.click()
    qtbot.waitUntil(lambda: pane.dialog is not None and pane.dialog.isVisible(), timeout=TIMEOUT)
    dialog = pane.dialog
    assert dialog is not None
    qtbot.keyClicks(dialog.pin, WRONG)
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Wrong PIN" in dialog.message.text(), timeout=TIMEOUT)
    errors.append(dialog.message.text())
    dialog.remember.setChecked(True)
    qtbot.keyClicks(dialog.pin, PIN)
    shot = dialog.grab().toImage()  # what a screenshot of the dialog holds: dots, not digits
    assert shot.width() > 0 and dialog.pin.displayText() != PIN
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: pane.logged_in, timeout=TIMEOUT)
    idle(qtbot, window)

    for action, current, new in (("change", PIN, NEW), ("unblock", SO, PIN), ("change-so", SO, NEW)):
        qtbot.waitUntil(lambda: window.devices.select_token(token), timeout=TIMEOUT)
        idle(qtbot, window)
        window.devices.administer(action)
        admin = window.devices.admin_dialog
        assert isinstance(admin, AdminDialog)
        qtbot.keyClicks(admin.current, WRONG if action == "change" else current)
        qtbot.keyClicks(admin.new, new)
        qtbot.keyClicks(admin.repeat, new)
        if action == "change":  # a wrong current PIN first: its error message is checked too
            qtbot.mouseClick(admin.ok_button, Qt.MouseButton.LeftButton)
            qtbot.waitUntil(lambda a=admin: "Wrong PIN" in a.message.text(), timeout=TIMEOUT)
            errors.append(admin.message.text())
            qtbot.keyClicks(admin.current, current)
            qtbot.keyClicks(admin.new, new)
            qtbot.keyClicks(admin.repeat, new)
        qtbot.mouseClick(admin.ok_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda a=admin: not a.isVisible(), timeout=TIMEOUT)
        idle(qtbot, window)
        errors.append(window.devices.banner.text())
    slot = _free_slot_id(softhsm)  # and a token initialised from the window
    window.devices.reload()
    idle(qtbot, window)
    qtbot.waitUntil(lambda: window.devices.select_slot(softhsm.module, slot), timeout=TIMEOUT)
    window.devices.administer("init")
    init = window.devices.admin_dialog
    assert isinstance(init, AdminDialog)
    qtbot.keyClicks(init.label, "gui second")
    qtbot.keyClicks(init.new, SO)
    qtbot.keyClicks(init.repeat, SO)
    qtbot.mouseClick(init.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not init.isVisible(), timeout=TIMEOUT)
    idle(qtbot, window)
    errors.append(window.devices.banner.text())
    window.close()  # writes the window settings

    records = window.activity.model.records()
    assert any("--change-pin" in (r.command or "") for r in records)
    for secret in SECRETS:
        assert not any(secret in (r.command or "") or secret in r.description or secret in r.message
                       for r in records), secret
        assert not any(secret in e for e in errors), secret
    assert not sampler.hits, sampler.hits
    _assert_files_clean(isolated_home)
