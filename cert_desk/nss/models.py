"""What cert-desk knows about NSS databases, as frozen dataclasses (they cross threads)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NssDatabase:
    """One NSS database a browser or mail client reads.

    Attributes:
        directory: The database directory (for a Firefox profile: the profile directory).
        application: Who reads it, in words: ``Chrome/Chromium``, ``Firefox``, ``Firefox (snap)``,
            ``Firefox (flatpak)``, ``Thunderbird``, ``Thunderbird (snap)``, ``Thunderbird (flatpak)``.
        profile: The profile's name (``default-release``); empty for Chrome's shared database.
        format: ``sql`` (cert9.db, key4.db, pkcs11.txt), ``dbm`` (legacy cert8.db/secmod.db),
            or ``missing`` (the directory or its files do not exist yet, e.g. Chrome never ran).
        supported: cert-desk can read and change it (``sql`` only).
        reason: Why not, when not supported (or what ``missing`` means), in words.
        lock_dirs: Where the owning application leaves its "I am running" marks: the Firefox or
            Thunderbird profile directory, or Chrome/Chromium user-data directories.
        default: Firefox's/Thunderbird's default profile (from profiles.ini / installs.ini).
    """

    directory: str
    application: str
    profile: str
    format: str
    supported: bool
    reason: str = ""
    lock_dirs: tuple[str, ...] = ()
    default: bool = False

    @property
    def spec(self) -> str:
        """What NSS tools take as -d: ``sql:/path``."""
        return f"sql:{self.directory}"


@dataclass(frozen=True)
class NssModule:
    """A PKCS#11 module registered in a database (a pkcs11.txt block, or a modutil -list entry).

    Attributes:
        name: The module's name in the database (``name=``).
        library: ``library=`` as written (empty for NSS's internal module).
        realpath: ``os.path.realpath`` of the library, or ``""`` when it does not exist.
        internal: NSS's own softoken (no ``library=``, or ``NSS=...Flags=internal``).
        p11_kit_proxy: The library is p11-kit's proxy, which loads every module p11-kit knows.
    """

    name: str
    library: str
    realpath: str
    internal: bool = False
    p11_kit_proxy: bool = False


@dataclass(frozen=True)
class NssSlot:
    """A slot and its token as ``modutil -list`` shows them."""

    name: str
    token: str  # empty when no token is present
    status: str = ""


@dataclass(frozen=True)
class LoadedModule:
    """A module as NSS itself loads it (``modutil -list``)."""

    name: str
    library: str
    status: str  # "loaded", or what modutil says instead (e.g. "Not loaded")
    slots: tuple[NssSlot, ...] = ()


@dataclass(frozen=True)
class RunningApplication:
    """Evidence that an application is using a database right now."""

    application: str
    pid: int | None
    evidence: str  # in words: "Firefox holds the lock on .../.parentlock"
