"""The launcher's two packaging hooks: ``--smoke-test`` (a bundle starts and shows its window) and
``--probe-pkcs11-library`` (the library check a bundled cert-desk runs on itself)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import SoftHsm


def test_smoke_test_opens_the_window_on_the_demo_token_and_exits_0() -> None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-m", "cert_desk", "--demo", "--smoke-test"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "smoke test: the window is up" in proc.stdout


def test_the_probe_option_loads_a_library_as_nss_will(softhsm: SoftHsm) -> None:
    def probe(path: str) -> int:
        return subprocess.run([sys.executable, "-m", "cert_desk", "--probe-pkcs11-library", path],
                              capture_output=True, timeout=60).returncode

    assert probe(softhsm.module) == 0
    assert probe("/usr/lib/x86_64-linux-gnu/libc.so.6") == 3  # loads, but is no PKCS#11 module
    assert probe("/nonexistent/lib.so") == 2
