"""The ``cert-desk`` command line, run as users run it (a subprocess), against real SoftHSM2 tokens."""

from __future__ import annotations

import argparse
import ctypes.util
import json
import os
from pathlib import Path

import pytest

from cert_desk.cli import build_parser
from tests.conftest import USER_PIN, Cli, SoftHsm

OBJECT_KEYS = {
    "class", "label", "id", "handle", "key_type", "bits", "curve", "usage", "token_object", "private",
    "modifiable", "sensitive", "extractable", "local", "always_sensitive", "never_extractable",
    "always_authenticate", "application", "value_length", "public_key_sha256", "uri", "openssl_key", "pair",
    "problems", "token", "subject", "issuer", "subject_cn", "issuer_cn", "serial", "not_before",
    "not_after", "key_usage", "extended_key_usage", "subject_alt_names", "is_ca", "self_signed",
    "signature_algorithm", "sha256_fingerprint", "sha1_fingerprint",
}


def assert_clean_failure(r: object, *fragments: str) -> None:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)  # type: ignore[attr-defined]
    assert "Traceback" not in r.stderr  # type: ignore[attr-defined]
    for f in fragments:
        assert f in r.stderr, r.stderr  # type: ignore[attr-defined]


def test_no_option_takes_a_pin_value() -> None:
    """PINs and passphrases come from files, the environment or a prompt; options only name files."""
    parser = build_parser()
    seen = []
    parsers = list(parser._subparsers._group_actions[0].choices.values())  # type: ignore[union-attr]
    while parsers:
        sub = parsers.pop()
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
            for opt in action.option_strings:
                if "pin" in opt.lower() or "pass" in opt.lower():
                    seen.append(opt)
    assert seen and set(seen) <= {"--pin-file", "--pin-file-ref", "--passphrase-file", "--no-passphrase",
                                  "--so-pin-file", "--new-pin-file", "--password-file", "--pin-retry"}, seen


def test_modules_dedupes_by_real_path(cli: Cli, softhsm: SoftHsm) -> None:
    r = cli("modules", "--json")
    assert r.returncode == 0, r.stderr
    mods = json.loads(r.stdout)
    soft = [m for m in mods if m["realpath"] == softhsm.module]
    assert len(soft) == 1
    m = soft[0]
    assert {m["path"], *m["aliases"]} >= {"/usr/lib/softhsm/libsofthsm2.so"}
    assert m["library"]["manufacturer"] == "SoftHSM"
    assert not any(os.path.basename(x["realpath"]).startswith("libp11-kit") for x in mods), "proxy offered"


def test_modules_add_and_remove_are_remembered(cli: Cli, softhsm: SoftHsm, tmp_path: Path) -> None:
    link = tmp_path / "my-module.so"
    link.symlink_to(softhsm.module)
    r = cli("modules", "--add", str(link), "--json")
    assert r.returncode == 0, r.stderr
    settings = json.loads((Path(os.environ["XDG_CONFIG_HOME"]) / "cert-desk" / "settings.json").read_text())
    assert settings["module_paths"] == [str(link)]
    soft = [m for m in json.loads(r.stdout) if m["realpath"] == softhsm.module]
    assert len(soft) == 1 and "added by you" in soft[0]["sources"]
    r = cli("modules", "--add", str(tmp_path / "missing.so"))
    assert_clean_failure(r, "does not exist")
    r = cli("modules", "--remove", str(link))
    assert r.returncode == 0
    settings = json.loads((Path(os.environ["XDG_CONFIG_HOME"]) / "cert-desk" / "settings.json").read_text())
    assert settings["module_paths"] == []


def test_slots_json(cli: Cli, softhsm: SoftHsm, token: str) -> None:
    r = cli("slots", "--module", softhsm.module, "--json")
    assert r.returncode == 0, r.stderr
    slots = json.loads(r.stdout)
    ours = [s for s in slots if s["token"] and s["token"]["label"] == token]
    assert len(ours) == 1
    t = ours[0]["token"]
    assert t["user_pin"] == "ok" and t["min_pin_length"] == 4 and t["initialized"]
    assert "token initialized" in t["flags"]
    assert any(m["name"] == "CKM_RSA_PKCS_KEY_PAIR_GEN" and m["max_key_size"] >= 2048
               for m in ours[0]["mechanisms"])
    text = cli("slots", "--module", softhsm.module, "--mechanisms")
    assert "CKM_ECDSA" in text.stdout and f"token label        : {token}" in text.stdout


