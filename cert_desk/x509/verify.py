"""Why a certificate is refused: chain verification and lints, in plain words.

Users get a certificate back from a CA, put it on their token, and Chrome says
NET::ERR_CERT_INVALID or the TLS server answers certificate_unknown. This module says why.
The judge is ``openssl verify -x509_strict -CAfile ca.pem [-untrusted inter.pem] leaf.pem``
(with ``-purpose sslclient|sslserver`` for the purpose, and ``-auth_level 2`` for what a
TLS server at OpenSSL's default security level refuses): where cert-desk and it disagree,
cert-desk is wrong, and the tests compare the two on every case.

Two halves:

- **Lints** on the certificate itself, each its own :class:`Finding`, so that every problem is
  reported at once (a verifier stops at the first one).
- **The chain**, checked by cryptography's verifier (``cryptography.x509.verification``). Its
  web PKI policies are adjusted towards ``openssl verify -x509_strict``:

  * for the leaf, the checks that are lints here (key usage, extended key usage, authority key
    identifier) are left to the lints, so one problem is not reported twice and the chain is still
    checked behind it; a leaf without subjectAltName is accepted (OpenSSL does; the lint says what
    Chrome does with such a server certificate), and so is a CA certificate used as the leaf
    (``openssl req -x509`` makes self-signed certificates CA:TRUE; OpenSSL accepts them);
  * for the CAs, what ``-x509_strict`` adds is required as well: a subject key identifier on every
    CA certificate (OpenSSL error 86), an authority key identifier on every CA certificate but the
    self-issued root (error 85), and an extended key usage, when present, that includes the
    purpose (error 26).

  cryptography's client verifier is used for both purposes: its server verifier needs the host
  name to connect to, and cert-desk checks a certificate, not a connection. The purpose is
  applied by the lints (leaf) and by the CA policy above (CAs).

Known differences that remain (cryptography's verifier is stricter than OpenSSL, and cannot be
told otherwise): a version 1 certificate anywhere in the chain, a CA key other than RSA or EC
P-256/384/521 (brainpool, which a Nitrokey HSM offers) and a signature algorithm outside RSA
PKCS#1 v1.5 / PSS and ECDSA with SHA-256/384/512 are refused by the chain check and accepted by
``openssl verify``. A leaf that is expired or not yet valid stops a verifier at once, so its
chain is not checked (an info finding says so).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from cert_desk.errors import InputError
from cert_desk.models import CertificateInfo
from cert_desk.x509.certinfo import certificate_info

ERROR = "error"
WARNING = "warning"
INFO = "info"

PURPOSES = ("auto", "client", "server")
MIN_RSA_BITS = 2048

_EKU_FOR = {"client": ExtendedKeyUsageOID.CLIENT_AUTH, "server": ExtendedKeyUsageOID.SERVER_AUTH}
_EKU_WORD = {"client": "clientAuth", "server": "serverAuth"}
_OPENSSL_PURPOSE = {"client": "sslclient", "server": "sslserver"}
# Signature algorithms cryptography cannot even name the hash of (it raises UnsupportedAlgorithm)
_UNNAMED_WEAK_SIGNATURES = {"1.2.840.113549.1.1.2": "MD2", "1.2.840.113549.1.1.3": "MD4"}
_EXTENSION_NAMES = {
    ExtensionOID.BASIC_CONSTRAINTS.dotted_string: "basicConstraints",
    ExtensionOID.KEY_USAGE.dotted_string: "keyUsage",
    ExtensionOID.EXTENDED_KEY_USAGE.dotted_string: "extendedKeyUsage",
    ExtensionOID.SUBJECT_KEY_IDENTIFIER.dotted_string: "subjectKeyIdentifier",
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER.dotted_string: "authorityKeyIdentifier",
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME.dotted_string: "subjectAltName",
    ExtensionOID.NAME_CONSTRAINTS.dotted_string: "nameConstraints",
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS.dotted_string: "authorityInfoAccess",
}


@dataclass(frozen=True)
class Finding:
    """One problem (or remark) about a certificate.

    Attributes:
        severity: ``"error"`` (it will be refused), ``"warning"`` (some software refuses it) or
            ``"info"``.
        code: A stable id (``ee-key-cert-sign``, ``expired``, ``chain``, ...).
        message: What is wrong and who refuses it, in plain words.
        hint: What to do.
    """

    severity: str
    code: str
    message: str
    hint: str


@dataclass(frozen=True)
class VerifyReport:
    """The verdict on one certificate.

    Attributes:
        subject: The certificate's subject (RFC 4514).
        purpose: ``"client"`` or ``"server"``: what it was checked for.
        chain_checked: False when no CA was given (only the lints ran).
        chain: Subjects from the leaf to the root, when the chain verified (empty otherwise; for
            a leaf that is expired or not yet valid the chain is not checked).
        findings: Every problem found, errors first in the order they were checked.
    """

    subject: str
    purpose: str
    chain_checked: bool
    chain: tuple[str, ...]
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        """True when nothing would make the certificate be refused (warnings and infos allowed)."""
        return not any(f.severity == ERROR for f in self.findings)


def verify_certificate(
    cert: x509.Certificate,
    cas: Sequence[x509.Certificate] = (),
    intermediates: Sequence[x509.Certificate] = (),
    *,
    purpose: str = "auto",
    now: datetime | None = None,
    token_spki: bytes | None = None,
    check_token_key: bool = False,
) -> VerifyReport:
    """Check ``cert`` for ``purpose`` and, when ``cas`` are given, its chain to one of them.

    Args:
        cert: The certificate to judge (the leaf).
        cas: The trusted CA certificates (``-CAfile``); none: only the lints run.
        intermediates: Untrusted certificates that may complete the chain (``-untrusted``);
            used only with ``cas``.
        purpose: ``"client"``, ``"server"``, or ``"auto"``: server when the extended key usage
            has serverAuth and not clientAuth, client otherwise.
        now: The time to judge at (a naive datetime is taken as UTC); default: now.
        token_spki: The SubjectPublicKeyInfo DER of the token key the certificate should belong
            to, or ``None`` when no key on the token matched.
        check_token_key: Compare the certificate's public key with ``token_spki``.

    Raises:
        InputError: ``purpose`` is unknown, or a certificate is malformed.
    """
    if purpose not in PURPOSES:
        raise InputError(f"Unknown certificate purpose '{purpose}'.", "Use one of: " + ", ".join(PURPOSES) + ".")
    at = datetime.now(UTC) if now is None else now if now.tzinfo else now.replace(tzinfo=UTC)
    try:
        info = certificate_info(cert)  # InputError for a malformed key or extension
    except x509.DuplicateExtension as e:  # not a ValueError, and certificate_info lets it through
        raise InputError(f"The certificate is malformed: {e}.", "Have it issued again.") from e
    for given in (*cas, *intermediates):
        _readable(given)
    if purpose == "auto":
        eku = info.extended_key_usage
        purpose = "server" if "serverAuth" in eku and "clientAuth" not in eku else "client"
    findings = _lints(cert, info, purpose, at)
    if check_token_key:
        findings += _token_key_findings(info, token_spki)
    chain: tuple[str, ...] = ()
    if cas:
        chain, chain_findings = _check_chain(cert, info, cas, intermediates, purpose=purpose, at=at)
        findings += chain_findings
    order = {ERROR: 0, WARNING: 1, INFO: 2}
    findings.sort(key=lambda f: order[f.severity])
    return VerifyReport(info.subject, purpose, bool(cas), chain, tuple(findings))


# ----------------------------------------------------------------------- lints


def _lints(cert: x509.Certificate, info: CertificateInfo, purpose: str, at: datetime) -> list[Finding]:
    """The certificate's own problems, all of them, in a fixed order."""
    found: list[Finding] = []
    exts = {ext.oid.dotted_string: ext.value for ext in cert.extensions}
    ku = exts.get(ExtensionOID.KEY_USAGE.dotted_string)
    eku = exts.get(ExtensionOID.EXTENDED_KEY_USAGE.dotted_string)
    is_ca = bool(info.is_ca)
    if isinstance(ku, x509.KeyUsage) and not is_ca:
        if ku.key_cert_sign:
            found.append(Finding(
                ERROR, "ee-key-cert-sign",
                "The certificate is not a CA but its key usage allows signing certificates (keyCertSign). "
                "Chrome rejects it with NET::ERR_CERT_INVALID and TLS servers answer certificate_unknown "
                "(openssl verify -x509_strict: error 82).",
                "Have it issued again without keyCertSign; cert-desk's local CA never sets it."))
        if ku.crl_sign:
            found.append(Finding(
                WARNING, "ee-crl-sign",
                "The certificate is not a CA but its key usage allows signing CRLs (cRLSign). OpenSSL and "
                "Chrome accept it, but only a CA or a CRL issuer needs it.",
                "Ask the CA to leave cRLSign out of end-entity certificates."))
    if at > info.not_after:
        found.append(Finding(
            ERROR, "expired",
            f"The certificate expired on {_when(info.not_after)}. Browsers and TLS servers refuse it "
            "(NET::ERR_CERT_DATE_INVALID, certificate_expired).",
            "Ask the CA for a new certificate; the key on the token can stay (sign the new request with it)."))
    elif at < info.not_before:
        found.append(Finding(
            ERROR, "not-yet-valid",
            f"The certificate is valid only from {_when(info.not_before)} on; it is refused until then.",
            "If that moment has passed, this computer's clock is wrong; otherwise wait, or ask the CA why "
            "it is dated in the future."))
    weak = _weak_hash(cert)
    if weak:
        found.append(Finding(
            ERROR, "weak-signature-hash",
            f"The CA signed the certificate with {weak}, which is broken. Chrome refuses such certificates "
            "(NET::ERR_CERT_WEAK_SIGNATURE_ALGORITHM) and TLS servers at OpenSSL's default security level "
            "refuse them (openssl verify -auth_level 1: error 68).",
            "Have it issued again with SHA-256."))
    if info.public_key_type == "RSA" and info.public_key_bits is not None and info.public_key_bits < MIN_RSA_BITS:
        found.append(Finding(
            ERROR, "rsa-too-small",
            f"The RSA key has {info.public_key_bits} bits; at least {MIN_RSA_BITS} are needed. Chrome refuses "
            "it (NET::ERR_CERT_WEAK_KEY) and TLS servers at OpenSSL's default security level 2 refuse it "
            "(openssl verify -auth_level 2: error 66).",
            f"Generate a new key on the token (RSA {MIN_RSA_BITS} or more, or EC P-256) and have a "
            "certificate issued for it."))
    found += _purpose_lints(info, purpose, ku, eku)
    found += _structure_lints(cert, info, exts)
    return found


