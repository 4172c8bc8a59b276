"""OPENSSL_CONF files for a key on the token, run with the real openssl against real SoftHSM2 tokens.

Every command is run exactly as ``OpensslSetup.commands`` gives it (through /bin/sh, so the
``OPENSSL_CONF=... openssl ...`` form is what is tested), in a session of its own with stdin from
/dev/null unless a test feeds a PIN: without a terminal a PIN prompt fails instead of waiting.

SoftHSM2 2.6.1 + OpenSSL 3 crash at exit (rc 139) in two places (shared/docs/field-notes.md): libp11's
engine after a *failed* key load, and pkcs11-provider unless ``pkcs11-module-quirks = no-deinit``
(which the provider configuration sets). Successful runs therefore must exit 0 here; rc 139 is
tolerated only for runs that are meant to fail to load a key through the engine, and every run's
output files and content are checked, never the exit code alone.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import shutil
import stat
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import IO

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key

from cert_desk.errors import InputError
from cert_desk.pkcs11.constants import CKO_PRIVATE_KEY
from cert_desk.pkcs11.openssl_config import (
    MARKER,
    PROVIDER_ENV,
    OpensslKeyRef,
    OpensslSetup,
    engine_setup,
    find_engine,
    find_provider,
    provider_setup,
    write_config,
)
from cert_desk.pkcs11.uri import object_uri, openssl_key_refs
from tests.conftest import USER_PIN, SoftHsm, require, require_tool

KEYS = [("rsakey", "01", "RSA:2048"), ("eckey", "02", "EC:prime256v1")]
CRASH_AT_EXIT = (139, -11)  # a shell reports SIGSEGV as 128+11; a direct child as -11


# ------------------------------------------------------------------ helpers


def _engine() -> str:
    require_tool("openssl")
    path = find_engine()
    require(path is not None, "libp11's OpenSSL engine (libengine-pkcs11-openssl)")
    assert path is not None
    return path


def _provider() -> str:
    """The one place the provider tests find pkcs11-provider (CI fetches it with tools/fetch-pkcs11-provider)."""
    require_tool("openssl")
    path = find_provider()
    require(path is not None, "pkcs11-provider (Debian 12: tools/fetch-pkcs11-provider; or apt install "
                              "pkcs11-provider)")
    assert path is not None
    return path


def _token_info(softhsm: SoftHsm, label: str) -> tuple[int, str]:
    """(slot ID, serial) of a token, as pkcs11-tool -L prints them."""
    out = softhsm.tool("-L").stdout
    m = re.search(rf"^Slot \d+ \((0x[0-9a-f]+)\):.*\n\s*token label\s*:\s*{re.escape(label)}\s*\n"
                  r"(?:.*\n)*?\s*serial num\s*:\s*(\S+)", out, re.M)
    assert m, out
    return int(m.group(1), 16), m.group(2)


def _ref(softhsm: SoftHsm, token: str, label: str, key_id: str, *, has_certificate: bool = False) -> OpensslKeyRef:
    slot_id, serial = _token_info(softhsm, token)
    uri = object_uri(model="SoftHSM v2", manufacturer="SoftHSM project", serial=serial, token_label=token,
                     object_class=CKO_PRIVATE_KEY, object_id=bytes.fromhex(key_id), label=label)
    return OpensslKeyRef(os.path.realpath(softhsm.module), token, serial, slot_id, label, bytes.fromhex(key_id), uri,
                         has_certificate)


@pytest.fixture
def keys(softhsm: SoftHsm, token: str) -> str:
    """The token with an RSA-2048 key pair (rsakey, 01) and an EC P-256 one (eckey, 02); returns its label."""
    for label, key_id, key_type in KEYS:
        softhsm.keypair(token, label, key_id, key_type)
    return token


def _pin_file(tmp_path: Path, *, line_break: bool) -> Path:
    path = tmp_path / ("pin-line" if line_break else "pin")
    path.write_text(USER_PIN + ("\n" if line_break else ""), encoding="utf-8")
    path.chmod(0o600)
    return path


def _sh(command: str, softhsm: SoftHsm, cwd: Path, *, stdin: Path | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a shell command line as a user would paste it, with no terminal (start_new_session)."""
    env = softhsm.env()
    env.pop("OPENSSL_CONF", None)
    with open(stdin or os.devnull, "rb") as fh:
        return subprocess.run(["/bin/sh", "-c", command], cwd=cwd, env=env, stdin=fh, capture_output=True, text=True,
                              timeout=timeout, start_new_session=True)


