"""Frozen dataclasses: the only things (besides bytes) that cross from a worker thread.

They hold plain values (str, int, bytes, bool, tuples, enums, datetimes), never a
python-pkcs11 object or handle wrapper, so the UI and the CLI can keep them as long as
they like. :func:`cert_desk.services.worker.check_crossable` enforces this for every job
result.
"""

from __future__ import annotations

import base64
import textwrap
from dataclasses import dataclass, field
from datetime import date, datetime

from cert_desk.errors import PinState

AttributeValue = bool | int | str | bytes | date | None

# ------------------------------------------------------------------ modules


@dataclass(frozen=True)
class ModuleEntry:
    """A PKCS#11 module found on this machine (not loaded yet).

    Attributes:
        path: The path shown to the user (the first one found).
        realpath: ``os.path.realpath(path)``; the identity of the module.
        name: A short name (the p11-kit module name, or the file name).
        sources: Where it was found, in words (``p11-kit /usr/share/p11-kit/modules/x.module``,
            ``well-known path``, ``added by you``, ``--module``).
        aliases: Other paths that lead to the same file.
        exists: Whether the file exists.
        note: Something the user should know (a trust store, a proxy, disabled by p11-kit ...).
    """

    path: str
    realpath: str
    name: str
    sources: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    exists: bool = True
    note: str = ""


@dataclass(frozen=True)
class LibraryInfo:
    """What ``C_GetInfo`` says about a loaded module."""

    path: str
    realpath: str
    manufacturer: str
    description: str
    library_version: str
    cryptoki_version: str


@dataclass(frozen=True)
class ModuleReport:
    """A discovered module and, when it loaded, its library info; or why it did not load."""

    entry: ModuleEntry
    library: LibraryInfo | None
    error: str | None = None


# -------------------------------------------------------------- slots/tokens


@dataclass(frozen=True)
class SlotInfo:
    """CK_SLOT_INFO."""

    slot_id: int
    description: str
    manufacturer: str
    flags: int
    flag_words: tuple[str, ...]
    hardware_version: str
    firmware_version: str
    token_present: bool
    removable: bool
    hardware_slot: bool


@dataclass(frozen=True)
class TokenInfo:
    """CK_TOKEN_INFO, decoded. A snapshot: PIN flags change after every login attempt.

    Counters the module reports as unavailable are ``None``; ``0`` for ``max_sessions``
    means "effectively infinite" as in the standard.
    """

    label: str
    manufacturer: str
    model: str
    serial: str
    flags: int
    flag_words: tuple[str, ...]
    max_sessions: int | None
    sessions: int | None
    max_rw_sessions: int | None
    rw_sessions: int | None
    min_pin_len: int | None
    max_pin_len: int | None
    total_public_memory: int | None
    free_public_memory: int | None
    total_private_memory: int | None
    free_private_memory: int | None
    hardware_version: str
    firmware_version: str
    utc_time: str | None
    user_pin: PinState
    so_pin: PinState
    initialized: bool
    login_required: bool
    protected_authentication_path: bool
    write_protected: bool


@dataclass(frozen=True)
class MechanismInfo:
    """One mechanism of a slot with ``C_GetMechanismInfo``'s key sizes and flags.

    Key sizes are in the units the token uses for that mechanism (bits for RSA and EC,
    bytes for AES and most secret keys), exactly as ``pkcs11-tool -M`` shows them.
    """

    code: int
    name: str
    min_key_size: int
    max_key_size: int
    flags: int
    flag_words: tuple[str, ...]


@dataclass(frozen=True)
class SlotReport:
    """A slot, its token (if any) and its mechanisms, as ``pkcs11-tool -L`` and ``-M`` show them."""

    module: str
    slot: SlotInfo
    token: TokenInfo | None
    mechanisms: tuple[MechanismInfo, ...] = ()
    error: str | None = None
    #: C_GetSlotInfo itself failed (OpenSC, for a reader another program holds exclusively):
    #: ``slot`` holds only the ID and the last description seen, and whether a token is in it is unknown.
    unanswered: bool = False


@dataclass(frozen=True)
class ModuleState:
    """A loaded module's library information and its slots (what the Devices pane shows)."""

    library: LibraryInfo
    slots: tuple[SlotReport, ...]


@dataclass(frozen=True)
class TokenSelector:
    """How the user named a token. All ``None`` means "the only initialised token"."""

    label: str | None = None
    serial: str | None = None
    slot_id: int | None = None

    def describe(self) -> str:
        parts = []
        if self.label is not None:
            parts.append(f"label {self.label!r}")
        if self.serial is not None:
            parts.append(f"serial {self.serial!r}")
        if self.slot_id is not None:
            parts.append(f"slot {self.slot_id}")
        return " and ".join(parts) if parts else "any token"


