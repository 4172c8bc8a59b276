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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pkcs11
import pkcs11.exceptions as p11x
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pkcs11 import Attribute
from pkcs11.attributes import AttributeMapper

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
from cert_desk.pkcs11.ck import CkError
from cert_desk.pkcs11.keygen import (
    KeySpec,
    certificate_template,
    generate_key_pair,
    pkcs11_tool_id,
    public_key_of,
)
from cert_desk.pkcs11.module import LoadedModule, session_handle
from cert_desk.pkcs11.signing import plan_signature, sign
from cert_desk.x509.csr import build_csr
from cert_desk.x509.keys import spki_sha256

log = logging.getLogger(__name__)

PublicKeyType = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

KEY_SPECS = ("rsa:2048", "rsa:3072", "rsa:4096", "ec:prime256v1", "ec:secp384r1", "ec:secp521r1")
CKM_RSA_PKCS_KEY_PAIR_GEN = 0x0
CKM_EC_KEY_PAIR_GEN = 0x1040

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
    choice = next((c for c in key_choices(m.mechanisms(ref.slot_id)) if c.spec == spec.canonical), None)
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
        final_id, source = (obj_id, "as asked") if obj_id is not None else _default_id(pub, priv, public_key)
    seconds = time.monotonic() - t0
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    log.info("generated %s key %r on %s in %.1f s", spec.describe(), label, ref.describe(), seconds)
    return GeneratedKey(ref, spec.canonical, label, final_id, source, spki, seconds, m.list_objects(ref))


def _default_id(pub: pkcs11.PublicKey, priv: pkcs11.PrivateKey, public_key: PublicKeyType) -> tuple[bytes, str]:
    """The new pair's CKA_ID when none was asked for.

    A token that chose one itself (OpenSC's cards: the PKCS#15 intrinsic ID) keeps it; a token
    that left none (SoftHSM2) gets the same intrinsic ID, set on the private key first and then on
    the public key; if the public key refuses, the private key gets its old ID back, so the pair
    never ends up with two different IDs.
    """
    chosen = bytes(priv[Attribute.ID] or b"")
    if chosen:
        return chosen, "chosen by the token"
    wanted = pkcs11_tool_id(public_key)
    try:
        priv[Attribute.ID] = wanted
    except p11x.PKCS11Error as e:
        log.warning("the token refused a CKA_ID for the new key: %s", type(e).__name__)
        return b"", "none: the token refused to give the key an ID"
    try:
        pub[Attribute.ID] = wanted
    except p11x.PKCS11Error:
        priv[Attribute.ID] = chosen
        raise
    return wanted, "SHA-1 of the public key, as OpenSC makes it"


# ------------------------------------------------------------------ keys and their public keys


def key_spkis(listing: ObjectListing) -> dict[str, ObjectInfo]:
    """SHA-256 of SubjectPublicKeyInfo -> the private key it belongs to.

    A private key's own public key when it reveals it (RSA), else that of the public key
    object with the same CKA_ID (EC private keys do not reveal theirs); for a key without a
    CKA_ID (pkcs11-tool leaves SoftHSM2 keys so), the public key without an ID and with the same
    label, when there is exactly one.
    """
    pubs = [o for o in listing.objects if o.object_class == C.CKO_PUBLIC_KEY and o.public_key_sha256]
    out: dict[str, ObjectInfo] = {}
    for o in listing.objects:
        if o.object_class != C.CKO_PRIVATE_KEY:
            continue
        if o.public_key_sha256:
            out.setdefault(o.public_key_sha256, o)
            continue
        mates = [p for p in pubs if p.id == o.id] if o.id else [p for p in pubs if not p.id and p.label == o.label]
        if o.id or len(mates) == 1:
            for pub in mates:
                assert pub.public_key_sha256 is not None
                out.setdefault(pub.public_key_sha256, o)
    return out


def public_key_der(listing: ObjectListing, key: ObjectInfo) -> bytes:
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
    spki = public_key_der(listing, key)
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
    """What ``delete`` would remove: the objects with ``obj_id`` of the ``kinds`` (all three by default),
    in the order they are deleted (see :func:`_deletion_order`)."""
    classes = {KIND_CLASSES[k] for k in (kinds or KIND_CLASSES)}
    return _deletion_order(o for o in listing.objects if o.id == obj_id and o.object_class in classes)


def _deletion_order(objects: Iterable[ObjectInfo]) -> tuple[ObjectInfo, ...]:
    """Certificates first, private keys last: when the token refuses half-way, what is left is the
    part that cannot be made again, not orphaned certificates of a key that is gone."""
    rank = {C.CKO_CERTIFICATE: 0, C.CKO_PUBLIC_KEY: 1, C.CKO_PRIVATE_KEY: 2}
    return tuple(sorted(objects, key=lambda o: rank.get(o.object_class, 1)))


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


