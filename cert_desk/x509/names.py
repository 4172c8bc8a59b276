"""Distinguished names and subject alternative names as users type them.

A subject is typed either in OpenSSL's ``-subj`` syntax (``/C=GB/O=HW/CN=colinpaice``: ``\\``
escapes the next character, an unescaped ``+`` joins a multi-valued RDN) or as an RFC 4514
string (``CN=colinpaice,O=HW,C=GB``, most specific RDN first). Both give the same
:class:`x509.Name`, in the ``-subj`` order, encoded as ``openssl req -subj`` encodes it (C and
serialNumber PrintableString, emailAddress and DC IA5String, the rest UTF8String), so a CSR made
here and the ``openssl req`` command shown as its equivalent carry the same subject bytes.

Values are checked before anything is built, so a user gets one plain sentence naming the field
("Country (C) 'UK' is not an ISO 3166 country code; the United Kingdom is GB") instead of a CA
refusing the request later. Length bounds are RFC 5280's, or OpenSSL's where it is tighter
(emailAddress: 128, not 255), because a value ``openssl req`` refuses would make the equivalent
command fail.

Attribute names are matched case-insensitively, as RFC 4514 says. OpenSSL matches them
case-sensitively and reads a lower-case ``uid`` as uniqueIdentifier; here ``uid`` is userId (UID),
as in LDAP. :func:`subject_text` always writes the names OpenSSL knows.
"""

from __future__ import annotations

import ipaddress
import re
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.name import _ASN1Type  # NameAttribute(_type=...) is the only way to choose the string type
from cryptography.x509.oid import NameOID, ObjectIdentifier

from cert_desk.errors import InputError

SUBJECT_HINT = (
    "Write the subject as /C=GB/O=Example Ltd/CN=Jane Doe (escape '/' and '+' inside a value with '\\'), "
    "or as CN=Jane Doe,O=Example Ltd,C=GB."
)
SAN_HINT = (
    "Write a subject alternative name as DNS:host.example.org, email:jane@example.org, IP:192.0.2.1 or "
    "URI:https://example.org/."
)


@dataclass(frozen=True)
class _Attribute:
    name: str  # as OpenSSL's -subj writes it
    label: str
    oid: ObjectIdentifier
    max_len: int
    asn1: _ASN1Type
    aliases: tuple[str, ...] = ()

    @property
    def field(self) -> str:
        return f"{self.label} ({self.name})"


_UTF8 = _ASN1Type.UTF8String
_ATTRIBUTES = (
    _Attribute("C", "Country", NameOID.COUNTRY_NAME, 2, _ASN1Type.PrintableString, ("countryName",)),
    _Attribute("ST", "State or province", NameOID.STATE_OR_PROVINCE_NAME, 128, _UTF8, ("stateOrProvinceName",)),
    _Attribute("L", "Locality", NameOID.LOCALITY_NAME, 128, _UTF8, ("localityName",)),
    _Attribute("O", "Organization", NameOID.ORGANIZATION_NAME, 64, _UTF8, ("organizationName",)),
    _Attribute("OU", "Organizational unit", NameOID.ORGANIZATIONAL_UNIT_NAME, 64, _UTF8,
               ("organizationalUnitName",)),
    _Attribute("CN", "Common name", NameOID.COMMON_NAME, 64, _UTF8, ("commonName",)),
    _Attribute("emailAddress", "Email address", NameOID.EMAIL_ADDRESS, 128, _ASN1Type.IA5String, ("E", "email")),
    _Attribute("serialNumber", "Serial number", NameOID.SERIAL_NUMBER, 64, _ASN1Type.PrintableString),
    _Attribute("DC", "Domain component", NameOID.DOMAIN_COMPONENT, 63, _ASN1Type.IA5String, ("domainComponent",)),
    _Attribute("UID", "User ID", NameOID.USER_ID, 256, _UTF8, ("userId",)),
    _Attribute("title", "Title", NameOID.TITLE, 64, _UTF8),
    _Attribute("GN", "Given name", NameOID.GIVEN_NAME, 32768, _UTF8, ("givenName",)),
    _Attribute("SN", "Surname", NameOID.SURNAME, 32768, _UTF8, ("surname",)),
    _Attribute("street", "Street address", NameOID.STREET_ADDRESS, 128, _UTF8, ("streetAddress",)),
)
# Dotted OIDs too: cryptography's rfc4514_string() writes title, GN, SN and emailAddress that way.
_BY_NAME = {n.lower(): a for a in _ATTRIBUTES for n in (a.name, *a.aliases, a.oid.dotted_string)}
_BY_OID = {a.oid: a for a in _ATTRIBUTES}
_KNOWN = ", ".join(a.name for a in _ATTRIBUTES)

