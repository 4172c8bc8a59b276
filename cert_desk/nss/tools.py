"""Change and read NSS databases with NSS's own tools (``modutil``, ``certutil``).

Why the tools and not our own writer of ``pkcs11.txt``: they are what browsers' NSS is, so what
they write is what Firefox and Chrome read. They are not careful, though (verified with NSS 3.87,
see docs/field-notes.md): ``modutil`` takes no lock, rewrites ``pkcs11.txt`` by unlink + rename,
drops an entry that has no blank line after it, asks questions on stdin, and reports a duplicate
name as "Failure to load dynamic library". So every change here is a small transaction:

1. validate everything (name, library, database) before anything is touched;
2. keep ``pkcs11.txt``'s bytes;
3. run ``modutil -force`` with stdin closed, no terminal, a timeout and no PIN in its environment;
4. read the result back: pkcs11.txt as NSS reads it (:mod:`cert_desk.nss.pkcs11txt`) must differ by
   exactly the one module, and ``modutil -list`` must show it loaded (or gone); on any surprise
   put the old bytes back atomically and raise.

Nothing here takes a lock or checks for a running browser: the caller does that
(:mod:`cert_desk.services.browsers`). PINs reach ``certutil`` only as ``-f FILE`` with a 0600 file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cert_desk.errors import CertDeskError, InputError, PinError, PinRequiredError
from cert_desk.nss import pkcs11txt
from cert_desk.nss.models import LoadedModule, NssModule, NssSlot
from cert_desk.secrets import Secret

log = logging.getLogger(__name__)

TIMEOUT = 30.0
"""Seconds any NSS tool (or the library probe) may take; a module whose C_Initialize hangs must not
hang cert-desk."""

_PACKAGES = "the 'libnss3-tools' package on Debian/Ubuntu, 'nss-tools' on Fedora"
# Fedora ships tstclnt and the other test tools outside PATH.
_EXTRA_TOOL_DIRS = ("/usr/lib64/nss/unsupported-tools", "/usr/lib/nss/unsupported-tools")
_DB_FILES = ("cert9.db", "key4.db", "pkcs11.txt")
_LEGACY_FILES = ("cert8.db", "key3.db", "secmod.db")
# Environment variables that may hold a PIN or passphrase never reach an NSS tool.
_SECRET_VARIABLE = re.compile(r"PIN|PASS|SECRET", re.IGNORECASE)
_NOT_IN_NAMES = ("\n", "\r", "\0")
_CONVERT_HINT = "Start the application that uses it once: current Firefox and Chrome convert it to the sql format."


# ---------------------------------------------------------------------------- tools


def nss_tool(name: str) -> str:
    """The path of NSS tool ``name`` (``modutil``, ``certutil``, ``tstclnt``).

    Raises:
        InputError: it is not installed; the hint names the package.
    """
    path = shutil.which(name)
    if path is None:
        for directory in _EXTRA_TOOL_DIRS:
            candidate = os.path.join(directory, name)
            if os.access(candidate, os.X_OK):
                path = candidate
                break
    if path is None:
        raise InputError(f"NSS's '{name}' command is not installed.", f"Install {_PACKAGES}.")
    return path


def tool_env() -> dict[str, str]:
    """This process's environment without any variable that may hold a PIN or passphrase."""
    return {key: value for key, value in os.environ.items() if not _SECRET_VARIABLE.search(key)}


def _run(argv: list[str], what: str) -> subprocess.CompletedProcess[str]:
    """Run a tool the careful way: no stdin (modutil reads EOF as "continue"), no controlling
    terminal (NSS would otherwise open /dev/tty and wait for a PIN), no PIN in the environment,
    and a timeout. ``what`` names the tool in messages."""
    log.debug("running %s", argv)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, encoding="utf-8", errors="replace", env=tool_env(),
                                start_new_session=True)
    except OSError as err:
        raise InputError(f"{what} could not be started: {err.strerror or err}.", f"Install {_PACKAGES}.") from err
    try:
        out, err_text = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired as err:
        # its own session: kill the whole group (a module may have forked a helper holding the pipes)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise CertDeskError(f"{what} did not finish within {TIMEOUT:.0f} s and was stopped.",
                            "A PKCS#11 module (the one being added, or one the database loads) does not answer, "
                            "for example a reader that hangs: unplug and re-insert the token, then try again.") from err
    return subprocess.CompletedProcess(argv, proc.returncode, out, err_text)