def _command(setup: OpensslSetup, word: str) -> str:
    found = [cmd for _, cmd in setup.commands if word in cmd]
    assert len(found) == 1, (word, setup.commands)
    return found[0]


def _token_spki(softhsm: SoftHsm, token: str, key_id: str, tmp_path: Path) -> bytes:
    out = tmp_path / f"pub-{key_id}.der"
    softhsm.tool("--token-label", token, "--read-object", "--type", "pubkey", "--id", key_id, "--output-file",
                 str(out))
    return load_der_public_key(out.read_bytes()).public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _check_csr(csr: Path, expected_spki: bytes, proc: subprocess.CompletedProcess[str]) -> None:
    assert csr.exists() and csr.stat().st_size > 0, proc.stderr
    verify = subprocess.run(["openssl", "req", "-in", str(csr), "-noout", "-verify"], capture_output=True, text=True,
                            timeout=30)
    assert verify.returncode == 0 and "verify OK" in verify.stdout + verify.stderr, verify.stderr
    request = x509.load_pem_x509_csr(csr.read_bytes())
    assert request.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) == expected_spki


def _no_pin_in(setup: OpensslSetup) -> None:
    for text in (setup.config_text, setup.key_argument, *setup.notes, *(c for _, c in setup.commands)):
        assert USER_PIN not in text, text
    assert "PIN =" not in setup.config_text and "pin-value" not in setup.key_argument


def _written(setup: OpensslSetup, conf: Path) -> None:
    write_config(setup, str(conf))
    assert conf.read_text(encoding="utf-8") == setup.config_text
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600