def test_objects_json_schema(cli: Cli, softhsm: SoftHsm, token: str) -> None:
    softhsm.keypair(token, "k", "0a0b", "EC:prime256v1")
    r = cli("objects", "--module", softhsm.module, "--token", token, "--json", "--login",
            env={"CERT_DESK_PIN": USER_PIN})
    assert r.returncode == 0, r.stderr
    objs = json.loads(r.stdout)
    assert {o["class"] for o in objs} == {"private_key", "public_key"}
    for o in objs:
        assert set(o) == OBJECT_KEYS
        assert o["id"] == "0a0b" and o["curve"] == "prime256v1" and o["bits"] == 256
        assert o["uri"].startswith("pkcs11:") and ";id=%0A%0B;" in o["uri"]
        assert isinstance(o["openssl_key"], list) and "id_0a0b" in o["openssl_key"]
        assert o["openssl_key"][0] == f"{o['token']['slot_id']}:0a0b"


def test_empty_token_lists_nothing_and_succeeds(cli: Cli, softhsm: SoftHsm, token: str) -> None:
    r = cli("objects", "--module", softhsm.module, "--token", token)
    assert r.returncode == 0, r.stderr
    assert "No objects visible without login" in r.stdout
    r = cli("objects", "--module", softhsm.module, "--token", token, "--json")
    assert json.loads(r.stdout) == []


# ------------------------------------------------------------------ bad input


def test_unknown_module_path(cli: Cli, softhsm: SoftHsm) -> None:
    assert_clean_failure(cli("objects", "--module", "/nonexistent/libnothing.so"), "does not exist")


def test_a_file_that_is_not_a_module(cli: Cli, softhsm: SoftHsm, tmp_path: Path) -> None:
    text = tmp_path / "notes.so"
    text.write_text("not a library\n")
    assert_clean_failure(cli("slots", "--module", str(text)), "is not a PKCS#11 module")
    libc = ctypes.util.find_library("c")
    assert libc
    path = next(p for p in (f"/lib/x86_64-linux-gnu/{libc}", f"/usr/lib/x86_64-linux-gnu/{libc}", f"/lib64/{libc}")
                if os.path.exists(p))
    assert_clean_failure(cli("slots", "--module", path), "does not export C_GetFunctionList")


def test_a_module_whose_initialize_fails(cli: Cli, softhsm: SoftHsm, tmp_path: Path) -> None:
    r = cli("slots", "--module", softhsm.module, env={"SOFTHSM2_CONF": str(tmp_path / "missing.conf")})
    assert_clean_failure(r, "failed to initialise", "CKR_GENERAL_ERROR")


def test_a_slot_that_does_not_exist(cli: Cli, softhsm: SoftHsm, token: str) -> None:
    assert_clean_failure(cli("objects", "--module", softhsm.module, "--slot", "424242"),
                         "Slot 424242 does not exist")


def test_an_uninitialised_token(cli: Cli, softhsm: SoftHsm, token: str) -> None:
    slots = json.loads(cli("slots", "--module", softhsm.module, "--json").stdout)
    free = next(s for s in slots if s["token"] and not s["token"]["initialized"])
    assert_clean_failure(cli("objects", "--module", softhsm.module, "--slot", hex(free["slot_id"])),
                         "not initialised")


def test_a_label_that_matches_two_tokens(cli: Cli, softhsm: SoftHsm) -> None:
    softhsm.init_token("twin")
    softhsm.init_token("twin")
    r = cli("objects", "--module", softhsm.module, "--token", "twin")
    assert_clean_failure(r, "2 tokens match", "--serial")


def test_an_empty_label(cli: Cli, softhsm: SoftHsm, token: str) -> None:
    assert_clean_failure(cli("objects", "--module", softhsm.module, "--token", ""), "--token needs a label")


def test_no_such_token(cli: Cli, softhsm: SoftHsm, token: str) -> None:
    assert_clean_failure(cli("objects", "--module", softhsm.module, "--token", "nope"), "No initialised token")


def test_wrong_pin(cli: Cli, softhsm: SoftHsm, token: str) -> None:
    r = cli("objects", "--module", softhsm.module, "--token", token, "--login", env={"CERT_DESK_PIN": "654321"})
    assert_clean_failure(r, "Wrong PIN")
    assert "654321" not in r.stderr + r.stdout