def _modutil(*args: str) -> subprocess.CompletedProcess[str]:
    return _run([nss_tool("modutil"), *args, "-force"], "modutil")


def _tool_words(proc: subprocess.CompletedProcess[str]) -> str:
    """What a failed tool said, in one line: modutil's "Probable cause" when it gives one."""
    text = proc.stderr.strip() or proc.stdout.strip()
    cause = re.search(r'Probable cause : "(.*)"', text)
    if cause:
        return cause.group(1).rstrip(".")
    lines = [line.strip().removeprefix("ERROR: ") for line in text.splitlines() if line.strip()]
    return " ".join(lines).rstrip(".") or f"exit code {proc.returncode}"


# ------------------------------------------------------------------------- databases


def _directory_of(db: str) -> str:
    """The absolute directory of a database given as ``sql:DIR`` or ``DIR``, checked to hold an
    sql database (cert9.db): cert-desk reads and changes no other kind."""
    spec = db.strip()
    if spec.startswith("sql:"):
        spec = spec[len("sql:"):]
    elif re.match(r"^(dbm|extern|rdb|multiaccess):", spec):
        raise InputError(f"The NSS database {db} is not an sql database; cert-desk uses only 'sql:' databases.",
                         _CONVERT_HINT)
    if not spec:
        raise InputError("No NSS database directory was given.")
    directory = os.path.abspath(spec)
    if not os.path.exists(directory):
        raise InputError(f"There is no NSS database at {directory}: the directory does not exist.",
                         "Check the path, or create the database first.")
    if not os.path.isdir(directory):
        raise InputError(f"The NSS database path {directory} is not a directory.", "Give the database's directory.")
    if not os.path.exists(os.path.join(directory, "cert9.db")):
        if any(os.path.exists(os.path.join(directory, f)) for f in _LEGACY_FILES):
            raise InputError(f"The NSS database in {directory} has the old dbm format (cert8.db, secmod.db); "
                             "cert-desk changes only sql databases (cert9.db, pkcs11.txt).", _CONVERT_HINT)
        raise InputError(f"There is no NSS database in {directory} (no cert9.db).",
                         "Check the path, or create the database first.")
    return directory


def _check_writable(directory: str) -> None:
    """modutil needs the directory (it renames a new pkcs11.txt into place) and every database file
    (cert9.db, key4.db: SEC_ERROR_READ_ONLY otherwise). os.access also says no for root on a
    read-only file system."""
    for path in (directory, *(os.path.join(directory, f) for f in _DB_FILES)):
        if os.path.exists(path) and not os.access(path, os.W_OK):
            if os.statvfs(path).f_flag & os.ST_RDONLY:
                hint = "It is on a read-only file system (a read-only mount or an application sandbox)."
            else:
                hint = f"It belongs to {_owner(path)}: change it as that user, or make it writable (chmod u+w)."
            raise InputError(f"The NSS database {directory} is not writable by you ({path} cannot be changed).", hint)


def _owner(path: str) -> str:
    import pwd

    uid = os.stat(path).st_uid
    try:
        return f"user {pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return f"user ID {uid}"


