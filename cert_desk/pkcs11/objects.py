"""Read a token's objects into :class:`cert_desk.models.ObjectInfo`, and pair keys with certificates.

Cost, in C_GetAttributeValue calls (each one a round trip, and APDUs, on a USB token):
one call per object, with buffers passed up front (:class:`cert_desk.pkcs11.ck.AttributeReader`)
for everything the listing shows; a certificate's DER costs a second call; values larger
than their buffer cost two more.
``pkcs11-tool -O`` makes about 16 calls per object; python-pkcs11's objects cost 2 calls
to build plus 2 per ``get_attributes`` (and 2 per ``obj[Attribute.X]``), so the listing
does not go through them.

Never read: a key's CKA_VALUE (the secret or private key itself, when a careless token
lets it out), any private key component, or a data object's value (its size is enough).

Must run on the module's worker thread (the caller, :mod:`cert_desk.pkcs11.module`, checks).
"""

from __future__ import annotations

import logging
import struct
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date
from typing import Any

from pkcs11 import Attribute
from pkcs11.attributes import AttributeMapper, handle_bool

from cert_desk.errors import InputError
from cert_desk.models import KeyGroup, ObjectInfo, TokenInfo
from cert_desk.pkcs11 import constants as C
from cert_desk.pkcs11.attributes import attribute_text
from cert_desk.pkcs11.ck import AttributeReader, CkError, CkFunctions
from cert_desk.pkcs11.uri import object_uri_in, openssl_key_refs, token_uri
from cert_desk.x509.certinfo import parse_der_certificate
from cert_desk.x509.keys import curve_bits, curve_from_ec_params, public_key_spki, spki_sha256

log = logging.getLogger(__name__)

CKA_PUBLIC_KEY_INFO = 0x129
CKA_CERTIFICATE_CATEGORY = 0x87
A = Attribute
_BOOL, _ULONG, _DATE = 1, 8, 8

# One template for every object, with a buffer per attribute. Safe for every class: no
# CKA_VALUE (a secret key's value or an EC private key's scalar), no private components.
LISTING_TEMPLATE: tuple[tuple[int, int], ...] = tuple((int(t), n) for t, n in (
    (A.CLASS, _ULONG), (A.TOKEN, _BOOL), (A.PRIVATE, _BOOL), (A.MODIFIABLE, _BOOL), (A.LABEL, 256), (A.ID, 256),
    (A.KEY_TYPE, _ULONG), (A.LOCAL, _BOOL), (A.START_DATE, _DATE), (A.END_DATE, _DATE),
    (A.KEY_GEN_MECHANISM, _ULONG), (A.SENSITIVE, _BOOL), (A.EXTRACTABLE, _BOOL), (A.ALWAYS_SENSITIVE, _BOOL),
    (A.NEVER_EXTRACTABLE, _BOOL), (A.ALWAYS_AUTHENTICATE, _BOOL),
    (A.SIGN, _BOOL), (A.SIGN_RECOVER, _BOOL), (A.DECRYPT, _BOOL), (A.UNWRAP, _BOOL), (A.DERIVE, _BOOL),
    (A.VERIFY, _BOOL), (A.VERIFY_RECOVER, _BOOL), (A.ENCRYPT, _BOOL), (A.WRAP, _BOOL), (A.TRUSTED, _BOOL),
    (A.MODULUS, 1024), (A.MODULUS_BITS, _ULONG), (A.PUBLIC_EXPONENT, 16), (A.EC_PARAMS, 128),
    (A.EC_POINT, 160), (CKA_PUBLIC_KEY_INFO, 1100), (A.VALUE_LEN, _ULONG), (A.CHECK_VALUE, 16),
    (A.CERTIFICATE_TYPE, _ULONG), (CKA_CERTIFICATE_CATEGORY, _ULONG), (A.APPLICATION, 256), (A.OBJECT_ID, 128),
))
# A certificate's DER, in a second call once the first has shown the object is a certificate.
CERTIFICATE_TEMPLATE: tuple[tuple[int, int], ...] = ((int(A.VALUE), 4096),)
_USAGE = ((int(A.SIGN), "sign"), (int(A.DECRYPT), "decrypt"), (int(A.UNWRAP), "unwrap"),
          (int(A.VERIFY), "verify"), (int(A.ENCRYPT), "encrypt"), (int(A.WRAP), "wrap"), (int(A.DERIVE), "derive"))


def _unpack_bool(v: bytes) -> bool:
    return bool(v) and v[0] != 0