def _same(a: ObjectInfo, b: ObjectInfo) -> bool:
    """The same token object, judged by what identifies it (handles change with sessions)."""
    if (a.object_class, a.id, a.label) != (b.object_class, b.id, b.label):
        return False
    if a.certificate is not None or b.certificate is not None:
        return a.certificate is not None and b.certificate is not None and a.certificate.der == b.certificate.der
    return a.public_key_sha256 == b.public_key_sha256


def delete_objects(m: LoadedModule, ref: TokenRef, targets: Sequence[ObjectInfo]) -> DeleteResult:
    """Delete exactly these objects (found again by class, ID, label and content, not by ID alone:
    a renewed certificate may share its key's ID with the one it replaces)."""
    _require_login(m, ref, "delete objects")
    listing = m.list_objects(ref)
    found: list[ObjectInfo] = []
    for t in targets:
        now = next((o for o in listing.objects if _same(o, t)), None)
        if now is None:
            raise E.ConflictError(f"The {t.class_name.replace('_', ' ')} {t.label!r} is no longer on "
                                  f"{ref.describe()}; nothing was deleted.", "Look at the token again.")
        found.append(now)
    handle = session_handle(m.pkcs11_session(ref))
    for o in _deletion_order(found):
        with m.operation(f"delete the {o.class_name.replace('_', ' ')} {o.label!r}", ref.slot_id):
            m.ck.destroy_object(handle, o.handle)
        log.info("deleted %s %r (ID %s) on %s", o.class_name, o.label, o.id_hex, ref.describe())
    return DeleteResult(ref, tuple(found), m.list_objects(ref))


# ------------------------------------------------------------------ import


def _certificate_template(cert: x509.Certificate, *, label: str, obj_id: bytes,
                          private: bool = False) -> list[tuple[int, bytes]]:
    """keygen.certificate_template, encoded for C_CreateObject by python-pkcs11's own mapper."""
    template = certificate_template(cert, label=label, obj_id=obj_id)
    template[Attribute.PRIVATE] = private
    mapper = AttributeMapper()
    return [(int(k), mapper.pack_attribute(k, v)) for k, v in template.items()]


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
    unique = {c.public_bytes(serialization.Encoding.DER): c for c in certs}  # 'cat leaf.pem fullchain.pem'
    for cert in unique.values():
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
        if not key.id:
            notes.append(f"The key {key.label!r} has no CKA_ID, so its certificate was written without one: browsers "
                         "cannot pair them. Give the key an ID (or generate a new key with cert-desk).")
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
    done: list[tuple[int, _Write]] = []
    try:
        for w in writes:
            with m.operation(f"write the {w.what}", ref.slot_id):
                done.append((m.ck.create_object(handle, _certificate_template(w.cert, label=w.label,
                                                                              obj_id=w.obj_id)), w))
            log.info("wrote %s on %s", w.what, ref.describe())
    except E.CertDeskError as err:
        stuck = []
        for h, w in reversed(done):
            try:
                m.ck.destroy_object(handle, h)
            except CkError as e:
                log.warning("could not remove the %s written before the failure: %s", w.what, e)
                stuck.append(w.what)
        if stuck:
            err.message += f" The {', '.join(stuck)} written before the failure could not be removed again."
        raise
    return {h for h, _w in done}


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
        if not key.id:
            findings.append(DoctorFinding(
                "error", "certificate-id-mismatch",
                f"The certificate {o.label!r} belongs to the private key {key.label!r}, which has no CKA_ID: "
                "browsers and OpenSSL pair certificates with keys by ID, so they will not use them together.",
                "none automatic: give the key (and its public key) an ID, or generate a new key with cert-desk",
                o.handle))
        elif o.id != key.id:
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
    """Give a certificate object another CKA_ID and label: changed in place, or (tokens that refuse
    to change it) written again and the old one removed; when the old one cannot be removed either,
    the new copy is removed too, so a refused fix never leaves two certificates."""
    mapper = AttributeMapper()
    values = [(int(Attribute.ID), mapper.pack_attribute(Attribute.ID, new_id)),
              (int(Attribute.LABEL), mapper.pack_attribute(Attribute.LABEL, new_label))]
    try:
        with m.operation("change the certificate's ID", ref.slot_id):
            m.ck.set_attributes(session, obj.handle, values)
        return
    except E.TokenError as err:
        if err.ckr not in _READ_ONLY:
            raise
        log.info("the token will not change the certificate's attributes (%s): writing it again", err.ckr_name)
    assert obj.certificate is not None
    cert = x509.load_der_x509_certificate(obj.certificate.der)
    with m.operation("write the certificate with its key's ID", ref.slot_id):
        copy = m.ck.create_object(session, _certificate_template(cert, label=new_label, obj_id=new_id,
                                                                 private=bool(obj.private)))
    try:
        with m.operation("remove the certificate with the wrong ID", ref.slot_id):
            m.ck.destroy_object(session, obj.handle)
    except E.CertDeskError:
        try:
            m.ck.destroy_object(session, copy)
        except CkError as e:
            log.warning("could not remove the copy made for the fix: %s", e)
        raise