def create_database(directory: str) -> None:
    """Create an empty sql NSS database (no password) the way Chrome's NSS would: ``certutil -N``.

    Missing directories are created with mode 0700 (the database holds keys). An existing database
    is never touched.

    Raises:
        InputError: a database (of any format) is already there, the path is not a directory, it is
            not writable, or certutil failed (what it made is removed again).
    """
    if not directory.strip():
        raise InputError("No directory was given for the new NSS database.")
    path = os.path.abspath(directory.removeprefix("sql:"))
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"{path} is not a directory; an NSS database is a directory.", "Choose another path.")
    there = [f for f in (*_DB_FILES, *_LEGACY_FILES) if os.path.exists(os.path.join(path, f))]
    if there:
        raise InputError(f"{path} already holds an NSS database ({', '.join(there)}); it was not changed.",
                         "Use the existing database, or choose an empty directory.")
    created = _make_private_dirs(path)
    try:
        _check_writable(path)
        proc = _run([nss_tool("certutil"), "-N", "-d", f"sql:{path}", "--empty-password"], "certutil")
        missing = [f for f in _DB_FILES if not os.path.exists(os.path.join(path, f))]
        if proc.returncode != 0 or missing:
            raise InputError(f"certutil could not create an NSS database in {path}: {_tool_words(proc)}.",
                             "Check that the disk is not full and the directory is yours.")
    except BaseException:
        for name in _DB_FILES:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(path, name))
        for made in reversed(created):
            with contextlib.suppress(OSError):
                os.rmdir(made)
        raise
    log.info("created NSS database sql:%s", path)


def _make_private_dirs(path: str) -> list[str]:
    """Create ``path`` and its missing parents with mode 0700; returns what was created (outermost
    first). ``os.makedirs`` would give the parents the umask's mode (~/.pki would be world-readable)."""
    missing: list[str] = []
    current = path
    while not os.path.exists(current):
        missing.append(current)
        current = os.path.dirname(current)
    created: list[str] = []
    try:
        for directory in reversed(missing):
            os.mkdir(directory, 0o700)
            created.append(directory)
    except OSError as err:
        for made in reversed(created):
            with contextlib.suppress(OSError):
                os.rmdir(made)
        raise InputError(f"The directory {path} cannot be created: {err.strerror or err}.",
                         "Choose a directory you can write to.") from err
    return created


# ---------------------------------------------------------------------------- reading


def list_loaded(db_spec: str) -> tuple[LoadedModule, ...]:
    """The modules NSS loads from the database (``modutil -list``), with their slots and tokens.

    A module whose library is gone or whose C_Initialize fails is listed with status
    ``Not loaded`` and no slots.

    Raises:
        InputError: not an sql database, or modutil refused it.
        CertDeskError: modutil timed out or printed something this parser does not know.
    """
    directory = _directory_of(db_spec)
    proc = _modutil("-list", "-dbdir", f"sql:{directory}")
    if proc.returncode != 0:
        raise InputError(f"modutil cannot list the modules of {directory}: {_tool_words(proc)}.")
    if "Listing of PKCS #11 Modules" not in proc.stdout:
        raise CertDeskError(f"modutil -list printed something unexpected for {directory}: "
                            f"{proc.stdout.strip()[:200]!r}.", "Check the NSS tools' version (3.35 or newer).")
    return _parse_list(proc.stdout)


_LIST_HEADER = re.compile(r"^ *(\d+)\. (.*)$")


def _parse_list(text: str) -> tuple[LoadedModule, ...]:
    """Parse ``modutil -list``: a ``  N. name`` line per module, then tab-indented ``key: value``
    lines (``library name``, ``status``, and per slot ``slot`` then ``token``). Values are kept
    as printed (a module name may end in a space); only ``\\n`` ends a line."""
    modules: list[LoadedModule] = []
    current: dict[str, str] | None = None
    slots: list[list[str]] = []

    def flush() -> None:
        if current is not None:
            modules.append(LoadedModule(current["name"], current["library"], current["status"],
                                        tuple(NssSlot(name, token) for name, token in slots)))

    for line in text.split("\n"):
        header = _LIST_HEADER.match(line)
        if header:
            flush()
            current, slots = {"name": header.group(2), "library": "", "status": ""}, []
            continue
        if current is None or not line.startswith("\t"):
            continue
        key, _, value = line.lstrip().partition(":")
        value = value.removeprefix(" ")
        if key == "library name":
            current["library"] = value
        elif key == "status":
            current["status"] = value
        elif key == "slot":
            slots.append([value, ""])
        elif key == "token" and slots:
            slots[-1][1] = value
    flush()
    return tuple(modules)