FIELDS: tuple[tuple[str, str, int], ...] = tuple(
    (a.name, a.label, a.max_len) for a in _ATTRIBUTES if a.name in ("C", "ST", "L", "O", "OU", "CN", "emailAddress")
)
"""The GUI subject builder's fields, in OpenSSL's customary order: (attribute, label, maximum length)."""

# ISO 3166-1 alpha-2, the officially assigned codes (249), as in tzdata's iso3166.tab.
_ISO_3166 = """
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO
JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR
MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO
RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV
TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
"""
COUNTRY_CODES = frozenset(_ISO_3166.split())
# Codes people use that ISO 3166 does not assign (or assigns to someone else).
_COUNTRY_MISTAKES = {
    "UK": "the United Kingdom is GB", "EL": "Greece is GR", "EN": "England is part of the United Kingdom, GB",
}

_HOST_HINT = "A host name is labels of letters, digits and hyphens joined by dots: host.example.org, *.example.org."
_PRINTABLE = frozenset(string.ascii_letters + string.digits + " '()+,-./:=?")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


# ------------------------------------------------------------------ attribute values


def _attribute(name: str) -> _Attribute:
    attr = _BY_NAME.get(name.strip().lower())
    if attr is None:
        raise InputError(f"Unknown subject attribute '{name}'. Known attributes: {_KNOWN}.", SUBJECT_HINT)
    return attr


def _bad_character(value: str) -> str | None:
    """The first character no certificate should carry (controls, lone surrogates), as U+XXXX."""
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cs"):
            return f"U+{ord(ch):04X}"
    return None


def _checked(attr: _Attribute, value: str) -> str:
    """``value`` as it is stored (C in upper case), or InputError naming the field."""
    field = attr.field
    if not value:
        raise InputError(f"{field} is empty.", "Fill it in, or leave the attribute out.")
    bad = _bad_character(value)
    if bad:
        raise InputError(f"{field} contains a control character ({bad}).", "Remove it; names are one line of text.")
    if value != value.strip():
        raise InputError(f"{field} '{value}' starts or ends with a space.", "Remove the space.")
    if attr.name == "C":
        code = value.upper()
        if code not in COUNTRY_CODES:
            why = _COUNTRY_MISTAKES.get(code, "use the two-letter code, e.g. GB, DE, FR or US")
            raise InputError(f"{field} '{value}' is not an ISO 3166 country code; {why}.",
                             "Countries are written as ISO 3166 two-letter codes: GB, DE, FR, US, ...")
        return code
    if len(value) > attr.max_len:
        raise InputError(f"{field} is {len(value)} characters long; at most {attr.max_len} are allowed.",
                         "Shorten it (RFC 5280 sets the limit).")
    if attr.name == "CN" and len(value.encode("utf-8")) > attr.max_len:  # cryptography counts UTF-8 bytes here
        raise InputError(f"{field} is {len(value.encode('utf-8'))} bytes long in UTF-8; at most {attr.max_len} "
                         "are allowed.", "Shorten it: a letter outside ASCII takes two to four bytes.")
    if attr.asn1 is _ASN1Type.PrintableString:
        odd = next((ch for ch in value if ch not in _PRINTABLE), None)
        if odd is not None:
            raise InputError(f"{field} may contain only letters A-Z, digits, spaces and ' ( ) + , - . / : = ?; "
                             f"'{odd}' is not allowed.", "Leave it out (the value is stored as a PrintableString).")
    if attr.asn1 is _ASN1Type.IA5String and not value.isascii():
        raise InputError(f"{field} '{value}' must be plain ASCII (it is stored as an IA5String).",
                         "Write it without accents; a domain name in its xn-- form.")
    if attr.name == "emailAddress":
        _email(value, field)
    if attr.name == "DC" and "." in value:
        raise InputError(f"{field} '{value}' contains a dot; each DC holds one label of a domain name.",
                         "Write example.org as /DC=org/DC=example (or DC=example,DC=org).")
    return value


