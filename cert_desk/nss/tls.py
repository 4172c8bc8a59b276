"""Prove that a browser can log in with a token certificate: a TLS client login through an NSS database.

A browser on Linux (Chrome, Chromium, Firefox) does TLS client authentication through NSS: the
database's registered PKCS#11 modules provide the token's certificates and keys. NSS's own test
client, ``tstclnt``, does the same with the same database, so a handshake it completes with
``-n TOKEN:LABEL`` is what the browser would do, without a browser.

tstclnt has traps that decide how it is driven here (measured with NSS 3.87 and pkcs11-spy):

- With a wrong PIN it calls C_Login **three times** before giving up, then prompts on the terminal
  and handshakes without a certificate. On a token with three tries (SmartCard-HSM, Nitrokey HSM)
  one test would block the PIN. So the PIN is checked first with ``certutil -L -h TOKEN -n
  NICKNAME -f FILE``, which calls C_Login exactly once; tstclnt runs only after the token took it.
  ``certutil -h`` with a token name NSS does not know searches *every* token (and would try the PIN
  on each), so the token is first looked up in ``certutil -U``, which needs no PIN.
- It reads the PIN from ``-W FILE`` (``-w`` would put it on the command line). The file is
  tools.pin_file's: 0600, in ``$XDG_RUNTIME_DIR`` (a tmpfs) when there is one, removed afterwards.
  (A ``TOKEN:PIN`` line does not confine the PIN to that token: NSS's file reader falls back to the
  whole line for any token. Only naming one token, ``-n TOKEN:LABEL`` / ``-h TOKEN``, does.)
- It reads the request from ``-A FILE``; its standard input is ``/dev/null`` (a pipe that never
  sends makes it spin at 100 % CPU) and it runs in a new session, so it has no terminal to prompt
  on. Every tool runs with a deadline and is killed (its own process group) when it passes.
- ``-O -v -v`` makes it say whether the server asked for a client certificate and whether one was
  sent (``sent cert: ...`` / ``send no cert``): the login is judged on that, not on the exit code.

The server's certificate is checked as the browser would: against the database's trust (a CA added
with ``certutil -A -t C,,``) and NSS's built-in roots (``-b``). With ``ca_file`` the check is
against that file instead: tstclnt then accepts any server certificate (``-o``) and prints the chain
it received, which cryptography's server verifier (the web PKI rules, with the host name) judges
afterwards. The override is used only then, because the client signature is sent before that
judgement; it is a signature over this one handshake, and the PIN never leaves the machine.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import selectors
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from cert_desk.errors import InputError
from cert_desk.nss.tools import nss_tool, tool_env
from cert_desk.nss.tools import pin_file as tools_pin_file
from cert_desk.secrets import Secret
from cert_desk.x509.bundle import read_certificate_file

log = logging.getLogger(__name__)

MAX_OUTPUT = 1 << 20
"""A server's answer beyond 1 MiB is not needed to judge the login; the client is stopped there."""
MAX_TIMEOUT = 600.0
NSS_TOOLS_HINT = "Install NSS's tools: the 'libnss3-tools' package (Debian, Ubuntu) or 'nss-tools' (Fedora)."
_URL_HINT = "Write the address as https://host/ or https://host:port/ (for example https://127.0.0.1:8443/)."
_NICKNAME_HINT = "Write it as TOKEN:LABEL, the token's label and the certificate's label, e.g. 'My Token:alice'."
_PROTOCOLS = {"3.0": "SSLv3", "3.1": "TLSv1.0", "3.2": "TLSv1.1", "3.3": "TLSv1.2", "3.4": "TLSv1.3"}
_NSS_ERROR = re.compile(r"\b((?:SSL|SEC)_ERROR_[A-Z0-9_]+|PR_[A-Z0-9_]+_ERROR): *(.*)")
_NOT_CONNECTED = ("unable to connect", "error looking up host", "PR_CONNECT_REFUSED_ERROR",
                  "PR_NETWORK_UNREACHABLE_ERROR", "PR_HOST_UNREACHABLE_ERROR", "PR_CONNECT_TIMEOUT_ERROR")
