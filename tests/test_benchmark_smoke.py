"""The benchmark still runs and prints its figures (a smoke run: no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import SoftHsm

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_prints_its_figures(softhsm: SoftHsm) -> None:
    script = ROOT / "benchmarks" / "list_objects.py"
    proc = subprocess.run([sys.executable, str(script), "--pairs", "15", "--runs", "1"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    for figure in ("wall time ratio cert-desk/pkcs11-tool", "peak memory", "C_GetAttributeValue per object"):
        assert figure in proc.stdout, proc.stdout
    assert "objects on the token                : 45" in proc.stdout


def test_gui_benchmark_prints_its_figures(softhsm: SoftHsm) -> None:
    script = ROOT / "benchmarks" / "gui_stall.py"
    proc = subprocess.run([sys.executable, str(script), "--pairs", "10"], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    for figure in ("cold start to first painted window", "listing arrival to painted view",
                   "longest heartbeat gap, listing", "longest heartbeat gap, RSA-4096 keygen"):
        assert figure in proc.stdout, proc.stdout
    assert "rows in the objects view            : 40" in proc.stdout