def _unpack_ulong(v: bytes) -> int | bytes:
    return int.from_bytes(v, sys.byteorder) if len(v) == _ULONG_SIZE else bytes(v)


def _unpack_text(v: bytes) -> str:
    return v.decode("utf-8", errors="replace")


_ULONG_SIZE = struct.calcsize("L")
# Enumerations come back as plain ints: python-pkcs11 would raise ValueError on a vendor
# class or key type (and lose the whole batch), and IntEnum construction is slow.
_ULONG_ATTRS = (
    Attribute.CLASS, Attribute.KEY_TYPE, Attribute.CERTIFICATE_TYPE, Attribute.KEY_GEN_MECHANISM,
    Attribute.MODULUS_BITS, Attribute.VALUE_LEN, Attribute.VALUE_BITS, Attribute.PRIME_BITS,
    Attribute.SUBPRIME_BITS, Attribute.PARAMETER_SET, CKA_CERTIFICATE_CATEGORY,
)
_TEXT_ATTRS = (Attribute.LABEL, Attribute.APPLICATION, Attribute.URL, Attribute.UNIQUE_ID)


def _unpack_date(v: bytes) -> date | None:
    text = v.decode("ascii", errors="replace").strip("\x00 ")
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def decode(raw: dict[int, bytes]) -> dict[int, Any]:
    """Raw attribute bytes as Python values (bools, ints, text, dates; anything else stays bytes)."""
    out: dict[int, Any] = {}
    for key, value in raw.items():
        kind = _DECODERS.get(key)
        try:
            out[key] = kind(value) if kind is not None else value
        except Exception:  # a malformed value from the token: keep the bytes
            out[key] = value
    return out


_DECODERS: dict[int, Callable[[bytes], Any]] = {
    **{int(k): _unpack_bool for k, fn in AttributeMapper().attribute_types.items() if fn is handle_bool},
    **{int(k): _unpack_ulong for k in _ULONG_ATTRS},
    **{int(k): _unpack_text for k in _TEXT_ATTRS},
    int(A.START_DATE): _unpack_date,
    int(A.END_DATE): _unpack_date,
}
class TolerantAttributeMapper(AttributeMapper):
    """python-pkcs11's mapper for cert-desk's sessions, decoding as :func:`decode` does.

    - Object classes, key types and other CK_ULONG values come back as ints: a vendor
      class or key type would make python-pkcs11 raise ValueError.
    - Text that is not valid UTF-8 is decoded with replacement characters.
    - Attributes python-pkcs11 has no handler for (CKA_PUBLIC_KEY_INFO, vendor attributes)
      come back as bytes; so does a value of the wrong length (a broken token).

    Packing (building templates) is python-pkcs11's, unchanged.
    """

    def unpack_attributes(self, key: Attribute, value: bytes) -> Any:
        fn = _DECODERS.get(key)
        if fn is None:
            handler = self.attribute_types.get(key)
            if handler is None:
                return bytes(value)
            fn = handler[1]
        try:
            return fn(value)
        except Exception:  # ValueError, struct.error: the token sent nonsense for this attribute
            log.debug("attribute %#x has a malformed value of %d bytes", int(key), len(value))
            return bytes(value)


def _opt_bool(attrs: dict[int, Any], key: int) -> bool | None:
    v = attrs.get(key)
    return v if type(v) is bool else None