@dataclass(frozen=True)
class TokenRef:
    """A token found on a module: where it is and who it is.

    Jobs check ``serial`` (and ``label``) against the slot before they act, so a token
    swapped in the same reader is never mistaken for the one the user chose.
    """

    module: str
    slot_id: int
    serial: str
    label: str

    def describe(self) -> str:
        return f"token {self.label!r} (serial {self.serial}, slot {self.slot_id})"


@dataclass(frozen=True)
class LoginResult:
    """The token after a login (or logout): its fresh info and who is logged in.

    Attributes:
        notice: Something to tell the user that is not an error (the PIN could not be
            remembered because the keyring is locked, ...).
        pin_source: Where the PIN came from ("the keyring" for a remembered PIN), or "".
    """

    token: TokenInfo
    logged_in_as: str | None
    notice: str = ""
    pin_source: str = ""


@dataclass(frozen=True)
class AdminResult:
    """A token after a PIN was set or changed.

    Attributes:
        token: Its fresh info (the PIN states).
        notice: What else happened, in words (a remembered PIN, now wrong, was deleted).
    """

    token: TokenInfo
    notice: str = ""


@dataclass(frozen=True)
class LoginPreparation:
    """What the GUI needs before it asks for a PIN, read on the token's worker in one go.

    Attributes:
        token: The token's fresh info (PIN state, limits).
        keyring_available: A protected OS keyring answers (PINs can be remembered).
        keyring_reason: Why not, when it does not.
        remembered: A PIN is remembered for this token (still, after ``result``).
        result: The login done with the remembered PIN, when one was remembered and the
            token's PIN state allowed using it; ``None`` otherwise (ask the user).
        notice: What happened to a remembered PIN, in words ("it was refused and deleted").
    """

    token: TokenInfo
    keyring_available: bool
    keyring_reason: str
    remembered: bool
    result: LoginResult | None
    notice: str = ""


# ------------------------------------------------------------------- objects


@dataclass(frozen=True)
class CertificateInfo:
    """An X.509 certificate, parsed. Names are RFC 4514 strings."""

    der: bytes = field(repr=False)
    subject: str
    issuer: str
    subject_cn: str
    issuer_cn: str
    serial: str
    not_before: datetime
    not_after: datetime
    version: int
    signature_algorithm: str
    public_key_type: str
    public_key_bits: int | None
    curve: str | None
    key_usage: tuple[str, ...]
    extended_key_usage: tuple[str, ...]
    subject_alt_names: tuple[str, ...]
    is_ca: bool | None
    path_length: int | None
    subject_key_identifier: str | None
    authority_key_identifier: str | None
    self_signed: bool
    sha256_fingerprint: str
    sha1_fingerprint: str
    spki_sha256: str
    spki: bytes = field(default=b"", repr=False)

    def pem(self) -> str:
        body = "\n".join(textwrap.wrap(base64.b64encode(self.der).decode("ascii"), 64))
        return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"

    def is_expired(self, now: datetime) -> bool:
        return now > self.not_after


@dataclass(frozen=True)
class ObjectInfo:
    """One object on a token with the attributes users need.

    Attributes:
        object_class: CKA_CLASS.
        class_name: ``private_key``, ``public_key``, ``secret_key``, ``certificate``, ``data``, ...
        handle: The object handle in the listing's session (valid until the session closes).
        usage: The capability flags that are true, in PKCS#11 words (``sign``, ``decrypt``,
            ``unwrap``, ``verify``, ``encrypt``, ``wrap``, ``derive``).
        attributes: Every attribute read, as (CKA code, value) in code order; values are
            bool, int, str, bytes or date. :mod:`cert_desk.pkcs11.attributes` names and shows them.
        public_key_sha256: SHA-256 of the SubjectPublicKeyInfo, when the object reveals its
            public key (RSA keys, EC public keys, certificates); the key for pairing.
        public_key_der: That SubjectPublicKeyInfo (DER), for "Export public key".
        uri: RFC 7512 PKCS#11 URI.
        openssl_key: libp11 engine key references (``S:ID``, ``id_ID``, ``slot_S-id_ID``,
            ``slot_S-label_L``, ``label_L``) with S the real PKCS#11 slot ID.
        problems: What is wrong with this object, in words (an unparsable certificate ...).
    """

    object_class: int
    class_name: str
    handle: int
    label: str
    id: bytes
    key_type: str | None = None
    bits: int | None = None
    curve: str | None = None
    usage: tuple[str, ...] = ()
    token_object: bool | None = None
    private: bool | None = None
    modifiable: bool | None = None
    sensitive: bool | None = None
    extractable: bool | None = None
    local: bool | None = None
    always_sensitive: bool | None = None
    never_extractable: bool | None = None
    always_authenticate: bool | None = None
    application: str | None = None
    value_length: int | None = None
    certificate: CertificateInfo | None = None
    public_key_sha256: str | None = None
    public_key_der: bytes | None = field(default=None, repr=False)
    attributes: tuple[tuple[int, AttributeValue], ...] = ()
    uri: str = ""
    openssl_key: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def id_hex(self) -> str:
        return self.id.hex()