# ---------------------------------------------------------------------------- validation


def _check_name(name: str, adding: bool) -> None:
    if not name.strip():
        raise InputError("The module name is empty.", "Give the module a name, for example the token's product name.")
    if any(c in name for c in _NOT_IN_NAMES):
        raise InputError(f"The module name {name!r} contains a line break or NUL; pkcs11.txt keeps one name per line.",
                         "Use a name on one line.")
    if not adding:
        return
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name):
        raise InputError(f"The module name {name!r} contains control characters.", "Use printable characters.")
    if name[:1] in ('"', "'"):
        raise InputError(f"The module name {name!r} starts with a quote.",
                         "modutil writes the name into pkcs11.txt without quoting it, and NSS then reads a leading "
                         "quote as the start of a quoted value: the name would come back changed or empty.")
    if name != name.strip():
        raise InputError(f"The module name {name!r} starts or ends with a space.",
                         "modutil drops spaces at the start of a name when it writes pkcs11.txt (so the module "
                         "could not be found by that name again), and spaces at the end cannot be seen in a "
                         "browser: remove them.")


_PROBE = (
    "import ctypes, os, sys\n"
    "try:\n"
    "    lib = ctypes.CDLL(sys.argv[-1])\n"
    "except OSError as err:\n"
    "    sys.stdout.write(str(err)); sys.stdout.flush(); os._exit(2)\n"
    "os._exit(0 if hasattr(lib, 'C_GetFunctionList') else 3)\n"
)


PROBE_OPTION = "--probe-pkcs11-library"
"""``cert-desk --probe-pkcs11-library PATH``: the probe above, in a bundled (frozen) cert-desk, whose
``sys.executable`` is cert-desk itself and takes no ``-c``."""


def probe_command(path: str) -> list[str]:
    if getattr(sys, "frozen", False):
        return [sys.executable, PROBE_OPTION, path]
    return [sys.executable, "-I", "-c", _PROBE, path]


def probe_main() -> None:
    """Run the probe in this process (it ends the process): the frozen launcher's side."""
    exec(compile(_PROBE, "<pkcs11 library probe>", "exec"), {"__name__": "__probe__"})  # noqa: S102 - our own code


def _check_library(library: str) -> str:
    """The absolute path of a loadable PKCS#11 library, or InputError.

    Loadability is tested the way NSS will load it, with dlopen and a C_GetFunctionList lookup,
    but in a throwaway Python subprocess (the library's constructors run there, not in cert-desk,
    and a crash or hang costs nothing). This also catches a wrong architecture and missing
    dependencies, which reading the ELF symbol table would not.
    """
    if not library.strip():
        raise InputError("No PKCS#11 library was given.", "Choose the token's PKCS#11 module (a .so file).")
    if any(c in library for c in _NOT_IN_NAMES):
        raise InputError(f"The library path {library!r} contains a line break or NUL.", "Check the path.")
    path = os.path.abspath(library)
    if not os.path.exists(path):
        raise InputError(f"The PKCS#11 library {path} does not exist.",
                         "Check the path; 'cert-desk modules' lists the installed modules.")
    if not os.path.isfile(path):
        raise InputError(f"The PKCS#11 library {path} is not a file.", "Choose the module's .so file.")
    if not os.access(path, os.R_OK):
        raise InputError(f"The PKCS#11 library {path} cannot be read (permission denied).",
                         "Choose a library your user can read.")
    proc = _run(probe_command(path), "The library check")
    if proc.returncode == 3:
        raise InputError(f"{path} is not a PKCS#11 module: it does not export C_GetFunctionList.",
                         "Choose the vendor's PKCS#11 library (a .so file that exports C_GetFunctionList).")
    if proc.returncode != 0:
        reason = proc.stdout.strip() or proc.stderr.strip() or f"the check ended with exit code {proc.returncode}"
        raise InputError(f"The library {path} cannot be loaded: {reason}.",
                         "Choose a PKCS#11 library built for this system (64-bit, its dependencies installed).")
    return path


