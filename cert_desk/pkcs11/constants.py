"""PKCS#11 numbers and the words cert-desk shows for them.

Pure data, no library calls: CKR names, slot and token flag words (in the order
``pkcs11-tool -L`` prints them, plus the ones it folds into "other flags"), object class
and key type names, mechanism names and mechanism flag words.
"""

from __future__ import annotations

from typing import Final

CK_UNAVAILABLE_INFORMATION: Final = 0xFFFFFFFFFFFFFFFF
CK_EFFECTIVELY_INFINITE: Final = 0

CKR_NAMES: Final[dict[int, str]] = {
    0x000: "CKR_OK",
    0x001: "CKR_CANCEL",
    0x002: "CKR_HOST_MEMORY",
    0x003: "CKR_SLOT_ID_INVALID",
    0x005: "CKR_GENERAL_ERROR",
    0x006: "CKR_FUNCTION_FAILED",
    0x007: "CKR_ARGUMENTS_BAD",
    0x008: "CKR_NO_EVENT",
    0x009: "CKR_NEED_TO_CREATE_THREADS",
    0x00A: "CKR_CANT_LOCK",
    0x010: "CKR_ATTRIBUTE_READ_ONLY",
    0x011: "CKR_ATTRIBUTE_SENSITIVE",
    0x012: "CKR_ATTRIBUTE_TYPE_INVALID",
    0x013: "CKR_ATTRIBUTE_VALUE_INVALID",
    0x01B: "CKR_ACTION_PROHIBITED",
    0x020: "CKR_DATA_INVALID",
    0x021: "CKR_DATA_LEN_RANGE",
    0x030: "CKR_DEVICE_ERROR",
    0x031: "CKR_DEVICE_MEMORY",
    0x032: "CKR_DEVICE_REMOVED",
    0x040: "CKR_ENCRYPTED_DATA_INVALID",
    0x041: "CKR_ENCRYPTED_DATA_LEN_RANGE",
    0x042: "CKR_AEAD_DECRYPT_FAILED",
    0x050: "CKR_FUNCTION_CANCELED",
    0x051: "CKR_FUNCTION_NOT_PARALLEL",
    0x054: "CKR_FUNCTION_NOT_SUPPORTED",
    0x060: "CKR_KEY_HANDLE_INVALID",
    0x062: "CKR_KEY_SIZE_RANGE",
    0x063: "CKR_KEY_TYPE_INCONSISTENT",
    0x064: "CKR_KEY_NOT_NEEDED",
    0x065: "CKR_KEY_CHANGED",
    0x066: "CKR_KEY_NEEDED",
    0x067: "CKR_KEY_INDIGESTIBLE",
    0x068: "CKR_KEY_FUNCTION_NOT_PERMITTED",
    0x069: "CKR_KEY_NOT_WRAPPABLE",
    0x06A: "CKR_KEY_UNEXTRACTABLE",
    0x070: "CKR_MECHANISM_INVALID",
    0x071: "CKR_MECHANISM_PARAM_INVALID",
    0x082: "CKR_OBJECT_HANDLE_INVALID",
    0x090: "CKR_OPERATION_ACTIVE",
    0x091: "CKR_OPERATION_NOT_INITIALIZED",
    0x0A0: "CKR_PIN_INCORRECT",
    0x0A1: "CKR_PIN_INVALID",
    0x0A2: "CKR_PIN_LEN_RANGE",
    0x0A3: "CKR_PIN_EXPIRED",
    0x0A4: "CKR_PIN_LOCKED",
    0x0B0: "CKR_SESSION_CLOSED",
    0x0B1: "CKR_SESSION_COUNT",
    0x0B3: "CKR_SESSION_HANDLE_INVALID",
    0x0B4: "CKR_SESSION_PARALLEL_NOT_SUPPORTED",
    0x0B5: "CKR_SESSION_READ_ONLY",
    0x0B6: "CKR_SESSION_EXISTS",
    0x0B7: "CKR_SESSION_READ_ONLY_EXISTS",
    0x0B8: "CKR_SESSION_READ_WRITE_SO_EXISTS",
    0x0C0: "CKR_SIGNATURE_INVALID",
    0x0C1: "CKR_SIGNATURE_LEN_RANGE",
    0x0D0: "CKR_TEMPLATE_INCOMPLETE",
    0x0D1: "CKR_TEMPLATE_INCONSISTENT",
    0x0E0: "CKR_TOKEN_NOT_PRESENT",
    0x0E1: "CKR_TOKEN_NOT_RECOGNIZED",
    0x0E2: "CKR_TOKEN_WRITE_PROTECTED",
    0x0F0: "CKR_UNWRAPPING_KEY_HANDLE_INVALID",
    0x0F1: "CKR_UNWRAPPING_KEY_SIZE_RANGE",
    0x0F2: "CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT",
    0x100: "CKR_USER_ALREADY_LOGGED_IN",
    0x101: "CKR_USER_NOT_LOGGED_IN",
    0x102: "CKR_USER_PIN_NOT_INITIALIZED",
    0x103: "CKR_USER_TYPE_INVALID",
    0x104: "CKR_USER_ANOTHER_ALREADY_LOGGED_IN",
    0x105: "CKR_USER_TOO_MANY_TYPES",
    0x110: "CKR_WRAPPED_KEY_INVALID",
    0x112: "CKR_WRAPPED_KEY_LEN_RANGE",
    0x113: "CKR_WRAPPING_KEY_HANDLE_INVALID",
    0x114: "CKR_WRAPPING_KEY_SIZE_RANGE",
    0x115: "CKR_WRAPPING_KEY_TYPE_INCONSISTENT",
    0x120: "CKR_RANDOM_SEED_NOT_SUPPORTED",
    0x121: "CKR_RANDOM_NO_RNG",
    0x130: "CKR_DOMAIN_PARAMS_INVALID",
    0x140: "CKR_CURVE_NOT_SUPPORTED",
    0x150: "CKR_BUFFER_TOO_SMALL",
    0x160: "CKR_SAVED_STATE_INVALID",
    0x170: "CKR_INFORMATION_SENSITIVE",
    0x180: "CKR_STATE_UNSAVEABLE",
    0x190: "CKR_CRYPTOKI_NOT_INITIALIZED",
    0x191: "CKR_CRYPTOKI_ALREADY_INITIALIZED",
    0x1A0: "CKR_MUTEX_BAD",
    0x1A1: "CKR_MUTEX_NOT_LOCKED",
    0x1B0: "CKR_NEW_PIN_MODE",
    0x1B1: "CKR_NEXT_OTP",
    0x1B5: "CKR_EXCEEDED_MAX_ITERATIONS",
    0x1B6: "CKR_FIPS_SELF_TEST_FAILED",
    0x1B7: "CKR_LIBRARY_LOAD_FAILED",
    0x1B8: "CKR_PIN_TOO_WEAK",
    0x1B9: "CKR_PUBLIC_KEY_INVALID",
    0x200: "CKR_FUNCTION_REJECTED",
    0x201: "CKR_TOKEN_RESOURCE_EXCEEDED",
    0x202: "CKR_OPERATION_CANCEL_FAILED",
}
CKR_BY_NAME: Final[dict[str, int]] = {v: k for k, v in CKR_NAMES.items()}
CKR_VENDOR_DEFINED: Final = 0x80000000