def _run_csr(setup: OpensslSetup, softhsm: SoftHsm, cwd: Path, *, stdin: Path | None = None,
             command: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = _sh(command or _command(setup, "-out request.csr"), softhsm, cwd, stdin=stdin)
    # a successful key load must not crash: the engine crashes only after a failed load, and the
    # provider configuration sets no-deinit (field notes)
    assert proc.returncode == 0, proc.stderr
    return proc


# ------------------------------------------------------------------ engine


@pytest.mark.parametrize(("label", "key_id"), [(k[0], k[1]) for k in KEYS])
def test_engine_csr_with_pin_file(softhsm: SoftHsm, keys: str, tmp_path: Path, label: str, key_id: str) -> None:
    _engine()
    conf = tmp_path / "engine.cnf"
    ref = _ref(softhsm, keys, label, key_id)
    setup = engine_setup(ref, pin_file=str(_pin_file(tmp_path, line_break=False)), conf_path=str(conf))
    assert setup.kind == "engine"
    _no_pin_in(setup)
    _written(setup, conf)

    loaded = _sh(_command(setup, "engine -t"), softhsm, tmp_path)
    assert loaded.returncode == 0 and "[ available ]" in loaded.stdout, loaded.stdout + loaded.stderr

    proc = _run_csr(setup, softhsm, tmp_path)
    _check_csr(tmp_path / "request.csr", _token_spki(softhsm, keys, key_id, tmp_path), proc)
    check = _sh(_command(setup, "-noout -verify"), softhsm, tmp_path)
    assert check.returncode == 0 and "verify OK" in check.stdout + check.stderr
    assert not any("openssl s_client" in c for _, c in setup.commands)  # no certificate on the token: no TLS
    assert any("no certificate" in n for n in setup.notes)


def test_engine_short_forms_and_slot_ids(softhsm: SoftHsm, keys: str, tmp_path: Path) -> None:
    """Every libp11 form the notes show loads the key; the PIN comes from the prompt, answered from the
    file on stdin (OpenSSL reads stdin when there is no terminal), never from argv."""
    _engine()
    conf = tmp_path / "engine.cnf"
    ref = _ref(softhsm, keys, "rsakey", "01")
    setup = engine_setup(ref, pin_file=None, conf_path=str(conf))
    _no_pin_in(setup)
    assert setup.key_argument == ref.uri
    _written(setup, conf)
    csr_command = _command(setup, "-out request.csr")
    pin = _pin_file(tmp_path, line_break=True)  # a prompt wants the line ended
    spki = _token_spki(softhsm, keys, "01", tmp_path)

    def load(key: str) -> None:
        csr = tmp_path / "request.csr"
        csr.unlink(missing_ok=True)
        proc = _run_csr(setup, softhsm, tmp_path, stdin=pin,
                        command=csr_command.replace(shlex.quote(setup.key_argument), shlex.quote(key)))
        assert f"PKCS#11 token PIN for {keys}" in proc.stdout + proc.stderr  # it did ask
        _check_csr(csr, spki, proc)

    forms = openssl_key_refs(ref.slot_id, ref.key_id, ref.key_label)
    assert set(forms) >= {"label_rsakey", "id_01", f"slot_{ref.slot_id}-id_01", f"slot_{ref.slot_id}-label_rsakey"}
    for form in forms:
        assert form in " ".join(setup.notes)
    for form in (ref.uri, *forms):
        load(form)

    # A second token: the slot ID forms and the URI with token= still find the key ...
    softhsm.init_token("other token", pin="654321")
    assert _token_info(softhsm, keys)[0] == ref.slot_id
    for form in (ref.uri, f"slot_{ref.slot_id}-id_01", f"slot_{ref.slot_id}-label_rsakey"):
        load(form)
    # ... while a URI without token= is refused (the note's claim). The engine crashes at exit after
    # this failed key load (field notes, pitfall 1): rc 139 is tolerated for such runs only.
    csr = tmp_path / "request.csr"
    csr.unlink()
    proc = _sh(csr_command.replace(shlex.quote(setup.key_argument), shlex.quote("pkcs11:id=%01;type=private")),
               softhsm, tmp_path, stdin=pin)
    assert proc.returncode in (1, *CRASH_AT_EXIT), proc.stderr
    assert "Multiple matching slots" in proc.stdout + proc.stderr
    assert not csr.exists()


def test_config_option_with_engine_fails_as_the_note_says(softhsm: SoftHsm, keys: str, tmp_path: Path) -> None:
    _engine()
    conf = tmp_path / "engine.cnf"
    setup = engine_setup(_ref(softhsm, keys, "rsakey", "01"), pin_file=str(_pin_file(tmp_path, line_break=False)),
                         conf_path=str(conf))
    _written(setup, conf)
    csr_command = _command(setup, "-out request.csr")
    env_form = f"OPENSSL_CONF={shlex.quote(str(conf))} openssl req"
    assert csr_command.startswith(env_form)
    proc = _sh(csr_command.replace(env_form, f"openssl req -config {shlex.quote(str(conf))}"), softhsm, tmp_path)
    # the configuration fails before any key is loaded: a plain error, no crash
    assert proc.returncode == 1, proc.stderr
    assert "dynamic_load:init failed" in proc.stderr
    assert not (tmp_path / "request.csr").exists()
    assert any("'dynamic_load:init failed'" in n and "OPENSSL_CONF" in n for n in setup.notes)
    _run_csr(setup, softhsm, tmp_path)  # the same command through OPENSSL_CONF works
    assert (tmp_path / "request.csr").exists()


def test_engine_pin_file_with_a_line_break(softhsm: SoftHsm, keys: str, tmp_path: Path) -> None:
    """libp11 0.4.12 sends the line break as part of the PIN: such a file is refused up front, and
    the check is needed (the token does refuse that PIN)."""
    _engine()
    pin = _pin_file(tmp_path, line_break=True)
    ref = _ref(softhsm, keys, "rsakey", "01")
    conf = tmp_path / "engine.cnf"
    with pytest.raises(InputError, match="line break") as err:
        engine_setup(ref, pin_file=str(pin), conf_path=str(conf))
    assert USER_PIN not in str(err.value)

    good_pin = _pin_file(tmp_path, line_break=False)
    good = engine_setup(ref, pin_file=str(good_pin), conf_path=str(conf))
    _written(good, conf)
    bad_key = good.key_argument.replace(str(good_pin), str(pin))
    # rc 139 tolerated: the engine crashes at exit after a failed key load (field notes)
    proc = _sh(_command(good, "-out request.csr").replace(shlex.quote(good.key_argument), shlex.quote(bad_key)),
               softhsm, tmp_path)
    assert proc.returncode in (1, *CRASH_AT_EXIT)
    assert "PIN incorrect" in proc.stderr
    assert not (tmp_path / "request.csr").exists()


def test_engine_tls_client_auth(softhsm: SoftHsm, keys: str, tmp_path: Path) -> None:
    _engine()
    _certificate_on_token(softhsm, keys, "rsakey", "01", tmp_path)
    conf = tmp_path / "engine.cnf"
    setup = engine_setup(_ref(softhsm, keys, "rsakey", "01", has_certificate=True),
                         pin_file=str(_pin_file(tmp_path, line_break=False)), conf_path=str(conf))
    _written(setup, conf)
    export = _sh(_command(setup, "--read-object --type cert"), softhsm, tmp_path)
    assert export.returncode == 0, export.stderr
    assert x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes()).subject.rfc4514_string() == "CN=rsakey"
    _tls_client_auth(setup, softhsm, tmp_path, "rsakey")


