"""RFC 7512 PKCS#11 URIs and the OpenSSL (libp11 engine) key references.

URIs use the attribute order ``p11tool`` prints (model, manufacturer, serial, token, id,
object, type) and percent-encode every byte outside RFC 3986's unreserved set, which is
always valid RFC 7512. ``id`` is percent-encoded byte by byte: the two-byte CKA_ID shown
as ``0100`` is ``%01%00``. IDs are bytes everywhere in cert-desk and shown as hex with
their leading zeros; they are never turned into integers (which would make ``0100`` into
``100``).

libp11 reads ``N`` in ``N:ID``, ``slot_N-id_ID`` and ``slot_N-label_L`` as the PKCS#11
slot **ID** in decimal (not a position): OpenSC numbers its reader slots from 0, so the
seed's ``slot_0`` only works for OpenSC's first reader; SoftHSM2's slot IDs are large
numbers. References here are built from the real slot ID.
"""

from __future__ import annotations

from urllib.parse import quote, unquote, unquote_to_bytes

from cert_desk.pkcs11.constants import URI_TYPES

_SAFE = "-._~"


def _pct(value: str) -> str:
    return quote(value.encode("utf-8"), safe=_SAFE)


def _pct_bytes(value: bytes) -> str:
    return "%" + value.hex("%").upper() if value else ""


def token_uri(*, model: str, manufacturer: str, serial: str, label: str) -> str:
    parts = []
    if model:
        parts.append(f"model={_pct(model)}")
    if manufacturer:
        parts.append(f"manufacturer={_pct(manufacturer)}")
    if serial:
        parts.append(f"serial={_pct(serial)}")
    parts.append(f"token={_pct(label)}")
    return "pkcs11:" + ";".join(parts)


def object_uri(
    *, model: str, manufacturer: str, serial: str, token_label: str,
    object_class: int, object_id: bytes, label: str,
) -> str:
    uri = token_uri(model=model, manufacturer=manufacturer, serial=serial, label=token_label)
    return object_uri_in(uri, object_class=object_class, object_id=object_id, label=label)


def object_uri_in(token_uri: str, *, object_class: int, object_id: bytes, label: str,
                  label_raw: bytes | None = None) -> str:
    """The URI of an object of the token whose URI is ``token_uri`` (see :func:`token_uri`).

    ``label_raw``: the label's bytes as the token holds them, when they are not valid UTF-8
    (the URI must name those bytes, not the replacement characters shown on screen).
    """
    parts = [token_uri]
    if object_id:
        parts.append(f"id={_pct_bytes(object_id)}")
    if label_raw:
        parts.append(f"object={quote(label_raw, safe=_SAFE)}")
    elif label:
        parts.append(f"object={_pct(label)}")
    kind = URI_TYPES.get(object_class)
    if kind:
        parts.append(f"type={kind}")
    return ";".join(parts)


def openssl_key_refs(slot_id: int, object_id: bytes, label: str) -> tuple[str, ...]:
    """The libp11 engine references the seed uses: ``S:ID``, ``id_ID``, ``slot_S-id_ID``,
    ``slot_S-label_L``, ``label_L`` (forms whose part is empty are left out)."""
    refs: list[str] = []
    hex_id = object_id.hex()
    if hex_id:
        refs += [f"{slot_id}:{hex_id}", f"id_{hex_id}", f"slot_{slot_id}-id_{hex_id}"]
    if label:
        refs += [f"slot_{slot_id}-label_{label}", f"label_{label}"]
    return tuple(refs)


def parse_uri(uri: str) -> dict[str, str | bytes]:
    """Parse the path attributes of a PKCS#11 URI (``id`` comes back as bytes).

    Raises:
        ValueError: not a ``pkcs11:`` URI.
    """
    if not uri.startswith("pkcs11:"):
        raise ValueError("a PKCS#11 URI starts with 'pkcs11:'")
    path = uri[len("pkcs11:"):].split("?", 1)[0]
    out: dict[str, str | bytes] = {}
    for part in path.split(";"):
        if not part:
            continue
        key, _, value = part.partition("=")
        if key == "id":
            out[key] = unquote_to_bytes(value)
        else:
            out[key] = unquote(value)
    return out

