"""Certificate subjects of the region: country (ISO 3166-1 alpha-2) and node name.

A node's country lives in the subject ``C=`` attribute, its node name in ``CN=``. The country
list is the 249 officially assigned alpha-2 codes (ISO 3166-1, 2024); private-use codes are not
countries and are refused, so a certificate can never claim one.
"""

from __future__ import annotations

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
