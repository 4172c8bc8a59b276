"""The embedded default: a SoftHSM2 demo token in the user's data directory.

``cert-desk demo`` creates it once: its own ``softhsm2.conf`` and token directory under
``$XDG_DATA_HOME/cert-desk/demo`` (never the system's SoftHSM tokens), a token labelled
``cert-desk demo`` with an RSA-2048 and an EC P-256 key pair generated on it, a small
local CA (its key stays in the demo directory, as a file), a client certificate for
each key written back with the key's CKA_ID, and the CA certificate.

Everything is done in-process through the worker (C_InitToken, C_InitPIN, key generation,
C_CreateObject): no PIN is ever put on a command line. The demo PINs are public, by
design; they are written to ``user-pin`` and ``so-pin`` (mode 0600) so that scripts can
use ``--pin-file``.

SoftHSM2 reads ``SOFTHSM2_CONF`` when it is initialised, so :func:`activate` must set it
before the SoftHSM module is first loaded in the process; cert-desk does that when it
starts with ``--demo``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from cert_desk import errors as E
from cert_desk.models import TokenSelector
from cert_desk.paths import data_dir
from cert_desk.pkcs11.discovery import softhsm_module_path
from cert_desk.pkcs11.keygen import KeySpec, generate_key_pair, public_key_of, write_certificate
from cert_desk.pkcs11.module import LoadedModule, session_handle
from cert_desk.secrets import Secret
from cert_desk.services.tokens import TokenService
from cert_desk.x509 import ca as local_ca

log = logging.getLogger(__name__)

DEMO_LABEL = "cert-desk demo"
DEMO_USER_PIN = "123456"
DEMO_SO_PIN = "3537363231383830"  # the SmartCard-HSM factory SO PIN, for realism
SOFTHSM_INSTALL_HINT = "Install SoftHSM2: sudo apt install softhsm2 (Fedora: sudo dnf install softhsm)."

_KEYS = (
    ("demo-rsa", b"\x01", "rsa:2048", "Demo User RSA"),
    ("demo-ec", b"\x02", "ec:prime256v1", "Demo User EC"),
)


@dataclass(frozen=True)
class DemoToken:
    """Where the demo token lives and how to use it."""

    directory: str
    conf: str
    module: str
    label: str
    user_pin_file: str
    so_pin_file: str
    created: bool


def demo_dir() -> Path:
    return data_dir() / "demo"


def conf_path() -> Path:
    return demo_dir() / "softhsm2.conf"


def module_path() -> str:
    path = softhsm_module_path()
    if path is None:
        raise E.CertDeskError("SoftHSM2 is not installed, so there is no demo token.", SOFTHSM_INSTALL_HINT)
    return path


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def activate() -> Path:
    """Write the demo's SoftHSM2 configuration (if missing) and point ``SOFTHSM2_CONF`` at it."""
    d = demo_dir()
    tokens = d / "tokens"
    tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
    conf = conf_path()
    if not conf.exists():
        _write_private(conf, (
            "# SoftHSM2 configuration of the cert-desk demo token (written by cert-desk)\n"
            f"directories.tokendir = {tokens}\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
            "slots.removable = false\n"
        ))
    os.environ["SOFTHSM2_CONF"] = str(conf)
    return conf


def _create(m: LoadedModule) -> str:
    """Worker job: (re)initialise the demo token and fill it; returns its serial.

    An earlier attempt that stopped half way left a token labelled ``cert-desk demo``
    without the ``ready`` marker: it is initialised again (which erases it), so a demo
    token is either complete or being made, never half made.
    """
    stale = m.candidates(TokenSelector(label=DEMO_LABEL))
    if stale:
        slot_id = stale[0].slot_id
    else:
        free = [r for r in m.slot_reports(with_mechanisms=False)
                if r.token is not None and not r.token.initialized]
        if not free:
            raise E.CertDeskError("SoftHSM2 offers no free slot for the demo token.")
        slot_id = free[0].slot.slot_id
    m.forget_slot(slot_id)
    with m.operation("initialise the demo token", slot_id):
        m.ck.init_token(slot_id, DEMO_SO_PIN.encode(), DEMO_LABEL)
    # SoftHSM2 gives an initialised token a new slot ID: look it up again.
    ref = m.resolve(TokenSelector(label=DEMO_LABEL))
    m.login(ref, Secret(DEMO_SO_PIN, "demo"), so=True)
    session = m.pkcs11_session(ref)
    with m.operation("set the demo user PIN", ref.slot_id):
        m.ck.init_pin(session_handle(session), DEMO_USER_PIN.encode())
    m.logout(ref)
    m.login(ref, Secret(DEMO_USER_PIN, "demo"))
    session = m.pkcs11_session(ref)
    ca_key, ca_cert = local_ca.make_root(
        x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cert-desk demo"),
                   x509.NameAttribute(NameOID.COMMON_NAME, "cert-desk Demo CA")])
    )
    with m.operation("fill the demo token", ref.slot_id):
        for label, obj_id, spec, cn in _KEYS:
            pub, _priv = generate_key_pair(session, KeySpec.parse(spec), label=label, obj_id=obj_id)
            cert = local_ca.issue(
                ca_key, ca_cert, public_key_of(pub),
                x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cert-desk demo"),
                           x509.NameAttribute(NameOID.COMMON_NAME, cn)]),
                days=3 * 365,
                sans=[x509.RFC822Name(f"{label}@demo.cert-desk.invalid")],
            )
            write_certificate(session, cert, label=label, obj_id=obj_id)
        write_certificate(session, ca_cert, label="cert-desk Demo CA", obj_id=b"")
    d = demo_dir()
    (d / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    key_pem = ca_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    _write_private(d / "ca-key.pem", key_pem.decode("ascii"))
    m.logout(ref)
    return ref.serial


def ensure(service: TokenService) -> DemoToken:
    """Create the demo token unless it exists; the process must have run :func:`activate` first."""
    module = module_path()
    if os.environ.get("SOFTHSM2_CONF") != str(conf_path()):
        activate()
    d = demo_dir()
    created = False

    def serials(m: LoadedModule) -> tuple[str, ...]:
        return tuple(r.serial for r in m.candidates(TokenSelector(label=DEMO_LABEL)))

    ready = d / "ready"
    try:
        ready_serial = ready.read_text(encoding="utf-8").strip()
    except OSError:
        ready_serial = ""
    if not ready_serial or ready_serial not in service.run(module, serials, "look for the demo token").result():
        log.info("creating the demo token in %s", d)
        ready.unlink(missing_ok=True)
        serial = service.run(module, _create, "create the demo token").result()
        ready.write_text(serial + "\n", encoding="utf-8")
        created = True
        # SoftHSM2 gives a token made in this process its lasting slot ID only at the next
        # C_Initialize; until then OpenSSL key references would name a slot other programs do not see.
        service.pool.reload(module).result()
    user_pin, so_pin = d / "user-pin", d / "so-pin"
    if not user_pin.exists():
        _write_private(user_pin, DEMO_USER_PIN + "\n")
    if not so_pin.exists():
        _write_private(so_pin, DEMO_SO_PIN + "\n")
    return DemoToken(
        directory=str(d), conf=str(conf_path()), module=module, label=DEMO_LABEL,
        user_pin_file=str(user_pin), so_pin_file=str(so_pin), created=created,
    )
