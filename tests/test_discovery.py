"""Module discovery: the p11-kit registry, well-known paths, user paths, deduplicated by real path."""

from __future__ import annotations

import os
from pathlib import Path

from cert_desk.pkcs11.discovery import discover_modules, parse_module_file, read_registry
from tests.conftest import opensc_module, require


def _lib(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF fake")
    return str(path)


def test_parse_module_file() -> None:
    text = "# comment\nmodule: opensc-pkcs11.so\n\ncritical: yes\nMODULE: last.so\nbroken line\n"
    assert parse_module_file(text) == {"module": "last.so", "critical": "yes"}


def test_registry_user_file_overrides_system_file(tmp_path: Path) -> None:
    system, user = tmp_path / "system", tmp_path / "user"
    a = _lib(tmp_path / "lib" / "a.so")
    b = _lib(tmp_path / "lib" / "b.so")
    system.mkdir()
    user.mkdir()
    (system / "token.module").write_text(f"module: {a}\n")
    (user / "token.module").write_text(f"module: {b}\n")
    (system / "other.txt").write_text(f"module: {a}\n")
    mods = read_registry([str(system), str(user)])
    assert [(m.name, m.module) for m in mods] == [("token", b)]


def test_dedupe_by_realpath_keeps_every_path_and_source(tmp_path: Path) -> None:
    real = _lib(tmp_path / "lib" / "real-pkcs11.so")
    link = tmp_path / "lib" / "pkcs11" / "link-pkcs11.so"
    link.parent.mkdir()
    link.symlink_to(real)
    reg = tmp_path / "reg"
    reg.mkdir()
    (reg / "vendor.module").write_text(f"module: {link}\n")
    entries = discover_modules([real], registry_dirs=[str(reg)], well_known=[real, str(link)])
    assert len(entries) == 1
    e = entries[0]
    assert e.realpath == os.path.realpath(real)
    assert e.path == str(link) and e.aliases == (real,)
    assert e.name == "vendor"
    assert e.sources == (f"p11-kit {reg / 'vendor.module'}", "well-known path", "added by you")


def test_proxy_and_missing_modules_are_not_offered(tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    reg.mkdir()
    proxy = _lib(tmp_path / "lib" / "p11-kit-proxy.so")
    (reg / "proxy.module").write_text(f"module: {proxy}\n")
    (reg / "gone.module").write_text(f"module: {tmp_path / 'nope.so'}\n")
    (reg / "empty.module").write_text("# no module line\n")
    assert discover_modules(registry_dirs=[str(reg)], well_known=[]) == []


def test_user_paths_are_kept_even_when_missing(tmp_path: Path) -> None:
    entries = discover_modules([str(tmp_path / "gone.so")], registry_dirs=[], well_known=[])
    assert len(entries) == 1 and not entries[0].exists and entries[0].sources == ("added by you",)


def test_this_machine_offers_opensc_once() -> None:
    """Debian installs OpenSC's module under two paths; cert-desk offers it once, with both."""
    real = opensc_module()
    entries = [e for e in discover_modules() if e.realpath == real]
    assert len(entries) == 1
    paths = {entries[0].path, *entries[0].aliases}
    both = {"/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so", "/usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so"}
    require(all(os.path.exists(p) for p in both), "Debian's two OpenSC module paths")
    assert both <= paths
