"""Shared fixtures: an isolated home, real SoftHSM2 tokens, the services, the CLI.

Every test gets its own HOME / XDG directories and its own SoftHSM2 configuration and
token directory (``SOFTHSM2_CONF`` is read at every ``C_Initialize``, and the service
fixtures finalize the module when the test ends), so tests never see each other's tokens
and never touch the user's.

Tools the CI installs (softhsm2, opensc, openssl, ...) are required: a test that needs
one fails under ``CI=true`` when it is missing, and is skipped only on a developer
machine without it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cert_desk.pkcs11.discovery import opensc_module_path, softhsm_module_path
from cert_desk.services.tokens import TokenService
from cert_desk.services.worker import WorkerPool
from cert_desk.settings import Settings
from tests.pcsc_bed import PcscBed

# Before pytest-qt creates the (session-wide) QApplication: the suite runs without a display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# Before anything in this process talks PC/SC: libpcsclite reads the socket name once. The
# tests' own pcscd (tests/pcsc_bed.py) puts its socket here; the user's pcscd is never used.
PCSC_ROOT = Path(tempfile.mkdtemp(prefix="cert-desk-pcsc-"))
os.environ["PCSCLITE_CSOCK_NAME"] = str(PCSC_ROOT / "run" / "pcscd.comm")
# OpenSC with only the drivers the virtual cards need (an unknown card costs ~14 s otherwise)
os.environ["OPENSC_CONF"] = str(PCSC_ROOT / "opensc.conf")

SO_PIN = "12345678"
USER_PIN = "123456"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, what: str) -> None:
    """Fail (under CI=true) or skip (elsewhere) when a tool the suite relies on is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is missing; .ci/run installs it, so under CI=true this is an error", pytrace=False)
    pytest.skip(f"{what} is not installed")


def require_tool(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"the '{name}' command")
    assert path is not None
    return path


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var, sub in (("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share"),
                     ("XDG_STATE_HOME", ".local/state"), ("XDG_CACHE_HOME", ".cache")):
        monkeypatch.setenv(var, str(home / sub))
    for var in ("CERT_DESK_PIN", "CERT_DESK_SO_PIN", "CERT_DESK_NEW_PIN", "CERT_DESK_SHARE_PASSWORD",
                "CERT_DESK_NO_KEYRING", "CERT_DESK_SC_HSM_TOOL", "SOFTHSM2_CONF", "PYTHON_KEYRING_BACKEND"):
        monkeypatch.delenv(var, raising=False)
    # never the developer's own keyring: tests that want one start a private keyring daemon
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={home}/no-session-bus")
    return home