def describe_object(attrs: dict[int, Any], handle: int, token: TokenInfo, slot_id: int, uri_prefix: str, *,
                    cert_der: bytes | None = None, value_length: int | None = None,
                    label_raw: bytes | None = None) -> ObjectInfo:
    """Describe one object from its decoded attributes (no token call here)."""
    raw_class = attrs.get(int(A.CLASS))
    klass = raw_class if type(raw_class) is int else -1
    label = attrs.get(int(A.LABEL)) or ""
    if not isinstance(label, str):
        label = str(label)
    obj_id = attrs.get(int(A.ID)) or b""
    if not isinstance(obj_id, bytes):
        obj_id = b""
    problems: list[str] = []
    key_type: str | None = None
    bits: int | None = None
    curve: str | None = None
    spki: bytes | None = None
    certificate = None

    raw_kt = attrs.get(int(A.KEY_TYPE))
    if type(raw_kt) is int:
        key_type = C.key_type_name(raw_kt)
    modulus = _bytes_or_none(attrs.get(int(A.MODULUS)))
    ec_params = _bytes_or_none(attrs.get(int(A.EC_PARAMS)))
    if modulus:
        bits = int.from_bytes(modulus, "big").bit_length()
    mb = attrs.get(int(A.MODULUS_BITS))
    if type(mb) is int and mb > 0:
        bits = mb
    if ec_params:
        curve = curve_from_ec_params(ec_params)
        bits = curve_bits(curve) if curve else None
    vlen = attrs.get(int(A.VALUE_LEN))
    if klass == C.CKO_SECRET_KEY and type(vlen) is int:
        bits = vlen * 8
    if klass in (C.CKO_PRIVATE_KEY, C.CKO_PUBLIC_KEY):
        spki = public_key_spki(
            modulus=modulus,
            exponent=_bytes_or_none(attrs.get(int(A.PUBLIC_EXPONENT))),
            ec_params=ec_params,
            ec_point=_bytes_or_none(attrs.get(int(A.EC_POINT))),
            public_key_info=_bytes_or_none(attrs.get(CKA_PUBLIC_KEY_INFO)),
        )
    if klass == C.CKO_CERTIFICATE:
        ctype = attrs.get(int(A.CERTIFICATE_TYPE))
        if ctype not in (None, 0):
            problems.append(f"Not an X.509 certificate ({attribute_text(int(A.CERTIFICATE_TYPE), ctype)}).")
        elif cert_der:
            try:
                certificate = parse_der_certificate(cert_der)
            except InputError as e:
                problems.append(f"The certificate cannot be parsed: {e.message}")
        else:
            problems.append("The certificate object has no value.")
        if certificate is not None:
            key_type = certificate.public_key_type
            bits = certificate.public_key_bits
            curve = certificate.curve
        if cert_der is not None:
            value_length = len(cert_der)
    public_sha = certificate.spki_sha256 if certificate is not None else (spki_sha256(spki) if spki else None)
    application = attrs.get(int(A.APPLICATION))
    if cert_der is not None:
        attrs = {**attrs, int(A.VALUE): cert_der}
    return ObjectInfo(
        object_class=klass,
        class_name=C.OBJECT_CLASS_NAMES.get(klass, f"vendor_{klass:#x}" if klass >= 0 else "unknown"),
        handle=handle,
        label=label,
        id=obj_id,
        key_type=key_type,
        bits=bits,
        curve=curve,
        usage=tuple(word for key, word in _USAGE if attrs.get(key) is True),
        token_object=_opt_bool(attrs, _TOKEN),
        private=_opt_bool(attrs, _PRIVATE),
        modifiable=_opt_bool(attrs, _MODIFIABLE),
        sensitive=_opt_bool(attrs, _SENSITIVE),
        extractable=_opt_bool(attrs, _EXTRACTABLE),
        local=_opt_bool(attrs, _LOCAL),
        always_sensitive=_opt_bool(attrs, _ALWAYS_SENSITIVE),
        never_extractable=_opt_bool(attrs, _NEVER_EXTRACTABLE),
        always_authenticate=_opt_bool(attrs, _ALWAYS_AUTHENTICATE),
        application=application if isinstance(application, str) else None,
        value_length=value_length,
        certificate=certificate,
        public_key_sha256=public_sha,
        public_key_der=certificate.spki if certificate is not None else spki,
        attributes=tuple(attrs.items()),
        uri=object_uri_in(uri_prefix, object_class=klass, object_id=obj_id, label=label,
                          label_raw=label_raw if label_raw and "\ufffd" in label else None),
        openssl_key=(openssl_key_refs(slot_id, obj_id, label)
                     if klass in (C.CKO_PRIVATE_KEY, C.CKO_PUBLIC_KEY, C.CKO_CERTIFICATE) else ()),
        problems=tuple(problems),
    )


_TOKEN, _PRIVATE, _MODIFIABLE, _SENSITIVE, _EXTRACTABLE, _LOCAL = (
    int(A.TOKEN), int(A.PRIVATE), int(A.MODIFIABLE), int(A.SENSITIVE), int(A.EXTRACTABLE), int(A.LOCAL))
_ALWAYS_SENSITIVE, _NEVER_EXTRACTABLE, _ALWAYS_AUTHENTICATE = (
    int(A.ALWAYS_SENSITIVE), int(A.NEVER_EXTRACTABLE), int(A.ALWAYS_AUTHENTICATE))


def _bytes_or_none(v: Any) -> bytes | None:
    return bytes(v) if isinstance(v, bytes | bytearray) and v else None


def _token_uri(token: TokenInfo) -> str:
    return token_uri(model=token.model, manufacturer=token.manufacturer, serial=token.serial, label=token.label)


