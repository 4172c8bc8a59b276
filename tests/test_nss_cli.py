"""``cert-desk nss``: the seed's modutil steps, done safely, end to end.

A test home with Chrome's database (not created yet) and a Firefox profile (an NSS database
made by certutil, listed in profiles.ini); our SoftHSM2 module registered with cert-desk;
``modutil -list`` and ``certutil -L`` as the judges; a TLS login through the registered module
against ``openssl s_server -Verify 1``; running browsers (a real lock on .parentlock, a
SingletonLock pointing at a live process) block every change.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import USER_PIN, Cli, CliResult, SoftHsm, require_tool
from tests.tls_server import make_test_pki, nss, put_client_certificate, tls_server


@pytest.fixture
def browsers(isolated_home: Path) -> tuple[Path, Path]:
    """(Chrome's nssdb, not there yet; a Firefox profile with an NSS database)."""
    require_tool("certutil")
    profile = isolated_home / ".mozilla" / "firefox" / "abcd1234.default-release"
    profile.mkdir(parents=True)
    (isolated_home / ".mozilla" / "firefox" / "profiles.ini").write_text(
        "[Profile0]\nName=default-release\nIsRelative=1\nPath=abcd1234.default-release\nDefault=1\n\n"
        "[General]\nStartWithLastProfile=1\nVersion=2\n")
    nss("certutil", "-N", "-d", f"sql:{profile}", "--empty-password")
    return isolated_home / ".pki" / "nssdb", profile


def cli_ok(cli: Cli, *args: str, **kwargs: object) -> CliResult:
    r = cli(*args, **kwargs)  # type: ignore[arg-type]
    assert r.returncode == 0, (r.stdout, r.stderr)
    return r


def modules(db: Path) -> str:
    return nss("modutil", "-list", "-dbdir", f"sql:{db}")


def test_list_finds_chrome_and_firefox(cli: Cli, softhsm: SoftHsm, browsers: tuple[Path, Path]) -> None:
    chrome, firefox = browsers
    data = json.loads(cli_ok(cli, "nss", "list", "--json", "--module", softhsm.module).stdout)
    by_dir = {d["directory"]: d for d in data}
    assert by_dir[str(chrome)]["format"] == "missing" and by_dir[str(chrome)]["application"].startswith("Chrom")
    fx = by_dir[str(firefox)]
    assert fx["format"] == "sql" and fx["application"] == "Firefox" and fx["profile"] == "default-release"
    assert fx["default"] and fx["registered"] == [] and fx["running"] is None


def test_add_everywhere_read_back_and_remove(cli: Cli, softhsm: SoftHsm, token: str,
                                             browsers: tuple[Path, Path]) -> None:
    chrome, firefox = browsers
    before = (firefox / "pkcs11.txt").read_bytes()
    r = cli_ok(cli, "nss", "add", "--all", "--name", "Test HSM", "--module", softhsm.module, "--create")
    assert r.stdout.count("Registered 'Test HSM'") == 2, r.stdout
    for db in (chrome, firefox):
        listed = modules(db)
        assert "Test HSM" in listed and "test token" in listed and "status: loaded" in listed, listed
    # again: nothing to do, and said so; the module through another path is the same module
    link = softhsm.root / "another-path-to-softhsm.so"
    link.symlink_to(softhsm.module)
    r = cli_ok(cli, "nss", "add", "--all", "--name", "Other name", "--module", str(link))
    assert r.stdout.count("nothing changed") == 2 and "Other name" not in modules(firefox)
    data = json.loads(cli_ok(cli, "nss", "list", "--json", "--module", str(link)).stdout)
    assert all(d["registered"] == ["Test HSM"] for d in data)
    r = cli_ok(cli, "nss", "remove", "--all", "--name", "Test HSM")
    assert r.stdout.count("Removed 'Test HSM'") == 2
    assert "Test HSM" not in modules(firefox) and "Test HSM" not in modules(chrome)
    assert (firefox / "pkcs11.txt").read_bytes() == before


@pytest.fixture
def firefox_running(browsers: tuple[Path, Path]) -> Iterator[int]:
    """A real process holding Firefox's lock on the profile's .parentlock (as Firefox does)."""
    profile = browsers[1]
    (profile / ".parentlock").touch()
    code = ("import fcntl, sys, time; f = open(sys.argv[1], 'r+'); fcntl.lockf(f, fcntl.LOCK_EX); "
            "print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(profile / ".parentlock")], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    yield proc.pid
    proc.kill()
    proc.wait(5)


def test_a_running_firefox_blocks_the_change(cli: Cli, softhsm: SoftHsm, browsers: tuple[Path, Path],
                                            firefox_running: int) -> None:
    firefox = browsers[1]
    before = (firefox / "pkcs11.txt").read_bytes()
    r = cli("nss", "add", "--db", f"sql:{firefox}", "--name", "Test HSM", "--module", softhsm.module)
    assert r.returncode == 1 and "Firefox is running" in r.stderr and "Close Firefox" in r.stderr, r.stderr
    assert (firefox / "pkcs11.txt").read_bytes() == before
    # the lock is probed, not taken: Firefox still holds it
    with (firefox / ".parentlock").open("r+") as fh, pytest.raises(OSError):
        fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_running_chrome_blocks_the_change_a_stale_lock_does_not(cli: Cli, softhsm: SoftHsm,
                                                                  browsers: tuple[Path, Path],
                                                                  isolated_home: Path) -> None:
    chrome = browsers[0]
    user_data = isolated_home / ".config" / "chromium"
    user_data.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (user_data / "SingletonLock").symlink_to(f"{socket.gethostname()}-{sleeper.pid}")
        r = cli("nss", "add", "--db", f"sql:{chrome}", "--name", "Test HSM", "--module", softhsm.module, "--create")
        assert r.returncode == 1 and "Chrom" in r.stderr and "running" in r.stderr, r.stderr
        assert not (chrome / "pkcs11.txt").exists()
    finally:
        sleeper.kill()
        sleeper.wait(5)
    # Chrome killed: its SingletonLock stays behind, pointing at a dead process
    cli_ok(cli, "nss", "add", "--db", f"sql:{chrome}", "--name", "Test HSM", "--module", softhsm.module, "--create")
    assert "Test HSM" in modules(chrome)


def test_bad_input_changes_nothing(cli: Cli, softhsm: SoftHsm, browsers: tuple[Path, Path], tmp_path: Path) -> None:
    firefox = browsers[1]
    before = (firefox / "pkcs11.txt").read_bytes()
    not_a_module = tmp_path / "not-a-module.so"
    not_a_module.write_bytes(b"\x7fELF garbage")
    for args, words in (
        (("--module", str(tmp_path / "missing.so")), "does not exist"),
        (("--module", str(not_a_module)), "PKCS#11"),
    ):
        r = cli("nss", "add", "--db", f"sql:{firefox}", "--name", "Test HSM", *args)
        assert r.returncode == 1 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = cli("nss", "add", "--db", f"sql:{tmp_path / 'nowhere'}", "--name", "X", "--module", softhsm.module)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    r = cli("nss", "add", "--name", "X", "--module", softhsm.module)
    assert r.returncode == 1 and "--db" in r.stderr
    assert (firefox / "pkcs11.txt").read_bytes() == before
    # a name with spaces and quotes is fine
    cli_ok(cli, "nss", "add", "--db", f"sql:{firefox}", "--name", 'My "HSM" token', "--module", softhsm.module)
    assert 'My "HSM" token' in modules(firefox)


def test_tls_login_through_the_registered_module(cli: Cli, softhsm: SoftHsm, token: str,
                                                 browsers: tuple[Path, Path], tmp_path: Path) -> None:
    """The proof: NSS's tstclnt, using only the database cert-desk registered the module in."""
    chrome = browsers[0]
    pki = make_test_pki(tmp_path / "pki")
    put_client_certificate(softhsm, pki, "alice", "01", "EC:prime256v1", "alice via nss")
    cli_ok(cli, "nss", "add", "--db", f"sql:{chrome}", "--name", "Test HSM", "--module", softhsm.module, "--create")
    nss("certutil", "-A", "-n", "test CA", "-t", "C,,", "-d", f"sql:{chrome}", "-a", "-i", str(pki.ca_pem))
    with tls_server(pki) as (url, log):
        r = cli("nss", "test", "--db", f"sql:{chrome}", "--url", url, "--nickname", f"{token}:alice",
                env={"CERT_DESK_PIN": USER_PIN})
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "alice via nss" in r.stdout
        assert "alice via nss" in log.read_text(errors="replace")
        r = cli("nss", "test", "--db", f"sql:{chrome}", "--url", url, "--nickname", f"{token}:alice",
                env={"CERT_DESK_PIN": "999999"})
        assert r.returncode == 1 and USER_PIN not in r.stdout + r.stderr
    assert os.path.exists(chrome / "cert9.db")
