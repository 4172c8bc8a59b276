"""The fault-injecting PKCS#11 module for tests: build it, point it at the test's SoftHSM2, change its faults.

``libcdfault.so`` (tests/faultmod/, grammar in its README.md) forwards every call to SoftHSM2 and
fails, delays or changes the calls a spec names: a locked PIN, a PIN pad, a write-protected token,
a token pulled out mid-operation. SoftHSM2 does none of these by itself, and cert-desk must handle
each of them the way it does on a real token.

Use the ``faulty`` fixture (register this module with ``pytest_plugins = ("tests.faultmod",)``)::

    def test_locked(faulty: FaultModule) -> None:
        faulty.set("flags=LOCKED")
        ...  # cert-desk (in-process) or a subprocess, both with faulty.module
        assert len(faulty.calls("C_Login")) == 1

The spec lives in a file the module re-reads whenever it changes, so a test changes the faults
while a process (this one, with the GUI) keeps the module loaded.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from cert_desk.errors import InputError
from tests.conftest import SoftHsm, require, require_tool

SOURCE_DIR = Path(__file__).with_name("faultmod")
SOURCES = ("faultmod.c", "wrappers_gen.c")
HEADER = Path("/usr/include/p11-kit-1/p11-kit/pkcs11.h")
LIBRARY = "libcdfault.so"


def _compile_command(out: Path) -> list[str]:
    return ["gcc", "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-I/usr/include/p11-kit-1", "-o", str(out),
            "faultmod.c", "-ldl", "-lpthread"]


def build_faultmod(out_dir: Path) -> Path:
    """Compile libcdfault.so into ``out_dir/<source hash>/`` unless it is already there; return its path.

    Keyed by the sources and the command, so an edited faultmod.c is never served from an old build;
    built under a temporary name and renamed, so a parallel run never loads a half-written library.
    """
    digest = hashlib.sha256(" ".join(_compile_command(Path(LIBRARY))).encode())
    for name in SOURCES:
        digest.update((SOURCE_DIR / name).read_bytes())
    target = out_dir / digest.hexdigest()[:16] / LIBRARY
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{LIBRARY}.{os.getpid()}")
    proc = subprocess.run(_compile_command(partial), cwd=SOURCE_DIR, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"building {LIBRARY} failed ({proc.returncode}):\n{proc.stderr}")
    partial.replace(target)
    return target


def private_copy(module: str, directory: Path) -> Path:
    """A copy of the real module for libcdfault.so to load.

    Why: dlopen of a path already loaded returns the same library, so SoftHSM2 loaded directly by
    this process and through libcdfault.so would be one instance, initialised twice
    (CKR_CRYPTOKI_ALREADY_INITIALIZED). A copy is a second instance on the same token directory,
    as a second process would be.
    """
    copy = directory / Path(module).name
    if not copy.is_file():
        partial = directory / f".{copy.name}.{os.getpid()}"
        shutil.copyfile(module, partial)
        partial.replace(copy)
    return copy


def check_spec(library: Path, spec: str) -> str | None:
    """What is wrong with ``spec`` (None when nothing), asked of the module's own parser."""
    lib = ctypes.CDLL(str(library))
    check = lib.cdfault_check_spec
    check.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t)
    check.restype = ctypes.c_int
    error = ctypes.create_string_buffer(512)
    if check(spec.encode(), error, len(error)) == 0:
        return None
    return error.value.decode(errors="replace")


@dataclass(frozen=True)
class FaultModule:
    """libcdfault.so in front of a test's SoftHSM2, with the faults file and the call log of that test."""

    module: str          # the path to load instead of libsofthsm2.so
    target: str          # the real module behind it (a private copy of SoftHSM2's)
    faults_file: Path    # CD_FAULTS_FILE: the spec, re-read by the module when it changes
    log_file: Path       # every call, one line each (log= is added to every spec)
    softhsm: SoftHsm

    def set(self, spec: str) -> None:
        """Replace the faults (counters start again at the next call); ``log=`` is added.

        Raises:
            InputError: the module's parser rejects the spec.
        """
        if "log=" not in spec:
            spec = f"{spec},log={self.log_file}" if spec.strip() else f"log={self.log_file}"
        problem = check_spec(Path(self.module), spec)
        if problem is not None:
            raise InputError(f"The fault spec {spec!r} is not valid: {problem}.",
                             "See tests/faultmod/README.md for the grammar.")
        # atomically, and with an mtime strictly after the last one: the module compares mtime,
        # size and inode, and two writes within one clock tick could otherwise look alike
        previous = self.faults_file.stat().st_mtime_ns if self.faults_file.exists() else 0
        mtime = max(time.time_ns(), previous + 1_000_000)
        partial = self.faults_file.with_name(f".{self.faults_file.name}.tmp")
        partial.write_text(spec + "\n", encoding="utf-8")
        os.utime(partial, ns=(mtime, mtime))
        partial.replace(self.faults_file)

    def clear(self) -> None:
        """No faults (a removed token comes back); calls are still logged."""
        self.set("")

    def log(self) -> list[str]:
        if not self.log_file.exists():
            return []
        return self.log_file.read_text(encoding="utf-8").splitlines()

    def calls(self, name: str) -> list[str]:
        """The log lines of every call to ``name`` (``C_Login``), oldest first."""
        return [line for line in self.log() if line.split(" ", 1)[0] == name]

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for a subprocess that loads :attr:`module` (SoftHSM2's config included)."""
        env = self.softhsm.env(CD_FAULT_TARGET=self.target, CD_FAULTS_FILE=str(self.faults_file))
        env.update(extra)
        return env

    def tool(self, *args: str, pin: str | None = None, so_pin: str | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        """``pkcs11-tool --module libcdfault.so ...`` (PINs through the environment)."""
        return replace(self.softhsm, module=self.module).tool(*args, pin=pin, so_pin=so_pin, check=check)


@pytest.fixture(scope="session")
def faultmod_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """libcdfault.so, built once per test session."""
    require_tool("gcc")
    require(HEADER.is_file(), f"the PKCS#11 header {HEADER} (package libp11-kit-dev)")
    return build_faultmod(tmp_path_factory.getbasetemp() / "faultmod")


@pytest.fixture
def faulty(softhsm: SoftHsm, faultmod_library: Path, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> FaultModule:
    """The fault module in front of this test's SoftHSM2, with no faults yet and every call logged.

    The environment is set with monkeypatch, so python-pkcs11 in this process and subprocesses
    (pkcs11-tool, ``cli``, NSS) load the same SoftHSM2 and see the same faults.
    """
    root = tmp_path / "faultmod"
    root.mkdir()
    target = private_copy(softhsm.module, faultmod_library.parent)
    faulty = FaultModule(str(faultmod_library), str(target), root / "faults", root / "calls.log", softhsm)
    monkeypatch.setenv("CD_FAULT_TARGET", faulty.target)
    monkeypatch.setenv("CD_FAULTS_FILE", str(faulty.faults_file))
    monkeypatch.delenv("CD_FAULTS", raising=False)
    monkeypatch.delenv("CD_FAULT_PAD_PIN", raising=False)
    monkeypatch.delenv("CD_FAULT_PAD_SO_PIN", raising=False)
    faulty.clear()
    return faulty