# Attributes of variable size an object of a class should have: when a read comes back
# without one of them and the module did not say "everything OK", it may simply not have
# fit its buffer (see AttributeReader.read), so it is asked for at its real size.
_EXPECTED_COMMON = (int(A.LABEL), int(A.ID))
_EXPECTED_RSA = (int(A.MODULUS), int(A.PUBLIC_EXPONENT))
_EXPECTED: dict[tuple[int | None, int | None], tuple[int, ...]] = {
    (C.CKO_PRIVATE_KEY, C.CKK_RSA): (*_EXPECTED_COMMON, *_EXPECTED_RSA),
    (C.CKO_PUBLIC_KEY, C.CKK_RSA): (*_EXPECTED_COMMON, *_EXPECTED_RSA),
    (C.CKO_PRIVATE_KEY, C.CKK_EC): (*_EXPECTED_COMMON, int(A.EC_PARAMS)),
    (C.CKO_PUBLIC_KEY, C.CKK_EC): (*_EXPECTED_COMMON, int(A.EC_PARAMS), int(A.EC_POINT)),
    (C.CKO_DATA, None): (int(A.LABEL), int(A.APPLICATION)),
}
_CKR_OBJECT_HANDLE_INVALID = 0x82


def _expected(raw: dict[int, bytes]) -> tuple[int, ...]:
    klass = _unpack_ulong(raw[int(A.CLASS)]) if int(A.CLASS) in raw else None
    key_type = _unpack_ulong(raw[int(A.KEY_TYPE)]) if int(A.KEY_TYPE) in raw else None
    k = klass if isinstance(klass, int) else None
    t = key_type if isinstance(key_type, int) else None
    return _EXPECTED.get((k, t)) or _EXPECTED.get((k, None)) or _EXPECTED_COMMON


class ObjectReader:
    """Reads every object a session sees: one C_GetAttributeValue per key, two per certificate
    (its DER is read once the first call has shown it is a certificate, so no key's CKA_VALUE
    is ever asked for), and more only for values larger than their buffer.

    Attributes:
        calls: C_GetAttributeValue calls made (for the benchmark and the tests).
    """

    def __init__(self, ck: CkFunctions) -> None:
        self._ck = ck
        self._main = AttributeReader(ck, LISTING_TEMPLATE)
        self._cert = AttributeReader(ck, CERTIFICATE_TEMPLATE)

    @property
    def calls(self) -> int:
        return self._main.calls + self._cert.calls

    def read(self, session: int, token: TokenInfo, slot_id: int) -> tuple[ObjectInfo, ...]:
        prefix = _token_uri(token)
        out = []
        for handle in self._ck.find_objects(session):
            try:
                out.append(self._read_one(session, handle, token, slot_id, prefix))
            except CkError as e:
                if e.ckr != _CKR_OBJECT_HANDLE_INVALID:
                    raise
                log.debug("object %#x vanished while it was listed", handle)  # deleted meanwhile: skip it
        return tuple(out)

    def _read_one(self, session: int, handle: int, token: TokenInfo, slot_id: int, prefix: str) -> ObjectInfo:
        main = self._main
        raw = main.read(session, handle)
        if main.last_rv != 0:
            lost = [t for t in _expected(raw) if t in main.last_missing]
            if lost:
                main.complete(session, handle, raw, lost)
        attrs = decode(raw)
        klass = attrs.get(int(A.CLASS))
        cert_der: bytes | None = None
        value_length: int | None = None
        value_key = int(A.VALUE)
        if klass == C.CKO_CERTIFICATE:
            cert_der = self._cert.read(session, handle).get(value_key)
        elif klass == C.CKO_DATA:
            value_length = self._ck.attribute_sizes(session, handle, (value_key,)).get(value_key)
        return describe_object(attrs, handle, token, slot_id, prefix, cert_der=cert_der, value_length=value_length,
                               label_raw=raw.get(int(A.LABEL)))


_ORDER = {C.CKO_PRIVATE_KEY: 0, C.CKO_PUBLIC_KEY: 1, C.CKO_CERTIFICATE: 2}


def _name(o: ObjectInfo) -> str:
    kind = C.OBJECT_CLASS_WORDS.get(o.object_class, o.class_name).lower()
    label = f" {o.label!r}" if o.label else " (no label)"
    return f"{kind}{label} (ID {o.id_hex or 'none'})"


def _key_ids(key_ids_by_spki: dict[str, set[bytes]], digest: str | None) -> str:
    return ", ".join(sorted(i.hex() or "none" for i in key_ids_by_spki.get(digest or "", ())))