_SERVER_CERT_ERRORS = {
    "SEC_ERROR_UNKNOWN_ISSUER": "its issuer is not trusted in the database",
    "SEC_ERROR_UNTRUSTED_ISSUER": "its issuer is not trusted in the database",
    "SEC_ERROR_CA_CERT_INVALID": "its issuer is not a valid CA",
    "SSL_ERROR_BAD_CERT_DOMAIN": "it was not issued for the host name in the address",
    "SEC_ERROR_EXPIRED_CERTIFICATE": "it has expired",
    "SEC_ERROR_EXPIRED_ISSUER_CERTIFICATE": "its issuer's certificate has expired",
    "SEC_ERROR_UNTRUSTED_CERT": "it is marked as not trusted",
    "SEC_ERROR_REVOKED_CERTIFICATE": "it has been revoked",
}
_CHATTER = re.compile(r"tstclnt: (about to call|PR_Poll returned|stdin read|Writing \d+ bytes|\d+ bytes written"
                      r"|Read from server|connect: PR_IN_PROGRESS_ERROR|ready\.\.\.)")


@dataclass(frozen=True)
class TlsLogin:
    """The outcome of one TLS client login through an NSS database.

    Attributes:
        ok: The handshake completed with our client certificate (the server asked for one, NSS
            sent the token's certificate and signed with its key, and the server went on).
        words: What happened, in plain words, with what to do when it failed.
        server_saw: The client certificate subject the server reports on its page (``openssl
            s_server -www`` shows it), or ``""`` when the page does not say.
        protocol: ``TLSv1.3``, ``TLSv1.2``, ... when known, otherwise ``""``.
        output: What the tools printed, for a details view (never the PIN).
    """

    ok: bool
    words: str
    server_saw: str = ""
    protocol: str = ""
    output: str = ""


@dataclass(frozen=True)
class _Run:
    returncode: int | None  # None: killed (deadline or output limit)
    stdout: str
    stderr: str
    timed_out: bool = False


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    path: str


@dataclass(frozen=True)
class _Request:
    """One login as the tools are given it."""

    target: _Target
    directory: Path
    nickname: str
    token: str
    label: str
    pin_file: str | None
    timeout: float

    @property
    def db(self) -> str:
        return f"sql:{self.directory}"


# ----------------------------------------------------------------------------- input


def parse_url(url: str) -> tuple[str, int]:
    """``https://HOST[:PORT]/...`` as (host, port); the port defaults to 443.

    Raises:
        InputError: not an https address, no host, a bad port, user information, or characters
            that cannot go into a request line.
    """
    target = _target(url)
    return target.host, target.port


def _target(url: str) -> _Target:
    text = url.strip()
    if not text or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise InputError(f"The address {url!r} is empty or contains spaces or control characters.", _URL_HINT)
    try:
        parts = urlsplit(text)
    except ValueError as e:  # an unclosed "[" of an IPv6 address
        raise InputError(f"The address {text} cannot be read: {e}.", _URL_HINT) from None
    if parts.scheme.lower() != "https":
        raise InputError(f"The address {text} is not an https:// address; a TLS login needs one.", _URL_HINT)
    if parts.username is not None or parts.password is not None:
        raise InputError(f"The address {text} contains a user name or password; a certificate login uses neither.",
                         "Remove the 'user@' part from the address.")
    try:
        port = 443 if parts.port is None else parts.port
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise InputError(f"The port in the address {text} is not a number from 1 to 65535.", _URL_HINT)
    host = parts.hostname or ""
    if not host or host.startswith("-"):
        raise InputError(f"The address {text} names no host.", _URL_HINT)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return _Target(host, port, path)


def _database_dir(db_spec: str) -> Path:
    """The directory of an ``sql:`` database (``sql:DIR`` or a plain directory)."""
    spec = db_spec.strip()
    if spec.startswith("dbm:"):
        raise InputError(f"The NSS database {spec} is in the old dbm format, which cert-desk does not use.",
                         "Convert it: certutil --upgrade-merge, or let Firefox/Chrome upgrade it.")
    directory = Path(spec.removeprefix("sql:")).expanduser()
    if not spec.removeprefix("sql:") or not directory.is_dir():
        raise InputError(f"The NSS database directory {directory} does not exist.",
                         "Give the directory that holds cert9.db, e.g. ~/.pki/nssdb.")
    if not (directory / "cert9.db").is_file():
        raise InputError(f"{directory} holds no NSS database (no cert9.db).",
                         "Give the directory that holds cert9.db, e.g. ~/.pki/nssdb.")
    return directory.absolute()