def validate_field(attr: str, value: str) -> str | None:
    """``None`` when ``value`` is acceptable for ``attr``, else the reason in plain words.

    For a GUI subject builder that marks a field as the user types; :func:`build_subject`
    applies exactly the same checks.
    """
    try:
        _checked(_attribute(attr), value)
    except InputError as e:
        return e.message
    return None


def _name_attribute(attr_name: str, value: str) -> x509.NameAttribute[str]:
    attr = _attribute(attr_name)
    return x509.NameAttribute(attr.oid, _checked(attr, value), _type=attr.asn1)


def _name(rdns: Sequence[Sequence[tuple[str, str]]]) -> x509.Name:
    result = []
    for rdn in rdns:
        attrs = [_name_attribute(a, v) for a, v in rdn]
        try:
            result.append(x509.RelativeDistinguishedName(attrs))
        except ValueError as e:  # the same attribute twice in one multi-valued RDN
            raise InputError(f"A multi-valued RDN has the same attribute twice ({e}).", SUBJECT_HINT) from e
    if not result:
        raise InputError("The subject is empty.", "Give at least a common name (CN).")
    return x509.Name(result)


def build_subject(fields: Sequence[tuple[str, str]]) -> x509.Name:
    """The subject from (attribute, value) pairs in order, as a form gives them; empty values are skipped."""
    return _name([[(a, v)] for a, v in fields if v.strip()])


# ------------------------------------------------------------------ the two syntaxes


def _parse_slash(text: str) -> list[list[tuple[str, str]]]:
    """OpenSSL's -subj form, read the way OpenSSL's ``parse_name`` reads it."""
    rdns: list[list[tuple[str, str]]] = []
    i, multi = 1, False
    while i < len(text):
        eq = text.find("=", i)
        if eq < 0:
            raise InputError(f"'{text[i:]}' has no '=' after the attribute name in the subject.", SUBJECT_HINT)
        attr = text[i:eq]
        value: list[str] = []
        i = eq + 1
        while i < len(text) and text[i] not in "/+":
            if text[i] == "\\":
                i += 1
                if i == len(text):
                    raise InputError("The subject ends with a lone '\\' (an escape with nothing after it).",
                                     SUBJECT_HINT)
            value.append(text[i])
            i += 1
        if multi:
            rdns[-1].append((attr, "".join(value)))
        else:
            rdns.append([(attr, "".join(value))])
        multi = i < len(text) and text[i] == "+"
        i += 1
    return rdns


def _split(text: str, sep: str) -> list[str]:
    """Split on ``sep`` where it is not escaped with a backslash (RFC 4514)."""
    parts, start, i = [], 0, 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == sep:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _strip_unescaped(raw: str) -> str:
    """Strip the spaces people put around ',' and '=' ("CN=x, O=y"), keeping an escaped last space."""
    left = raw.lstrip(" ")
    stripped = left.rstrip(" ")
    backslashes = len(stripped) - len(stripped.rstrip("\\"))
    if len(stripped) < len(left) and backslashes % 2:
        stripped += " "
    return stripped


