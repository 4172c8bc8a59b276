"""OpenSSL configuration files that let ``openssl req`` / ``openssl s_client`` use a key on a token.

Users otherwise copy blog recipes that pass ``-config file -engine pkcs11`` (which loads libp11's
engine twice and fails with "dynamic_load:init failed") and put the PIN into the file. cert-desk
writes the whole ``OPENSSL_CONF`` file instead, for either of the two ways OpenSSL 3 reaches a
PKCS#11 token, and the exact commands that use it:

- **libp11's engine** (``libengine-pkcs11-openssl``; what Debian 12 and Ubuntu 22.04 ship). It
  takes no PIN file in its configuration, so the PIN file goes into the key's URI as
  ``?pin-source=file:...``. libp11 0.4.12 reads that file whole, line break included, so the file
  must hold the PIN without one (checked here: a wrong PIN would use up one of the token's tries).
- **pkcs11-provider** (OpenSSL 3's own way; Debian 13, Ubuntu 24.04, bookworm-backports). It reads
  ``pkcs11-module-token-pin = file:...`` (the first line). ``pkcs11-module-quirks = no-deinit`` is
  always set: without it SoftHSM2 2.6.1 crashes every openssl run at exit (rc 139, after the output
  was written).

The PIN itself is never in the file, a command line or a note: only the PIN file's path is, and
without a PIN file openssl asks for the PIN on the terminal. The notes' claims were checked on
Debian 12 (OpenSSL 3.0, libp11 0.4.12, pkcs11-provider 1.0, SoftHSM2 2.6.1) and are re-checked by
``tests/test_openssl_config.py`` with the real openssl.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import stat
import subprocess
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from cert_desk import equivalents
from cert_desk.errors import InputError
from cert_desk.models import TokenRef
from cert_desk.pkcs11.constants import CKO_CERTIFICATE
from cert_desk.pkcs11.uri import object_uri_in, openssl_key_refs, parse_uri, token_uri

log = logging.getLogger(__name__)

#: First line of every file :func:`write_config` writes; how it recognises its own files.
MARKER = "# OpenSSL configuration written by cert-desk"
#: Where ``tools/fetch-pkcs11-provider`` puts pkcs11-provider by default (in a source checkout).
FETCHED_PROVIDER_DIR = Path(__file__).resolve().parents[2] / ".cache" / "pkcs11-provider"
PROVIDER_ENV = "CERT_DESK_PKCS11_PROVIDER"

_MAX_PIN_FILE = 4096
_MULTIARCH = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
# Only used when `openssl version` cannot tell (no openssl command): Debian/Ubuntu, then Fedora/SUSE.
_ENGINE_DIRS = (f"/usr/lib/{_MULTIARCH}/engines-3", "/usr/lib64/engines-3",
                f"/usr/lib/{_MULTIARCH}/engines-1.1", "/usr/lib64/engines-1.1")
_PROVIDER_DIRS = (f"/usr/lib/{_MULTIARCH}/ossl-modules", "/usr/lib64/ossl-modules")
# Characters an OpenSSL configuration value may hold unquoted: '#' starts a comment, '$' expands a
# variable, '\\' escapes, and surrounding spaces are dropped.
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_./:,+%@=-]+")
# libp11 reads N in slot_N-... with sscanf("%d"): a larger slot ID cannot be written that way.
_MAX_LIBP11_SLOT = 2**31 - 1


@dataclass(frozen=True)
class OpensslKeyRef:
    """What cert-desk knows about the private key (built by the caller from its object listing)."""

    module: str  # real path of the PKCS#11 module
    token_label: str
    token_serial: str
    slot_id: int
    key_label: str
    key_id: bytes
    uri: str  # RFC 7512 URI of the private key, naming its token (cert_desk.pkcs11.uri builds one)
    has_certificate: bool


@dataclass(frozen=True)
class OpensslSetup:
    """A configuration file and everything a user needs to use it."""

    kind: str  # "engine" | "provider"
    config_text: str  # the whole OPENSSL_CONF file
    key_argument: str  # what to pass to -key
    commands: tuple[tuple[str, str], ...]  # (what it does, shell command)
    notes: tuple[str, ...]  # plain-words explanations


# ------------------------------------------------------------------- finding


def _openssl_dir(flag: str, name: str) -> str | None:
    """A directory ``openssl version FLAG`` prints (``ENGINESDIR: "..."``), or None."""
    exe = shutil.which("openssl")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "version", flag], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(rf'^{name}: "(.*)"$', out, re.M)
    return m.group(1) if m else None


def find_engine() -> str | None:
    """libp11's engine (``pkcs11.so``) in the engines directory this system's openssl uses.

    That is ``ENGINESDIR`` from ``openssl version -e`` (``engines-3`` for OpenSSL 3,
    ``engines-1.1`` for 1.1): an engine from the other directory would not load. Only without an
    openssl command are the usual directories of both tried.
    """
    engines = _openssl_dir("-e", "ENGINESDIR")
    for folder in (engines,) if engines else _ENGINE_DIRS:
        for name in ("pkcs11.so", "libpkcs11.so"):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                return path
    return None


def find_provider() -> str | None:
    """pkcs11-provider's ``pkcs11.so``: ``$CERT_DESK_PKCS11_PROVIDER``, then openssl's modules
    directory (``openssl version -m``; the installed package), then where
    ``tools/fetch-pkcs11-provider`` extracts it (Debian 12 has it only in bookworm-backports)."""
    chosen = os.environ.get(PROVIDER_ENV)
    if chosen:
        if os.path.isfile(chosen):
            return os.path.abspath(chosen)
        log.warning("%s=%s is not a file; looking for pkcs11-provider elsewhere", PROVIDER_ENV, chosen)
    modules = _openssl_dir("-m", "MODULESDIR")
    candidates = [os.path.join(folder, "pkcs11.so") for folder in ((modules,) if modules else _PROVIDER_DIRS)]
    candidates += [str(p) for p in sorted(FETCHED_PROVIDER_DIR.glob("usr/lib/*/ossl-modules/pkcs11.so"))]
    return next((path for path in candidates if os.path.isfile(path)), None)


# ------------------------------------------------------------------ checking


def _existing_file(path: str, what: str, hint: str) -> str:
    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise InputError(f"{what} {full} does not exist or is not a file.", hint)
    return full


def _pin_file(path: str, *, no_line_break: bool) -> tuple[str, str | None]:
    """The PIN file's absolute path, and a warning when other users can read it.

    ``no_line_break``: libp11 0.4.12 takes the file's whole content as the PIN, line break
    included; the token would refuse that PIN and count a failed try, so refuse the file first.
    Nothing read here is kept, logged or shown.
    """
    full = os.path.abspath(path)
    try:
        st = os.stat(full)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"PIN file {full} is not a regular file.", "Give the file that holds the token's PIN.")
        if st.st_size == 0 or st.st_size > _MAX_PIN_FILE:
            raise InputError(f"PIN file {full} is {'empty' if st.st_size == 0 else 'too large for a PIN file'}.",
                             "Write the token's PIN into it, and nothing else.")
        if no_line_break:
            with open(full, "rb") as fh:
                content = fh.read(_MAX_PIN_FILE)
            has_break = b"\n" in content or b"\r" in content
            del content
            if has_break:
                raise InputError(
                    f"PIN file {full} contains a line break; libp11's engine (0.4.12) would send it to the "
                    "token as part of the PIN, and the token would count a wrong PIN.",
                    f"Remove the line break, for example: tr -d '\\r\\n' < {shlex.quote(full)} > NEWFILE "
                    "(then use NEWFILE), or use pkcs11-provider, which reads the first line.")
    except FileNotFoundError as exc:
        raise InputError(f"PIN file {full} does not exist.", "Write the token's PIN into it first.") from exc
    except PermissionError as exc:
        raise InputError(f"PIN file {full} cannot be read (permission denied).",
                         "openssl must be able to read it as you: check its owner and mode.") from exc
    warning = None
    if st.st_mode & 0o077:
        warning = (f"Other users of this computer may read the PIN file {full} (mode {stat.S_IMODE(st.st_mode):o}): "
                   f"run chmod 600 {shlex.quote(full)}.")
    return full, warning


def _attr(attrs: dict[str, str | bytes], key: str) -> str:
    value = attrs.get(key, "")
    return value if isinstance(value, str) else ""


def _key_uri(ref: OpensslKeyRef) -> dict[str, str | bytes]:
    """Check that ``ref.uri`` names the private key on its token; returns its attributes."""
    hint = "Use the key's URI as cert-desk shows it (Copy URI), which names the token and the key."
    # The URI is never echoed: a pasted one may carry a PIN (pin-value=).
    if "?" in ref.uri:
        raise InputError("The key's URI carries query attributes (the part after '?', such as pin-value).",
                         "Give the URI without them: cert-desk adds the PIN file itself, and never a PIN.")
    try:
        attrs = parse_uri(ref.uri)
    except ValueError as exc:
        raise InputError("The key's URI does not start with 'pkcs11:'.", hint) from exc
    if "token" not in attrs:
        raise InputError("The key's URI does not name its token (token=...): with two tokens present, "
                         "libp11's engine refuses to log in ('Multiple matching slots').", hint)
    if _attr(attrs, "token") != ref.token_label:
        raise InputError(f"The key's URI names the token {_attr(attrs, 'token')!r}, but the key is on "
                         f"{ref.token_label!r}.", hint)
    kind = _attr(attrs, "type") or "private"
    if kind != "private":
        raise InputError(f"The key's URI names a {kind} object (type={kind}), not the private key (type=private).",
                         hint)
    if "id" not in attrs and "object" not in attrs:
        raise InputError("The key's URI names neither the key's ID (id=) nor its label (object=).", hint)
    return attrs


def _conf_value(value: str, what: str) -> str:
    """``value`` written so that OpenSSL's configuration parser reads it back unchanged."""
    if any(c in value for c in "\r\n\0"):
        raise InputError(f"The {what} {value!r} contains a line break, which an OpenSSL configuration cannot hold.",
                         "Rename or move the file.")
    if _PLAIN_VALUE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