def _split_nickname(nickname: str) -> tuple[str, str]:
    """(token, label): NSS splits a nickname at its first colon, and so does this."""
    token, colon, label = nickname.partition(":")
    if not colon or not token.strip() or not label.strip():
        raise InputError(f"The certificate nickname {nickname!r} does not name a token.", _NICKNAME_HINT)
    if any(ord(c) < 0x20 for c in nickname):
        raise InputError(f"The certificate nickname {nickname!r} contains control characters.", _NICKNAME_HINT)
    return token, label


# ------------------------------------------------------------------------ processes


def _run(argv: list[str], deadline: float) -> _Run:
    """Run a tool with no standard input and no terminal, reading its output up to the deadline.

    The tool gets its own session (so NSS cannot open /dev/tty to ask for a PIN) and is killed,
    with its process group, when the deadline passes or it prints more than :data:`MAX_OUTPUT`.
    """
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, env=tool_env())  # no CERT_DESK_PIN for the tools
    assert proc.stdout is not None and proc.stderr is not None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    size = 0
    stopped = False  # by the deadline or the output limit
    with selectors.DefaultSelector() as selector:
        for stream in (proc.stdout, proc.stderr):
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map() and not stopped:
            left = deadline - time.monotonic()
            events = selector.select(left) if left > 0 else []
            for key, _mask in events:
                data = os.read(key.fd, 65536)
                if not data:
                    selector.unregister(key.fileobj)
                chunks[key.fd].append(data)
                size += len(data)
            stopped = not events or size > MAX_OUTPUT
    returncode: int | None = None
    if not stopped:
        with contextlib.suppress(subprocess.TimeoutExpired):  # output closed, process not yet gone
            returncode = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    if returncode is None:
        _kill(proc)
    proc.stdout.close()
    proc.stderr.close()
    out, err = (b"".join(chunks[fd]).decode("utf-8", "replace") for fd in (out_fd, err_fd))
    return _Run(returncode, out, err, timed_out=returncode is None and size <= MAX_OUTPUT)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill the tool's process group (its own session, so only what this module started)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


# ----------------------------------------------------------------------------- login


def tls_login(db_spec: str, nickname: str, url: str, pin: Secret | None, *, ca_file: str | None = None,
              timeout: float = 30) -> TlsLogin:
    """Log in to the TLS server at ``url`` with the certificate ``nickname`` (``TOKEN:LABEL``) as a
    browser using the NSS database ``db_spec`` would, and say what happened.

    Failures of the login itself (PIN refused, no such token or certificate, no connection, the
    server refused the certificate, a timeout) come back as ``ok=False`` with the reason in
    ``words``; a wrong PIN costs the token exactly one try.

    Raises:
        InputError: ``url``, ``nickname``, ``db_spec``, ``ca_file``, ``timeout`` or the PIN cannot be used.
        CertDeskError: NSS's tools (tstclnt, certutil) are not installed.
    """
    target = _target(url)
    directory = _database_dir(db_spec)
    token, label = _split_nickname(nickname)
    secret = pin.reveal() if pin is not None else ""
    if any(c in secret for c in "\r\n\0"):
        raise InputError("The PIN contains a line break or NUL character, which NSS cannot be given.",
                         "Check the PIN file: the PIN must be on its first line.")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise InputError(f"The timeout of {timeout!r} seconds is not between 0 and {MAX_TIMEOUT:g}.")
    cas = list(read_certificate_file(ca_file).certificates) if ca_file else None
    certutil, tstclnt = nss_tool("certutil"), nss_tool("tstclnt")
    deadline = time.monotonic() + timeout

    with contextlib.ExitStack() as stack:
        work = stack.enter_context(tempfile.TemporaryDirectory(prefix="cert-desk-tls-"))
        pin_file = stack.enter_context(tools_pin_file(pin)) if pin is not None else None
        req = _Request(target, directory, nickname, token, label, pin_file, timeout)
        refused = _check_token_and_certificate(certutil, req, deadline)
        if refused:
            return _redacted(refused, secret)
        request_file = Path(work, "request")
        host_header = f"[{target.host}]" if ":" in target.host else target.host  # an IPv6 address
        _write_private(request_file, f"GET {target.path} HTTP/1.0\r\nHost: {host_header}\r\n\r\n")
        argv = [tstclnt, "-h", target.host, "-p", str(target.port), "-d", req.db, "-n", nickname,
                "-A", str(request_file), "-O", "-v", "-v", "-b"]
        if pin_file:
            argv += ["-W", pin_file]
        if cas is not None:
            argv += ["-o", "-C", "-C", "-C"]
        log.info("TLS login to %s:%d with %r through %s", target.host, target.port, nickname, directory)
        run = _run(argv, deadline)
    result = _judge(run, req)
    if result.ok and cas is not None:
        result = _judge_server_chain(result, run.stderr, cas, target, ca_file or "")
    log.info("TLS login to %s:%d: %s", target.host, target.port, "ok" if result.ok else "failed")
    return _redacted(result, secret)


