"""Is the application that owns an NSS database running right now?

NSS takes no lock on ``pkcs11.txt``, and ``modutil`` changes it under a running browser,
which does not load the new module until its next start and may later rewrite the file
without it. So cert-desk asks before it changes a database, from the marks each
application leaves:

- **Firefox / Thunderbird** hold an fcntl lock on ``<profile>/.parentlock`` while they run.
  The file stays after they exit, so only the lock counts: it is probed with a non-blocking
  ``lockf`` and released at once. The ``lock`` symlink beside it (``IP:+PID``) gives the PID.
- **Chrome / Chromium** leave ``SingletonLock`` -> ``hostname-PID`` in the user-data
  directory, and leave it behind when killed: it counts only when the host is this machine and
  the PID is a live process.

Nothing here creates, changes or removes a file. A probe that finds the lock free takes it for
a few microseconds; a Firefox starting in exactly that moment would report the profile in use.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import stat
from collections.abc import Sequence

from cert_desk.nss.models import NssDatabase, RunningApplication

log = logging.getLogger(__name__)

PARENTLOCK = ".parentlock"
MOZILLA_SYMLINK = "lock"
SINGLETON_LOCK = "SingletonLock"


def running(db: NssDatabase) -> RunningApplication | None:
    """The application using ``db`` now, or None.

    Every lock directory is checked for both kinds of mark, so a database given by path
    (whose owner is unknown) is covered too.
    """
    mozilla = db.application if db.application.startswith(("Firefox", "Thunderbird")) else "Firefox or Thunderbird"
    for directory in db.lock_dirs:
        found = firefox_running(directory, application=mozilla) or chrome_running((directory,))
        if found is not None:
            return found
    return None


def firefox_running(profile_dir: str, *, application: str = "Firefox") -> RunningApplication | None:
    """``application`` holds the profile in ``profile_dir`` (its ``.parentlock`` is locked), or None."""
    path = os.path.join(profile_dir, PARENTLOCK)
    if not _locked(path):
        return None
    pid = _mozilla_pid(profile_dir)
    evidence = f"{application} holds the lock on {path}"
    return RunningApplication(application, pid, f"{evidence} (process {pid})" if pid else evidence)


def chrome_running(user_data_dirs: Sequence[str]) -> RunningApplication | None:
    """The Chrome/Chromium whose ``SingletonLock`` in one of ``user_data_dirs`` names a live
    process on this machine, or None (a stale link, left by a killed browser, is logged)."""
    host = socket.gethostname()
    for directory in user_data_dirs:
        link = os.path.join(directory, SINGLETON_LOCK)
        try:
            target = os.readlink(link)
        except OSError:
            continue
        name, _, number = target.rpartition("-")
        pid = int(number) if number.isdigit() else 0
        if name != host:
            log.info("%s -> %s names another host (this is %s): not a browser running here", link, target, host)
            continue
        if not pid_alive(pid):
            log.info("%s -> %s is stale: process %s is not running", link, target, number)
            continue
        if not _browser_process(pid):
            # a lock left by a crash or power cut whose PID went to another program since (Chrome
            # itself does not trust the PID alone either)
            log.info("%s -> %s is stale: process %s is not a browser", link, target, number)
            continue
        application = _chrome_name(directory)
        return RunningApplication(application, pid,
                                  f"{link} -> {target}: {application} is running as process {pid} on this machine")
    return None


_BROWSER_NAMES = ("chrom", "brave", "msedge", "edge", "vivaldi", "opera")


def _browser_process(pid: int) -> bool:
    """The process looks like a Chromium-based browser (/proc/PID/comm); True when that cannot be
    read (another user's process: better a needless "close it" than a changed database)."""
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as fh:
            comm = fh.read().strip().lower()
    except OSError:
        return True
    return any(name in comm for name in _BROWSER_NAMES)


def pid_alive(pid: int) -> bool:
    """A process with this PID exists and is not a zombie (``kill(pid, 0)``; EPERM is alive)."""
    if pid <= 0:  # kill(0) and kill(-1) would mean process groups
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rpartition(b")")[2].split()[:1]
    except OSError:
        return True
    return state != [b"Z"]


def _locked(path: str) -> bool:
    """Another process holds a POSIX lock on ``path``; the file is never created.

    ``lockf(LOCK_EX)`` needs a descriptor open for writing; when the file is not writable for
    us, a shared lock on a read-only descriptor conflicts with Firefox's write lock just as well.
    """
    flags = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd, mode = os.open(path, os.O_RDWR | flags), fcntl.LOCK_EX
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            return False  # missing, a symlink, a directory...: no lock of Firefox's
        try:
            fd, mode = os.open(path, os.O_RDONLY | flags), fcntl.LOCK_SH
        except OSError:
            return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        try:
            fcntl.lockf(fd, mode | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EAGAIN):
                return True
            log.info("cannot probe the lock on %s: %s", path, e.strerror)
            return False
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _mozilla_pid(profile_dir: str) -> int | None:
    """The PID in the profile's ``lock`` symlink (``IP:+PID``), when it names a live process."""
    try:
        target = os.readlink(os.path.join(profile_dir, MOZILLA_SYMLINK))
    except OSError:
        return None
    number = target.rpartition(":+")[2]
    pid = int(number) if number.isdigit() else 0
    return pid if pid_alive(pid) else None


def _chrome_name(user_data_dir: str) -> str:
    base = os.path.basename(os.path.normpath(user_data_dir))
    return "Google Chrome" if "chrome" in base.lower() else "Chromium"
