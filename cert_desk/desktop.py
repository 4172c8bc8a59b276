"""Put cert-desk in the desktop's application menu: the ``.desktop`` file, the AppStream metainfo
and the icons, copied into ``$XDG_DATA_HOME`` (``~/.local/share``).

Why a command does this: pip and pipx install the files into the environment's own ``share/``
(``[tool.setuptools.data-files]``), which no desktop reads, and the environment's ``bin/`` is
often not on the desktop session's ``PATH``. So the copy's ``Exec=`` names the launcher by its
absolute path. A distribution package or Flatpak installs the same files itself.

The files are found in a PyInstaller bundle (``sys._MEIPASS/share``), in the source checkout this
module runs from (``packaging/linux``, ``resources/icons``), or in the installation's ``share/``.
Nothing here imports Qt.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cert_desk import APP_ID, APP_NAME, paths
from cert_desk import errors as E

log = logging.getLogger(__name__)

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
SYSTEM_DATA_DIR = Path("/usr/local/share")  # the first of XDG_DATA_DIRS' defaults; /usr/share is the distribution's
DESKTOP_FILE = f"applications/{APP_ID}.desktop"
METAINFO_FILE = f"metainfo/{APP_ID}.metainfo.xml"
TOOL_TIMEOUT = 60.0
# Exec= arguments holding one of these must be quoted (Desktop Entry Specification, "The Exec key")
_EXEC_RESERVED = frozenset(" \t\n\"'\\><~|&;$*?#()`")


def layout() -> tuple[str, ...]:
    """Every file of the integration, relative to a data directory (``share/``)."""
    icons = [f"icons/hicolor/{n}x{n}/apps/{APP_ID}.png" for n in ICON_SIZES]
    return (DESKTOP_FILE, METAINFO_FILE, *icons, f"icons/hicolor/scalable/apps/{APP_ID}.svg")


@dataclass(frozen=True)
class PackagedFiles:
    """Where this cert-desk's integration files are.

    Attributes:
        origin: ``"bundle"``, ``"checkout"`` or ``"installed"``.
        root: The bundle's or installation's ``share/``, or the checkout.
        sources: ``(path relative to a data directory, the file to copy there)``, in :func:`layout` order.
    """

    origin: str
    root: Path
    sources: tuple[tuple[str, Path], ...]


@dataclass(frozen=True)
class InstallResult:
    """What :func:`install` did.

    Attributes:
        data_dir: The data directory written to (``~/.local/share`` or ``/usr/local/share``).
        written: The files written, in :func:`layout` order.
        launcher: The program the ``.desktop`` file's ``Exec=`` starts.
        source: Where the files came from.
        refreshed: The cache tools that ran (``update-desktop-database``, ``gtk-update-icon-cache``).
    """

    data_dir: Path
    written: tuple[Path, ...]
    launcher: str
    source: PackagedFiles
    refreshed: tuple[str, ...]


@dataclass(frozen=True)
class UninstallResult:
    """What :func:`uninstall` did: the files removed (those of :func:`layout` that were there)."""

    data_dir: Path
    removed: tuple[Path, ...]
    refreshed: tuple[str, ...]


def data_dir(user: bool = True) -> Path:
    """``$XDG_DATA_HOME`` (default ``~/.local/share``), or the system-wide ``/usr/local/share``."""
    return paths.data_dir().parent if user else SYSTEM_DATA_DIR


def _share_sources(share: Path) -> tuple[tuple[str, Path], ...]:
    return tuple((rel, share / rel) for rel in layout())


def _checkout_sources(checkout: Path) -> tuple[tuple[str, Path], ...]:
    linux = checkout / "packaging" / "linux"
    special = {DESKTOP_FILE: linux / f"{APP_ID}.desktop", METAINFO_FILE: linux / f"{APP_ID}.metainfo.xml"}
    return tuple((rel, special.get(rel, checkout / "resources" / rel)) for rel in layout())


def _candidates() -> list[PackagedFiles]:
    found: list[PackagedFiles] = []
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        share = Path(bundle) / "share"
        found.append(PackagedFiles("bundle", share, _share_sources(share)))
    checkout = Path(__file__).resolve().parent.parent  # site-packages when installed: not a checkout
    if (checkout / "pyproject.toml").is_file():
        found.append(PackagedFiles("checkout", checkout, _checkout_sources(checkout)))
    schemes = [sysconfig.get_default_scheme(), sysconfig.get_preferred_scheme("user")]
    for prefix in [*(sysconfig.get_path("data", s) for s in schemes), sys.prefix]:
        share = Path(prefix) / "share"
        if all(c.root != share for c in found):
            found.append(PackagedFiles("installed", share, _share_sources(share)))
    return found


def find_files() -> PackagedFiles:
    """The first complete set of integration files: the bundle's, the checkout's, the installation's."""
    candidates = _candidates()
    for c in candidates:
        if all(source.is_file() for _, source in c.sources):
            return c
    places = ", ".join(str(c.root) for c in candidates)
    raise E.InputError(f"The desktop files of {APP_NAME} are not installed with it (looked in {places}).",
                       f"Install {APP_NAME} from its wheel (pip or pipx), which carries them, or run it from "
                       "its source checkout.")


