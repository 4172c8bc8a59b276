"""cert_desk.nss.tools against the real NSS tools (modutil, certutil) and a real SoftHSM2 token.

Every database is fresh (certutil -N in tmp). What cert-desk reports is cross-checked with what
``modutil -list`` / ``-rawlist`` print and with pkcs11.txt's bytes; the failure tests use real
modutil failures (a module whose C_Initialize fails, a pkcs11.txt entry modutil drops) and show
that pkcs11.txt ends up byte-identical.
"""

from __future__ import annotations

import _ctypes
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cert_desk.errors import CertDeskError, InputError, PinError, PinRequiredError
from cert_desk.nss import tools
from cert_desk.secrets import Secret
from cert_desk.x509 import ca as local_ca
from tests.conftest import USER_PIN, SoftHsm, require, require_tool

ROOT = Path(__file__).resolve().parent.parent
SPY = "/usr/lib/x86_64-linux-gnu/pkcs11-spy.so"


@pytest.fixture
def nssdb(tmp_path: Path) -> Path:
    require_tool("modutil")
    require_tool("certutil")
    db = tmp_path / "nssdb"
    tools.create_database(str(db))
    return db


def _modutil(*args: str) -> str:
    proc = subprocess.run(["modutil", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _txt(db: Path) -> bytes:
    return (db / "pkcs11.txt").read_bytes()


def _files(db: Path) -> list[str]:
    return sorted(os.listdir(db))


# ------------------------------------------------------------------------- tools, create


def test_nss_tool_finds_the_tools_and_names_the_package_when_missing(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert tools.nss_tool("modutil") == require_tool("modutil")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InputError) as err:
        tools.nss_tool("no-such-nss-tool")
    assert "libnss3-tools" in err.value.hint
    assert "nss-tools" in err.value.hint


def test_create_database_makes_a_private_sql_database_and_never_overwrites_one(tmp_path: Path) -> None:
    require_tool("certutil")
    db = tmp_path / "home" / ".pki" / "nssdb"
    tools.create_database(str(db))
    assert _files(db) == ["cert9.db", "key4.db", "pkcs11.txt"]
    for made in (tmp_path / "home" / ".pki", db):
        assert stat.S_IMODE(made.stat().st_mode) & 0o077 == 0, made
    assert "NSS Internal PKCS #11 Module" in _modutil("-list", "-dbdir", f"sql:{db}")

    before = _txt(db)
    with pytest.raises(InputError, match="already holds an NSS database"):
        tools.create_database(f"sql:{db}")
    assert _txt(db) == before

    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        tools.create_database(str(afile))


# ------------------------------------------------------------------------- add / remove


def test_add_then_remove_the_softhsm_module(nssdb: Path, softhsm: SoftHsm, token: str, tmp_path: Path) -> None:
    original = _txt(nssdb)
    assert tools.add_module(str(nssdb), "SoftHSM", softhsm.module) is True

    loaded = {m.name: m for m in tools.list_loaded(f"sql:{nssdb}")}
    assert loaded["SoftHSM"].library == softhsm.module
    assert loaded["SoftHSM"].status == "loaded"
    assert token in [slot.token for slot in loaded["SoftHSM"].slots]
    assert loaded["NSS Internal PKCS #11 Module"].library == ""
    # modutil's own listing agrees, and the entry is the block NSS writes, blank line included
    raw = _modutil("-list", "-dbdir", f"sql:{nssdb}")
    assert f"library name: {softhsm.module}" in raw
    assert f"token: {token}" in raw
    assert _txt(nssdb) == original + f"library={softhsm.module}\nname=SoftHSM\n\n".encode()
    added = _txt(nssdb)

    # idempotent: the same path, another name for it, a symlink to it
    assert tools.add_module(str(nssdb), "SoftHSM", softhsm.module) is False
    assert tools.add_module(str(nssdb), "Another name", softhsm.module) is False
    link = tmp_path / "link-to-softhsm.so"
    link.symlink_to(softhsm.module)
    assert tools.add_module(f"sql:{nssdb}", "SoftHSM via link", str(link)) is False
    assert _txt(nssdb) == added

    # the name taken by another library: refused, naming both
    copy = tmp_path / "copy-of-softhsm.so"
    shutil.copy(softhsm.module, copy)
    with pytest.raises(InputError) as err:
        tools.add_module(str(nssdb), "SoftHSM", str(copy))
    assert softhsm.module in err.value.message
    assert str(copy) in err.value.message
    assert _txt(nssdb) == added

    assert tools.remove_module(str(nssdb), "SoftHSM") is True
    assert _txt(nssdb) == original
    assert [m.name for m in tools.list_loaded(str(nssdb))] == ["NSS Internal PKCS #11 Module"]
    assert tools.remove_module(str(nssdb), "SoftHSM") is False
    assert _files(nssdb) == ["cert9.db", "key4.db", "pkcs11.txt"]


def test_nss_internal_module_is_not_removed(nssdb: Path) -> None:
    before = _txt(nssdb)
    with pytest.raises(InputError, match="NSS's own module"):
        tools.remove_module(str(nssdb), "NSS Internal PKCS #11 Module")
    assert _txt(nssdb) == before


@pytest.mark.parametrize("name", ['my "HSM"', "Nitrokey HSM (Alice's)", "a\\b = c; #1", "Ärger-Token"])
def test_names_with_quotes_and_spaces_round_trip(nssdb: Path, softhsm: SoftHsm, name: str) -> None:
    original = _txt(nssdb)
    assert tools.add_module(str(nssdb), name, softhsm.module) is True
    assert name in [m.name for m in tools.list_loaded(str(nssdb))]
    assert f"  2. {name}\n" in _modutil("-list", "-dbdir", f"sql:{nssdb}")
    assert tools.remove_module(str(nssdb), name) is True
    assert _txt(nssdb) == original


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=24)
       .filter(lambda s: s == s.strip() and s[:1] not in "\"'" and s != "NSS Internal PKCS #11 Module"))