# ------------------------------------------------------------------ building


def _subject(ref: OpensslKeyRef) -> str:
    """A ``-subj`` for the example CSR: the key's label as CN (``/`` ``+`` ``\\`` escaped)."""
    name = ref.key_label or ref.token_label or "cert-desk"
    return "/CN=" + re.sub(r"([\\/+])", r"\\\1", name)


def _with_conf(conf: str, argv: list[str]) -> str:
    return f"OPENSSL_CONF={shlex.quote(conf)} {shlex.join(argv)}"


def _token_uri(attrs: dict[str, str | bytes]) -> str:
    return token_uri(model=_attr(attrs, "model"), manufacturer=_attr(attrs, "manufacturer"),
                     serial=_attr(attrs, "serial"), label=_attr(attrs, "token"))


def _kind_name(kind: str) -> str:
    return "libp11's OpenSSL engine" if kind == "engine" else "pkcs11-provider"


def _header(ref: OpensslKeyRef, kind: str, conf: str, key: str) -> list[str]:
    use = "-engine pkcs11 -keyform engine " if kind == "engine" else ""
    return [
        MARKER,
        f"# for the key {_comment(ref.key_label)!r} (ID {ref.key_id.hex() or '-'}) on the token "
        f"{_comment(ref.token_label)!r} (serial {_comment(ref.token_serial)}), through {_kind_name(kind)}.",
        "# Use it through the environment, not with -config:",
        f"#   {_comment(_with_conf(conf, ['openssl', 'req', '-new']))} {use}-key {_comment(shlex.quote(key))} ...",
        "# It holds no PIN.",
        "",
        "openssl_conf = openssl_init",
        "",
        "[openssl_init]",
    ]