def _purpose_lints(info: CertificateInfo, purpose: str, ku: x509.ExtensionType | None,
                   eku: x509.ExtensionType | None) -> list[Finding]:
    """Extended key usage and key usage for TLS client or server authentication."""
    found: list[Finding] = []
    wanted, ossl = _EKU_WORD[purpose], _OPENSSL_PURPOSE[purpose]
    if eku is None:
        found.append(Finding(
            INFO, "no-eku",
            "The certificate has no extended key usage, so it may be used for any purpose. Most TLS servers "
            "and browsers accept that.",
            f"Nothing to do unless a server refuses it; then ask for a certificate with {wanted}."))
    elif isinstance(eku, x509.ExtendedKeyUsage) and _EKU_FOR[purpose] not in eku:
        listed = ", ".join(info.extended_key_usage) or "nothing"
        who = ("TLS servers refuse it as a client certificate (certificate_unknown)" if purpose == "client"
               else "browsers and TLS clients refuse it for a server")
        found.append(Finding(
            ERROR, f"no-{purpose}-auth-eku",
            f"The certificate's extended key usage ({listed}) does not include TLS {purpose} authentication "
            f"({wanted}): {who} (openssl verify -purpose {ossl}: error 26).",
            f"Have it issued again with extendedKeyUsage {wanted}"
            + (" (cert-desk's 'client' profile)." if purpose == "client" else ".")))
    if isinstance(ku, x509.KeyUsage) and not ku.digital_signature:
        listed = ", ".join(info.key_usage) or "nothing"
        if purpose == "client":
            found.append(Finding(
                ERROR, "key-usage-no-digital-signature",
                f"The certificate's key usage ({listed}) does not allow digital signatures (digitalSignature). "
                "TLS client authentication signs with the key, so TLS servers refuse it (certificate_unknown).",
                "Have it issued again with keyUsage digitalSignature."))
        else:
            other = ku.key_encipherment or ku.key_agreement
            found.append(Finding(
                WARNING if other else ERROR, "key-usage-no-digital-signature",
                f"The certificate's key usage ({listed}) does not allow digital signatures (digitalSignature): "
                + ("TLS 1.3 and every ECDHE key exchange need it, so current browsers refuse it."
                   if other else f"no TLS key exchange can use it (openssl verify -purpose {ossl}: error 26)."),
                "Have it issued again with keyUsage digitalSignature."))
    if purpose == "server" and not any(s.startswith(("DNS:", "IP:")) for s in info.subject_alt_names):
        found.append(Finding(
            WARNING, "server-no-san",
            "The certificate has no subjectAltName with a DNS name or IP address. Chrome refuses such server "
            "certificates (NET::ERR_CERT_COMMON_NAME_INVALID); openssl verify accepts it.",
            "Have it issued again with the server's host names as DNS subjectAltNames."))
    return found