def ckr_name(code: int) -> str:
    """``CKR_PIN_INCORRECT`` for 0xA0; ``CKR_VENDOR_DEFINED+0x12`` or ``0x...`` for unknown codes."""
    name = CKR_NAMES.get(code)
    if name is not None:
        return name
    if code >= CKR_VENDOR_DEFINED:
        return f"CKR_VENDOR_DEFINED+{code - CKR_VENDOR_DEFINED:#x}"
    return f"{code:#x} (unknown return value)"


# Slot flags (CK_SLOT_INFO.flags)
CKF_TOKEN_PRESENT: Final = 0x1
CKF_REMOVABLE_DEVICE: Final = 0x2
CKF_HW_SLOT: Final = 0x4

SLOT_FLAG_WORDS: Final[tuple[tuple[int, str], ...]] = (
    (CKF_TOKEN_PRESENT, "token present"),
    (CKF_REMOVABLE_DEVICE, "removable device"),
    (CKF_HW_SLOT, "hardware slot"),
)

# Token flags (CK_TOKEN_INFO.flags)
CKF_RNG: Final = 0x1
CKF_WRITE_PROTECTED: Final = 0x2
CKF_LOGIN_REQUIRED: Final = 0x4
CKF_USER_PIN_INITIALIZED: Final = 0x8
CKF_RESTORE_KEY_NOT_NEEDED: Final = 0x20
CKF_CLOCK_ON_TOKEN: Final = 0x40
CKF_PROTECTED_AUTHENTICATION_PATH: Final = 0x100
CKF_DUAL_CRYPTO_OPERATIONS: Final = 0x200
CKF_TOKEN_INITIALIZED: Final = 0x400
CKF_SECONDARY_AUTHENTICATION: Final = 0x800
CKF_USER_PIN_COUNT_LOW: Final = 0x10000
CKF_USER_PIN_FINAL_TRY: Final = 0x20000
CKF_USER_PIN_LOCKED: Final = 0x40000
CKF_USER_PIN_TO_BE_CHANGED: Final = 0x80000
CKF_SO_PIN_COUNT_LOW: Final = 0x100000
CKF_SO_PIN_FINAL_TRY: Final = 0x200000
CKF_SO_PIN_LOCKED: Final = 0x400000
CKF_SO_PIN_TO_BE_CHANGED: Final = 0x800000
CKF_ERROR_STATE: Final = 0x1000000

