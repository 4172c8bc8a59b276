"""Readable HTML for the details panel: an object, a key pair, a certificate."""

from __future__ import annotations

import html
from datetime import datetime

from cert_desk.models import CertificateInfo, KeyGroup, ObjectInfo
from cert_desk.pkcs11.attributes import attribute_name, attribute_text
from cert_desk.pkcs11.constants import OBJECT_CLASS_WORDS
from cert_desk.ui import style
from cert_desk.ui.objects_model import expiry_kind, key_text


def _e(text: str) -> str:
    return html.escape(text)


def _table(rows: list[tuple[str, str]], *, mono: bool = False) -> str:
    value_style = " style='font-family:monospace'" if mono else ""
    body = "".join(
        f"<tr><td style='padding:1px 14px 1px 0; white-space:nowrap' valign='top'><b>{k}</b></td>"
        f"<td{value_style}>{v}</td></tr>" for k, v in rows)
    return f"<table cellspacing='0'>{body}</table>"


def _yes(v: bool | None) -> str:
    return "—" if v is None else ("yes" if v else "no")


def certificate_html(c: CertificateInfo, now: datetime) -> str:
    kind = expiry_kind(c, now)
    until = f"{c.not_after:%Y-%m-%d %H:%M} UTC"
    if kind == "error":
        until = f"<span style='color:{style.state_hex('error')}'><b>{until} — expired</b></span>"
    elif kind == "warn":
        days = (c.not_after - now).days
        until = f"<span style='color:{style.state_hex('warn')}'><b>{until} — in {days} days</b></span>"
    key = c.public_key_type + (f" {c.curve}" if c.curve else f" {c.public_key_bits}" if c.public_key_bits else "")
    rows = [
        ("Subject", _e(c.subject)),
        ("Issuer", _e(c.issuer) + (" <i>(self-signed)</i>" if c.self_signed else "")),
        ("Serial", f"<tt>{_e(c.serial)}</tt>"),
        ("Valid from", f"{c.not_before:%Y-%m-%d %H:%M} UTC"),
        ("Valid until", until),
        ("Public key", _e(key)),
        ("Key usage", _e(", ".join(c.key_usage) or "—")),
        ("Extended key usage", _e(", ".join(c.extended_key_usage) or "—")),
        ("Alternative names", _e(", ".join(c.subject_alt_names) or "—")),
        ("CA", _yes(c.is_ca)),
        ("Signature", _e(c.signature_algorithm)),
        ("SHA-256", f"<tt>{_e(c.sha256_fingerprint)}</tt>"),
        ("SHA-1", f"<tt>{_e(c.sha1_fingerprint)}</tt>"),
    ]
    return _table(rows) + f"<h4>PEM</h4><pre>{_e(c.pem())}</pre>"


def _attributes_html(o: ObjectInfo) -> str:
    rows = [(_e(attribute_name(k)), _e(attribute_text(k, v))) for k, v in o.attributes]
    if o.value_length is not None and o.certificate is None:
        rows.append(("CKA_VALUE", f"({o.value_length} bytes, not read)"))
    return "<h4>All attributes</h4>" + _table(rows, mono=True)


def object_html(o: ObjectInfo, group: KeyGroup | None, now: datetime) -> str:
    title = f"{OBJECT_CLASS_WORDS.get(o.object_class, o.class_name)}: {o.label or '(no label)'}"
    out = f"<h3>{_e(title)}</h3>"
    for p in o.problems:
        out += f"<p style='color:{style.state_hex('error')}'>{_e(p)}</p>"
    if group is not None:
        for w in group.warnings:
            out += f"<p style='color:{style.state_hex('warn')}'>⚠ {_e(w)}</p>"
    rows = [("ID", f"<tt>{_e(o.id_hex) or '(none)'}</tt>")]
    if o.key_type and o.certificate is None:
        rows.append(("Key", _e(key_text(o))))
    if o.usage:
        rows.append(("Usage", _e(", ".join(o.usage))))
    access = [w for flag, w in ((o.private, "private"), (o.sensitive, "sensitive"),
                                (o.never_extractable, "never extractable"), (o.extractable, "extractable"),
                                (o.local, "generated on the token"), (o.always_authenticate, "PIN for every use"))
              if flag]
    if access:
        rows.append(("Access", _e(", ".join(access))))
    rows.append(("PKCS#11 URI", f"<tt>{_e(o.uri)}</tt>"))
    if o.openssl_key:
        rows.append(("OpenSSL key", "<br>".join(f"<tt>{_e(r)}</tt>" for r in o.openssl_key)))
    out += _table(rows)
    if o.certificate is not None:
        out += "<h4>Certificate</h4>" + certificate_html(o.certificate, now)
    return out + _attributes_html(o)


def group_html(group: KeyGroup, members: list[ObjectInfo], now: datetime) -> str:
    verdict = {
        True: ("ok", "The private key, public key and certificate belong together (same public key)."),
        False: ("error", "These objects share a CKA_ID but not a public key."),
        None: ("muted", "Paired by CKA_ID; the public keys could not all be compared (an EC private key does "
                        "not show its public key)."),
    }[group.key_matches]
    out = f"<h3>Key pair: {_e(group.label or '(no label)')}</h3>"
    out += f"<p style='color:{style.state_hex(verdict[0])}'>{_e(verdict[1])}</p>"
    for w in group.warnings:
        out += f"<p style='color:{style.state_hex('warn')}'>⚠ {_e(w)}</p>"
    rows = [("ID", f"<tt>{_e(group.id_hex) or '(none)'}</tt>")]
    for m in members:
        kind = OBJECT_CLASS_WORDS.get(m.object_class, m.class_name)
        rows.append((_e(kind), _e(m.label or "(no label)") + (f" — {_e(key_text(m))}" if key_text(m) else "")))
    out += _table(rows)
    cert = next((m for m in members if m.certificate is not None), None)
    if cert is not None and cert.certificate is not None:
        out += "<h4>Certificate</h4>" + certificate_html(cert.certificate, now)
    key = next((m for m in members if m.openssl_key), None)
    if key is not None:
        out += "<h4>References</h4>" + _table([
            ("PKCS#11 URI", f"<tt>{_e(key.uri)}</tt>"),
            ("OpenSSL key", "<br>".join(f"<tt>{_e(r)}</tt>" for r in key.openssl_key)),
        ])
    return out