def _structure_lints(cert: x509.Certificate, info: CertificateInfo,
                     exts: dict[str, x509.ExtensionType]) -> list[Finding]:
    """What ``-x509_strict`` requires of the certificate's form: version 3, an authority key id."""
    found: list[Finding] = []
    if cert.version != x509.Version.v3:
        found.append(Finding(
            ERROR if exts else WARNING, "not-v3",
            f"The certificate is X.509 version {info.version}. "
            + ("Extensions need version 3, so openssl verify -x509_strict refuses it (error 93)." if exts else
               "cryptography's verifier and the web PKI require version 3; openssl verify accepts it."),
            "Have it issued again; every current CA issues version 3 certificates."))
    elif ExtensionOID.AUTHORITY_KEY_IDENTIFIER.dotted_string not in exts and not info.self_signed:
        found.append(Finding(
            ERROR, "missing-aki",
            "The certificate has no authority key identifier. openssl verify -x509_strict refuses it "
            "(error 85) and so does cryptography's verifier; Chrome and most TLS servers accept it.",
            "Ask the CA to include authorityKeyIdentifier (cert-desk's local CA does)."))
    return found


def _token_key_findings(info: CertificateInfo, token_spki: bytes | None) -> list[Finding]:
    """An error when the token holds no key for the certificate, or another key."""
    if token_spki is None:
        return [Finding(
            ERROR, "no-token-key",
            "No key on the token matches this certificate's public key, so the certificate cannot be used "
            "from the token.",
            "Import the certificate onto the token that holds its key, or make a new request with a key on "
            "this token.")]
    if _canonical_spki(token_spki) != _canonical_spki(info.spki):
        return [Finding(
            ERROR, "key-mismatch",
            "The certificate's public key is not the public key of the token key it is meant for.",
            "The CA issued it for another key (an older request?). Make a new request with the token's key.")]
    return []


