"""ISO 3166-1 alpha-2 country codes, the identity of a node and of its peers.

``ASSIGNED`` holds the 249 officially assigned codes. ``USER_ASSIGNED`` holds the codes ISO
leaves to private use (AA, QM–QZ, XA–XZ, ZZ): test and demonstration nodes use them, and
production settings refuse them (see :mod:`node.settings`).
"""

from __future__ import annotations

import string

_ASSIGNED_TEXT = """
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ
BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ
DE DJ DK DM DO DZ
EC EE EG EH ER ES ET
FI FJ FK FM FO FR
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY
HK HM HN HR HT HU
ID IE IL IM IN IO IQ IR IS IT
JE JM JO JP
KE KG KH KI KM KN KP KR KW KY KZ
LA LB LC LI LK LR LS LT LU LV LY
MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ
NA NC NE NF NG NI NL NO NP NR NU NZ
OM
PA PE PF PG PH PK PL PM PN PR PS PT PW PY
QA
RE RO RS RU RW
SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ
TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ
UA UG UM US UY UZ
VA VC VE VG VI VN VU
WF WS
YE YT
ZA ZM ZW
"""

ASSIGNED: frozenset[str] = frozenset(_ASSIGNED_TEXT.split())

USER_ASSIGNED: frozenset[str] = frozenset(
    ["AA", "ZZ"]
    + [f"Q{c}" for c in string.ascii_uppercase[string.ascii_uppercase.index("M") :]]
    + [f"X{c}" for c in string.ascii_uppercase]
)


def normalise_country(value: str) -> str:
    """Return ``value`` upper-cased if it is an assigned or user-assigned alpha-2 code.

    Raises ``ValueError`` (pydantic turns it into a validation error) otherwise.
    """
    code = value.strip().upper()
    if code not in ASSIGNED and code not in USER_ASSIGNED:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
    return code
