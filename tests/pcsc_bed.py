"""A real PC/SC stack for the tests: pcscd with vsmartcard's vpcd driver, a vicc virtual card,
and jcecard's OpenPGP card, each a real process.

pcscd runs in the foreground with its own configuration, in a private mount and network
namespace: vpcd listens on every interface (ports 35963/35964), and inside the namespace
only ``lo`` exists; the namespace's ``/run/pcscd`` is a directory of ours, so the socket is
``<root>/run/pcscd.comm`` and clients find it through ``PCSCLITE_CSOCK_NAME``. A tmpfs over
``/dev/bus/usb`` keeps real readers out. The virtual cards connect to vpcd from inside that
namespace (``nsenter``). As a non-root user, ``--map-root-user`` gives the namespace the
rights it needs (unprivileged user namespaces must be allowed).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

VPCD_DRIVERS = ("/usr/lib/pcsc/drivers/serial/libifdvpcd.so", "/usr/lib64/pcsc/drivers/serial/libifdvpcd.so")
VICC = "/usr/bin/vicc"
VICC_PACKAGE_DIR = "/usr/lib/python3/site-packages/virtualsmartcard"  # Debian ships it off sys.path
VPCD_PORT = 35963
OPENSC_CONF = """# the card drivers the virtual cards need: probing every driver takes ~14 s per unknown card
app default {
    card_drivers = openpgp, PIV-II;
}
"""
HERE = Path(__file__).resolve().parent
_HOLDER = """
import sys, time
from smartcard import scard
hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
hr, card, proto = scard.SCardConnect(ctx, sys.argv[1], scard.SCARD_SHARE_EXCLUSIVE,
                                     scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1)