def _canonical_spki(spki: bytes) -> bytes:
    """Re-encode a SubjectPublicKeyInfo (a compressed EC point and an uncompressed one are one key)."""
    try:
        key = serialization.load_der_public_key(spki)
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return spki


def _weak_hash(cert: x509.Certificate) -> str | None:
    """``"SHA-1"`` / ``"MD5"`` / ... when the certificate's signature uses a broken hash."""
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return _UNNAMED_WEAK_SIGNATURES.get(cert.signature_algorithm_oid.dotted_string)
    if isinstance(algorithm, hashes.SHA1):
        return "SHA-1"
    if isinstance(algorithm, hashes.MD5):
        return "MD5"
    return None


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


# ----------------------------------------------------------------------- chain

def _ca_eku_rule(purpose: str) -> Callable[[Policy, x509.Certificate, x509.ExtendedKeyUsage | None], None]:
    """OpenSSL checks the purpose on every CA of the chain; anyExtendedKeyUsage does not count."""
    oid = _EKU_FOR[purpose]

    def check(_policy: Policy, cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None) -> None:
        if eku is not None and oid not in eku:
            raise ValueError(
                f"The CA certificate '{cert.subject.rfc4514_string()}' limits its extended key usage to "
                f"purposes without {_EKU_WORD[purpose]}, so nothing it issues is valid for TLS {purpose} "
                f"authentication (openssl verify -purpose {_OPENSSL_PURPOSE[purpose]}: error 26).")

    return check


def _ca_ski_rule(_policy: Policy, cert: x509.Certificate, ski: x509.SubjectKeyIdentifier | None) -> None:
    if ski is None:
        raise ValueError(
            f"The CA certificate '{cert.subject.rfc4514_string()}' has no subject key identifier; "
            "openssl verify -x509_strict refuses it (error 86).")


def _ca_aki_rule(_policy: Policy, cert: x509.Certificate, aki: x509.AuthorityKeyIdentifier | None) -> None:
    if aki is None and cert.issuer != cert.subject:
        raise ValueError(
            f"The intermediate CA certificate '{cert.subject.rfc4514_string()}' has no authority key "
            "identifier; openssl verify -x509_strict refuses it (error 85).")