# ---------------------------------------------------------------- provider


@pytest.mark.parametrize(("label", "key_id"), [(k[0], k[1]) for k in KEYS])
def test_provider_csr_with_pin_file(softhsm: SoftHsm, keys: str, tmp_path: Path, label: str, key_id: str) -> None:
    provider = _provider()
    conf = tmp_path / "provider.cnf"
    setup = provider_setup(_ref(softhsm, keys, label, key_id), pin_file=str(_pin_file(tmp_path, line_break=True)),
                           conf_path=str(conf))
    assert setup.kind == "provider" and provider in setup.config_text
    assert "pkcs11-module-quirks = no-deinit" in setup.config_text
    _no_pin_in(setup)
    _written(setup, conf)

    listed = _sh(_command(setup, "list -providers"), softhsm, tmp_path)
    assert listed.returncode == 0 and re.search(r"pkcs11\n.*\n.*\n\s*status: active", listed.stdout), listed.stdout
    store = _sh(_command(setup, "openssl storeutl"), softhsm, tmp_path)
    assert store.returncode == 0, store.stderr  # no-deinit: no crash at exit
    assert store.stdout.count("Pkey") == 2  # both private keys: it logged in with the PIN file
    proc = _run_csr(setup, softhsm, tmp_path)
    _check_csr(tmp_path / "request.csr", _token_spki(softhsm, keys, key_id, tmp_path), proc)


def test_provider_tls_client_auth(softhsm: SoftHsm, keys: str, tmp_path: Path) -> None:
    _provider()
    _certificate_on_token(softhsm, keys, "eckey", "02", tmp_path)
    conf = tmp_path / "provider.cnf"
    setup = provider_setup(_ref(softhsm, keys, "eckey", "02", has_certificate=True),
                           pin_file=str(_pin_file(tmp_path, line_break=True)), conf_path=str(conf))
    _written(setup, conf)
    assert "type=cert" in _command(setup, "openssl s_client")  # the certificate comes from the token too
    _tls_client_auth(setup, softhsm, tmp_path, "eckey")


def test_provider_path_that_does_not_exist(tmp_path: Path, softhsm: SoftHsm, keys: str) -> None:
    ref = _ref(softhsm, keys, "rsakey", "01")
    with pytest.raises(InputError, match="pkcs11-provider") as err:
        provider_setup(ref, pin_file=None, conf_path=str(tmp_path / "p.cnf"), provider_path=str(tmp_path / "nope.so"))
    assert "fetch-pkcs11-provider" in err.value.hint


def test_find_provider_honours_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "pkcs11.so"
    fake.write_bytes(b"")
    monkeypatch.setenv(PROVIDER_ENV, str(fake))
    assert find_provider() == str(fake)
    monkeypatch.setenv(PROVIDER_ENV, str(tmp_path / "missing.so"))
    assert find_provider() != str(tmp_path / "missing.so")


# ------------------------------------------------------------- TLS helpers


