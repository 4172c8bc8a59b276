"""Find every NSS database the user's browsers and mail client read, without opening any.

- **Chrome/Chromium** (deb, rpm, flatpak Chromium) share one database: ``~/.pki/nssdb``.
  Newer Chrome (M146+) uses ``~/.local/share/pki/nssdb`` instead, unless the old one exists.
  Both are listed when both exist (the one Chrome ignores says so); a missing ``~/.pki/nssdb``
  is listed as ``missing`` because cert-desk can create it, and it then wins for old and new
  Chrome alike. It is not listed when only the new one exists: creating it would hide that one.
- **Chromium from the snap** has a database of its own: the snap's HOME is
  ``~/snap/chromium/<revision>``, so NSS opens ``~/snap/chromium/current/.pki/nssdb`` (kept with
  ``current`` in the path: snapd copies the data to each new revision).
- **Firefox and Thunderbird** keep one database per profile; the profiles are listed in
  ``profiles.ini`` (classic, snap, flatpak; and Firefox 147's XDG place, ``~/.config/mozilla/firefox``).

A database's directory is its real path, so a profile reached through a symlink or named
by two ini files is listed once. Nothing here raises on what it reads: an ini file is read up
to :data:`MAX_INI_BYTES`; lines that are not ini (garbage, binary, NUL bytes) are skipped with
a warning in the log, and profiles whose directory is missing are listed as ``missing`` with the
reason.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

from cert_desk.nss.models import NssDatabase
from cert_desk.nss.pkcs11txt import read_capped

log = logging.getLogger(__name__)

MAX_INI_BYTES = 1024 * 1024
"""profiles.ini / installs.ini are read up to this size (a real one is a few hundred bytes)."""

CHROME = "Chrome/Chromium"
CHROME_NSSDB = ".pki/nssdb"
CHROME_XDG_NSSDB = ".local/share/pki/nssdb"
CHROMIUM_SNAP = "snap/chromium"
CHROMIUM_SNAP_NSSDB = "snap/chromium/current/.pki/nssdb"
CHROMIUM_SNAP_USER_DATA = "snap/chromium/common/chromium"

# User-data directories whose SingletonLock says a Chrome that reads ~/.pki/nssdb is running.
# The flatpak Chrome is kept here although it has no access to ~/.pki: a false "running" only
# asks the user to close a browser, a missed one loses their change.
CHROME_USER_DATA_DIRS: tuple[str, ...] = (  # every browser built on Chromium reads ~/.pki/nssdb
    ".config/google-chrome",
    ".config/google-chrome-beta",
    ".config/google-chrome-unstable",
    ".config/chromium",
    ".config/BraveSoftware/Brave-Browser",
    ".config/microsoft-edge",
    ".config/microsoft-edge-beta",
    ".config/vivaldi",
    ".config/opera",
    ".var/app/com.google.Chrome/config/google-chrome",
    ".var/app/org.chromium.Chromium/config/chromium",
)

FIREFOX_ROOTS: tuple[tuple[str, str], ...] = (
    (".mozilla/firefox", "Firefox"),
    (".config/mozilla/firefox", "Firefox"),
    ("snap/firefox/common/.mozilla/firefox", "Firefox (snap)"),
    (".var/app/org.mozilla.firefox/.mozilla/firefox", "Firefox (flatpak)"),
)
THUNDERBIRD_ROOTS: tuple[tuple[str, str], ...] = (
    (".thunderbird", "Thunderbird"),
    ("snap/thunderbird/common/.thunderbird", "Thunderbird (snap)"),
    (".var/app/org.mozilla.Thunderbird/.thunderbird", "Thunderbird (flatpak)"),
)

SQL_FILES = ("cert9.db", "key4.db", "pkcs11.txt")
DBM_FILES = ("cert8.db", "key3.db", "secmod.db")
DBM_REASON = ("legacy format (cert8.db/key3.db/secmod.db) that NSS 3.35 and later no longer write by default; "
              "the application converts it to cert9.db/key4.db when it next starts (Firefox since 58)")
CHROME_MISSING = "Chrome has not created it yet; cert-desk can create it"


def discover(home: str | os.PathLike[str] | None = None) -> tuple[NssDatabase, ...]:
    """Every NSS database under ``home`` (default: the user's home directory).

    Order: Chrome/Chromium, then Firefox profiles (default profiles first), then Thunderbird
    (default first). Never raises for what it finds on disk.
    """
    try:
        root = Path(home) if home is not None else Path.home()
    except RuntimeError:  # no HOME and no passwd entry
        log.warning("no home directory: no NSS database to look for")
        return ()
    found: dict[str, NssDatabase] = {}
    for db in (*_chrome(root), *_mozilla(root, FIREFOX_ROOTS), *_mozilla(root, THUNDERBIRD_ROOTS)):
        key = os.path.realpath(db.directory)
        seen = found.get(key)
        if seen is None:
            found[key] = db
        elif db.default and not seen.default:
            found[key] = dataclasses.replace(seen, default=True)
    return tuple(found.values())


def database_at(directory: str) -> NssDatabase:
    """A database the user named by its directory (``--db``), read as no application's.

    Its directory is also its lock directory, so a Firefox/Thunderbird profile or a Chrome
    user-data directory given here is still seen as in use.
    """
    real = os.path.realpath(os.path.expanduser(directory))
    fmt, supported, reason = database_state(
        real, "the directory does not exist; cert-desk can create the database there",
        "no NSS database here yet; cert-desk can create one")
    return NssDatabase(real, "NSS database", "", fmt, supported, reason, (real,))


def database_state(directory: str, missing: str, empty: str) -> tuple[str, bool, str]:
    """(format, supported, reason) of the database in ``directory``.

    Args:
        missing: The reason when the directory does not exist.
        empty: The reason when it exists but holds no database files.
    """
    try:
        names = set(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return "missing", False, missing
    except OSError as e:
        return "missing", False, f"cannot read {directory}: {e.strerror}"
    has = {n for n in (*SQL_FILES, *DBM_FILES) if n in names and os.path.isfile(os.path.join(directory, n))}
    sql = [n for n in SQL_FILES if n in has]
    dbm = [n for n in DBM_FILES if n in has]
    if {"cert9.db", "key4.db"} & has or (sql and not dbm):
        notes = []
        if absent := [n for n in SQL_FILES if n not in has]:
            notes.append(f"{' and '.join(absent)} not there yet: NSS creates {'it' if len(absent) == 1 else 'them'} "
                         "when it next opens the database")
        if dbm:
            notes.append(f"{', '.join(dbm)} {'is' if len(dbm) == 1 else 'are'} left over from the legacy format; "
                         "NSS no longer reads them")
        return "sql", True, "; ".join(notes)
    if dbm:
        return "dbm", False, DBM_REASON
    return "missing", False, empty


def parse_profiles_ini(text: str, base: str, *, installs: str = "") -> list[tuple[str, str, bool]]:
    """The profiles ``profiles.ini`` lists: (name, absolute directory, is default).

    Args:
        text: The content of profiles.ini.
        base: The directory of profiles.ini (``IsRelative=1`` paths are relative to it).
        installs: The content of installs.ini beside it, if any.

    Since Firefox 67 each installation has its own default profile, named by ``Default=`` in an
    ``[Install…]`` section (of profiles.ini, or of installs.ini); ``Default=1`` in a profile
    section is the default of older versions and counts only when no installation names one.
    A section name that repeats is read as two sections (listing a profile too many is
    harmless, missing one is not); a key that repeats within a section: the last one counts.
    Profiles are returned in file order, each directory once.
    """
    profiles: list[tuple[str, str, bool]] = []
    install_defaults: set[str] = set()
    for section, keys in _sections(text, os.path.join(base, "profiles.ini")):
        if section.startswith("Install") and "Default" in keys:
            install_defaults.add(_profile_dir(base, keys["Default"], relative=not os.path.isabs(keys["Default"])))
        if not section.startswith("Profile"):
            continue
        path = keys.get("Path", "")
        if not path:
            log.warning("%s/profiles.ini: [%s] has no Path=; skipped", base, section)
            continue
        relative = keys.get("IsRelative", "") == "1"
        if not relative and not os.path.isabs(path):
            log.warning("%s/profiles.ini: [%s] Path=%s is relative but IsRelative is not 1; skipped",
                        base, section, path)
            continue
        directory = _profile_dir(base, path, relative=relative)
        profiles.append((keys.get("Name") or os.path.basename(directory), directory, keys.get("Default") == "1"))
    for _section, keys in _sections(installs, os.path.join(base, "installs.ini")):
        if "Default" in keys:
            install_defaults.add(_profile_dir(base, keys["Default"], relative=not os.path.isabs(keys["Default"])))
    out: dict[str, tuple[str, str, bool]] = {}
    for name, directory, flagged in profiles:
        default = directory in install_defaults if install_defaults else flagged
        first = out.get(directory, (name, directory, False))
        out[directory] = (first[0], directory, default or first[2])
    return list(out.values())


# ------------------------------------------------------------------- internals


def _chrome(home: Path) -> Iterator[NssDatabase]:
    legacy = home / CHROME_NSSDB
    xdg = home / CHROME_XDG_NSSDB
    # not filtered by existence: a browser first started after the scan is still found when a change is made
    lock_dirs = tuple(str(home / d) for d in CHROME_USER_DATA_DIRS)
    if os.path.isdir(legacy) or not os.path.isdir(xdg):
        yield _database(str(legacy), CHROME, "", lock_dirs, missing=CHROME_MISSING,
                        empty=CHROME_MISSING)
    if os.path.isdir(xdg):
        db = _database(str(xdg), CHROME, "", lock_dirs, missing=CHROME_MISSING, empty=CHROME_MISSING)
        if os.path.isdir(legacy):
            unused = f"not used: Chrome reads {legacy} while that exists"
            db = dataclasses.replace(db, reason=f"{unused}; {db.reason}" if db.reason else unused)
        yield db
    if os.path.isdir(home / CHROMIUM_SNAP):
        snap_lock = home / CHROMIUM_SNAP_USER_DATA
        nssdb = home / CHROMIUM_SNAP_NSSDB
        missing = "Chromium (snap) has not created it yet; cert-desk can create it"
        fmt, supported, reason = database_state(str(nssdb), missing, missing)
        # not resolved: "current" follows the snap to its next revision
        yield NssDatabase(os.path.abspath(nssdb), "Chromium (snap)", "", fmt, supported, reason,
                          (str(snap_lock),) if os.path.isdir(snap_lock) else ())


def _mozilla(home: Path, roots: tuple[tuple[str, str], ...]) -> list[NssDatabase]:
    """The profiles of every root, default profiles first (a stable sort keeps the file order)."""
    out: list[NssDatabase] = []
    for sub, application in roots:
        root = home / sub
        ini = _read_capped(root / "profiles.ini")
        if ini is None:
            continue
        installs = _read_capped(root / "installs.ini") or ""
        kind = application.split(" ")[0]
        for name, directory, default in parse_profiles_ini(ini, str(root), installs=installs):
            out.append(_database(
                directory, application, name, None, default=default,
                missing=f"the profile directory named in {root / 'profiles.ini'} does not exist",
                empty=f"{kind} has not created the profile's certificate database yet (it does when it next "
                      "starts with this profile)"))
    out.sort(key=lambda db: not db.default)
    return out


def _database(directory: str, application: str, profile: str, lock_dirs: tuple[str, ...] | None, *,
              missing: str, empty: str, default: bool = False) -> NssDatabase:
    """The database in ``directory`` (resolved), its own lock directory when ``lock_dirs`` is None."""
    real = os.path.realpath(directory)
    fmt, supported, reason = database_state(real, missing, empty)
    return NssDatabase(real, application, profile, fmt, supported, reason,
                       (real,) if lock_dirs is None else lock_dirs, default)


def _profile_dir(base: str, path: str, *, relative: bool) -> str:
    """Firefox's path descriptor made absolute: relative ones under ``base`` (``..`` allowed)."""
    if relative:
        return os.path.normpath(os.path.join(base, path.lstrip("/")))
    return os.path.normpath(path)


_SECTION = re.compile(r"\[([^\[\]]+)\]")


def _sections(text: str, what: str) -> Iterator[tuple[str, dict[str, str]]]:
    """The ``[section]`` / ``key=value`` structure of an ini file; every other line is skipped."""
    section: str | None = None
    keys: dict[str, str] = {}
    for number, raw in enumerate(re.split(r"\r\n|\r|\n", text), 1):
        line = raw.strip()
        if not line or line.startswith((";", "#")):
            continue
        if "\0" in line or "\ufffd" in line:
            log.warning("%s, line %d: binary or not UTF-8; skipped", what, number)
            continue
        if m := _SECTION.fullmatch(line):
            if section is not None:
                yield section, keys
            section, keys = m.group(1).strip(), {}
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            log.warning("%s, line %d: not a [section] or key=value line; skipped: %.60r", what, number, line)
            continue
        if section is None:
            log.warning("%s, line %d: key=value before any [section]; skipped", what, number)
            continue
        keys[key.strip()] = value.strip()
    if section is not None:
        yield section, keys


def _read_capped(path: Path) -> str | None:
    """The file's text (at most :data:`MAX_INI_BYTES`), or None when it cannot be read."""
    try:
        data = read_capped(path, MAX_INI_BYTES)
    except OSError as e:
        log.warning("cannot read %s: %s; skipped", path, e.strerror)
        return None
    if data is None:
        return None
    if len(data) > MAX_INI_BYTES:
        log.warning("%s is larger than %d KiB; only its first %d KiB were read", path,
                    MAX_INI_BYTES // 1024, MAX_INI_BYTES // 1024)
        data = data[:MAX_INI_BYTES].rpartition(b"\n")[0]  # drop the cut line
    return data.decode("utf-8", "replace")