def _unescape_4514(raw: str) -> str:
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] != "\\":
            out += raw[i].encode("utf-8", "surrogatepass")
            i += 1
        elif all(c in string.hexdigits for c in raw[i + 1:i + 3]) and len(raw[i + 1:i + 3]) == 2:
            out.append(int(raw[i + 1:i + 3], 16))
            i += 3
        elif i + 1 < len(raw):
            out += raw[i + 1].encode("utf-8", "surrogatepass")
            i += 2
        else:
            raise InputError(f"The value '{raw}' ends with a lone '\\'.", SUBJECT_HINT)
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"The value '{raw}' has \\XX escapes that are not UTF-8.", SUBJECT_HINT) from e


def _parse_rfc4514(text: str) -> list[list[tuple[str, str]]]:
    rdns = []
    for raw_rdn in _split(text, ","):
        rdn = []
        for raw_attr in _split(raw_rdn, "+"):
            attr, eq, raw_value = raw_attr.partition("=")
            if not eq:
                raise InputError(f"'{raw_attr.strip()}' in the subject is not of the form TYPE=value.", SUBJECT_HINT)
            raw_value = _strip_unescaped(raw_value)
            if raw_value.startswith("#"):
                raise InputError(f"The hex-encoded value '{raw_value}' of {attr.strip()} is not supported.",
                                 "Write the value as text.")
            rdn.append((attr, _unescape_4514(raw_value)))
        rdns.append(rdn)
    rdns.reverse()  # RFC 4514 writes the most specific RDN first; -subj and the DER start with the least
    return rdns


def parse_subject(text: str) -> x509.Name:
    """A subject in OpenSSL's ``-subj`` form (starts with '/') or as an RFC 4514 string.

    Raises:
        InputError: a syntax error, an unknown attribute, or a value that fails :func:`validate_field`.
    """
    if not text.strip():
        raise InputError("The subject is empty.", SUBJECT_HINT)
    text = text.lstrip()  # a space at the end belongs to the last value, and is refused there
    return _name(_parse_slash(text) if text.startswith("/") else _parse_rfc4514(text))


def _escape_slash(value: str) -> str:
    return value.replace("\\", "\\\\").replace("/", "\\/").replace("+", "\\+")


def subject_text(name: x509.Name) -> str:
    """``name`` in OpenSSL's ``-subj`` form; attributes this module does not know appear as dotted OIDs."""
    parts = []
    for rdn in name.rdns:
        members = []
        for attr in rdn:
            known = _BY_OID.get(attr.oid)
            value = attr.value if isinstance(attr.value, str) else "#" + attr.value.hex()
            members.append(f"{known.name if known else attr.oid.dotted_string}={_escape_slash(value)}")
        parts.append("/" + "+".join(members))
    return "".join(parts)


# ------------------------------------------------------------ subject alternative names


