#!/usr/bin/env python3
"""Take the README's screenshots: every pane, the PIN dialog, the browser view, a dark palette.

Runs the real window against the demo token, in a temporary HOME (the demo token is made
there), and writes PNGs to docs/screenshots/. For the Devices pane it also stands up the test
suite's PC/SC bed (tests/pcsc_bed.py: a private pcscd with vsmartcard's virtual reader, vicc's
card and jcecard's OpenPGP card, which OpenSC makes tokens of), so the picture shows readers,
their cards and a token. Run it under Xvfb:

    xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python tools/screenshots.py

(``QT_QPA_PLATFORM=offscreen`` works too, with the same pictures.)
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "docs" / "screenshots"


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="cert-desk-shots-"))
    os.environ.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
                       "XDG_DATA_HOME": str(home / ".local/share"), "XDG_STATE_HOME": str(home / ".local/state")})
    scheme = os.environ.get("CERT_DESK_COLOR_SCHEME", "")
    from PySide6.QtCore import QSettings, Qt
    from PySide6.QtWidgets import QApplication

    from cert_desk import demo
    from cert_desk.ui.app import apply_color_scheme, make_context
    from cert_desk.ui.main_window import MainWindow

    bed = _reader_bed(home)
    app = QApplication(sys.argv[:1])
    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(home / ".config"))
    apply_color_scheme(app)
    demo.activate()
    ctx = make_context()
    window = MainWindow(ctx)
    window.resize(1280, 820)
    window.show()
    OUT.mkdir(parents=True, exist_ok=True)
    suffix = f"-{scheme}" if scheme else ""

    def wait(cond: object, ms: int = 30000) -> None:
        import time

        end = time.monotonic() + ms / 1000
        while not cond() and time.monotonic() < end:  # type: ignore[operator]
            app.processEvents()
            time.sleep(0.01)
        for _ in range(20):
            app.processEvents()

    def shot(widget: object, name: str) -> None:
        for _ in range(10):
            app.processEvents()
        path = OUT / f"{name}{suffix}.png"
        widget.grab().save(str(path))  # type: ignore[attr-defined]
        print(path)

    window.devices.open_demo()
    pane = window.objects
    wait(lambda: pane.model.rowCount() == 3)
    wait(lambda: ctx.jobs.pending() == 0)
    if scheme:
        shot(window, "objects")
        window.close()
        ctx.shutdown()
        return 0

    window.show_pane("Devices")
    if bed is not None:
        rows = window.devices.readers.rows
        wait(lambda: len(rows()) == 2 and all("slot" in r[4] for r in rows()))
        window.devices.select_token("OpenPGP card (User PIN)")
    else:
        window.devices.select_token(demo.DEMO_LABEL)
    wait(lambda: ctx.jobs.pending() == 0)
    shot(window, "devices")
    if bed is not None:  # back to the demo token for the other pictures
        window.devices.select_token(demo.DEMO_LABEL)
        wait(lambda: pane.model.listing is not None and pane.model.listing.token.label == demo.DEMO_LABEL)
        wait(lambda: ctx.jobs.pending() == 0)

    window.show_pane("Objects")
    pane.login_button.click()
    wait(lambda: pane.dialog is not None and pane.dialog.isVisible())
    dialog = pane.dialog
    assert dialog is not None
    dialog.pin.setText(demo.DEMO_USER_PIN)  # masked in the picture
    shot(dialog, "pin-dialog")
    dialog.ok_button.click()
    wait(lambda: pane.logged_in and pane.dialog is None)
    wait(lambda: ctx.jobs.pending() == 0)
    window.activity.setVisible(True)
    pane.tree.setCurrentIndex(pane.model.index(0, 0))
    model = pane.model
    for r in range(model.rowCount()):
        if model.data(model.index(r, 1)) == "demo-rsa":
            pane.tree.setCurrentIndex(model.index(r, 0))
    shot(window, "objects")
    window.activity.setVisible(False)

    pane.browser_button.click()
    pane.browser.selectRow(0)
    shot(window, "browser-view")
    pane.browser_button.click()

    _lifecycle_shots(window, ctx, home, wait, shot)
    _browsers_shot(window, home, wait, shot)
    _admin_shots(window, ctx, home, wait, shot)
    window.show_pane("Objects")
    window.close()
    ctx.shutdown()
    if bed is not None:
        bed.stop_pcscd()
    del Qt
    return 0


def _lifecycle_shots(window: object, ctx: object, home: Path, wait: object, shot: object) -> None:
    """Keys and Certificates panes, the request dialog, the local CA dialog and the renewal wizard."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from cert_desk.x509.ca import init_ca

    w = window
    w.show_pane("Keys")  # type: ignore[attr-defined]
    keys = w.keys  # type: ignore[attr-defined]
    wait(lambda: keys.type_combo.count() > 0)  # type: ignore[operator]
    keys.table.setCurrentItem(keys.table.topLevelItem(0))
    keys.run_doctor()
    wait(lambda: keys.report is not None)  # type: ignore[operator]
    keys.label_edit.setText("alice-2026")
    shot(w, "keys")  # type: ignore[operator]

    w.show_pane("Certificates")  # type: ignore[attr-defined]
    certs = w.certificates  # type: ignore[attr-defined]
    wait(lambda: certs.table.topLevelItemCount() > 0)  # type: ignore[operator]
    certs.table.setCurrentItem(certs.table.topLevelItem(0))
    shot(w, "certificates")  # type: ignore[operator]

    ca = init_ca(home / "ca", x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
                                         x509.NameAttribute(NameOID.COMMON_NAME, "Example CA")]),
                 passphrase=b"demo passphrase")
    key = next(o for o in certs.listing.objects if o.class_name == "private_key" and o.label == "demo-ec")
    dialog = certs.new_request(key)
    for attr, value in (("C", "GB"), ("O", "Example Ltd"), ("CN", "Jane Doe"), ("emailAddress", "jane@example.org")):
        dialog.editor.edits[attr].setText(value)
    dialog.editor.sans.setPlainText("email:jane@example.org")
    dialog.make_button.click()
    wait(lambda: dialog.csr is not None)  # type: ignore[operator]
    shot(dialog, "csr-dialog")  # type: ignore[operator]
    dialog.sign()
    sign = dialog.sign_dialog
    sign.ca_cert.setText(ca.cert)
    sign.ca_key.setText(ca.key)
    sign.passphrase.setText("demo passphrase")
    sign.sign_button.click()
    wait(lambda: sign.certificate is not None)  # type: ignore[operator]
    shot(sign, "sign-dialog")  # type: ignore[operator]
    sign.reject()
    dialog.reject()

    w.renew(certs.selected().obj)  # type: ignore[attr-defined]
    wizard = w.dialog  # type: ignore[attr-defined]
    wizard.next()
    wait(lambda: wizard.key.type_combo.count() > 0)  # type: ignore[operator]
    wizard.next()
    shot(wizard, "renew-wizard")  # type: ignore[operator]
    wizard.reject()


