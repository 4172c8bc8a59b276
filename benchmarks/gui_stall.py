#!/usr/bin/env python3
"""Benchmark: does the window stay live? The real window, offscreen, against a 3,000-object token.

Prints, from one run:

- cold start: process start to the first painted main window (median of 5 runs of a fresh
  interpreter; target <= 1.0 s),
- the longest gap of a 5 ms QTimer heartbeat on the GUI thread while the Objects pane
  lists a SoftHSM2 token with 1,000 EC key pairs and 1,000 certificates, and while an
  RSA-4096 key pair is generated on the token (target <= 50 ms),
- the time from the listing's arrival on the GUI thread to the populated, painted view
  (target <= 0.3 s).

Usage: python benchmarks/gui_stall.py [--pairs 1000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from common import LABEL, PIN, make_softhsm, populate

COLD_START = r"""
import sys, time
t0 = float(sys.argv[1])
from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QApplication
from cert_desk.ui.app import make_context
from cert_desk.ui.main_window import MainWindow

class FirstPaint(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint:
            print(f"{time.time() - t0:.4f}", flush=True)
            QApplication.instance().quit()
        return False

app = QApplication([])
ctx = make_context()
w = MainWindow(ctx)
f = FirstPaint()
w.installEventFilter(f)
w.show()
app.exec()
ctx.shutdown(1)
"""


def cold_start(runs: int, env: dict[str, str]) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.time()
        proc = subprocess.run([sys.executable, "-c", COLD_START, repr(t0)], env=env, capture_output=True,
                              text=True, check=False, timeout=120)
        if proc.returncode != 0:
            raise SystemExit(f"cold start failed: {proc.stderr}")
        out.append(float(proc.stdout.strip().splitlines()[-1]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--keep", metavar="DIR")
    args = ap.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cert-desk-gui-bench-"))
    try:
        make_softhsm(root)
        env = {**os.environ, "HOME": str(root), "XDG_CONFIG_HOME": str(root / "config"),
               "XDG_STATE_HOME": str(root / "state"), "XDG_DATA_HOME": str(root / "data")}
        os.environ.update({k: env[k] for k in ("HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME")})
        from cert_desk.pkcs11.discovery import softhsm_module_path

        module = softhsm_module_path()
        if module is None:
            raise SystemExit("needs SoftHSM2 (softhsm2)")
        print(f"building a token with {args.pairs} EC key pairs and {args.pairs} certificates ...", flush=True)
        populate(module, args.pairs)
        starts = cold_start(5, env)

        from PySide6.QtCore import QElapsedTimer, QEvent, QObject, QTimer
        from PySide6.QtWidgets import QApplication

        from cert_desk.models import TokenSelector
        from cert_desk.pkcs11.keygen import KeySpec, generate_key_pair
        from cert_desk.pkcs11.module import LoadedModule
        from cert_desk.secrets import Secret
        from cert_desk.ui.app import make_context
        from cert_desk.ui.main_window import MainWindow

        app = QApplication.instance() or QApplication([])
        ctx = make_context()
        window = MainWindow(ctx)
        window.resize(1280, 860)
        window.show()
        app.processEvents()

        gaps: list[float] = []
        clock = QElapsedTimer()
        clock.start()
        last = [clock.nsecsElapsed()]

        def beat() -> None:
            now = clock.nsecsElapsed()
            gaps.append((now - last[0]) / 1e6)
            last[0] = now

        heartbeat = QTimer()
        heartbeat.setInterval(5)
        heartbeat.timeout.connect(beat)

        def run_until(done: object, timeout: float = 300.0) -> None:
            end = time.monotonic() + timeout
            while not done() and time.monotonic() < end:  # type: ignore[operator]
                app.processEvents()
                time.sleep(0.001)

        pane = window.objects
        ref = ctx.service.find_token(TokenSelector(label=LABEL), [module])
        ctx.service.login(ref, Secret(PIN, "benchmark")).result()

        # the listing: time from its arrival on the GUI thread to the painted view
        arrival: list[float] = []
        painted: list[float] = []
        original = pane._on_listing

        def timed_on_listing(r: object, outcome: object) -> None:
            arrival.append(time.perf_counter())
            original(r, outcome)  # type: ignore[arg-type]

        pane._on_listing = timed_on_listing  # type: ignore[method-assign]

        class Paint(QObject):
            def eventFilter(self, obj: QObject, event: QEvent) -> bool:
                if event.type() == QEvent.Type.Paint and arrival and not painted and pane.model.rowCount():
                    painted.append(time.perf_counter())
                return False

        painter = Paint()
        pane.tree.viewport().installEventFilter(painter)
        window.show_pane("Objects")
        gaps.clear()
        last[0] = clock.nsecsElapsed()
        heartbeat.start()
        pane.show_token(ref)
        run_until(lambda: bool(painted))
        run_until(lambda: ctx.jobs.pending() == 0)
        heartbeat.stop()
        listing_gap = max(gaps[1:] or [0.0])
        rows = sum(1 + pane.model.rowCount(pane.model.index(r, 0)) for r in range(pane.model.rowCount()))

        # an RSA-4096 key pair generated on the token while the heartbeat runs
        def keygen(m: LoadedModule) -> float:
            t = time.perf_counter()
            generate_key_pair(m.pkcs11_session(ref), KeySpec.parse("rsa:4096"), label="big", obj_id=b"\xff\xff")
            return time.perf_counter() - t

        gaps.clear()
        last[0] = clock.nsecsElapsed()
        heartbeat.start()
        done: list[float] = []
        ctx.jobs.watch(ctx.service.run(module, keygen, "generate an RSA-4096 key pair"),
                       lambda o: done.append(o.unwrap()), "generate an RSA-4096 key pair")
        run_until(lambda: bool(done))
        heartbeat.stop()
        keygen_gap = max(gaps[1:] or [0.0])
        window.close()
        ctx.shutdown(10)

        print()
        print(f"cold start to first painted window  : median {statistics.median(starts):.3f} s of 5 "
              f"({', '.join(f'{s:.3f}' for s in starts)})  (target <= 1.0 s)")
        print(f"rows in the objects view            : {rows}")
        print(f"listing arrival to painted view     : {painted[0] - arrival[0]:.3f} s  (target <= 0.3 s)")
        print(f"longest heartbeat gap, listing      : {listing_gap:.1f} ms  (target <= 50 ms)")
        print(f"longest heartbeat gap, RSA-4096 keygen ({done[0]:.2f} s): {keygen_gap:.1f} ms  (target <= 50 ms)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