@dataclass
class SoftHsm:
    """A private SoftHSM2 installation: configuration, token directory, helpers that drive
    OpenSC's ``pkcs11-tool`` (the reference) with PINs passed through the environment."""

    root: Path
    conf: Path
    module: str

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["SOFTHSM2_CONF"] = str(self.conf)
        env.update(extra)
        return env

    def tool(self, *args: str, pin: str | None = None, so_pin: str | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["pkcs11-tool", "--module", self.module, *args]
        extra = {}
        if pin is not None:
            extra["P11_PIN"] = pin
            cmd += ["--login", "--pin", "env:P11_PIN"]
        if so_pin is not None:
            extra["P11_SO_PIN"] = so_pin
            cmd += ["--so-pin", "env:P11_SO_PIN"]
        proc = subprocess.run(cmd, env=self.env(**extra), capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"pkcs11-tool {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def free_slot_index(self) -> int:
        """Position (for --slot-index) of SoftHSM's free slot: the one pkcs11-tool calls uninitialized."""
        out = self.tool("-L").stdout
        blocks = [b for b in re.split(r"^(?=Slot \d+)", out, flags=re.M) if b.startswith("Slot ")]
        for index, block in enumerate(blocks):
            if "uninitialized" in block:
                return index
        raise AssertionError(f"no free SoftHSM slot in:\n{out}")

    def init_token(self, label: str, *, pin: str = USER_PIN, so_pin: str = SO_PIN) -> str:
        """Initialise a token the pkcs11-tool way (PINs through the environment); returns its serial."""
        index = self.free_slot_index()
        self.tool("--slot-index", str(index), "--init-token", "--label", label, so_pin=so_pin)
        proc = subprocess.run(
            ["pkcs11-tool", "--module", self.module, "--token-label", label, "--login", "--login-type", "so",
             "--so-pin", "env:P11_SO_PIN", "--init-pin", "--new-pin", "env:P11_PIN"],
            env=self.env(P11_SO_PIN=so_pin, P11_PIN=pin), capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        out = self.tool("-L").stdout
        m = re.search(rf"token label\s*:\s*{re.escape(label)}\s*\n(?:.*\n)*?\s*serial num\s*:\s*(\S+)", out)
        assert m, out
        return m.group(1)

    def keypair(self, token: str, label: str, key_id: str, key_type: str = "EC:prime256v1",
                *, pin: str = USER_PIN) -> None:
        args = ["--token-label", token, "--keypairgen", "--key-type", key_type, "--label", label]
        if key_id:
            args += ["--id", key_id]
        self.tool(*args, pin=pin)


@pytest.fixture
def softhsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SoftHsm:
    """An empty private SoftHSM2 (only its free slot), active for this process too."""
    require_tool("softhsm2-util")
    require_tool("pkcs11-tool")
    module = softhsm_module_path()
    require(module is not None, "SoftHSM2's libsofthsm2.so")
    assert module is not None
    root = tmp_path / "softhsm"
    (root / "tokens").mkdir(parents=True)
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
        "slots.removable = false\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    return SoftHsm(root, conf, module)


@pytest.fixture
def token(softhsm: SoftHsm) -> str:
    """A fresh initialised token 'test token' (user PIN 123456, SO PIN 12345678); returns its label."""
    label = "test token"
    softhsm.init_token(label)
    return label


@pytest.fixture
def service(softhsm: SoftHsm) -> Iterator[TokenService]:
    """A TokenService with its own worker pool, shut down (modules finalized) after the test."""

    svc = TokenService(WorkerPool(), Settings(path=Path(os.environ["XDG_CONFIG_HOME"]) / "cert-desk.json"))
    yield svc
    assert svc.shutdown(timeout=20), "a module worker did not stop"


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


Cli = Callable[..., CliResult]


@pytest.fixture
def cli() -> Cli:
    """Run ``python -m cert_desk`` in a subprocess (the real launcher path, its own process)."""

    def run(*args: str, env: dict[str, str] | None = None, input: str | None = None,
            timeout: float = 120) -> CliResult:
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = subprocess.run([sys.executable, "-m", "cert_desk", *args], env=full_env, capture_output=True,
                              text=True, timeout=timeout, input=input)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


def opensc_module() -> str:
    path = opensc_module_path()
    require(path is not None, "OpenSC's opensc-pkcs11.so")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def pcsc_bed_session() -> Iterator[PcscBed]:
    from tests.pcsc_bed import PcscBed, missing_parts

    missing = missing_parts()
    require(not missing, ", ".join(missing))
    bed = PcscBed(PCSC_ROOT)
    try:
        bed.start_pcscd()
        yield bed
    finally:
        bed.stop_pcscd()
        shutil.rmtree(PCSC_ROOT, ignore_errors=True)


@pytest.fixture
def pcsc_bed(pcsc_bed_session: PcscBed) -> Iterator[PcscBed]:
    """The tests' pcscd, running, with vsmartcard's virtual card in reader 0; left that way."""
    bed = pcsc_bed_session
    bed.start_pcscd()
    bed.start_vicc()
    wait_for(lambda: _reader_has_card(0), 10, "the virtual card in Virtual PCD 00 00")
    yield bed
    had_jcecard = bed.jcecard is not None
    bed.stop_jcecard()
    bed.start_pcscd()
    bed.start_vicc()
    if had_jcecard:  # the next test expects reader 1 empty; vpcd notices the card gone within a moment
        wait_for(lambda: not _reader_has_card(1), 10, "Virtual PCD 00 01 to be empty")


def _reader_has_card(index: int) -> bool:
    from cert_desk.pcsc.readers import PcscClient

    client = PcscClient()
    try:
        snap = client.snapshot()
    finally:
        client.close()
    return len(snap.readers) > index and snap.readers[index].card_present


def wait_for(cond: Callable[[], bool], seconds: float, what: str) -> None:
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")
