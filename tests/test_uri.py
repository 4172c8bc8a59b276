"""RFC 7512 URIs and libp11 engine references."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cert_desk.pkcs11 import constants as C
from cert_desk.pkcs11.uri import object_uri, openssl_key_refs, parse_uri


def test_uri_like_p11tool() -> None:
    uri = object_uri(model="SoftHSM v2", manufacturer="SoftHSM project", serial="9f16453f8dbde3f5",
                     token_label="testtoken", object_class=C.CKO_PRIVATE_KEY, object_id=b"\x01", label="rsakey")
    assert uri == ("pkcs11:model=SoftHSM%20v2;manufacturer=SoftHSM%20project;serial=9f16453f8dbde3f5;"
                   "token=testtoken;id=%01;object=rsakey;type=private")


def test_id_0100_is_two_bytes() -> None:
    uri = object_uri(model="m", manufacturer="x", serial="s", token_label="t", object_class=C.CKO_CERTIFICATE,
                     object_id=bytes.fromhex("0100"), label="")
    assert ";id=%01%00;" in uri and uri.endswith(";type=cert") and "object=" not in uri
    assert parse_uri(uri)["id"] == b"\x01\x00"


def test_openssl_refs_use_the_slot_id() -> None:
    assert openssl_key_refs(725600472, bytes.fromhex("0100"), "my_key") == (
        "725600472:0100", "id_0100", "slot_725600472-id_0100", "slot_725600472-label_my_key", "label_my_key")
    assert openssl_key_refs(0, b"", "only label") == ("slot_0-label_only label", "label_only label")
    assert openssl_key_refs(3, b"\xab", "") == ("3:ab", "id_ab", "slot_3-id_ab")


@given(label=st.text(max_size=40), token=st.text(min_size=1, max_size=32), obj_id=st.binary(max_size=20))
def test_uri_round_trip(label: str, token: str, obj_id: bytes) -> None:
    uri = object_uri(model="m;x", manufacturer="a=b", serial="1/2", token_label=token,
                     object_class=C.CKO_PUBLIC_KEY, object_id=obj_id, label=label)
    parsed = parse_uri(uri)
    assert parsed["token"] == token
    assert parsed["model"] == "m;x" and parsed["manufacturer"] == "a=b" and parsed["serial"] == "1/2"
    assert parsed.get("id", b"") == obj_id
    assert parsed.get("object", "") == label
    assert parsed["type"] == "public"