# ---------------------------------------------------------------------------- changing


@dataclass(frozen=True)
class _Snapshot:
    """pkcs11.txt before a change: its bytes (None: there was none), mode and owner, what NSS
    reads from it, and whether modutil's temporary pkcs11.txu existed then."""

    path: str
    data: bytes | None
    mode: int
    uid: int
    gid: int
    txu_existed: bool
    scan: pkcs11txt.Pkcs11Txt

    @property
    def txu(self) -> str:
        return self.path[:-1] + "u"


def _snapshot(directory: str) -> _Snapshot:
    scan = pkcs11txt.read_scan(directory)  # refuses a huge file or a FIFO in its place
    path = os.path.join(directory, pkcs11txt.FILE_NAME)
    try:
        with open(path, "rb") as fh:
            data: bytes | None = fh.read()
            st = os.fstat(fh.fileno())
        mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
    except FileNotFoundError:
        data, mode, uid, gid = None, 0o600, os.getuid(), os.getgid()
    except OSError as err:
        raise InputError(f"{path} cannot be read: {err.strerror or err}.", "Check the file's permissions.") from err
    return _Snapshot(path, data, mode, uid, gid, os.path.exists(os.path.join(directory, "pkcs11.txu")), scan)


def _refuse_invisible_entries(snap: _Snapshot) -> None:
    """A last entry without a line break is invisible to NSS, so no read-back could notice modutil
    deleting it (which its rewrite does): refuse the change instead."""
    if snap.scan.dropped:
        names = ", ".join(repr(m.name) for m in snap.scan.dropped)
        raise InputError(f"The last entry of {snap.path} ({names}) has no line break at its end: NSS ignores it, "
                         "and modutil would delete it. Nothing was changed.",
                         "Open pkcs11.txt in an editor and end it with an empty line (or remove that entry).")


def _pairs(modules: tuple[NssModule, ...]) -> Counter[tuple[str, str]]:
    return Counter((m.name, m.library) for m in modules)


