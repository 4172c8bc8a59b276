#!/usr/bin/env python3
"""Benchmark: listing 3,000 objects, cert-desk against OpenSC's pkcs11-tool, in one run.

Builds a private SoftHSM2 token with 1,000 EC P-256 key pairs and 1,000 certificates
(3,000 objects; the key pairs are generated on the token, the certificates issued by a
throw-away CA and written with their key's CKA_ID), then prints:

- the wall time of ``cert-desk objects --json --login`` and ``pkcs11-tool -O --login``
  (median of 5 runs each, and their ratio; target <= 0.8),
- the peak memory (max RSS) of each,
- C_GetAttributeValue calls per object, counted by OpenSC's pkcs11-spy for both
  (target <= 4.0 for cert-desk).

Both tools get the PIN through the environment. The spy logs PINs in clear, so its log
lives in the temporary directory and is removed with it. Nothing outside the temporary
directory is touched.

Usage: python benchmarks/list_objects.py [--pairs 1000] [--runs 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import PIN, make_softhsm, populate

SPY = "/usr/lib/x86_64-linux-gnu/pkcs11-spy.so"


GNU_TIME = "/usr/bin/time"


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """(wall seconds, max RSS in KiB, stdout) of one run.

    The peak memory comes from GNU time (package ``time``), which forks the command
    itself: a child of this big Python process would report our own peak (Linux carries a
    vfork parent's high-water mark into the child at exec).
    """
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = Path(tmp) / "rss"
        full = [GNU_TIME, "-f", "%M", "-o", str(rss_file), *cmd] if os.path.exists(GNU_TIME) else cmd
        t0 = time.perf_counter()
        proc = subprocess.run(full, env=env, capture_output=True, check=False)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
        rss = int(rss_file.read_text().split()[-1]) if rss_file.exists() else -1
    return wall, rss, proc.stdout.decode(errors="replace")


def spy_calls(cmd: list[str], env: dict[str, str], log: Path) -> int:
    log.unlink(missing_ok=True)
    subprocess.run(cmd, env={**env, "PKCS11SPY_OUTPUT": str(log)}, check=True, capture_output=True, timeout=600)
    text = log.read_text(errors="replace")
    log.unlink()
    return len(re.findall(r"^\d+: C_GetAttributeValue$", text, re.M))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=1000, help="key pairs (each with a certificate)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", metavar="DIR", help="build the token in DIR and keep it")
    args = ap.parse_args()

    from cert_desk.pkcs11.discovery import softhsm_module_path

    module = softhsm_module_path()
    if module is None or shutil.which("pkcs11-tool") is None:
        raise SystemExit("needs SoftHSM2 (softhsm2) and OpenSC's pkcs11-tool (opensc)")
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cert-desk-bench-"))
    try:
        conf = make_softhsm(root)
        env = {**os.environ, "SOFTHSM2_CONF": str(conf), "CERT_DESK_PIN": PIN, "P11_PIN": PIN,
               "HOME": str(root), "XDG_CONFIG_HOME": str(root / "config"), "XDG_STATE_HOME": str(root / "state")}
        print(f"building a token with {args.pairs} EC key pairs and {args.pairs} certificates ...", flush=True)
        built = populate(module, args.pairs)
        objects = 3 * args.pairs
        print(f"  built in {built:.1f} s")

        ours = [sys.executable, "-m", "cert_desk", "objects", "--module", module, "--token", "bench", "--json",
                "--login"]
        theirs = ["pkcs11-tool", "--module", module, "--token-label", "bench", "-O", "--login", "--pin", "env:P11_PIN"]
        n_ours = len(__import__("json").loads(timed(ours, env)[2]))
        n_theirs = timed(theirs, env)[2].count(" Object")
        assert n_ours == objects, f"cert-desk listed {n_ours} objects, expected {objects}"
        runs_ours, runs_theirs, rss_ours, rss_theirs = [], [], 0, 0
        for _ in range(args.runs):  # interleaved, so both see the same machine load
            w, rss, _ = timed(ours, env)
            runs_ours.append(w)
            rss_ours = max(rss_ours, rss)
            w, rss, _ = timed(theirs, env)
            runs_theirs.append(w)
            rss_theirs = max(rss_theirs, rss)
        med_ours, med_theirs = statistics.median(runs_ours), statistics.median(runs_theirs)

        spy_env = {**env, "PKCS11SPY": module}
        calls_ours = spy_calls([*ours[:5], SPY, *ours[6:]], spy_env, root / "spy.log") if os.path.exists(SPY) else -1
        calls_theirs = spy_calls(["pkcs11-tool", "--module", SPY, *theirs[3:]], spy_env, root / "spy.log") \
            if os.path.exists(SPY) else -1

        print()
        print(f"objects on the token                : {objects} (pkcs11-tool listed {n_theirs})")
        print(f"cert-desk objects --json --login     : median {med_ours:.3f} s of {args.runs} "
              f"({', '.join(f'{r:.3f}' for r in runs_ours)})")
        print(f"pkcs11-tool -O --login               : median {med_theirs:.3f} s of {args.runs} "
              f"({', '.join(f'{r:.3f}' for r in runs_theirs)})")
        print(f"wall time ratio cert-desk/pkcs11-tool: {med_ours / med_theirs:.2f}  (target <= 0.80)")
        if rss_ours >= 0:
            print(f"peak memory (max RSS)                : cert-desk {rss_ours / 1024:.1f} MiB, "
                  f"pkcs11-tool {rss_theirs / 1024:.1f} MiB")
        else:
            print("peak memory (max RSS)                : GNU time is missing (package 'time')")
        if calls_ours >= 0:
            print(f"C_GetAttributeValue per object       : cert-desk {calls_ours / objects:.2f} (target <= 4.0), "
                  f"pkcs11-tool {calls_theirs / objects:.2f}")
        else:
            print("C_GetAttributeValue per object       : pkcs11-spy.so not found (package opensc-pkcs11)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
