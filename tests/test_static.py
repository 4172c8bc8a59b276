"""The code rules are part of the suite: ruff clean, mypy strict on the Qt-free core, and the
architecture's import rules (no Qt in the core, no python-pkcs11 or pyscard in the UI)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent
CORE = ("pkcs11", "pcsc", "x509", "nss", "secrets", "errors.py", "models.py")


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    require(path is not None, f"{name} (the test extra)")
    assert path is not None
    return path


def test_ruff() -> None:
    proc = subprocess.run([_tool("ruff"), "check", "cert_desk", "tests", "benchmarks", "tools"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy() -> None:
    proc = subprocess.run([_tool("mypy"), "cert_desk"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _imports(path: Path) -> list[str]:
    return re.findall(r"^\s*(?:from|import)\s+([\w.]+)", path.read_text(encoding="utf-8"), re.M)


def test_core_has_no_qt() -> None:
    for name in CORE:
        target = ROOT / "cert_desk" / name
        files = [target] if target.is_file() else list(target.rglob("*.py")) if target.exists() else []
        for f in files:
            bad = [m for m in _imports(f) if m.split(".")[0] in ("PySide6", "shiboken6")]
            assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def test_ui_goes_through_the_services() -> None:
    for f in (ROOT / "cert_desk" / "ui").rglob("*.py"):
        bad = [m for m in _imports(f) if m.split(".")[0] in ("pkcs11", "smartcard")]
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"