@dataclass(frozen=True)
class KeyGroup:
    """Objects that belong together: a key pair and its certificates.

    Objects are grouped by CKA_ID; the public keys are then compared, and every
    disagreement is a warning (a certificate whose CKA_ID names one key while its public
    key is another's is the classic reason a browser offers no certificate).

    Attributes:
        id: The shared CKA_ID.
        label: The best label for the group (private key, else certificate, else public key).
        private_keys / public_keys / certificates: Handles of the members.
        key_matches: ``True`` when there are two or more members and every one's public key is
            known and equal, ``False`` when any two disagree (or a certificate belongs to a key
            with another ID), ``None`` otherwise (a lone object, or an EC private key, which does
            not reveal its public key).
        warnings: The disagreements, in words.
    """

    id: bytes
    label: str
    private_keys: tuple[int, ...]
    public_keys: tuple[int, ...]
    certificates: tuple[int, ...]
    key_matches: bool | None
    warnings: tuple[str, ...] = ()

    @property
    def id_hex(self) -> str:
        return self.id.hex()


@dataclass(frozen=True)
class ObjectListing:
    """Everything on a token that the session can see."""

    token: TokenRef
    token_info: TokenInfo
    logged_in: bool
    objects: tuple[ObjectInfo, ...]
    groups: tuple[KeyGroup, ...]
    warnings: tuple[str, ...] = ()

    def by_handle(self, handle: int) -> ObjectInfo | None:
        for obj in self.objects:
            if obj.handle == handle:
                return obj
        return None


# ------------------------------------------------------------- certificate lifecycle


@dataclass(frozen=True)
class KeyChoice:
    """A key type cert-desk offers (``rsa:2048`` ...) and whether this token can generate it.

    Attributes:
        spec: As ``--type`` takes it.
        description: In words (``RSA 2048``, ``EC prime256v1``).
        allowed: The token's mechanisms (and their key size limits) allow it.
        reason: Why not, when not allowed.
    """

    spec: str
    description: str
    allowed: bool
    reason: str = ""


@dataclass(frozen=True)
class GeneratedKey:
    """A key pair generated on the token.

    Attributes:
        id_source: How the CKA_ID was chosen, in words.
        public_key_der: The new key's SubjectPublicKeyInfo.
        seconds: How long the token worked.
        listing: The token's objects afterwards.
    """

    token: TokenRef
    spec: str
    label: str
    id: bytes
    id_source: str
    public_key_der: bytes
    seconds: float
    listing: ObjectListing


@dataclass(frozen=True)
class CsrResult:
    """A certificate signing request signed on the token."""

    token: TokenRef
    key_label: str
    key_id: bytes
    subject: str
    sans: tuple[str, ...]
    der: bytes
    pem: bytes
    mechanism: str


@dataclass(frozen=True)
class DeleteResult:
    """Objects removed from a token, and the token afterwards."""

    token: TokenRef
    deleted: tuple[ObjectInfo, ...]
    listing: ObjectListing


@dataclass(frozen=True)
class ImportResult:
    """Certificates written to a token.

    Attributes:
        written: The certificate objects written, as read back.
        already_present: Certificates that were on the token already (nothing written), in words.
        key_id / key_label: The key the certificate was paired with.
        notes: Anything else worth saying (CA certificates left out, ...).
    """

    token: TokenRef
    written: tuple[ObjectInfo, ...]
    already_present: tuple[str, ...]
    key_id: bytes
    key_label: str
    notes: tuple[str, ...]
    listing: ObjectListing


@dataclass(frozen=True)
class DoctorFinding:
    """Something wrong (or worth knowing) about how a token's keys and certificates pair up.

    Attributes:
        severity: ``error`` (a browser will not use it), ``warning`` or ``info``.
        code: Stable: ``certificate-id-mismatch``, ``certificate-without-key``,
            ``key-without-certificate``, ``duplicate-id``, ``key-without-id``.
        message: In words, naming the objects.
        fix: What the automatic fix does, in words; empty when there is none.
        certificate: The certificate's handle (for the fixes).
        new_id / new_label: What the fix gives the certificate.
    """

    severity: str
    code: str
    message: str
    fix: str = ""
    certificate: int | None = None
    new_id: bytes | None = None
    new_label: str | None = None


@dataclass(frozen=True)
class DoctorReport:
    """The pairing doctor's findings, and what it fixed (with the token afterwards)."""

    token: TokenRef
    findings: tuple[DoctorFinding, ...]
    fixed: tuple[str, ...]
    listing: ObjectListing
