"""Generate wrappers_gen.c, the forwarding half of libcdfault.so, from a prototype table.

Why generated: a PKCS#11 2.40 function list has 68 entries, and a hand-written forwarder for each
is where a swapped argument hides. The table below is the one place that lists them, in the order
of ``CK_FUNCTION_LIST`` (the compiler checks every prototype against p11-kit's pkcs11.h, so a
wrong type fails the build). Functions in ``CUSTOM`` have hand-written bodies in faultmod.c (they
do more than forward); the generator still gives them their enum value, name, and table entry.

    python3 tests/faultmod/gen_wrappers.py          # rewrite wrappers_gen.c
    python3 tests/faultmod/gen_wrappers.py --check  # exit 1 when wrappers_gen.c is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

OUT = Path(__file__).with_name("wrappers_gen.c")

# scope: how a call names its slot. "none": no slot; "slot": the first argument is a slot ID;
# "session": the first argument is a session handle (the slot is the session's).
S = "CK_SESSION_HANDLE hSession"
MECH = "CK_MECHANISM_PTR pMechanism"
PROTOTYPES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("C_Initialize", "none", ("CK_VOID_PTR pInitArgs",)),
    ("C_Finalize", "none", ("CK_VOID_PTR pReserved",)),
    ("C_GetInfo", "none", ("CK_INFO_PTR pInfo",)),
    ("C_GetFunctionList", "none", ("CK_FUNCTION_LIST_PTR_PTR ppFunctionList",)),
    ("C_GetSlotList", "none", ("CK_BBOOL tokenPresent", "CK_SLOT_ID_PTR pSlotList", "CK_ULONG_PTR pulCount")),
    ("C_GetSlotInfo", "slot", ("CK_SLOT_ID slotID", "CK_SLOT_INFO_PTR pInfo")),
    ("C_GetTokenInfo", "slot", ("CK_SLOT_ID slotID", "CK_TOKEN_INFO_PTR pInfo")),
    ("C_GetMechanismList", "slot", ("CK_SLOT_ID slotID", "CK_MECHANISM_TYPE_PTR pMechanismList",
                                    "CK_ULONG_PTR pulCount")),
    ("C_GetMechanismInfo", "slot", ("CK_SLOT_ID slotID", "CK_MECHANISM_TYPE type", "CK_MECHANISM_INFO_PTR pInfo")),
    ("C_InitToken", "slot", ("CK_SLOT_ID slotID", "CK_UTF8CHAR_PTR pPin", "CK_ULONG ulPinLen",
                             "CK_UTF8CHAR_PTR pLabel")),
    ("C_InitPIN", "session", (S, "CK_UTF8CHAR_PTR pPin", "CK_ULONG ulPinLen")),
    ("C_SetPIN", "session", (S, "CK_UTF8CHAR_PTR pOldPin", "CK_ULONG ulOldLen", "CK_UTF8CHAR_PTR pNewPin",
                             "CK_ULONG ulNewLen")),
    ("C_OpenSession", "slot", ("CK_SLOT_ID slotID", "CK_FLAGS flags", "CK_VOID_PTR pApplication",
                               "CK_NOTIFY Notify", "CK_SESSION_HANDLE_PTR phSession")),
    ("C_CloseSession", "session", (S,)),
    ("C_CloseAllSessions", "slot", ("CK_SLOT_ID slotID",)),
    ("C_GetSessionInfo", "session", (S, "CK_SESSION_INFO_PTR pInfo")),
    ("C_GetOperationState", "session", (S, "CK_BYTE_PTR pOperationState", "CK_ULONG_PTR pulOperationStateLen")),
    ("C_SetOperationState", "session", (S, "CK_BYTE_PTR pOperationState", "CK_ULONG ulOperationStateLen",
                                        "CK_OBJECT_HANDLE hEncryptionKey", "CK_OBJECT_HANDLE hAuthenticationKey")),
    ("C_Login", "session", (S, "CK_USER_TYPE userType", "CK_UTF8CHAR_PTR pPin", "CK_ULONG ulPinLen")),
    ("C_Logout", "session", (S,)),
    ("C_CreateObject", "session", (S, "CK_ATTRIBUTE_PTR pTemplate", "CK_ULONG ulCount",
                                   "CK_OBJECT_HANDLE_PTR phObject")),
    ("C_CopyObject", "session", (S, "CK_OBJECT_HANDLE hObject", "CK_ATTRIBUTE_PTR pTemplate", "CK_ULONG ulCount",
                                 "CK_OBJECT_HANDLE_PTR phNewObject")),
    ("C_DestroyObject", "session", (S, "CK_OBJECT_HANDLE hObject")),
    ("C_GetObjectSize", "session", (S, "CK_OBJECT_HANDLE hObject", "CK_ULONG_PTR pulSize")),
    ("C_GetAttributeValue", "session", (S, "CK_OBJECT_HANDLE hObject", "CK_ATTRIBUTE_PTR pTemplate",
                                        "CK_ULONG ulCount")),
    ("C_SetAttributeValue", "session", (S, "CK_OBJECT_HANDLE hObject", "CK_ATTRIBUTE_PTR pTemplate",
                                        "CK_ULONG ulCount")),
    ("C_FindObjectsInit", "session", (S, "CK_ATTRIBUTE_PTR pTemplate", "CK_ULONG ulCount")),
    ("C_FindObjects", "session", (S, "CK_OBJECT_HANDLE_PTR phObject", "CK_ULONG ulMaxObjectCount",
                                  "CK_ULONG_PTR pulObjectCount")),
    ("C_FindObjectsFinal", "session", (S,)),
    ("C_EncryptInit", "session", (S, MECH, "CK_OBJECT_HANDLE hKey")),
    ("C_Encrypt", "session", (S, "CK_BYTE_PTR pData", "CK_ULONG ulDataLen", "CK_BYTE_PTR pEncryptedData",
                              "CK_ULONG_PTR pulEncryptedDataLen")),
    ("C_EncryptUpdate", "session", (S, "CK_BYTE_PTR pPart", "CK_ULONG ulPartLen", "CK_BYTE_PTR pEncryptedPart",
                                    "CK_ULONG_PTR pulEncryptedPartLen")),
    ("C_EncryptFinal", "session", (S, "CK_BYTE_PTR pLastEncryptedPart", "CK_ULONG_PTR pulLastEncryptedPartLen")),
    ("C_DecryptInit", "session", (S, MECH, "CK_OBJECT_HANDLE hKey")),
    ("C_Decrypt", "session", (S, "CK_BYTE_PTR pEncryptedData", "CK_ULONG ulEncryptedDataLen", "CK_BYTE_PTR pData",
                              "CK_ULONG_PTR pulDataLen")),
    ("C_DecryptUpdate", "session", (S, "CK_BYTE_PTR pEncryptedPart", "CK_ULONG ulEncryptedPartLen",
                                    "CK_BYTE_PTR pPart", "CK_ULONG_PTR pulPartLen")),
    ("C_DecryptFinal", "session", (S, "CK_BYTE_PTR pLastPart", "CK_ULONG_PTR pulLastPartLen")),
    ("C_DigestInit", "session", (S, MECH)),
    ("C_Digest", "session", (S, "CK_BYTE_PTR pData", "CK_ULONG ulDataLen", "CK_BYTE_PTR pDigest",
                             "CK_ULONG_PTR pulDigestLen")),
    ("C_DigestUpdate", "session", (S, "CK_BYTE_PTR pPart", "CK_ULONG ulPartLen")),
    ("C_DigestKey", "session", (S, "CK_OBJECT_HANDLE hKey")),
    ("C_DigestFinal", "session", (S, "CK_BYTE_PTR pDigest", "CK_ULONG_PTR pulDigestLen")),
    ("C_SignInit", "session", (S, MECH, "CK_OBJECT_HANDLE hKey")),
    ("C_Sign", "session", (S, "CK_BYTE_PTR pData", "CK_ULONG ulDataLen", "CK_BYTE_PTR pSignature",
                           "CK_ULONG_PTR pulSignatureLen")),
    ("C_SignUpdate", "session", (S, "CK_BYTE_PTR pPart", "CK_ULONG ulPartLen")),
    ("C_SignFinal", "session", (S, "CK_BYTE_PTR pSignature", "CK_ULONG_PTR pulSignatureLen")),
    ("C_SignRecoverInit", "session", (S, MECH, "CK_OBJECT_HANDLE hKey")),
    ("C_SignRecover", "session", (S, "CK_BYTE_PTR pData", "CK_ULONG ulDataLen", "CK_BYTE_PTR pSignature",
                                  "CK_ULONG_PTR pulSignatureLen")),
    ("C_VerifyInit", "session", (S, MECH, "CK_OBJECT_HANDLE hKey")),
    ("C_Verify", "session", (S, "CK_BYTE_PTR pData", "CK_ULONG ulDataLen", "CK_BYTE_PTR pSignature",
                             "CK_ULONG ulSignatureLen")),
    ("C_VerifyUpdate", "session", (S, "CK_BYTE_PTR pPart", "CK_ULONG ulPartLen")),
    ("C_VerifyFinal", "session", (S, "CK_BYTE_PTR pSignature", "CK_ULONG ulSignatureLen")),
    ("C_VerifyRecoverInit", "session", (S, MECH, "CK_OBJECT_HANDLE hKey")),
    ("C_VerifyRecover", "session", (S, "CK_BYTE_PTR pSignature", "CK_ULONG ulSignatureLen", "CK_BYTE_PTR pData",
                                    "CK_ULONG_PTR pulDataLen")),
    ("C_DigestEncryptUpdate", "session", (S, "CK_BYTE_PTR pPart", "CK_ULONG ulPartLen", "CK_BYTE_PTR pEncryptedPart",
                                          "CK_ULONG_PTR pulEncryptedPartLen")),
    ("C_DecryptDigestUpdate", "session", (S, "CK_BYTE_PTR pEncryptedPart", "CK_ULONG ulEncryptedPartLen",
                                          "CK_BYTE_PTR pPart", "CK_ULONG_PTR pulPartLen")),
    ("C_SignEncryptUpdate", "session", (S, "CK_BYTE_PTR pPart", "CK_ULONG ulPartLen", "CK_BYTE_PTR pEncryptedPart",
                                        "CK_ULONG_PTR pulEncryptedPartLen")),
    ("C_DecryptVerifyUpdate", "session", (S, "CK_BYTE_PTR pEncryptedPart", "CK_ULONG ulEncryptedPartLen",
                                          "CK_BYTE_PTR pPart", "CK_ULONG_PTR pulPartLen")),
    ("C_GenerateKey", "session", (S, MECH, "CK_ATTRIBUTE_PTR pTemplate", "CK_ULONG ulCount",
                                  "CK_OBJECT_HANDLE_PTR phKey")),
    ("C_GenerateKeyPair", "session", (S, MECH, "CK_ATTRIBUTE_PTR pPublicKeyTemplate",
                                      "CK_ULONG ulPublicKeyAttributeCount", "CK_ATTRIBUTE_PTR pPrivateKeyTemplate",
                                      "CK_ULONG ulPrivateKeyAttributeCount", "CK_OBJECT_HANDLE_PTR phPublicKey",
                                      "CK_OBJECT_HANDLE_PTR phPrivateKey")),
    ("C_WrapKey", "session", (S, MECH, "CK_OBJECT_HANDLE hWrappingKey", "CK_OBJECT_HANDLE hKey",
                              "CK_BYTE_PTR pWrappedKey", "CK_ULONG_PTR pulWrappedKeyLen")),
    ("C_UnwrapKey", "session", (S, MECH, "CK_OBJECT_HANDLE hUnwrappingKey", "CK_BYTE_PTR pWrappedKey",
                                "CK_ULONG ulWrappedKeyLen", "CK_ATTRIBUTE_PTR pTemplate", "CK_ULONG ulAttributeCount",
                                "CK_OBJECT_HANDLE_PTR phKey")),
    ("C_DeriveKey", "session", (S, MECH, "CK_OBJECT_HANDLE hBaseKey", "CK_ATTRIBUTE_PTR pTemplate",
                                "CK_ULONG ulAttributeCount", "CK_OBJECT_HANDLE_PTR phKey")),
    ("C_SeedRandom", "session", (S, "CK_BYTE_PTR pSeed", "CK_ULONG ulSeedLen")),
    ("C_GenerateRandom", "session", (S, "CK_BYTE_PTR RandomData", "CK_ULONG ulRandomLen")),
    ("C_GetFunctionStatus", "session", (S,)),
    ("C_CancelFunction", "session", (S,)),
    ("C_WaitForSlotEvent", "none", ("CK_FLAGS flags", "CK_SLOT_ID_PTR pSlot", "CK_VOID_PTR pReserved")),
)

# Written by hand in faultmod.c: they load the target, track sessions, or change what comes back.
CUSTOM = frozenset({
    "C_Initialize", "C_Finalize", "C_GetFunctionList", "C_GetSlotList", "C_GetSlotInfo", "C_GetTokenInfo",
    "C_OpenSession", "C_CloseSession", "C_CloseAllSessions", "C_Login",
})

SCOPES = {"none": "FM_SCOPE_NONE", "slot": "FM_SCOPE_SLOT", "session": "FM_SCOPE_SESSION"}


def wrapper(name: str, scope: str, params: tuple[str, ...]) -> str:
    names = [p.rsplit(" ", 1)[1] for p in params]
    first = names[0] if scope != "none" else "0"
    if scope == "session":  # the caller's handle is ours; the real module gets its own
        names[0] = "call.session"
    args = ", ".join(names)
    return (
        f"CK_RV {name}({', '.join(params)})\n"
        "{\n"
        "    struct fm_call call;\n\n"
        f"    if (fm_begin(&call, FM_{name}, {SCOPES[scope]}, {first}))\n"
        "        return call.rv;\n"
        f"    return fm_target->{name}({args});\n"
        "}\n"
    )


def generate() -> str:
    names = [name for name, _, _ in PROTOTYPES]
    out = [
        "/* GENERATED by gen_wrappers.py from its prototype table: do not edit, run the generator.\n"
        " * #included by faultmod.c (after struct fm_call, fm_begin and fm_target). */\n",
        "enum fm_fn {\n" + "".join(f"    FM_{n},\n" for n in names) + "    FM_N_FUNCS\n};\n",
        "static const char *const fm_fn_names[FM_N_FUNCS] = {\n" + "".join(f'    "{n}",\n' for n in names) + "};\n",
    ]
    out += [wrapper(name, scope, params) for name, scope, params in PROTOTYPES if name not in CUSTOM]
    out.append(
        "static CK_FUNCTION_LIST fm_function_list = {\n"
        "    .version = { CRYPTOKI_VERSION_MAJOR, CRYPTOKI_VERSION_MINOR },\n"
        + "".join(f"    .{n} = {n},\n" for n in names)
        + "};\n"
    )
    return "\n".join(out)


def main(argv: list[str]) -> int:
    text = generate()
    if argv[1:] == ["--check"]:
        if OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