def _certificate_on_token(softhsm: SoftHsm, token: str, label: str, key_id: str, tmp_path: Path) -> None:
    """A small CA certifies the token key's public key (read with pkcs11-tool) as CN=label, and
    pkcs11-tool writes the certificate under the key's ID; the server gets a certificate too."""
    ca = tmp_path / "ca"
    ca.mkdir()

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=ca, capture_output=True, text=True, timeout=60, check=True)

    for name, cn in (("ca", "Test CA"), ("server", "localhost")):
        ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{name}.key",
             "-subj", f"/CN={cn}", "-days", "2", "-out", f"{name}.pem")
    softhsm.tool("--token-label", token, "--read-object", "--type", "pubkey", "--id", key_id, "--output-file",
                 str(ca / "pub.der"))
    ossl("pkey", "-pubin", "-inform", "DER", "-in", "pub.der", "-out", "pub.pem")
    ossl("x509", "-new", "-force_pubkey", "pub.pem", "-subj", f"/CN={label}", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-days", "2", "-outform", "DER", "-out", "user.der")
    softhsm.tool("--token-label", token, "--write-object", str(ca / "user.der"), "--type", "cert", "--id", key_id,
                 "--label", label, pin=USER_PIN)


def _tls_client_auth(setup: OpensslSetup, softhsm: SoftHsm, tmp_path: Path, cn: str) -> None:
    """Run the s_client command against a local s_server that demands a client certificate."""
    ca = tmp_path / "ca"
    server = subprocess.Popen(
        ["openssl", "s_server", "-accept", "127.0.0.1:0", "-Verify", "1", "-CAfile", "ca.pem", "-cert", "server.pem",
         "-key", "server.key", "-www"], cwd=ca, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        assert server.stdout is not None
        port = _read_until(server.stdout, r"ACCEPT 127\.0\.0\.1:(\d+)", 10).group(1)
        command = _command(setup, "openssl s_client").replace("HOST:443", f"127.0.0.1:{port}")
        proc = _sh(command + f" -CAfile {shlex.quote(str(ca / 'server.pem'))}", softhsm, tmp_path)  # self-signed
        assert proc.returncode == 0, proc.stderr
        assert "Verify return code: 0 (ok)" in proc.stdout, proc.stdout
        # the server verified the client certificate, and with it the signature made on the token
        seen = _read_until(server.stdout, r"depth=0 CN = (\S+)\nverify return:(\d)", 10)
        assert seen.groups() == (cn, "1")
    finally:
        server.terminate()
        server.wait(timeout=10)


def _read_until(stream: IO[bytes], pattern: str, seconds: float) -> re.Match[str]:
    text = ""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if select.select([stream], [], [], 0.1)[0]:
            chunk = os.read(stream.fileno(), 4096).decode(errors="replace")
            if not chunk:
                break
            text += chunk
            m = re.search(pattern, text)
            if m:
                return m
    raise AssertionError(f"no {pattern!r} in s_server's output:\n{text}")


# ------------------------------------------------------------ input checks


@pytest.fixture
def plain_ref(softhsm: SoftHsm, token: str) -> OpensslKeyRef:
    return _ref(softhsm, token, "k", "01")


def _fake_so(tmp_path: Path, name: str = "fake.so") -> str:
    """A file standing in for the engine or provider: they are only checked to exist before the inputs."""
    fake = tmp_path / name
    fake.touch()
    return str(fake)


@pytest.mark.parametrize(("uri", "words"), [
    ("pkcs11:id=%01;object=k;type=private", "does not name its token"),
    ("pkcs11:token=other;id=%01;type=private", "names the token 'other'"),
    ("pkcs11:token=test%20token;id=%01;type=cert", "not the private key"),
    ("pkcs11:token=test%20token;id=%01;type=private?pin-value=123456", "query attributes"),
    ("pkcs11:token=test%20token", "neither the key's ID"),
    ("label_k", "does not start with 'pkcs11:'"),
])
def test_bad_key_uris(plain_ref: OpensslKeyRef, tmp_path: Path, uri: str, words: str) -> None:
    ref = replace(plain_ref, uri=uri)
    conf = str(tmp_path / "x.cnf")
    for call in (lambda: engine_setup(ref, pin_file=None, conf_path=conf, engine_path=_fake_so(tmp_path)),
                 lambda: provider_setup(ref, pin_file=None, conf_path=conf, provider_path=_fake_so(tmp_path))):
        with pytest.raises(InputError, match=re.escape(words)) as err:
            call()
        assert USER_PIN not in str(err.value) and err.value.hint


def test_bad_pin_files_and_paths(plain_ref: OpensslKeyRef, tmp_path: Path) -> None:
    conf = str(tmp_path / "x.cnf")
    fake = _fake_so(tmp_path)
    empty = tmp_path / "empty"
    empty.touch()
    for pin_file, words in ((tmp_path / "missing", "does not exist"), (empty, "is empty"),
                            (tmp_path, "not a regular file")):
        with pytest.raises(InputError, match=words):
            engine_setup(plain_ref, pin_file=str(pin_file), conf_path=conf, engine_path=fake)
    with pytest.raises(InputError, match="OpenSSL engine"):
        engine_setup(plain_ref, pin_file=None, conf_path=conf, engine_path=str(tmp_path / "nope.so"))
    with pytest.raises(InputError, match="PKCS#11 module"):
        engine_setup(replace(plain_ref, module=str(tmp_path / "gone.so")), pin_file=None, conf_path=conf,
                     engine_path=fake)
    with pytest.raises(InputError, match="line break"):  # an OpenSSL configuration value cannot hold one
        engine_setup(plain_ref, pin_file=None, conf_path=conf, engine_path=_fake_so(tmp_path, "odd\nname.so"))


def test_readable_pin_file_is_pointed_out(plain_ref: OpensslKeyRef, tmp_path: Path) -> None:
    pin = _pin_file(tmp_path, line_break=False)
    pin.chmod(0o644)
    setup = engine_setup(plain_ref, pin_file=str(pin), conf_path=str(tmp_path / "x.cnf"),
                         engine_path=_fake_so(tmp_path))
    assert any("chmod 600" in n for n in setup.notes)


def test_odd_paths_are_quoted_for_openssl(softhsm: SoftHsm, keys: str, tmp_path: Path) -> None:
    """Spaces, '#', '$', ';' and quotes in the paths: OpenSSL's parser reads comments, variables and
    escapes in configuration values, and libp11 splits URIs at ';'."""
    engine = _engine()
    odd = tmp_path / "my files #1 $HOME; \"x\" 'y'"
    odd.mkdir()
    module = odd / "soft hsm.so"
    shutil.copyfile(softhsm.module, module)
    ref = replace(_ref(softhsm, keys, "rsakey", "01"), module=str(module))
    pin = odd / "my pin"
    pin.write_text(USER_PIN, encoding="utf-8")
    conf = odd / "engine conf.cnf"
    setup = engine_setup(ref, pin_file=str(pin), conf_path=str(conf), engine_path=engine)
    _written(setup, conf)
    proc = _run_csr(setup, softhsm, tmp_path)
    _check_csr(tmp_path / "request.csr", _token_spki(softhsm, keys, "01", tmp_path), proc)


# ------------------------------------------------------------- write_config


def test_write_config(plain_ref: OpensslKeyRef, tmp_path: Path) -> None:
    conf = tmp_path / "sub" / "openssl.cnf"
    setup = engine_setup(plain_ref, pin_file=None, conf_path=str(conf), engine_path=_fake_so(tmp_path))
    assert setup.config_text.startswith(MARKER + "\n")
    write_config(setup, str(conf))
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    write_config(setup, str(conf))  # its own file: replaced without asking
    assert sorted(p.name for p in conf.parent.iterdir()) == ["openssl.cnf"]  # no temporary file left

    foreign = tmp_path / "mine.cnf"
    foreign.write_text("openssl_conf = my_init\n", encoding="utf-8")
    with pytest.raises(InputError, match="not written by cert-desk"):
        write_config(setup, str(foreign))
    assert foreign.read_text(encoding="utf-8") == "openssl_conf = my_init\n"
    write_config(setup, str(foreign), overwrite=True)
    assert foreign.read_text(encoding="utf-8") == setup.config_text
    with pytest.raises(InputError, match="is a directory"):
        write_config(setup, str(tmp_path))