def test_any_printable_name_round_trips(tmp_path: Path, softhsm: SoftHsm, name: str) -> None:
    db = Path(tempfile.mkdtemp(dir=tmp_path)) / "db"
    tools.create_database(str(db))
    original = _txt(db)
    assert tools.add_module(str(db), name, softhsm.module) is True
    assert [m.status for m in tools.list_loaded(str(db)) if m.name == name] == ["loaded"]
    assert tools.remove_module(str(db), name) is True
    assert _txt(db) == original


@pytest.mark.parametrize(("name", "words"), [
    ("", "empty"), ("   ", "empty"), ("two\nlines", "line break"), ("nul\0", "line break"),
    (" leading", "starts or ends with a space"), ("trailing ", "starts or ends with a space"),
    ("tab\there", "control characters"), ('"', "starts with a quote"), ("'quoted'", "starts with a quote"),
])
def test_bad_names_are_refused_before_anything_changes(nssdb: Path, softhsm: SoftHsm, name: str, words: str) -> None:
    before = _txt(nssdb)
    with pytest.raises(InputError, match=words):
        tools.add_module(str(nssdb), name, softhsm.module)
    assert _txt(nssdb) == before


def test_libraries_that_are_not_pkcs11_modules_are_refused(nssdb: Path, softhsm: SoftHsm, tmp_path: Path) -> None:
    text = tmp_path / "fake.so"
    text.write_text("not a library\n" * 100)
    cases = [
        (str(tmp_path / "missing.so"), "does not exist"),
        (str(tmp_path), "is not a file"),
        (str(text), "cannot be loaded: .*invalid ELF header"),
        (_ctypes.__file__, "does not export C_GetFunctionList"),  # a real shared library, not PKCS#11
    ]
    before, files = _txt(nssdb), _files(nssdb)
    for library, words in cases:
        with pytest.raises(InputError, match=words):
            tools.add_module(str(nssdb), "Bad", library)
        assert _txt(nssdb) == before
        assert _files(nssdb) == files


