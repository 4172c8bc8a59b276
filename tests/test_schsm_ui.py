"""``cert-desk schsm`` and the SmartCard-HSM dialog, driven against the STAND-IN for sc-hsm-tool
(no SmartCard-HSM and no emulator of one exist here; see tests/data/sc-hsm-tool/fake-sc-hsm-tool,
whose prompts and formats tests/test_schsm.py checks against the real binary)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from cert_desk.models import SlotInfo, SlotReport
from cert_desk.pcsc.readers import PcscSnapshot, PcscStatus, ReaderState
from cert_desk.pkcs11 import schsm
from cert_desk.ui.main_window import MainWindow
from cert_desk.ui.schsm_dialog import ScHsmDialog
from tests.conftest import Cli
from tests.test_gui import TIMEOUT, _token_info, ctx, idle, private_qsettings, window  # noqa: F401
from tests.test_schsm import INITIALISED, SHARE_PASSWORD, SO_PIN, USER_PIN, StandIn, stand_in  # noqa: F401

SC_HSM_ATR = bytes.fromhex("3BFE1800008131FE458031815448534D31738021408107FA")


@pytest.fixture
def tool_env(stand_in: StandIn, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    monkeypatch.setenv("CERT_DESK_SC_HSM_TOOL", stand_in.tool)
    return stand_in


def test_cli_status_warns_on_an_all_zero_check_value(cli: Cli, tool_env: StandIn) -> None:
    tool_env.card(INITIALISED, dkek={"shares": 0, "outstanding": 0, "kcv": "0000000000000000"})
    r = cli("schsm", "status", "--reader", "0")
    assert r.returncode == 0, r.stderr
    assert "DKEK check value   : 00:00:00:00:00:00:00:00" in r.stdout and "WARNING" in r.stdout
    r = cli("schsm", "status", "--reader", "0", "--json")
    data = json.loads(r.stdout)
    assert data["dkek"]["all_zero_kcv"] is True and data["user_pin"] == "ok"


def test_cli_create_and_import_a_share(cli: Cli, tool_env: StandIn, tmp_path: Path) -> None:
    tool_env.card(INITIALISED, dkek={"shares": 1, "outstanding": 1, "kcv": None})
    share = tmp_path / "share.pbe"
    env = {"CERT_DESK_SHARE_PASSWORD": SHARE_PASSWORD}
    r = cli("schsm", "create-share", "--out", str(share), env=env)
    assert r.returncode == 0, r.stderr
    assert share.exists()
    r = cli("schsm", "create-share", "--out", str(share), env=env)  # never over an existing share
    assert r.returncode != 0 and share.exists()
    r = cli("schsm", "import-share", "--share", str(share), env=env)
    assert r.returncode == 0, r.stderr
    assert "Imported the last share. DKEK check value:" in r.stdout
    typed = tool_env.typed()
    assert [t["prompt"] for t in typed] == [schsm.PROMPT_NEW_SHARE_PASSWORD, schsm.PROMPT_CONFIRM_SHARE_PASSWORD,
                                            schsm.PROMPT_SHARE_PASSWORD]
    assert all(t["typed"] == SHARE_PASSWORD for t in typed)
    for t in typed:
        assert SHARE_PASSWORD not in " ".join(t["cmdline"])
    assert SHARE_PASSWORD not in r.stdout + r.stderr


def test_cli_init_needs_erase_and_checks_pins_before_the_tool(cli: Cli, tool_env: StandIn) -> None:
    tool_env.card(INITIALISED)
    env = {"CERT_DESK_SO_PIN": SO_PIN, "CERT_DESK_PIN": USER_PIN}
    r = cli("schsm", "init", "--dkek-shares", "1", env=env)
    assert r.returncode != 0 and "--confirm ERASE" in r.stderr
    r = cli("schsm", "init", "--confirm", "ERASE", env={"CERT_DESK_SO_PIN": "12345678", "CERT_DESK_PIN": USER_PIN})
    assert r.returncode != 0 and "16" in r.stderr and "12345678" not in r.stderr
    r = cli("schsm", "init", "--confirm", "ERASE", env={"CERT_DESK_SO_PIN": SO_PIN, "CERT_DESK_PIN": "123"})
    assert r.returncode != 0 and "6" in r.stderr
    assert tool_env.typed() == []  # the tool never saw a PIN
    r = cli("schsm", "init", "--confirm", "ERASE", "--dkek-shares", "2", "--label", "backup-hsm", env=env)
    assert r.returncode == 0, r.stderr
    assert [t["prompt"] for t in tool_env.typed()] == [schsm.PROMPT_SO_PIN, schsm.PROMPT_INITIAL_USER_PIN]
    assert tool_env.state()["dkek"]["outstanding"] == 2


def test_dialog_shows_the_state_and_makes_a_share(qtbot: QtBot, window: MainWindow, tool_env: StandIn,
                                                  tmp_path: Path) -> None:
    tool_env.card(INITIALISED, dkek={"shares": 0, "outstanding": 0, "kcv": "0000000000000000"})
    dialog = ScHsmDialog(window.ctx, 0, "Virtual PCD 00 00", "UserPIN (SmartCard-HSM)", parent=window)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: "check value" in dialog.status.text(), timeout=TIMEOUT)
    assert "all zero" in dialog.status.text() and "all zero" in dialog.message.text()
    share = tmp_path / "s.pbe"
    dialog.share_file.setText(str(share))
    dialog.share_password.setText(SHARE_PASSWORD)
    dialog.share_repeat.setText(SHARE_PASSWORD + "x")
    dialog.create_button.click()
    assert "differ" in dialog.message.text() and not share.exists()
    dialog.share_repeat.setText(SHARE_PASSWORD)
    dialog.create_button.click()
    assert dialog.share_password.text() == "" and dialog.share_repeat.text() == ""
    qtbot.waitUntil(lambda: "Wrote the DKEK share" in dialog.message.text(), timeout=TIMEOUT)
    idle(qtbot, window)
    assert share.exists()
    commands = [r.command or "" for r in window.activity.model.records()]
    assert any("--create-dkek-share" in c for c in commands)
    assert not any(SHARE_PASSWORD in c for c in commands)
    dialog.close()


def test_the_button_shows_only_for_a_smartcard_hsm(qtbot: QtBot, window: MainWindow) -> None:
    """Fake reader state and token info (named so): no SmartCard-HSM is attached here."""
    devices = window.devices
    reader = ReaderState(name="Fake Reader 00 00", card_present=True, atr=SC_HSM_ATR)
    devices.readers.show_snapshot(PcscSnapshot(PcscStatus.OK, (reader,)))
    slot = SlotInfo(slot_id=0, description="Fake Reader 00 00", manufacturer="OpenSC", flags=7, flag_words=(),
                    hardware_version="0.0", firmware_version="0.0", token_present=True, removable=True,
                    hardware_slot=True)
    hsm = SlotReport("/fake/opensc-pkcs11.so", slot, dataclasses.replace(_token_info(), label="UserPIN (SmartCard-HSM)",
                                                                         manufacturer="www.CardContact.de"))
    assert devices.is_schsm(hsm)
    devices._update_admin(hsm)
    assert devices.schsm_button.isVisibleTo(devices)
    other = SlotReport("/fake/opensc-pkcs11.so", dataclasses.replace(slot, description="Another Reader"), _token_info())
    assert not devices.is_schsm(other)
    devices._update_admin(other)
    assert not devices.schsm_button.isVisibleTo(devices)