def _openssl_conf_note(conf: str) -> str:
    return (f"Put OPENSSL_CONF={shlex.quote(conf)} in front of the openssl command, as in the commands here. It takes "
            "the place of the system's openssl.cnf for that one command; nothing else on the computer changes.")


def _crash_note(kind: str) -> str:
    when = ("after the engine could not load the key (wrong key reference, wrong PIN): the messages before the "
            "crash are the real error" if kind == "engine" else
            "on every run unless pkcs11-module-quirks = no-deinit is set, as it is here, even though the output "
            "was already written")
    return ("With SoftHSM2 2.6.1 and OpenSSL 3, openssl can crash as it exits ('Segmentation fault', exit code 139) "
            f"{when}. Check the result itself (openssl req -in request.csr -noout -verify), not only the exit code.")


def _no_certificate_note(ref: OpensslKeyRef) -> str:
    return (f"The token has no certificate under this key's ID ({ref.key_id.hex() or 'none'}), so there is no "
            "TLS client command: s_client needs a certificate. Import the certificate issued for this key first.")


def engine_setup(ref: OpensslKeyRef, *, pin_file: str | None, conf_path: str,
                 engine_path: str | None = None) -> OpensslSetup:
    """An ``OPENSSL_CONF`` file for libp11's engine, the ``-key`` argument and the commands.

    The engine is loaded through ``OPENSSL_CONF`` (read at start-up, before ``-engine``); with
    ``pin_file`` the key's URI carries ``?pin-source=file:PATH`` (the file must hold the PIN with
    no line break), without it openssl asks for the PIN.

    Raises:
        InputError: the engine, the module or the PIN file cannot be used, or ``ref.uri`` does not
            name the private key on its token.
    """
    engine_hint = "Install libp11's engine: sudo apt install libengine-pkcs11-openssl"
    if engine_path is None:
        engine_path = find_engine()
        if engine_path is None:
            raise InputError("libp11's OpenSSL engine (pkcs11.so) is not installed.", engine_hint)
    engine = _existing_file(engine_path, "The OpenSSL engine", engine_hint)
    module = _existing_file(ref.module, "The PKCS#11 module", "Use the module's real path ('cert-desk modules').")
    _key_uri(ref)
    conf = os.path.abspath(conf_path)
    notes = [_openssl_conf_note(conf),
             f"Do not use -config {shlex.quote(conf)} together with -engine pkcs11: -engine loads the engine first, "
             "then the configuration loads it a second time and openssl stops with 'dynamic_load:init failed'. "
             "OPENSSL_CONF is read when openssl starts, before -engine, so the engine is loaded once."]
    if pin_file is None:
        key = ref.uri
        notes.append(f"openssl asks for the PIN ('Enter PKCS#11 token PIN for {ref.token_label}'). To give it a "
                     "file instead, write the PIN without a line break into a file only you can read.")
    else:
        pin, warning = _pin_file(pin_file, no_line_break=True)
        key = f"{ref.uri}?pin-source=file:{quote(pin, safe='/-._~')}"
        notes.append(f"The engine reads the PIN from {pin} (pin-source in the key's URI): it is in neither the "
                     "configuration nor the command line. libp11 0.4.12 takes the file's whole content as the PIN, "
                     "so the file must hold the PIN without a line break.")
        if warning:
            notes.append(warning)
    refs = openssl_key_refs(ref.slot_id, ref.key_id, ref.key_label)
    if ref.slot_id > _MAX_LIBP11_SLOT:
        refs = tuple(r for r in refs if r.startswith(("id_", "label_")))
    notes.append(
        f"-key also takes libp11's short forms: {', '.join(refs)}. In slot_N- and N: forms, N is the slot ID "
        f"({ref.slot_id}), a number the module gives the slot, not its position (SoftHSM2 gives a new one when a "
        "token is initialised). The short forms cannot carry the PIN file, so openssl asks for the PIN, and "
        "label_/id_ look on the first token only: with several tokens, use a slot_ form or the pkcs11: URI. A "
        "pkcs11: URI must name the token (token=); without it and with two tokens, the engine refuses to log in.")
    notes.append(_crash_note("engine"))
    notes.append("Engines are deprecated in OpenSSL 3, but libp11's engine is what Debian 12 and Ubuntu 22.04 "
                 "install; pkcs11-provider is OpenSSL 3's own way to the same key.")

    lines = [*_header(ref, "engine", conf, key),
             "engines = engine_section", "", "[engine_section]", "pkcs11 = pkcs11_section", "",
             "[pkcs11_section]", "engine_id = pkcs11",
             f"dynamic_path = {_conf_value(engine, 'engine path')}",
             f"MODULE_PATH = {_conf_value(module, 'module path')}",
             "# load the engine at start-up, initialise it (and the module) only when a key is used",
             "init = 0"]
    engine_args = ["-engine", "pkcs11", "-keyform", "engine", "-key", key]
    commands = [
        ("Check that OpenSSL loads libp11's engine", _with_conf(conf, ["openssl", "engine", "-t", "-c", "pkcs11"])),
        *_csr_commands(ref, conf, engine_args),
    ]
    if ref.has_certificate:
        token = TokenRef(module=module, slot_id=ref.slot_id, serial=ref.token_serial, label=ref.token_label)
        commands += [
            ("Export the key's certificate to cert.pem (-cert with the engine needs a file)",
             equivalents.read_object(token, "cert", ref.key_id, ref.key_label, "cert.der") + " && "
             + shlex.join(["openssl", "x509", "-inform", "DER", "-in", "cert.der", "-out", "cert.pem"])),
            ("Connect to a TLS server with that certificate and the key on the token (put the server in place "
             "of HOST:443)",
             _with_conf(conf, ["openssl", "s_client", "-connect", "HOST:443", *engine_args, "-cert", "cert.pem"])),
        ]
    else:
        notes.append(_no_certificate_note(ref))
    return OpensslSetup("engine", "\n".join(lines) + "\n", key, tuple(commands), tuple(notes))