def _browsers_shot(window: object, home: Path, wait: object, shot: object) -> None:
    """A Firefox profile and Chrome's database in the picture's home, the demo module in Firefox's."""
    import subprocess

    from cert_desk import demo

    profile = home / ".mozilla" / "firefox" / "k3x9w2.default-release"
    profile.mkdir(parents=True)
    (home / ".mozilla" / "firefox" / "profiles.ini").write_text(
        "[Profile0]\nName=default-release\nIsRelative=1\nPath=k3x9w2.default-release\nDefault=1\n")
    subprocess.run(["certutil", "-N", "-d", f"sql:{profile}", "--empty-password"], check=True,
                   stdin=subprocess.DEVNULL, capture_output=True)
    pane = window.browsers  # type: ignore[attr-defined]
    pane.service.add(pane.service.scan().result()[1].db, "cert-desk demo", demo.module_path()).result()
    window.show_pane("Browsers")  # type: ignore[attr-defined]
    wait(lambda: pane.table.topLevelItemCount() >= 2 and pane.states and pane.states[-1].registered)  # type: ignore[operator]
    pane.table.setCurrentItem(pane.table.topLevelItem(1))
    pane.url.setText("https://intranet.example.org/")
    shot(window, "browsers")  # type: ignore[operator]


def _admin_shots(window: object, ctx: object, home: Path, wait: object, shot: object) -> None:
    """The change-PIN dialog checking as it is typed; the SmartCard-HSM dialog, run against the test
    suite's STAND-IN for sc-hsm-tool (no SmartCard-HSM is attached where the pictures are made)."""
    import json
    import shutil

    from cert_desk import demo
    from cert_desk.ui.schsm_dialog import ScHsmDialog

    w: Any = window
    w.show_pane("Devices")
    w.devices.select_token(demo.DEMO_LABEL)
    wait(lambda: ctx.jobs.pending() == 0)  # type: ignore[attr-defined, operator]
    w.devices.administer("change")
    dialog = w.devices.admin_dialog
    dialog.current.setText(demo.DEMO_USER_PIN)
    dialog.new.setText("2468")
    dialog.repeat.setText("24")
    shot(dialog, "admin-dialog")  # type: ignore[operator]
    dialog.reject()

    data = ROOT / "tests" / "data" / "sc-hsm-tool"
    tool = home / "bin" / "fake-sc-hsm-tool"
    tool.parent.mkdir(exist_ok=True)
    shutil.copy2(data / "fake-sc-hsm-tool", tool)
    card = home / "card.json"
    card.write_text(json.dumps({"so_pin": "3537363231383830", "user_pin": "648219", "keys": [1], "echo_off_delay": 0,
                                "dkek": {"shares": 1, "outstanding": 0, "kcv": "A7C3B1F09E44D215"}}))
    os.environ["CERT_DESK_SC_HSM_TOOL"] = str(tool)
    os.environ["FAKE_SC_HSM_TOOL_CARD"] = str(card)
    hsm = ScHsmDialog(ctx, 0, "Nitrokey Nitrokey HSM (DENK01234560000) 00 00", "UserPIN (SmartCard-HSM)",  # type: ignore[arg-type]
                      parent=w)
    hsm.show()
    wait(lambda: "check value" in hsm.status.text())  # type: ignore[operator]
    shot(hsm, "schsm-dialog")  # type: ignore[operator]
    hsm.close()


