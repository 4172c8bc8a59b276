"""The PyInstaller spec, checked without building (tools/build-bundle and tools/smoke-bundle build
and run the bundle): it collects what cert-desk loads at run time, keeps the Qt plugins the
window needs and none of the libraries cert-desk must share with the system's PKCS#11 modules,
and its runtime hook hands the user's library path back to the programs cert-desk runs.

The spec is Python that PyInstaller executes; these tests run its settings and filters (parsed
with ``ast``) without PyInstaller, which the test environment does not have.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from cert_desk import desktop
from cert_desk.secrets import remembered

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "packaging" / "pyinstaller" / "cert-desk.spec"
# what only PyInstaller can run: its analysis, the build steps, the hook file in the work directory
_PYINSTALLER_NAMES = {"Analysis", "PYZ", "EXE", "COLLECT", "collect_submodules", "workpath", "a", "hook"}


def _tree() -> ast.Module:
    return ast.parse(SPEC.read_text(encoding="utf-8"), str(SPEC))


def _spec() -> dict[str, Any]:
    """The spec's settings and functions, its data files list included, run without PyInstaller."""
    body: list[ast.stmt] = []
    for node in _tree().body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("PyInstaller"):
            continue
        if any(isinstance(n, ast.Name) and n.id in _PYINSTALLER_NAMES for n in ast.walk(node)):
            continue
        body.append(node)
    namespace: dict[str, Any] = {"SPECPATH": str(SPEC.parent)}
    code = compile(ast.Module(body=body, type_ignores=[]), str(SPEC), "exec")
    exec(code, namespace)  # noqa: S102 - the project's own spec file
    return namespace


def _hidden_imports() -> tuple[set[str], list[str]]:
    """The spec's hidden imports: the module names, and the packages given to collect_submodules."""
    for node in _tree().body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "hiddenimports"
                                                for t in node.targets):
            assert isinstance(node.value, ast.List)
            names = {e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
            collected = [str(c.args[0].value) for c in ast.walk(node.value)
                         if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
                         and c.func.id == "collect_submodules" and isinstance(c.args[0], ast.Constant)]
            return names, collected
    raise AssertionError("the spec sets no hiddenimports")


def _collected(spec: dict[str, Any]) -> set[str]:
    """Every data file's path inside the bundle (relative to sys._MEIPASS)."""
    return {f"{dest}/{os.path.basename(src)}" for src, dest in spec["datas"]}


def test_every_cert_desk_module_and_the_keyring_backends_are_collected() -> None:
    names, collected = _hidden_imports()
    # cert-desk imports dialogs and CLI commands inside functions, where PyInstaller cannot see them
    assert "cert_desk" in collected
    # remembered.py imports the protected keyring backends by name; those for Linux must be in
    linux = [module for module, _cls in remembered._PROTECTED if module not in ("macOS", "Windows")]
    assert linux
    missing = [m for m in linux if f"keyring.backends.{m}" not in names]
    assert not missing, f"keyring backends cert-desk loads but the spec does not collect: {missing}"


def test_package_data_is_where_the_code_looks_for_it() -> None:
    spec = _spec()
    inside = _collected(spec)
    # pyproject's package data, at the same place relative to the package as in a wheel (style.py
    # finds its icons next to its own __file__, which is under sys._MEIPASS in the bundle)
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = package_data["tool"]["setuptools"]["package-data"]["cert_desk"]
    expected = {os.path.relpath(path, ROOT) for p in patterns for path in glob.glob(str(ROOT / "cert_desk" / p))}
    assert len(expected) > 10
    assert expected <= inside, sorted(expected - inside)
    # the desktop integration where cert_desk.desktop looks in a bundle: sys._MEIPASS/share/...
    wanted = {f"share/{rel}" for rel in desktop.layout()}
    assert wanted <= inside, sorted(wanted - inside)


def test_qt_plugins_and_libraries_kept_and_left_out() -> None:
    keep = _spec()["_keep"]
    plugins = "PySide6/Qt/plugins/"
    for name in ("platforms/libqxcb.so", "platforms/libqwayland.so", "platforms/libqoffscreen.so",
                 "imageformats/libqsvg.so", "iconengines/libqsvgicon.so", "wayland-shell-integration/libxdg-shell.so",
                 "xcbglintegrations/libqxcb-glx-integration.so", "platformthemes/libqxdgdesktopportal.so"):
        assert keep((plugins + name, "/venv/" + name, "BINARY")), name
    for name in ("platforms/libqeglfs.so", "platforms/libqvnc.so", "imageformats/libqpdf.so",
                 "platformthemes/libqgtk3.so", "egldeviceintegrations/libqeglfs-kms-integration.so"):
        assert not keep((plugins + name, "/venv/" + name, "BINARY")), name
    # the PKCS#11 modules and pcscd need the system's copies of these
    for lib in ("libcrypto.so.3", "libssl.so.3", "libstdc++.so.6", "libgcc_s.so.1", "libpcsclite.so.1"):
        assert not keep((lib, "/usr/lib/x86_64-linux-gnu/" + lib, "BINARY")), lib
    # a top-level link to a library that is left out goes too (it would dangle)
    assert not keep(("libQt6Pdf.so.6", "PySide6/Qt/lib/libQt6Pdf.so.6", "SYMLINK"))
    assert keep(("libQt6Gui.so.6", "PySide6/Qt/lib/libQt6Gui.so.6", "SYMLINK"))
    # the wayland client plugins link QtOpenGL
    assert keep(("PySide6/Qt/lib/libQt6OpenGL.so.6", "/venv/PySide6/Qt/lib/libQt6OpenGL.so.6", "BINARY"))
    assert not keep(("PySide6/Qt/translations/qtbase_de.qm", "/venv/qtbase_de.qm", "DATA"))
    assert keep(("cert_desk/ui/icons/add.svg", str(ROOT / "cert_desk/ui/icons/add.svg"), "DATA"))


def _after_hook(env: dict[str, str]) -> dict[str, str]:
    """The environment the bundled cert-desk hands on, after the spec's runtime hook ran."""
    hook = _spec()["RUNTIME_HOOK_SOURCE"]
    program = hook + "\nimport json, os, sys\njson.dump(dict(os.environ), sys.stdout)\n"
    proc = subprocess.run([sys.executable, "-I", "-c", program], env=env, capture_output=True, text=True,
                          timeout=30, check=True)
    result: dict[str, str] = json.loads(proc.stdout)
    return result


def test_runtime_hook_gives_programs_the_users_library_path() -> None:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    # what PyInstaller's bootloader sets when the user had a library path of their own
    env = _after_hook({**base, "LD_LIBRARY_PATH": "/opt/cert-desk/_internal:/home/u/lib",
                       "LD_LIBRARY_PATH_ORIG": "/home/u/lib"})
    assert env["LD_LIBRARY_PATH"] == "/home/u/lib"
    assert "LD_LIBRARY_PATH_ORIG" not in env
    # cert-desk running itself (the library probe) starts a fresh bundle, with its own library path
    assert env["PYINSTALLER_RESET_ENVIRONMENT"] == "1"
    # ... and when the user had none
    env = _after_hook({**base, "LD_LIBRARY_PATH": "/opt/cert-desk/_internal"})
    assert "LD_LIBRARY_PATH" not in env


def test_bundle_scripts_are_executable_and_parse() -> None:
    for name in ("build-bundle", "smoke-bundle"):
        script = ROOT / "tools" / name
        assert os.access(script, os.X_OK), f"{script} is not executable"
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
