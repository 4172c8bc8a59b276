"""The certificate lifecycle as services: key generation, CSRs, import, deletion, the doctor.

Each method queues one job on the token's module worker (see
:mod:`cert_desk.pkcs11.lifecycle` for what the job does) and returns a Future of a frozen
dataclass. Arguments cross to the worker as text or DER, never as shared objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cert_desk.models import (
    CsrResult,
    DeleteResult,
    DoctorReport,
    GeneratedKey,
    ImportResult,
    KeyChoice,
    ObjectInfo,
    TokenRef,
)
from cert_desk.pkcs11 import lifecycle as L
from cert_desk.pkcs11.module import LoadedModule
from cert_desk.services.tokens import TokenService
from cert_desk.x509.names import parse_san, parse_subject


class LifecycleService:
    """What the Keys and Certificates panes and the lifecycle commands ask of a token."""

    def __init__(self, tokens: TokenService) -> None:
        self.tokens = tokens

    def key_choices(self, ref: TokenRef) -> Future[tuple[KeyChoice, ...]]:
        return self.tokens.run(ref.module, lambda m: L.key_choices(m.mechanisms(ref.slot_id)),
                               "read the key types the token can generate")

    def generate(self, ref: TokenRef, spec: str, *, label: str, obj_id: bytes | None = None,
                 allow_duplicate: bool = False) -> Future[GeneratedKey]:
        def job(m: LoadedModule) -> GeneratedKey:
            return L.generate(m, ref, spec, label=label, obj_id=obj_id, allow_duplicate=allow_duplicate)

        return self.tokens.run(ref.module, job, "generate a key pair")

    def csr(self, ref: TokenRef, *, label: str | None, obj_id: bytes | None, subject: str,
            sans: Sequence[str] = ()) -> Future[CsrResult]:
        """A CSR for the key named by ``label`` and/or ``obj_id``.

        ``subject`` (``-subj`` or RFC 4514 syntax) and ``sans`` (``DNS:...``) are checked here,
        so bad input fails before anything is queued, and parsed again on the worker: only
        text crosses the thread boundary.
        """
        san_texts = tuple(sans)  # first: a generator would be used up by the checks
        parse_subject(subject)
        for s in san_texts:
            parse_san(s)

        def job(m: LoadedModule) -> CsrResult:
            return L.make_csr(m, ref, label=label, obj_id=obj_id, subject=parse_subject(subject),
                              sans=[parse_san(s) for s in san_texts])

        return self.tokens.run(ref.module, job, "make a certificate request")

    def delete_preview(self, ref: TokenRef, obj_id: bytes, kinds: frozenset[str] | None = None
                       ) -> Future[tuple[ObjectInfo, ...]]:
        def job(m: LoadedModule) -> tuple[ObjectInfo, ...]:
            return L.delete_targets(m.list_objects(ref), obj_id, kinds)

        return self.tokens.run(ref.module, job, "find the objects to delete")

    def delete(self, ref: TokenRef, obj_id: bytes, kinds: frozenset[str] | None = None, *,
               expected: frozenset[int] | None = None) -> Future[DeleteResult]:
        return self.tokens.run(ref.module, lambda m: L.delete(m, ref, obj_id, kinds, expected=expected),
                               "delete objects")

    def delete_objects(self, ref: TokenRef, targets: Sequence[ObjectInfo]) -> Future[DeleteResult]:
        """Delete exactly ``targets`` (see :func:`L.delete_objects`)."""
        chosen = tuple(targets)
        return self.tokens.run(ref.module, lambda m: L.delete_objects(m, ref, chosen), "delete objects")

    def import_certificates(self, ref: TokenRef, certificates: Sequence[x509.Certificate], *,
                            label: str | None = None, with_chain: bool = False,
                            allow_expired: bool = False) -> Future[ImportResult]:
        """Write the certificates that belong to keys on the token (see :func:`L.import_certificates`);
        they cross to the worker as DER."""
        ders = tuple(c.public_bytes(serialization.Encoding.DER) for c in certificates)

        def job(m: LoadedModule) -> ImportResult:
            return L.import_certificates(m, ref, ders, label=label, with_chain=with_chain,
                                         allow_expired=allow_expired)

        return self.tokens.run(ref.module, job, "import certificates")

    def doctor(self, ref: TokenRef, *, fix: bool = False) -> Future[DoctorReport]:
        return self.tokens.run(ref.module, lambda m: L.doctor(m, ref, fix=fix),
                               "fix how keys and certificates pair up" if fix else "check how keys and certificates "
                               "pair up")
