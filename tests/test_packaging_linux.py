"""The Linux desktop integration: the .desktop file, the AppStream metainfo and the icons as
packaged, and ``cert-desk desktop install|uninstall|files``.

Checked with the tools the desktops use: ``desktop-file-validate``, ``appstreamcli validate``,
GLib's ``gio launch`` (how GNOME's menu parses ``Exec=``), ``update-desktop-database`` and
``gtk-update-icon-cache``.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import struct
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cert_desk import APP_ID, APP_NAME, __version__, desktop
from cert_desk import errors as E
from tests.conftest import Cli, require_tool, wait_for

ROOT = Path(__file__).resolve().parent.parent
DESKTOP = ROOT / "packaging" / "linux" / f"{APP_ID}.desktop"
METAINFO = ROOT / "packaging" / "linux" / f"{APP_ID}.metainfo.xml"
SCREENSHOTS_URL = "https://raw.githubusercontent.com/cert-desk/cert-desk/main/"


def entry(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(path, encoding="utf-8")
    return parser["Desktop Entry"]


def metainfo() -> ET.Element:
    return ET.parse(METAINFO).getroot()  # noqa: S314 - our own file


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version))


def validate_desktop(path: Path) -> None:
    tool = require_tool("desktop-file-validate")
    proc = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), proc.stdout + proc.stderr


def data_home() -> Path:
    return Path(os.environ["XDG_DATA_HOME"])


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


# ------------------------------------------------------------------ the packaged files


def test_desktop_file_validates_without_a_warning_or_hint() -> None:
    validate_desktop(DESKTOP)


def test_metainfo_validates() -> None:
    tool = require_tool("appstreamcli")
    proc = subprocess.run([tool, "validate", "--no-net", "--pedantic", "--no-color", str(METAINFO)],
                          capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    # pedantic and info lines are allowed: the uppercase in APP_ID, and <developer> before AppStream 1.0
    assert not re.search(r"^\s*[EW]:", out, re.M), out


def test_names_agree_with_the_app_id() -> None:
    e = entry(DESKTOP)
    root = metainfo()
    assert root.get("type") == "desktop-application"
    assert root.findtext("id") == APP_ID
    assert root.findtext("launchable[@type='desktop-id']") == DESKTOP.name == f"{APP_ID}.desktop"
    assert root.findtext("icon[@type='stock']") == e["Icon"] == APP_ID
    assert root.findtext("provides/binary") == APP_NAME
    assert root.findtext("provides/id") == DESKTOP.name
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert APP_NAME in scripts and e["Exec"] == APP_NAME
    # Qt's X11 WM_CLASS is (argv[0]'s name, applicationName) and the app sets applicationName(APP_NAME);
    # on Wayland Qt sends desktopFileName (APP_ID) as the app_id, which matches the file's name
    assert e["StartupWMClass"] == APP_NAME
    assert e["Terminal"] == "false" and e["StartupNotify"] == "true"


def test_newest_release_is_this_version_and_releases_run_newest_first() -> None:
    releases = metainfo().findall("releases/release")
    assert releases and releases[0].get("version") == __version__
    versions = [version_key(r.get("version", "")) for r in releases]
    dates = [r.get("date", "") for r in releases]
    assert versions == sorted(versions, reverse=True) and len(set(versions)) == len(versions)
    assert dates == sorted(dates, reverse=True)
    assert all(r.find("description") is not None for r in releases)


def test_screenshots_exist_in_the_checkout_with_their_declared_sizes() -> None:
    shots = metainfo().findall("screenshots/screenshot")
    assert len(shots) >= 3
    assert [s.get("type") for s in shots].count("default") == 1 and shots[0].get("type") == "default"
    for shot in shots:
        assert (shot.findtext("caption") or "").strip()
        image = shot.find("image")
        assert image is not None and image.text is not None
        assert image.text.startswith(SCREENSHOTS_URL), image.text
        local = ROOT / image.text.removeprefix(SCREENSHOTS_URL)
        assert local.is_file(), f"{local} is missing"
        assert png_size(local) == (int(image.get("width", "0")), int(image.get("height", "0"))), local


def test_icons_have_their_declared_sizes_and_the_svg_is_the_source() -> None:
    hicolor = ROOT / "resources" / "icons" / "hicolor"
    for size in desktop.ICON_SIZES:
        assert png_size(hicolor / f"{size}x{size}" / "apps" / f"{APP_ID}.png") == (size, size)
    scalable = hicolor / "scalable" / "apps" / f"{APP_ID}.svg"
    assert scalable.read_bytes() == (ROOT / "resources" / "cert-desk.svg").read_bytes()
    assert {p.relative_to(ROOT / "resources") for p in files_under(hicolor)} == {
        Path(rel) for rel in desktop.layout() if rel.startswith("icons/")}


def test_the_wheel_carries_every_file_of_the_layout() -> None:
    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
        "data-files"]
    carried = {f"{target}/{Path(src).name}" for target, sources in data_files.items() for src in sources}
    assert carried == {f"share/{rel}" for rel in desktop.layout()}
    assert all((ROOT / src).is_file() for sources in data_files.values() for src in sources)


# ------------------------------------------------------------------ Exec= quoting


@pytest.mark.parametrize("directory", ["plain", "with space", 'odd "$`\\ chars'])
def test_exec_quoting_starts_the_program_through_glib(tmp_path: Path, directory: str) -> None:
    gio = require_tool("gio")
    program = tmp_path / directory / APP_NAME
    program.parent.mkdir()
    marker = tmp_path / "started"
    program.write_text(f"#!/bin/sh\nprintf '%s' \"$0\" > '{marker}'\n", encoding="utf-8")
    program.chmod(0o755)
    entry_file = tmp_path / DESKTOP.name
    entry_file.write_text(desktop.desktop_entry(DESKTOP.read_text(encoding="utf-8"), str(program)), encoding="utf-8")
    validate_desktop(entry_file)
    proc = subprocess.run([gio, "launch", str(entry_file)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: marker.exists() and marker.stat().st_size > 0, 10, "the launched program")
    assert marker.read_text(encoding="utf-8") == str(program)


def test_a_launcher_path_no_menu_can_start_is_refused() -> None:
    for path in ("/opt/100%/cert-desk", "/opt/a\nb/cert-desk"):
        with pytest.raises(E.InputError, match="menu entry cannot start"):
            desktop.exec_value(path)


# ------------------------------------------------------------------ cert-desk desktop ...


def test_install_then_uninstall_through_the_cli(cli: Cli) -> None:
    data = data_home()
    other = data / "applications" / "someone-else.desktop"  # another program's files stay
    other.parent.mkdir(parents=True)
    other.write_text("[Desktop Entry]\nType=Application\nName=x\nExec=true\n", encoding="utf-8")
    before = files_under(data)

    listed = cli("desktop", "files", "--json")
    assert listed.returncode == 0, listed.stderr
    files = json.loads(listed.stdout)
    assert files["source"] == "checkout" and files["data_dir"] == str(data)
    assert [f["path"] for f in files["files"]] == list(desktop.layout())
    assert not any(f["installed"] for f in files["files"])

    res = cli("desktop", "install", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    written = [Path(p) for p in out["written"]]
    assert written == [data / rel for rel in desktop.layout()]
    # update-desktop-database's cache is the only other file; no icon cache where there was none
    assert files_under(data) - before - set(written) <= {data / "applications" / "mimeinfo.cache"}
    assert not (data / "icons" / "hicolor" / "icon-theme.cache").exists()
    for rel, src in ((rel, Path(s["source"])) for rel, s in zip(desktop.layout(), files["files"], strict=True)):
        if rel != desktop.DESKTOP_FILE:
            assert (data / rel).read_bytes() == src.read_bytes(), rel

    installed = data / desktop.DESKTOP_FILE
    validate_desktop(installed)
    program = entry(installed)["Exec"]
    assert program == out["launcher"] and os.path.isabs(program) and os.access(program, os.X_OK)
    version = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == f"{APP_NAME} {__version__}", version.stdout + version.stderr

    again = cli("desktop", "install", "--json")  # replaces what is there
    assert again.returncode == 0 and json.loads(again.stdout)["written"] == out["written"]

    res = cli("desktop", "uninstall", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["removed"] == out["written"]
    assert files_under(data) - before <= {data / "applications" / "mimeinfo.cache"}
    assert before <= files_under(data)

    res = cli("desktop", "uninstall")
    assert res.returncode == 0 and "nothing was removed" in res.stdout


def test_install_refreshes_an_icon_cache_that_exists(cli: Cli) -> None:
    require_tool("gtk-update-icon-cache")
    cache = data_home() / "icons" / "hicolor" / "icon-theme.cache"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"stale")
    res = cli("desktop", "install", "--json")
    assert res.returncode == 0, res.stderr
    assert "gtk-update-icon-cache" in json.loads(res.stdout)["refreshed"]
    assert APP_ID.encode() in cache.read_bytes()


def test_install_inside_flatpak_is_refused_in_words(cli: Cli) -> None:
    res = cli("desktop", "install", env={"FLATPAK_ID": APP_ID})
    assert res.returncode == 1 and "Flatpak" in res.stderr and "Traceback" not in res.stderr
    assert not files_under(data_home())
