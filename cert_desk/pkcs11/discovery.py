"""Find the PKCS#11 modules installed on this machine, without loading any of them.

Sources, in order:

1. the p11-kit module registry: ``/usr/share/p11-kit/modules/*.module`` (packages),
   ``/etc/pkcs11/modules/*.module`` (the administrator) and
   ``~/.config/pkcs11/modules/*.module`` (the user). As in p11-kit, a file in a later
   directory replaces the file of the same name in an earlier one, and a relative
   ``module:`` path is relative to p11-kit's module directory;
2. well-known install paths of OpenSC's ``opensc-pkcs11.so`` and SoftHSM2's
   ``libsofthsm2.so``;
3. the paths the user added (kept in settings).

Modules are deduplicated by :func:`os.path.realpath`: Debian installs OpenSC at two paths
and loading one library by two paths fails with CKR_CRYPTOKI_ALREADY_INITIALIZED.
``p11-kit-proxy.so`` is never offered: it re-exports the registered modules, so every
token would appear twice.
"""

from __future__ import annotations

import logging
import os
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cert_desk.models import ModuleEntry

log = logging.getLogger(__name__)

SYSTEM_REGISTRY_DIRS: tuple[str, ...] = ("/usr/share/p11-kit/modules", "/etc/pkcs11/modules")


def user_registry_dir() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "pkcs11", "modules")


def _multiarch() -> str:
    return str(sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu")


def p11kit_module_dirs() -> tuple[str, ...]:
    """Where p11-kit resolves relative ``module:`` paths (Debian, Fedora, generic)."""
    arch = _multiarch()
    return (f"/usr/lib/{arch}/pkcs11", "/usr/lib64/pkcs11", "/usr/lib/pkcs11", "/usr/local/lib/pkcs11")


def well_known_paths() -> tuple[str, ...]:
    arch = _multiarch()
    return (
        # OpenSC
        f"/usr/lib/{arch}/opensc-pkcs11.so",
        f"/usr/lib/{arch}/pkcs11/opensc-pkcs11.so",
        "/usr/lib64/opensc-pkcs11.so",
        "/usr/lib64/pkcs11/opensc-pkcs11.so",
        "/usr/lib/opensc-pkcs11.so",
        "/usr/lib/pkcs11/opensc-pkcs11.so",
        "/usr/local/lib/opensc-pkcs11.so",
        "/Library/OpenSC/lib/opensc-pkcs11.so",
        # SoftHSM2
        "/usr/lib/softhsm/libsofthsm2.so",
        f"/usr/lib/{arch}/softhsm/libsofthsm2.so",
        "/usr/lib64/pkcs11/libsofthsm2.so",
        "/usr/lib64/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
        "/opt/homebrew/lib/softhsm/libsofthsm2.so",
        # the Flatpak (packaging/flatpak) bundles both under /app
        "/app/lib/opensc-pkcs11.so",
        "/app/lib/pkcs11/opensc-pkcs11.so",
        "/app/lib/softhsm/libsofthsm2.so",
    )


PROXY_NAMES = ("p11-kit-proxy.so", "libp11-kit.so")
TRUST_NAMES = ("p11-kit-trust.so",)


@dataclass(frozen=True)
class RegistryModule:
    """One ``*.module`` file of the p11-kit registry.

    Attributes:
        name: The file name without ``.module`` (p11-kit's module name).
        file: The config file.
        module: The ``module:`` value, resolved to an absolute path (``None`` when missing).
        options: Every ``key: value`` of the file.
    """

    name: str
    file: str
    module: str | None
    options: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


def parse_module_file(text: str) -> dict[str, str]:
    """Parse p11-kit's ``key: value`` format (``#`` comments, blank lines, last key wins)."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        out[key.strip().lower()] = value.strip()
    return out


def read_registry(dirs: Sequence[str] | None = None) -> list[RegistryModule]:
    """The registry's modules; a file in a later directory overrides one of the same name."""
    if dirs is None:
        dirs = (*SYSTEM_REGISTRY_DIRS, user_registry_dir())
    by_name: dict[str, RegistryModule] = {}
    for d in dirs:
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for fname in names:
            if not fname.endswith(".module") or fname.startswith("."):
                continue
            path = os.path.join(d, fname)
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    options = parse_module_file(fh.read(64 * 1024))
            except OSError as e:
                log.debug("cannot read %s: %s", path, e)
                continue
            name = fname.removesuffix(".module")
            module = options.get("module")
            by_name[name] = RegistryModule(name, path, _resolve_module_path(module) if module else None, options)
    return list(by_name.values())


def _resolve_module_path(value: str) -> str:
    if os.path.isabs(value):
        return value
    for d in p11kit_module_dirs():
        candidate = os.path.join(d, value)
        if os.path.exists(candidate):
            return candidate
    return os.path.join(p11kit_module_dirs()[0], value)


def short_name(path: str) -> str:
    """A module's short name: ``/usr/lib/.../libsofthsm2.so`` -> ``softhsm2``."""
    base = os.path.basename(path)
    for suffix in (".so", ".dylib", ".dll"):
        base = base.removesuffix(suffix)
    return base.removeprefix("lib")


def _is_proxy(path: str) -> bool:
    base = os.path.basename(path)
    real = os.path.basename(os.path.realpath(path))
    return any(base.startswith(p) or real.startswith(p) for p in PROXY_NAMES)


@dataclass
class _Found:
    path: str
    name: str
    exists: bool
    note: str
    sources: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)