def _dns_name(value: str, what: str, *, wildcard_ok: bool = True) -> str:
    """A host name in the form certificates carry it: lower case, IDNA A-labels, at most one leading '*.'."""
    bad = _bad_character(value)
    if bad or any(ch.isspace() for ch in value):
        raise InputError(f"{what} '{value}' contains a space or control character.", _HOST_HINT)
    prefix, rest = ("*.", value[2:]) if wildcard_ok and value.startswith("*.") else ("", value)
    if "*" in rest:
        raise InputError(f"{what} '{value}': a wildcard is allowed only as the whole leftmost label.", _HOST_HINT)
    if rest.endswith("."):
        raise InputError(f"{what} '{value}' ends with a dot.", "Leave out the final dot.")
    if not rest.isascii():
        try:
            rest = rest.encode("idna").decode("ascii")
        except UnicodeError as e:
            raise InputError(f"{what} '{value}' is not a valid internationalised domain name ({e}).",
                             _HOST_HINT) from e
    rest = rest.lower()
    for label in rest.split("."):
        if not _LABEL.fullmatch(label):
            raise InputError(
                f"{what} '{value}' has an invalid label '{label}': labels are 1 to 63 letters, digits or "
                "hyphens, not starting or ending with a hyphen.", _HOST_HINT)
    if len(rest) > 253:
        raise InputError(f"{what} '{value}' is longer than 253 characters.", _HOST_HINT)
    if not prefix and _is_ip_address(rest):
        raise InputError(f"{what} '{value}' is an IP address, not a host name.", f"Write it as IP:{rest}.")
    return prefix + rest


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _email(value: str, what: str) -> str:
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise InputError(f"{what} '{value}' is not an email address.", "Write it as name@example.org.")
    if not _EMAIL_LOCAL.fullmatch(local):
        raise InputError(f"{what} '{value}': the part before '@' may contain only ASCII letters, digits and "
                         "!#$%&'*+/=?^_`{|}~.-", "Write the address in ASCII.")
    return f"{local}@{_dns_name(domain, what, wildcard_ok=False)}"


def parse_san(text: str) -> x509.GeneralName:
    """One subject alternative name: ``DNS:host``, ``email:a@b``, ``IP:10.0.0.1`` / ``IP:::1``, ``URI:scheme:...``.

    Raises:
        InputError: an unknown type or an invalid value.
    """
    kind, colon, value = text.strip().partition(":")
    kind, value = kind.strip().lower(), value.strip()
    if not colon or kind not in ("dns", "email", "ip", "uri"):
        raise InputError(f"'{text}' does not start with DNS:, email:, IP: or URI:.", SAN_HINT)
    if not value:
        raise InputError(f"The subject alternative name '{text}' has no value.", SAN_HINT)
    if kind == "dns":
        return x509.DNSName(_dns_name(value, "DNS name"))
    if kind == "email":
        return x509.RFC822Name(_email(value, "Email address"))
    if kind == "ip":
        try:
            address = ipaddress.ip_address(value)
        except ValueError as e:
            raise InputError(f"IP address '{value}' is not an IPv4 or IPv6 address.", SAN_HINT) from e
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            raise InputError(f"IP address '{value}' has a zone (%{address.scope_id}); certificates cannot hold one.",
                             "Leave out the %zone.")
        return x509.IPAddress(address)
    scheme, _, rest = value.partition(":")
    if not value.isascii() or _bad_character(value) or any(ch.isspace() for ch in value):
        raise InputError(f"URI '{value}' contains spaces, control or non-ASCII characters.",
                         "Percent-encode them (%20 for a space) and write host names in their xn-- form.")
    if not _URI_SCHEME.fullmatch(scheme) or not rest:
        raise InputError(f"URI '{value}' has no scheme.", "Write it in full, e.g. URI:https://example.org/.")
    return x509.UniformResourceIdentifier(value)


def san_text(gn: x509.GeneralName) -> str:
    """A subject alternative name in the form :func:`parse_san` reads (and OpenSSL's configuration uses)."""
    if isinstance(gn, x509.DNSName):
        return f"DNS:{gn.value}"
    if isinstance(gn, x509.RFC822Name):
        return f"email:{gn.value}"
    if isinstance(gn, x509.IPAddress):
        return f"IP:{gn.value}"
    if isinstance(gn, x509.UniformResourceIdentifier):
        return f"URI:{gn.value}"
    if isinstance(gn, x509.DirectoryName):
        return f"dirName:{subject_text(gn.value)}"
    if isinstance(gn, x509.RegisteredID):
        return f"RID:{gn.value.dotted_string}"
    if isinstance(gn, x509.OtherName):
        return f"otherName:{gn.type_id.dotted_string};{gn.value.hex()}"
    raise InputError(f"Unknown kind of subject alternative name: {type(gn).__name__}.", SAN_HINT)