def _policies(purpose: str) -> tuple[ExtensionPolicy, ExtensionPolicy]:
    """(CA policy, leaf policy): cryptography's web PKI defaults moved towards ``-x509_strict``."""
    agnostic, non_critical = Criticality.AGNOSTIC, Criticality.NON_CRITICAL
    ca = (ExtensionPolicy.webpki_defaults_ca()
          .may_be_present(x509.ExtendedKeyUsage, agnostic, _ca_eku_rule(purpose))
          .may_be_present(x509.SubjectKeyIdentifier, non_critical, _ca_ski_rule)
          .may_be_present(x509.AuthorityKeyIdentifier, non_critical, _ca_aki_rule))
    leaf = (ExtensionPolicy.webpki_defaults_ee()
            .may_be_present(x509.SubjectAlternativeName, agnostic, None)
            .may_be_present(x509.KeyUsage, agnostic, None)
            .may_be_present(x509.ExtendedKeyUsage, agnostic, None)
            .may_be_present(x509.AuthorityKeyIdentifier, non_critical, None)
            .may_be_present(x509.BasicConstraints, agnostic, None))
    return ca, leaf


def _check_chain(
    cert: x509.Certificate,
    info: CertificateInfo,
    cas: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
    *,
    purpose: str,
    at: datetime,
) -> tuple[tuple[str, ...], list[Finding]]:
    if not info.not_before <= at <= info.not_after:
        # A verifier stops at the leaf's own validity, which a lint already reports.
        return (), [Finding(
            INFO, "chain-not-checked",
            "The chain to the given CA was not checked: the certificate itself is not valid at this time.",
            "Check the renewed certificate when you have it.")]
    ca_policy, leaf_policy = _policies(purpose)
    verifier = (PolicyBuilder().store(Store(list(cas))).time(at)
                .extension_policies(ca_policy=ca_policy, ee_policy=leaf_policy).build_client_verifier())
    try:
        built = verifier.verify(cert, list(intermediates)).chain
    except VerificationError as e:
        return (), [_chain_finding(str(e), cert, [*cas, *intermediates], at)]
    except ValueError as e:  # a CA or intermediate certificate cryptography cannot read
        raise InputError(f"A CA or intermediate certificate is malformed: {e}",
                         "Check the CA files; each must hold PEM or DER certificates.") from e
    names = tuple(c.subject.rfc4514_string() for c in built)
    anchor = built[-1]
    if anchor.subject != anchor.issuer:
        # cryptography trusts every certificate in the store; openssl verify (without -partial_chain)
        # and TLS servers want the chain to end at a self-signed root
        return names, [Finding(
            ERROR, "chain",
            f"The chain ends at '{anchor.subject.rfc4514_string()}', an intermediate CA, not at a root: openssl "
            "verify -x509_strict says 'unable to get issuer certificate' (error 2), and servers that trust the "
            "root need the intermediate sent with the certificate.",
            "Give the root CA certificate with --ca, and the intermediate with --untrusted.")]
    return names, []


def _readable(cert: x509.Certificate) -> None:
    """cryptography parses names lazily: refuse a CA certificate whose names are malformed up front."""
    try:
        cert.subject.rfc4514_string()
        cert.issuer.rfc4514_string()
    except ValueError as e:
        raise InputError(f"A CA or intermediate certificate has a malformed name: {e}",
                         "Check the CA files; get the CA certificates from the CA again.") from e


def _not_valid_at(certs: Sequence[x509.Certificate], at: datetime) -> str:
    """Which of ``certs`` are expired or not yet valid at ``at``, in words ('' when none)."""
    words = []
    for c in certs:
        start, end = c.not_valid_before_utc, c.not_valid_after_utc
        if at > end:
            words.append(f"the CA certificate '{c.subject.rfc4514_string()}' expired on {_when(end)}")
        elif at < start:
            words.append(f"the CA certificate '{c.subject.rfc4514_string()}' is valid only from {_when(start)}")
    text = "; ".join(words)
    return text[:1].upper() + text[1:]


_HINT_ISSUER = ("Give the certificate of the CA that issued it (the issuer named above); if that CA works "
                "through an intermediate certificate, give the intermediate too.")
