"""Read a token's objects into :class:`cert_desk.models.ObjectInfo`, and pair keys with certificates.

Cost per object, in C_GetAttributeValue calls (each round trip is an APDU exchange on a
USB token): python-pkcs11 builds each object from one batched read of CKA_CLASS and the
usage flags (2 calls: sizes, then values) and encodes the answer in the object's Python
class (``PrivateKey``, ``SignMixin``, ...). cert-desk then reads everything else it
shows in **one** more batch per object (2 calls), chosen by class: 4 calls per object in
all, against about 16 for ``pkcs11-tool -O``. Never ``obj[Attribute.X]`` in a loop: that is
2 calls per attribute.

Must run on the module's worker thread (the caller, :mod:`cert_desk.pkcs11.module`, checks).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import date
from enum import IntEnum
from typing import Any

import pkcs11
import pkcs11.exceptions as p11x
from pkcs11 import Attribute
from pkcs11.attributes import AttributeMapper

from cert_desk.errors import InputError
from cert_desk.models import KeyGroup, ObjectInfo, TokenInfo
from cert_desk.pkcs11 import constants as C
from cert_desk.pkcs11.uri import object_uri, openssl_key_refs
from cert_desk.x509.certinfo import parse_der_certificate
from cert_desk.x509.keys import curve_bits, curve_from_ec_params, public_key_spki, spki_sha256

log = logging.getLogger(__name__)

CKA_PUBLIC_KEY_INFO = 0x129
CKA_CERTIFICATE_CATEGORY = 0x87

# Batches, by class. Attributes a given object lacks simply do not come back.
_COMMON = (Attribute.LABEL, Attribute.ID, Attribute.TOKEN, Attribute.PRIVATE, Attribute.MODIFIABLE)
_KEY = (*_COMMON, Attribute.KEY_TYPE, Attribute.LOCAL, Attribute.START_DATE, Attribute.END_DATE,
        Attribute.KEY_GEN_MECHANISM)
_PRIVATE_KEY = (
    *_KEY, Attribute.SENSITIVE, Attribute.EXTRACTABLE, Attribute.ALWAYS_SENSITIVE,
    Attribute.NEVER_EXTRACTABLE, Attribute.ALWAYS_AUTHENTICATE, Attribute.SIGN_RECOVER,
    Attribute.MODULUS, Attribute.PUBLIC_EXPONENT, Attribute.EC_PARAMS, CKA_PUBLIC_KEY_INFO,
)
_PUBLIC_KEY = (
    *_KEY, Attribute.TRUSTED, Attribute.VERIFY_RECOVER, Attribute.MODULUS_BITS, Attribute.MODULUS,
    Attribute.PUBLIC_EXPONENT, Attribute.EC_PARAMS, Attribute.EC_POINT, CKA_PUBLIC_KEY_INFO,
)
_SECRET_KEY = (
    *_KEY, Attribute.SENSITIVE, Attribute.EXTRACTABLE, Attribute.ALWAYS_SENSITIVE,
    Attribute.NEVER_EXTRACTABLE, Attribute.VALUE_LEN, Attribute.CHECK_VALUE,
)
_CERTIFICATE = (*_COMMON, Attribute.CERTIFICATE_TYPE, Attribute.VALUE, Attribute.TRUSTED,
                CKA_CERTIFICATE_CATEGORY)
_OTHER = (*_COMMON, Attribute.CLASS, Attribute.APPLICATION, Attribute.OBJECT_ID, Attribute.VALUE)

# Failures that mean the token or session is gone: never fall back to per-attribute reads on these.
_FATAL = (
    p11x.DeviceRemoved, p11x.TokenNotPresent, p11x.SessionHandleInvalid, p11x.SessionClosed,
    p11x.DeviceError, p11x.HostMemory,
)


class TolerantAttributeMapper(AttributeMapper):
    """python-pkcs11's mapper, made safe for what real tokens return.

    - Vendor object classes and key types come back as ints instead of raising ValueError
      (which would abort the whole listing).
    - Labels that are not valid UTF-8 are decoded with replacement characters.
    - Attributes python-pkcs11 has no handler for (CKA_PUBLIC_KEY_INFO, vendor attributes)
      come back as bytes.
    - A value of the wrong length (a broken token) comes back as bytes.
    """

    def unpack_attributes(self, key: Attribute, value: bytes) -> Any:
        if key in (Attribute.LABEL, Attribute.APPLICATION):
            return value.decode("utf-8", errors="replace")
        handler = self.attribute_types.get(key)
        if handler is None:
            return bytes(value)
        try:
            return handler[1](value)
        except ValueError:
            if len(value) == 8:  # an enum value python-pkcs11 does not know
                return int.from_bytes(value, "little")
            return bytes(value)
        except Exception:  # struct.error and friends: the token sent nonsense for this attribute
            log.debug("attribute %#x has a malformed value of %d bytes", int(key), len(value))
            return bytes(value)


def _class_of(obj: pkcs11.Object) -> tuple[int | None, tuple[Attribute | int, ...]]:
    if isinstance(obj, pkcs11.PrivateKey):
        return C.CKO_PRIVATE_KEY, _PRIVATE_KEY
    if isinstance(obj, pkcs11.PublicKey):
        return C.CKO_PUBLIC_KEY, _PUBLIC_KEY
    if isinstance(obj, pkcs11.SecretKey):
        return C.CKO_SECRET_KEY, _SECRET_KEY
    if isinstance(obj, pkcs11.Certificate):
        return C.CKO_CERTIFICATE, _CERTIFICATE
    if isinstance(obj, pkcs11.DomainParameters):
        return C.CKO_DOMAIN_PARAMETERS, (*_COMMON, Attribute.KEY_TYPE, Attribute.LOCAL)
    return None, _OTHER  # data objects, hardware features, vendor classes: CKA_CLASS is in the batch


def _usage(obj: pkcs11.Object) -> tuple[str, ...]:
    """The usage flags python-pkcs11 already read while building the object, as its mixins."""
    pairs = (
        (pkcs11.SignMixin, "sign"), (pkcs11.DecryptMixin, "decrypt"), (pkcs11.UnwrapMixin, "unwrap"),
        (pkcs11.VerifyMixin, "verify"), (pkcs11.EncryptMixin, "encrypt"), (pkcs11.WrapMixin, "wrap"),
        (pkcs11.DeriveMixin, "derive"),
    )
    return tuple(word for mixin, word in pairs if isinstance(obj, mixin))


def read_attributes(obj: pkcs11.Object, keys: tuple[Attribute | int, ...]) -> dict[int, Any]:
    """One batched read; if the token mishandles batches, one attribute at a time."""
    try:
        return {int(k): v for k, v in obj.get_attributes(list(keys)).items()}  # type: ignore[arg-type]
    except _FATAL:
        raise
    except p11x.PKCS11Error as e:
        log.debug("batched attribute read failed (%s); reading one by one", type(e).__name__)
    out: dict[int, Any] = {}
    for key in keys:
        try:
            out[int(key)] = obj[key]  # type: ignore[index]
        except _FATAL:
            raise
        except (p11x.PKCS11Error, NotImplementedError, KeyError):
            continue
    return out


def _attr_name(key: int) -> str:
    if key == CKA_PUBLIC_KEY_INFO:
        return "CKA_PUBLIC_KEY_INFO"
    if key == CKA_CERTIFICATE_CATEGORY:
        return "CKA_CERTIFICATE_CATEGORY"
    try:
        return "CKA_" + Attribute(key).name
    except ValueError:
        return f"CKA_{key:#x}"


def _display(key: int, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if key == Attribute.CLASS and isinstance(value, int):
        return C.OBJECT_CLASS_WORDS.get(int(value), f"{int(value):#x}")
    if key == Attribute.KEY_TYPE and isinstance(value, int):
        return C.key_type_name(int(value))
    if key == Attribute.CERTIFICATE_TYPE and isinstance(value, int):
        return C.CERTIFICATE_TYPE_NAMES.get(int(value), f"{int(value):#x}")
    if key == Attribute.KEY_GEN_MECHANISM and isinstance(value, int):
        if value == C.CK_UNAVAILABLE_INFORMATION:
            return "unavailable"
        return C.mechanism_name(int(value))
    if isinstance(value, IntEnum):
        return value.name
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        if not value:
            return "(empty)"
        if key == Attribute.VALUE or len(value) > 64:
            return f"({len(value)} bytes) {bytes(value[:32]).hex()}{'...' if len(value) > 32 else ''}"
        return bytes(value).hex()
    return str(value)


def _opt_bool(attrs: dict[int, Any], key: Attribute) -> bool | None:
    v = attrs.get(int(key))
    return v if isinstance(v, bool) else None


def describe_object(
    obj: pkcs11.Object, token: TokenInfo, slot_id: int
) -> ObjectInfo:
    """Read one object (one batched attribute read) and describe it."""
    klass, keys = _class_of(obj)
    attrs = read_attributes(obj, keys)
    if klass is None:
        raw_class = attrs.get(int(Attribute.CLASS))
        klass = int(raw_class) if isinstance(raw_class, int) else -1
    label = attrs.get(int(Attribute.LABEL)) or ""
    if not isinstance(label, str):
        label = str(label)
    obj_id = attrs.get(int(Attribute.ID)) or b""
    if not isinstance(obj_id, bytes):
        obj_id = b""
    problems: list[str] = []
    key_type: str | None = None
    bits: int | None = None
    curve: str | None = None
    spki: bytes | None = None
    certificate = None

    raw_kt = attrs.get(int(Attribute.KEY_TYPE))
    if isinstance(raw_kt, int):
        key_type = C.key_type_name(int(raw_kt))
    modulus = attrs.get(int(Attribute.MODULUS))
    ec_params = attrs.get(int(Attribute.EC_PARAMS))
    if isinstance(modulus, bytes) and modulus:
        bits = int.from_bytes(modulus, "big").bit_length()
    mb = attrs.get(int(Attribute.MODULUS_BITS))
    if isinstance(mb, int) and mb > 0:
        bits = mb
    if isinstance(ec_params, bytes) and ec_params:
        curve = curve_from_ec_params(ec_params)
        bits = curve_bits(curve) if curve else None
    vlen = attrs.get(int(Attribute.VALUE_LEN))
    if klass == C.CKO_SECRET_KEY and isinstance(vlen, int):
        bits = vlen * 8
    if klass in (C.CKO_PRIVATE_KEY, C.CKO_PUBLIC_KEY):
        spki = public_key_spki(
            modulus=modulus if isinstance(modulus, bytes) else None,
            exponent=_bytes_or_none(attrs.get(int(Attribute.PUBLIC_EXPONENT))),
            ec_params=ec_params if isinstance(ec_params, bytes) else None,
            ec_point=_bytes_or_none(attrs.get(int(Attribute.EC_POINT))),
            public_key_info=_bytes_or_none(attrs.get(CKA_PUBLIC_KEY_INFO)),
        )
    value = attrs.get(int(Attribute.VALUE))
    value_length = len(value) if isinstance(value, bytes) else None
    if klass == C.CKO_CERTIFICATE:
        ctype = attrs.get(int(Attribute.CERTIFICATE_TYPE))
        if isinstance(value, bytes) and (ctype is None or int(ctype) == 0):
            try:
                certificate = parse_der_certificate(value)
            except InputError as e:
                problems.append(f"The certificate cannot be parsed: {e.message}")
        elif ctype is not None and int(ctype) != 0:
            problems.append(f"Not an X.509 certificate ({_display(int(Attribute.CERTIFICATE_TYPE), ctype)}).")
        if certificate is not None:
            key_type = certificate.public_key_type
            bits = certificate.public_key_bits
            curve = certificate.curve
    public_sha = (
        certificate.spki_sha256 if certificate is not None else (spki_sha256(spki) if spki else None)
    )
    application = attrs.get(int(Attribute.APPLICATION))

    shown = tuple(
        (_attr_name(k), _display(k, v))
        for k, v in sorted(attrs.items())
    )
    uri = object_uri(
        model=token.model, manufacturer=token.manufacturer, serial=token.serial, token_label=token.label,
        object_class=klass, object_id=obj_id, label=label,
    )
    refs = (
        openssl_key_refs(slot_id, obj_id, label)
        if klass in (C.CKO_PRIVATE_KEY, C.CKO_PUBLIC_KEY, C.CKO_CERTIFICATE) else ()
    )
    return ObjectInfo(
        object_class=klass,
        class_name=C.OBJECT_CLASS_NAMES.get(klass, f"vendor_{klass:#x}" if klass >= 0 else "unknown"),
        handle=int(obj.handle or 0),
        label=label,
        id=obj_id,
        key_type=key_type,
        bits=bits,
        curve=curve,
        usage=_usage(obj),
        token_object=_opt_bool(attrs, Attribute.TOKEN),
        private=_opt_bool(attrs, Attribute.PRIVATE),
        modifiable=_opt_bool(attrs, Attribute.MODIFIABLE),
        sensitive=_opt_bool(attrs, Attribute.SENSITIVE),
        extractable=_opt_bool(attrs, Attribute.EXTRACTABLE),
        local=_opt_bool(attrs, Attribute.LOCAL),
        always_sensitive=_opt_bool(attrs, Attribute.ALWAYS_SENSITIVE),
        never_extractable=_opt_bool(attrs, Attribute.NEVER_EXTRACTABLE),
        always_authenticate=_opt_bool(attrs, Attribute.ALWAYS_AUTHENTICATE),
        application=application if isinstance(application, str) else None,
        value_length=value_length,
        certificate=certificate,
        public_key_sha256=public_sha,
        attributes=shown,
        uri=uri,
        openssl_key=refs,
        problems=tuple(problems),
    )


def _bytes_or_none(v: Any) -> bytes | None:
    return bytes(v) if isinstance(v, bytes | bytearray) and v else None


def iter_objects(session: pkcs11.Session, batch_size: int = 64) -> Iterator[pkcs11.Object]:
    """Every object the session can see (python-pkcs11 builds each one as it comes)."""
    return iter(session.get_objects({}, batch_size=batch_size))  # type: ignore[call-arg]


def read_objects(session: pkcs11.Session, token: TokenInfo, slot_id: int) -> tuple[ObjectInfo, ...]:
    return tuple(describe_object(obj, token, slot_id) for obj in iter_objects(session))


# ---------------------------------------------------------------- pairing

_ORDER = {C.CKO_PRIVATE_KEY: 0, C.CKO_PUBLIC_KEY: 1, C.CKO_CERTIFICATE: 2}


def _name(o: ObjectInfo) -> str:
    kind = C.OBJECT_CLASS_WORDS.get(o.object_class, o.class_name).lower()
    label = f" {o.label!r}" if o.label else " (no label)"
    return f"{kind}{label} (ID {o.id_hex or 'none'})"


def group_objects(objects: Iterable[ObjectInfo]) -> tuple[tuple[KeyGroup, ...], tuple[str, ...]]:
    """Pair private keys, public keys and certificates by CKA_ID and check them by public key.

    Returns:
        The groups (one per CKA_ID that holds a private or public key or a certificate, in
        order of first appearance) and token-wide warnings.
    """
    objs = [o for o in objects if o.object_class in _ORDER]
    by_id: dict[bytes, list[ObjectInfo]] = defaultdict(list)
    for o in objs:
        by_id[o.id].append(o)
    # public key digest -> the key objects that have it
    key_ids_by_spki: dict[str, set[bytes]] = defaultdict(set)
    for o in objs:
        if o.object_class in (C.CKO_PRIVATE_KEY, C.CKO_PUBLIC_KEY) and o.public_key_sha256:
            key_ids_by_spki[o.public_key_sha256].add(o.id)

    token_warnings: list[str] = []
    groups: list[KeyGroup] = []
    for obj_id, members in by_id.items():
        privs = [o for o in members if o.object_class == C.CKO_PRIVATE_KEY]
        pubs = [o for o in members if o.object_class == C.CKO_PUBLIC_KEY]
        certs = [o for o in members if o.object_class == C.CKO_CERTIFICATE]
        warnings: list[str] = []
        if not obj_id and privs:
            warnings.append(
                "A private key has no CKA_ID: browsers and OpenSSL pair a certificate with its key by "
                "CKA_ID, so no certificate can be used with it."
            )
        if len(privs) > 1:
            warnings.append(f"{len(privs)} private keys share the ID {obj_id.hex() or 'none'}; "
                            "a program that asks for this ID may pick either.")
        key_digests = {o.public_key_sha256 for o in (*privs, *pubs) if o.public_key_sha256}
        if len(key_digests) > 1:
            warnings.append("The keys with this ID have different public keys: they are not one key pair.")
        key_digest = next(iter(key_digests)) if len(key_digests) == 1 else None
        for cert in certs:
            if cert.public_key_sha256 is None or key_digest is None or cert.public_key_sha256 == key_digest:
                continue
            others = sorted(i.hex() or "none" for i in key_ids_by_spki.get(cert.public_key_sha256, ()))
            where = (f" Its public key is that of the key with ID {', '.join(others)}: write it with "
                     "that ID instead.") if others else " No key on this token has its public key."
            warnings.append(f"The {_name(cert)} does not belong to the key with the same ID.{where}")
        if certs and not privs and not pubs:
            for cert in certs:
                if cert.public_key_sha256 in key_ids_by_spki:
                    others = sorted(i.hex() or "none" for i in key_ids_by_spki[cert.public_key_sha256])
                    warnings.append(
                        f"The {_name(cert)} has no key with its ID, but its public key is that of the key "
                        f"with ID {', '.join(others)}: browsers will not pair them. Write the certificate with "
                        "that ID."
                    )
        group = (*privs, *pubs, *certs)
        digests = [o.public_key_sha256 for o in group]
        known = {d for d in digests if d}
        matches: bool | None
        if len(known) > 1:
            matches = False
        elif len(group) >= 2 and all(digests):
            matches = True
        else:
            matches = None  # a lone object, or a key that does not reveal its public key
        if any("browsers will not pair" in w for w in warnings):
            matches = False
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
    for g in groups:
        token_warnings.extend(g.warnings)
    return tuple(groups), tuple(token_warnings)