def test_pin_too_short(cli: Cli, softhsm: SoftHsm, token: str, tmp_path: Path) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text("12\n")
    r = cli("objects", "--module", softhsm.module, "--token", token, "--login", "--pin-file", str(pin_file))
    assert_clean_failure(r, "too short", "no try was used")


def test_pin_from_file_and_stdin(cli: Cli, softhsm: SoftHsm, token: str, tmp_path: Path) -> None:
    softhsm.keypair(token, "k", "01", "EC:prime256v1")
    pin_file = tmp_path / "pin"
    pin_file.write_text(USER_PIN + "\n")
    r = cli("objects", "--module", softhsm.module, "--token", token, "--login", "--pin-file", str(pin_file), "--json")
    assert r.returncode == 0, r.stderr
    assert "private_key" in {o["class"] for o in json.loads(r.stdout)}
    r = cli("objects", "--module", softhsm.module, "--token", token, "--login", "--pin-file", "-", "--json",
            input=USER_PIN + "\n")
    assert r.returncode == 0, r.stderr
    assert_clean_failure(
        cli("objects", "--module", softhsm.module, "--token", token, "--login", "--pin-file", str(tmp_path / "x")),
        "does not exist")


def test_no_pin_available(cli: Cli, softhsm: SoftHsm, token: str) -> None:
    r = cli("objects", "--module", softhsm.module, "--token", token, "--login", input="")
    assert_clean_failure(r, "needs its PIN", "--pin-file")


def test_json_errors_are_json(cli: Cli, softhsm: SoftHsm, token: str) -> None:
    r = cli("objects", "--module", softhsm.module, "--token", "nope", "--json")
    assert r.returncode == 1
    err = json.loads(r.stdout)["error"]
    assert err["kind"] == "NoTokenError" and "nope" in err["message"]


@pytest.mark.parametrize("args", [["objects", "--slot", "abc"], ["no-such-command"], ["objects", "--bogus"]])
def test_usage_errors_exit_2(cli: Cli, args: list[str]) -> None:
    r = cli(*args)
    assert r.returncode == 2
    assert "usage:" in r.stderr and "Traceback" not in r.stderr


def test_version_and_help(cli: Cli) -> None:
    from cert_desk import __version__

    r = cli("--version")
    assert r.returncode == 0 and __version__ in r.stdout
    r = cli("objects", "--help")
    assert r.returncode == 0 and "--pin-file" in r.stdout


def test_cli_commands_do_not_import_qt(cli: Cli, softhsm: SoftHsm, token: str) -> None:
    """Commands that open no window must not pay for Qt (start-up time is benchmarked)."""
    code = ("import sys; from cert_desk.cli import run; rc = run(['slots', '--module', sys.argv[1], '--json']); "
            "bad = [m for m in sys.modules if m.startswith(('PySide6', 'shiboken6'))]; "
            "print('QT', bad, file=sys.stderr); sys.exit(rc)")
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", code, softhsm.module], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "QT []" in proc.stderr


def test_a_pin_that_is_not_utf8(cli: Cli, softhsm: SoftHsm, token: str) -> None:
    import subprocess
    import sys

    env = dict(os.environb)
    env[b"CERT_DESK_PIN"] = b"\xff9999"
    proc = subprocess.run([sys.executable, "-m", "cert_desk", "objects", "--module", softhsm.module, "--token", token,
                           "--login"], env=env, capture_output=True, timeout=60)
    assert proc.returncode == 1
    assert b"not valid UTF-8" in proc.stderr and b"Traceback" not in proc.stderr and b"9999" not in proc.stderr


def test_no_user_pin_yet_stops_before_asking(cli: Cli, softhsm: SoftHsm) -> None:
    index = softhsm.free_slot_index()
    softhsm.tool("--slot-index", str(index), "--init-token", "--label", "bare", so_pin="12345678")
    r = cli("objects", "--module", softhsm.module, "--token", "bare", "--login", env={"CERT_DESK_PIN": "123456"})
    assert_clean_failure(r, "no user PIN yet")


def test_demo_flag_creates_the_demo_token_on_first_use(cli: Cli, softhsm: SoftHsm) -> None:
    r = cli("--demo", "objects", "--json")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)) == 5