def _reader_bed(home: Path) -> object | None:
    """The PC/SC bed with vicc in reader 0 and jcecard (with an RSA key) in reader 1, or None."""
    import subprocess
    import time

    from tests.pcsc_bed import PcscBed, missing_parts

    missing = missing_parts()
    if missing:
        print("no virtual reader in the Devices picture; missing:", ", ".join(missing), file=sys.stderr)
        return None
    root = home / "pcsc"
    os.environ["PCSCLITE_CSOCK_NAME"] = str(root / "run" / "pcscd.comm")
    os.environ["OPENSC_CONF"] = str(root / "opensc.conf")
    bed = PcscBed(root)
    bed.start_pcscd()
    bed.start_vicc()
    bed.start_jcecard(root / "jcecard")
    env = dict(os.environ, PGP_ADMIN="12345678")
    for _ in range(30):
        proc = subprocess.run(["openpgp-tool", "--reader", "1", "--verify", "CHV3", "--pin", "env:PGP_ADMIN",
                               "--gen-key", "3", "--key-type", "rsa2048"], capture_output=True, env=env,
                              timeout=120, check=False)
        if proc.returncode == 0:
            return bed
        time.sleep(0.5)
    print("jcecard did not take a key:", proc.stderr.decode(errors="replace"), file=sys.stderr)
    return bed


if __name__ == "__main__":
    sys.exit(main())