# The first six in the order pkcs11-tool -L prints them; the rest it shows as "other flags=0x..".
TOKEN_FLAG_WORDS: Final[tuple[tuple[int, str], ...]] = (
    (CKF_LOGIN_REQUIRED, "login required"),
    (CKF_PROTECTED_AUTHENTICATION_PATH, "PIN pad present"),
    (CKF_RNG, "rng"),
    (CKF_WRITE_PROTECTED, "readonly"),
    (CKF_TOKEN_INITIALIZED, "token initialized"),
    (CKF_USER_PIN_INITIALIZED, "PIN initialized"),
    (CKF_RESTORE_KEY_NOT_NEEDED, "restore key not needed"),
    (CKF_CLOCK_ON_TOKEN, "clock on token"),
    (CKF_DUAL_CRYPTO_OPERATIONS, "dual crypto operations"),
    (CKF_SECONDARY_AUTHENTICATION, "secondary authentication"),
    (CKF_USER_PIN_COUNT_LOW, "user PIN count low"),
    (CKF_USER_PIN_FINAL_TRY, "user PIN final try"),
    (CKF_USER_PIN_LOCKED, "user PIN locked"),
    (CKF_USER_PIN_TO_BE_CHANGED, "user PIN to be changed"),
    (CKF_SO_PIN_COUNT_LOW, "SO PIN count low"),
    (CKF_SO_PIN_FINAL_TRY, "SO PIN final try"),
    (CKF_SO_PIN_LOCKED, "SO PIN locked"),
    (CKF_SO_PIN_TO_BE_CHANGED, "SO PIN to be changed"),
    (CKF_ERROR_STATE, "error state"),
)

# Mechanism flags (CK_MECHANISM_INFO.flags)
MECHANISM_FLAG_WORDS: Final[tuple[tuple[int, str], ...]] = (
    (0x1, "hw"),
    (0x100, "encrypt"),
    (0x200, "decrypt"),
    (0x400, "digest"),
    (0x800, "sign"),
    (0x1000, "sign_recover"),
    (0x2000, "verify"),
    (0x4000, "verify_recover"),
    (0x8000, "generate"),
    (0x10000, "generate_key_pair"),
    (0x20000, "wrap"),
    (0x40000, "unwrap"),
    (0x80000, "derive"),
    (0x100000, "EC F_p"),
    (0x200000, "EC F_2m"),
    (0x400000, "EC parameters"),
    (0x800000, "EC OID"),
    (0x1000000, "EC uncompress"),
    (0x2000000, "EC compress"),
    (0x4000000, "EC curve name"),
)


def flag_words(flags: int, table: tuple[tuple[int, str], ...]) -> tuple[str, ...]:
    """The words for every bit set in ``flags``; bits the table lacks come as ``0x..``."""
    words = [word for bit, word in table if flags & bit]
    known = 0
    for bit, _ in table:
        known |= bit
    rest = flags & ~known
    if rest:
        words.append(f"other flags={rest:#x}")
    return tuple(words)


# Object classes (CKA_CLASS) with the names cert-desk uses in JSON and the URI "type=" values.
CKO_DATA: Final = 0
CKO_CERTIFICATE: Final = 1
CKO_PUBLIC_KEY: Final = 2
CKO_PRIVATE_KEY: Final = 3
CKO_SECRET_KEY: Final = 4
CKO_HW_FEATURE: Final = 5
CKO_DOMAIN_PARAMETERS: Final = 6
CKO_MECHANISM: Final = 7
CKO_OTP_KEY: Final = 8
CKO_PROFILE: Final = 9

