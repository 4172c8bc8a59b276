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
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield proc.pid
    finally:
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
                                                                  isolated_home: Path, tmp_path: Path) -> None:
    chrome = browsers[0]
    user_data = isolated_home / ".config" / "chromium"
    user_data.mkdir(parents=True)
    chrome_exe = tmp_path / "chrome"  # a process named chrome, as the real one is (its /proc/PID/comm)
    chrome_exe.symlink_to(sys.executable)
    sleeper = subprocess.Popen([str(chrome_exe), "-c", "import time; time.sleep(60)"])
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


def test_all_skips_what_it_cannot_change_and_never_creates_a_firefox_profile(
        cli: Cli, softhsm: SoftHsm, browsers: tuple[Path, Path], isolated_home: Path) -> None:
    chrome, firefox = browsers
    root = isolated_home / ".mozilla" / "firefox"
    with (root / "profiles.ini").open("a") as fh:  # a profile whose directory is gone
        fh.write("\n[Profile1]\nName=gone\nIsRelative=1\nPath=../../gone/deleted.profile\n")
    r = cli("nss", "remove", "--all", "--name", "Nope")
    assert r.returncode == 0 and "skipped" in r.stderr, (r.stdout, r.stderr)
    r = cli_ok(cli, "nss", "add", "--all", "--name", "Test HSM", "--module", softhsm.module, "--create")
    assert "Test HSM" in modules(chrome) and "Test HSM" in modules(firefox)
    assert not (isolated_home / "gone").exists()  # a stale profiles.ini entry gets no database


def test_a_bare_library_name_is_found_as_nss_finds_it(cli: Cli, browsers: tuple[Path, Path]) -> None:
    """The seed writes -libfile opensc-pkcs11.so; NSS finds it in the system's library directories."""
    from cert_desk.pkcs11.discovery import opensc_module_path

    opensc = opensc_module_path()
    assert opensc is not None, "OpenSC is installed by CI"
    firefox = browsers[1]
    nss("modutil", "-add", "seed", "-libfile", os.path.basename(opensc), "-dbdir", f"sql:{firefox}", "-force")
    data = json.loads(cli_ok(cli, "nss", "list", "--json", "--module", os.path.basename(opensc)).stdout)
    assert next(d for d in data if d["directory"] == str(firefox))["registered"] == ["seed"]
    r = cli_ok(cli, "nss", "add", "--db", f"sql:{firefox}", "--name", "again", "--module", os.path.basename(opensc))
    assert "nothing changed" in r.stdout


def test_a_module_p11_kit_already_brings_in_is_not_added_twice(cli: Cli, softhsm: SoftHsm,
                                                               browsers: tuple[Path, Path]) -> None:
    """p11-kit's proxy loads every module in p11-kit's registry (Debian registers SoftHSM2 and OpenSC):
    a direct entry too would fail in modutil (exit 22) and show the token twice."""
    from cert_desk.services.browsers import known_to_p11kit

    real = os.path.realpath(softhsm.module)
    assert known_to_p11kit(real), "softhsm2 registers itself with p11-kit on Debian"
    firefox = browsers[1]
    nss("modutil", "-add", "p11-kit", "-libfile", "p11-kit-proxy.so", "-dbdir", f"sql:{firefox}", "-force")
    before = (firefox / "pkcs11.txt").read_bytes()
    data = json.loads(cli_ok(cli, "nss", "list", "--json", "--module", softhsm.module).stdout)
    fx = next(d for d in data if d["directory"] == str(firefox))
    assert fx["registered"] == [] and fx["conflicts"] == [] and fx["via_proxy"] == "p11-kit"
    r = cli_ok(cli, "nss", "add", "--db", f"sql:{firefox}", "--name", "Test HSM", "--module", softhsm.module)
    assert "through p11-kit's proxy" in r.stdout and (firefox / "pkcs11.txt").read_bytes() == before
