"""ISO 3166-1 alpha-2 country codes, the identity of a node and of its peers.

``ASSIGNED`` holds the 249 officially assigned codes. ``USER_ASSIGNED`` holds the codes ISO
leaves to private use (AA, QM–QZ, XA–XZ, ZZ): test and demonstration nodes use them, and
production settings refuse them (see :mod:`node.settings`). Both tables live in
:mod:`certs.pki.names`, which the PKI and the policy rules read too.
"""

from __future__ import annotations

from certs.pki.names import ISO_3166_ALPHA2, USER_ASSIGNED

ASSIGNED: frozenset[str] = ISO_3166_ALPHA2

__all__ = ["ASSIGNED", "USER_ASSIGNED", "normalise_country"]


def normalise_country(value: str) -> str:
    """Return ``value`` upper-cased if it is an assigned or user-assigned alpha-2 code.

    Raises ``ValueError`` (pydantic turns it into a validation error) otherwise.
    """
    code = value.strip().upper()
    if code not in ASSIGNED and code not in USER_ASSIGNED:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
    return code
