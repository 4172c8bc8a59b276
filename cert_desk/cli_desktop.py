"""``cert-desk desktop install|uninstall|files``: the application menu entry, its metainfo and icons.

After ``pipx install cert-desk`` (or pip in a virtual environment) the window has no menu entry:
``cert-desk desktop install`` adds it for the user, ``--system`` for every user (as root).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cert_desk import desktop

EXIT_OK = 0


def cmd_install(ctx: Any) -> int:
    result = desktop.install(user=not ctx.args.system)
    if ctx.args.json:
        ctx.emit_json({
            "data_dir": str(result.data_dir), "written": [str(p) for p in result.written],
            "launcher": result.launcher, "source": result.source.origin, "source_root": str(result.source.root),
            "refreshed": list(result.refreshed),
        })
        return EXIT_OK
    ctx.say(f"Added cert-desk to the application menu ({len(result.written)} files in {result.data_dir}):")
    for path in result.written:
        ctx.say(f"  {path}")
    ctx.say(f"The menu entry starts {result.launcher}.")
    if result.refreshed:
        ctx.say(f"Refreshed: {', '.join(result.refreshed)}.")
    ctx.note("Some desktops show a new entry only after you log out and in again.")
    return EXIT_OK


def cmd_uninstall(ctx: Any) -> int:
    result = desktop.uninstall(user=not ctx.args.system)
    if ctx.args.json:
        ctx.emit_json({"data_dir": str(result.data_dir), "removed": [str(p) for p in result.removed],
                       "refreshed": list(result.refreshed)})
        return EXIT_OK
    if not result.removed:
        ctx.say(f"cert-desk has no menu entry in {result.data_dir}; nothing was removed.")
        return EXIT_OK
    ctx.say(f"Removed cert-desk from the application menu ({len(result.removed)} files in {result.data_dir}):")
    for path in result.removed:
        ctx.say(f"  {path}")
    return EXIT_OK


def cmd_files(ctx: Any) -> int:
    found = desktop.find_files()
    target = desktop.data_dir(user=not ctx.args.system)
    program = desktop.launcher()
    if ctx.args.json:
        ctx.emit_json({
            "source": found.origin, "source_root": str(found.root), "launcher": program, "data_dir": str(target),
            "files": [{"path": rel, "source": str(src), "target": str(target / rel),
                       "installed": (target / rel).is_file()} for rel, src in found.sources],
        })
        return EXIT_OK
    ctx.say(f"Packaged files ({found.origin}): {found.root}")
    ctx.say(f"Install target   : {target}")
    ctx.say(f"Menu entry starts: {program}")
    for rel, src in found.sources:
        mark = "installed" if (target / rel).is_file() else "not installed"
        ctx.say(f"  {rel}  ({mark})")
        ctx.say(f"      from {src}")
    return EXIT_OK


def add_commands(sub: Any, common: Callable[..., None]) -> None:
    desk = sub.add_parser("desktop", help="add cert-desk to the desktop's application menu, or remove it")
    desk_sub = desk.add_subparsers(dest="desktop_command", metavar="COMMAND", required=True)
    for name, func, text in (
        ("install", cmd_install, "add the menu entry, metainfo and icons (~/.local/share; --system: /usr/local/share)"),
        ("uninstall", cmd_uninstall, "remove what install added"),
        ("files", cmd_files, "show where the packaged files are, where they go, and which are installed"),
    ):
        sp = desk_sub.add_parser(name, help=text)
        common(sp)
        sp.add_argument("--system", action="store_true",
                        help=f"every user's menu: {desktop.SYSTEM_DATA_DIR} (needs root) instead of yours")
        sp.set_defaults(func=func)