def _buckets(objs: list[ObjectInfo]) -> list[tuple[bytes, list[ObjectInfo]]]:
    """Objects by CKA_ID. Objects without an ID are not one group: each stands alone, except
    that a key pair generated without an ID is kept together by its public key."""
    by_id: dict[bytes, list[ObjectInfo]] = defaultdict(list)
    no_id: dict[str, list[ObjectInfo]] = defaultdict(list)
    buckets: list[tuple[bytes, list[ObjectInfo]]] = []
    for o in objs:
        if o.id:
            if o.id not in by_id:
                buckets.append((o.id, by_id[o.id]))
            by_id[o.id].append(o)
        elif o.public_key_sha256 and o.object_class != C.CKO_CERTIFICATE:
            if o.public_key_sha256 not in no_id:
                buckets.append((b"", no_id[o.public_key_sha256]))
            no_id[o.public_key_sha256].append(o)
        else:
            buckets.append((b"", [o]))
    return buckets


def group_objects(objects: Iterable[ObjectInfo]) -> tuple[tuple[KeyGroup, ...], tuple[str, ...]]:
    """Pair private keys, public keys and certificates by CKA_ID and check them by public key.

    ``key_matches`` is ``False`` when two members' public keys differ (or a certificate
    belongs to a key with another ID), ``True`` when at least two members reveal their public
    key and all of those agree (an EC private key, which does not show its public key, is
    then paired by ID), and ``None`` otherwise (a lone object, or nothing to compare).

    Returns:
        The groups (in order of first appearance) and token-wide warnings; every warning
        names the objects it is about.
    """
    objs = [o for o in objects if o.object_class in _ORDER]
    key_ids_by_spki: dict[str, set[bytes]] = defaultdict(set)
    for o in objs:
        if o.object_class in (C.CKO_PRIVATE_KEY, C.CKO_PUBLIC_KEY) and o.public_key_sha256:
            key_ids_by_spki[o.public_key_sha256].add(o.id)

    groups: list[KeyGroup] = []
    for obj_id, members in _buckets(objs):
        privs = [o for o in members if o.object_class == C.CKO_PRIVATE_KEY]
        pubs = [o for o in members if o.object_class == C.CKO_PUBLIC_KEY]
        certs = [o for o in members if o.object_class == C.CKO_CERTIFICATE]
        shown_id = obj_id.hex() or "none"
        warnings: list[str] = []
        mismatch = False
        if not obj_id and privs:
            warnings.append(
                f"The private key {privs[0].label!r} has no CKA_ID: browsers and OpenSSL pair a certificate "
                "with its key by CKA_ID, so no certificate can be used with it.")
        if len(privs) > 1:
            warnings.append(f"{len(privs)} private keys share the ID {shown_id}; a program that asks for this ID "
                            "may pick either.")
        key_digests = {o.public_key_sha256 for o in (*privs, *pubs) if o.public_key_sha256}
        if len(key_digests) > 1:
            mismatch = True
            warnings.append(f"The keys with ID {shown_id} have different public keys: they are not one key pair.")
        key_digest = next(iter(key_digests)) if len(key_digests) == 1 else None
        for cert in certs:
            if cert.public_key_sha256 is None:
                continue
            owners = _key_ids(key_ids_by_spki, cert.public_key_sha256)
            if key_digest is not None and cert.public_key_sha256 != key_digest:
                mismatch = True
                where = (f" Its public key is that of the key with ID {owners}: write it with that ID instead."
                         if owners else " No key on this token has its public key.")
                warnings.append(f"The {_name(cert)} does not belong to the key with the same ID.{where}")
            elif not privs and not pubs and owners:
                mismatch = True
                warnings.append(
                    f"The {_name(cert)} has no key with its ID, but its public key is that of the key with ID "
                    f"{owners}: browsers will not pair them. Write the certificate with that ID.")
        known = [o.public_key_sha256 for o in (*privs, *pubs, *certs) if o.public_key_sha256]
        matches: bool | None
        if mismatch:
            matches = False
        elif len(known) >= 2 and (privs or pubs):
            matches = True
        else:
            matches = None
        label = next((o.label for o in (*privs, *certs, *pubs) if o.label), "")
        groups.append(KeyGroup(
            id=obj_id,
            label=label,
            private_keys=tuple(o.handle for o in privs),
            public_keys=tuple(o.handle for o in pubs),
            certificates=tuple(o.handle for o in certs),
            key_matches=matches,
            warnings=tuple(warnings),
        ))
    return tuple(groups), tuple(w for g in groups for w in g.warnings)