def _csr_commands(ref: OpensslKeyRef, conf: str, key_args: list[str]) -> list[tuple[str, str]]:
    return [
        ("Make a certificate request signed by the key on the token: request.csr (change -subj to the name the "
         "certificate should carry)",
         # -utf8: without it openssl reads -subj as Latin-1 and 'José' becomes 'JosÃ©'
         _with_conf(conf, ["openssl", "req", "-new", *key_args, "-utf8", "-subj", _subject(ref),
                           "-out", "request.csr"])),
        ("Check the request's signature", shlex.join(["openssl", "req", "-in", "request.csr", "-noout", "-verify"])),
    ]


def provider_setup(ref: OpensslKeyRef, *, pin_file: str | None, conf_path: str,
                   provider_path: str | None = None) -> OpensslSetup:
    """An ``OPENSSL_CONF`` file for pkcs11-provider, the ``-key`` argument and the commands.

    The PIN comes from ``pkcs11-module-token-pin = file:PATH`` (its first line); without
    ``pin_file`` openssl asks for it.

    Raises:
        InputError: the provider, the module or the PIN file cannot be used, or ``ref.uri`` does
            not name the private key on its token.
    """
    provider_hint = ("Install pkcs11-provider (sudo apt install pkcs11-provider on Debian 13 or Ubuntu 24.04; on "
                     f"Debian 12 run tools/fetch-pkcs11-provider), or set {PROVIDER_ENV} to its pkcs11.so.")
    if provider_path is None:
        provider_path = find_provider()
        if provider_path is None:
            raise InputError("pkcs11-provider (OpenSSL's PKCS#11 provider, pkcs11.so) is not installed.",
                             provider_hint)
    provider = _existing_file(provider_path, "pkcs11-provider", provider_hint)
    module = _existing_file(ref.module, "The PKCS#11 module", "Use the module's real path ('cert-desk modules').")
    attrs = _key_uri(ref)
    conf = os.path.abspath(conf_path)
    key = ref.uri
    notes = [_openssl_conf_note(conf) + " Every openssl command reads it, including those that have no -config "
             "option (s_client, storeutl)."]
    pin_line: list[str] = []
    if pin_file is None:
        notes.append("openssl asks for the token's PIN when it needs it.")
    else:
        pin, warning = _pin_file(pin_file, no_line_break=False)
        pin_line = [f"pkcs11-module-token-pin = {_conf_value('file:' + pin, 'PIN file path')}"]
        notes.append(f"pkcs11-provider reads the PIN from the first line of {pin} (pkcs11-module-token-pin): it is "
                     "in neither the configuration nor the command line.")
        if warning:
            notes.append(warning)
    notes += [
        "-key and -cert take pkcs11: URIs. The URI names the token (token=), so another token with a key of the "
        "same label or ID does not get in the way.",
        "pkcs11-module-quirks = no-deinit keeps the provider from closing the module's sessions as openssl exits; "
        "SoftHSM2 2.6.1 crashes there otherwise (openssl/openssl#22508, softhsm/SoftHSMv2#780).",
        _crash_note("provider"),
        "The environment variable PKCS11_PROVIDER_MODULE, when set, overrides pkcs11-module-path.",
    ]
    lines = [*_header(ref, "provider", conf, key),
             "providers = provider_sect", "", "[provider_sect]", "default = default_sect", "pkcs11 = pkcs11_sect", "",
             "# listing providers replaces the built-in default: keep it for everything not on the token",
             "[default_sect]", "activate = 1", "",
             "[pkcs11_sect]",
             f"module = {_conf_value(provider, 'provider path')}",
             f"pkcs11-module-path = {_conf_value(module, 'module path')}",
             *pin_line,
             "# skip C_Finalize at exit: SoftHSM2 2.6.1 crashes there with OpenSSL 3",
             "pkcs11-module-quirks = no-deinit",
             "activate = 1"]
    commands = [
        ("Check that OpenSSL loads pkcs11-provider", _with_conf(conf, ["openssl", "list", "-providers"])),
        ("List the token's keys and certificates as OpenSSL sees them",
         _with_conf(conf, ["openssl", "storeutl", _token_uri(attrs)])),
        *_csr_commands(ref, conf, ["-key", key]),
    ]
    if ref.has_certificate:
        cert = object_uri_in(_token_uri(attrs), object_class=CKO_CERTIFICATE, object_id=ref.key_id,
                             label="" if ref.key_id else ref.key_label)
        commands.append(("Connect to a TLS server with the certificate and the key on the token (put the server "
                         "in place of HOST:443)",
                         _with_conf(conf, ["openssl", "s_client", "-connect", "HOST:443", "-key", key, "-cert", cert])))
    else:
        notes.append(_no_certificate_note(ref))
    return OpensslSetup("provider", "\n".join(lines) + "\n", key, tuple(commands), tuple(notes))


