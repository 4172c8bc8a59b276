"""Finding browsers' NSS databases, reading their pkcs11.txt as NSS does, and telling whether the
browser runs: real files in temporary homes, NSS's own modutil as the reference, real processes
holding the locks."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cert_desk.errors import InputError
from cert_desk.nss import discovery, locks, pkcs11txt
from cert_desk.nss.models import NssDatabase
from tests.conftest import SoftHsm, require_tool

# ------------------------------------------------------------------ helpers


def make_profile(path: Path, kind: str = "sql") -> Path:
    """A profile directory whose database files have the names NSS looks for (empty files)."""
    path.mkdir(parents=True, exist_ok=True)
    names = {"sql": ("cert9.db", "key4.db", "pkcs11.txt"), "dbm": ("cert8.db", "key3.db", "secmod.db"),
             "both": ("cert9.db", "key4.db", "pkcs11.txt", "cert8.db", "key3.db", "secmod.db"), "none": ()}[kind]
    for name in names:
        (path / name).write_bytes(b"")
    return path


def write_ini(root: Path, text: str | bytes, name: str = "profiles.ini") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def firefox_ini(*profiles: tuple[str, str, bool, bool]) -> str:
    """profiles.ini text for (name, path, is_relative, default=1) entries."""
    parts = ["[General]\nStartWithLastProfile=1\nVersion=2\n"]
    for i, (name, path, relative, default) in enumerate(profiles):
        parts.append(f"[Profile{i}]\nName={name}\nIsRelative={int(relative)}\nPath={path}\n"
                     + ("Default=1\n" if default else ""))
    return "\n".join(parts)


def modutil(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """NSS's modutil, stdin closed (it prompts otherwise), with a timeout."""
    return subprocess.run([require_tool("modutil"), *args], stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=60, env=env, check=False, encoding="utf-8", errors="replace")


def modutil_list(db_dir: Path, env: dict[str, str]) -> list[tuple[str, str, str]]:
    """``modutil -list`` as (name, library name or "", status) per module."""
    out = modutil("-list", "-dbdir", f"sql:{db_dir}", env=env)
    assert out.returncode == 0, out.stderr
    modules: list[tuple[str, str, str]] = []
    name = library = status = ""
    for line in out.stdout.splitlines():
        if m := re.match(r"\s{2}\d+\. (.*)$", line):
            if name:
                modules.append((name, library, status))
            name, library, status = m.group(1), "", ""
        elif m := re.match(r"\s+library name: (.*)$", line):
            library = m.group(1)
        elif m := re.match(r"\s+status: (.*)$", line):
            status = m.group(1)
    if name:
        modules.append((name, library, status))
    return modules


@pytest.fixture
def nssdb(tmp_path: Path) -> Path:
    """A fresh database made by NSS itself (``modutil -create``)."""
    d = tmp_path / "nssdb"
    d.mkdir()
    out = modutil("-create", "-dbdir", f"sql:{d}", "-force")
    assert out.returncode == 0, out.stderr
    return d