class _Collector:
    def __init__(self) -> None:
        self._found: dict[str, _Found] = {}  # by real path, in discovery order

    def add(self, path: str, source: str, name: str | None = None, note: str = "") -> None:
        path = os.path.abspath(os.path.expanduser(path))
        real = os.path.realpath(path)
        found = self._found.get(real)
        if found is None:
            found = _Found(path, name or short_name(path), os.path.exists(path), note)
            self._found[real] = found
        if source not in found.sources:
            found.sources.append(source)
        if path != found.path and path not in found.aliases:
            found.aliases.append(path)
        if note and not found.note:
            found.note = note

    def entries(self) -> list[ModuleEntry]:
        return [
            ModuleEntry(path=f.path, realpath=real, name=f.name, sources=tuple(f.sources),
                        aliases=tuple(f.aliases), exists=f.exists, note=f.note)
            for real, f in self._found.items()
        ]


def discover_modules(
    user_paths: Iterable[str] = (),
    *,
    registry_dirs: Sequence[str] | None = None,
    well_known: Sequence[str] | None = None,
    extra_paths: Iterable[str] = (),
) -> list[ModuleEntry]:
    """Every PKCS#11 module cert-desk can offer, deduplicated by real path.

    Args:
        user_paths: Paths the user added in settings (kept even when the file is gone, so
            the user sees and can remove them).
        registry_dirs: Override the p11-kit directories (tests).
        well_known: Override the well-known paths (tests).
        extra_paths: Paths given for this run only (``--module``).
    """
    c = _Collector()
    for path in extra_paths:
        c.add(path, "--module")
    for reg in read_registry(registry_dirs):
        if reg.module is None:
            log.debug("p11-kit file %s has no module: line", reg.file)
            continue
        if _is_proxy(reg.module):
            continue
        if not os.path.exists(reg.module):
            log.debug("p11-kit file %s names a missing module %s", reg.file, reg.module)
            continue
        notes = []
        if os.path.basename(reg.module) in TRUST_NAMES or reg.options.get("trust-policy", "").lower() == "yes":
            notes.append("p11-kit trust store: the system's CA certificates, not a device")
        for key in ("disable-in", "enable-in"):
            if key in reg.options:
                notes.append(f"p11-kit {key}: {reg.options[key]}")
        c.add(reg.module, f"p11-kit {reg.file}", name=reg.name, note="; ".join(notes))
    for path in well_known if well_known is not None else well_known_paths():
        if os.path.exists(path) and not _is_proxy(path):
            c.add(path, "well-known path")
    for path in user_paths:
        c.add(path, "added by you")
    return c.entries()


def find_module(entries: Sequence[ModuleEntry], path: str) -> ModuleEntry | None:
    """The entry whose real path is ``path``'s, if any."""
    real = os.path.realpath(os.path.expanduser(path))
    for e in entries:
        if e.realpath == real:
            return e
    return None


def softhsm_module_path() -> str | None:
    """The installed SoftHSM2 module, or ``None``."""
    for path in well_known_paths():
        if path.endswith("libsofthsm2.so") and os.path.exists(path):
            return os.path.realpath(path)
    return None


def opensc_module_path() -> str | None:
    for path in well_known_paths():
        if path.endswith("opensc-pkcs11.so") and os.path.exists(path):
            return os.path.realpath(path)
    return None


def is_readable_file(path: str) -> bool:
    p = Path(path)
    return p.is_file() and os.access(p, os.R_OK)