print("held" if hr == 0 else scard.SCardGetErrorMessage(hr), flush=True)
time.sleep(600)
"""


def vpcd_driver() -> str | None:
    return next((p for p in VPCD_DRIVERS if os.path.exists(p)), None)


def missing_parts() -> list[str]:
    """What this machine lacks to run the bed (empty when everything is there)."""
    missing = []
    for tool, package in (("pcscd", "pcscd"), ("unshare", "util-linux"), ("nsenter", "util-linux"),
                          ("ip", "iproute2")):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            missing.append(f"{tool} ({package})")
    if vpcd_driver() is None:
        missing.append("vsmartcard's vpcd driver (vsmartcard-vpcd)")
    if not os.path.exists(VICC) or not os.path.isdir(VICC_PACKAGE_DIR):
        missing.append("vsmartcard's vicc (python3-virtualsmartcard)")
    try:
        import Crypto  # noqa: F401 - vicc needs pycryptodome
    except ImportError:
        missing.append("pycryptodome (the test extra)")
    if not os.path.isdir("/run/pcscd") and os.geteuid() != 0:
        missing.append("/run/pcscd (a mount point for pcscd's socket directory)")
    return missing


class PcscBed:
    """pcscd and virtual cards under ``root``.

    Attributes:
        socket: The pcscd socket; put it in ``PCSCLITE_CSOCK_NAME``.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf_dir = root / "reader.conf.d"
        self.run_dir = root / "run"
        self.socket = self.run_dir / "pcscd.comm"
        self.logs = root / "logs"
        self.opensc_conf = root / "opensc.conf"
        for d in (self.conf_dir, self.run_dir, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        # the user's pcscd socket directory is world-readable too: any client may connect
        os.chmod(root, 0o755)  # noqa: S103
        os.chmod(self.run_dir, 0o755)  # noqa: S103
        self.opensc_conf.write_text(OPENSC_CONF, encoding="utf-8")
        driver = vpcd_driver() or VPCD_DRIVERS[0]
        (self.conf_dir / "vpcd").write_text(
            f'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:{VPCD_PORT}\nLIBPATH {driver}\nCHANNELID {VPCD_PORT}\n',
            encoding="utf-8")
        self.pcscd: subprocess.Popen[bytes] | None = None
        self.vicc: subprocess.Popen[bytes] | None = None
        self.jcecard: subprocess.Popen[bytes] | None = None
        self._user_ns = os.geteuid() != 0

    # -------------------------------------------------------------- pcscd

    def start_pcscd(self, timeout: float = 15.0) -> None:
        if self.pcscd is not None and self.pcscd.poll() is None:
            return
        if not os.path.isdir("/run/pcscd"):
            os.makedirs("/run/pcscd", exist_ok=True)  # an empty mount point; pcscd's files go to run_dir
        self.socket.unlink(missing_ok=True)
        script = (
            'ip link set lo up && mount --bind "$1" /run/pcscd && '
            '{ [ ! -d /dev/bus/usb ] || mount -t tmpfs tmpfs /dev/bus/usb; } && '
            'exec pcscd --foreground --info -c "$2"'
        )
        cmd = ["unshare", *(["--map-root-user"] if self._user_ns else []), "--mount", "--net",
               "--propagation", "private", "--", "sh", "-c", script, "sh", str(self.run_dir), str(self.conf_dir)]
        log = (self.logs / "pcscd.log").open("ab")
        self.pcscd = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.socket.exists() and b"daemon ready" in (self.logs / "pcscd.log").read_bytes():
                return
            if self.pcscd.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"pcscd did not start:\n{(self.logs / 'pcscd.log').read_text(errors='replace')[-2000:]}")

    def stop_pcscd(self) -> None:
        for attr in ("jcecard", "vicc"):
            self._stop(attr)
        self._stop("pcscd")

    def _nsenter(self) -> list[str]:
        assert self.pcscd is not None
        if self._user_ns:
            return ["nsenter", "--target", str(self.pcscd.pid), "--user", "--net", "--preserve-credentials", "--"]
        return ["nsenter", "--target", str(self.pcscd.pid), "--net", "--"]

    # -------------------------------------------------------------- cards

    def start_vicc(self) -> None:
        """vsmartcard's ISO 7816 virtual card in reader 0 ("Virtual PCD 00 00")."""
        if self.vicc is not None and self.vicc.poll() is None:
            return
        env = dict(os.environ, PYTHONPATH=VICC_PACKAGE_DIR)
        log = (self.logs / "vicc.log").open("ab")
        self.vicc = subprocess.Popen(
            [*self._nsenter(), sys.executable, VICC, "--type", "iso7816", "--hostname", "127.0.0.1",
             "--port", str(VPCD_PORT)], env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def stop_vicc(self) -> None:
        self._stop("vicc")

    def hold_exclusively(self, reader: str) -> subprocess.Popen[str]:
        """Another program (a real PC/SC client process) connected to the card in ``reader`` with
        SCARD_SHARE_EXCLUSIVE until it is killed, as a browser or gpg-agent's scdaemon may do."""
        proc = subprocess.Popen([sys.executable, "-c", _HOLDER, reader], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "held":
            proc.kill()
            proc.wait(5)
            raise AssertionError(f"could not hold {reader!r} exclusively: {line}")
        return proc

    def start_jcecard(self, state: Path) -> None:
        """jcecard's OpenPGP card in reader 1 ("Virtual PCD 00 01"); OpenSC makes PKCS#11 tokens of it."""
        if self.jcecard is not None and self.jcecard.poll() is None:
            return
        state.mkdir(parents=True, exist_ok=True)
        log = (self.logs / "jcecard.log").open("ab")
        self.jcecard = subprocess.Popen(
            [*self._nsenter(), sys.executable, str(HERE / "vpcd_bridge.py"), "--port", str(VPCD_PORT + 1),
             "--state", str(state), "--ack-select-data"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def stop_jcecard(self) -> None:
        self._stop("jcecard")

    def _stop(self, attr: str) -> None:
        proc: subprocess.Popen[bytes] | None = getattr(self, attr)
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        setattr(self, attr, None)