def test_a_failing_modutil_leaves_pkcs11_txt_byte_identical(nssdb: Path, softhsm: SoftHsm,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # A real PKCS#11 module whose C_Initialize fails: SoftHSM2 without its configuration file.
    # The library check passes (it only loads the library); modutil exits 22.
    monkeypatch.setenv("SOFTHSM2_CONF", str(nssdb.parent / "missing-softhsm2.conf"))
    before, files = _txt(nssdb), _files(nssdb)
    with pytest.raises(InputError) as err:
        tools.add_module(str(nssdb), "SoftHSM", softhsm.module)
    assert "modutil could not add the module 'SoftHSM'" in err.value.message
    assert "CKR_GENERAL_ERROR" in err.value.message
    assert _txt(nssdb) == before
    assert _files(nssdb) == files


def test_a_module_that_hangs_is_stopped_and_nothing_changes(nssdb: Path, softhsm: SoftHsm, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # OpenSC's pkcs11-spy opens its log file when the module is first used; a FIFO nobody reads
    # blocks that open for good, as a module stuck on a dead reader would. The real timeout is
    # 30 s; the test shortens it.
    require(os.path.exists(SPY), "OpenSC's pkcs11-spy.so (opensc-pkcs11)")
    fifo = tmp_path / "spy.fifo"
    os.mkfifo(fifo)
    monkeypatch.setenv("PKCS11SPY", softhsm.module)
    monkeypatch.setenv("PKCS11SPY_OUTPUT", str(fifo))
    monkeypatch.setattr(tools, "TIMEOUT", 2.0)
    before, files = _txt(nssdb), _files(nssdb)
    with pytest.raises(CertDeskError, match="did not finish within 2 s"):
        tools.add_module(str(nssdb), "Spy", SPY)
    assert _txt(nssdb) == before
    assert _files(nssdb) == files


def _append_unterminated(db: Path) -> None:
    """An entry without the blank line after it: NSS reads it, and modutil's next rewrite drops it."""
    with (db / "pkcs11.txt").open("ab") as fh:
        fh.write(b"library=/nonexistent/libgone.so\nname=Gone\n")


def test_modutil_dropping_another_entry_is_undone_after_add(nssdb: Path, softhsm: SoftHsm) -> None:
    _append_unterminated(nssdb)
    assert 'name="Gone"' in _modutil("-rawlist", "-dbdir", f"sql:{nssdb}")
    # what modutil alone does to a copy: it succeeds and 'Gone' is lost
    copy = nssdb.parent / "copy"
    shutil.copytree(nssdb, copy)
    _modutil("-add", "SoftHSM", "-libfile", softhsm.module, "-dbdir", f"sql:{copy}", "-force")
    assert 'name="Gone"' not in _modutil("-rawlist", "-dbdir", f"sql:{copy}")

    before, files = _txt(nssdb), _files(nssdb)
    with pytest.raises(InputError) as err:
        tools.add_module(str(nssdb), "SoftHSM", softhsm.module)
    assert "dropped 'Gone'" in err.value.message
    assert "empty line at the end" in err.value.hint
    assert _txt(nssdb) == before
    assert _files(nssdb) == files
    assert 'name="Gone"' in _modutil("-rawlist", "-dbdir", f"sql:{nssdb}")


def test_modutil_dropping_another_entry_is_undone_after_remove(nssdb: Path, softhsm: SoftHsm) -> None:
    assert tools.add_module(str(nssdb), "SoftHSM", softhsm.module)
    _append_unterminated(nssdb)
    before, files = _txt(nssdb), _files(nssdb)
    with pytest.raises(InputError, match="dropped 'Gone'"):
        tools.remove_module(str(nssdb), "SoftHSM")
    assert _txt(nssdb) == before
    assert _files(nssdb) == files


def test_an_entry_nss_ignores_is_not_lost(nssdb: Path, softhsm: SoftHsm) -> None:
    """No line break at all after the last entry: NSS does not see it, so no read-back could notice
    modutil deleting it; the change is refused up front."""
    with (nssdb / "pkcs11.txt").open("ab") as fh:
        fh.write(b"library=/nonexistent/libgone.so\nname=Gone")
    before = _txt(nssdb)
    with pytest.raises(InputError, match="no line break"):
        tools.add_module(str(nssdb), "SoftHSM", softhsm.module)
    assert _txt(nssdb) == before


def test_databases_that_cannot_be_used(tmp_path: Path, softhsm: SoftHsm) -> None:
    require_tool("modutil")
    afile = tmp_path / "afile"
    afile.write_text("x")
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "cert8.db").write_bytes(b"")
    cases = [(str(tmp_path / "missing"), "does not exist"), (str(afile), "not a directory"),
             (str(tmp_path), "no cert9.db"), (str(legacy), "old dbm format"), (f"dbm:{legacy}", "not an sql")]
    for db, words in cases:
        with pytest.raises(InputError, match=words):
            tools.add_module(db, "SoftHSM", softhsm.module)
        with pytest.raises(InputError, match=words):
            tools.list_loaded(db)
    assert afile.read_text() == "x"
    assert os.listdir(legacy) == ["cert8.db"]


_READONLY_CALL = """
import sys
from cert_desk.errors import InputError
from cert_desk.nss.tools import add_module
try:
    add_module(sys.argv[1], "SoftHSM", sys.argv[2])
except InputError as err:
    print(err.message)
    sys.exit(0)
sys.exit(1)
"""


def test_a_read_only_database_is_refused(nssdb: Path, softhsm: SoftHsm) -> None:
    before = _txt(nssdb)
    if os.geteuid() != 0:
        nssdb.chmod(0o500)
        try:
            with pytest.raises(InputError, match="is not writable by you"):
                tools.add_module(str(nssdb), "SoftHSM", softhsm.module)
        finally:
            nssdb.chmod(0o700)
    else:
        # Root ignores permissions; a read-only bind mount (in a private mount namespace, gone
        # when the process ends) stops root too.
        require_tool("unshare")
        proc = subprocess.run(
            ["unshare", "--mount", "sh", "-c",
             'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && exec "$2" -c "$3" "$1" "$4"',
             "sh", str(nssdb), sys.executable, _READONLY_CALL, softhsm.module],
            capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if proc.returncode != 0 and "permission denied" in proc.stderr.lower():
            pytest.skip(f"no mount namespace here (a container without CAP_SYS_ADMIN): {proc.stderr.strip()}")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "is not writable by you" in proc.stdout
    assert _txt(nssdb) == before


# ------------------------------------------------------------------------- certificates


def _certificate_on_token(softhsm: SoftHsm, token: str, tmp: Path) -> None:
    softhsm.keypair(token, "alice", "a1")
    pub = tmp / "pub.der"
    softhsm.tool("--token-label", token, "--read-object", "--type", "pubkey", "--id", "a1", "-o", str(pub))
    ca_key, ca_cert = local_ca.make_root(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "NSS test CA")]))
    cert = local_ca.issue(ca_key, ca_cert, serialization.load_der_public_key(pub.read_bytes()),  # type: ignore[arg-type]
                          x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")]))
    der = tmp / "alice.der"
    der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    softhsm.tool("--token-label", token, "--write-object", str(der), "--type", "cert", "--id", "a1", "--label",
                 "alice", pin=USER_PIN)


def test_token_certificates_lists_the_token_certificate_with_a_pin_file(nssdb: Path, softhsm: SoftHsm, token: str,
                                                                       tmp_path: Path) -> None:
    _certificate_on_token(softhsm, token, tmp_path)
    assert tools.add_module(str(nssdb), "SoftHSM", softhsm.module)
    with tools.pin_file(Secret(USER_PIN, "test")) as path:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert Path(path).read_text() == USER_PIN  # no line break: NSS would send it as part of the PIN
        certs = tools.token_certificates(f"sql:{nssdb}", token, path)
    assert not os.path.exists(path)
    assert certs == ((f"{token}:alice", "u,u,u"),)
    # certutil itself, with the same PIN file, prints the same line
    with tools.pin_file(Secret(USER_PIN, "test")) as path:
        out = subprocess.run(["certutil", "-L", "-d", f"sql:{nssdb}", "-h", token, "-f", path],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30).stdout
    assert f"{token}:alice" in out


def test_token_certificates_refusals(nssdb: Path, softhsm: SoftHsm, token: str, tmp_path: Path) -> None:
    assert tools.add_module(str(nssdb), "SoftHSM", softhsm.module)
    spec = f"sql:{nssdb}"
    with pytest.raises(PinRequiredError):
        tools.token_certificates(spec, token, None)
    with tools.pin_file(Secret("999999", "test")) as wrong, pytest.raises(PinError, match="refused the PIN"):
        tools.token_certificates(spec, token, wrong)
    with tools.pin_file(Secret(USER_PIN, "test")) as path:
        with pytest.raises(InputError, match="'all' means every token"):
            tools.token_certificates(spec, "all", path)
        with pytest.raises(InputError, match="No token labelled 'elsewhere'"):
            tools.token_certificates(spec, "elsewhere", path)
        os.chmod(path, 0o644)
        with pytest.raises(InputError, match="not private"):
            tools.token_certificates(spec, token, path)
    with pytest.raises(InputError, match="line break"), tools.pin_file(Secret("12\n34", "test")):
        pass
    # the NSS softoken's own token needs no PIN (the database has an empty password)
    assert tools.token_certificates(spec, "NSS Certificate DB", None) == ()


def test_inside_a_flatpak_sandbox_no_database_is_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          softhsm: SoftHsm) -> None:
    """The sandbox is simulated (this test does not run in a Flatpak): cert_desk.paths.in_flatpak
    is made to say so, as /.flatpak-info would."""
    from cert_desk import paths

    db = tmp_path / "db"
    db.mkdir()
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True, capture_output=True)
    before = (db / "pkcs11.txt").read_bytes()
    monkeypatch.setattr(paths, "in_flatpak", lambda: True)
    with pytest.raises(InputError, match="Flatpak sandbox"):
        tools.add_module(f"sql:{db}", "HSM", softhsm.module)
    with pytest.raises(InputError, match="Flatpak sandbox"):
        tools.remove_module(f"sql:{db}", "HSM")
    assert (db / "pkcs11.txt").read_bytes() == before
