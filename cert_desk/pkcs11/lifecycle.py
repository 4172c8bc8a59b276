"""The certificate lifecycle on a token: key generation, CSRs, import, deletion, the pairing doctor.

Worker-thread code: every function takes the module's :class:`LoadedModule` and runs on its
worker. Each one reads the token first, checks everything it can before it writes, and
writes last, so bad input leaves the token as it was; a write that fails half-way (a chain
of three certificates, the second refused) removes what this call wrote.

Pairing is by public key, never by label: a certificate belongs to the private key whose
SubjectPublicKeyInfo it carries (the key's own, or that of the public key object with the
key's CKA_ID, since EC private keys do not reveal theirs), and it is written with that key's
CKA_ID and label, which is what browsers and OpenSSL pair them by.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pkcs11 import Attribute

from cert_desk import errors as E
from cert_desk.models import (
    CsrResult,
    DeleteResult,
    DoctorFinding,
    DoctorReport,
    GeneratedKey,
    ImportResult,
    KeyChoice,
    MechanismInfo,
    ObjectInfo,
    ObjectListing,
    TokenRef,
)
from cert_desk.pkcs11 import constants as C
from cert_desk.pkcs11.ck import CkError, encode_bool, encode_ulong
from cert_desk.pkcs11.keygen import KeySpec, generate_key_pair, pkcs11_tool_id, public_key_of
from cert_desk.pkcs11.module import LoadedModule, session_handle
from cert_desk.pkcs11.signing import plan_signature, sign
from cert_desk.x509.csr import build_csr
from cert_desk.x509.keys import spki_sha256

log = logging.getLogger(__name__)

KEY_SPECS = ("rsa:2048", "rsa:3072", "rsa:4096", "ec:prime256v1", "ec:secp384r1", "ec:secp521r1")
CKM_RSA_PKCS_KEY_PAIR_GEN = 0x0
CKM_EC_KEY_PAIR_GEN = 0x1040

CKA_CLASS, CKA_TOKEN, CKA_PRIVATE, CKA_LABEL, CKA_VALUE = 0x0, 0x1, 0x2, 0x3, 0x11
CKA_CERTIFICATE_TYPE, CKA_ISSUER, CKA_SERIAL_NUMBER, CKA_SUBJECT, CKA_ID = 0x80, 0x81, 0x82, 0x101, 0x102
CKC_X_509 = 0
# C_SetAttributeValue refusals after which a certificate is rewritten instead of changed
_READ_ONLY = (0x10, 0x1B, 0xD1)  # CKR_ATTRIBUTE_READ_ONLY, CKR_ACTION_PROHIBITED, CKR_TEMPLATE_INCONSISTENT


# ------------------------------------------------------------------ key generation


def key_choices(mechanisms: Sequence[MechanismInfo]) -> tuple[KeyChoice, ...]:
    """The key types cert-desk offers, each allowed or not by the token's mechanisms and their sizes."""
    by_code = {m.code: m for m in mechanisms}
    out = []
    for text in KEY_SPECS:
        spec = KeySpec.parse(text)
        code, mech_name = ((CKM_RSA_PKCS_KEY_PAIR_GEN, "CKM_RSA_PKCS_KEY_PAIR_GEN") if spec.kind == "rsa"
                           else (CKM_EC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN"))
        mech = by_code.get(code)
        reason = ""
        if mech is None:
            reason = f"the token has no {mech_name}"
        elif (mech.min_key_size and spec.bits < mech.min_key_size) or (
                mech.max_key_size and spec.bits > mech.max_key_size):
            unit = "bits" if spec.kind == "rsa" else "bit curves"
            reason = f"the token generates {spec.kind.upper()} keys of {mech.min_key_size}–{mech.max_key_size} {unit}"
        out.append(KeyChoice(text, spec.describe(), not reason, reason))
    return tuple(out)


def _require_login(m: LoadedModule, ref: TokenRef, what: str) -> None:
    if m.logged_in_as(ref) is None:
        raise E.NotLoggedInError(f"Log in to {ref.describe()} to {what}.", operation=what)


def _same_id_or_label(listing: ObjectListing, *, obj_id: bytes | None, label: str) -> list[ObjectInfo]:
    classes = (C.CKO_PRIVATE_KEY, C.CKO_PUBLIC_KEY, C.CKO_CERTIFICATE)
    return [o for o in listing.objects if o.object_class in classes
            and ((obj_id is not None and obj_id and o.id == obj_id) or (label and o.label == label))]


def generate(m: LoadedModule, ref: TokenRef, spec_text: str, *, label: str, obj_id: bytes | None,
             allow_duplicate: bool = False) -> GeneratedKey:
    """Generate a key pair on the token (private key sensitive, not extractable).

    Without ``obj_id`` the CKA_ID is the one ``pkcs11-tool --keypairgen`` gives: the SHA-1 of
    the RSA modulus or of the EC point (cards that choose their own IDs keep theirs).

    Raises:
        NotLoggedInError, UnsupportedMechanismError, ConflictError (the ID or label is in use
        and ``allow_duplicate`` is not set), InputError (a bad type or label).
    """
    spec = KeySpec.parse(spec_text)
    label = label.strip()
    if not label:
        raise E.InputError("A key needs a label.", "Give it a name, such as the user or the purpose.")
    _require_login(m, ref, "generate a key pair")
    choice = next((c for c in key_choices(m.mechanisms(ref.slot_id)) if c.spec == spec_text.lower().strip()), None)
    if choice is not None and not choice.allowed:
        raise E.UnsupportedMechanismError(f"{ref.describe()} cannot generate {choice.description} keys: "
                                          f"{choice.reason}.", operation="generate a key pair")
    before = m.list_objects(ref)
    clash = _same_id_or_label(before, obj_id=obj_id, label=label)
    if clash and not allow_duplicate:
        raise E.ConflictError(
            f"{len(clash)} object(s) on {ref.describe()} already use this "
            f"{'ID or label' if obj_id else 'label'}: "
            + "; ".join(f"{o.class_name.replace('_', ' ')} {o.label!r} ID {o.id_hex or 'none'}" for o in clash),
            "Choose another label (or ID), or confirm that you want a second key with the same one "
            "(--allow-duplicate): programs that look keys up by label or ID may then pick either.")
    session = m.pkcs11_session(ref)
    t0 = time.monotonic()
    with m.operation("generate a key pair", ref.slot_id):
        pub, priv = generate_key_pair(session, spec, label=label, obj_id=obj_id)
        public_key = public_key_of(pub)
        source = "as asked"
        if obj_id is None:
            wanted = pkcs11_tool_id(public_key)
            try:
                pub[Attribute.ID] = wanted
                priv[Attribute.ID] = wanted
                source = "SHA-1 of the public key, as pkcs11-tool makes it"
            except Exception as e:  # the card chooses its own IDs (OpenSC's emulated cards do)
                log.info("the token kept its own CKA_ID: %s", type(e).__name__)
                source = "chosen by the token"
            final_id = bytes(pub[Attribute.ID] or b"")
        else:
            final_id = obj_id
    seconds = time.monotonic() - t0
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    log.info("generated %s key %r on %s in %.1f s", spec.describe(), label, ref.describe(), seconds)
    return GeneratedKey(ref, spec_text, label, final_id, source, spki, seconds, m.list_objects(ref))


# ------------------------------------------------------------------ keys and their public keys


def key_spkis(listing: ObjectListing) -> dict[str, ObjectInfo]:
    """SHA-256 of SubjectPublicKeyInfo -> the private key it belongs to.

    A private key's own public key when it reveals it (RSA), else that of the public key
    object with the same CKA_ID (EC private keys do not reveal theirs).
    """
    pubs: dict[bytes, list[ObjectInfo]] = {}
    for o in listing.objects:
        if o.object_class == C.CKO_PUBLIC_KEY and o.public_key_sha256:
            pubs.setdefault(o.id, []).append(o)
    out: dict[str, ObjectInfo] = {}
    for o in listing.objects:
        if o.object_class != C.CKO_PRIVATE_KEY:
            continue
        if o.public_key_sha256:
            out.setdefault(o.public_key_sha256, o)
            continue
        for pub in pubs.get(o.id, []) if o.id else []:
            assert pub.public_key_sha256 is not None
            out.setdefault(pub.public_key_sha256, o)
    return out


def _public_key_der(listing: ObjectListing, key: ObjectInfo) -> bytes:
    if key.public_key_der:
        return key.public_key_der
    for o in listing.objects:
        if o.object_class == C.CKO_PUBLIC_KEY and key.id and o.id == key.id and o.public_key_der:
            return o.public_key_der
    for o in listing.objects:  # a certificate with the key's ID: the signature check below catches a wrong one
        if o.object_class == C.CKO_CERTIFICATE and key.id and o.id == key.id and o.certificate is not None:
            return o.certificate.spki
    raise E.InputError(
        f"cert-desk cannot find the public key of {key.label!r} (ID {key.id_hex or 'none'}): the token has no "
        "public key object or certificate with its ID, and the private key does not reveal it.",
        "Write the public key to the token with the key's ID (pkcs11-tool --write-object ... --type pubkey).")


def find_private_key(listing: ObjectListing, *, label: str | None, obj_id: bytes | None) -> ObjectInfo:
    keys = [o for o in listing.objects if o.object_class == C.CKO_PRIVATE_KEY
            and (label is None or o.label == label) and (obj_id is None or o.id == obj_id)]
    named = " and ".join(p for p in ((f"label {label!r}" if label is not None else ""),
                                     (f"ID {obj_id.hex()}" if obj_id is not None else "")) if p)
    if not keys:
        hint = ("Log in first: private keys are visible only after login." if not listing.logged_in else
                "List the keys with 'cert-desk objects --login'.")
        raise E.InputError(f"No private key with {named} on {listing.token.describe()}.", hint)
    if len(keys) > 1:
        raise E.InputError(f"{len(keys)} private keys have {named}: "
                           + "; ".join(f"{k.label!r} ID {k.id_hex}" for k in keys) + ".",
                           "Name the key by its ID (--id HEX).")
    return keys[0]


# ------------------------------------------------------------------ CSR


def make_csr(m: LoadedModule, ref: TokenRef, *, label: str | None, obj_id: bytes | None, subject: x509.Name,
             sans: Sequence[x509.GeneralName]) -> CsrResult:
    """A CSR for an on-token key, signed on the token with SHA-256 and checked before it is returned."""
    _require_login(m, ref, "sign a certificate request")
    listing = m.list_objects(ref)
    key = find_private_key(listing, label=label, obj_id=obj_id)
    if key.always_authenticate:
        raise E.InputError(
            f"The key {key.label!r} asks for the PIN again before every signature (CKA_ALWAYS_AUTHENTICATE); "
            "cert-desk cannot sign requests with such keys yet.",
            "Use the token's other key for authentication certificates, or pkcs11-tool / OpenSSL for this one.")
    spki = _public_key_der(listing, key)
    plan = plan_signature(key.key_type, m.mechanisms(ref.slot_id))
    handle = session_handle(m.pkcs11_session(ref))
    with m.operation("sign the request", ref.slot_id):
        csr = build_csr(subject, spki, sans, plan.algorithm,
                        lambda data: sign(m.ck, handle, key.handle, plan, data))
    der = csr.public_bytes(serialization.Encoding.DER)
    pem = csr.public_bytes(serialization.Encoding.PEM)
    from cert_desk.x509.names import san_text, subject_text

    return CsrResult(ref, key.label, key.id, subject_text(subject), tuple(san_text(s) for s in sans), der, pem,
                     plan.mechanism_name)


# ------------------------------------------------------------------ delete


KIND_CLASSES = {"privkey": C.CKO_PRIVATE_KEY, "pubkey": C.CKO_PUBLIC_KEY, "cert": C.CKO_CERTIFICATE}


def delete_targets(listing: ObjectListing, obj_id: bytes, kinds: frozenset[str] | None) -> tuple[ObjectInfo, ...]:
    """What ``delete`` would remove: the objects with ``obj_id`` of the ``kinds`` (all three by default)."""
    classes = {KIND_CLASSES[k] for k in (kinds or KIND_CLASSES)}
    return tuple(o for o in listing.objects if o.id == obj_id and o.object_class in classes)


def delete(m: LoadedModule, ref: TokenRef, obj_id: bytes, kinds: frozenset[str] | None, *,
           expected: frozenset[int] | None = None) -> DeleteResult:
    """Delete the objects with ``obj_id`` (of ``kinds``).

    Args:
        expected: The handles the user confirmed (from :func:`delete_targets`): when the token
            now holds something else under that ID, nothing is deleted.
    """
    _require_login(m, ref, "delete objects")
    if not obj_id:
        raise E.InputError("Deleting needs a CKA_ID (objects without one: use pkcs11-tool).")
    listing = m.list_objects(ref)
    targets = delete_targets(listing, obj_id, kinds)
    if not targets:
        raise E.InputError(f"Nothing with ID {obj_id.hex()} on {ref.describe()}"
                           + (f" of the kinds {', '.join(sorted(kinds))}" if kinds else "") + ".",
                           "List the objects with 'cert-desk objects --login'.")
    if expected is not None and {o.handle for o in targets} != set(expected):
        raise E.ConflictError(f"The objects with ID {obj_id.hex()} changed since you confirmed; nothing was deleted.",
                              "Look at the token again and confirm what is there now.")
    handle = session_handle(m.pkcs11_session(ref))
    gone: list[ObjectInfo] = []
    for o in targets:
        try:
            with m.operation(f"delete the {o.class_name.replace('_', ' ')} {o.label!r}", ref.slot_id):
                m.ck.destroy_object(handle, o.handle)
        except E.CertDeskError as err:
            if gone:
                err.message += " Already deleted: " + ", ".join(f"{g.class_name} {g.label!r}" for g in gone) + "."
            raise
        gone.append(o)
        log.info("deleted %s %r (ID %s) on %s", o.class_name, o.label, o.id_hex, ref.describe())
    return DeleteResult(ref, tuple(gone), m.list_objects(ref))


# ------------------------------------------------------------------ import


def _certificate_template(cert: x509.Certificate, *, label: str, obj_id: bytes) -> list[tuple[int, bytes]]:
    from asn1crypto import core as asn1_core

    values = [
        (CKA_CLASS, encode_ulong(C.CKO_CERTIFICATE)),
        (CKA_CERTIFICATE_TYPE, encode_ulong(CKC_X_509)),
        (CKA_TOKEN, encode_bool(True)),
        (CKA_PRIVATE, encode_bool(False)),
        (CKA_LABEL, label.encode("utf-8")),
        (CKA_SUBJECT, cert.subject.public_bytes()),
        (CKA_ISSUER, cert.issuer.public_bytes()),
        (CKA_SERIAL_NUMBER, asn1_core.Integer(cert.serial_number).dump()),
        (CKA_VALUE, cert.public_bytes(serialization.Encoding.DER)),
    ]
    if obj_id:
        values.append((CKA_ID, obj_id))
    return values


def _cn(cert: x509.Certificate) -> str:
    for attr in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME):
        return str(attr.value)
    return cert.subject.rfc4514_string()


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


@dataclass(frozen=True)
class _Write:
    cert: x509.Certificate
    label: str
    obj_id: bytes
    what: str


def import_certificates(m: LoadedModule, ref: TokenRef, ders: Sequence[bytes], *, label: str | None = None,
                        with_chain: bool = False, allow_expired: bool = False,
                        now: datetime | None = None) -> ImportResult:
    """Write the certificate(s) that belong to on-token keys (and, when asked, the CA certificates).

    Raises:
        NotLoggedInError; InputError (no certificate belongs to a key here);
        ConfirmationRequired (the certificate expired; ``allow_expired`` imports it anyway).
    """
    now = now or datetime.now(UTC)
    _require_login(m, ref, "import certificates")
    certs = [x509.load_der_x509_certificate(d) for d in ders]
    if not certs:
        raise E.InputError("There is no certificate to import.")
    listing = m.list_objects(ref)
    owners = key_spkis(listing)
    on_token = {o.certificate.der: o for o in listing.objects if o.certificate is not None}
    leaves: list[tuple[x509.Certificate, ObjectInfo]] = []
    others: list[x509.Certificate] = []
    for cert in certs:
        spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
        key = owners.get(spki_sha256(spki))
        if key is not None:
            leaves.append((cert, key))
        else:
            others.append(cert)
    if not leaves:
        subjects = "; ".join(c.subject.rfc4514_string() or "(empty subject)" for c in certs)
        keys = ", ".join(sorted({f"{k.label!r}" for k in owners.values()})) or "none"
        raise E.InputError(
            f"No certificate in the file belongs to a key on {ref.describe()}: their public keys match none of the "
            f"token's private keys ({keys}). Certificates: {subjects}.",
            "Import the certificate issued for a key on this token (cert-desk compares public keys, not names).")
    writes: list[_Write] = []
    present: list[str] = []
    notes: list[str] = []
    for cert, key in leaves:
        der = cert.public_bytes(serialization.Encoding.DER)
        if der in on_token:
            where = on_token[der]
            msg = f"{_cn(cert)!r} is already on the token (label {where.label!r}, ID {where.id_hex or 'none'})"
            if where.id != key.id:
                msg += f", under another ID than its key's ({key.id_hex}): run 'cert-desk doctor --fix'"
            present.append(msg + ".")
            continue
        if cert.not_valid_after_utc < now and not allow_expired:
            raise E.ConfirmationRequired(
                f"The certificate {_cn(cert)!r} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; "
                "nothing was written.",
                "Import it anyway only if you know why (--allow-expired); better, renew it.")
        if cert.not_valid_before_utc > now:
            notes.append(f"{_cn(cert)!r} is valid only from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC.")
        writes.append(_Write(cert, label or key.label, key.id, f"certificate {_cn(cert)!r} for key {key.label!r}"))
    extra = [c for c in others if c.public_bytes(serialization.Encoding.DER) not in on_token]
    if with_chain:
        writes += [_Write(c, _cn(c), b"", f"CA certificate {_cn(c)!r}") for c in extra]
    elif extra:
        cas = sum(1 for c in extra if _is_ca(c))
        notes.append(f"{len(extra)} other certificate(s) in the file ({cas} of them CA certificates) were not "
                     "written; use --with-chain to write CA certificates too.")
    written = _write_all(m, ref, writes)
    after = m.list_objects(ref)
    key = leaves[0][1]
    return ImportResult(ref, tuple(o for o in after.objects if o.handle in written), tuple(present), key.id,
                        key.label, tuple(notes), after)


def _write_all(m: LoadedModule, ref: TokenRef, writes: Sequence[_Write]) -> set[int]:
    """Create every certificate object, or none: a failure removes what this call wrote."""
    handle = session_handle(m.pkcs11_session(ref))
    done: list[int] = []
    try:
        for w in writes:
            with m.operation(f"write the {w.what}", ref.slot_id):
                done.append(m.ck.create_object(handle, _certificate_template(w.cert, label=w.label, obj_id=w.obj_id)))
            log.info("wrote %s on %s", w.what, ref.describe())
    except E.CertDeskError:
        for h in reversed(done):
            try:
                m.ck.destroy_object(handle, h)
            except CkError as e:
                log.warning("could not remove a certificate written before the failure: %s", e)
        raise
    return set(done)


# ------------------------------------------------------------------ the pairing doctor


def diagnose(listing: ObjectListing) -> tuple[DoctorFinding, ...]:
    """How the token's keys and certificates pair up, and the fixes cert-desk can make."""
    owners = key_spkis(listing)
    findings: list[DoctorFinding] = []
    privs = [o for o in listing.objects if o.object_class == C.CKO_PRIVATE_KEY]
    by_id: dict[bytes, list[ObjectInfo]] = {}
    for k in privs:
        by_id.setdefault(k.id, []).append(k)
        if not k.id:
            findings.append(DoctorFinding(
                "warning", "key-without-id",
                f"The private key {k.label!r} has no CKA_ID: browsers cannot pair a certificate with it."))
    for key_id, keys in by_id.items():
        if key_id and len(keys) > 1:
            findings.append(DoctorFinding(
                "error", "duplicate-id",
                f"{len(keys)} private keys share the ID {key_id.hex()} ({', '.join(repr(k.label) for k in keys)}): "
                "a program asking for this ID may pick either.",
                "none automatic: delete the key you no longer use, or generate the other again with a new ID"))
    with_cert: set[int] = set()
    for o in listing.objects:
        cert = o.certificate
        if o.object_class != C.CKO_CERTIFICATE or cert is None:
            continue
        key = owners.get(cert.spki_sha256)
        if key is None:
            if cert.is_ca:
                continue  # CA certificates have no key on the token, and need none
            findings.append(DoctorFinding(
                "warning", "certificate-without-key",
                f"The certificate {o.label!r} (ID {o.id_hex or 'none'}, {cert.subject_cn or cert.subject}) belongs to "
                "no private key on this token.", certificate=o.handle))
            continue
        with_cert.add(key.handle)
        if o.id != key.id or not o.id:
            findings.append(DoctorFinding(
                "error", "certificate-id-mismatch",
                f"The certificate {o.label!r} has ID {o.id_hex or 'none'}, but it belongs to the private key "
                f"{key.label!r} with ID {key.id_hex}: browsers and OpenSSL will not use them together.",
                f"give the certificate the key's ID {key.id_hex} and label {key.label!r}",
                o.handle, key.id, key.label))
    for k in privs:
        if k.handle not in with_cert:
            findings.append(DoctorFinding(
                "info", "key-without-certificate",
                f"The private key {k.label!r} (ID {k.id_hex or 'none'}) has no certificate on the token."))
    return tuple(findings)


def doctor(m: LoadedModule, ref: TokenRef, *, fix: bool = False) -> DoctorReport:
    """Diagnose the token; with ``fix``, give mis-paired certificates their key's ID and label."""
    _require_login(m, ref, "check how keys and certificates pair up")
    listing = m.list_objects(ref)
    findings = diagnose(listing)
    fixed: list[str] = []
    if fix:
        handle = session_handle(m.pkcs11_session(ref))
        for f in findings:
            if f.certificate is None or f.new_id is None or f.new_label is None:
                continue
            obj = listing.by_handle(f.certificate)
            assert obj is not None and obj.certificate is not None
            _relabel(m, ref, handle, obj, new_id=f.new_id, new_label=f.new_label)
            fixed.append(f"The certificate {obj.label!r} now has ID {f.new_id.hex()} and label {f.new_label!r}.")
        if fixed:
            listing = m.list_objects(ref)
            findings = diagnose(listing)
    return DoctorReport(ref, findings, tuple(fixed), listing)


def _relabel(m: LoadedModule, ref: TokenRef, session: int, obj: ObjectInfo, *, new_id: bytes, new_label: str
             ) -> None:
    values = [(CKA_ID, new_id), (CKA_LABEL, new_label.encode("utf-8"))]
    try:
        m.ck.set_attributes(session, obj.handle, values)
        return
    except CkError as e:
        if e.ckr not in _READ_ONLY:
            with m.operation("change the certificate's ID", ref.slot_id):
                raise
        log.info("the token will not change the certificate's attributes (%s): writing it again", e)
    assert obj.certificate is not None
    cert = x509.load_der_x509_certificate(obj.certificate.der)
    with m.operation("write the certificate with its key's ID", ref.slot_id):
        m.ck.create_object(session, _certificate_template(cert, label=new_label, obj_id=new_id))
    with m.operation("remove the certificate with the wrong ID", ref.slot_id):
        m.ck.destroy_object(session, obj.handle)