@pytest.fixture
def child() -> Iterator[list[subprocess.Popen[str]]]:
    """Child processes started by a test, killed and reaped at its end."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


def sleeper(procs: list[subprocess.Popen[str]], name: str = "") -> subprocess.Popen[str]:
    """A sleeping process; with ``name``, started through a link of that name, so that its
    /proc/PID/comm is ``name`` (as a real 'chrome' process's is)."""
    exe = sys.executable
    if name:
        link = Path(tempfile.mkdtemp(prefix="cert-desk-exe-")) / name
        link.symlink_to(sys.executable)
        exe = str(link)
    p = subprocess.Popen([exe, "-c", "import time; time.sleep(60)"], text=True)
    procs.append(p)
    return p


def lock_holder(procs: list[subprocess.Popen[str]], path: Path) -> subprocess.Popen[str]:
    """A process that holds Firefox's kind of lock (``lockf``, an fcntl write lock) on ``path``."""
    code = ("import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
            "fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    procs.append(p)
    assert p.stdout is not None and p.stdout.readline().strip() == "locked"
    return p


# --------------------------------------------------------- profiles.ini


def test_profiles_ini_relative_absolute_and_default(tmp_path: Path) -> None:
    base = str(tmp_path / "ff")
    text = firefox_ini(("default", "abc.default", True, True), ("work", str(tmp_path / "elsewhere/work"), False, False))
    assert discovery.parse_profiles_ini(text, base) == [
        ("default", f"{base}/abc.default", True),
        ("work", f"{tmp_path}/elsewhere/work", False),
    ]


def test_install_sections_name_the_default_over_default_1(tmp_path: Path) -> None:
    base = str(tmp_path / "ff")
    text = firefox_ini(("default", "a.default", True, True), ("default-release", "b.default-release", True, False))
    with_install = text + "\n[Install4F96D1932A9F858E]\nDefault=b.default-release\nLocked=1\n"
    assert [(n, d) for n, _, d in discovery.parse_profiles_ini(with_install, base)] == [
        ("default", False), ("default-release", True)]
    installs = "[4F96D1932A9F858E]\nDefault=b.default-release\nLocked=1\n"
    assert [(n, d) for n, _, d in discovery.parse_profiles_ini(text, base, installs=installs)] == [
        ("default", False), ("default-release", True)]


def test_profiles_ini_odd_paths_garbage_and_duplicates(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    base = str(tmp_path / "ff")
    text = (
        "stray=before any section\n"
        "[Profile0]\nName=spaced\nIsRelative=1\nPath=Profiles/my profile.default\nDefault=1\n\n"
        "this line is garbage\n"
        "[Profile1]\nName=climbing\nIsRelative=1\nPath=../outside/../other/p\n\n"
        "[Profile2]\nName=no path\nIsRelative=1\n\n"
        "[Profile3]\nName=relative but not IsRelative\nIsRelative=0\nPath=rel/p\n\n"
        "[Profile0]\nName=duplicate section\nIsRelative=1\nPath=dup.default\n\n"
        "[Profile4]\nName=same dir again\nIsRelative=0\nPath=" + base + "/Profiles/my profile.default\n\n"
        "[Profile5]\r\nName=crlf\r\nIsRelative=1\r\nPath=crlf.p\r\n"
        "[Profile6\n= no key\n[General]\nVersion=2\n"
    )
    with caplog.at_level(logging.WARNING, logger="cert_desk.nss.discovery"):
        got = discovery.parse_profiles_ini(text, base)
    assert got == [
        ("spaced", f"{base}/Profiles/my profile.default", True),
        ("climbing", f"{tmp_path}/other/p", False),
        ("duplicate section", f"{base}/dup.default", False),
        ("crlf", f"{base}/crlf.p", False),
    ]
    logged = caplog.text
    for reason in ("before any [section]", "not a [section] or key=value", "has no Path=", "IsRelative is not 1"):
        assert reason in logged


def test_binary_and_non_utf8_ini_give_what_can_be_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    home = tmp_path / "home"
    root = home / ".mozilla/firefox"
    make_profile(root / "good.default")
    junk = bytes(range(256)) * 8 + b"\n\x00\x01[Profile9]\nPath=\xff\xfe\n"
    write_ini(root, junk + firefox_ini(("good", "good.default", True, True)).encode() + b"\nName=\xe9t\xe9\n" + junk)
    with caplog.at_level(logging.WARNING, logger="cert_desk.nss.discovery"):
        dbs = [db for db in discovery.discover(home) if db.application == "Firefox"]
    assert [(db.profile, db.format, db.default) for db in dbs] == [("good", "sql", True)]
    assert "binary or not UTF-8" in caplog.text


def test_huge_ini_is_read_up_to_the_cap(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    home = tmp_path / "home"
    root = home / ".mozilla/firefox"
    make_profile(root / "first")
    make_profile(root / "late")
    filler = ("; " + "x" * 97 + "\n") * (discovery.MAX_INI_BYTES // 100 + 10)
    text = firefox_ini(("first", "first", True, True)) + filler + "[Profile1]\nName=late\nIsRelative=1\nPath=late\n"
    write_ini(root, text)
    with caplog.at_level(logging.WARNING, logger="cert_desk.nss.discovery"):
        dbs = discovery.discover(home)
    assert [db.profile for db in dbs if db.application == "Firefox"] == ["first"]
    assert "only its first 1024 KiB were read" in caplog.text


def test_a_fifo_or_directory_in_place_of_the_ini_does_not_hang(tmp_path: Path) -> None:
    home = tmp_path / "home"
    os.makedirs(home / ".mozilla/firefox")
    os.mkfifo(home / ".mozilla/firefox/profiles.ini")
    os.makedirs(home / ".thunderbird/profiles.ini")
    assert [db.application for db in discovery.discover(home)] == ["Chrome/Chromium"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.sampled_from("[]=\n\r \x00é/.a1ProfileIsRlatvDfuhN"), max_size=300))
def test_parse_profiles_ini_never_raises(text: str) -> None:
    for name, directory, default in discovery.parse_profiles_ini(text, "/base"):
        assert isinstance(name, str) and os.path.isabs(directory) and isinstance(default, bool)


# --------------------------------------------------------------- discover


def test_classic_snap_and_flatpak_at_once_in_order(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for sub, kind in ((".mozilla/firefox", "sql"), ("snap/firefox/common/.mozilla/firefox", "dbm"),
                      (".var/app/org.mozilla.firefox/.mozilla/firefox", "both")):
        root = home / sub
        make_profile(root / "p.default", kind)
        make_profile(root / "p.default-release", "sql")
        write_ini(root, firefox_ini(("default", "p.default", True, False),
                                    ("default-release", "p.default-release", True, True)))
    make_profile(home / "snap/thunderbird/common/.thunderbird/t.default")
    write_ini(home / "snap/thunderbird/common/.thunderbird", firefox_ini(("default", "t.default", True, True)))
    make_profile(home / ".var/app/org.mozilla.Thunderbird/.thunderbird/x")
    write_ini(home / ".var/app/org.mozilla.Thunderbird/.thunderbird", firefox_ini(("x", "x", True, False)))

    dbs = discovery.discover(home)
    assert [(db.application, db.profile, db.default) for db in dbs] == [
        ("Chrome/Chromium", "", False),
        ("Firefox", "default-release", True),
        ("Firefox (snap)", "default-release", True),
        ("Firefox (flatpak)", "default-release", True),
        ("Firefox", "default", False),
        ("Firefox (snap)", "default", False),
        ("Firefox (flatpak)", "default", False),
        ("Thunderbird (snap)", "default", True),
        ("Thunderbird (flatpak)", "x", False),
    ]
    by = {(db.application, db.profile): db for db in dbs}
    classic = by[("Firefox", "default")]
    assert (classic.format, classic.supported, classic.reason) == ("sql", True, "")
    assert classic.lock_dirs == (classic.directory,)
    assert classic.spec == f"sql:{home}/.mozilla/firefox/p.default"
    snap = by[("Firefox (snap)", "default")]
    assert (snap.format, snap.supported) == ("dbm", False)
    assert "NSS 3.35" in snap.reason and "Firefox since 58" in snap.reason
    flatpak = by[("Firefox (flatpak)", "default")]
    assert (flatpak.format, flatpak.supported) == ("sql", True)
    assert "left over" in flatpak.reason


def test_missing_and_empty_profile_directories(tmp_path: Path) -> None:
    home = tmp_path / "home"
    root = home / ".thunderbird"
    make_profile(root / "empty", "none")
    make_profile(root / "only-txt", "none")
    (root / "only-txt/pkcs11.txt").write_text("")
    write_ini(root, firefox_ini(("gone", "does-not-exist", True, True), ("empty", "empty", True, False),
                                ("only txt", "only-txt", True, False)))
    dbs = {db.profile: db for db in discovery.discover(home) if db.application == "Thunderbird"}
    assert (dbs["gone"].format, dbs["gone"].supported) == ("missing", False)
    assert "does not exist" in dbs["gone"].reason
    assert (dbs["empty"].format, dbs["empty"].supported) == ("missing", False)
    assert "Thunderbird has not created" in dbs["empty"].reason
    assert (dbs["only txt"].format, dbs["only txt"].supported) == ("sql", True)
    assert "cert9.db and key4.db not there yet" in dbs["only txt"].reason


def test_a_real_database_is_sql(tmp_path: Path, nssdb: Path) -> None:
    assert discovery.database_state(str(nssdb), "m", "e") == ("sql", True, "")
    db = discovery.database_at(str(nssdb))
    assert (db.format, db.supported, db.directory, db.lock_dirs) == ("sql", True, str(nssdb), (str(nssdb),))
    assert discovery.database_at(str(tmp_path / "nowhere")).format == "missing"


def test_symlinked_profile_and_one_directory_in_two_inis_are_listed_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    real = make_profile(tmp_path / "disk/real-profile")
    classic = home / ".mozilla/firefox"
    classic.mkdir(parents=True)
    (classic / "link.default").symlink_to(real)
    write_ini(classic, firefox_ini(("linked", "link.default", True, True)))
    write_ini(home / ".var/app/org.mozilla.firefox/.mozilla/firefox",
              firefox_ini(("absolute", str(real), False, False),
                          ("again", str(real) + "/../real-profile", False, False)))
    dbs = [db for db in discovery.discover(home) if db.application.startswith("Firefox")]
    assert [(db.application, db.profile, db.directory, db.default) for db in dbs] == [
        ("Firefox", "linked", str(real), True)]
    assert dbs[0].lock_dirs == (str(real),)


def test_chrome_database_missing_is_listed_with_user_data_lock_dirs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for d in (".config/chromium", ".var/app/com.google.Chrome/config/google-chrome"):
        (home / d).mkdir(parents=True)
    (home / ".config/google-chrome").write_text("a file, not a user-data directory")
    [db] = discovery.discover(home)
    assert db == NssDatabase(
        directory=f"{home}/.pki/nssdb", application="Chrome/Chromium", profile="", format="missing",
        supported=False, reason="Chrome has not created it yet; cert-desk can create it",
        # every Chromium-based browser's user-data directory, there or not: one started after the scan counts too
        lock_dirs=tuple(f"{home}/{d}" for d in discovery.CHROME_USER_DATA_DIRS))


def test_chrome_new_and_old_locations(tmp_path: Path) -> None:
    home = tmp_path / "home"
    make_profile(home / ".local/share/pki/nssdb")
    [only_new] = discovery.discover(home)
    assert (only_new.directory, only_new.format, only_new.reason) == (f"{home}/.local/share/pki/nssdb", "sql", "")

    make_profile(home / ".pki/nssdb", "dbm")
    old, new = discovery.discover(home)
    assert (old.directory, old.format) == (f"{home}/.pki/nssdb", "dbm")
    assert new.directory == f"{home}/.local/share/pki/nssdb"
    assert new.reason.startswith(f"not used: Chrome reads {home}/.pki/nssdb while that exists")

    (home / ".local/share/pki/nssdb/cert9.db").unlink()
    (home / ".local/share/pki/nssdb/key4.db").unlink()
    (home / ".local/share/pki/nssdb/pkcs11.txt").unlink()
    (home / ".local/share/pki").rename(home / ".local/share/pki.old")
    (home / ".local/share/pki").symlink_to(home / ".pki")
    assert [db.directory for db in discovery.discover(home)] == [f"{home}/.pki/nssdb"]


def test_snap_chromium_has_its_own_database(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "snap/chromium/2345/.pki/nssdb").mkdir(parents=True)
    (home / "snap/chromium/current").symlink_to("2345")
    (home / "snap/chromium/common/chromium").mkdir(parents=True)
    chrome, snap = discovery.discover(home)
    assert chrome.lock_dirs == tuple(f"{home}/{d}" for d in discovery.CHROME_USER_DATA_DIRS)
    assert (snap.application, snap.directory, snap.format) == (
        "Chromium (snap)", f"{home}/snap/chromium/current/.pki/nssdb", "missing")
    assert snap.lock_dirs == (f"{home}/snap/chromium/common/chromium",)
    assert "Chromium (snap) has not created it yet" in snap.reason


def test_discover_of_a_home_that_does_not_exist(tmp_path: Path) -> None:
    [db] = discovery.discover(tmp_path / "nobody")
    assert db.format == "missing"


# ------------------------------------------------------------ pkcs11.txt

INTERNAL = (
    "library=\nname=NSS Internal PKCS #11 Module\n"
    "parameters=configdir='sql:/x' certPrefix='' keyPrefix='' secmod='secmod.db' flags= \n"
    "NSS=Flags=internal,critical trustOrder=75 cipherOrder=100 slotParams=(1={slotFlags=[ECC,RSA] askpw=any "
    "timeout=30})\n\n"
)


def test_parse_internal_and_plain_modules(tmp_path: Path) -> None:
    softhsm = tmp_path / "libsofthsm2.so"
    softhsm.write_bytes(b"not really")
    text = INTERNAL + f"library={softhsm}\nname=SoftHSM\n\n# comment\n\nlibrary=/nonexistent/x.so\nname=\"Gone\"\n\n"
    internal, soft, gone = pkcs11txt.parse(text)
    assert internal.internal and internal.library == "" and internal.name == "NSS Internal PKCS #11 Module"
    assert (soft.name, soft.library, soft.realpath, soft.internal) == ("SoftHSM", str(softhsm), str(softhsm), False)
    assert (gone.name, gone.realpath) == ("Gone", "")
    assert pkcs11txt.parse("") == ()
    assert pkcs11txt.scan("\n\n# only comments\n\n").modules == ()


def test_unterminated_last_block(tmp_path: Path) -> None:
    # a last line with its line break but no blank line after it: loaded, but lost at NSS's next rewrite
    at_risk = pkcs11txt.scan(INTERNAL + "library=/x/a.so\nname=A\n", "p.txt")
    assert [m.name for m in at_risk.modules] == ["NSS Internal PKCS #11 Module", "A"]
    assert [m.name for m in at_risk.at_risk] == ["A"] and at_risk.dropped == ()
    assert at_risk.warnings == ("p.txt, line 6: the last block ('A', library=/x/a.so) has no blank line after it; "
                                "NSS loads it but drops it the next time it rewrites the file.",)
    # no line break at the very end: NSS ignores the whole block
    ignored = pkcs11txt.scan(INTERNAL + "library=/x/a.so\nname=A")
    assert [m.name for m in ignored.modules] == ["NSS Internal PKCS #11 Module"]
    assert [m.name for m in ignored.dropped] == ["A"] and "NSS ignores it" in ignored.warnings[0]
    # the same when the unterminated last line is a comment
    assert [m.name for m in pkcs11txt.scan(INTERNAL + "library=/x/a.so\n# c").dropped] == [""]


def test_p11_kit_proxy_and_its_conflict(tmp_path: Path) -> None:
    assert pkcs11txt.is_p11_kit_proxy("/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so")
    assert pkcs11txt.is_p11_kit_proxy("p11-kit-proxy.so")
    assert pkcs11txt.is_p11_kit_proxy("/usr/lib/x86_64-linux-gnu/libp11-kit.so.0")
    assert not pkcs11txt.is_p11_kit_proxy("/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-trust.so")
    assert not pkcs11txt.is_p11_kit_proxy("/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so")
    assert not pkcs11txt.is_p11_kit_proxy("")
    real = os.path.realpath("/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so")
    if os.path.exists(real):  # a proxy under a name that does not say so
        (tmp_path / "odd-name.so").symlink_to(real)
        assert pkcs11txt.is_p11_kit_proxy(str(tmp_path / "odd-name.so"))
    module = tmp_path / "opensc-pkcs11.so"
    module.write_bytes(b"")
    modules = pkcs11txt.parse(INTERNAL + "library=p11-kit-proxy.so\nname=p11-kit-proxy\n\n"
                              f"library={module}\nname=OpenSC\n\n")
    assert [m.p11_kit_proxy for m in modules] == [False, True, False]
    [conflict] = pkcs11txt.conflicts(modules, str(module))
    assert "'p11-kit-proxy' (p11-kit-proxy.so) is p11-kit's proxy" in conflict
    assert "opensc-pkcs11.so" in conflict and "a second time" in conflict
    assert pkcs11txt.conflicts(modules, "") == []


def test_two_paths_to_one_library(tmp_path: Path, softhsm: SoftHsm, nssdb: Path) -> None:
    a, b = tmp_path / "a.so", tmp_path / "b.so"
    a.symlink_to(softhsm.module)
    b.symlink_to(softhsm.module)
    with (nssdb / "pkcs11.txt").open("a") as fh:
        fh.write(f"library={a}\nname=A\n\nlibrary={b}\nname=B\n\nlibrary=/usr/lib/x86_64-linux-gnu/libc.so.6\n"
                 "name=Other\n\n")
    modules = pkcs11txt.read(str(nssdb))
    assert [m.name for m in pkcs11txt.find(modules, softhsm.module)] == ["A", "B"]
    assert [m.name for m in pkcs11txt.find(modules, str(b))] == ["A", "B"]
    assert pkcs11txt.find(modules, str(tmp_path / "nothing.so")) == []
    [conflict] = pkcs11txt.conflicts(modules, softhsm.module)
    assert "registered 2 times" in conflict and "'A'" in conflict and "'B'" in conflict and "Not loaded" in conflict
    # what conflicts() says, NSS does: it loads the library once and the second entry fails
    listed = modutil_list(nssdb, softhsm.env())
    assert [(n, s) for n, _, s in listed if n in ("A", "B")] == [("A", "loaded"), ("B", "Not loaded")]


def test_modutil_create_and_add_then_read_agrees_with_modutil_list(softhsm: SoftHsm, nssdb: Path) -> None:
    assert [m.internal for m in pkcs11txt.read(str(nssdb))] == [True]
    add = modutil("-add", "SoftHSM test", "-libfile", softhsm.module, "-dbdir", f"sql:{nssdb}", "-force",
                  env=softhsm.env())
    assert add.returncode == 0, add.stderr
    again = modutil("-add", "SoftHSM test", "-libfile", softhsm.module, "-dbdir", f"sql:{nssdb}", "-force",
                    env=softhsm.env())
    assert again.returncode == 22  # a name that exists: refused, nothing written
    modules = pkcs11txt.read(str(nssdb))
    assert [(m.name, m.library) for m in modules] == [(n, lib) for n, lib, _ in modutil_list(nssdb, softhsm.env())]
    assert modules[1].realpath == os.path.realpath(softhsm.module)
    assert pkcs11txt.read_scan(str(nssdb)).warnings == ()


TRICKY: dict[str, str | bytes] = {
    "no blank line at the end": "library={lib}\nname=Last\n",
    "no line break at the end": "library={lib}\nname=Last",
    "comment without line break": "library={lib}\nname=Last\n# end",
    "crlf": "library={lib}\r\nname=Crlf\r\n\r\n",
    "garbage and a quoted name": "garbage line\nlibrary={lib}\nname=\"Soft \\\"HSM\\\"\" trailing\n\n",
    "upper-case keys, last key wins": "LIBRARY=/nonexistent.so\nNAME=First\nlibrary={lib}\nName=Second\n\n",
    "key with a space": "name=Spaced\nxx library={lib}\n\n",
    "no library": "name=NoLib\n\n",
    "NUL and latin-1": b"library={lib}\nname=N\xe9\x00zzz\n\n",
    "long line": "library={lib}\nname=" + "n" * 2100 + "\n\n",
    "blank line made of a NUL": "library={lib}\nname=Nul\n\x00\n",
}


@pytest.mark.parametrize("case", sorted(TRICKY))
def test_damaged_files_are_read_as_nss_reads_them(case: str, softhsm: SoftHsm, nssdb: Path) -> None:
    tail = TRICKY[case]
    raw = tail.replace(b"{lib}", softhsm.module.encode()) if isinstance(tail, bytes) else \
        tail.replace("{lib}", softhsm.module).encode()
    data = (nssdb / "pkcs11.txt").read_bytes() + raw
    (nssdb / "pkcs11.txt").write_bytes(data)
    ours = [(m.name, m.library) for m in pkcs11txt.read(str(nssdb))]
    assert ours == [(n, lib) for n, lib, _ in modutil_list(nssdb, softhsm.env())]


def test_size_cap_and_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "pkcs11.txt").write_bytes(b"#" * (pkcs11txt.MAX_PKCS11_TXT + 1))
    with pytest.raises(InputError, match="larger than 1024 KiB"):
        pkcs11txt.read(str(tmp_path))
    assert pkcs11txt.read(str(tmp_path / "no-db")) == ()
    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo/pkcs11.txt")
    with pytest.raises(InputError, match="not a regular file"):
        pkcs11txt.read(str(tmp_path / "fifo"))


@settings(max_examples=80, deadline=None)
@given(data=st.binary(max_size=400) | st.text(alphabet=st.sampled_from("library=name\"NSS=Flags=internal \n\r#\x00\\é"),
                                                max_size=300))
def test_scan_never_raises(data: bytes | str) -> None:
    result = pkcs11txt.scan(data)
    assert all(isinstance(m.name, str) and isinstance(m.library, str) for m in result.modules)
    assert len(result.warnings) <= 21


def test_binary_and_surrogates() -> None:
    result = pkcs11txt.scan(bytes(range(1, 256)) * 40)
    assert result.modules == () and result.warnings[-1].endswith("more problems like these.")
    [module] = pkcs11txt.parse("library=/x\ud800.so\nname=\udcff\n\n")
    assert module.library == "/x\ufffd\ufffd\ufffd.so" and module.name == "\ufffd" * 3


# ------------------------------------------------------------------- locks


def test_firefox_lock_held_by_a_live_process(tmp_path: Path, child: list[subprocess.Popen[str]]) -> None:
    profile = make_profile(tmp_path / "profile")
    assert locks.firefox_running(str(profile)) is None
    assert not (profile / ".parentlock").exists()  # probing never creates the file

    holder = lock_holder(child, profile / ".parentlock")
    found = locks.firefox_running(str(profile))
    assert found is not None and found.application == "Firefox" and found.pid is None
    assert found.evidence == f"Firefox holds the lock on {profile}/.parentlock"
    (profile / "lock").symlink_to(f"127.0.0.1:+{holder.pid}")
    found = locks.firefox_running(str(profile), application="Thunderbird")
    assert found is not None and (found.application, found.pid) == ("Thunderbird", holder.pid)
    assert f"(process {holder.pid})" in found.evidence
    db = NssDatabase(str(profile), "Firefox (snap)", "default", "sql", True, lock_dirs=(str(profile),))
    running = locks.running(db)
    assert running is not None and running.application == "Firefox (snap)"

    holder.kill()
    holder.wait(timeout=10)
    assert (profile / ".parentlock").exists()  # left behind, as Firefox leaves it
    assert locks.firefox_running(str(profile)) is None
    assert locks.running(db) is None


def test_firefox_lock_probe_leaves_odd_files_alone(tmp_path: Path) -> None:
    (tmp_path / "dir-lock").mkdir()
    (tmp_path / "dir-lock/.parentlock").mkdir()
    assert locks.firefox_running(str(tmp_path / "dir-lock")) is None
    (tmp_path / "link-lock").mkdir()
    (tmp_path / "link-lock/.parentlock").symlink_to(tmp_path / "elsewhere")
    assert locks.firefox_running(str(tmp_path / "link-lock")) is None
    assert not (tmp_path / "elsewhere").exists()
    (tmp_path / "fifo-lock").mkdir()
    os.mkfifo(tmp_path / "fifo-lock/.parentlock")
    assert locks.firefox_running(str(tmp_path / "fifo-lock")) is None


def test_chrome_singleton_lock(tmp_path: Path, child: list[subprocess.Popen[str]]) -> None:
    live = sleeper(child, "chrome")
    dead = sleeper(child, "chrome")
    not_a_browser = sleeper(child)  # the PID of a crashed Chrome, reused by another program
    dead.kill()
    dead.wait(timeout=10)
    host = socket.gethostname()
    dirs = {}
    for name, target in (("live", f"{host}-{live.pid}"), ("dead", f"{host}-{dead.pid}"),
                         ("other-host", f"not-{host}-{live.pid}"), ("garbage", "no-pid-here"),
                         ("pid-zero", f"{host}-0"), ("reused", f"{host}-{not_a_browser.pid}")):
        d = tmp_path / name / "google-chrome"
        d.mkdir(parents=True)
        (d / "SingletonLock").symlink_to(target)
        dirs[name] = str(d)
    (tmp_path / "none").mkdir()

    found = locks.chrome_running([str(tmp_path / "none"), dirs["dead"], dirs["live"]])
    assert found is not None and (found.application, found.pid) == ("Google Chrome", live.pid)
    assert f"-> {host}-{live.pid}" in found.evidence
    for stale in ("dead", "other-host", "garbage", "pid-zero", "reused"):
        assert locks.chrome_running([dirs[stale]]) is None, stale

    db = NssDatabase(f"{tmp_path}/.pki/nssdb", "Chrome/Chromium", "", "missing", False,
                     lock_dirs=(dirs["dead"], dirs["live"]))
    assert locks.running(db) == found
    live.kill()
    live.wait(timeout=10)
    assert locks.running(db) is None


def test_pid_alive() -> None:
    assert locks.pid_alive(os.getpid())
    assert locks.pid_alive(1)  # exists even where we may not signal it (EPERM counts as alive)
    assert not locks.pid_alive(0) and not locks.pid_alive(-1) and not locks.pid_alive(2**62)


def test_zombie_is_not_alive(child: list[subprocess.Popen[str]]) -> None:
    p = subprocess.Popen([sys.executable, "-c", "pass"], text=True)
    child.append(p)
    os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped: a zombie
    assert not locks.pid_alive(p.pid)
