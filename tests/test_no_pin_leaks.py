"""A PIN never reaches a log line, an error message, the output or a settings file."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import Cli, SoftHsm

PIN = "471147"  # the token's PIN for this test: distinctive, so any copy of it is found
WRONG = "902209"


def _all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_pins_do_not_leak(cli: Cli, softhsm: SoftHsm, isolated_home: Path, tmp_path: Path) -> None:
    softhsm.init_token("leaks", pin=PIN)
    softhsm.keypair("leaks", "k", "01", pin=PIN)
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    runs = [
        cli("-vv", "objects", "--module", softhsm.module, "--token", "leaks", "--login", env={"CERT_DESK_PIN": PIN}),
        cli("-vv", "objects", "--module", softhsm.module, "--token", "leaks", "--login", "--pin-file", str(pin_file),
            "--json"),
        cli("-vv", "objects", "--module", softhsm.module, "--token", "leaks", "--login",
            env={"CERT_DESK_PIN": WRONG}),
        cli("-vv", "objects", "--module", softhsm.module, "--token", "leaks", "--login", "--json",
            env={"CERT_DESK_PIN": "12"}),
    ]
    assert [r.returncode for r in runs] == [0, 0, 1, 1]
    for r in runs:
        for secret in (PIN, WRONG):
            assert secret not in r.stdout and secret not in r.stderr
    log = Path(os.environ["XDG_STATE_HOME"]) / "cert-desk" / "cert-desk.log"
    assert log.exists() and "logged in to" in log.read_text()
    for f in _all_files(isolated_home):
        data = f.read_bytes()
        assert PIN.encode() not in data and WRONG.encode() not in data, f
