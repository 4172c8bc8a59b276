"""The ``--json`` schema of the CLI: models turned into plain JSON values.

The schema is documented in ``docs/cli-json.md``; every key listed there is always
present (``null`` where it does not apply), so scripts can index without ``get``.
``schema_version`` marks incompatible changes.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cert_desk.errors import CertDeskError
from cert_desk.models import (
    CertificateInfo,
    CsrResult,
    DeleteResult,
    DoctorReport,
    GeneratedKey,
    ImportResult,
    KeyGroup,
    LibraryInfo,
    MechanismInfo,
    ModuleEntry,
    ObjectInfo,
    ObjectListing,
    SlotReport,
    TokenInfo,
    TokenRef,
)
from cert_desk.pkcs11.attributes import attribute_json, attribute_name

if TYPE_CHECKING:
    from cert_desk.pcsc.readers import PcscSnapshot, ReaderState

SCHEMA_VERSION = 1
JSON = dict[str, Any]


def _time(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def library(info: LibraryInfo | None) -> JSON | None:
    if info is None:
        return None
    return {
        "manufacturer": info.manufacturer,
        "description": info.description,
        "library_version": info.library_version,
        "cryptoki_version": info.cryptoki_version,
    }


def module(entry: ModuleEntry, info: LibraryInfo | None, error: str | None) -> JSON:
    return {
        "name": entry.name,
        "path": entry.path,
        "realpath": entry.realpath,
        "aliases": list(entry.aliases),
        "sources": list(entry.sources),
        "exists": entry.exists,
        "note": entry.note or None,
        "library": library(info),
        "error": error,
    }


def token(info: TokenInfo) -> JSON:
    return {
        "label": info.label,
        "manufacturer": info.manufacturer,
        "model": info.model,
        "serial": info.serial,
        "flags": list(info.flag_words),
        "flags_value": info.flags,
        "hardware_version": info.hardware_version,
        "firmware_version": info.firmware_version,
        "min_pin_length": info.min_pin_len,
        "max_pin_length": info.max_pin_len,
        "user_pin": info.user_pin.value,
        "so_pin": info.so_pin.value,
        "initialized": info.initialized,
        "login_required": info.login_required,
        "protected_authentication_path": info.protected_authentication_path,
        "write_protected": info.write_protected,
        "sessions": info.sessions,
        "max_sessions": info.max_sessions,
        "rw_sessions": info.rw_sessions,
        "max_rw_sessions": info.max_rw_sessions,
        "total_public_memory": info.total_public_memory,
        "free_public_memory": info.free_public_memory,
        "total_private_memory": info.total_private_memory,
        "free_private_memory": info.free_private_memory,
        "utc_time": info.utc_time,
    }


def mechanism(m: MechanismInfo) -> JSON:
    return {
        "name": m.name,
        "code": m.code,
        "min_key_size": m.min_key_size,
        "max_key_size": m.max_key_size,
        "flags": list(m.flag_words),
    }


def slot(r: SlotReport) -> JSON:
    s = r.slot
    return {
        "module": r.module,
        "slot_id": s.slot_id,
        "description": s.description,
        "manufacturer": s.manufacturer,
        "flags": list(s.flag_words),
        "hardware_version": s.hardware_version,
        "firmware_version": s.firmware_version,
        "token_present": None if r.unanswered else s.token_present,
        "token": token(r.token) if r.token is not None else None,
        "mechanisms": [mechanism(m) for m in r.mechanisms],
        "error": r.error,
    }


def certificate(c: CertificateInfo | None) -> JSON:
    if c is None:
        return dict.fromkeys(_CERT_KEYS)
    return {
        "subject": c.subject,
        "issuer": c.issuer,
        "subject_cn": c.subject_cn,
        "issuer_cn": c.issuer_cn,
        "serial": c.serial,
        "not_before": _time(c.not_before),
        "not_after": _time(c.not_after),
        "key_usage": list(c.key_usage),
        "extended_key_usage": list(c.extended_key_usage),
        "subject_alt_names": list(c.subject_alt_names),
        "is_ca": c.is_ca,
        "self_signed": c.self_signed,
        "signature_algorithm": c.signature_algorithm,
        "sha256_fingerprint": c.sha256_fingerprint,
        "sha1_fingerprint": c.sha1_fingerprint,
    }


_CERT_KEYS = (
    "subject", "issuer", "subject_cn", "issuer_cn", "serial", "not_before", "not_after", "key_usage",
    "extended_key_usage", "subject_alt_names", "is_ca", "self_signed", "signature_algorithm",
    "sha256_fingerprint", "sha1_fingerprint",
)


def groups_by_handle(listing: ObjectListing) -> dict[int, KeyGroup]:
    return {h: g for g in listing.groups for h in (*g.private_keys, *g.public_keys, *g.certificates)}


def obj(listing: ObjectListing, o: ObjectInfo, groups: dict[int, KeyGroup] | None = None, *,
        attributes: bool = False) -> JSON:
    group = (groups if groups is not None else groups_by_handle(listing)).get(o.handle)
    out: JSON = {
        "class": o.class_name,
        "label": o.label,
        "id": o.id_hex,
        "handle": o.handle,
        "key_type": o.key_type,
        "bits": o.bits,
        "curve": o.curve,
        "usage": list(o.usage),
        "token_object": o.token_object,
        "private": o.private,
        "modifiable": o.modifiable,
        "sensitive": o.sensitive,
        "extractable": o.extractable,
        "local": o.local,
        "always_sensitive": o.always_sensitive,
        "never_extractable": o.never_extractable,
        "always_authenticate": o.always_authenticate,
        "application": o.application,
        "value_length": o.value_length,
        "public_key_sha256": o.public_key_sha256,
        "uri": o.uri,
        "openssl_key": list(o.openssl_key),
        "pair": None if group is None else {
            "id": group.id_hex,
            "private_keys": len(group.private_keys),
            "public_keys": len(group.public_keys),
            "certificates": len(group.certificates),
            "key_matches": group.key_matches,
            "warnings": list(group.warnings),
        },
        "problems": list(o.problems),
        "token": {
            "label": listing.token.label,
            "serial": listing.token.serial,
            "slot_id": listing.token.slot_id,
            "module": listing.token.module,
        },
    }
    if attributes:
        out["attributes"] = {attribute_name(k): attribute_json(v) for k, v in o.attributes}
    out.update(certificate(o.certificate))
    return out


def objects(listing: ObjectListing, *, attributes: bool = False) -> list[JSON]:
    """The ``objects --json`` list (with ``attributes``: every attribute read, by CKA name)."""
    groups = groups_by_handle(listing)
    return [obj(listing, o, groups, attributes=attributes) for o in listing.objects]


def reader(r: ReaderState, slot_report: SlotReport | None) -> JSON:
    a = r.atr_info
    return {
        "name": r.name,
        "card_present": r.card_present,
        "state": r.state_words(),
        "exclusive": r.exclusive,
        "atr": r.atr.hex(":").upper() if r.atr else None,
        "protocols": list(a.protocols) if a else None,
        "historical_bytes": a.historical.hex(":").upper() if a else None,
        "atr_problems": list(a.problems) if a else [],
        "device": r.device.name if r.device else None,
        "device_kind": r.device.kind if r.device else None,
        "slot": None if slot_report is None else {
            "module": slot_report.module,
            "slot_id": slot_report.slot.slot_id,
            "token": slot_report.token.label if slot_report.token and slot_report.token.initialized else None,
            "error": slot_report.error,
        },
    }


def pcsc(snap: PcscSnapshot, slots: dict[str, SlotReport]) -> JSON:
    return {
        "status": snap.status.value,
        "message": snap.message or None,
        "hint": snap.hint or None,
        "readers": [reader(r, slots.get(r.name)) for r in snap.readers],
    }


def error(err: CertDeskError) -> JSON:
    return {"error": {"kind": err.kind, "message": err.message, "hint": err.hint or None}}


# ------------------------------------------------------------------ certificate lifecycle


def _token_ref(ref: TokenRef) -> JSON:
    return {"module": ref.module, "slot_id": ref.slot_id, "label": ref.label, "serial": ref.serial}


def generated_key(g: GeneratedKey) -> JSON:
    return {
        "token": _token_ref(g.token), "type": g.spec, "label": g.label, "id": g.id.hex(), "id_source": g.id_source,
        "public_key": base64.b64encode(g.public_key_der).decode("ascii"), "seconds": round(g.seconds, 3),
        "objects": [obj(g.listing, o) for o in g.listing.objects if o.id == g.id],
    }


def delete_result(r: DeleteResult) -> JSON:
    return {"token": _token_ref(r.token), "deleted": [obj(r.listing, o) for o in r.deleted]}


def csr_result(r: CsrResult, out: str | None) -> JSON:
    return {"token": _token_ref(r.token), "key_label": r.key_label, "key_id": r.key_id.hex(), "subject": r.subject,
            "sans": list(r.sans), "mechanism": r.mechanism, "out": out, "pem": r.pem.decode("ascii")}


def import_result(r: ImportResult) -> JSON:
    return {"token": _token_ref(r.token), "key_id": r.key_id.hex(), "key_label": r.key_label,
            "written": [obj(r.listing, o) for o in r.written], "already_present": list(r.already_present),
            "notes": list(r.notes)}


def doctor_report(r: DoctorReport) -> JSON:
    return {
        "token": _token_ref(r.token),
        "findings": [{"severity": f.severity, "code": f.code, "message": f.message, "fix": f.fix or None,
                      "new_id": f.new_id.hex() if f.new_id is not None else None, "new_label": f.new_label}
                     for f in r.findings],
        "fixed": list(r.fixed),
    }


def verify_report(r: Any, path: str) -> JSON:
    return {
        "file": path, "subject": r.subject, "purpose": r.purpose, "ok": r.ok, "chain_checked": r.chain_checked,
        "chain": list(r.chain),
        "findings": [{"severity": f.severity, "code": f.code, "message": f.message, "hint": f.hint or None}
                     for f in r.findings],
    }


# ------------------------------------------------------------------ NSS databases


def nss_database(db: Any) -> JSON:
    return {"directory": db.directory, "spec": db.spec, "application": db.application, "profile": db.profile or None,
            "format": db.format, "supported": db.supported, "reason": db.reason or None, "default": db.default}


def nss_module(m: Any) -> JSON:
    return {"name": m.name, "library": m.library or None, "realpath": m.realpath or None, "internal": m.internal,
            "p11_kit_proxy": m.p11_kit_proxy}


def nss_state(s: Any) -> JSON:
    return {
        **nss_database(s.db),
        "modules": [nss_module(m) for m in s.modules],
        "registered": [m.name for m in s.registered],
        "conflicts": list(s.conflicts),
        "running": None if s.running is None else {"application": s.running.application, "pid": s.running.pid,
                                                   "evidence": s.running.evidence},
        "problem": s.problem or None,
        "via_proxy": s.via_proxy or None,
    }


def nss_change(c: Any) -> JSON:
    return {
        "database": nss_database(c.db), "changed": c.changed, "words": c.words,
        "loaded": [{"name": m.name, "library": m.library or None, "status": m.status,
                    "slots": [{"name": s.name, "token": s.token or None} for s in m.slots]} for m in c.loaded],
    }