def _restore(snap: _Snapshot) -> None:
    """Put pkcs11.txt back byte for byte, atomically (temporary file in the same directory,
    fsync, rename), and remove a pkcs11.txu modutil left behind."""
    if not snap.txu_existed:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(snap.txu)
    try:
        with open(snap.path, "rb") as fh:
            current: bytes | None = fh.read()
    except FileNotFoundError:
        current = None
    if current == snap.data:
        return
    if snap.data is None:
        os.unlink(snap.path)
        return
    directory = os.path.dirname(snap.path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".pkcs11.txt.", suffix=".cert-desk")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(snap.data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, snap.mode)
        if (snap.uid, snap.gid) != (os.getuid(), os.getgid()):
            with contextlib.suppress(OSError):
                os.chown(tmp, snap.uid, snap.gid)
        os.replace(tmp, snap.path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    log.info("restored %s", snap.path)


def _transaction(snap: _Snapshot, args: tuple[str, ...], *, expect: str, verb: str, verify: Callable[[], None],
                 hint: str = "") -> None:
    """Run one modutil change; on failure, timeout or a read-back that is not what ``verify``
    expects, restore pkcs11.txt and raise (the original error; a failed restore is said too)."""
    try:
        proc = _modutil(*args)
        if proc.returncode != 0 or expect not in proc.stdout:
            raise InputError(f"modutil could not {verb} in {os.path.dirname(snap.path)}: {_tool_words(proc)}.",
                             f"pkcs11.txt was left as it was.{hint}{_blank_line_hint(snap)}")
        verify()
    except BaseException as err:
        try:
            _restore(snap)
        except OSError as restore_err:
            said = err.message if isinstance(err, CertDeskError) else str(err)
            raise CertDeskError(f"{said} Also, {snap.path} could not be put back as it was: "
                                f"{restore_err.strerror or restore_err}.",
                                "Check the module list in the browser's device manager.") from err
        raise


def _blank_line_hint(snap: _Snapshot) -> str:
    if snap.scan.at_risk:
        return (" Its last entry has no empty line after it, which makes modutil drop that entry: open pkcs11.txt "
                "in an editor, add an empty line at the end, and try again.")
    return ""


def _refuse_in_sandbox(what: str) -> None:
    """Inside a Flatpak, a module path is the sandbox's (/app/lib/...), which the host's browser
    cannot load, and a running Chrome's PID is invisible: changing a browser's database from there
    would write a registration that fails and could race a running browser."""
    from cert_desk.paths import in_flatpak

    if in_flatpak():
        raise InputError(f"cert-desk cannot {what} in a browser's database from inside its Flatpak sandbox: the "
                         "module path would be the sandbox's, which the browser cannot load.",
                         "Register the host's module with cert-desk installed outside Flatpak (pipx), or with "
                         "modutil on the host; the Browsers pane still reads the databases back.")


def add_module(db_dir: str, name: str, library: str, *, before: Callable[[], None] | None = None) -> bool:
    """Register PKCS#11 ``library`` as ``name`` in the database in ``db_dir`` (``modutil -add``).

    Idempotent: when the database already registers the library's real path (under any name, a
    symlink included) nothing is done. After the change NSS must list the module as ``loaded``
    and every module registered before must still be there; otherwise pkcs11.txt is put back.

    ``before`` runs right before modutil, after the checks (probing the library takes seconds):
    the caller's last look for a browser that started meanwhile; it raises to stop the change.

    Returns:
        True when the module was added, False when it was already there.

    Raises:
        InputError: a bad name, a library that is missing or not a PKCS#11 module, a database that
            is missing, not sql or not writable, the name already used for another library, or
            modutil failed (pkcs11.txt is then byte-identical to before).
        CertDeskError: modutil timed out, or pkcs11.txt could not be restored.
    """
    _refuse_in_sandbox("register a module")
    _check_name(name, adding=True)
    directory = _directory_of(db_dir)
    _check_writable(directory)
    path = _check_library(library)
    snap = _snapshot(directory)
    modules = snap.scan.modules
    same = pkcs11txt.find(modules, path)
    for module in modules:
        if module.name == name and module not in same:
            was = module.library or "NSS's internal module"
            raise InputError(f"The NSS database {directory} already has a module named {name!r}, for {was}; "
                             f"it cannot also name {path}.",
                             "Choose another name, or remove the existing module first.")
    if same:
        log.info("%s already registers %s as %r: nothing to do", directory, path, same[0].name)
        return False
    _refuse_invisible_entries(snap)

    def verify() -> None:
        _check_entries(snap, _pairs(modules) + Counter([(name, path)]), f"adding {name!r}")
        loaded = [m for m in list_loaded(directory) if (m.name, m.library) == (name, path)]
        if not loaded or loaded[0].status != "loaded":
            status = loaded[0].status if loaded else "missing from the list"
            raise InputError(f"NSS does not load the module {name!r} ({path}) after adding it: {status}. "
                             "pkcs11.txt was put back as it was.",
                             "The module may need its own configuration (for SoftHSM2: SOFTHSM2_CONF).")

    proxy = next((m for m in modules if m.p11_kit_proxy), None)
    hint = (f" The database also loads p11-kit's proxy ({proxy.name!r}), which may load this module already; "
            "NSS cannot initialise it twice." if proxy else "")
    if before is not None:
        before()
    _transaction(snap, ("-add", name, "-libfile", path, "-dbdir", f"sql:{directory}"),
                 expect=f'Module "{name}" added to database.', verb=f"add the module {name!r} ({path})",
                 verify=verify, hint=hint)
    log.info("added module %r (%s) to %s", name, path, directory)
    return True


def remove_module(db_dir: str, name: str, *, before: Callable[[], None] | None = None) -> bool:
    """Remove the module registered as ``name`` (``modutil -delete``; with duplicates, the first,
    as NSS does). Afterwards NSS must no longer load it and every other module must still be
    registered; otherwise pkcs11.txt is put back.

    Returns:
        True when it was removed, False when no module has that name.

    Raises:
        InputError: a bad name, NSS's own module, a database that is missing, not sql or not
            writable, or modutil failed (pkcs11.txt is then byte-identical to before).
        CertDeskError: modutil timed out, or pkcs11.txt could not be restored.
    """
    _refuse_in_sandbox("remove a module")
    _check_name(name, adding=False)
    directory = _directory_of(db_dir)
    _check_writable(directory)
    snap = _snapshot(directory)
    match = next((m for m in snap.scan.modules if m.name == name), None)
    if match is None:
        return False
    if match.internal:
        raise InputError(f"{name!r} is NSS's own module in {directory}; it cannot be removed.",
                         "Remove only modules that were added for a token.")
    _refuse_invisible_entries(snap)
    removed = (name, match.library)
    if before is not None:
        before()

    def verify() -> None:
        after = _check_entries(snap, _pairs(snap.scan.modules) - Counter([removed]), f"removing {name!r}")
        loaded = [m for m in list_loaded(directory) if (m.name, m.library) == removed]
        if len(loaded) > after[removed]:
            raise InputError(f"NSS still loads the module {name!r} from {directory} after removing it. "
                             "pkcs11.txt was put back as it was.")

    _transaction(snap, ("-delete", name, "-dbdir", f"sql:{directory}"),
                 expect=f'Module "{name}" deleted from database.', verb=f"remove the module {name!r}", verify=verify)
    log.info("removed module %r (%s) from %s", name, match.library, directory)
    return True


def _check_entries(snap: _Snapshot, expected: Counter[tuple[str, str]], doing: str) -> Counter[tuple[str, str]]:
    """Compare what pkcs11.txt registers now (as NSS reads it) with what it should after the change;
    raises when modutil dropped or added anything else. Returns the registrations now."""
    directory = os.path.dirname(snap.path)
    after = _pairs(pkcs11txt.read(directory))
    if after == expected:
        return after
    lost = sorted(repr(name) for name, _ in expected - after)
    extra = sorted(repr(name) for name, _ in after - expected)
    what = "; ".join(part for part in (f"dropped {', '.join(lost)}" if lost else "",
                                       f"left {', '.join(extra)}" if extra else "") if part)
    raise InputError(f"modutil {what} while {doing} in {directory}; pkcs11.txt was put back as it was.",
                     ("Nothing was changed." + _blank_line_hint(snap)).strip())


# ---------------------------------------------------------------------- certificates


@contextlib.contextmanager
def pin_file(secret: Secret) -> Iterator[str]:
    """A 0600 file holding the PIN (no line break) for ``certutil -f`` / ``tstclnt -w``, deleted
    when the block ends. It is made in ``$XDG_RUNTIME_DIR`` (a per-user tmpfs) when there is one."""
    value = secret.reveal()
    if any(c in value for c in _NOT_IN_NAMES):
        raise InputError(f"The PIN from {secret.source} contains a line break or NUL; NSS cannot read such a PIN "
                         "from a file.", "Use the PIN as the token knows it, on one line.")
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    directory = runtime if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK) else None
    fd, path = tempfile.mkstemp(prefix="cert-desk-pin-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(value)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def token_certificates(db_spec: str, token_label: str, pin_file: str | None) -> tuple[tuple[str, str], ...]:
    """The certificates NSS sees on one token of the database (``certutil -L -h TOKEN``), as
    ``(nickname, trust)`` pairs: nicknames are ``TOKEN:label`` as a browser shows them.

    Never ``-h all``: with ``-f`` certutil would try the PIN on every token and waste tries on the
    others. A wrong PIN is tried once (certutil does not retry with a file). ``pin_file`` must be a
    0600 file of the caller's (see :func:`pin_file`); without one, a token that requires login
    fails with :class:`PinRequiredError` and no login is attempted (certutil has no terminal).

    Raises:
        InputError: not an sql database, no such token in it, a PIN file others can read.
        PinRequiredError, PinError: the token wants a PIN / refused the PIN.
    """
    directory = _directory_of(db_spec)
    if not token_label.strip() or any(c in token_label for c in _NOT_IN_NAMES):
        raise InputError(f"The token label {token_label!r} is empty or not on one line.", "Give the token's label.")
    if token_label.strip().lower() == "all":
        raise InputError("The token label 'all' means every token to certutil; cert-desk asks one token at a time.",
                         "Give the label of one token (a PIN tried on every token wastes tries on the others).")
    if pin_file is not None:
        _check_pin_file(pin_file)
    tokens = sorted({slot.token for module in list_loaded(directory) for slot in module.slots if slot.token})
    if token_label not in tokens:
        raise InputError(f"No token labelled {token_label!r} is loaded by the NSS database {directory}.",
                         f"It has: {', '.join(repr(t) for t in tokens)}. Is the token's module registered and the "
                         "token plugged in?")
    argv = [nss_tool("certutil"), "-L", "-d", f"sql:{directory}", "-h", token_label]
    if pin_file is not None:
        argv += ["-f", pin_file]
    proc = _run(argv, "certutil")
    if proc.returncode != 0:
        if "SEC_ERROR_BAD_PASSWORD" in proc.stderr:
            if pin_file is None:
                raise PinRequiredError(f"The token {token_label!r} needs its PIN before NSS lists its certificates.")
            raise PinError(f"The token {token_label!r} refused the PIN.",
                           hint="certutil tried it once. Check the PIN before trying again: each wrong PIN costs "
                                "one of the token's tries.")
        raise InputError(f"certutil cannot list the certificates on {token_label!r}: {_tool_words(proc)}.")
    return _parse_certificates(proc.stdout)


def _check_pin_file(path: str) -> None:
    try:
        st = os.stat(path)
    except OSError as err:
        raise InputError(f"The PIN file {path} cannot be used: {err.strerror or err}.") from err
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"The PIN file {path} is not a regular file.")
    if st.st_mode & 0o077 or st.st_uid != os.geteuid():
        raise InputError(f"The PIN file {path} is not private (mode {stat.S_IMODE(st.st_mode):04o}); it must be "
                         "yours with mode 0600.", "Make it with chmod 600, or let cert-desk write it (pin_file).")


_CERT_LINE = re.compile(r"^(.*?)\s+([A-Za-z]*,[A-Za-z]*,[A-Za-z]*)\s*$")


def _parse_certificates(text: str) -> tuple[tuple[str, str], ...]:
    """Parse ``certutil -L``: a two-line header ending in ``SSL,S/MIME,JAR/XPI``, then one line per
    certificate, the nickname padded to a column and the trust flags (``u,u,u``, ``CT,C,C``, ``,,``)."""
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if "SSL,S/MIME,JAR/XPI" in line), None)
    if start is None:
        raise CertDeskError(f"certutil -L printed something unexpected: {text.strip()[:200]!r}.")
    found: list[tuple[str, str]] = []
    for line in lines[start + 1:]:
        match = _CERT_LINE.match(line)
        if match:
            found.append((match.group(1), match.group(2)))
    return tuple(found)