def launcher() -> str:
    """The absolute path of the program that starts this cert-desk.

    A bundle's own executable (an AppImage's file, not its per-run mount); else the ``cert-desk``
    script running now, then the one next to this Python, then the one on ``PATH``.
    """
    if getattr(sys, "frozen", False):
        return os.environ.get("APPIMAGE") or sys.executable
    running = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    own_scripts = Path(sysconfig.get_path("scripts")) / APP_NAME
    for candidate in (running, own_scripts):
        if candidate is not None and candidate.name == APP_NAME and candidate.is_file() \
                and os.access(candidate, os.X_OK):
            return str(candidate.absolute())
    on_path = shutil.which(APP_NAME)
    if on_path:
        return str(Path(on_path).absolute())
    raise E.InputError(f"No '{APP_NAME}' launcher was found for the menu entry to start.",
                       f"Install {APP_NAME} with pip or pipx (they make the launcher), then run this again.")


def exec_value(program: str) -> str:
    """``program`` as the first word of an ``Exec=`` value: quoted when it must be, then with the
    string escape for ``\\`` (the Desktop Entry Specification's order).

    A ``%`` is refused rather than written as the specification's ``%%``: GLib's GDesktopAppInfo
    (GNOME's menu, ``gio launch``, anything that starts applications through GIO) looks for the
    program before it turns ``%%`` back into ``%``, finds none, and drops the entry without a word.
    """
    bad = next((ch for ch in "\n\r%" if ch in program), None)
    if bad is not None:
        what = "a '%'" if bad == "%" else "a line break"
        raise E.InputError(f"The launcher path {program!r} contains {what}, which a menu entry cannot start.",
                           f"Install {APP_NAME} in a directory whose path has none.")
    if not any(ch in _EXEC_RESERVED for ch in program):
        return program
    quoted = '"' + "".join("\\" + ch if ch in '"`$\\' else ch for ch in program) + '"'
    return quoted.replace("\\", "\\\\")


def desktop_entry(text: str, program: str) -> str:
    """The ``.desktop`` file ``text`` with every ``Exec=cert-desk ...`` starting ``program`` instead."""
    lines = text.splitlines(keepends=True)
    changed = 0
    for i, line in enumerate(lines):
        value = line.rstrip("\r\n")
        if value == f"Exec={APP_NAME}" or value.startswith(f"Exec={APP_NAME} "):
            lines[i] = f"Exec={exec_value(program)}{line[len('Exec=') + len(APP_NAME):]}"
            changed += 1
    if not changed:
        raise E.InternalError(f"The packaged {DESKTOP_FILE} has no 'Exec={APP_NAME}' line to point at the launcher.")
    return "".join(lines)


def _write(target: Path, data: bytes) -> None:
    """Write through a temporary file in the same directory, so a reader never sees half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_error(target: Path, err: OSError, user: bool) -> E.CertDeskError:
    hint = "Check that the directory is yours and the disk is not full." if user else \
        "Installing for every user needs root (sudo), or leave out --system to install for you."
    return E.InputError(f"Cannot write {target}: {err.strerror or err}.", hint)


def _run_quietly(argv: list[str]) -> bool:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        log.info("%s did not run: %s", argv[0], e)
        return False
    if proc.returncode != 0:
        log.info("%s failed (%d): %s", argv[0], proc.returncode, proc.stderr.strip())
    return proc.returncode == 0


def refresh_caches(data: Path) -> tuple[str, ...]:
    """Bring the desktop's caches of ``data`` up to date; returns the tools that did. Never fails.

    The icon cache is refreshed only where one exists: GTK trusts a cache as long as the theme
    directory itself is older, so a cache created here would hide the icons other programs put
    in later without one (xdg-icon-resource follows the same rule).
    """
    done: list[str] = []
    applications = data / "applications"
    tool = shutil.which("update-desktop-database")
    if tool and applications.is_dir() and _run_quietly([tool, "-q", str(applications)]):
        done.append("update-desktop-database")
    hicolor = data / "icons" / "hicolor"
    tool = shutil.which("gtk-update-icon-cache")
    if tool and (hicolor / "icon-theme.cache").is_file() and \
            _run_quietly([tool, "-q", "-f", "-t", str(hicolor)]):
        done.append("gtk-update-icon-cache")
    return tuple(done)


def install(user: bool = True) -> InstallResult:
    """Copy the integration files into the user's (or, ``user=False``, every user's) data directory,
    with ``Exec=`` naming this cert-desk's launcher. Files already there are replaced."""
    if os.environ.get("FLATPAK_ID"):
        raise E.InputError(f"{APP_NAME} runs in a Flatpak, which puts it in the menu itself.",
                           "Nothing to do: Flatpak installs and updates the menu entry.")
    source = find_files()
    program = launcher()
    data = data_dir(user)
    written: list[Path] = []
    for rel, path in source.sources:
        target = data / rel
        try:
            content = path.read_bytes()
            if rel == DESKTOP_FILE:
                content = desktop_entry(content.decode("utf-8"), program).encode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise E.InputError(f"Cannot read {path}: {e}.", f"Reinstall {APP_NAME}.") from e
        try:
            _write(target, content)
        except OSError as e:
            raise _write_error(target, e, user) from e
        written.append(target)
    return InstallResult(data, tuple(written), program, source, refresh_caches(data))


def uninstall(user: bool = True) -> UninstallResult:
    """Remove what :func:`install` writes (by name: the files of :func:`layout` in the data directory)."""
    data = data_dir(user)
    removed: list[Path] = []
    for rel in layout():
        target = data / rel
        try:
            target.unlink()
        except FileNotFoundError:
            continue
        except OSError as e:
            hint = "Check that the file is yours." if user else "Removing it for every user needs root (sudo)."
            raise E.InputError(f"Cannot remove {target}: {e.strerror or e}.", hint) from e
        removed.append(target)
    return UninstallResult(data, tuple(removed), refresh_caches(data) if removed else ())