# ------------------------------------------------------------------- writing


def _written_by_us(path: Path) -> bool:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            return fh.readline(len(MARKER) + 2).rstrip("\n") == MARKER
    except OSError:
        return False


def write_config(setup: OpensslSetup, path: str, *, overwrite: bool = False) -> None:
    """Write ``setup.config_text`` to ``path`` (the ``conf_path`` the setup was made for).

    Atomic (a temporary file in the same directory, then a rename), so openssl never reads half a
    file; mode 0600. A file cert-desk did not write (its first line is not :data:`MARKER`) is
    only replaced with ``overwrite=True``: it may be the user's own openssl.cnf.

    Raises:
        InputError: ``path`` is a directory, a foreign file (without ``overwrite``), or cannot be written.
    """
    target = Path(path).absolute()
    if target.is_dir():
        raise InputError(f"{target} is a directory.", "Give the path of the configuration file to write.")
    if target.exists() and not overwrite and not _written_by_us(target):
        raise InputError(f"{target} exists and was not written by cert-desk; it may be an OpenSSL configuration "
                         "you still need.", "Choose another file name, or confirm that it may be replaced.")
    tmp: str | None = None
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")  # mode 0600
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(setup.config_text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise InputError(f"Cannot write {target}: {exc.strerror or exc}.",
                         "Choose a file in a directory you can write to.") from exc
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    log.info("wrote the %s configuration %s", setup.kind, target)
