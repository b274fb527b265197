"""Certificate subjects of the region: country (ISO 3166-1 alpha-2) and node name.

A node's country lives in the subject ``C=`` attribute, its node name in ``CN=``. The country
list is the 249 officially assigned alpha-2 codes (ISO 3166-1, 2024); private-use codes are not
countries and are refused, so a certificate can never claim one.
"""

from __future__ import annotations

import ipaddress
import re
import string

from cryptography import x509
from cryptography.x509.oid import NameOID

from certs.pki import reasons
from certs.pki.errors import PkiInputError

ISO_3166_ALPHA2: frozenset[str] = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW
    """.split()  # noqa: SIM905 (a table reads better than 249 quoted strings)
)

#: Codes ISO 3166-1 leaves to private use (AA, QM-QZ, XA-XZ, ZZ): never a certificate's
#: country, but test and demonstration settings and rules may name them.
USER_ASSIGNED: frozenset[str] = frozenset(
    ["AA", "ZZ"]
    + [f"Q{c}" for c in string.ascii_uppercase[string.ascii_uppercase.index("M") :]]
    + [f"X{c}" for c in string.ascii_uppercase]
)

# Node names: DNS-label-like, so they are safe in file names, logs and SANs.
_NODE_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?$")
# One DNS label in the preferred name syntax (RFC 1034 3.5, RFC 1123 2.1): letters, digits,
# inner hyphens, 1-63 octets. Internationalised names are given as A-labels (xn--...).
_DNS_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
#: RFC 1035 2.3.4: a name is at most 255 octets on the wire, 253 characters written out.
MAX_DNS_NAME_LENGTH = 253


def validate_country(value: str) -> str:
    """Return ``value`` upper-cased if it is an assigned ISO 3166-1 alpha-2 code, else raise."""
    code = value.strip().upper()
    if code not in ISO_3166_ALPHA2:
        raise PkiInputError(
            f"{value!r} is not an ISO 3166-1 alpha-2 country code", reason=reasons.INVALID_COUNTRY
        )
    return code


def validate_node_name(value: str) -> str:
    """Return ``value`` if it is a valid node name (letters, digits, inner hyphens, <= 64)."""
    if not _NODE_NAME.match(value):
        raise PkiInputError(
            f"node name {value!r} must be 1-64 letters, digits or inner hyphens",
            reason="invalid_node_name",
        )
    return value


def validate_dns_name(value: str) -> str:
    """Return ``value`` in lower case if it is a host name a node's TLS certificate may carry.

    The preferred name syntax of RFC 1034/1123 (what RFC 5280 4.2.1.6 requires of a dNSName):
    dot-separated labels of letters, digits and inner hyphens, no wildcard (a certificate names
    one node), no trailing dot, no IP address (that is an iPAddress entry), A-labels for
    internationalised names. Raises :class:`PkiInputError` (``invalid_dns_name``) otherwise.
    """

    def refuse(why: str) -> PkiInputError:
        return PkiInputError(f"DNS name {value!r} {why}", reason=reasons.INVALID_DNS_NAME)

    if not value.isascii():
        raise refuse("is not ASCII: give an internationalised name as its A-label (xn--...)")
    name = value.lower()
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        raise refuse("is an IP address: give it as an IP address (--ip)")
    if len(name) > MAX_DNS_NAME_LENGTH:
        raise refuse(f"is longer than {MAX_DNS_NAME_LENGTH} characters")
    labels = name.split(".")
    if not all(_DNS_LABEL.match(label) for label in labels):
        raise refuse(
            "must be dot-separated labels of 1-63 letters, digits or inner hyphens"
            " (no wildcard, no trailing dot)"
        )
    return name


def subject_name(country: str, common_name: str) -> x509.Name:
    """The subject ``C=<country>, O=bdx, CN=<common_name>`` (country validated)."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, validate_country(country)),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bdx"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _single(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    attrs = name.get_attributes_for_oid(oid)
    if len(attrs) != 1:
        return None
    value = attrs[0].value
    return value if isinstance(value, str) else None


def country_of(name: x509.Name) -> str | None:
    """The single ``C=`` of ``name`` if it is a valid country code, else ``None``."""
    value = _single(name, NameOID.COUNTRY_NAME)
    return value if value in ISO_3166_ALPHA2 else None


def common_name_of(name: x509.Name) -> str | None:
    """The single ``CN=`` of ``name``, or ``None``."""
    return _single(name, NameOID.COMMON_NAME)