def _check_token_and_certificate(certutil: str, req: _Request, deadline: float) -> TlsLogin | None:
    """Find the token without a PIN, then the certificate with one C_Login: ``None`` when both are there."""
    token = req.token
    listing = _run([certutil, "-U", "-d", req.db], deadline)
    if listing.returncode != 0:
        return TlsLogin(False, f"certutil could not open the NSS database {req.directory}: {_last_error(listing)}.",
                        output=_details(listing))
    tokens = re.findall(r"^\s*token: (.*?)\s*$", listing.stdout, flags=re.M)
    if token not in tokens:
        return TlsLogin(False, f"The NSS database {req.directory} has no token '{token}' (it has: "
                               f"{', '.join(repr(t) for t in tokens)}). Is the token plugged in, and is its "
                               "PKCS#11 module registered in this database?", output=_details(listing))
    argv = [certutil, "-L", "-d", req.db, "-h", token, "-n", req.nickname, "-a"]
    if req.pin_file:
        argv += ["-f", req.pin_file]
    found = _run(argv, deadline)
    text = found.stdout + found.stderr
    if found.timed_out:
        return TlsLogin(False, f"certutil did not finish reading token '{token}' in time: the token does not "
                               "answer (is it waiting for a button or a PIN pad?).", output=_details(found))
    if "SEC_ERROR_BAD_PASSWORD" in text:
        if req.pin_file is None:
            words = f"Token '{token}' needs its PIN to be used, and no PIN was given."
        else:
            words = (f"Token '{token}' refused the PIN (that cost one try). The TLS login was not attempted, "
                     "because NSS's client would have tried the same PIN three more times.")
        return TlsLogin(False, words, output=_details(found))
    if "Could not find cert" in text or "PR_FILE_NOT_FOUND_ERROR" in text:
        return TlsLogin(False, f"Token '{token}' has no certificate labelled '{req.label}' (NSS nickname "
                               f"'{req.nickname}'). The nickname names no certificate: use the certificate's label.",
                        output=_details(found))
    if found.returncode != 0:
        return TlsLogin(False, f"certutil could not read certificate '{req.nickname}': {_last_error(found)}.",
                        output=_details(found))
    return None


def _judge(run: _Run, req: _Request) -> TlsLogin:
    """Turn tstclnt's output into a verdict in words."""
    target, token, label, timeout = req.target, req.token, req.label, req.timeout
    err = run.stderr
    where = f"{target.host}:{target.port}"
    protocol = _protocol(err, run.stdout)
    server_saw = _server_saw(run.stdout)
    details = _details(run)
    error = _nss_error(err)
    asked = "Server requested Client Authentication" in err
    sent = re.search(r"^sent cert: (.*)$", err, flags=re.M)
    completed = run.returncode == 0 or (run.returncode is None and not run.timed_out)  # or stopped at the limit
    ok = False
    if run.timed_out and not asked:
        words = (f"The TLS login to {where} did not finish within {timeout:g} s: the server did not answer "
                 "(is it a TLS server?), or the token did not respond.")
    elif any(marker in err for marker in _NOT_CONNECTED):
        words = f"Could not connect to {where}: {error or 'no answer'}."
    elif "Incorrect password/PIN entered." in err:
        words = f"Token '{token}' refused the PIN, so no certificate was sent."
    elif not asked and error.split(":")[0] in _SERVER_CERT_ERRORS:
        words = (f"The server's certificate was not accepted: {_SERVER_CERT_ERRORS[error.split(':')[0]]} "
                 f"({error}). No client certificate was sent. Trust the server's CA in the database "
                 "(certutil -A -t C,,) or give its CA file.")
    elif asked and not sent:
        why = ("no PIN was given" if req.pin_file is None else
               f"NSS found the certificate '{label}' on token '{token}' but could not use its private key "
               "(no private key with the certificate's ID, or the token refused to sign)")
        words = f"The server asked for a client certificate but none was sent: {why}."
        if error:
            words += f" The server then ended the handshake ({error})."
    elif sent and run.timed_out:
        words = (f"The certificate '{label}' from token '{token}' was sent, but the server did not finish "
                 f"within {timeout:g} s.")
    elif sent and not completed:
        words = (f"The server did not accept the certificate '{label}' from token '{token}' "
                 f"({error or 'the connection ended'}). Does the server trust the certificate's issuer?")
    elif sent:
        ok = True
        saw = f" and saw {server_saw}" if server_saw else ""
        words = (f"The server accepted the certificate '{label}' from token '{token}' ({sent.group(1)}){saw}"
                 f"{' over ' + protocol if protocol else ''}.")
    elif completed:
        words = (f"The handshake with {where} completed, but the server never asked for a client certificate, "
                 "so the login was not tested. Use an address where the server requires one.")
    else:
        words = f"NSS's TLS client failed (exit code {run.returncode}): {error or 'no error message'}."
    return TlsLogin(ok, words, server_saw, protocol, details)


