"""What the benchmarks share: a private SoftHSM2 with a big token, built through cert-desk's own worker."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PIN = "123456"
SO_PIN = "12345678"
LABEL = "bench"


def make_softhsm(root: Path) -> Path:
    """A SoftHSM2 configuration with its token directory under ``root``; sets SOFTHSM2_CONF."""
    (root / "tokens").mkdir(parents=True, exist_ok=True)
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\n"
                    "log.level = ERROR\nslots.removable = false\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    return conf


def populate(module: str, pairs: int) -> float:
    """Fill the token in-process through cert-desk's own worker and key generation."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from cert_desk.models import TokenSelector
    from cert_desk.pkcs11.keygen import KeySpec, generate_key_pair, public_key_of, write_certificate
    from cert_desk.pkcs11.module import LoadedModule, session_handle
    from cert_desk.secrets import Secret
    from cert_desk.services.worker import WorkerPool
    from cert_desk.x509 import ca as local_ca

    def job(m: LoadedModule) -> int:
        free = next(r for r in m.slot_reports(with_mechanisms=False) if r.token and not r.token.initialized)
        m.ck.init_token(free.slot.slot_id, SO_PIN.encode(), LABEL)
        ref = m.resolve(TokenSelector(label=LABEL))
        m.login(ref, Secret(SO_PIN, LABEL), so=True)
        m.ck.init_pin(session_handle(m.pkcs11_session(ref)), PIN.encode())
        m.logout(ref)
        m.login(ref, Secret(PIN, LABEL))
        session = m.pkcs11_session(ref)
        ca_key, ca_cert = local_ca.make_root(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench CA")]))
        spec = KeySpec.parse("ec:prime256v1")
        for i in range(pairs):
            obj_id = i.to_bytes(2, "big")
            label = f"key{i:04d}"
            pub, _priv = generate_key_pair(session, spec, label=label, obj_id=obj_id)
            cert = local_ca.issue(ca_key, ca_cert, public_key_of(pub),
                                  x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Bench User {i}")]))
            write_certificate(session, cert, label=label, obj_id=obj_id)
        m.logout(ref)
        return pairs

    t0 = time.perf_counter()
    pool = WorkerPool()
    try:
        pool.submit(module, job, "populate").result()
    finally:
        pool.shutdown(60)
    return time.perf_counter() - t0