# cryptography's error text -> plain words, hint. The first match wins; more specific first.
_CHAIN_WORDS: tuple[tuple[str, str, str], ...] = (
    ("signature does not match",
     "A CA with the issuer's name was found, but its key did not sign this certificate: it is not the CA "
     "certificate that issued it (a re-keyed CA, or another CA with the same name).",
     _HINT_ISSUER),
    ("path length constraint violated",
     "The chain has more intermediate CAs than a CA above them allows (its basicConstraints pathlen).",
     "Ask the CA for the right chain, or for a certificate from a CA that may issue it."),
    ("basicConstraints.cA must be asserted",
     "A certificate in the chain that issued another is not a CA (its basicConstraints lacks CA:TRUE).",
     "The CA or intermediate file holds the wrong certificate; get the CA certificate from the CA."),
    ("has no basicConstraints",
     "A certificate in the chain that issued another is not a CA (it has no basicConstraints).",
     "The CA or intermediate file holds the wrong certificate; get the CA certificate from the CA."),
    ("keyCertSign must be asserted",
     "A CA certificate in the chain does not allow signing certificates (its key usage lacks keyCertSign).",
     "The CA or intermediate file holds the wrong certificate; get the CA certificate from the CA."),
    ("Forbidden signature algorithm",
     "A signature in the chain uses an algorithm the verifier refuses (SHA-1, MD5, or anything but RSA and "
     "ECDSA with SHA-256/384/512).",
     "Have the certificate (or the CA certificate) issued again with SHA-256."),
    ("Forbidden public key algorithm",
     "A CA in the chain has a key type cryptography's verifier refuses: web PKI software (Chrome among it) "
     "accepts only RSA and EC P-256/384/521 CA keys; OpenSSL accepts others, such as brainpool curves.",
     "If the certificate is for software built on OpenSSL only, this may not matter; otherwise the CA "
     "needs an RSA or P-256/384/521 key."),
    ("RSA key is too weak",
     f"A CA in the chain has an RSA key smaller than {MIN_RSA_BITS} bits.",
     "The CA must be replaced by one with a stronger key; ask its operator."),
    ("must be an X509v3 certificate",
     "A certificate in the chain is not X.509 version 3; cryptography's verifier refuses it (openssl verify "
     "accepts version 1 CA certificates).",
     "Ask the CA for a version 3 certificate."),
    ("must have a serial between",
     "A certificate in the chain has a serial number that is not positive or longer than 20 bytes; "
     "cryptography's verifier refuses it (openssl verify accepts it).",
     "Ask the CA for certificates with RFC 5280 serial numbers."),
    ("exceeds max depth",
     "The chain is too long (more than 8 intermediate CAs).",
     "Give only the intermediates that lead from the certificate to the CA."),
)


def _chain_finding(error: str, cert: x509.Certificate, given: Sequence[x509.Certificate],
                   at: datetime) -> Finding:
    """cryptography's terse VerificationError, translated; its own text is kept at the end."""
    words, hint = "The chain to the given CA could not be verified.", "Check that the right CA was given."
    custom = re.search(r"validator failed: \w+: (.+?)(?: \(encountered processing .*)?$", error)
    extension = re.search(r"invalid extension: ([\d.]+): (.+?)(?: \(encountered processing .*)?$", error)
    if custom:
        words, hint = custom.group(1), "Get the CA certificates the CA publishes today, or ask it to fix them."
    elif "no interior errors" in error:
        cas = ", ".join(f"'{c.subject.rfc4514_string()}'" for c in given)
        words = (f"None of the given certificates ({cas}) issued this certificate, whose issuer is "
                 f"'{cert.issuer.rfc4514_string()}': the issuer is unknown.")
        hint = _HINT_ISSUER
    elif "not valid at validation time" in error:
        lapsed = _not_valid_at(given, at)
        words = f"{lapsed}." if lapsed else "A CA certificate in the chain is expired or not yet valid."
        hint = "Get the CA's current certificate (a renewed CA certificate) and verify against it."
    elif extension:
        name = _EXTENSION_NAMES.get(extension.group(1), extension.group(1))
        problem = extension.group(2).rstrip(".")
        whose = "A CA certificate in the chain" if "candidates exhausted" in error else "The certificate"
        words = f"{whose} has a problem with its {name} extension: {problem[:1].lower()}{problem[1:]}."
        hint = "Get the CA certificates the CA publishes today, or ask it to fix them."
    else:
        for needle, text, advice in _CHAIN_WORDS:
            if needle in error:
                words, hint = text, advice
                break
    return Finding(ERROR, "chain", f"{words} (cryptography: {error})", hint)