def _judge_server_chain(result: TlsLogin, stderr: str, cas: list[x509.Certificate], target: _Target,
                        ca_file: str) -> TlsLogin:
    """With ``ca_file``, tstclnt accepted any server certificate (``-o``): judge the chain it printed now."""
    pems = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", stderr, flags=re.S)
    try:
        chain = [x509.load_pem_x509_certificate(p.encode("ascii")) for p in pems]
    except ValueError:
        chain = []
    if not chain:
        return TlsLogin(False, "The server's certificate could not be read from NSS's output, so it was not "
                               f"checked against {ca_file}.", result.server_saw, result.protocol, result.output)
    host: x509.DNSName | x509.IPAddress
    try:
        host = x509.IPAddress(ipaddress.ip_address(target.host))
    except ValueError:
        host = x509.DNSName(target.host)
    try:
        verifier = PolicyBuilder().store(Store(cas)).build_server_verifier(host)
        verifier.verify(chain[0], chain[1:])
    except (VerificationError, ValueError) as e:
        return TlsLogin(False, f"The server's certificate does not verify against {ca_file} for "
                               f"{target.host} ({e}), so the login does not count. {result.words}",
                        result.server_saw, result.protocol, result.output)
    return TlsLogin(True, f"{result.words} The server's certificate verified against {ca_file}.",
                    result.server_saw, result.protocol, result.output)


# ------------------------------------------------------------------------ reading output


def _protocol(stderr: str, page: str) -> str:
    m = re.search(r"SSL version (\d\.\d)", stderr)
    if m and m.group(1) in _PROTOCOLS:
        return _PROTOCOLS[m.group(1)]
    m = re.search(r"^\s*Protocol\s*: (\S+)", page, flags=re.M)  # openssl s_server -www's page
    return m.group(1) if m else ""


def _server_saw(page: str) -> str:
    """The client certificate's subject from ``openssl s_server -www``'s page (``Client certificate``
    followed by the certificate as text)."""
    _before, marker, rest = page.partition("\nClient certificate\n")
    if not marker:
        return ""
    m = re.search(r"^\s*Subject: (.*?)\s*$", rest, flags=re.M)
    return m.group(1) if m else ""


def _nss_error(stderr: str) -> str:
    """The last ``NAME: text`` error tstclnt printed, or ``""``."""
    errors = [m for line in stderr.splitlines() if (m := _NSS_ERROR.search(line))
              and m.group(1) != "PR_IN_PROGRESS_ERROR"]
    return f"{errors[-1].group(1)}: {errors[-1].group(2).strip().rstrip('.')}" if errors else ""


def _last_error(run: _Run) -> str:
    lines = [line.strip() for line in (run.stderr + run.stdout).splitlines() if line.strip()]
    if run.timed_out:
        return "it did not finish in time"
    return lines[-1] if lines else f"exit code {run.returncode}"


def _details(run: _Run) -> str:
    """The tool's messages without tstclnt's poll-loop chatter, then what the server sent."""
    messages = "\n".join(line for line in run.stderr.splitlines() if line.strip() and not _CHATTER.match(line))
    return f"{messages}\n{run.stdout}".strip() + "\n"


def _redacted(result: TlsLogin, secret: str) -> TlsLogin:
    """The PIN never reaches the tools' output, but the output came from a server: make sure."""
    if not secret or (secret not in result.output and secret not in result.words):
        return result
    return TlsLogin(result.ok, result.words.replace(secret, "********"), result.server_saw, result.protocol,
                    result.output.replace(secret, "********"))