OBJECT_CLASS_NAMES: Final[dict[int, str]] = {
    CKO_DATA: "data",
    CKO_CERTIFICATE: "certificate",
    CKO_PUBLIC_KEY: "public_key",
    CKO_PRIVATE_KEY: "private_key",
    CKO_SECRET_KEY: "secret_key",
    CKO_HW_FEATURE: "hw_feature",
    CKO_DOMAIN_PARAMETERS: "domain_parameters",
    CKO_MECHANISM: "mechanism",
    CKO_OTP_KEY: "otp_key",
    CKO_PROFILE: "profile",
}
OBJECT_CLASS_WORDS: Final[dict[int, str]] = {
    CKO_DATA: "Data object",
    CKO_CERTIFICATE: "Certificate",
    CKO_PUBLIC_KEY: "Public key",
    CKO_PRIVATE_KEY: "Private key",
    CKO_SECRET_KEY: "Secret key",
    CKO_HW_FEATURE: "Hardware feature",
    CKO_DOMAIN_PARAMETERS: "Domain parameters",
    CKO_MECHANISM: "Mechanism",
    CKO_OTP_KEY: "OTP key",
    CKO_PROFILE: "Profile",
}
# RFC 7512 section 2.3 "type" values
URI_TYPES: Final[dict[int, str]] = {
    CKO_DATA: "data",
    CKO_CERTIFICATE: "cert",
    CKO_PUBLIC_KEY: "public",
    CKO_PRIVATE_KEY: "private",
    CKO_SECRET_KEY: "secret-key",
}

CKK_RSA: Final = 0x0
CKK_DSA: Final = 0x1
CKK_DH: Final = 0x2
CKK_EC: Final = 0x3
CKK_GENERIC_SECRET: Final = 0x10
CKK_AES: Final = 0x1F
CKK_EC_EDWARDS: Final = 0x40
CKK_EC_MONTGOMERY: Final = 0x41

KEY_TYPE_NAMES: Final[dict[int, str]] = {
    CKK_RSA: "RSA",
    CKK_DSA: "DSA",
    CKK_DH: "DH",
    CKK_EC: "EC",
    0x4: "X9_42_DH",
    0x5: "KEA",
    CKK_GENERIC_SECRET: "GENERIC_SECRET",
    0x11: "RC2",
    0x12: "RC4",
    0x13: "DES",
    0x14: "DES2",
    0x15: "DES3",
    0x16: "CAST",
    0x17: "CAST3",
    0x18: "CAST128",
    0x19: "RC5",
    0x1A: "IDEA",
    0x1B: "SKIPJACK",
    0x1C: "BATON",
    0x1D: "JUNIPER",
    0x1E: "CDMF",
    CKK_AES: "AES",
    0x20: "BLOWFISH",
    0x21: "TWOFISH",
    0x22: "SECURID",
    0x23: "HOTP",
    0x24: "ACTI",
    0x25: "CAMELLIA",
    0x26: "ARIA",
    0x27: "MD5_HMAC",
    0x28: "SHA_1_HMAC",
    0x29: "RIPEMD128_HMAC",
    0x2A: "RIPEMD160_HMAC",
    0x2B: "SHA256_HMAC",
    0x2C: "SHA384_HMAC",
    0x2D: "SHA512_HMAC",
    0x2E: "SHA224_HMAC",
    0x2F: "SEED",
    0x30: "GOSTR3410",
    0x31: "GOSTR3411",
    0x32: "GOST28147",
    0x33: "CHACHA20",
    0x34: "POLY1305",
    0x35: "AES_XTS",
    CKK_EC_EDWARDS: "EC_EDWARDS",
    CKK_EC_MONTGOMERY: "EC_MONTGOMERY",
    0x42: "HKDF",
}


def key_type_name(code: int) -> str:
    """``RSA`` for 0; ``vendor 0x80000001`` for vendor types."""
    name = KEY_TYPE_NAMES.get(code)
    if name is not None:
        return name
    if code >= 0x80000000:
        return f"vendor {code:#x}"
    return f"{code:#x}"


CERTIFICATE_TYPE_NAMES: Final[dict[int, str]] = {0: "X.509", 1: "X.509 attribute", 2: "WTLS"}

CKU_SO: Final = 0
CKU_USER: Final = 1
CKU_CONTEXT_SPECIFIC: Final = 2


def mechanism_name(code: int) -> str:
    """``CKM_RSA_PKCS`` for 1, from python-pkcs11's table; ``CKM_0x...`` for unknown codes."""
    from pkcs11.mechanisms import Mechanism

    try:
        # python-pkcs11 spells the mechanisms PKCS#11 3.0 deprecated with a leading underscore
        # (``_MD5``); the standard's name, as pkcs11-tool -M prints it, has none
        return "CKM_" + str(Mechanism(code).name).lstrip("_")
    except ValueError:
        if code >= 0x80000000:
            return f"CKM_VENDOR_DEFINED+{code - 0x80000000:#x}"
        return f"CKM_{code:#x}"
